//! Training: the loop that turns a valid job into a trained model, its metrics and checkpoints.
//!
//! - [`fit`]: the loop of an image classifier — batches, forward, loss, backward, optimizer
//!   step, evaluation.
//! - [`lm`]: the loop of a language model — token batches, carried state, perplexity.
//! - [`clip`]: gradient clipping by the global norm.
//! - [`generate`]: text from a trained language model.
//! - [`metrics`]: what the loops report.
//! - [`checkpoint`]: the files that let a job resume, and that clients download.
//!
//! The loop runs on one worker thread from start to end (see [`crate::jobs::worker`]); it looks
//! at the job's cancel flag and the server's shutdown flag between steps.

pub mod checkpoint;
pub mod clip;
pub mod fit;
pub mod generate;
pub mod lm;
pub mod metrics;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::Module;
use burn::optim::ModuleOptimizer;

use crate::backend::Resolved;
use crate::config::Config;
use crate::data::DataError;
use crate::jobs::JobId;
use crate::jobs::Progress;
use crate::jobs::spec::{DataSpec, Task, ValidJobSpec};
use crate::jobs::store::{Store, StoreError};
use crate::text::Vocab;
use checkpoint::{CheckpointInfo, Position};
use metrics::{EpochMetrics, StepPoint};

/// Burn's parameter initialisation draws from a process-wide generator: seeding and building
/// under one lock makes a job's initial weights depend on its seed alone.
static INIT: Mutex<()> = Mutex::new(());

/// Everything one training run needs.
pub struct TrainJob<'a> {
    pub id: JobId,
    pub spec: &'a ValidJobSpec,
    pub config: &'a Config,
    /// The device of the worker's lane.
    pub device: &'a Resolved,
    pub store: &'a Store,
    /// Set by `POST /jobs/{id}/cancel`.
    pub cancel: &'a AtomicBool,
    /// Set when the server shuts down.
    pub shutdown: &'a AtomicBool,
}

/// How a training run ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every epoch ran.
    Completed,
    /// Stopped at a step boundary on request, after a checkpoint.
    Cancelled,
    /// Stopped at a step boundary for a server shutdown, after a checkpoint; resume later.
    Interrupted,
}

/// Why a training run failed. The text is what the job's `error` shows.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("could not load the data set: {0}")]
    Data(#[from] DataError),
    #[error("{0}")]
    Text(#[from] crate::text::CorpusError),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Corpus(String),
    #[error("the stored job definition pairs a model with data of another kind")]
    Mismatched,
    #[error(
        "training diverged: the loss became {loss} at epoch {epoch}, step {step}; \
         try a lower training.optimizer.lr"
    )]
    Diverged { epoch: u32, step: u64, loss: f64 },
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("recording progress: {0}")]
    Store(#[from] StoreError),
}

/// Batches in one epoch of `n` examples. A last batch of a single example is dropped, since
/// batch statistics of one example are degenerate.
pub fn batches_per_epoch(n: usize, batch_size: usize) -> usize {
    let full = n / batch_size;
    if n % batch_size > 1 || full == 0 { full + 1 } else { full }
}

/// Optimizer steps of the whole job, from the spec alone (before the data is loaded); 0 for a
/// language model, whose steps depend on how many tokens its corpus has (training sets it).
pub fn total_steps(spec: &ValidJobSpec) -> u64 {
    let DataSpec::Images(data) = &spec.data else { return 0 };
    let n = data.source.train_len();
    let n = data.limit_train.map_or(n, |l| l.min(n));
    batches_per_epoch(n, spec.training.batch_size) as u64 * u64::from(spec.training.epochs)
}

/// Trains `job` to its end, or until it is cancelled or the server stops.
pub fn run(job: &TrainJob<'_>) -> Result<Outcome, TrainError> {
    match job.spec.task().ok_or(TrainError::Mismatched)? {
        Task::Classify { model, data } => fit::run(job, model, data),
        Task::Language { model, data } => lm::run(job, model, data),
    }
}

/// The stop asked for since the last step, if any: cancel before shutdown.
fn stop_requested(job: &TrainJob<'_>) -> Option<Outcome> {
    if job.cancel.load(Ordering::SeqCst) {
        Some(Outcome::Cancelled)
    } else if job.shutdown.load(Ordering::SeqCst) {
        Some(Outcome::Interrupted)
    } else {
        None
    }
}

/// Where a run starts: its model, optimizer and position.
struct Start<M> {
    model: M,
    optim: ModuleOptimizer,
    position: Position,
}

/// Reads the job's newest checkpoint into `fresh()` (a model built on the plain device), once
/// `check` accepts its manifest, or, when there is none, builds `init(cpu)` with the job's seed
/// and forks it onto the training `device`.
///
/// Initial weights are always drawn on the CPU: each backend has its own random generator, so a
/// model initialised on a GPU from the same seed would start elsewhere. Drawn once on the CPU, the
/// same definition starts from the same weights on every backend.
fn restore_or_init<M: Module>(
    job: &TrainJob<'_>,
    device: &burn::tensor::Device,
    optim: ModuleOptimizer,
    check: impl FnOnce(&checkpoint::Manifest) -> Result<(), TrainError>,
    fresh: impl FnOnce() -> M,
    init: impl FnOnce(&burn::tensor::Device) -> M,
) -> Result<Start<M>, TrainError> {
    match job.store.checkpoints(job.id)?.pop() {
        Some((info, dir)) => {
            tracing::info!(job = %job.id, epoch = info.epoch, step = info.step, "resuming from checkpoint");
            let manifest = checkpoint::manifest(dir.as_ref())?;
            check(&manifest)?;
            let restored = checkpoint::read(dir.as_ref(), &manifest, fresh(), optim)?;
            Ok(Start { model: restored.model, optim: restored.optim, position: restored.position })
        }
        None => {
            let cpu = burn::tensor::Device::flex().autodiff();
            let model = {
                let _guard = INIT.lock().unwrap_or_else(|p| p.into_inner());
                cpu.seed(job.spec.training.seed);
                let model = init(&cpu);
                crate::models::materialize(&model);
                model
            };
            Ok(Start { model: model.fork(device), optim, position: Position::default() })
        }
    }
}

