//! The checkpoint index: where each kept checkpoint's files are, with their size and hash.

use rusqlite::{Transaction, params};

use super::{Result, Store, events};
use crate::jobs::events::{CheckpointEvent, JobEvent, Recorded};
use crate::jobs::{CheckpointInfo, JobId};
use crate::metrics::EpochMetrics;

/// A checkpoint written to disk, about to be indexed.
pub struct NewCheckpoint<'a> {
    /// The directory holding its files.
    pub dir: &'a str,
    pub epoch: u32,
    pub step: u64,
    pub bytes: u64,
    pub sha256: &'a str,
    pub metrics: Option<&'a EpochMetrics>,
}

impl Store {
    /// Indexes a checkpoint of job `id`, replacing any row for the same directory (a resumed
    /// job writing a step again), in one transaction with its `checkpoint` event; returns its id.
    pub fn insert_checkpoint(&self, id: JobId, new: &NewCheckpoint<'_>) -> Result<i64> {
        self.write(|tx| insert_checkpoint(tx, id, new))
    }

    /// A job's checkpoints, oldest first, each with the directory holding its files.
    pub fn checkpoints(&self, id: JobId) -> Result<Vec<(CheckpointInfo, String)>> {
        let db = self.db();
        let mut stmt = db.prepare_cached(
            "SELECT id, epoch, step, bytes, sha256, dir, metrics, created_at FROM checkpoints WHERE job_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id.to_string()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (cid, epoch, step, bytes, sha256, dir, metrics, created_at) = row?;
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
            out.push((info, dir));
        }
        Ok(out)
    }

    /// Removes a checkpoint from the index.
    pub fn delete_checkpoint(&self, checkpoint_id: i64) -> Result<()> {
        self.db().execute("DELETE FROM checkpoints WHERE id = ?1", [checkpoint_id])?;
        Ok(())
    }
}

fn insert_checkpoint(
    tx: &Transaction<'_>,
    id: JobId,
    new: &NewCheckpoint<'_>,
) -> Result<(i64, Vec<Recorded>)> {
    tx.execute("DELETE FROM checkpoints WHERE job_id = ?1 AND dir = ?2", params![id.to_string(), new.dir])?;
    tx.execute(
        "INSERT INTO checkpoints (job_id, epoch, step, bytes, sha256, dir, metrics, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id.to_string(),
            new.epoch,
            new.step as i64,
            new.bytes as i64,
            new.sha256,
            new.dir,
            new.metrics.map(serde_json::to_string).transpose()?,
            crate::jobs::now(),
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
