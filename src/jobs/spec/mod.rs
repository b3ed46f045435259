//! The job definition: what a client sends (`JobSpec`) and what kiln runs (`ValidJobSpec`).
//!
//! A request body is parsed once, strictly (unknown fields are errors), into the raw [`JobSpec`]
//! whose every field may be missing. [`JobSpec::validate`] applies the defaults and the server's
//! caps and either returns a [`ValidJobSpec`] — no optional knob left, every value in range — or
//! every problem found, each naming its field path. Nothing downstream checks a spec again.
//!
//! The valid spec serialises to the same shape a client sends, with the defaults filled in, so
//! the spec a job reports can be submitted again as it is.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::data::DatasetSpec;
use crate::models::ModelSpec;

#[cfg(test)]
mod tests;
mod validate;

pub use validate::Limits;
pub(crate) use validate::MAX_NAME_CHARS;

/// A job definition as a client sends it. Every field is optional here; see the README for
/// the defaults.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A free label shown in listings.
    pub name: Option<String>,
    pub model: Option<RawModel>,
    pub data: Option<RawData>,
    pub training: Option<RawTraining>,
    /// `cpu` (Burn's flex backend) or `ndarray`.
    pub backend: Option<String>,
    pub checkpoint: Option<RawCheckpoint>,
}

/// `model` as sent: `kind` picks the architecture, the other fields belong to some kinds only.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// `lenet_bn`, `mlp_bn`, `resnet` or `densenet`.
    pub kind: Option<String>,
    /// Build the net with batch normalization (default true); false gives the same net without.
    pub batch_norm: Option<bool>,
    /// `mlp_bn` only: widths of the hidden layers (default `[256, 128]`).
    pub hidden: Option<Vec<usize>>,
    /// `mlp_bn` only: `relu` (default) or `sigmoid`.
    pub activation: Option<String>,
    /// `resnet` only: 18 (default) or 34, which sets the default `blocks`.
    pub depth: Option<u32>,
    /// `resnet` only: channels of each stage (default `[64, 128, 256, 512]`).
    pub widths: Option<Vec<usize>>,
    /// `resnet`: residual blocks per stage (default by depth); `densenet`: conv blocks per
    /// dense block (default `[4, 4, 4, 4]`).
    pub blocks: Option<Vec<usize>>,
    /// `densenet` only: channels each conv block adds (default 32).
    pub growth_rate: Option<usize>,
    /// `densenet` only: channels out of the stem (default 64).
    pub stem_channels: Option<usize>,
}

/// `data` as sent.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawData {
    /// `fashion_mnist` or `synthetic_images`.
    pub dataset: Option<String>,
    /// Train on this many examples only (a prefix of the training set).
    pub limit_train: Option<usize>,
    /// Evaluate on this many examples only (a prefix of the test set).
    pub limit_test: Option<usize>,
    /// `synthetic_images` only: training examples (default 2000).
    pub train_size: Option<usize>,
    /// `synthetic_images` only: test examples (default 500).
    pub test_size: Option<usize>,
    /// `synthetic_images` only: generator seed (default 0).
    pub seed: Option<u64>,
    /// Resize every image to this many pixels square, bilinearly (the book trains ResNet and
    /// DenseNet at 96); 8 to 512.
    pub resize: Option<usize>,
}

/// `training` as sent.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTraining {
    /// Passes over the training set (default 10).
    pub epochs: Option<u32>,
    /// Examples per step (default 256).
    pub batch_size: Option<usize>,
    /// Seeds weight initialisation and the shuffling of every epoch (default 42).
    pub seed: Option<u64>,
    pub optimizer: Option<RawOptimizer>,
    /// Record the training loss every this many steps (default 10).
    pub log_every: Option<u32>,
}

/// `training.optimizer` as sent.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOptimizer {
    /// `sgd` (default) or `adam`.
    pub kind: Option<String>,
    /// Learning rate (default 0.1 for sgd, 0.001 for adam).
    pub lr: Option<f64>,
    /// `sgd` only (default 0).
    pub momentum: Option<f64>,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: Option<f64>,
    /// `adam` only (default 0.9).
    pub beta1: Option<f64>,
    /// `adam` only (default 0.999).
    pub beta2: Option<f64>,
    /// `adam` only (default 1e-8).
    pub epsilon: Option<f64>,
}

/// `checkpoint` as sent.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCheckpoint {
    /// Save a checkpoint every this many epochs (default 1).
    pub every: Option<u32>,
    /// Keep this many newest checkpoints, plus the best by test accuracy (default 3).
    pub keep_last: Option<u32>,
}

/// A job definition that passed validation: defaults filled, every value within the caps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValidJobSpec {
    pub name: Option<String>,
    pub model: ModelSpec,
    pub data: DataSpec,
    pub training: TrainingSpec,
    pub backend: BackendKind,
    pub checkpoint: CheckpointPolicy,
}

/// Where the examples come from and how many are used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DataSpec {
    #[serde(flatten)]
    pub source: DatasetSpec,
    pub limit_train: Option<usize>,
    pub limit_test: Option<usize>,
    /// Side, in pixels, every image is bilinearly resized to.
    pub resize: Option<usize>,
}

impl DataSpec {
    /// The shape of one image as the model sees it, after any resize.
    pub fn input_shape(&self) -> crate::data::ImageShape {
        self.source.shape().resized(self.resize)
    }
}

/// How the model is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrainingSpec {
    pub epochs: u32,
    pub batch_size: usize,
    pub seed: u64,
    pub optimizer: OptimizerSpec,
    pub log_every: u32,
}

/// The optimizer and its hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerSpec {
    Sgd { lr: f64, momentum: f64, weight_decay: f64 },
    Adam { lr: f64, beta1: f64, beta2: f64, epsilon: f64, weight_decay: f64 },
}

impl OptimizerSpec {
    /// The learning rate, whichever the optimizer.
    pub fn lr(&self) -> f64 {
        match self {
            Self::Sgd { lr, .. } | Self::Adam { lr, .. } => *lr,
        }
    }
}

/// Where a job trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Burn's flex backend: pure-Rust CPU kernels, the fast CPU choice.
    Cpu,
    /// Burn's ndarray backend (deprecated upstream), kept for comparison.
    Ndarray,
}

impl BackendKind {
    /// Every backend this server can run, by the name a job uses.
    pub const AVAILABLE: &[(&str, BackendKind)] = &[("cpu", Self::Cpu), ("ndarray", Self::Ndarray)];

    /// The name a job definition uses for this backend.
    pub fn name(self) -> &'static str {
        Self::AVAILABLE.iter().find(|(_, kind)| *kind == self).map(|(name, _)| *name).unwrap_or("?")
    }
}

/// When checkpoints are written and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointPolicy {
    pub every: u32,
    pub keep_last: u32,
}

/// One thing wrong with a job definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `training.batch_size`.
    pub field: String,
    /// What is wrong, with the limit where there is one.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.field, self.message)
    }
}

/// A body that is not a job definition at all.
#[derive(Debug, thiserror::Error)]
pub enum SpecParseError {
    /// Not JSON.
    #[error("the body is not valid JSON: {0}")]
    Syntax(String),
    /// JSON, but a field is unknown or has the wrong type.
    #[error("{0}")]
    Field(FieldError),
}
