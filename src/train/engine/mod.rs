//! The training engine: the one epoch loop every kind of job runs.
//!
//! A [`Task`] knows its model and data — how to build the model, how many batches an epoch has,
//! one optimizer step on one batch, the evaluation that ends an epoch — the way Burn's own
//! `TrainStep`/`ValidStep` split does. The engine knows everything else, once: resuming from the
//! newest intact checkpoint (or drawing the initial weights from the seed; see [`resume`]), the
//! cancel and shutdown flags looked at between steps, divergence, timing the first step, reading
//! the steps' results back from the device and logging a step point every `training.log_every`
//! steps (see [`super::readout`]: no step waits for the device in between), the epoch's row, and
//! the checkpoint policy
//! (every `checkpoint.every` epochs and at the end, keeping the newest `checkpoint.keep_last` and
//! the best). It reports what happens through the run's [`super::report::RunLog`] and never touches
//! a database.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

mod resume;

use super::checkpoint::{self, Identity, Manifest};
use super::position::Position;
pub use super::readout::StepTensors;
use super::readout::{MAX_UNREAD, Readout};
use super::report::{KeptCheckpoint, SavedCheckpoint};
use super::{Outcome, Run, TrainError};
use crate::metrics::{EpochMetrics, Progress, StepPoint};
use crate::text::Vocab;

/// Burn's parameter initialisation draws from a process-wide generator: seeding and building
/// under one lock makes a job's initial weights depend on its seed alone.
static INIT: Mutex<()> = Mutex::new(());

/// Holds [`INIT`] for code outside a run that seeds Burn's generator and builds a model (tests
/// that would otherwise reseed it under a job's feet).
#[cfg(test)]
pub(crate) fn init_lock() -> std::sync::MutexGuard<'static, ()> {
    INIT.lock().unwrap_or_else(|p| p.into_inner())
}

/// A pass given up because a stop was asked for.
#[derive(Debug)]
pub struct Interrupted;

/// Asked between evaluation batches: whether a stop was asked for.
pub type Stop<'a> = &'a dyn Fn() -> bool;

/// An epoch's row, or the evaluation given up for a stop.
pub type Evaluated = Result<EpochMetrics, Interrupted>;

/// A model and its data, as the engine drives them.
pub trait Task {
    type Model: Module;

    /// Builds the model with fresh weights on `device`.
    fn init(&self, device: &Device) -> Self::Model;

    /// Refuses a checkpoint that this task cannot continue (a different vocabulary).
    fn accepts(&self, _manifest: &Manifest) -> Result<(), TrainError> {
        Ok(())
    }

    /// Optimizer steps in every epoch.
    fn batches_per_epoch(&self) -> usize;

    /// Prepares epoch `epoch` (1-based): its order of batches, fixed by the seed and the epoch.
    /// Any state carried from batch to batch starts afresh.
    fn begin_epoch(&mut self, epoch: u32);

    /// One optimizer step on batch `index` of the epoch; returns the updated model.
    fn step(&mut self, model: Self::Model, optim: &mut ModuleOptimizer, index: usize)
    -> Stepped<Self::Model>;

