//! Where a training run stands: epochs and steps done and the running sums of the epoch under
//! way. The engine advances it one step at a time and a checkpoint saves it, so a run resumed
//! in the middle of an epoch reports that epoch exactly as an uninterrupted one would.

use serde::{Deserialize, Serialize};

/// Where training stands; saved in `checkpoint.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Epochs completed.
    pub epoch: u32,
    /// Steps taken in the epoch under way (0 at an epoch boundary).
    pub step_in_epoch: u64,
    /// Steps taken since the start.
    pub step: u64,
    /// Running sums of the epoch under way.
    pub totals: EpochTotals,
}

impl Position {
    /// Counts one optimizer step that took `seconds`.
    pub fn advance(&mut self, result: &StepResult, seconds: f64) {
        self.step += 1;
        self.step_in_epoch += 1;
        self.totals.add(result.loss, result.correct, result.examples, seconds);
        if let Some(norm) = result.grad_norm {
            self.totals.add_grad_norm(norm);
        }
    }

    /// Closes epoch `epoch`: the next step starts the following one with empty sums.
    pub fn end_epoch(&mut self, epoch: u32) {
        self.epoch = epoch;
        self.step_in_epoch = 0;
        self.totals = EpochTotals::default();
    }
}

/// What one optimizer step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepResult {
    /// Mean loss over the batch (per example, or per token).
    pub loss: f64,
    /// Examples the model (before the update) classified right; 0 for a language model.
    pub correct: u64,
    /// Examples (classifier) or tokens (language model) in the batch.
    pub examples: u64,
    /// The global gradient norm before clipping, for tasks that report it.
    pub grad_norm: Option<f64>,
}

/// Running sums over an epoch's training steps; part of a checkpoint so a resumed epoch
/// reports the same totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochTotals {
    pub loss_sum: f64,
    pub correct: u64,
    /// Examples of a classifier, tokens of a language model.
    pub examples: u64,
    pub batches: u64,
    pub train_seconds: f64,
    #[serde(default)]
    pub grad_norm_sum: f64,
    #[serde(default)]
    pub grad_norm_max: f64,
}

impl EpochTotals {
    /// Adds one batch.
    pub fn add(&mut self, loss: f64, correct: u64, examples: u64, seconds: f64) {
        self.loss_sum += loss * examples as f64;
        self.correct += correct;
        self.examples += examples;
        self.batches += 1;
        self.train_seconds += seconds;
    }

    /// Adds one step's gradient norm.
    pub fn add_grad_norm(&mut self, norm: f64) {
        self.grad_norm_sum += norm;
        self.grad_norm_max = self.grad_norm_max.max(norm);
    }

    /// Mean gradient norm per step.
    pub fn mean_grad_norm(&self) -> f64 {
        self.grad_norm_sum / self.batches.max(1) as f64
    }

    /// Mean loss per example.
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.examples.max(1) as f64
    }

    /// Fraction right.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.examples.max(1) as f64
    }

    /// Examples per second of training.
    pub fn throughput(&self) -> f64 {
        if self.train_seconds > 0.0 { self.examples as f64 / self.train_seconds } else { 0.0 }
    }
}
