//! The job definition: what a client sends (`JobSpec`) and what kiln runs (`ValidJobSpec`).
//!
//! A request body is parsed once, strictly (unknown fields are errors), into the raw [`JobSpec`]
//! whose every field may be missing. [`JobSpec::validate`] applies the defaults and the server's
//! caps and either returns a [`ValidJob`] — a [`ValidJobSpec`] with no optional knob left and
//! every value in range, plus what admission needs: the lane, the parameter count, the step
//! total — or every problem found, each naming its field path. Nothing downstream checks a spec
//! again. [`generate`] does the same for a generate request.
//!
//! The job service writes the definition and the training engine reads it; both import it from
//! here, below them. The valid spec serialises to the same shape a client sends, with the
//! defaults filled in, so the spec a job reports can be submitted again as it is.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::backend::{BackendKind, Lane};
use crate::data::{DatasetSpec, TextSource, batches_per_epoch};
use crate::models::{ClassifierSpec, LanguageModelSpec, ModelSpec};
use crate::text::{Normalize, Sampling, Tokenizer};

mod bounds;
pub mod generate;
mod names;
mod sources;
mod summary;
#[cfg(test)]
mod tests;
mod validate;

pub use summary::LayerSummary;
pub(crate) use validate::MAX_NAME_CHARS;
pub use validate::{Limits, parse_strict};

use names::{DatasetName, ModelKind, OptimizerKind};

/// A job definition as a client sends it. Fields are optional in Rust so that validation can
/// name every missing one at once; the API document marks `model`, `data`, `model.kind` and
/// `data.dataset` required, as validation does.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A free label shown in listings.
    pub name: Option<String>,
    #[schema(required)]
    pub model: Option<RawModel>,
    #[schema(required)]
    pub data: Option<RawData>,
    pub training: Option<RawTraining>,
    /// `cpu` (Burn's flex backend, the default), `wgpu`, `wgpu:N` (a device of
    /// `GET /backends`) or `auto` (a hardware GPU when there is one, else the CPU).
    pub backend: Option<String>,
    pub checkpoint: Option<RawCheckpoint>,
}

/// `model` as sent: `kind` picks the architecture, the other fields belong to some kinds only.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// `lenet_bn`, `mlp_bn`, `resnet`, `densenet`, `sequential` (image classifiers) or `rnn_lm`
    /// (a language model).
    #[schema(required, value_type = ModelKind)]
    pub kind: Option<String>,
    /// Build the net with batch normalization (default true); false gives the same net without.
    pub batch_norm: Option<bool>,
    /// `mlp_bn`: widths of the hidden layers (default `[256, 128]`); `rnn_lm`: hidden units
    /// of each recurrent layer (default 256).
    pub hidden: Option<Hidden>,
    /// `mlp_bn` only: `relu` (default) or `sigmoid`.
    #[schema(value_type = Option<crate::models::Activation>)]
    pub activation: Option<String>,
    /// `resnet` only: 18 (default) or 34, which sets the default `blocks`.
    #[schema(minimum = 18, maximum = 34)]
    pub depth: Option<u32>,
    /// `resnet` only: channels of each stage (default `[64, 128, 256, 512]`).
    #[schema(schema_with = bounds::widths)]
    pub widths: Option<Vec<usize>>,
    /// `resnet`: residual blocks per stage (default by depth); `densenet`: conv blocks per
    /// dense block (default `[4, 4, 4, 4]`).
    #[schema(schema_with = bounds::blocks)]
    pub blocks: Option<Vec<usize>>,
    /// `densenet` only: channels each conv block adds (default 32), 1 to 4096.
    #[schema(minimum = 1, maximum = 4096)]
    pub growth_rate: Option<usize>,
    /// `densenet` only: channels out of the stem (default 64), 1 to 4096.
    #[schema(minimum = 1, maximum = 4096)]
    pub stem_channels: Option<usize>,
    /// `rnn_lm` only: `rnn` (the book's from-scratch RNN, default), `gru` or `lstm`.
    #[schema(value_type = Option<crate::models::Cell>)]
    pub cell: Option<String>,
    /// `rnn_lm`: stacked recurrent layers (default 1), 1 to 16; `sequential`: the network's
    /// layers, in order (required).
    pub layers: Option<RawLayers>,
    /// `rnn_lm` only: width of a learned token embedding; absent or null feeds tokens one-hot,
    /// as the book does; 1 to 16384.
    #[schema(minimum = 1, maximum = 16384)]
    pub embedding: Option<usize>,
}

/// `model.hidden`: one width (`rnn_lm`) or a list of widths (`mlp_bn`); its schema, with the
/// bounds, is in `bounds.rs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Hidden {
    One(usize),
    Many(Vec<usize>),
}

/// `model.layers`: a number of recurrent layers (`rnn_lm`) or a list of layers (`sequential`),
/// each read into a [`crate::models::LayerSpec`] by validation, so that every bad layer is named
/// by its index; its schema is in `bounds.rs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawLayers {
    Count(usize),
    List(Vec<serde_json::Value>),
}

