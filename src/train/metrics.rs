//! What training reports: one row per epoch and a loss point every few steps.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The summary of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Mean cross-entropy over the epoch's training batches (batch statistics in BatchNorm).
    pub train_loss: f64,
    /// Fraction of training examples classified right during the epoch.
    pub train_accuracy: f64,
    /// Mean cross-entropy on the test split, model in evaluation mode (running statistics).
    pub test_loss: f64,
    /// Fraction of test examples classified right, model in evaluation mode.
    pub test_accuracy: f64,
    /// Training examples per second over the epoch's steps (evaluation excluded).
    pub examples_per_sec: f64,
    /// Wall time of the epoch, evaluation included.
    pub seconds: f64,
}

/// The training loss at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepPoint {
    /// Optimizer steps since the start, 1-based.
    pub step: u64,
    /// 1-based epoch the step belongs to.
    pub epoch: u32,
    /// Cross-entropy of that step's batch.
    pub loss: f64,
}

/// Running sums over an epoch's training steps; part of a checkpoint so a resumed epoch
/// reports the same totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochTotals {
    pub loss_sum: f64,
    pub correct: u64,
    pub examples: u64,
    pub batches: u64,
    pub train_seconds: f64,
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
