//! The rules of a job definition: defaults, caps, and which fields go with which choices.
//!
//! The rules particular to image classifiers are in [`images`], those of language models in
//! [`text`]; the shared ones (names, training, checkpoints, caps) are here.
//!
//! Every rule records a [`FieldError`] naming its field path and limit instead of stopping, so
//! one answer lists everything wrong with a definition.

use super::*;
use crate::backend::Backends;
use crate::config::Config;
use crate::models::{Activation, Cell};

mod images;
mod layers;
mod size;
mod text;

use images::{IMAGE_SETS, check_classifier, validate_images};
use size::{check_memory, check_parameters};
use text::{TEXT_SETS, check_language_model, validate_text};

/// What validation checks a spec against: the server's caps and what it can find on disk.
pub struct Limits<'a> {
    pub config: &'a Config,
    /// The devices of this server: a job asking for one it lacks is refused at submit.
    pub backends: &'a Backends,
}

/// Collects every problem of one spec, so a client can fix them all at once.
#[derive(Default)]
pub(super) struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError { field: field.to_string(), message: message.into() });
    }

    /// `value` if it lies in `lo..=hi`, else records the problem and returns `lo`.
    fn range<T: PartialOrd + Copy + std::fmt::Display>(&mut self, field: &str, value: T, lo: T, hi: T) -> T {
        if value < lo || value > hi {
            self.add(field, format!("must be between {lo} and {hi} (got {value})"));
            lo
        } else {
            value
        }
    }

    /// A finite float in `[lo, hi)`, or `(lo, hi)` when `lo` is excluded.
    fn float(&mut self, field: &str, value: f64, lo: f64, lo_inclusive: bool, hi: f64) -> f64 {
        let above = if lo_inclusive { value >= lo } else { value > lo };
        if !value.is_finite() || !above || value >= hi {
            let open = if lo_inclusive { "[" } else { "(" };
            self.add(field, format!("must be a number in {open}{lo}, {hi}) (got {value})"));
        }
        value
    }

    /// A coefficient in `[0, 1)`: momentum, betas, weight decay.
    fn fraction(&mut self, field: &str, value: f64) -> f64 {
        self.float(field, value, 0.0, true, 1.0)
    }

    /// A strictly positive float below `hi`: learning rate, epsilon.
    fn positive(&mut self, field: &str, value: f64, hi: f64) -> f64 {
        self.float(field, value, 0.0, false, hi)
    }

    /// Records that `field` does not belong with `owner`'s choice.
    fn not_for<T>(&mut self, value: &Option<T>, field: &str, owner: &str) {
        if value.is_some() {
            self.add(field, format!("is not allowed with {owner}"));
        }
    }
}

/// Picks `value` among `choices`, recording a problem that lists them otherwise.
fn choose<T: Copy>(problems: &mut Problems, field: &str, value: &str, choices: &[(&str, T)]) -> Option<T> {
    let found = choices.iter().find(|(name, _)| *name == value).map(|(_, v)| *v);
    if found.is_none() {
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        problems.add(field, format!("must be one of {} (got \"{value}\")", names.join(", ")));
    }
    found
}

/// Longest `name` of a job or of an uploaded data set, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 200;
pub(super) const MAX_HIDDEN_LAYERS: usize = 16;
pub(super) const MAX_WIDTH: usize = 16_384;
pub(super) const MAX_STAGES: usize = 8;
pub(super) const MAX_CHANNELS: usize = 4096;
pub(super) const MAX_BLOCKS: usize = 64;
pub(super) const MAX_SEQUENTIAL_LAYERS: usize = 256;

/// Parses a JSON request body strictly into `T`; the error names the field path of the first
/// problem.
pub fn parse_strict<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, SpecParseError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            SpecParseError::Syntax(inner.to_string())
        } else {
            let field = if path == "." { "body".to_string() } else { path };
            SpecParseError::Field(FieldError { field, message: inner.to_string() })
        }
    })?;
    de.end().map_err(|e| SpecParseError::Syntax(e.to_string()))?;
    Ok(value)
}

impl JobSpec {
    /// Parses a request body strictly; the error names the field path of the first problem.
    pub fn from_json(body: &[u8]) -> Result<Self, SpecParseError> {
        parse_strict(body)
    }

