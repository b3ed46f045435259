//! Training: the loop that turns a valid job into a trained model, its metrics and checkpoints.
//!
//! - [`fit`]: the loop itself — batches, forward, loss, backward, optimizer step, evaluation.
//! - [`metrics`]: what the loop reports.
//! - [`checkpoint`]: the files that let a job resume, and that clients download.
//!
//! The loop runs on one worker thread from start to end (see [`crate::jobs::worker`]); it looks
//! at the job's cancel flag and the server's shutdown flag between steps.

pub mod checkpoint;
pub mod fit;
pub mod metrics;

use std::sync::atomic::AtomicBool;

use crate::config::Config;
use crate::data::DataError;
use crate::jobs::JobId;
use crate::jobs::spec::ValidJobSpec;
use crate::jobs::store::{Store, StoreError};

pub use fit::run;

/// Everything one training run needs.
pub struct TrainJob<'a> {
    pub id: JobId,
    pub spec: &'a ValidJobSpec,
    pub config: &'a Config,
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

/// Optimizer steps of the whole job, from the spec alone (before the data is loaded).
pub fn total_steps(spec: &ValidJobSpec) -> u64 {
    let n = spec.data.source.train_len();
    let n = spec.data.limit_train.map_or(n, |l| l.min(n));
    batches_per_epoch(n, spec.training.batch_size) as u64 * u64::from(spec.training.epochs)
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
