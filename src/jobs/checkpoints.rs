//! The service's view of a job's checkpoints: the index's rows with their directories resolved
//! against the data dir and their file digests decoded ([`Located`]), checked against the files
//! before anything is served or loaded from them ([`verify`]), and the checkpoint errors a client
//! may see, each naming its real cause ([`damaged`]): a file gone from the data dir
//! ([`JobError::CheckpointMissing`]), a file that no longer matches its recorded size and SHA-256
//! ([`JobError::CheckpointCorrupt`]), or one that cannot be read as what it should hold
//! ([`JobError::CheckpointUnreadable`]). Files are named relative to the data dir.

use std::fs::File;
use std::path::PathBuf;

use super::error::JobError;
use super::store::{IndexedCheckpoint, Store, StoreError};
use super::{CheckpointInfo, JobId, datadir};
use crate::config::Config;
use crate::train::checkpoint::{self, CheckpointError, Damage, FileDigests};

/// A checkpoint of the index, where its files are now.
#[derive(Debug, Clone)]
pub(super) struct Located {
    pub info: CheckpointInfo,
    /// Its directory in this server's data dir.
    pub dir: PathBuf,
    /// Every file's size and SHA-256, for checkpoints indexed since they were recorded.
    pub files: Option<FileDigests>,
}

/// Job `job`'s checkpoints, oldest first, located in the data dir.
pub(super) fn located(config: &Config, store: &Store, job: JobId) -> Result<Vec<Located>, StoreError> {
    store.checkpoints(job)?.into_iter().map(|row| locate(config, row)).collect()
}

fn locate(config: &Config, row: IndexedCheckpoint) -> Result<Located, StoreError> {
    let dir = datadir::resolve(config, &row.dir)
        .ok_or_else(|| StoreError::Corrupt(format!("checkpoint directory {:?}", row.dir)))?;
    let files = row.files.as_deref().map(serde_json::from_str).transpose()?;
    Ok(Located { info: row.info, dir, files })
}

/// The digests of a checkpoint's files as the index stores them (JSON).
pub(super) fn files_json(files: &FileDigests) -> String {
    serde_json::to_string(files).expect("file digests serialise")
}

/// Checks checkpoint `at` of job `job` against what the index recorded and returns its model
/// file, open at its start; damage is reported as what it is (see [`damaged`]). Reads every file
/// whole: call it off the async runtime.
pub(super) fn verify(config: &Config, job: JobId, at: &Located) -> Result<File, JobError> {
    let (bytes, sha256) = (at.info.bytes, &at.info.sha256);
    checkpoint::open_verified(&at.dir, bytes, sha256, at.files.as_ref())
        .map_err(|e| damaged(config, job, at.info.id, e))
}

/// The error a client sees for `error` on checkpoint `checkpoint` of job `job`, logged: its cause
/// by name when the checkpoint is damaged, else an internal error. No path in it is absolute.
pub(super) fn damaged(config: &Config, job: JobId, checkpoint: i64, error: CheckpointError) -> JobError {
    let error = error.within(config.files_dir());
    let file = error.path().display().to_string();
    let Some(damage) = error.damage() else {
        return JobError::Checkpoint(error);
    };
    tracing::error!(%job, checkpoint, error = %error, "a checkpoint in the index is damaged");
    match (damage, error) {
        (Damage::Missing, _) => JobError::CheckpointMissing { job, checkpoint, file },
        (Damage::Mismatch, CheckpointError::Mismatch { found, .. }) => {
            JobError::CheckpointCorrupt { job, checkpoint, file, found }
        }
        (_, CheckpointError::Invalid { reason, .. }) => {
            JobError::CheckpointUnreadable { job, checkpoint, file, reason }
        }
        (_, other) => JobError::Checkpoint(other),
    }
}
