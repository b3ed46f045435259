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

use crate::config::Config;
use crate::data::DatasetSpec;
use crate::models::{Activation, ModelSpec};

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
    /// `lenet_bn` or `mlp_bn`.
    pub kind: Option<String>,
    /// Build the net with batch normalization (default true); false gives the same net without.
    pub batch_norm: Option<bool>,
    /// `mlp_bn` only: widths of the hidden layers (default `[256, 128]`).
    pub hidden: Option<Vec<usize>>,
    /// `mlp_bn` only: `relu` (default) or `sigmoid`.
    pub activation: Option<String>,
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
    Sgd {
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    },
    Adam {
        lr: f64,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
        weight_decay: f64,
    },
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
        Self::AVAILABLE
            .iter()
            .find(|(_, kind)| *kind == self)
            .map(|(name, _)| *name)
            .unwrap_or("?")
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

/// What validation checks a spec against: the server's caps and what it can find on disk.
pub struct Limits<'a> {
    pub config: &'a Config,
}

/// Collects every problem of one spec, so a client can fix them all at once.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// `value` if it lies in `lo..=hi`, else records the problem and returns `lo`.
    fn range<T: PartialOrd + Copy + std::fmt::Display>(
        &mut self,
        field: &str,
        value: T,
        lo: T,
        hi: T,
    ) -> T {
        if value < lo || value > hi {
            self.add(
                field,
                format!("must be between {lo} and {hi} (got {value})"),
            );
            lo
        } else {
            value
        }
    }

    /// A float in `lo..hi_excl`, finite; `lo` inclusive or not.
    fn float(&mut self, field: &str, value: f64, lo: f64, lo_inclusive: bool, hi: f64) -> f64 {
        let above = if lo_inclusive {
            value >= lo
        } else {
            value > lo
        };
        if !value.is_finite() || !above || value >= hi {
            let open = if lo_inclusive { "[" } else { "(" };
            self.add(
                field,
                format!("must be a number in {open}{lo}, {hi}) (got {value})"),
            );
        }
        value
    }

    /// Records that `field` does not belong with `owner`'s choice.
    fn not_for<T>(&mut self, value: &Option<T>, field: &str, owner: &str) {
        if value.is_some() {
            self.add(field, format!("is not allowed with {owner}"));
        }
    }
}

/// Picks `value` among `choices`, recording a problem that lists them otherwise.
fn choose<T: Copy>(
    problems: &mut Problems,
    field: &str,
    value: &str,
    choices: &[(&str, T)],
) -> Option<T> {
    let found = choices
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v);
    if found.is_none() {
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        problems.add(
            field,
            format!("must be one of {} (got \"{value}\")", names.join(", ")),
        );
    }
    found
}

const MAX_NAME_CHARS: usize = 200;
const MAX_HIDDEN_LAYERS: usize = 16;
const MAX_WIDTH: usize = 16_384;
const MAX_KEEP_LAST: u32 = 100;