/// Times a run from its start to the end of its first optimizer step — data loading, model
/// building and, on a GPU, compiling and autotuning the kernels the step needs — and records it
/// as the job's `first_step_seconds`.
struct FirstStep {
    started: std::time::Instant,
    recorded: bool,
}

impl FirstStep {
    fn start() -> Self {
        Self { started: std::time::Instant::now(), recorded: false }
    }

    /// Call after each step (whose loss was read back, so the device has finished it).
    fn done(&mut self, job: &TrainJob<'_>) -> Result<(), TrainError> {
        if !self.recorded {
            self.recorded = true;
            let seconds = self.started.elapsed().as_secs_f64();
            tracing::info!(job = %job.id, device = job.device.name, seconds, "first step done");
            job.store.set_first_step_seconds(job.id, seconds)?;
        }
        Ok(())
    }
}

/// Forgets metrics the run will produce again and records its progress before the first step.
fn begin(job: &TrainJob<'_>, position: &Position, per_epoch: usize) -> Result<Progress, TrainError> {
    job.store.truncate_metrics(job.id, position.epoch, position.step)?;
    let progress = Progress {
        epoch: position.epoch,
        epochs: job.spec.training.epochs,
        step: position.step,
        steps: per_epoch as u64 * u64::from(job.spec.training.epochs),
    };
    job.store.set_progress(job.id, progress)?;
    Ok(progress)
}

/// Queues a step's point and writes the queue every `log_every` steps and at the end of an
/// epoch.
fn record_step(
    job: &TrainJob<'_>,
    pending: &mut Vec<StepPoint>,
    point: StepPoint,
    progress: Progress,
    last_of_epoch: bool,
) -> Result<(), TrainError> {
    if point.step % u64::from(job.spec.training.log_every) == 0 || last_of_epoch {
        pending.push(point);
        job.store.record_steps(job.id, pending, progress)?;
        pending.clear();
    }
    Ok(())
}

/// Records a finished epoch and writes a checkpoint when the policy says so.
fn end_epoch<M: Module>(
    job: &TrainJob<'_>,
    model: &M,
    optim: &ModuleOptimizer,
    position: &mut Position,
    progress: &mut Progress,
    metrics: EpochMetrics,
    vocab: Option<&Vocab>,
) -> Result<(), TrainError> {
    let epoch = metrics.epoch;
    position.epoch = epoch;
    position.step_in_epoch = 0;
    progress.epoch = epoch;
    job.store.record_epoch(job.id, &metrics)?;
    job.store.set_progress(job.id, *progress)?;
    if epoch % job.spec.checkpoint.every == 0 || epoch == job.spec.training.epochs {
        save(job, model, optim, position, Some(metrics), vocab)?;
    }
    Ok(())
}

/// At a step boundary: when a stop was asked for, records what is pending, checkpoints and
/// says how the run ends.
fn stop_if_asked<M: Module>(
    job: &TrainJob<'_>,
    model: &M,
    optim: &ModuleOptimizer,
    position: &Position,
    pending: &[StepPoint],
    progress: Progress,
    vocab: Option<&Vocab>,
) -> Result<Option<Outcome>, TrainError> {
    let Some(outcome) = stop_requested(job) else { return Ok(None) };
    job.store.record_steps(job.id, pending, progress)?;
    save(job, model, optim, position, None, vocab)?;
    Ok(Some(outcome))
}

/// Writes, indexes and prunes a checkpoint.
fn save<M: Module>(
    job: &TrainJob<'_>,
    model: &M,
    optim: &ModuleOptimizer,
    position: &Position,
    metrics: Option<EpochMetrics>,
    vocab: Option<&Vocab>,
) -> Result<(), TrainError> {
    let written = checkpoint::write(job.config, job.id, job.spec, model, optim, position, vocab)?;
    let mut info = CheckpointInfo {
        id: 0,
        epoch: position.epoch,
        step: position.step,
        bytes: written.bytes,
        sha256: written.sha256,
        metrics,
        created_at: crate::jobs::now(),
    };
    let dir = written.dir.display().to_string();
    let mut all = job.store.checkpoints(job.id)?;
    // A resumed job may write the same step again: its directory was replaced, so its old
    // index row goes.
    for (old, _) in all.iter().filter(|(_, old_dir)| *old_dir == dir) {
        job.store.delete_checkpoint(old.id)?;
    }
    all.retain(|(_, old_dir)| *old_dir != dir);
    info.id = job.store.insert_checkpoint(job.id, &info, &dir)?;
    all.push((info, dir));
    let infos: Vec<CheckpointInfo> = all.iter().map(|(i, _)| i.clone()).collect();
    for i in checkpoint::to_prune(&infos, job.spec.checkpoint.keep_last as usize) {
        let (info, dir) = &all[i];
        job.store.delete_checkpoint(info.id)?;
        checkpoint::remove(dir.as_ref())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_example_tail_is_dropped_but_larger_tails_are_kept() {
        assert_eq!(batches_per_epoch(512, 256), 2);
        assert_eq!(batches_per_epoch(513, 256), 2);
        assert_eq!(batches_per_epoch(514, 256), 3);
        assert_eq!(batches_per_epoch(100, 256), 1);
        assert_eq!(batches_per_epoch(60_000, 256), 235);
    }
}
