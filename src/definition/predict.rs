//! A predict request: what a client sends to `POST /jobs/{id}/predict`, checked once into a
//! [`ValidPredict`] that prediction reads without checking again. A JSON body is
//! [`PredictRequest`]; a PNG or JPEG body is one image, decoded by [`crate::data::import`], its
//! options in the query ([`PredictQuery`]).
//!
//! Each JSON image is an array of numbers in `[0, 1]` holding the job's data set's channels ×
//! side × side pixels, before the job's `resize` (which prediction applies as training did),
//! nested `[C][H][W]` as `tensor.tolist()` gives it, `[H][W]` for one channel, or flat. The body
//! is parsed against the job's image shape and `--max-predict-batch` ([`parse`]): numbers are
//! checked and stored as they are read, four bytes each, so a request holds at most the images
//! it may send, and one that sends more, a ragged or channels-last array or a number out of
//! range is refused at that image, by its place (`images[3]`).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use utoipa::ToSchema;

use super::{FieldError, SpecParseError};
use crate::data::ImageShape;

/// The classes returned per image when `top_k` is not given.
pub const DEFAULT_TOP_K: usize = 5;

/// `POST /jobs/{id}/predict` as sent in JSON (its schema; [`parse`] reads it).
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct PredictRequest {
    /// The images: each an array of numbers in [0, 1] of the data set's channels × side × side,
    /// nested `[C][H][W]`, `[H][W]` (one channel) or flat; at most `--max-predict-batch`.
    #[schema(value_type = Vec<Vec<Vec<Vec<f32>>>>)]
    images: Vec<Vec<f32>>,
    /// Classes per image, likeliest first (default 5; at most the model's classes).
    #[schema(minimum = 1)]
    top_k: Option<usize>,
    /// Id of the checkpoint to use (default: the newest).
    checkpoint: Option<i64>,
}

/// The options of a predict request whose image is the body (PNG or JPEG): its query, read as
/// text so that a wrong value is a 422 naming it.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PredictQuery {
    /// Classes per image, likeliest first (default 5; at most the model's classes).
    #[param(value_type = Option<u32>, minimum = 1)]
    pub top_k: Option<String>,
    /// Id of the checkpoint to use (default: the newest).
    #[param(value_type = Option<i64>)]
    pub checkpoint: Option<String>,
}

/// A predict request that passed validation: its images flattened, each of the data set's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidPredict {
    /// Image after image, `shape.len()` numbers each, in `[0, 1]`.
    pub pixels: Vec<f32>,
    pub count: usize,
    pub top_k: usize,
    pub checkpoint: Option<i64>,
}

/// What a request is checked against: the job's images and model, and the server's cap.
#[derive(Debug, Clone, Copy)]
pub struct PredictLimits {
    /// The data set's image shape, before any resize.
    pub shape: ImageShape,
    pub classes: usize,
    pub max_images: usize,
}

/// Parses and checks a JSON predict request; the error names the field (`images[2]`, `top_k`).
pub fn parse(body: &[u8], limits: PredictLimits) -> Result<ValidPredict, SpecParseError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let parsed = RequestSeed(limits).deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track));
    let parsed = parsed.map_err(|inner| {
        let path = track.path().to_string();
        if inner.is_syntax() || inner.is_eof() {
            SpecParseError::Syntax(inner.to_string())
        } else {
            let field = if path == "." { "body".to_string() } else { path };
            // The field names the place; serde_json's "at line 1 column 3000" adds nothing.
            let message = inner.to_string();
            let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m).to_string();
            SpecParseError::Field(FieldError { field, message })
        }
    })?;
    de.end().map_err(|e| SpecParseError::Syntax(e.to_string()))?;
    let field =
        |field: &str, message: String| SpecParseError::Field(FieldError { field: field.into(), message });
    let (pixels, count) = parsed.images.ok_or_else(|| field("images", "is required".into()))?;
    if count == 0 {
        return Err(field("images", format!("must hold 1 to {} images (got 0)", limits.max_images)));
    }
    let top_k = check_top_k(parsed.top_k, limits.classes).map_err(|message| field("top_k", message))?;
    Ok(ValidPredict { pixels, count, top_k, checkpoint: parsed.checkpoint })
}

/// `top_k` with its default, or why it is wrong for a model of `classes` classes.
pub fn check_top_k(top_k: Option<usize>, classes: usize) -> Result<usize, String> {
    match top_k {
        None => Ok(DEFAULT_TOP_K.min(classes)),
        Some(k) if (1..=classes).contains(&k) => Ok(k),
        Some(k) => Err(format!("must be between 1 and {classes}, the model's classes (got {k})")),
    }
}