impl JobSpec {
    /// Parses a request body strictly; the error names the field path of the first problem.
    pub fn from_json(body: &[u8]) -> Result<Self, SpecParseError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let spec: JobSpec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                SpecParseError::Syntax(inner.to_string())
            } else {
                let field = if path == "." {
                    "body".to_string()
                } else {
                    path
                };
                SpecParseError::Field(FieldError {
                    field,
                    message: inner.to_string(),
                })
            }
        })?;
        de.end()
            .map_err(|e| SpecParseError::Syntax(e.to_string()))?;
        Ok(spec)
    }

    /// Fills defaults and checks every field against `limits`.
    pub fn validate(self, limits: &Limits<'_>) -> Result<ValidJobSpec, Vec<FieldError>> {
        let config = limits.config;
        let mut p = Problems::default();

        let name = self
            .name
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        if let Some(n) = &name {
            if n.chars().count() > MAX_NAME_CHARS {
                p.add(
                    "name",
                    format!("must be at most {MAX_NAME_CHARS} characters"),
                );
            }
        }

        let data = validate_data(self.data, config, &mut p);
        let model = validate_model(self.model, &mut p);
        let training = validate_training(self.training.unwrap_or_default(), config, &mut p);

        let backend_name = self.backend.unwrap_or_else(|| "cpu".to_string());
        let backend = choose(&mut p, "backend", &backend_name, BackendKind::AVAILABLE);

        let ck = self.checkpoint.unwrap_or_default();
        let checkpoint = CheckpointPolicy {
            every: p.range(
                "checkpoint.every",
                ck.every.unwrap_or(1),
                1,
                config.max_epochs,
            ),
            keep_last: p.range(
                "checkpoint.keep_last",
                ck.keep_last.unwrap_or(3),
                1,
                MAX_KEEP_LAST,
            ),
        };

        if let (Some(model), Some(data)) = (&model, &data) {
            let params = model.parameter_count(data.source.shape());
            if params > config.max_parameters {
                p.add(
                    "model",
                    format!(
                        "has {params} parameters, more than this server's limit of {}",
                        config.max_parameters
                    ),
                );
            }
            if let Err(message) = data.source.check_available(&config.datasets_dir()) {
                p.add("data.dataset", message);
            }
        }

        match (model, data, backend, p.0.is_empty()) {
            (Some(model), Some(data), Some(backend), true) => Ok(ValidJobSpec {
                name,
                model,
                data,
                training,
                backend,
                checkpoint,
            }),
            _ => Err(p.0),
        }
    }
}

fn validate_model(raw: Option<RawModel>, p: &mut Problems) -> Option<ModelSpec> {
    let Some(raw) = raw else {
        p.add("model", "is required, e.g. {\"kind\": \"lenet_bn\"}");
        return None;
    };
    let Some(kind) = raw.kind.as_deref() else {
        p.add("model.kind", "is required: one of lenet_bn, mlp_bn");
        return None;
    };
    let batch_norm = raw.batch_norm.unwrap_or(true);
    match choose(p, "model.kind", kind, &[("lenet_bn", 0), ("mlp_bn", 1)])? {
        0 => {
            p.not_for(&raw.hidden, "model.hidden", "model.kind = lenet_bn");
            p.not_for(&raw.activation, "model.activation", "model.kind = lenet_bn");
            Some(ModelSpec::LenetBn { batch_norm })
        }
        _ => {
            let hidden = raw.hidden.unwrap_or_else(|| vec![256, 128]);
            if hidden.is_empty() || hidden.len() > MAX_HIDDEN_LAYERS {
                p.add(
                    "model.hidden",
                    format!("must list between 1 and {MAX_HIDDEN_LAYERS} layer widths"),
                );
            }
            for (i, width) in hidden.iter().enumerate() {
                p.range(&format!("model.hidden[{i}]"), *width, 1, MAX_WIDTH);
            }
            let activation = raw.activation.as_deref().unwrap_or("relu");
            let activation = choose(
                p,
                "model.activation",
                activation,
                &[("relu", Activation::Relu), ("sigmoid", Activation::Sigmoid)],
            )?;
            Some(ModelSpec::MlpBn {
                hidden,
                activation,
                batch_norm,
            })
        }
    }
}

fn validate_data(raw: Option<RawData>, config: &Config, p: &mut Problems) -> Option<DataSpec> {
    let Some(raw) = raw else {
        p.add("data", "is required, e.g. {\"dataset\": \"fashion_mnist\"}");
        return None;
    };
    let Some(dataset) = raw.dataset.as_deref() else {
        p.add(
            "data.dataset",
            "is required: one of fashion_mnist, synthetic_images",
        );
        return None;
    };
    for (field, limit) in [
        ("data.limit_train", raw.limit_train),
        ("data.limit_test", raw.limit_test),
    ] {
        if limit == Some(0) {
            p.add(
                field,
                "must be at least 1 (leave it out to use every example)",
            );
        }
    }
    let source = match choose(
        p,
        "data.dataset",
        dataset,
        &[("fashion_mnist", 0), ("synthetic_images", 1)],
    )? {
        0 => {
            let owner = "data.dataset = fashion_mnist";
            p.not_for(&raw.train_size, "data.train_size", owner);
            p.not_for(&raw.test_size, "data.test_size", owner);
            p.not_for(&raw.seed, "data.seed", owner);
            DatasetSpec::FashionMnist
        }
        _ => {
            let cap = config.max_synthetic_examples;
            let train_size = p.range("data.train_size", raw.train_size.unwrap_or(2000), 1, cap);
            let test_size = p.range("data.test_size", raw.test_size.unwrap_or(500), 1, cap);
            if train_size + test_size > cap {
                p.add(
                    "data",
                    format!("train_size + test_size must be at most {cap}"),
                );
            }
            DatasetSpec::SyntheticImages {
                train_size,
                test_size,
                seed: raw.seed.unwrap_or(0),
            }
        }
    };
    Some(DataSpec {
        source,
        limit_train: raw.limit_train,
        limit_test: raw.limit_test,
    })
}

