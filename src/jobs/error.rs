//! [`JobError`]: why an operation of the job service did not happen. The HTTP layer maps each
//! variant to a status and a problem+json body.

use crate::definition::{FieldError, SpecParseError};
use crate::train::checkpoint::CheckpointError;

use super::store::StoreError;

/// Why an operation on jobs did not happen.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Parse(#[from] SpecParseError),
    #[error("the job definition is invalid")]
    Invalid(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(String),
    #[error("the queue is full ({waiting} jobs waiting)")]
    QueueFull { waiting: usize, retry_after_secs: u64 },
    #[error("{0}")]
    Conflict(String),
    /// The data directory's disk is below its free-space floor.
    #[error("{0}")]
    InsufficientStorage(String),
    /// Every slot of a bounded operation (generation) is taken.
    #[error("{what}")]
    Busy { what: String, retry_after_secs: u64 },
    /// Storing this would pass a quota; the message names the flag and the numbers.
    #[error("{0}")]
    QuotaExceeded(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Checkpoint(#[from] CheckpointError),
    /// A file of a checkpoint in the index is gone from the data dir; `file` is relative to it.
    #[error("checkpoint {checkpoint} of job {job} is missing a file: {file} is gone from the data dir")]
    CheckpointMissing { job: super::JobId, checkpoint: i64, file: String },
    /// A file of a checkpoint no longer has the size and SHA-256 its index recorded.
    #[error(
        "checkpoint {checkpoint} of job {job} is damaged: its file {file} no longer matches its recorded SHA-256 ({found})"
    )]
    CheckpointCorrupt { job: super::JobId, checkpoint: i64, file: String, found: String },
    /// A file of a checkpoint cannot be read as what it should hold: a manifest
    /// (`checkpoint.json`) that does not parse, weights that do not load.
    #[error("checkpoint {checkpoint} of job {job} cannot be read: {file} is not valid ({reason})")]
    CheckpointUnreadable { job: super::JobId, checkpoint: i64, file: String, reason: String },
    /// The data dir holds jobs' or uploads' files that the database does not know, and no flag
    /// says what to do with them: the server does not start. The message says what was found and
    /// how to proceed.
    #[error("{0}")]
    Orphans(String),
}
