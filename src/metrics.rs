//! What training reports, as the store keeps it and the API shows it: how far a job has come, one
//! row per epoch and a loss point every few steps. Classifiers and language models share the
//! rows; a field that does not apply to a job's kind is absent.
//!
//! These are plain values below every layer that uses them: the training engine produces them,
//! the job store persists them and the HTTP layer serialises them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How far training has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// Epochs completed.
    pub epoch: u32,
    /// Epochs the job will run.
    pub epochs: u32,
    /// Optimizer steps taken since the start.
    pub step: u64,
    /// Optimizer steps the whole job will take.
    pub steps: u64,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_classifier_scores_by_test_accuracy_and_a_language_model_by_lower_perplexity() {
        let row = EpochMetrics::new(1, 0.5, 1.0);
        assert_eq!(row.score(), None);
        assert_eq!(EpochMetrics { test_accuracy: Some(0.9), ..row.clone() }.score(), Some(0.9));
        let lm = EpochMetrics { perplexity: Some(3.0), ..row.clone() };
        assert_eq!(lm.score(), Some(-3.0));
        let held_out = EpochMetrics { validation_perplexity: Some(4.0), ..lm };
        assert_eq!(held_out.score(), Some(-4.0), "validation perplexity is preferred");
    }
}
