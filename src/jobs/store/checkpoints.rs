//! The checkpoint index: where each kept checkpoint's files are (a directory relative to the data
//! dir), with the size and hash of its model file and, for checkpoints indexed since they were all
//! recorded, of every file (a JSON object `{name: {bytes, sha256}}`).

use super::claims::{self, Claim};
use super::sql::{Row, Sql, args};
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
    /// Indexes a checkpoint written by the run holding `claim`, replacing any row for the same
    /// directory (a run writing a step again), in one transaction with its `checkpoint` event;
    /// returns its id.
    pub fn insert_checkpoint(&self, claim: Claim, new: &NewCheckpoint<'_>) -> Result<i64> {
        self.write(|tx| {
            claims::fence(tx, claim)?;
            insert_checkpoint(tx, claim.job, new)
        })
    }

    /// A job's checkpoints, oldest first.
    pub fn checkpoints(&self, id: JobId) -> Result<Vec<IndexedCheckpoint>> {
        let rows = self.read(|db| {
            db.query(
                "SELECT id, epoch, step, bytes, sha256, dir, metrics, created_at, files FROM checkpoints \
                 WHERE job_id = $1 ORDER BY id",
                args![id],
            )
        })?;
        rows.iter().map(indexed).collect()
    }

    /// Removes a checkpoint from the index for the run holding `claim` (its retention dropped
    /// it, or it is damaged) and records its directory as to be removed, in one transaction.
    pub fn drop_checkpoint(&self, claim: Claim, checkpoint_id: i64) -> Result<()> {
        self.transaction(|tx| {
            claims::fence(tx, claim)?;
            delete_checkpoint(tx, checkpoint_id)
        })
    }

    /// Whether `dir` (relative to the data dir) is a checkpoint in the index.
    pub fn is_indexed_checkpoint(&self, dir: &str) -> Result<bool> {
        let found =
            self.read(|db| db.query_opt("SELECT id FROM checkpoints WHERE dir = $1 LIMIT 1", args![dir]))?;
        Ok(found.is_some())
    }
}

/// Removes checkpoint `checkpoint_id` from the index inside `tx`, recording its directory as to
/// be removed.
fn delete_checkpoint(tx: &mut dyn Sql, checkpoint_id: i64) -> Result<()> {
    let deleted =
        tx.query_opt("DELETE FROM checkpoints WHERE id = $1 RETURNING dir", args![checkpoint_id])?;
    if let Some(row) = deleted {
        removals::record(tx, &row.get::<String>(0)?)?;
    }
    Ok(())
}

/// A `checkpoints` row, as its columns are selected above.
fn indexed(r: &Row) -> Result<IndexedCheckpoint> {
    let metrics = r.get::<Option<String>>(6)?.map(|m| serde_json::from_str(&m)).transpose()?;
    let info = CheckpointInfo {
        id: r.get(0)?,
        epoch: r.get(1)?,
        step: r.get(2)?,
        bytes: r.get(3)?,
        sha256: r.get(4)?,
        metrics,
        created_at: r.get(7)?,
    };
    Ok(IndexedCheckpoint { info, dir: r.get(5)?, files: r.get(8)? })
}

pub(super) fn insert_checkpoint(
    tx: &mut dyn Sql,
    id: JobId,
    new: &NewCheckpoint<'_>,
) -> Result<(i64, Vec<Recorded>)> {
    tx.execute("DELETE FROM checkpoints WHERE job_id = $1 AND dir = $2", args![id, new.dir])?;
    // A step written again after its directory was dropped: the new one is not to be removed.
    removals::forget(tx, new.dir)?;
    let checkpoint_id = tx
        .query_one(
            "INSERT INTO checkpoints (job_id, epoch, step, bytes, sha256, dir, metrics, created_at, files)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            args![
                id,
                new.epoch,
                new.step,
                new.bytes,
                new.sha256,
                new.dir,
                new.metrics.map(serde_json::to_string).transpose()?,
                crate::jobs::now(),
                new.files,
            ],
        )?
        .get::<i64>(0)?;
    let event = CheckpointEvent {
        id: checkpoint_id,
        epoch: new.epoch,
        step: new.step,
        bytes: new.bytes,
        sha256: new.sha256.to_string(),
    };
    Ok((checkpoint_id, vec![events::append(tx, id, &JobEvent::Checkpoint(event))?]))
}
