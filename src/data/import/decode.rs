//! One image file of a class folder, decoded: recognised by content (PNG and JPEG only), its
//! size checked from its header before any pixel is decoded, then kept as 8-bit grey or RGB at
//! its own size or resized to `side`. Also the bilinear resize the IDX layout shares, and
//! [`decode_image`]: one image sent on its own (to predict), decoded the same way.

use std::io::Cursor;

use image::imageops::{self, FilterType};
use image::{
    ColorType, DynamicImage, GrayImage, ImageBuffer, ImageDecoder, ImageError, ImageFormat, ImageReader,
    Limits, Pixel, RgbImage,
};

use super::{ImportError, ImportOptions, OWN_SIDES, invalid, invalid_field, own_side};

/// Bytes per pixel of the widest format a PNG decodes to (RGBA, 16 bits a channel).
const MAX_BYTES_PER_PIXEL: u64 = 8;

/// Room for a decoder's own buffers (rows, Huffman tables, ancillary chunks).
const DECODER_SLACK: u64 = 64 << 20;

/// A decoded image: grey when the file is grey (or grey was asked for), RGB otherwise.
#[derive(Debug)]
pub(super) enum Pixels {
    Gray(GrayImage),
    Rgb(RgbImage),
}

impl Pixels {
    pub(super) fn dimensions(&self) -> (u32, u32) {
        match self {
            Self::Gray(image) => image.dimensions(),
            Self::Rgb(image) => image.dimensions(),
        }
    }

    /// Bytes of pixel data.
    pub(super) fn len(&self) -> u64 {
        match self {
            Self::Gray(image) => image.as_raw().len() as u64,
            Self::Rgb(image) => image.as_raw().len() as u64,
        }
    }

    /// Appends this image to `out` channel-major (C, H, W) with `channels` channels, repeating a
    /// grey plane for RGB output.
    pub(super) fn write_chw(&self, channels: usize, out: &mut Vec<u8>) {
        match self {
            Self::Gray(image) => {
                for _ in 0..channels {
                    out.extend_from_slice(image.as_raw());
                }
            }
            Self::Rgb(image) => {
                for channel in 0..3 {
                    out.extend(image.as_raw().iter().skip(channel).step_by(3));
                }
            }
        }
    }
}

/// Decodes entry `name` of the archive, whose content is `bytes`. `source` counts the bytes the
/// archive's images take as decoded, before any resize: this one's are added from its header,
/// and past `max_expanded_bytes` it is refused before it is decoded (a small `side` keeps the
/// result small, not the work). Without `side`, an image that is not square or not within
/// [`OWN_SIDES`] is refused from its header too.
pub(super) fn decode(
    name: &str,
    bytes: &[u8],
    options: &ImportOptions,
    source: &mut u64,
) -> Result<Pixels, ImportError> {
    let not_an_image = || invalid(format!("{name} is not a PNG or JPEG image"));
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|_| not_an_image())?;
    if !matches!(reader.format(), Some(ImageFormat::Png | ImageFormat::Jpeg)) {
        return Err(not_an_image());
    }
    let max_alloc =
        options.max_image_pixels.saturating_mul(MAX_BYTES_PER_PIXEL).saturating_add(DECODER_SLACK);
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    // Reads the header only.
    let decoder = reader.into_decoder().map_err(|e| bad_image(name, e))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > options.max_image_pixels {
        return Err(invalid(format!(
            "{name} is {width}x{height} pixels, more than the {} pixels allowed in one image",
            options.max_image_pixels
        )));
    }
    if decoder.total_bytes() > max_alloc {
        return Err(too_big(name));
    }
    *source = source.saturating_add(decoder.total_bytes());
    if *source > options.max_expanded_bytes {
        return Err(invalid(format!(
            "decodes to more than {} bytes of images before any resize, the most this server accepts",
            options.max_expanded_bytes
        )));
    }
    if options.side.is_none() && (width != height || !OWN_SIDES.contains(&width)) {
        return Err(own_side((name, (width, height)), None).expect_err("not square, or out of range"));
    }
    let grey =
        matches!(decoder.color_type(), ColorType::L8 | ColorType::L16 | ColorType::La8 | ColorType::La16);
    let image = DynamicImage::from_decoder(decoder).map_err(|e| bad_image(name, e))?;
    let pixels = if grey || options.to_grayscale {
        Pixels::Gray(image.into_luma8())
    } else {
        Pixels::Rgb(image.into_rgb8())
    };
    match options.side {
        Some(side) => resized(pixels, side),
        None => Ok(pixels),
    }
}

