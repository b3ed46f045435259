//! The store's side of the training engine's reporting port: a [`Recorder`] is the
//! [`RunLog`] of one job's run under its claim (every write carries it, and is refused once
//! another replica holds the job: see [`super::store::Claim`]), and writes what the engine reports — progress, step points, epoch
//! rows, the checkpoint index, the parameter count, the first step's time, warnings — to the
//! [`Store`] (which records and announces the job's events), and counts epochs, checkpoint bytes
//! and the job's throughput (under its lane and model kind, never its id) in the server's
//! [`Telemetry`].
//! The checkpoint files are the engine's; the index rows are written here, each directory relative
//! to the data dir with the size and SHA-256 of every file, and a dropped checkpoint's directory
//! is recorded as to be removed until the engine says it is. A cancel asked of the job through
//! another replica reaches the run when it records its next steps.

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::shared::Shared;
use super::store::{Claim, NewCheckpoint, Store, StoreError};
use super::{JobId, checkpoints, datadir};
use crate::backend::Lane;
use crate::config::Config;
use crate::definition::{DataSpec, ValidJobSpec};
use crate::metrics::{EpochMetrics, Progress, StepPoint};
use crate::telemetry::{Telemetry, Trainer, Unit};
use crate::train::report::{KeptCheckpoint, ReportError, RunLog, SavedCheckpoint};

/// Records one job's run in the store.
pub struct Recorder<'a> {
    config: &'a Config,
    store: &'a Store,
    telemetry: &'a Telemetry,
    id: JobId,
    claim: Claim,
    /// The run's cancel flag, set when the store says a cancel was asked.
    cancel: &'a AtomicBool,
    /// The labels the job's throughput counts under.
    trainer: Trainer,
    /// What the job's throughput counts, and how many per step.
    unit: Unit,
    per_step: u64,
    /// When the last steps were reported, and the step they reached.
    last: Cell<Option<(Instant, u64)>>,
}

impl<'a> Recorder<'a> {
    /// The log of the run holding `claim` in `lane`, whose definition is `spec` and whose cancel
    /// flag is `cancel`.
    pub(crate) fn new(
        shared: &'a Shared,
        claim: Claim,
        spec: &ValidJobSpec,
        lane: Lane,
        cancel: &'a AtomicBool,
    ) -> Self {
        let id = claim.job;
        let batch = spec.training.batch_size as u64;
        let (unit, per_step) = match &spec.data {
            DataSpec::Text(text) => (Unit::Tokens, batch * text.num_steps as u64),
            DataSpec::Images(_) => (Unit::Examples, batch),
        };
        let trainer = Trainer { lane: lane.to_string(), model: spec.model.kind().to_string() };
        let (config, store, telemetry) = (&shared.config, &shared.store, &shared.telemetry);
        let last = Cell::new(None);
        Self { config, store, telemetry, id, claim, cancel, trainer, unit, per_step, last }
    }

    /// Sets the job's throughput from the steps taken since the last report.
    fn measure(&self, step: u64) {
        let now = Instant::now();
        if let Some((then, before)) = self.last.replace(Some((now, step))) {
            let seconds = now.duration_since(then).as_secs_f64();
            if step > before && seconds > 0.0 {
                let rate = (step - before) as f64 * self.per_step as f64 / seconds;
                self.telemetry.throughput(&self.id.to_string(), &self.trainer, self.unit, rate);
            }
        }
    }
}

fn report(e: StoreError) -> ReportError {
    ReportError(e.to_string())
}