    /// Fills defaults and checks every field against `limits`; a valid job carries what
    /// admission needs besides the definition.
    pub fn validate(self, limits: &Limits<'_>) -> Result<ValidJob, Vec<FieldError>> {
        let config = limits.config;
        let mut p = Problems::default();

        let name = self.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        if let Some(n) = &name {
            if n.chars().count() > MAX_NAME_CHARS {
                p.add("name", format!("must be at most {MAX_NAME_CHARS} characters"));
            }
        }

        let kind = self.model.as_ref().and_then(|m| m.kind.as_deref());
        let language = kind == Some("rnn_lm");
        // A model whose own fields are wrong is not measured against its data and the caps: its
        // geometry is not defined (e.g. a ResNet without stages).
        let before = p.0.len();
        let model = validate_model(self.model, &mut p).filter(|_| p.0.len() == before);
        let data = validate_data(self.data, language, config, &mut p);
        let training = validate_training(self.training.unwrap_or_default(), language, config, &mut p);

        let backend_name = self.backend.unwrap_or_else(|| "cpu".to_string());
        let backend = BackendKind::parse(&backend_name);
        let lane = match backend {
            None => {
                p.add("backend", format!("must be one of {} (got \"{backend_name}\")", BackendKind::SYNTAX));
                None
            }
            Some(kind) => limits.backends.lane(kind).map_err(|why| p.add("backend", why)).ok(),
        };

        let ck = self.checkpoint.unwrap_or_default();
        let checkpoint = CheckpointPolicy {
            every: p.range("checkpoint.every", ck.every.unwrap_or(1), 1, config.max_epochs),
            keep_last: p.range(
                "checkpoint.keep_last",
                ck.keep_last.unwrap_or(config.max_keep_last.min(3)),
                1,
                config.max_keep_last,
            ),
        };

        match (&model, &data) {
            (Some(ModelSpec::Classifier(model)), Some(DataSpec::Images(data))) => {
                check_classifier(model, data, &training, &checkpoint, config, &mut p)
            }
            (Some(ModelSpec::Language(model)), Some(DataSpec::Text(data))) => {
                check_language_model(model, data, &training, &checkpoint, config, &mut p)
            }
            _ => {}
        }

        match (model, data, backend, lane, p.0.is_empty()) {
            (Some(model), Some(data), Some(backend), Some(lane), true) => {
                Ok(ValidJob::new(ValidJobSpec { name, model, data, training, backend, checkpoint }, lane))
            }
            _ => Err(p.0),
        }
    }
}

/// Records every `model` field that does not belong to model `kind`.
fn refuse_foreign_fields(kind: &str, raw: &RawModel, p: &mut Problems) {
    let allowed: &[&str] = match kind {
        "lenet_bn" => &["batch_norm"],
        "mlp_bn" => &["batch_norm", "hidden", "activation"],
        "resnet" => &["depth", "widths", "blocks"],
        "densenet" => &["growth_rate", "blocks", "stem_channels"],
        "sequential" => &["layers"],
        _ => &["cell", "hidden", "layers", "embedding"],
    };
    let present = [
        ("batch_norm", raw.batch_norm.is_some()),
        ("hidden", raw.hidden.is_some()),
        ("activation", raw.activation.is_some()),
        ("depth", raw.depth.is_some()),
        ("widths", raw.widths.is_some()),
        ("blocks", raw.blocks.is_some()),
        ("growth_rate", raw.growth_rate.is_some()),
        ("stem_channels", raw.stem_channels.is_some()),
        ("cell", raw.cell.is_some()),
        ("layers", raw.layers.is_some()),
        ("embedding", raw.embedding.is_some()),
    ];
    for (name, _) in present.iter().filter(|(name, set)| *set && !allowed.contains(name)) {
        p.add(&format!("model.{name}"), format!("is not allowed with model.kind = {kind}"));
    }
}

