//! Text from a language-model job: `POST /jobs/{id}/generate` as an operation of [`Jobs`]; and
//! the bounds that generation shares with prediction ([`super::predict`]) and export: the slots
//! and the cache of loaded models ([`Generation`]), and how a checkpoint's model is found, read
//! and kept ([`Jobs::loaded_model`]).
//!
//! The request is validated once ([`crate::definition::generate`]); the model is read from the job's
//! newest checkpoint (or the one the request names) onto the CPU and continues the prefix
//! ([`crate::train::generate`]). It works while the job trains: a checkpoint pruned between the
//! listing and the read is looked up again once.
//!
//! The checkpoint is checked against its index before it is loaded, as a download is (every
//! file's size and SHA-256 where recorded), and a checkpoint that cannot be used is reported as
//! what it is: gone from the index (pruned), a file missing from the data dir, damaged, or
//! unreadable (see [`super::checkpoints`]). Generation is bounded: at most `--max-generations` run at once (one more is answered 503 with
//! `Retry-After`), and the `--generation-cache` most recently used models stay loaded, keyed by
//! job and checkpoint, so repeated requests do not read the checkpoint again.

use std::path::Path;
use std::sync::Mutex;

use tokio::sync::Semaphore;

use serde::Serialize;
use utoipa::ToSchema;

use super::checkpoints::{self, Located};
use super::{CheckpointInfo, JobError, JobId, Jobs};
use crate::definition::generate::GenerateRequest;
use crate::definition::parse_strict;
use crate::definition::{FieldError, Task};
use crate::models::{Classifier, LanguageModelSpec, RnnLm};
use crate::text::Vocab;
use crate::train::checkpoint::{self as checkpoint_files, CheckpointError};
use crate::train::generate;

/// The answer of `POST /jobs/{id}/generate`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Generated {
    /// The prefix as the model read it, after normalisation.
    pub prompt: String,
    /// The continuation the model generated.
    pub text: String,
    /// Id of the checkpoint that generated it.
    pub checkpoint: i64,
    /// Epochs the model had trained for at that checkpoint.
    pub epoch: u32,
    pub seed: u64,
}

/// A model read from a checkpoint, with what its outputs mean.
#[derive(Clone)]
pub(super) enum Loaded {
    /// A language model and its vocabulary (boxed: the cache holds either kind).
    Language(Box<RnnLm>, Vocab),
    /// An image classifier and its class names, in label order.
    Classifier(Classifier, Vec<String>),
}

/// The bounds of generation: its slots and its cache of loaded models.
pub struct Generation {
    slots: Semaphore,
    /// Newest use last; at most `capacity` entries.
    cache: Mutex<Vec<((JobId, i64), Loaded)>>,
    capacity: usize,
}