/// `data` as sent.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawData {
    /// Images: `fashion_mnist` or `synthetic_images`; text: `time_machine`, `uploaded` or
    /// `synthetic_text`.
    #[schema(required, value_type = DatasetName)]
    pub dataset: Option<String>,
    /// Train on this many examples only (a prefix of the training set).
    #[schema(minimum = 1)]
    pub limit_train: Option<usize>,
    /// Evaluate on this many examples only (a prefix of the test set).
    #[schema(minimum = 1)]
    pub limit_test: Option<usize>,
    /// `synthetic_images` only: training examples (default 2000).
    #[schema(minimum = 1)]
    pub train_size: Option<usize>,
    /// `synthetic_images` only: test examples (default 500).
    #[schema(minimum = 1)]
    pub test_size: Option<usize>,
    /// `synthetic_images` and `synthetic_text`: generator seed (default 0).
    pub seed: Option<u64>,
    /// Resize every image to this many pixels square, bilinearly (the book trains ResNet and
    /// DenseNet at 96); 8 to 512.
    #[schema(minimum = 8, maximum = 512)]
    pub resize: Option<usize>,
    /// `uploaded` only: the id `POST /datasets` returned.
    pub dataset_id: Option<uuid::Uuid>,
    /// `synthetic_text` only: characters to generate (default 20000), 2 to 10000000.
    #[schema(minimum = 2, maximum = 10_000_000)]
    pub chars: Option<usize>,
    /// Text: `char` (default) or `word` tokens.
    #[schema(value_type = Option<crate::text::Tokenizer>)]
    pub tokenizer: Option<String>,
    /// Text: `d2l` (default: runs of non-letters become one space, lower case) or `none`.
    #[schema(value_type = Option<crate::text::Normalize>)]
    pub normalize: Option<String>,
    /// Text: tokens seen fewer times than this map to `<unk>` (default 0).
    pub min_freq: Option<usize>,
    /// Text: train on the first this many tokens only (the book's 0.17 edition uses 10000); at
    /// least 2.
    #[schema(minimum = 2)]
    pub max_tokens: Option<usize>,
    /// Text: tokens per sequence in a batch (default 35), 1 to 4096.
    #[schema(minimum = 1, maximum = 4096)]
    pub num_steps: Option<usize>,
    /// Text: `sequential` (default: the hidden state carries over between batches, detached)
    /// or `random` (fresh state every batch).
    #[schema(value_type = Option<crate::text::Sampling>)]
    pub sampling: Option<String>,
    /// Text: fraction of the tokens, taken from the end, held out for validation perplexity
    /// (default 0), in [0, 0.9).
    #[schema(minimum = 0.0, exclusive_maximum = 0.9)]
    pub validation_fraction: Option<f64>,
}

/// `training` as sent.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTraining {
    /// Passes over the training set (default 10, or `--max-epochs` where that is lower); at
    /// least 1.
    #[schema(minimum = 1)]
    pub epochs: Option<u32>,
    /// Examples per step (default 256); at least 1.
    #[schema(minimum = 1)]
    pub batch_size: Option<usize>,
    /// Seeds weight initialisation and the shuffling of every epoch (default 42).
    pub seed: Option<u64>,
    pub optimizer: Option<RawOptimizer>,
    /// Record the training loss every this many steps (default 10), 1 to 1000000.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub log_every: Option<u32>,
    /// Clip the gradients to this global norm θ: g ← min(1, θ/‖g‖)·g over all parameters
    /// together (default 1 for `rnn_lm`, none for classifiers; null turns it off).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0.0, exclusive_maximum = 1e6)]
    pub grad_clip_norm: Option<Option<f64>>,
}

/// Tells a field sent as `null` (`Some(None)`) from a field left out (`None`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `training.optimizer` as sent.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOptimizer {
    /// `sgd` (default) or `adam`.
    #[schema(value_type = Option<OptimizerKind>)]
    pub kind: Option<String>,
    /// Learning rate (default 0.1 for sgd, 0.001 for adam), in (0, 100).
    #[schema(exclusive_minimum = 0.0, exclusive_maximum = 100.0)]
    pub lr: Option<f64>,
    /// `sgd` only (default 0), in [0, 1).
    #[schema(minimum = 0.0, exclusive_maximum = 1.0)]
    pub momentum: Option<f64>,
    /// L2 penalty added to the gradient (default 0), in [0, 1).
    #[schema(minimum = 0.0, exclusive_maximum = 1.0)]
    pub weight_decay: Option<f64>,
    /// `adam` only (default 0.9), in [0, 1).
    #[schema(minimum = 0.0, exclusive_maximum = 1.0)]
    pub beta1: Option<f64>,
    /// `adam` only (default 0.999), in [0, 1).
    #[schema(minimum = 0.0, exclusive_maximum = 1.0)]
    pub beta2: Option<f64>,
    /// `adam` only (default 1e-8), in (0, 1).
    #[schema(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub epsilon: Option<f64>,
}