fn validate_training(raw: RawTraining, config: &Config, p: &mut Problems) -> TrainingSpec {
    let epochs = p.range(
        "training.epochs",
        raw.epochs.unwrap_or(10),
        1,
        config.max_epochs,
    );
    let batch_size = p.range(
        "training.batch_size",
        raw.batch_size.unwrap_or(256),
        1,
        config.max_batch_size,
    );
    let log_every = p.range(
        "training.log_every",
        raw.log_every.unwrap_or(10),
        1,
        1_000_000,
    );
    let o = raw.optimizer.unwrap_or_default();
    let kind = o.kind.as_deref().unwrap_or("sgd");
    let owner = "training.optimizer.kind = sgd";
    let optimizer = match choose(
        p,
        "training.optimizer.kind",
        kind,
        &[("sgd", 0), ("adam", 1)],
    ) {
        Some(1) => {
            p.not_for(
                &o.momentum,
                "training.optimizer.momentum",
                "training.optimizer.kind = adam",
            );
            OptimizerSpec::Adam {
                lr: p.float(
                    "training.optimizer.lr",
                    o.lr.unwrap_or(0.001),
                    0.0,
                    false,
                    100.0,
                ),
                beta1: p.float(
                    "training.optimizer.beta1",
                    o.beta1.unwrap_or(0.9),
                    0.0,
                    true,
                    1.0,
                ),
                beta2: p.float(
                    "training.optimizer.beta2",
                    o.beta2.unwrap_or(0.999),
                    0.0,
                    true,
                    1.0,
                ),
                epsilon: p.float(
                    "training.optimizer.epsilon",
                    o.epsilon.unwrap_or(1e-8),
                    0.0,
                    false,
                    1.0,
                ),
                weight_decay: p.float(
                    "training.optimizer.weight_decay",
                    o.weight_decay.unwrap_or(0.0),
                    0.0,
                    true,
                    1.0,
                ),
            }
        }
        _ => {
            p.not_for(&o.beta1, "training.optimizer.beta1", owner);
            p.not_for(&o.beta2, "training.optimizer.beta2", owner);
            p.not_for(&o.epsilon, "training.optimizer.epsilon", owner);
            OptimizerSpec::Sgd {
                lr: p.float(
                    "training.optimizer.lr",
                    o.lr.unwrap_or(0.1),
                    0.0,
                    false,
                    100.0,
                ),
                momentum: p.float(
                    "training.optimizer.momentum",
                    o.momentum.unwrap_or(0.0),
                    0.0,
                    true,
                    1.0,
                ),
                weight_decay: p.float(
                    "training.optimizer.weight_decay",
                    o.weight_decay.unwrap_or(0.0),
                    0.0,
                    true,
                    1.0,
                ),
            }
        }
    };
    TrainingSpec {
        epochs,
        batch_size,
        seed: raw.seed.unwrap_or(42),
        optimizer,
        log_every,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Config {
        Config::with_data_dir(std::env::temp_dir().join("kiln-spec-tests"))
    }

    fn validate(json: &str) -> Result<ValidJobSpec, Vec<FieldError>> {
        let config = limits();
        JobSpec::from_json(json.as_bytes())
            .expect("parses")
            .validate(&Limits { config: &config })
    }

    #[test]
    fn defaults_fill_a_minimal_spec() {
        let spec =
            validate(r#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images"}}"#)
                .unwrap();
        assert_eq!(spec.model, ModelSpec::LenetBn { batch_norm: true });
        assert_eq!(spec.training.epochs, 10);
        assert_eq!(spec.training.batch_size, 256);
        assert_eq!(spec.backend, BackendKind::Cpu);
        assert_eq!(
            spec.checkpoint,
            CheckpointPolicy {
                every: 1,
                keep_last: 3
            }
        );
        assert_eq!(
            spec.data.source,
            DatasetSpec::SyntheticImages {
                train_size: 2000,
                test_size: 500,
                seed: 0
            }
        );
    }

    #[test]
    fn the_valid_spec_round_trips_through_the_raw_parser() {
        let spec = validate(
            r#"{"model":{"kind":"mlp_bn","hidden":[64],"activation":"sigmoid"},
                "data":{"dataset":"synthetic_images","train_size":10,"test_size":5,"limit_train":8},
                "training":{"optimizer":{"kind":"adam","lr":0.01}},"backend":"ndarray"}"#,
        )
        .unwrap();
        let json = serde_json::to_vec(&spec).unwrap();
        let again = JobSpec::from_json(&json)
            .unwrap()
            .validate(&Limits { config: &limits() })
            .unwrap();
        assert_eq!(spec, again);
    }

    #[test]
    fn every_problem_is_reported_with_its_field_and_limit() {
        let errors = validate(
            r#"{"model":{"kind":"lenet_bn","hidden":[3]},"data":{"dataset":"synthetic_images","limit_test":0},
                "training":{"batch_size":0,"epochs":5000,"optimizer":{"lr":-1}},"backend":"tpu"}"#,
        )
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let has = |needle: &str| text.iter().any(|t| t.contains(needle));
        assert!(
            has("training.batch_size must be between 1 and 4096"),
            "{text:?}"
        );
        assert!(
            has("training.epochs must be between 1 and 1000"),
            "{text:?}"
        );
        assert!(
            has("training.optimizer.lr must be a number in (0, 100)"),
            "{text:?}"
        );
        assert!(has("backend must be one of cpu, ndarray"), "{text:?}");
        assert!(
            has("model.hidden is not allowed with model.kind = lenet_bn"),
            "{text:?}"
        );
        assert!(has("data.limit_test must be at least 1"), "{text:?}");
    }

    #[test]
    fn unknown_fields_and_wrong_types_name_their_path() {
        let err = JobSpec::from_json(br#"{"training":{"batch_sise":3}}"#).unwrap_err();
        match err {
            SpecParseError::Field(e) => {
                assert_eq!(e.field, "training.batch_sise");
                assert!(e.message.contains("unknown field"), "{}", e.message);
            }
            other => panic!("expected a field error, got {other:?}"),
        }
        let err = JobSpec::from_json(br#"{"training":{"epochs":"ten"}}"#).unwrap_err();
        assert!(
            matches!(err, SpecParseError::Field(ref e) if e.field == "training.epochs"),
            "{err:?}"
        );
        assert!(matches!(
            JobSpec::from_json(b"{\"model\":"),
            Err(SpecParseError::Syntax(_))
        ));
    }

    #[test]
    fn models_over_the_parameter_cap_are_refused() {
        let mut config = limits();
        config.max_parameters = 1000;
        let errors = JobSpec::from_json(
            br#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images"}}"#,
        )
        .unwrap()
        .validate(&Limits { config: &config })
        .unwrap_err();
        assert_eq!(errors[0].field, "model");
        assert!(
            errors[0].message.contains("44878 parameters"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn every_example_job_file_is_a_valid_job() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let body = std::fs::read(&path).unwrap();
            let spec =
                JobSpec::from_json(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Err(errors) = spec.validate(&Limits { config: &limits() }) {
                // Only a missing data set may stop an example on this machine.
                assert!(
                    errors
                        .iter()
                        .all(|e| e.field == "data.dataset" && e.message.contains("not installed")),
                    "{}: {errors:?}",
                    path.display()
                );
            }
            seen += 1;
        }
        assert!(seen >= 3);
    }
}
