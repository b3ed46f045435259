//! Data sets: where a job's examples come from, loaded into memory as plain arrays. Image data
//! sets are here; text corpora are [`TextSource`]s.
//!
//! [`DatasetSpec`] is the `data.dataset` choice of a job definition. [`DatasetSpec::load`] turns
//! it into an [`ImageData`] — a train and a test [`ImageSet`] of `f32` pixels in `[0, 1]` and
//! class labels — that the training loop slices into batches. Files come from the data dir first
//! and from system packages second; nothing is downloaded. Users' own images arrive as archives
//! ([`import`]) and are kept decoded ([`uploaded`]).

mod fashion_mnist;
pub mod import;
mod synthetic;
mod text;
pub mod uploaded;

pub use fashion_mnist::CLASSES as FASHION_MNIST_CLASSES;
pub use text::TextSource;

use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::config::images_in;

/// The `data.dataset` of a job, with the fields that belong to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "dataset", rename_all = "snake_case")]
pub enum DatasetSpec {
    /// Fashion-MNIST: 60,000 train and 10,000 test grey 28x28 images in 10 classes.
    FashionMnist,
    /// Images generated in-process: class-dependent patterns plus noise, 1x28x28, 10 classes.
    SyntheticImages { train_size: usize, test_size: usize, seed: u64 },
    /// An image data set uploaded with `POST /datasets?kind=images`. Its shape, classes and
    /// counts are filled in from the data set when the job is submitted (and, when given, must
    /// be its own).
    Uploaded {
        dataset_id: Uuid,
        channels: usize,
        side: usize,
        classes: usize,
        train_size: usize,
        test_size: usize,
    },
}

/// Channels, height and width of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    /// This shape with height and width set to `side`, if there is one.
    pub fn resized(self, side: Option<usize>) -> Self {
        match side {
            Some(side) => Self { height: side, width: side, ..self },
            None => self,
        }
    }

    /// Values in one image.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Examples of one split, in memory.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub shape: ImageShape,
    /// `len() * shape.len()` pixels, image after image, channel-major.
    pub pixels: Vec<f32>,
    pub labels: Vec<u16>,
    /// Side, in pixels, images are bilinearly resized to when batched; `None` keeps `shape`.
    pub resize: Option<usize>,
}

impl ImageSet {
    /// The shape of one image as batched, after any resize.
    pub fn input_shape(&self) -> ImageShape {
        self.shape.resized(self.resize)
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Keeps the first `limit` examples.
    fn truncate(&mut self, limit: Option<usize>) {
        if let Some(limit) = limit.filter(|l| *l < self.len()) {
            self.labels.truncate(limit);
            self.pixels.truncate(limit * self.shape.len());
        }
    }

    /// The pixels and labels of the examples at `indices`, in that order.
    pub fn gather(&self, indices: &[usize]) -> (Vec<f32>, Vec<i64>) {
        let size = self.shape.len();
        let mut pixels = Vec::with_capacity(indices.len() * size);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend_from_slice(&self.pixels[i * size..(i + 1) * size]);
            labels.push(i64::from(self.labels[i]));
        }
        (pixels, labels)
    }
}

/// A train and a test split.
#[derive(Debug, Clone)]
pub struct ImageData {
    pub train: ImageSet,
    pub test: ImageSet,
    pub classes: usize,
    /// The classes' names, in label order.
    pub names: Vec<String>,
}

/// Why a data set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0}")]
    Missing(String),
    #[error("{path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The order in which epoch `epoch` visits `n` examples: a permutation fixed by `seed` and
/// `epoch` alone, so a resumed job sees the same batches it would have seen.
pub fn epoch_order(n: usize, seed: u64, epoch: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(epoch).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    order.shuffle(&mut rng);
    order
}

/// Batches in one epoch of `n` examples. A last batch of a single example is dropped, since
/// batch statistics of one example are degenerate.
pub fn batches_per_epoch(n: usize, batch_size: usize) -> usize {
    let full = n / batch_size;
    if n % batch_size > 1 || full == 0 { full + 1 } else { full }
}

impl DatasetSpec {
    /// Shape of one input image.
    pub fn shape(&self) -> ImageShape {
        match self {
            Self::Uploaded { channels, side, .. } => {
                ImageShape { channels: *channels, height: *side, width: *side }
            }
            _ => ImageShape { channels: 1, height: 28, width: 28 },
        }
    }