fn validate_model(raw: Option<RawModel>, p: &mut Problems) -> Option<ModelSpec> {
    let Some(raw) = raw else {
        p.add("model", "is required, e.g. {\"kind\": \"lenet_bn\"}");
        return None;
    };
    let kinds = ["lenet_bn", "mlp_bn", "resnet", "densenet", "sequential", "rnn_lm"];
    let Some(kind) = raw.kind.as_deref() else {
        p.add("model.kind", format!("is required: one of {}", kinds.join(", ")));
        return None;
    };
    let kind = choose(p, "model.kind", kind, &kinds.map(|k| (k, k)))?;
    refuse_foreign_fields(kind, &raw, p);
    let batch_norm = raw.batch_norm.unwrap_or(true);
    let list = |p: &mut Problems, field: &str, values: &[usize], max_len: usize, max: usize| {
        if values.is_empty() || values.len() > max_len {
            p.add(field, format!("must list between 1 and {max_len} values"));
        }
        for (i, v) in values.iter().enumerate() {
            p.range(&format!("{field}[{i}]"), *v, 1, max);
        }
    };
    let classifier = match kind {
        "lenet_bn" => ClassifierSpec::LenetBn { batch_norm },
        "mlp_bn" => {
            let hidden = match raw.hidden {
                None => vec![256, 128],
                Some(Hidden::One(width)) => vec![width],
                Some(Hidden::Many(widths)) => widths,
            };
            list(p, "model.hidden", &hidden, MAX_HIDDEN_LAYERS, MAX_WIDTH);
            let activation = raw.activation.as_deref().unwrap_or("relu");
            let activations = [("relu", Activation::Relu), ("sigmoid", Activation::Sigmoid)];
            let activation = choose(p, "model.activation", activation, &activations)?;
            ClassifierSpec::MlpBn { hidden, activation, batch_norm }
        }
        "resnet" => {
            let depth = raw.depth.unwrap_or(18);
            let preset =
                choose(p, "model.depth", &depth.to_string(), &[("18", [2, 2, 2, 2]), ("34", [3, 4, 6, 3])])?;
            let widths = raw.widths.unwrap_or_else(|| vec![64, 128, 256, 512]);
            let blocks = raw.blocks.unwrap_or_else(|| preset.to_vec());
            list(p, "model.widths", &widths, MAX_STAGES, MAX_CHANNELS);
            list(p, "model.blocks", &blocks, MAX_STAGES, MAX_BLOCKS);
            if widths.len() != blocks.len() {
                p.add(
                    "model.blocks",
                    format!("must have one entry per stage of model.widths ({})", widths.len()),
                );
            }
            ClassifierSpec::Resnet { depth, widths, blocks }
        }
        "densenet" => {
            let growth_rate = p.range("model.growth_rate", raw.growth_rate.unwrap_or(32), 1, MAX_CHANNELS);
            let stem_channels =
                p.range("model.stem_channels", raw.stem_channels.unwrap_or(64), 1, MAX_CHANNELS);
            let blocks = raw.blocks.unwrap_or_else(|| vec![4, 4, 4, 4]);
            list(p, "model.blocks", &blocks, MAX_STAGES, MAX_BLOCKS);
            ClassifierSpec::Densenet { growth_rate, blocks, stem_channels }
        }
        "sequential" => ClassifierSpec::Sequential { layers: layers::validate_layers(raw.layers, p) },
        _ => {
            let cell = choose(p, "model.cell", raw.cell.as_deref().unwrap_or("rnn"), &Cell::ALL)?;
            let hidden = match raw.hidden {
                None => 256,
                Some(Hidden::One(width)) => p.range("model.hidden", width, 1, MAX_WIDTH),
                Some(Hidden::Many(_)) => {
                    p.add("model.hidden", "must be one number for model.kind = rnn_lm (e.g. 256)");
                    1
                }
            };
            let layers = match raw.layers {
                None => 1,
                Some(RawLayers::Count(n)) => p.range("model.layers", n, 1, MAX_HIDDEN_LAYERS),
                Some(RawLayers::List(_)) => {
                    p.add("model.layers", "must be one number for model.kind = rnn_lm (e.g. 2)");
                    1
                }
            };
            let embedding = raw.embedding.map(|e| p.range("model.embedding", e, 1, MAX_WIDTH));
            return Some(ModelSpec::Language(LanguageModelSpec::RnnLm { cell, hidden, layers, embedding }));
        }
    };
    Some(ModelSpec::Classifier(classifier))
}

