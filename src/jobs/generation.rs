//! Text from a language-model job: `POST /jobs/{id}/generate` as an operation of [`Jobs`].
//!
//! The request is validated once ([`crate::definition::generate`]); the model is read from the job's
//! newest checkpoint (or the one the request names) onto the CPU and continues the prefix
//! ([`crate::train::generate`]). It works while the job trains: a checkpoint pruned between the
//! listing and the read is looked up again once.

use std::path::{Path, PathBuf};

use serde::Serialize;
use utoipa::ToSchema;

use super::{JobError, JobId, Jobs};
use crate::definition::Task;
use crate::definition::generate::GenerateRequest;
use crate::definition::parse_strict;
use crate::models::{LanguageModelSpec, RnnLm};
use crate::text::Vocab;
use crate::train::checkpoint::{self, CheckpointError};
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

impl Jobs {
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
        // Training prunes old checkpoints while this reads one: a checkpoint gone between the
        // listing and the read is looked up again once.
        // Generation runs on the CPU whatever the job trained on: checkpoints are portable, and a
        // GPU stays with training.
        let device = burn::tensor::Device::flex();
        let mut attempts = 0;
        let (info, lm, vocab) = loop {
            attempts += 1;
            let checkpoints = self.shared.store.checkpoints(id)?;
            let (info, dir) = match request.checkpoint {
                Some(wanted) => checkpoints
                    .into_iter()
                    .find(|(info, _)| info.id == wanted)
                    .ok_or_else(|| JobError::NotFound(format!("checkpoint {wanted} of job {id}")))?,
                None => checkpoints.into_iter().last().ok_or_else(|| {
                    JobError::Conflict(format!(
                        "job {id} has no checkpoint yet; it can generate once its first epoch is saved"
                    ))
                })?,
            };
            let dir = PathBuf::from(dir);
            match load_language_model(&dir, model, &device) {
                Ok((lm, vocab)) => break (info, lm, vocab),
                Err(_) if !dir.exists() && attempts < 2 => continue,
                Err(_) if !dir.exists() => {
                    return Err(JobError::NotFound(format!(
                        "checkpoint {} of job {id}: training removed it (checkpoint.keep_last)",
                        info.id
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let (prompt, text) = generate::generate(&lm, &vocab, data, &request, &device)
            .map_err(|e| JobError::Invalid(vec![e]))?;
        Ok(Generated { prompt, text, checkpoint: info.id, epoch: info.epoch, seed: request.seed })
    }
}

/// A language model and its vocabulary from the checkpoint in `dir`, on `device`.
fn load_language_model(
    dir: &Path,
    model: &LanguageModelSpec,
    device: &burn::tensor::Device,
) -> Result<(RnnLm, Vocab), CheckpointError> {
    let manifest = checkpoint::manifest(dir)?;
    let vocab = manifest.vocab.ok_or_else(|| CheckpointError::Invalid {
        path: dir.to_path_buf(),
        reason: "a language model's checkpoint without its vocabulary".into(),
    })?;
    let lm = checkpoint::read_model(dir, model.config(vocab.len()).init(device))?;
    Ok((lm, vocab))
}
