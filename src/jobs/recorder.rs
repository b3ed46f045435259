//! The store's side of the training engine's reporting port: a [`Recorder`] is the
//! [`RunLog`] of one job's run, and writes what the engine reports — progress, step points, epoch
//! rows, the checkpoint index, the parameter count, the first step's time — to the [`Store`].
//! The checkpoint files are the engine's; the index rows are written here.

use std::path::PathBuf;

use super::JobId;
use super::store::{NewCheckpoint, Store, StoreError};
use crate::metrics::{EpochMetrics, Progress, StepPoint};
use crate::train::report::{KeptCheckpoint, ReportError, RunLog, SavedCheckpoint};

/// Records one job's run in the store.
pub struct Recorder<'a> {
    pub store: &'a Store,
    pub id: JobId,
}

fn report(e: StoreError) -> ReportError {
    ReportError(e.to_string())
}

impl RunLog for Recorder<'_> {
    fn checkpoints(&self) -> Result<Vec<KeptCheckpoint>, ReportError> {
        let rows = self.store.checkpoints(self.id).map_err(report)?;
        let kept = rows.into_iter().map(|(info, dir)| KeptCheckpoint {
            id: info.id,
            dir: PathBuf::from(dir),
            score: info.metrics.as_ref().and_then(EpochMetrics::score),
        });
        Ok(kept.collect())
    }

    fn begin(&self, progress: Progress) -> Result<(), ReportError> {
        self.store.begin_run(self.id, progress).map_err(report)
    }

    fn parameters(&self, count: u64) -> Result<(), ReportError> {
        self.store.set_parameters(self.id, count).map_err(report)
    }

    fn first_step(&self, seconds: f64) -> Result<(), ReportError> {
        self.store.set_first_step_seconds(self.id, seconds).map_err(report)
    }

    fn steps(&self, points: &[StepPoint], progress: Progress) -> Result<(), ReportError> {
        self.store.record_steps(self.id, points, progress).map_err(report)
    }

    fn epoch(&self, metrics: &EpochMetrics, progress: Progress) -> Result<(), ReportError> {
        self.store.record_epoch(self.id, metrics, progress).map_err(report)
    }

    fn checkpoint_saved(&self, checkpoint: &SavedCheckpoint) -> Result<i64, ReportError> {
        let dir = checkpoint.dir.display().to_string();
        let new = NewCheckpoint {
            dir: &dir,
            epoch: checkpoint.epoch,
            step: checkpoint.step,
            bytes: checkpoint.bytes,
            sha256: &checkpoint.sha256,
            metrics: checkpoint.metrics.as_ref(),
        };
        self.store.insert_checkpoint(self.id, &new).map_err(report)
    }

    fn checkpoint_dropped(&self, id: i64) -> Result<(), ReportError> {
        self.store.delete_checkpoint(id).map_err(report)
    }
}
