//! Uploaded image data sets: an archive file on disk turned into decoded pixel arrays. This file
//! owns the public interface — [`import`], its options, its result and its error — and the
//! pieces both layouts share: the held-out test split, the output cap and the error wording.
//!
//! [`container`] reads the archive (tar, gzipped tar or zip, told apart by content) entry by
//! entry under the byte budget of [`meter`]; [`collect`] sorts the entries into class-folder
//! images and IDX files as they stream past, decoding images with [`decode`]; [`folders`] and
//! [`idx`] turn what was collected into [`ImportedImages`]. Every problem with the archive's content is an
//! [`ImportError::Invalid`] whose message names entries inside the archive, never a server path.

mod collect;
mod container;
mod decode;
mod folders;
mod idx;
mod meter;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use decode::decode_image;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// The most pixels one source image may have (an upload's, or one sent to predict), read from
/// its header before it is decoded: 8,192 × 8,192.
pub const MAX_SOURCE_PIXELS: u64 = 8192 * 8192;

/// How an archive is turned into arrays; the caller has checked each value against its own
/// limits (`test_fraction` is in `(0, 0.5]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportOptions {
    /// Every image is resized to `side` x `side` (bilinear); `None` keeps the data's own size.
    pub side: Option<usize>,
    /// Forces one channel (luma).
    pub to_grayscale: bool,
    /// Share of the training examples held out (seeded) when the archive has no test split.
    pub test_fraction: f64,
    pub seed: u64,
    pub max_classes: usize,
    /// Cap on the bytes read out of the archive after decompression, all entries together, and
    /// on the decoded output arrays together.
    pub max_expanded_bytes: u64,
    /// Cap on one source image's width x height, checked from its header before decoding.
    pub max_image_pixels: u64,
}

/// The decoded data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImages {
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// 1 or 3.
    pub channels: usize,
    pub side: usize,
    pub train: Split,
    pub test: Split,
    /// Which convention the archive used.
    pub layout: Layout,
}

/// The two archive layouts accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// torchvision's ImageFolder: `train/<class>/<file>`, optionally `test/<class>/<file>`.
    ClassFolders,
    /// MNIST's IDX files: `train-images-idx3-ubyte` and friends, optionally gzipped.
    Idx,
}

/// The examples of one split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// `n * channels * side * side` bytes, image after image, each channel-major (C, H, W).
    pub pixels: Vec<u8>,
    pub labels: Vec<u16>,
}

/// Why an archive could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The archive's content (field `body`) or the options (field `side`) are at fault: what
    /// the API answers as a problem naming `field`.
    #[error("{field} {message}")]
    Invalid { field: &'static str, message: String },
    /// Server-side trouble reading the archive file.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Decodes the image data set in the archive at `archive`.
pub fn import(archive: &Path, options: &ImportOptions) -> Result<ImportedImages, ImportError> {
    let meter = meter::Meter::new(options.max_expanded_bytes);
    let mut collected = collect::Collected::default();
    container::for_each_entry(archive, &meter, &mut |entry| collected.add(entry, &meter, options))?;
    match collected.finish()? {
        collect::Gathered::Folders(folders, images) => folders::assemble(&folders, images, options),
        collect::Gathered::Idx(files) => idx::assemble(files, options),
    }
}

/// A problem with the archive's content.
fn invalid(message: impl Into<String>) -> ImportError {
    invalid_field("body", message)
}

/// A problem that changing the option `field` would fix.
fn invalid_field(field: &'static str, message: impl Into<String>) -> ImportError {
    ImportError::Invalid { field, message: message.into() }
}

/// Refuses fewer than two classes or more than the cap; `place` says where they were found.
fn check_class_count(classes: &[String], place: &str, options: &ImportOptions) -> Result<(), ImportError> {
    let max = options.max_classes.min(usize::from(u16::MAX) + 1);
    match classes {
        [] => Err(invalid(format!("has no classes in {place}"))),
        [only] => Err(invalid(format!("has only one class (`{only}`) in {place}; at least 2 are needed"))),
        _ if classes.len() > max => {
            Err(invalid(format!("has {} classes in {place}, more than the {max} allowed", classes.len())))
        }
        _ => Ok(()),
    }
}

/// Refuses an output of `images` images of `channels` x `side` x `side` bytes past the cap.
fn check_output_size(
    images: usize,
    channels: usize,
    side: usize,
    options: &ImportOptions,
) -> Result<(), ImportError> {
    let bytes = (images as u64)
        .checked_mul(channels as u64)
        .and_then(|b| b.checked_mul(side as u64))
        .and_then(|b| b.checked_mul(side as u64));
    match bytes {
        Some(bytes) if bytes <= options.max_expanded_bytes => Ok(()),
        _ => Err(invalid(format!(
            "decodes to {images} images of {channels}x{side}x{side} bytes, more than the {} bytes allowed",
            options.max_expanded_bytes
        ))),
    }
}

/// Which of `n` training examples go to the test split when the archive has none: a share of
/// `test_fraction`, at least one, leaving at least one, picked by a permutation seeded by
/// `seed`.
fn held_out(n: usize, options: &ImportOptions) -> Result<Vec<bool>, ImportError> {
    if n < 2 {
        return Err(invalid(format!(
            "holds {n} training example and no test split; at least 2 are needed to hold some out"
        )));
    }
    let count = ((n as f64 * options.test_fraction).round() as usize).clamp(1, n - 1);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(options.seed));
    let mut test = vec![false; n];
    for &i in &order[..count] {
        test[i] = true;
    }
    Ok(test)
}

/// Smallest and largest side of images kept at their own size.
pub(super) const OWN_SIDES: std::ops::RangeInclusive<u32> = 8..=512;

/// The side of images kept at their own size: `first` is the first image's name and (width,
/// height), `other` the first image of another size, if any. Refused on field `side` unless all
/// are one square size in [`OWN_SIDES`].
pub(super) fn own_side(
    first: (&str, (u32, u32)),
    other: Option<(&str, (u32, u32))>,
) -> Result<usize, ImportError> {
    let (name, (width, height)) = first;
    let fix = "set side to resize every image to side x side";
    if let Some((other, (w, h))) = other {
        return Err(invalid_field(
            "side",
            format!("is needed: {name} is {width}x{height} but {other} is {w}x{h}; {fix}"),
        ));
    }
    if width != height {
        return Err(invalid_field(
            "side",
            format!("is needed: {name} is {width}x{height}, not square; {fix}"),
        ));
    }
    if !OWN_SIDES.contains(&width) {
        return Err(invalid_field(
            "side",
            format!(
                "is needed: the images are {width}x{height}, and without side they must be from {min}x{min} to \
                 {max}x{max}; {fix}",
                min = OWN_SIDES.start(),
                max = OWN_SIDES.end()
            ),
        ));
    }
    Ok(width as usize)
}

/// A train and a test split with room for `train` and `test` images of `image_len` bytes.
fn empty_splits(train: usize, test: usize, image_len: usize) -> (Split, Split) {
    let split = |n: usize| Split { pixels: Vec::with_capacity(n * image_len), labels: Vec::with_capacity(n) };
    (split(train), split(test))
}
