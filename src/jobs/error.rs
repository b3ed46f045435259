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
    /// A checkpoint's model file is missing or no longer has the size and SHA-256 its index
    /// recorded.
    #[error(
        "checkpoint {checkpoint} of job {job} is damaged: its file no longer matches its recorded SHA-256"
    )]
    CheckpointCorrupt { job: super::JobId, checkpoint: i64 },
}
