//! A predict request: what a client sends to `POST /jobs/{id}/predict` as JSON, checked once into
//! a [`ValidPredict`] that prediction reads without checking again. (A PNG or JPEG body is one
//! image, decoded by [`crate::data::import`]; its `top_k` and `checkpoint` come in the query.)
//!
//! Each image is an array of numbers in `[0, 1]`, nested as the client likes — `[C][H][W]` as
//! `tensor.tolist()` gives it, `[H][W]` for one channel, or flat — holding the channels × side ×
//! side pixels of the job's data set, channel-major, before the job's `resize` (which prediction
//! applies as training did). The arrays are flattened as they are parsed, four bytes a number.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::FieldError;
use crate::config::Config;
use crate::data::ImageShape;

/// The classes returned per image when `top_k` is not given.
pub const DEFAULT_TOP_K: usize = 5;

/// `POST /jobs/{id}/predict` as sent in JSON.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// The images: each an array of numbers in [0, 1] (nested `[C][H][W]`, `[H][W]` or flat) of
    /// the data set's channels × side × side, channel-major; at most `--max-predict-batch`.
    #[schema(value_type = Vec<Vec<f32>>)]
    pub images: Option<Vec<Pixels>>,
    /// Classes per image, likeliest first (default 5; at most the model's classes).
    #[schema(minimum = 1)]
    pub top_k: Option<usize>,
    /// Id of the checkpoint to use (default: the newest).
    pub checkpoint: Option<i64>,
}

/// The options of a predict request whose image is the body (PNG or JPEG): its query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct PredictQuery {
    /// Classes per image, likeliest first (default 5; at most the model's classes).
    pub top_k: Option<usize>,
    /// Id of the checkpoint to use (default: the newest).
    pub checkpoint: Option<i64>,
}

/// One image's numbers, flattened from whatever nesting they came in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pixels(pub Vec<f32>);

impl<'de> Deserialize<'de> for Pixels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut flat = Vec::new();
        deserializer.deserialize_seq(Flatten(&mut flat))?;
        Ok(Pixels(flat))
    }
}

/// Appends the numbers of a (nested) array to its vector.
struct Flatten<'a>(&'a mut Vec<f32>);

/// How deep arrays may nest: `[C][H][W]` is three.
const MAX_DEPTH: usize = 3;

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of numbers, or of such arrays")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Element { out: &mut *self.0, depth: 1 })?.is_some() {}
        Ok(())
    }
}

/// One element of an array: a number, or an array one level deeper.
struct Element<'a> {
    out: &'a mut Vec<f32>,
    depth: usize,
}

impl<'de> de::DeserializeSeed<'de> for Element<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Element<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or an array of numbers")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.out.push(v as f32);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.out.push(v as f32);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.out.push(v as f32);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom(format!("arrays nest at most {MAX_DEPTH} deep ([C][H][W])")));
        }
        while seq.next_element_seed(Element { out: &mut *self.out, depth: self.depth + 1 })?.is_some() {}
        Ok(())
    }
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

impl PredictRequest {
    /// Checks the images against `shape` (the data set's, before any resize), their count
    /// against `--max-predict-batch` and `top_k` against the model's `classes`.
    pub fn validate(
        self,
        shape: ImageShape,
        classes: usize,
        config: &Config,
    ) -> Result<ValidPredict, Vec<FieldError>> {
        let mut errors: Vec<FieldError> = Vec::new();
        let add = |errors: &mut Vec<FieldError>, field: String, message: String| {
            errors.push(FieldError { field, message })
        };
        let images = self.images.unwrap_or_default();
        let max = config.max_predict_batch;
        if images.is_empty() || images.len() > max {
            add(&mut errors, "images".into(), format!("must hold 1 to {max} images (got {})", images.len()));
        }
        let size = shape.len();
        for (i, Pixels(image)) in images.iter().enumerate().take(max) {
            if image.len() != size {
                let (c, h, w) = (shape.channels, shape.height, shape.width);
                add(
                    &mut errors,
                    format!("images[{i}]"),
                    format!(
                        "has {} numbers; this job's images are {c}x{h}x{w} = {size} (channels x side x side)",
                        image.len()
                    ),
                );
            } else if let Some(bad) = image.iter().position(|p| !(0.0..=1.0).contains(p)) {
                add(
                    &mut errors,
                    format!("images[{i}]"),
                    format!(
                        "number {bad} is {}: pixels are in [0, 1] (divide 8-bit values by 255)",
                        image[bad]
                    ),
                );
            }
            if errors.len() >= 10 {
                break;
            }
        }
        let top_k =
            check_top_k(self.top_k, classes).map_err(|message| add(&mut errors, "top_k".into(), message));
        match (errors.is_empty(), top_k) {
            (true, Ok(top_k)) => Ok(ValidPredict {
                count: images.len(),
                pixels: images.into_iter().flat_map(|Pixels(p)| p).collect(),
                top_k,
                checkpoint: self.checkpoint,
            }),
            _ => Err(errors),
        }
    }
}

