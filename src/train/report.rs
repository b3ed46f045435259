//! The reporting port: how a training run tells the rest of kiln what happens, without knowing
//! who listens.
//!
//! The engine calls a [`RunLog`] when a run begins, after logged steps, at the end of an epoch,
//! when it writes or drops a checkpoint (and once a dropped one's files are removed), when its
//! first step is done, and to warn of what went wrong without stopping the run (a damaged
//! checkpoint skipped on resume). The service's
//! implementation (`jobs::recorder`) writes them to the job store; the engine's tests keep them in
//! memory. Nothing in `train` touches a database.

use std::path::{Path, PathBuf};

use super::checkpoint::FileDigests;
use crate::metrics::{EpochMetrics, Progress, StepPoint};

/// A report that could not be recorded; training stops with it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReportError(pub String);

/// A checkpoint the engine wrote, as it reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedCheckpoint {
    /// The directory holding its files.
    pub dir: PathBuf,
    /// Epochs completed and steps taken when it was written.
    pub epoch: u32,
    pub step: u64,
    /// Size and SHA-256 (hex) of its model file.
    pub bytes: u64,
    pub sha256: String,
    /// Size and SHA-256 of each of its files, the model's included.
    pub files: FileDigests,
    /// The epoch's metrics, for a checkpoint written at the end of an epoch.
    pub metrics: Option<EpochMetrics>,
}

/// A checkpoint the log keeps, as the engine's retention policy and resume see it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptCheckpoint {
    /// The id the log gave it.
    pub id: i64,
    /// Steps taken when it was written.
    pub step: u64,
    pub dir: PathBuf,
    /// Size and SHA-256 (hex) of its model file when it was written: a resume checks them.
    pub bytes: u64,
    pub sha256: String,
    /// Size and SHA-256 of each of its files when it was written, when the log has them (not
    /// for checkpoints it kept before it recorded them): a resume checks them too.
    pub files: Option<FileDigests>,
    /// How good it is ([`EpochMetrics::score`]), when it was written at the end of an epoch.
    pub score: Option<f64>,
}

/// Where a run reports to. `checkpoints` reads what the log keeps; every other method records
/// one fact. An error stops the run.
pub trait RunLog {
    /// The checkpoints kept for this job so far, oldest first: a run resumes from the last.
    fn checkpoints(&self) -> Result<Vec<KeptCheckpoint>, ReportError>;

    /// A run begins at `progress`: what a previous run recorded past it (step points, epoch rows)
    /// will be produced again, so it is forgotten.
    fn begin(&self, progress: Progress) -> Result<(), ReportError>;

    /// The model has this many trainable parameters (a language model's count is known only once
    /// its vocabulary is).
    fn parameters(&self, count: u64) -> Result<(), ReportError>;

    /// Seconds from the start of the run to the end of its first optimizer step.
    fn first_step(&self, seconds: f64) -> Result<(), ReportError>;

    /// Step points (possibly none) and the progress they bring.
    fn steps(&self, points: &[StepPoint], progress: Progress) -> Result<(), ReportError>;

    /// An epoch ended with `metrics`; training stands at `progress`.
    fn epoch(&self, metrics: &EpochMetrics, progress: Progress) -> Result<(), ReportError>;

    /// A checkpoint was written; returns the id it is kept under. One kept in the same directory
    /// (a resumed run reaching the same step again) is replaced.
    fn checkpoint_saved(&self, checkpoint: &SavedCheckpoint) -> Result<i64, ReportError>;

    /// A kept checkpoint is dropped, by the retention policy or because it is damaged; its files
    /// are removed next. The log remembers that they are to be removed until
    /// [`RunLog::checkpoint_removed`] says they are, so that a removal cut short is finished later.
    fn checkpoint_dropped(&self, id: i64) -> Result<(), ReportError>;

    /// The files of a dropped checkpoint, in `dir`, are removed.
    fn checkpoint_removed(&self, _dir: &Path) -> Result<(), ReportError> {
        Ok(())
    }

    /// Something went wrong that the run got past, in words for the job's owner; it names
    /// checkpoints by id and step, never by a path.
    fn warn(&self, message: &str) -> Result<(), ReportError>;
}
