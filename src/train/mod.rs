//! Training: turns a valid job into a trained model, its metrics and its checkpoints.
//!
//! - [`engine`]: the one epoch loop, with resume, cancel, shutdown, divergence and the
//!   checkpoint policy, driving a [`engine::Task`].
//! - [`fit`]: the task of an image classifier — batches, loss, accuracy, evaluation.
//! - [`lm`]: the task of a language model — token batches, carried state, perplexity.
//! - [`report`]: the port the engine reports through ([`report::RunLog`]).
//! - [`position`]: where a run stands, saved in checkpoints.
//! - [`readout`]: step results read back from the device every `log_every` steps, not each step.
//! - [`checkpoint`]: the files that let a job resume, and that clients download.
//! - [`optim`]: the optimizer a job asks for.
//! - [`clip`]: gradient clipping by the global norm.
//! - [`generate`]: text from a trained language model.
//! - [`predict`]: a trained classifier's likeliest classes for images.
//!
//! A run happens on one worker thread from start to end, off the async runtime; it reads the
//! job's cancel flag and the server's shutdown flag between steps. Training imports the job
//! definition from [`crate::definition`] and reports to whoever implements the port: it knows nothing
//! of the job store or the HTTP API.

pub mod checkpoint;
pub mod clip;
pub mod engine;
pub mod fit;
pub mod generate;
pub mod lm;
pub mod optim;
pub mod position;
pub mod predict;
pub mod readout;
pub mod report;

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use uuid::Uuid;

use crate::backend::Resolved;
use crate::config::Config;
use crate::data::DataError;
use crate::definition::{Task, ValidJobSpec};
use report::{ReportError, RunLog};

/// One training run of a job: what it trains, where, and whom it reports to.
pub struct Run<'a> {
    /// The job's id: named in logs and in its checkpoints' manifests.
    pub id: Uuid,
    /// Which claim on the job this run holds (0: none); its checkpoint directories carry it
    /// (see [`checkpoint::dir_name`]).
    pub attempt: i64,
    pub spec: &'a ValidJobSpec,
    /// Where data sets and checkpoints are, and the server's caps.
    pub config: &'a Config,
    /// The device of the worker's lane.
    pub device: &'a Resolved,
    /// Where the run reports what happens.
    pub log: &'a dyn RunLog,
    /// Set by `POST /jobs/{id}/cancel`.
    pub cancel: &'a AtomicBool,
    /// Set when the server shuts down.
    pub shutdown: &'a AtomicBool,
}

impl Run<'_> {
    /// A checkpoint error as the job shows it: its file named relative to the data dir
    /// (`jobs/<id>/checkpoints/step-0000000012/model.bpk`), not by the server's path.
    pub(crate) fn checkpoint_error(&self, error: checkpoint::CheckpointError) -> TrainError {
        TrainError::Checkpoint(error.within(self.config.files_dir()))
    }
}

/// How a training run ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every epoch ran.
    Completed,
    /// Stopped on request between two steps (or evaluation batches), after a checkpoint.
    Cancelled,
    /// Stopped for a server shutdown between two steps (or evaluation batches), after a
    /// checkpoint; resume later.
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
    #[error("{0}")]
    Resume(String),
    #[error("the stored job definition pairs a model with data of another kind")]
    Mismatched,
    #[error(
        "training diverged: the loss became {loss} at epoch {epoch}, step {step}; \
         try a lower training.optimizer.lr"
    )]
    Diverged { epoch: u32, step: u64, loss: f64 },
    /// Made by [`Run::checkpoint_error`], which names the file relative to the data dir.
    #[error("checkpoint: {0}")]
    Checkpoint(checkpoint::CheckpointError),
    #[error("recording progress: {0}")]
    Report(#[from] ReportError),
}

/// Trains `run`'s job to its end, or until it is cancelled or the server stops.
pub fn run(run: &Run<'_>) -> Result<Outcome, TrainError> {
    let started = Instant::now();
    let optim = optim::optimizer(&run.spec.training.optimizer);
    match run.spec.task().ok_or(TrainError::Mismatched)? {
        Task::Classify { model, data } => {
            let mut task = fit::Classification::load(run, model, data)?;
            engine::train(run, &mut task, optim, started)
        }
        Task::Language { model, data } => {
            let mut task = lm::LanguageModelling::load(run, model, data)?;
            engine::train(run, &mut task, optim, started)
        }
    }
}