/// One PNG or JPEG, `bytes`, named `name` in messages, decoded as an upload's images are: to
/// `channels` (1: luma, 3: RGB) at `side` x `side`, channel-major (C, H, W). Refused on field
/// `body` when it is no PNG or JPEG, is corrupt, or has more than `max_pixels` pixels.
pub fn decode_image(
    bytes: &[u8],
    name: &str,
    channels: usize,
    side: usize,
    max_pixels: u64,
) -> Result<Vec<u8>, ImportError> {
    let options = ImportOptions {
        side: Some(side),
        to_grayscale: channels == 1,
        test_fraction: 0.0,
        seed: 0,
        max_classes: 0,
        max_expanded_bytes: u64::MAX,
        max_image_pixels: max_pixels,
    };
    let pixels = decode(name, bytes, &options, &mut 0)?;
    let mut out = Vec::with_capacity(channels * side * side);
    pixels.write_chw(if channels == 1 { 1 } else { 3 }, &mut out);
    Ok(out)
}

fn bad_image(name: &str, err: ImageError) -> ImportError {
    match err {
        ImageError::Limits(_) => too_big(name),
        err => invalid(format!("{name} is not a valid image: {err}")),
    }
}

fn too_big(name: &str) -> ImportError {
    invalid(format!("{name} needs more memory to decode than this server allows"))
}

fn resized(pixels: Pixels, side: usize) -> Result<Pixels, ImportError> {
    let side = side_u32(side)?;
    Ok(match pixels {
        Pixels::Gray(image) => Pixels::Gray(stretch(image, side)),
        Pixels::Rgb(image) => Pixels::Rgb(stretch(image, side)),
    })
}

/// A grey image resized to `side` x `side`, as [`decode`] resizes.
pub(super) fn resize_gray(image: GrayImage, side: usize) -> Result<GrayImage, ImportError> {
    Ok(stretch(image, side_u32(side)?))
}

/// `image` at `side` x `side` (bilinear, stretched if it is not square); unchanged when it
/// already is that size.
fn stretch<P: Pixel + 'static>(
    image: ImageBuffer<P, Vec<P::Subpixel>>,
    side: u32,
) -> ImageBuffer<P, Vec<P::Subpixel>> {
    if image.dimensions() == (side, side) {
        image
    } else {
        imageops::resize(&image, side, side, FilterType::Triangle)
    }
}

fn side_u32(side: usize) -> Result<u32, ImportError> {
    match u32::try_from(side) {
        Ok(side) if side > 0 => Ok(side),
        _ => Err(invalid_field("side", format!("must be a positive number of pixels, not {side}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| image::Rgb(pixel(x, y)));
        let mut bytes = Vec::new();
        image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
        bytes
    }

    #[test]
    fn decode_image_gives_the_asked_channels_and_side_channel_major() {
        let bytes = png(4, 4, |x, y| if (x, y) == (1, 2) { [10, 20, 30] } else { [0, 0, 0] });
        let rgb = decode_image(&bytes, "the body", 3, 4, 100).unwrap();
        assert_eq!(rgb.len(), 3 * 16);
        assert_eq!([rgb[2 * 4 + 1], rgb[16 + 2 * 4 + 1], rgb[32 + 2 * 4 + 1]], [10, 20, 30]);
        assert_eq!(rgb.iter().filter(|p| **p != 0).count(), 3);
        assert_eq!(decode_image(&bytes, "the body", 1, 8, 100).unwrap().len(), 64);
    }

    #[test]
    fn decode_image_refuses_what_is_not_an_image_and_too_many_pixels() {
        let message = |result: Result<Vec<u8>, ImportError>| match result {
            Err(problem @ ImportError::Invalid { .. }) => problem.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            message(decode_image(b"{}", "the body", 3, 4, 100)),
            "body the body is not a PNG or JPEG image"
        );
        let big = png(20, 10, |_, _| [1, 2, 3]);
        assert_eq!(
            message(decode_image(&big, "the body", 3, 4, 100)),
            "body the body is 20x10 pixels, more than the 100 pixels allowed in one image"
        );
    }
}