impl Generation {
    /// The bounds `--max-generations` and `--generation-cache` set.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            slots: Semaphore::new(config.max_generations as usize),
            cache: Mutex::new(Vec::new()),
            capacity: config.generation_cache,
        }
    }

    fn cached(&self, key: (JobId, i64)) -> Option<Loaded> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let at = cache.iter().position(|(k, _)| *k == key)?;
        let entry = cache.remove(at);
        let loaded = entry.1.clone();
        cache.push(entry);
        Some(loaded)
    }

    fn keep(&self, key: (JobId, i64), loaded: &Loaded) {
        if self.capacity == 0 {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(k, _)| *k != key);
        if cache.len() >= self.capacity {
            cache.remove(0);
        }
        cache.push((key, loaded.clone()));
    }

    /// Drops every model of job `id` (deleted).
    pub fn forget(&self, id: JobId) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).retain(|((job, _), _)| *job != id);
    }

    /// Models loaded now.
    pub fn cached_models(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Jobs {
    /// One of the `--max-generations` slots for work that loads a checkpoint's model outside
    /// training (generation, prediction, export), or 503 with `Retry-After` when all are taken.
    pub(super) fn model_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, JobError> {
        self.generation.slots.try_acquire().map_err(|_| JobError::Busy {
            what: format!(
                "{} generations, predictions or exports are running, this server's limit (--max-generations)",
                self.config().max_generations
            ),
            retry_after_secs: 1,
        })
    }

    /// Continues a prefix with a language-model job's newest checkpoint, or the one the request
    /// names. Blocking: it runs the model on the CPU, so call it off the async runtime.
    pub fn generate(&self, id: JobId, body: &[u8]) -> Result<Generated, JobError> {
        let job = self.get(id)?;
        let Some(Task::Language { model, data }) = job.spec.task() else {
            return Err(JobError::Conflict(format!(
                "job {id} trains an image classifier; only language models (model.kind = rnn_lm) generate text"
            )));
        };
        let request =
            parse_strict::<GenerateRequest>(body)?.validate(self.config()).map_err(JobError::Invalid)?;
        let _slot = self.model_slot()?;
        // Generation runs on the CPU whatever the job trained on: checkpoints are portable, and a
        // GPU stays with training.
        let device = burn::tensor::Device::flex();
        let (info, loaded) = self.loaded_model(id, request.checkpoint, |dir| {
            let (lm, vocab) = load_language_model(dir, model, &device)?;
            Ok(Loaded::Language(Box::new(lm), vocab))
        })?;
        let Loaded::Language(lm, vocab) = loaded else { unreachable!("a language model's job loads one") };
        let (prompt, text) = generate::generate(&lm, &vocab, data, &request, &device)
            .map_err(|e| JobError::Invalid(vec![e]))?;
        Ok(Generated { prompt, text, checkpoint: info.id, epoch: info.epoch, seed: request.seed })
    }
}

impl Jobs {
    /// The checkpoint a generation reads: the one `wanted`, or the newest. A `wanted` one the
    /// job does not have (never, or no longer) is a problem with the request's `checkpoint`
    /// field, a 422: the job, the resource, is there.
    fn pick_checkpoint(&self, id: JobId, wanted: Option<i64>) -> Result<Located, JobError> {
        match wanted {
            Some(wanted) => self.indexed_checkpoint(id, wanted).map_err(|e| match e {
                JobError::NotFound(what) => JobError::Invalid(vec![FieldError {
                    field: "checkpoint".into(),
                    message: format!(
                        "is not one of this job's: {what} (GET /jobs/{id}/checkpoints lists them; training \
                         keeps the newest checkpoint.keep_last and the best)"
                    ),
                }]),
                other => other,
            }),
            None => checkpoints::located(self.config(), &self.shared.store, id)?
                .into_iter()
                .last()
                .ok_or_else(|| self.no_checkpoint_yet(id)),
        }
    }

    /// Why job `id` cannot generate yet: when its first checkpoint is written (every
    /// `checkpoint.every` epochs and after the last), and how far it is.
    fn no_checkpoint_yet(&self, id: JobId) -> JobError {
        let when = match self.get(id) {
            Ok(job) => {
                let (epochs, done) = (job.spec.training.epochs, job.progress.epoch);
                let first = job.spec.checkpoint.every.min(epochs);
                let status = job.status.as_str();
                format!(
                    "its first is written at the end of epoch {first} of {epochs} (checkpoint.every: {}); \
                     it is {status} with {done} epochs done",
                    job.spec.checkpoint.every
                )
            }
            Err(_) => "it can answer once its first checkpoint is written".to_string(),
        };
        JobError::Conflict(format!("job {id} has no checkpoint yet: {when}"))
    }

    /// The model of checkpoint `wanted` of job `id`, or of its newest: from the cache, or
    /// checked as a download is, read by `read` from the checkpoint's directory, and kept.
    /// Training prunes old checkpoints while this reads one: a checkpoint gone between the
    /// listing and the read is looked up again once.
    pub(super) fn loaded_model(
        &self,
        id: JobId,
        wanted: Option<i64>,
        read: impl Fn(&Path) -> Result<Loaded, CheckpointError>,
    ) -> Result<(CheckpointInfo, Loaded), JobError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let at = self.pick_checkpoint(id, wanted)?;
            if let Some(loaded) = self.generation.cached((id, at.info.id)) {
                return Ok((at.info, loaded));
            }
            let loaded = checkpoints::verify(self.config(), id, &at).and_then(|_| {
                read(&at.dir).map_err(|e| checkpoints::damaged(self.config(), id, at.info.id, e))
            });
            match loaded {
                Ok(loaded) => {
                    self.generation.keep((id, at.info.id), &loaded);
                    return Ok((at.info, loaded));
                }
                Err(e) if self.pruned(id, at.info.id)? => {
                    if attempts < 2 {
                        continue;
                    }
                    tracing::debug!(job = %id, error = %e, "a checkpoint pruned while it was read");
                    return Err(JobError::Conflict(format!(
                        "checkpoint {} of job {id} was removed by training (checkpoint.keep_last) while it \
                         was read; retry",
                        at.info.id
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A language model and its vocabulary from the checkpoint in `dir`, on `device`.
pub(super) fn load_language_model(
    dir: &Path,
    model: &LanguageModelSpec,
    device: &burn::tensor::Device,
) -> Result<(RnnLm, Vocab), CheckpointError> {
    let manifest = checkpoint_files::manifest(dir)?;
    let vocab = manifest.vocab.ok_or_else(|| CheckpointError::Invalid {
        path: dir.to_path_buf(),
        reason: "a language model's checkpoint without its vocabulary".into(),
    })?;
    let lm = checkpoint_files::read_model(dir, model.config(vocab.len()).init(device))?;
    Ok((lm, vocab))
}