/// `checkpoint` as sent.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCheckpoint {
    /// Save a checkpoint every this many epochs (default 1); at least 1.
    #[schema(minimum = 1)]
    pub every: Option<u32>,
    /// Keep this many newest checkpoints, plus the best by test accuracy (default 3); at least
    /// 1, at most `--max-keep-last`.
    #[schema(minimum = 1)]
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

/// A job that passed validation: its definition and what admission needs to queue it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidJob {
    pub spec: ValidJobSpec,
    /// The lane it waits in: the CPU, or the GPU its `backend` names on this server.
    pub lane: Lane,
    /// Trainable parameters of its model; 0 for a language model, whose vocabulary (read when
    /// it trains) decides its size.
    pub parameters: u64,
    /// Optimizer steps of the whole job; 0 for a language model, whose corpus decides them.
    pub steps: u64,
}

impl ValidJob {
    fn new(spec: ValidJobSpec, lane: Lane) -> Self {
        let (parameters, steps) = match spec.task() {
            Some(Task::Classify { model, data }) => {
                let per_epoch = batches_per_epoch(data.train_len(), spec.training.batch_size);
                let steps = per_epoch as u64 * u64::from(spec.training.epochs);
                (model.parameter_count(data.input_shape(), data.source.classes()) as u64, steps)
            }
            _ => (0, 0),
        };
        Self { spec, lane, parameters, steps }
    }
}

/// The `data` of a valid job: images for a classifier, text for a language model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DataSpec {
    Images(ImageDataSpec),
    Text(TextDataSpec),
}

/// Where a classifier's examples come from and how many are used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageDataSpec {
    #[serde(flatten)]
    #[schema(schema_with = sources::images)]
    pub source: DatasetSpec,
    #[schema(minimum = 1)]
    pub limit_train: Option<usize>,
    #[schema(minimum = 1)]
    pub limit_test: Option<usize>,
    /// Side, in pixels, every image is bilinearly resized to.
    #[schema(minimum = 8)]
    pub resize: Option<usize>,
}

impl ImageDataSpec {
    /// The shape of one image as the model sees it, after any resize.
    pub fn input_shape(&self) -> crate::data::ImageShape {
        self.source.shape().resized(self.resize)
    }

    /// Training examples used, after `limit_train`.
    pub fn train_len(&self) -> usize {
        let n = self.source.train_len();
        self.limit_train.map_or(n, |l| l.min(n))
    }
}

/// Where a language model's text comes from and how it becomes batches of tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TextDataSpec {
    #[serde(flatten)]
    #[schema(schema_with = sources::text)]
    pub source: TextSource,
    pub tokenizer: Tokenizer,
    pub normalize: Normalize,
    pub min_freq: usize,
    #[schema(minimum = 2)]
    pub max_tokens: Option<usize>,
    #[schema(minimum = 1)]
    pub num_steps: usize,
    pub sampling: Sampling,
    pub validation_fraction: f64,
}

impl TextDataSpec {
    /// How the corpus is turned into tokens.
    pub fn options(&self) -> crate::text::TextOptions {
        crate::text::TextOptions {
            tokenizer: self.tokenizer,
            normalize: self.normalize,
            min_freq: self.min_freq,
            max_tokens: self.max_tokens,
            validation_fraction: self.validation_fraction,
        }
    }
}

/// What a valid job trains: the model and its data, paired by kind.
pub enum Task<'a> {
    Classify { model: &'a ClassifierSpec, data: &'a ImageDataSpec },
    Language { model: &'a LanguageModelSpec, data: &'a TextDataSpec },
}

impl ValidJobSpec {
    /// The model with its data. Validation pairs them; a spec read back from disk that pairs
    /// them otherwise is corrupt and gets `None`.
    pub fn task(&self) -> Option<Task<'_>> {
        match (&self.model, &self.data) {
            (ModelSpec::Classifier(model), DataSpec::Images(data)) => Some(Task::Classify { model, data }),
            (ModelSpec::Language(model), DataSpec::Text(data)) => Some(Task::Language { model, data }),
            _ => None,
        }
    }
}

/// How the model is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrainingSpec {
    #[schema(minimum = 1)]
    pub epochs: u32,
    #[schema(minimum = 1)]
    pub batch_size: usize,
    pub seed: u64,
    pub optimizer: OptimizerSpec,
    #[schema(minimum = 1)]
    pub log_every: u32,
    /// Global gradient-norm threshold θ, if gradients are clipped.
    pub grad_clip_norm: Option<f64>,
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

/// When checkpoints are written and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointPolicy {
    #[schema(minimum = 1)]
    pub every: u32,
    #[schema(minimum = 1)]
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
