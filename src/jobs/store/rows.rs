//! Reads and writes of a job's row that the other tables' code shares: its status (read with its
//! events and metrics) and its progress (written with its steps and epochs).

use super::Result;
use super::sql::{Sql, args};
use crate::jobs::{JobId, JobStatus};
use crate::metrics::Progress;

/// The status of job `id`, or `None` if there is no such job.
pub(super) fn job_status(db: &mut dyn Sql, id: JobId) -> Result<Option<JobStatus>> {
    let Some(row) = db.query_opt("SELECT status FROM jobs WHERE id = $1", args![id])? else {
        return Ok(None);
    };
    row.get(0).map(Some)
}

/// Records how far a job has come, inside a caller's transaction.
pub(super) fn write_progress(tx: &mut dyn Sql, id: JobId, progress: Progress) -> Result<()> {
    tx.execute(
        "UPDATE jobs SET epoch = $2, epochs = $3, step = $4, steps = $5 WHERE id = $1",
        args![id, progress.epoch, progress.epochs, progress.step, progress.steps],
    )?;
    Ok(())
}
