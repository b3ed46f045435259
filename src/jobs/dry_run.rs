//! `POST /jobs?dry_run=true`: a definition validated exactly as a submit validates it, answered
//! with what would run — the resolved definition, the model's layers with their shapes and
//! parameters, the totals, the activation memory of a batch and the lane — and nothing stored or
//! queued.

use serde::Serialize;
use utoipa::ToSchema;

use super::{JobError, Jobs};
use crate::definition::{LayerSummary, ValidJobSpec};

/// What a submit of the same definition would run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DryRun {
    /// The definition as it would run, every default filled in (a job's `spec`).
    pub spec: ValidJobSpec,
    /// Trainable parameters; 0 for a language model, whose vocabulary decides them when it
    /// trains.
    pub parameters: u64,
    /// Optimizer steps of the whole job; 0 for a language model, whose corpus decides them.
    pub steps: u64,
    /// The queue it would wait in: `cpu`, or `gpu:N` for the device its `backend` names.
    pub lane: String,
    /// Estimated bytes of activation one training batch keeps (outputs and their gradients),
    /// what `--max-batch-memory-mib` is checked against; absent for a language model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation_bytes: Option<u64>,
    /// An image classifier's layers with their output shapes and parameters (a built-in kind's
    /// as its preset list writes it); absent for a language model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerSummary>>,
}

impl Jobs {
    /// Validates `body` as [`Jobs::submit`] does and says what would run; stores nothing.
    pub fn dry_run(&self, body: &[u8]) -> Result<DryRun, JobError> {
        let valid = self.validate(body)?;
        Ok(DryRun {
            layers: valid.spec.layers(),
            activation_bytes: valid.spec.activation_bytes(),
            parameters: valid.parameters,
            steps: valid.steps,
            lane: valid.lane.to_string(),
            spec: valid.spec,
        })
    }
}
