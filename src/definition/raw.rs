//! A job definition as a client sends it: [`JobSpec`] and its parts, every field optional so
//! that validation can name every missing or wrong one at once. Parsed strictly (unknown fields
//! are errors); [`super::validate`] turns it into a [`super::ValidJobSpec`].

use serde::Deserialize;
use utoipa::ToSchema;

use super::bounds;
use super::names::{DatasetName, ModelKind, OptimizerKind};

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
    /// Images: `fashion_mnist`, `synthetic_images` or `uploaded`; text: `time_machine`,
    /// `uploaded` or `synthetic_text`. `uploaded` is a data set of `POST /datasets`, named by
    /// `dataset_id`: images for a classifier, text for a language model.
    #[schema(required, value_type = DatasetName)]
    pub dataset: Option<String>,
    /// Train on this many examples only (a prefix of the training set).
    #[schema(minimum = 1)]
    pub limit_train: Option<usize>,
    /// Evaluate on this many examples only (a prefix of the test set).
    #[schema(minimum = 1)]
    pub limit_test: Option<usize>,
    /// `synthetic_images`: training examples (default 2000); uploaded images: the data set's
    /// (filled in; when given, it must be the data set's).
    #[schema(minimum = 1)]
    pub train_size: Option<usize>,
    /// `synthetic_images`: test examples (default 500); uploaded images: as `train_size`.
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
    /// Uploaded images only: channels of every image (1 or 3). Filled in from the data set at
    /// submit; when given, it must be the data set's.
    #[schema(minimum = 1, maximum = 3)]
    pub channels: Option<usize>,
    /// Uploaded images only: height and width of every image, as stored (before `resize`).
    /// Filled in from the data set; when given, it must be the data set's.
    #[schema(minimum = 8, maximum = 512)]
    pub side: Option<usize>,
    /// Uploaded images only: number of classes. Filled in from the data set; when given, it must
    /// be the data set's.
    #[schema(minimum = 2)]
    pub classes: Option<usize>,
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