impl RunLog for Recorder<'_> {
    fn checkpoints(&self) -> Result<Vec<KeptCheckpoint>, ReportError> {
        let rows = checkpoints::located(self.config, self.store, self.id).map_err(report)?;
        let kept = rows.into_iter().map(|at| KeptCheckpoint {
            id: at.info.id,
            step: at.info.step,
            dir: at.dir,
            score: at.info.metrics.as_ref().and_then(EpochMetrics::score),
            bytes: at.info.bytes,
            sha256: at.info.sha256,
            files: at.files,
        });
        Ok(kept.collect())
    }

    fn begin(&self, progress: Progress) -> Result<(), ReportError> {
        self.store.begin_run(self.claim, progress).map_err(report)
    }

    fn parameters(&self, count: u64) -> Result<(), ReportError> {
        self.store.set_parameters(self.claim, count).map_err(report)
    }

    fn first_step(&self, seconds: f64) -> Result<(), ReportError> {
        self.store.set_first_step_seconds(self.claim, seconds).map_err(report)
    }

    fn steps(&self, points: &[StepPoint], progress: Progress) -> Result<(), ReportError> {
        if self.store.record_steps(self.claim, points, progress).map_err(report)? {
            self.cancel.store(true, Ordering::SeqCst);
        }
        self.measure(progress.step);
        Ok(())
    }

    fn epoch(&self, metrics: &EpochMetrics, progress: Progress) -> Result<(), ReportError> {
        self.store.record_epoch(self.claim, metrics, progress).map_err(report)?;
        self.telemetry.epoch_completed();
        // The epoch's evaluation is not training: measure the next epoch from its first report.
        self.last.set(None);
        Ok(())
    }

    fn checkpoint_saved(&self, checkpoint: &SavedCheckpoint) -> Result<i64, ReportError> {
        let dir = datadir::checkpoint_dir_of(self.id, &checkpoint.dir);
        let files = checkpoints::files_json(&checkpoint.files);
        let new = NewCheckpoint {
            dir: &dir,
            epoch: checkpoint.epoch,
            step: checkpoint.step,
            bytes: checkpoint.bytes,
            sha256: &checkpoint.sha256,
            files: Some(&files),
            metrics: checkpoint.metrics.as_ref(),
        };
        let id = self.store.insert_checkpoint(self.claim, &new).map_err(report)?;
        self.telemetry.checkpoint_written(checkpoint.bytes);
        Ok(id)
    }

    fn checkpoint_dropped(&self, id: i64) -> Result<(), ReportError> {
        self.store.drop_checkpoint(self.claim, id).map_err(report)
    }

    fn checkpoint_removed(&self, dir: &Path) -> Result<(), ReportError> {
        self.store.removed(&datadir::checkpoint_dir_of(self.id, dir)).map_err(report)
    }

    fn warn(&self, message: &str) -> Result<(), ReportError> {
        tracing::warn!(job = %self.id, message, "job warning");
        self.store.add_warning(self.claim, message).map_err(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::jobs::shared::Shared;
    use crate::telemetry::{Format, Snapshot};

    #[test]
    fn warnings_are_kept_in_order_and_shown_with_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let id = shared
            .store_job_for_test(br#"{"model":{"kind":"mlp_bn"},"data":{"dataset":"synthetic_images"}}"#);
        assert!(shared.store.job(id).unwrap().unwrap().warnings.is_empty());

        let spec = shared.store.job(id).unwrap().unwrap().spec;
        let cancel = AtomicBool::new(false);
        let log = Recorder::new(&shared, shared.claim_for_test(id), &spec, Lane::Cpu, &cancel);
        log.warn("checkpoint 3 (step 12) is damaged").unwrap();
        log.warn("a \"quoted\" second one").unwrap();
        let reopened = Shared::open(shared.config.clone()).unwrap();
        let job = reopened.store.job(id).unwrap().unwrap();
        assert_eq!(job.warnings, ["checkpoint 3 (step 12) is damaged", "a \"quoted\" second one"]);
    }

    #[test]
    fn throughput_is_counted_under_the_lane_and_model_kind_until_the_job_stops() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let body = br#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images"},"training":{"batch_size":8}}"#;
        let id = shared.store_job_for_test(body);
        let spec = shared.store.job(id).unwrap().unwrap().spec;
        let cancel = AtomicBool::new(false);
        let log = Recorder::new(&shared, shared.claim_for_test(id), &spec, Lane::Gpu(1), &cancel);
        let at = |step| Progress { epoch: 0, epochs: 1, step, steps: 100 };
        log.steps(&[], at(0)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        log.steps(&[], at(5)).unwrap();

        let scrape = || Format::Text.convert(shared.telemetry.encode(&Snapshot::default()));
        let text = scrape();
        let series = format!(
            r#"kiln_training_examples_per_second{{replica="{}",lane="gpu:1",model="lenet_bn"}} "#,
            shared.store.replica()
        );
        let line = text.lines().find(|l| l.starts_with(&series)).unwrap_or_else(|| panic!("{text}"));
        let rate: f64 = line[series.len()..].parse().unwrap();
        // 5 steps of 8 examples in a little more than 20 ms: at most 2,000 a second.
        assert!(rate > 0.0 && rate <= 2000.0, "{line}");
        assert!(!text.contains(&id.to_string()), "no series names the job: {text}");

        shared.telemetry.stopped(&id.to_string());
        assert!(!scrape().contains(&series), "{}", scrape());
    }
}
