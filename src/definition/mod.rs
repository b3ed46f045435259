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
//!
//! What a client sends is in [`raw`], the rules in `validate/`, what kiln runs here.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::backend::{BackendKind, Lane};
use crate::data::{DatasetSpec, TextSource, batches_per_epoch};
use crate::models::{ClassifierSpec, LanguageModelSpec, ModelSpec};
use crate::text::{Normalize, Sampling, Tokenizer};

mod bounds;
pub mod generate;
mod names;
pub mod predict;
mod raw;
mod sources;
mod summary;
#[cfg(test)]
mod tests;
mod validate;

pub use summary::LayerSummary;
pub(crate) use validate::MAX_NAME_CHARS;
pub use validate::{Limits, parse_strict};

pub use raw::{Hidden, JobSpec, RawCheckpoint, RawData, RawLayers, RawModel, RawOptimizer, RawTraining};

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

impl DataSpec {
    /// The uploaded data set (`POST /datasets`) the job reads, if it reads one.
    pub fn uploaded_dataset(&self) -> Option<uuid::Uuid> {
        match self {
            DataSpec::Images(ImageDataSpec { source: DatasetSpec::Uploaded { dataset_id, .. }, .. })
            | DataSpec::Text(TextDataSpec { source: TextSource::Uploaded { dataset_id }, .. }) => {
                Some(*dataset_id)
            }
            _ => None,
        }
    }
}

/// Where a classifier's examples come from and how many are used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageDataSpec {
    #[serde(flatten)]
    #[schema(schema_with = sources::images)]
    pub source: DatasetSpec,
    // Required (if null): what tells an image data set from a text corpus in the API document,
    // both being `uploaded` when uploaded.
    #[schema(minimum = 1, required = true)]
    pub limit_train: Option<usize>,
    #[schema(minimum = 1, required = true)]
    pub limit_test: Option<usize>,
    /// Side, in pixels, every image is bilinearly resized to.
    #[schema(minimum = 8, required = true)]
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