/// The request's fields as read, images flattened.
struct Parsed {
    images: Option<(Vec<f32>, usize)>,
    top_k: Option<usize>,
    checkpoint: Option<i64>,
}

const FIELDS: &[&str] = &["images", "top_k", "checkpoint"];

/// Reads the request object, `images` through [`ImagesSeed`].
struct RequestSeed(PredictLimits);

impl<'de> DeserializeSeed<'de> for RequestSeed {
    type Value = Parsed;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Parsed, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with images, top_k and checkpoint")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut parsed = Parsed { images: None, top_k: None, checkpoint: None };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "images" if parsed.images.is_none() => {
                    parsed.images = Some(map.next_value_seed(ImagesSeed(self.0))?)
                }
                "top_k" if parsed.top_k.is_none() => parsed.top_k = map.next_value()?,
                "checkpoint" if parsed.checkpoint.is_none() => parsed.checkpoint = map.next_value()?,
                known if FIELDS.contains(&known) => {
                    return Err(de::Error::custom(format!("duplicate field `{known}`")));
                }
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
        }
        Ok(parsed)
    }
}

/// Reads the array of images into one flat vector, at most `max_images` of them.
struct ImagesSeed(PredictLimits);

impl<'de> DeserializeSeed<'de> for ImagesSeed {
    type Value = (Vec<f32>, usize);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ImagesSeed {
    type Value = (Vec<f32>, usize);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of images")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let PredictLimits { shape, max_images, .. } = self.0;
        let mut pixels = Vec::new();
        let mut count = 0;
        loop {
            if count == max_images {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(format!(
                        "must hold 1 to {max_images} images (--max-predict-batch)"
                    )));
                }
                return Ok((pixels, count));
            }
            let start = pixels.len();
            if seq.next_element_seed(Nested { out: &mut pixels, start, shape, depth: 0 })?.is_none() {
                return Ok((pixels, count));
            }
            count += 1;
        }
    }
}

/// Whether an image nested as `dims` is one of `shape` in a layout kiln reads.
fn check_layout(dims: &[usize], shape: ImageShape) -> Result<(), String> {
    let ImageShape { channels: c, height: h, width: w } = shape;
    let ok = dims == [c, h, w] || (c == 1 && dims == [h, w]) || dims == [c * h * w];
    if ok {
        return Ok(());
    }
    let nested = dims.iter().map(|d| format!("[{d}]")).collect::<String>();
    let hint = if c > 1 && dims == [h, w, c] {
        "; that is channels last: send channels first (np.transpose(x, (2, 0, 1)))"
    } else {
        ""
    };
    Err(format!(
        "is nested {nested}; this job's images are {c}x{h}x{w}: send [{c}][{h}][{w}]{}, or {} numbers flat{hint}",
        if c == 1 { format!(", [{h}][{w}]") } else { String::new() },
        c * h * w
    ))
}

/// One image, or a part of one, `depth` arrays deep: its numbers go to `out` (the image's from
/// `start`, at most those of one image of `shape`), and it answers its dimensions, every
/// sub-array alike; the whole image (depth 0) checks its layout against `shape`.
struct Nested<'a> {
    out: &'a mut Vec<f32>,
    start: usize,
    shape: ImageShape,
    depth: usize,
}

/// How deep arrays may nest: `[C][H][W]` is three.
const MAX_DEPTH: usize = 3;

impl<'de> DeserializeSeed<'de> for Nested<'_> {
    type Value = Vec<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<usize>, D::Error> {
        if self.depth == 0 { deserializer.deserialize_seq(self) } else { deserializer.deserialize_any(self) }
    }
}

