//! The checkpoint index: where each kept checkpoint's files are (a directory relative to the data
//! dir), with the size and hash of its model file and, for checkpoints indexed since they were all
//! recorded, of every file (a JSON object `{name: {bytes, sha256}}`).

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Result, Store, events, removals};
use crate::jobs::events::{CheckpointEvent, JobEvent, Recorded};
use crate::jobs::{CheckpointInfo, JobId};
use crate::metrics::EpochMetrics;

/// A checkpoint written to disk, about to be indexed.
pub struct NewCheckpoint<'a> {
    /// The directory holding its files, relative to the data dir.
    pub dir: &'a str,
    pub epoch: u32,
    pub step: u64,
    /// Size and SHA-256 of its model file.
    pub bytes: u64,
    pub sha256: &'a str,
    /// Size and SHA-256 of every file, as JSON.
    pub files: Option<&'a str>,
    pub metrics: Option<&'a EpochMetrics>,
}

/// A checkpoint's row in the index.
#[derive(Debug, Clone)]
pub struct IndexedCheckpoint {
    pub info: CheckpointInfo,
    /// The directory holding its files, relative to the data dir.
    pub dir: String,
    /// Size and SHA-256 of every file, as JSON; `None` for a checkpoint indexed before they were
    /// recorded.
    pub files: Option<String>,
}

impl Store {
    /// Indexes a checkpoint of job `id`, replacing any row for the same directory (a resumed
    /// job writing a step again), in one transaction with its `checkpoint` event; returns its id.
    pub fn insert_checkpoint(&self, id: JobId, new: &NewCheckpoint<'_>) -> Result<i64> {
        self.write(|tx| insert_checkpoint(tx, id, new))
    }

    /// A job's checkpoints, oldest first.
    pub fn checkpoints(&self, id: JobId) -> Result<Vec<IndexedCheckpoint>> {
        let db = self.db();
        let mut stmt = db.prepare_cached(
            "SELECT id, epoch, step, bytes, sha256, dir, metrics, created_at, files FROM checkpoints WHERE job_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id.to_string()], |r| {
            Ok((
                (r.get::<_, i64>(0)?, r.get::<_, u32>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?),
                (r.get::<_, String>(4)?, r.get::<_, String>(5)?, r.get::<_, Option<String>>(6)?),
                (r.get::<_, String>(7)?, r.get::<_, Option<String>>(8)?),
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let ((cid, epoch, step, bytes), (sha256, dir, metrics), (created_at, files)) = row?;
            let metrics = metrics.map(|m| serde_json::from_str(&m)).transpose()?;
            let info = CheckpointInfo {
                id: cid,
                epoch,
                step: step as u64,
                bytes: bytes as u64,
                sha256,
                metrics,
                created_at,
            };
            out.push(IndexedCheckpoint { info, dir, files });
        }
        Ok(out)
    }

    /// Removes a checkpoint from the index and records its directory as to be removed, in one
    /// transaction.
    pub fn delete_checkpoint(&self, checkpoint_id: i64) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let dir: Option<String> = tx
            .query_row("DELETE FROM checkpoints WHERE id = ?1 RETURNING dir", [checkpoint_id], |r| r.get(0))
            .optional()?;
        if let Some(dir) = dir {
            removals::record(&tx, &dir)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether `dir` (relative to the data dir) is a checkpoint in the index.
    pub fn is_indexed_checkpoint(&self, dir: &str) -> Result<bool> {
        let found: Option<i64> = self
            .db()
            .query_row("SELECT id FROM checkpoints WHERE dir = ?1 LIMIT 1", [dir], |r| r.get(0))
            .optional()?;
        Ok(found.is_some())
    }
}

pub(super) fn insert_checkpoint(
    tx: &Transaction<'_>,
    id: JobId,
    new: &NewCheckpoint<'_>,
) -> Result<(i64, Vec<Recorded>)> {
    tx.execute("DELETE FROM checkpoints WHERE job_id = ?1 AND dir = ?2", params![id.to_string(), new.dir])?;
    // A step written again after its directory was dropped: the new one is not to be removed.
    removals::forget(tx, new.dir)?;
    tx.execute(
        "INSERT INTO checkpoints (job_id, epoch, step, bytes, sha256, dir, metrics, created_at, files)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id.to_string(),
            new.epoch,
            new.step as i64,
            new.bytes as i64,
            new.sha256,
            new.dir,
            new.metrics.map(serde_json::to_string).transpose()?,
            crate::jobs::now(),
            new.files,
        ],
    )?;
    let checkpoint_id = tx.last_insert_rowid();
    let event = CheckpointEvent {
        id: checkpoint_id,
        epoch: new.epoch,
        step: new.step,
        bytes: new.bytes,
        sha256: new.sha256.to_string(),
    };
    Ok((checkpoint_id, vec![events::append(tx, id, &JobEvent::Checkpoint(event))?]))
}
