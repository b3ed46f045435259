//! What training reports: one row per epoch and a loss point every few steps. Classifiers and
//! language models share the rows; a field that does not apply to a job's kind is absent.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The summary of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Mean cross-entropy over the epoch's training batches (batch statistics in BatchNorm;
    /// per token for language models).
    pub train_loss: f64,
    /// Classifiers: fraction of training examples classified right during the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_accuracy: Option<f64>,
    /// Classifiers: mean cross-entropy on the test split, model in evaluation mode (running
    /// statistics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    /// Classifiers: fraction of test examples classified right, model in evaluation mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Classifiers: training examples per second over the epoch's steps (evaluation excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples_per_sec: Option<f64>,
    /// Language models: exp(train_loss), the perplexity of the training tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f64>,
    /// Language models: the perplexity of the held-out tail, when `data.validation_fraction`
    /// holds one out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_perplexity: Option<f64>,
    /// Language models: training tokens per second over the epoch's steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_sec: Option<f64>,
    /// Language models: mean over the epoch's steps of the global gradient norm before clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Language models: largest global gradient norm of the epoch, before clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm_max: Option<f64>,
    /// Wall time of the epoch, evaluation included.
    pub seconds: f64,
}

impl EpochMetrics {
    /// The fields every kind of job reports; the kind's own start out absent.
    pub fn new(epoch: u32, train_loss: f64, seconds: f64) -> Self {
        Self {
            epoch,
            train_loss,
            train_accuracy: None,
            test_loss: None,
            test_accuracy: None,
            examples_per_sec: None,
            perplexity: None,
            validation_perplexity: None,
            tokens_per_sec: None,
            grad_norm: None,
            grad_norm_max: None,
            seconds,
        }
    }

    /// The number that makes one checkpoint better than another: test accuracy for a
    /// classifier, lower (validation, else training) perplexity for a language model.
    pub fn score(&self) -> Option<f64> {
        self.test_accuracy.or_else(|| self.validation_perplexity.or(self.perplexity).map(|p| -p))
    }
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
    /// Language models: the global gradient norm of that step, before clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