/// `top_k` with its default, or why it is wrong for a model of `classes` classes.
pub fn check_top_k(top_k: Option<usize>, classes: usize) -> Result<usize, String> {
    match top_k {
        None => Ok(DEFAULT_TOP_K.min(classes)),
        Some(k) if (1..=classes).contains(&k) => Ok(k),
        Some(k) => Err(format!("must be between 1 and {classes}, the model's classes (got {k})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(channels: usize, side: usize) -> ImageShape {
        ImageShape { channels, height: side, width: side }
    }

    fn request(json: &str) -> PredictRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn images_flatten_from_any_nesting_up_to_three_levels() {
        let config = Config::with_data_dir("/nonexistent");
        let nested =
            request(r#"{"images": [[[[0, 0.5], [1, 0.25]]], [0, 0.5, 1, 0.25], [[0, 0.5], [1, 0.25]]]}"#);
        let valid = nested.validate(shape(1, 2), 10, &config).unwrap();
        assert_eq!(valid.count, 3);
        assert_eq!(valid.pixels, [[0.0, 0.5, 1.0, 0.25]; 3].concat());
        assert_eq!(valid.top_k, 5);
        let deep = serde_json::from_str::<PredictRequest>(r#"{"images": [[[[[0]]]]]}"#).unwrap_err();
        assert!(deep.to_string().contains("nest at most 3 deep"), "{deep}");
        assert!(serde_json::from_str::<PredictRequest>(r#"{"images": [["a"]]}"#).is_err());
    }

    #[test]
    fn sizes_ranges_counts_and_top_k_are_checked() {
        let mut config = Config::with_data_dir("/nonexistent");
        config.max_predict_batch = 2;
        let problems = |json: &str, classes: usize| -> Vec<String> {
            let errors = request(json).validate(shape(1, 2), classes, &config).unwrap_err();
            errors.into_iter().map(|e| e.to_string()).collect()
        };
        assert_eq!(
            problems(r#"{"images": [[0, 0, 0], [0, 0, 0, 255]]}"#, 10),
            [
                "images[0] has 3 numbers; this job's images are 1x2x2 = 4 (channels x side x side)",
                "images[1] number 3 is 255: pixels are in [0, 1] (divide 8-bit values by 255)",
            ]
        );
        assert_eq!(problems(r#"{"images": []}"#, 10), ["images must hold 1 to 2 images (got 0)"]);
        assert_eq!(
            problems(r#"{"images": [[0,0,0,0], [0,0,0,0], [0,0,0,0]]}"#, 10),
            ["images must hold 1 to 2 images (got 3)"]
        );
        assert_eq!(
            problems(r#"{"images": [[0,0,0,0]], "top_k": 4}"#, 3),
            ["top_k must be between 1 and 3, the model's classes (got 4)"]
        );
        let valid = request(r#"{"images": [[0,0,0,0]], "checkpoint": 7}"#).validate(shape(1, 2), 3, &config);
        assert_eq!(
            valid.unwrap(),
            ValidPredict { pixels: vec![0.0; 4], count: 1, top_k: 3, checkpoint: Some(7) }
        );
    }
}
