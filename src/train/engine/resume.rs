//! Where a run starts: its job's newest intact checkpoint, or fresh weights drawn from its seed.
//!
//! Kept checkpoints are tried newest first, and each is checked before it is trusted: its files
//! (model, optimizer state, manifest; the model alone for a checkpoint kept before its files were
//! all recorded) must have the size and SHA-256 recorded when it was written, and its manifest,
//! weights and optimizer state must read. A damaged one (truncated, bit-flipped, missing, unreadable) is
//! dropped from the log, its files removed, and the next older one tried; with none left, the job
//! starts over. The run says so through [`RunLog::warn`], naming each skipped checkpoint by id
//! and step. A failure that is not the checkpoint's (a vocabulary the task refuses, too many open
//! files) still fails the run.

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

use super::{INIT, State, Task};
use crate::train::checkpoint::{self, CheckpointError};
use crate::train::position::Position;
use crate::train::report::{KeptCheckpoint, RunLog};
use crate::train::{Run, TrainError};

/// Why a checkpoint was not resumed from.
enum Refused {
    /// The checkpoint is damaged: try an older one.
    Damaged(CheckpointError),
    /// The run cannot go on.
    Failed(TrainError),
}

/// Reads the job's newest intact checkpoint, once the task accepts it, into a model built on the
/// plain device; without one, builds the model on the CPU from the job's seed and forks it onto
/// the training `device`.
///
/// Initial weights are always drawn on the CPU: each backend has its own random generator, so a
/// model initialised on a GPU from the same seed would start elsewhere. Drawn once on the CPU, the
/// same definition starts from the same weights on every backend.
pub(super) fn restore_or_init<T: Task>(
    run: &Run<'_>,
    task: &T,
    device: &Device,
    optim: ModuleOptimizer,
) -> Result<State<T::Model>, TrainError> {
    let mut kept = run.log.checkpoints()?;
    let mut skipped = Vec::new();
    while let Some(newest) = kept.pop() {
        match restore(run, task, &newest, optim.clone()) {
            Ok(state) => {
                let then = format!("the job resumed from checkpoint {} (step {})", newest.id, newest.step);
                warn_skipped(run.log, &skipped, &then)?;
                return Ok(state);
            }
            Err(Refused::Damaged(e)) => {
                let (job, checkpoint) = (run.id, newest.id);
                tracing::warn!(%job, checkpoint, error = %e, "skipping a damaged checkpoint");
                run.log.checkpoint_dropped(newest.id)?;
                match checkpoint::remove(&newest.dir) {
                    Ok(()) => run.log.checkpoint_removed(&newest.dir)?,
                    Err(e) => {
                        tracing::warn!(job = %run.id, error = %e, "could not remove a damaged checkpoint")
                    }
                }
                skipped.push((newest, e));
            }
            Err(Refused::Failed(e)) => {
                warn_skipped(run.log, &skipped, "the job could not resume from the next one")?;
                return Err(e);
            }
        }
    }
    warn_skipped(run.log, &skipped, "no intact checkpoint was left, so the job started over")?;
    let cpu = Device::flex().autodiff();
    let model = {
        let _guard = INIT.lock().unwrap_or_else(|p| p.into_inner());
        cpu.seed(run.spec.training.seed);
        let model = task.init(&cpu);
        crate::models::materialize(&model);
        model
    };
    Ok(State {
        model: model.fork(device),
        optim,
        position: Position::default(),
        saved_at: None,
        unread: Default::default(),
    })
}

/// Verifies and reads one kept checkpoint.
fn restore<T: Task>(
    run: &Run<'_>,
    task: &T,
    kept: &KeptCheckpoint,
    optim: ModuleOptimizer,
) -> Result<State<T::Model>, Refused> {
    let refused = |e: CheckpointError| match e.is_damage() {
        true => Refused::Damaged(e),
        false => Refused::Failed(run.checkpoint_error(e)),
    };
    checkpoint::open_verified(&kept.dir, kept.bytes, &kept.sha256, kept.files.as_ref()).map_err(refused)?;
    let manifest = checkpoint::manifest(&kept.dir).map_err(refused)?;
    let position = &manifest.position;
    tracing::info!(job = %run.id, epoch = position.epoch, step = position.step, "resuming from checkpoint");
    task.accepts(&manifest).map_err(Refused::Failed)?;
    let fresh = task.init(&run.device.device);
    let restored = checkpoint::read(&kept.dir, &manifest, fresh, optim).map_err(refused)?;
    let saved_at = Some(restored.position.step);
    Ok(State {
        model: restored.model,
        optim: restored.optim,
        position: restored.position,
        saved_at,
        unread: Default::default(),
    })
}

/// Warns of each checkpoint skipped as damaged, and what happened `then`.
fn warn_skipped(
    log: &dyn RunLog,
    skipped: &[(KeptCheckpoint, CheckpointError)],
    then: &str,
) -> Result<(), TrainError> {
    for (kept, error) in skipped {
        log.warn(&format!(
            "checkpoint {} (step {}) is damaged ({}) and was dropped; {then}",
            kept.id,
            kept.step,
            error.in_file()
        ))?;
    }
    Ok(())
}