    /// Examples in the full training split.
    pub fn train_len(&self) -> usize {
        match self {
            Self::FashionMnist => fashion_mnist::TRAIN_LEN,
            Self::SyntheticImages { train_size, .. } | Self::Uploaded { train_size, .. } => *train_size,
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        match self {
            Self::Uploaded { classes, .. } => *classes,
            _ => 10,
        }
    }

    /// Whether the data can be loaded here; the error says how to provide it.
    pub fn check_available(&self, datasets_dir: &Path) -> Result<(), String> {
        match self {
            Self::FashionMnist => fashion_mnist::locate(datasets_dir).map(|_| ()),
            Self::SyntheticImages { .. } => Ok(()),
            Self::Uploaded { dataset_id, .. } => match images_in(datasets_dir, *dataset_id).is_file() {
                true => Ok(()),
                false => Err(format!("no uploaded image data set has id {dataset_id}")),
            },
        }
    }

    /// Loads (or generates) both splits, keeping the first `limit_*` examples of each; batches
    /// of them are resized to `resize` pixels square.
    pub fn load(
        &self,
        datasets_dir: &Path,
        limit_train: Option<usize>,
        limit_test: Option<usize>,
        resize: Option<usize>,
    ) -> Result<ImageData, DataError> {
        let (mut train, mut test, names) = match self {
            Self::FashionMnist => {
                let dir = fashion_mnist::locate(datasets_dir).map_err(DataError::Missing)?;
                let names = fashion_mnist::CLASSES.map(str::to_string).to_vec();
                (fashion_mnist::load(&dir, "train")?, fashion_mnist::load(&dir, "t10k")?, names)
            }
            Self::SyntheticImages { train_size, test_size, seed } => {
                let shape = self.shape();
                (
                    synthetic::images(shape, *train_size, *seed),
                    synthetic::images(shape, *test_size, seed.wrapping_add(1)),
                    (0..10).map(|c| c.to_string()).collect(),
                )
            }
            Self::Uploaded { dataset_id, .. } => self.load_uploaded(&images_in(datasets_dir, *dataset_id))?,
        };
        train.truncate(limit_train);
        test.truncate(limit_test);
        train.resize = resize;
        test.resize = resize;
        Ok(ImageData { train, test, classes: self.classes(), names })
    }

    /// The splits of the uploaded image set at `path`, which must still be the one this spec
    /// was validated against.
    fn load_uploaded(&self, path: &Path) -> Result<(ImageSet, ImageSet, Vec<String>), DataError> {
        let Self::Uploaded { dataset_id, .. } = self else { unreachable!("only for uploaded sets") };
        if !path.is_file() {
            return Err(DataError::Missing(format!(
                "uploaded data set {dataset_id} was deleted before the job could read it"
            )));
        }
        let (train, test, info) = uploaded::load(path)?;
        let found = Self::Uploaded {
            dataset_id: *dataset_id,
            channels: info.channels,
            side: info.side,
            classes: info.classes.len(),
            train_size: info.train,
            test_size: info.test,
        };
        if found != *self {
            return Err(DataError::Corrupt {
                path: path.display().to_string(),
                reason: format!("holds {found:?}, the job was validated against {self:?}"),
            });
        }
        Ok((train, test, info.classes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_example_tail_is_dropped_but_larger_tails_are_kept() {
        assert_eq!(batches_per_epoch(512, 256), 2);
        assert_eq!(batches_per_epoch(513, 256), 2);
        assert_eq!(batches_per_epoch(514, 256), 3);
        assert_eq!(batches_per_epoch(100, 256), 1);
        assert_eq!(batches_per_epoch(60_000, 256), 235);
    }

    #[test]
    fn epoch_order_is_a_permutation_fixed_by_seed_and_epoch() {
        let a = epoch_order(100, 7, 3);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 7, 3));
        assert_ne!(a, epoch_order(100, 7, 4));
        assert_ne!(a, epoch_order(100, 8, 3));
    }

    #[test]
    fn limits_keep_a_prefix_and_gather_follows_indices() {
        let spec = DatasetSpec::SyntheticImages { train_size: 50, test_size: 20, seed: 1 };
        let full = spec.load(Path::new("/nonexistent"), None, None, None).unwrap();
        let data = spec.load(Path::new("/nonexistent"), Some(10), Some(5), None).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (10, 5));
        assert_eq!(data.train.labels[..], full.train.labels[..10]);
        let (pixels, labels) = full.train.gather(&[3, 1]);
        assert_eq!(labels, vec![i64::from(full.train.labels[3]), i64::from(full.train.labels[1])]);
        assert_eq!(pixels[..784], full.train.pixels[3 * 784..4 * 784]);
    }
}
