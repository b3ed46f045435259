//! The store's side of the training engine's reporting port: a [`Recorder`] is the
//! [`RunLog`] of one job's run, and writes what the engine reports — progress, step points, epoch
//! rows, the checkpoint index, the parameter count, the first step's time, warnings — to the
//! [`Store`].
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
            step: info.step,
            dir: PathBuf::from(dir),
            score: info.metrics.as_ref().and_then(EpochMetrics::score),
            bytes: info.bytes,
            sha256: info.sha256,
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

    fn warn(&self, message: &str) -> Result<(), ReportError> {
        tracing::warn!(job = %self.id, message, "job warning");
        self.store.add_warning(self.id, message).map_err(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::jobs::shared::Shared;

    #[test]
    fn warnings_are_kept_in_order_and_shown_with_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let id = shared
            .store_job_for_test(br#"{"model":{"kind":"mlp_bn"},"data":{"dataset":"synthetic_images"}}"#);
        assert!(shared.store.job(id).unwrap().unwrap().warnings.is_empty());

        let log = Recorder { store: &shared.store, id };
        log.warn("checkpoint 3 (step 12) is damaged").unwrap();
        log.warn("a \"quoted\" second one").unwrap();
        let reopened = Shared::open(shared.config.clone()).unwrap();
        let job = reopened.store.job(id).unwrap().unwrap();
        assert_eq!(job.warnings, ["checkpoint 3 (step 12) is damaged", "a \"quoted\" second one"]);
    }
}
