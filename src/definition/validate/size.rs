//! The size rules of a job: one batch's activation memory, the model's parameters and the disk
//! its kept checkpoints take, each against its server cap.

use super::Problems;
use crate::config::Config;
use crate::definition::{CheckpointPolicy, OptimizerSpec, TrainingSpec};

/// Whether the memory estimate of one batch is within the server's cap.
pub(super) fn check_memory(floats: usize, batch_size: usize, what: &str, config: &Config, p: &mut Problems) {
    let mib = (floats * 4) as f64 / (1024.0 * 1024.0);
    if mib > config.max_batch_memory_mib as f64 {
        p.add(
            "training.batch_size",
            format!(
                "of {batch_size} needs an estimated {mib:.0} MiB of activations for {what}, over this \
                 server's limit of {} MiB (--max-batch-memory-mib); lower training.batch_size",
                config.max_batch_memory_mib
            ),
        );
    }
}

/// Whether the model's size, and the disk its kept checkpoints take, are within the caps.
pub(super) fn check_parameters(
    params: usize,
    training: &TrainingSpec,
    checkpoint: &CheckpointPolicy,
    config: &Config,
    p: &mut Problems,
) {
    if params > config.max_parameters {
        p.add(
            "model",
            format!("has {params} parameters, more than this server's limit of {}", config.max_parameters),
        );
    }
    let mib =
        checkpoint_disk_estimate(params, &training.optimizer, checkpoint.keep_last) as f64 / (1 << 20) as f64;
    if mib > config.max_job_checkpoint_mib as f64 {
        p.add(
            "checkpoint.keep_last",
            format!(
                "of {} keeps an estimated {mib:.0} MiB of checkpoints for this model and optimizer, over \
                 this server's limit of {} MiB per job (--max-job-checkpoint-mib); lower keep_last",
                checkpoint.keep_last, config.max_job_checkpoint_mib
            ),
        );
    }
}

/// Bytes a job's checkpoints may take on disk at once: the weights and the optimizer's state per
/// parameter (none for plain SGD, momentum for SGD with momentum, two moments for Adam), for the
/// `keep_last` newest, the best one and one being written before the oldest is pruned.
pub(crate) fn checkpoint_disk_estimate(params: usize, optimizer: &OptimizerSpec, keep_last: u32) -> u64 {
    let slots = match optimizer {
        OptimizerSpec::Sgd { momentum, .. } if *momentum == 0.0 => 0,
        OptimizerSpec::Sgd { .. } => 1,
        OptimizerSpec::Adam { .. } => 2,
    };
    params as u64 * 4 * (1 + slots) * (u64::from(keep_last) + 2)
}