impl<'de> Visitor<'de> for Nested<'_> {
    type Value = Vec<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.depth == 0 {
            "an image: an array of numbers, or of such arrays"
        } else {
            "a number or an array"
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<usize>, E> {
        if !(0.0..=1.0).contains(&v) {
            return Err(E::custom(format!("{v} is not a pixel in [0, 1] (divide 8-bit values by 255)")));
        }
        let cap = self.shape.len();
        if self.out.len() - self.start >= cap {
            return Err(E::custom(format!("holds more than the {cap} numbers of one of this job's images")));
        }
        self.out.push(v as f32);
        Ok(Vec::new())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<usize>, E> {
        self.visit_f64(v as f64)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<usize>, E> {
        self.visit_f64(v as f64)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<usize>, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom(format!("arrays nest at most {MAX_DEPTH} deep ([C][H][W])")));
        }
        let (mut len, mut inner): (usize, Option<Vec<usize>>) = (0, None);
        let (start, shape, depth) = (self.start, self.shape, self.depth + 1);
        while let Some(dims) = seq.next_element_seed(Nested { out: &mut *self.out, start, shape, depth })? {
            match &inner {
                Some(first) if *first != dims => {
                    return Err(de::Error::custom("is ragged: its arrays differ in length or depth"));
                }
                Some(_) => {}
                None => inner = Some(dims),
            }
            len += 1;
        }
        let dims: Vec<usize> = std::iter::once(len).chain(inner.unwrap_or_default()).collect();
        if self.depth == 0 {
            check_layout(&dims, shape).map_err(de::Error::custom)?;
        }
        Ok(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(channels: usize, side: usize, max_images: usize) -> PredictLimits {
        PredictLimits { shape: ImageShape { channels, height: side, width: side }, classes: 10, max_images }
    }

    fn problem(json: &str, limits: PredictLimits) -> String {
        match parse(json.as_bytes(), limits) {
            Err(SpecParseError::Field(e)) => e.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn images_are_read_nested_channels_first_one_channel_without_it_or_flat() {
        let grey = r#"{"images": [[[[0, 0.5], [1, 0.25]]], [0, 0.5, 1, 0.25], [[0, 0.5], [1, 0.25]]]}"#;
        let valid = parse(grey.as_bytes(), limits(1, 2, 8)).unwrap();
        assert_eq!(valid.count, 3);
        assert_eq!(valid.pixels, [[0.0, 0.5, 1.0, 0.25]; 3].concat());
        assert_eq!((valid.top_k, valid.checkpoint), (5, None));
        let rgb = r#"{"images": [[[[0, 0]], [[0.5, 0.5]], [[1, 1]]]], "top_k": 2, "checkpoint": 7}"#;
        let valid = parse(rgb.as_bytes(), limits(3, 1, 8));
        assert!(valid.is_err(), "1x1 images are 3 numbers, not 3x1x2");
        let rgb = r#"{"images": [[[[0]], [[0.5]], [[1]]]], "top_k": 2, "checkpoint": 7}"#;
        let valid = parse(rgb.as_bytes(), limits(3, 1, 8)).unwrap();
        assert_eq!((valid.pixels, valid.top_k, valid.checkpoint), (vec![0.0, 0.5, 1.0], 2, Some(7)));
    }

    #[test]
    fn each_wrong_image_is_named_by_its_place() {
        let l = limits(1, 2, 2);
        assert_eq!(
            problem(r#"{"images": [[0, 0, 0, 0], [0, 0, 0]]}"#, l),
            "images[1] is nested [3]; this job's images are 1x2x2: send [1][2][2], [2][2], or 4 numbers flat"
        );
        assert_eq!(
            problem(r#"{"images": [[0, 0, 0, 0, 0]]}"#, l),
            "images[0][4] holds more than the 4 numbers of one of this job's images"
        );
        assert_eq!(
            problem(r#"{"images": [[0, 0, 0, 255]]}"#, l),
            "images[0][3] 255 is not a pixel in [0, 1] (divide 8-bit values by 255)"
        );
        assert_eq!(
            problem(r#"{"images": [[[0, 0], [0]]]}"#, l),
            "images[0] is ragged: its arrays differ in length or depth"
        );
        assert_eq!(
            problem(r#"{"images": [[[[[0]]]]]}"#, l),
            "images[0][0][0][0] arrays nest at most 3 deep ([C][H][W])"
        );
        assert_eq!(
            problem(r#"{"images": [[0,0,0,0], [0,0,0,0], []]}"#, l),
            "images must hold 1 to 2 images (--max-predict-batch)"
        );
        assert_eq!(problem(r#"{"images": []}"#, l), "images must hold 1 to 2 images (got 0)");
        assert_eq!(problem(r#"{"top_k": 1}"#, l), "images is required");
        assert_eq!(
            problem(r#"{"images": [[0,0,0,0]], "top_k": 11}"#, l),
            "top_k must be between 1 and 10, the model's classes (got 11)"
        );
        assert!(problem(r#"{"images": [[0,0,0,0]], "topk": 1}"#, l).starts_with("body unknown field `topk`"));
        let channels_last = "[[[0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]]";
        let message = problem(&format!(r#"{{"images": [{channels_last}]}}"#), limits(3, 2, 2));
        assert!(
            message.ends_with("that is channels last: send channels first (np.transpose(x, (2, 0, 1)))"),
            "{message}"
        );
        assert!(matches!(parse(b"{\"images\": [", l), Err(SpecParseError::Syntax(_))));
    }
}
