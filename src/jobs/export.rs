//! A checkpoint's weights for PyTorch: `GET /jobs/{id}/checkpoints/{checkpoint_id}?format=
//! safetensors` as an operation of [`Jobs`].
//!
//! The checkpoint is checked against its index as a download is, read into the job's model on
//! the CPU (weights an older kiln named otherwise included) and written out under PyTorch's
//! names ([`crate::train::checkpoint::export`]), with the job's definition in the file's
//! metadata — a classifier's class names and layer list, a language model's vocabulary. It
//! holds a model in memory, so it takes one of the `--max-generations` slots while it converts;
//! a checkpoint that training prunes meanwhile is a 404, as for a download.

use std::collections::HashMap;

use burn::tensor::Device;

use super::checkpoints;
use super::generation::load_language_model;
use super::predict::read_classifier;
use super::store::StoreError;
use super::{CheckpointInfo, JobError, JobId, Jobs};
use crate::definition::{ImageDataSpec, Task};
use crate::models::ClassifierSpec;
use crate::train::checkpoint::{self as checkpoint_files, CheckpointError, Manifest, export};

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
        let Some(task) = job.spec.task() else {
            return Err(JobError::Store(StoreError::Corrupt(format!(
                "job {id}: its model and data do not pair"
            ))));
        };
        let (at, _) = self.verified_checkpoint(id, checkpoint_id)?;
        let _slot = self.model_slot()?;
        let read = || -> Result<Vec<u8>, CheckpointError> {
            let manifest = checkpoint_files::manifest(&at.dir)?;
            let metadata = |extra: Vec<(&str, String)>| metadata(id, checkpoint_id, &manifest, extra);
            match task {
                Task::Classify { model, data } => {
                    let (weights, names) = read_classifier(&at.dir, model, data)?;
                    let extra = classifier_metadata(model, data, &names, &at.dir)?;
                    Ok(export::safetensors(&weights, manifest.position.step, metadata(extra)))
                }
                Task::Language { model, .. } => {
                    let (lm, vocab) = load_language_model(&at.dir, model, &Device::flex())?;
                    let vocab = serde_json::to_string(&vocab).expect("a vocabulary serialises");
                    Ok(export::language::safetensors(&lm, metadata(vec![("kiln.vocab", vocab)])))
                }
            }
        };
        let file = read().map_err(|e| match e {
            // Pruned by training since it was verified: gone, not damaged.
            _ if !at.dir.exists() && matches!(self.pruned(id, checkpoint_id), Ok(true)) => {
                JobError::NotFound(format!("checkpoint {checkpoint_id} of job {id}"))
            }
            e => checkpoints::damaged(self.config(), id, checkpoint_id, e),
        })?;
        Ok((at.info, file))
    }
}

/// The metadata of every export: the job, the checkpoint, its step and the definition, and `extra`.
fn metadata(
    id: JobId,
    checkpoint_id: i64,
    manifest: &Manifest,
    extra: Vec<(&str, String)>,
) -> HashMap<String, String> {
    let definition = serde_json::to_string(&manifest.spec).expect("a job definition serialises");
    let common = [
        // safetensors.torch writes "pt" here.
        ("format", "pt".to_string()),
        ("kiln.job", id.to_string()),
        ("kiln.checkpoint", checkpoint_id.to_string()),
        ("kiln.step", manifest.position.step.to_string()),
        ("kiln.definition", definition),
    ];
    common.into_iter().chain(extra).map(|(key, value)| (key.to_string(), value)).collect()
}

/// A classifier's class names (`kiln.classes`) and its layers as built (`kiln.layers`: a
/// built-in kind's preset list written out), for a reader that builds the network itself.
fn classifier_metadata(
    model: &ClassifierSpec,
    data: &ImageDataSpec,
    classes: &[String],
    dir: &std::path::Path,
) -> Result<Vec<(&'static str, String)>, CheckpointError> {
    let plan = model.layer_plan(data.input_shape(), data.source.classes()).map_err(|problems| {
        CheckpointError::Invalid {
            path: dir.to_path_buf(),
            reason: format!("the model does not fit its data: {problems:?}"),
        }
    })?;
    let layers: Vec<_> = plan.layers.iter().map(|layer| &layer.spec).collect();
    Ok(vec![
        ("kiln.classes", serde_json::to_string(classes).expect("class names serialise")),
        ("kiln.layers", serde_json::to_string(&layers).expect("layers serialise")),
    ])
}