    /// The row of the epoch under way, all its steps taken, from its training totals (in
    /// `position`) and an evaluation of `model` (in evaluation mode); `seconds` is left for the
    /// engine.
    fn evaluate(&mut self, model: &Self::Model, position: &Position, stop: Stop<'_>) -> Evaluated;

    /// Runs the evaluation's shapes once on `spare`, a model with fresh weights that is then
    /// dropped, so that on a device that compiles and tunes kernels per shape (WGPU) this
    /// happens before the first step, not at the end of the first epoch.
    fn warm_up(&mut self, _spare: Self::Model) {}

    /// A language model's vocabulary, which its checkpoints carry.
    fn vocab(&self) -> Option<&Vocab> {
        None
    }

    /// A classifier's class names, in label order, which its checkpoints carry.
    fn class_names(&self) -> Option<&[String]> {
        None
    }

    /// Trainable parameters, when the data decides them (a language model's vocabulary): the
    /// engine reports them once a checkpoint to resume from, if any, is accepted.
    fn parameters(&self) -> Option<u64> {
        None
    }
}

/// What the steps of every task take from the run: its devices, the loss, the learning rate,
/// clipping, the batch size and the seed.
pub struct Settings {
    /// The plain device evaluation runs on.
    pub device: Device,
    /// Its autodiff twin, which training runs on.
    pub train_device: Device,
    pub loss: CrossEntropyLoss,
    pub lr: f64,
    /// The global gradient-norm threshold, if gradients are clipped.
    pub clip: Option<f64>,
    pub batch_size: usize,
    pub seed: u64,
}

impl Settings {
    /// The settings of `run`'s job on `run`'s device.
    pub fn of(run: &Run<'_>) -> Self {
        let training = &run.spec.training;
        let device = run.device.device.clone();
        let train_device = device.clone().autodiff();
        Self {
            loss: CrossEntropyLossConfig::new().init(&train_device),
            device,
            train_device,
            lr: training.optimizer.lr(),
            clip: training.grad_clip_norm,
            batch_size: training.batch_size,
            seed: training.seed,
        }
    }
}

/// A model after one step, and what the step reports, still on the device.
pub type Stepped<M> = (M, StepTensors);

/// What a run carries from step to step: the model, its optimizer and where it stands.
struct State<M> {
    model: M,
    optim: ModuleOptimizer,
    position: Position,
    /// The step of the checkpoint that holds exactly this state, if one does (the one resumed
    /// from, or the one written at the end of an epoch, until the next step).
    saved_at: Option<u64>,
    /// Steps taken but not yet read back: `position` counts them once they are.
    unread: Readout,
}

/// Trains `task` for `run`, from its newest checkpoint or from fresh weights, to its end or
/// until it is cancelled or the server stops. `started` is when the run began, before its data
/// was read: the first step is timed from it.
pub fn train<T: Task>(
    run: &Run<'_>,
    task: &mut T,
    optim: ModuleOptimizer,
    started: Instant,
) -> Result<Outcome, TrainError> {
    let training = &run.spec.training;
    let device = run.device.device.clone().autodiff();
    let per_epoch = task.batches_per_epoch();
    if run.device.device != Device::flex() && stop_requested(run).is_none() {
        warm_up(run, task, &device);
    }
    let mut state = resume::restore_or_init(run, task, &device, optim)?;
    if let Some(count) = task.parameters() {
        run.log.parameters(count)?;
    }
    let position = &state.position;
    if position.step_in_epoch as usize > per_epoch {
        return Err(TrainError::Resume(format!(
            "the checkpoint stands at batch {} of an epoch, but the data now gives {per_epoch} batches an epoch",
            position.step_in_epoch
        )));
    }
    let mut progress = Progress {
        epoch: position.epoch,
        epochs: training.epochs,
        step: position.step,
        steps: per_epoch as u64 * u64::from(training.epochs),
    };
    run.log.begin(progress)?;
    let mut first_step = Some(started);

    while state.position.epoch < training.epochs {
        let epoch = state.position.epoch + 1;
        let epoch_started = Instant::now() - Duration::from_secs_f64(state.position.totals.train_seconds);
        task.begin_epoch(epoch);
        for index in state.position.step_in_epoch as usize..per_epoch {
            if let Some(outcome) = stop_requested(run) {
                return stop(run, task, &mut state, &mut progress, epoch, outcome);
            }
            let step_started = Instant::now();
            let (model, result) = task.step(state.model, &mut state.optim, index);
            state.model = model;
            state.saved_at = None;
            state.unread.push(result, step_started.elapsed().as_secs_f64());
            // The first step is read at once, so its time covers the device's work (on a GPU,
            // compiling the kernels); then every `log_every` steps and at the end of the epoch.
            let taken = state.position.step + state.unread.len() as u64;
            let due = taken % u64::from(training.log_every) == 0 || state.unread.len() >= MAX_UNREAD;
            if first_step.is_some() || due || index + 1 == per_epoch {
                catch_up(run, &mut state, &mut progress, epoch, per_epoch)?;
            }
            if let Some(started) = first_step.take() {
                let seconds = started.elapsed().as_secs_f64();
                tracing::info!(job = %run.id, device = run.device.name, seconds, "first step done");
                run.log.first_step(seconds)?;
            }
        }

        let asked = || stop_requested(run).is_some();
        let Ok(metrics) = task.evaluate(&state.model.valid(), &state.position, &asked) else {
            // Every step of the epoch is done: the checkpoint resumes at its evaluation.
            let outcome = stop_requested(run).expect("an evaluation gives up only when a stop is asked for");
            return stop(run, task, &mut state, &mut progress, epoch, outcome);
        };
        let metrics = EpochMetrics { seconds: epoch_started.elapsed().as_secs_f64(), ..metrics };
        tracing::info!(job = %run.id, epoch, train_loss = metrics.train_loss, "epoch done");
        state.position.end_epoch(epoch);
        progress.epoch = epoch;
        run.log.epoch(&metrics, progress)?;
        if epoch % run.spec.checkpoint.every == 0 || epoch == training.epochs {
            save(run, task, &state, Some(metrics))?;
            state.saved_at = Some(state.position.step);
        }
    }
    Ok(Outcome::Completed)
}

/// Optimizer steps the warm-up takes on the epoch's last batch. A model's first step records
/// other operations than its later ones (no optimizer state yet, no BatchNorm running
/// statistics to update), and WGPU's fused kernels are keyed on those operations and the
/// batch's shape: a single step leaves a smaller last batch's later-step kernels to be compiled
/// in the middle of the first epoch.
const WARM_UP_STEPS: usize = 3;

/// Meets every shape of the run before the first step, on a device that compiles and tunes
/// kernels per shape (WGPU), with a spare model and optimizer dropped after: [`WARM_UP_STEPS`]
/// steps on the epoch's last batch (the one that may be smaller), each read back as the run
/// reads its steps, then the evaluation's shapes ([`Task::warm_up`]). It runs before the real
/// model is on the device, so the two never share its memory; the spare's weights do not
/// matter (built on the device, outside the seeded initialisation), and the epoch loop prepares
/// its epochs afresh.
fn warm_up<T: Task>(run: &Run<'_>, task: &mut T, device: &Device) {
    let mut spare = task.init(device);
    if let Some(last) = task.batches_per_epoch().checked_sub(1) {
        let mut optim = super::optim::optimizer(&run.spec.training.optimizer);
        task.begin_epoch(1);
        for _ in 0..WARM_UP_STEPS {
            if stop_requested(run).is_some() {
                return;
            }
            let (model, result) = task.step(spare, &mut optim, last);
            spare = model;
            result.read();
        }
    }
    task.warm_up(spare);
}

/// The stop asked for since the last step, if any: cancel before shutdown.
fn stop_requested(run: &Run<'_>) -> Option<Outcome> {
    if run.cancel.load(Ordering::SeqCst) {
        Some(Outcome::Cancelled)
    } else if run.shutdown.load(Ordering::SeqCst) {
        Some(Outcome::Interrupted)
    } else {
        None
    }
}

/// Ends a run on request: reads back the steps not yet read and records the progress, checkpoints
/// unless a checkpoint already holds this very state (writing it again would replace a scored
/// end-of-epoch checkpoint with an unscored copy), and says how.
fn stop<T: Task>(
    run: &Run<'_>,
    task: &T,
    state: &mut State<T::Model>,
    progress: &mut Progress,
    epoch: u32,
    outcome: Outcome,
) -> Result<Outcome, TrainError> {
    catch_up(run, state, progress, epoch, task.batches_per_epoch())?;
    if state.saved_at != Some(state.position.step) {
        save(run, task, state, None)?;
    }
    Ok(outcome)
}

/// Reads back every step taken since the last read and counts them in the run's position, in
/// order: refuses the first diverged loss or gradient norm (its step is the one reported), and
/// logs a step point every `log_every` steps and at the end of an epoch.
fn catch_up<M>(
    run: &Run<'_>,
    state: &mut State<M>,
    progress: &mut Progress,
    epoch: u32,
    per_epoch: usize,
) -> Result<(), TrainError> {
    let log_every = u64::from(run.spec.training.log_every);
    let mut points = Vec::new();
    for (result, seconds) in state.unread.take() {
        if !result.loss.is_finite() || !result.grad_norm.is_none_or(f64::is_finite) {
            // The progress names the diverged step; the position (and so any checkpoint) stops
            // before it.
            progress.step = state.position.step + 1;
            run.log.steps(&points, *progress)?;
            return Err(TrainError::Diverged { epoch, step: progress.step, loss: result.loss });
        }
        state.position.advance(&result, seconds);
        progress.step = state.position.step;
        tracing::debug!(job = %run.id, step = progress.step, seconds, "step timed");
        let step = progress.step;
        if step % log_every == 0 || state.position.step_in_epoch == per_epoch as u64 {
            points.push(StepPoint { step, epoch, loss: result.loss, grad_norm: result.grad_norm });
        }
    }
    run.log.steps(&points, *progress)?;
    Ok(())
}

/// Writes a checkpoint, reports it, and drops what the retention policy no longer keeps: the
/// newest `checkpoint.keep_last` and the best by [`EpochMetrics::score`] stay.
fn save<T: Task>(
    run: &Run<'_>,
    task: &T,
    state: &State<T::Model>,
    metrics: Option<EpochMetrics>,
) -> Result<(), TrainError> {
    let identity =
        Identity { job_id: run.id, spec: run.spec, vocab: task.vocab(), classes: task.class_names() };
    let parent = run.config.checkpoints_dir(run.id);
    let position = &state.position;
    let written = checkpoint::write(&parent, run.attempt, &identity, &state.model, &state.optim, position)
        .map_err(|e| run.checkpoint_error(e))?;
    let mut kept = run.log.checkpoints()?;
    // A resumed run may write the same step again: that checkpoint replaced the old one.
    kept.retain(|k| k.dir != written.dir);
    let score = metrics.as_ref().and_then(EpochMetrics::score);
    let saved = SavedCheckpoint {
        dir: written.dir,
        epoch: position.epoch,
        step: position.step,
        bytes: written.bytes,
        sha256: written.sha256,
        files: written.files,
        metrics,
    };
    // A checkpoint the index refused (the run's claim was taken over, the database failed) is
    // nobody's: its directory goes, rather than lie unindexed in the data dir.
    let id = run.log.checkpoint_saved(&saved).inspect_err(|_| {
        if let Err(e) = checkpoint::remove(&saved.dir) {
            tracing::warn!(job = %run.id, error = %e, "could not remove a checkpoint the index refused");
        }
    })?;
    kept.push(KeptCheckpoint {
        id,
        step: saved.step,
        dir: saved.dir,
        bytes: saved.bytes,
        sha256: saved.sha256,
        files: Some(saved.files),
        score,
    });
    let scores: Vec<Option<f64>> = kept.iter().map(|k| k.score).collect();
    for i in checkpoint::to_prune(&scores, run.spec.checkpoint.keep_last as usize) {
        run.log.checkpoint_dropped(kept[i].id)?;
        checkpoint::remove(&kept[i].dir).map_err(|e| run.checkpoint_error(e))?;
        run.log.checkpoint_removed(&kept[i].dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