fn validate_data(
    raw: Option<RawData>,
    language: bool,
    config: &Config,
    p: &mut Problems,
) -> Option<DataSpec> {
    let Some(raw) = raw else {
        let example = if language { "time_machine" } else { "fashion_mnist" };
        p.add("data", format!("is required, e.g. {{\"dataset\": \"{example}\"}}"));
        return None;
    };
    let Some(dataset) = raw.dataset.clone() else {
        let text_only = TEXT_SETS.iter().filter(|name| !IMAGE_SETS.contains(name));
        let names: Vec<&str> = IMAGE_SETS.iter().chain(text_only).copied().collect();
        p.add("data.dataset", format!("is required: one of {}", names.join(", ")));
        return None;
    };
    let dataset = dataset.as_str();
    // `uploaded` names an upload of either kind: the model says which it must be.
    let is_text = if dataset == "uploaded" { language } else { TEXT_SETS.contains(&dataset) };
    if IMAGE_SETS.contains(&dataset) || is_text {
        if language && !is_text {
            p.add(
                "data.dataset",
                format!("must be a text corpus for model.kind = rnn_lm: one of {}", TEXT_SETS.join(", ")),
            );
            return None;
        }
        if !language && is_text {
            p.add(
                "data.dataset",
                format!(
                    "must be an image data set for an image classifier: one of {}",
                    IMAGE_SETS.join(", ")
                ),
            );
            return None;
        }
    }
    if is_text {
        validate_text(raw, dataset, p).map(DataSpec::Text)
    } else {
        validate_images(raw, dataset, config, p).map(DataSpec::Images)
    }
}

/// Training settings; defaults follow the book for each kind of model (batch 32, SGD lr 1 and
/// clipping at θ = 1 for language models).
fn validate_training(raw: RawTraining, language: bool, config: &Config, p: &mut Problems) -> TrainingSpec {
    let epochs =
        p.range("training.epochs", raw.epochs.unwrap_or(config.max_epochs.min(10)), 1, config.max_epochs);
    let default_batch = if language { 32 } else { 256 };
    let batch_size =
        p.range("training.batch_size", raw.batch_size.unwrap_or(default_batch), 1, config.max_batch_size);
    let log_every = p.range("training.log_every", raw.log_every.unwrap_or(10), 1, 1_000_000);
    let o = raw.optimizer.unwrap_or_default();
    let kind = o.kind.as_deref().unwrap_or("sgd");
    let choices = [("sgd", false), ("adam", true)];
    let adam = choose(p, "training.optimizer.kind", kind, &choices).unwrap_or(false);
    let f = |name: &str| format!("training.optimizer.{name}");
    let weight_decay = p.fraction(&f("weight_decay"), o.weight_decay.unwrap_or(0.0));
    let optimizer = if adam {
        p.not_for(&o.momentum, &f("momentum"), "training.optimizer.kind = adam");
        OptimizerSpec::Adam {
            lr: p.positive(&f("lr"), o.lr.unwrap_or(0.001), 100.0),
            beta1: p.fraction(&f("beta1"), o.beta1.unwrap_or(0.9)),
            beta2: p.fraction(&f("beta2"), o.beta2.unwrap_or(0.999)),
            epsilon: p.positive(&f("epsilon"), o.epsilon.unwrap_or(1e-8), 1.0),
            weight_decay,
        }
    } else {
        let owner = "training.optimizer.kind = sgd";
        p.not_for(&o.beta1, &f("beta1"), owner);
        p.not_for(&o.beta2, &f("beta2"), owner);
        p.not_for(&o.epsilon, &f("epsilon"), owner);
        OptimizerSpec::Sgd {
            lr: p.positive(&f("lr"), o.lr.unwrap_or(if language { 1.0 } else { 0.1 }), 100.0),
            momentum: p.fraction(&f("momentum"), o.momentum.unwrap_or(0.0)),
            weight_decay,
        }
    };
    let grad_clip_norm = match raw.grad_clip_norm {
        None => language.then_some(1.0),
        Some(theta) => theta,
    };
    let grad_clip_norm = grad_clip_norm.map(|theta| p.positive("training.grad_clip_norm", theta, 1e6));
    TrainingSpec { epochs, batch_size, seed: raw.seed.unwrap_or(42), optimizer, log_every, grad_clip_norm }
}
