//! A checkpoint's weights for PyTorch: `GET /jobs/{id}/checkpoints/{checkpoint_id}?format=
//! safetensors` as an operation of [`Jobs`].
//!
//! The checkpoint is checked against its index as a download is, read into the job's model on
//! the CPU (weights an older kiln named otherwise included) and written out under PyTorch's
//! names ([`crate::train::checkpoint::export`]), with the job's definition in the file's
//! metadata. It holds a model in memory, so it takes one of the `--max-generations` slots while
//! it converts; a checkpoint that training prunes meanwhile is a 404, as for a download.
//! Image classifiers only, for now: a language model is answered 409 and keeps its burnpack.

use std::collections::HashMap;

use burn::tensor::Device;

use super::checkpoints;
use super::store::StoreError;
use super::{CheckpointInfo, JobError, JobId, Jobs};
use crate::definition::Task;
use crate::train::checkpoint::{self as checkpoint_files, export};

impl Jobs {
    /// The weights of checkpoint `checkpoint_id` of job `id` as a safetensors file with
    /// PyTorch's names. Blocking: it reads and converts the whole model, so call it off the
    /// async runtime.
    pub fn checkpoint_safetensors(
        &self,
        id: JobId,
        checkpoint_id: i64,
    ) -> Result<(CheckpointInfo, Vec<u8>), JobError> {
        let job = self.get(id)?;
        let (model, data) = match job.spec.task() {
            Some(Task::Classify { model, data }) => (model, data),
            Some(Task::Language { .. }) => {
                return Err(JobError::Conflict(format!(
                    "job {id} trains a language model; safetensors export is for image classifiers so \
                     far: download the checkpoint without format (a burnpack)"
                )));
            }
            None => {
                return Err(JobError::Store(StoreError::Corrupt(format!(
                    "job {id}: its model and data do not pair"
                ))));
            }
        };
        let (at, _) = self.verified_checkpoint(id, checkpoint_id)?;
        let _slot = self.model_slot()?;
        let read = || {
            let manifest = checkpoint_files::manifest(&at.dir)?;
            let fresh = model.init(data.input_shape(), data.source.classes(), &Device::flex());
            Ok((checkpoint_files::read_weights(&at.dir, &manifest, fresh)?, manifest))
        };
        let (weights, manifest) = read().map_err(|e| match e {
            // Pruned by training since it was verified: gone, not damaged.
            _ if !at.dir.exists() && matches!(self.pruned(id, checkpoint_id), Ok(true)) => {
                JobError::NotFound(format!("checkpoint {checkpoint_id} of job {id}"))
            }
            e => checkpoints::damaged(self.config(), id, checkpoint_id, e),
        })?;
        let definition = serde_json::to_string(&manifest.spec).expect("a job definition serialises");
        let metadata = HashMap::from([
            // safetensors.torch writes "pt" here.
            ("format".to_string(), "pt".to_string()),
            ("kiln.job".to_string(), id.to_string()),
            ("kiln.checkpoint".to_string(), checkpoint_id.to_string()),
            ("kiln.step".to_string(), manifest.position.step.to_string()),
            ("kiln.definition".to_string(), definition),
        ]);
        Ok((at.info, export::safetensors(&weights, manifest.position.step, metadata)))
    }
}
