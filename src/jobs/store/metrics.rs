//! Metrics rows: step points and epoch summaries of each job.

use super::claims::{self, Claim};
use super::sql::{Row, args};
use super::{Result, Store, events, rows};
use crate::jobs::events::JobEvent;
use crate::jobs::{JobId, JobStatus};
use crate::metrics::{EpochMetrics, Progress, StepPoint};

/// A page of a job's metrics.
pub struct MetricsPage {
    pub status: JobStatus,
    pub epochs: Vec<EpochMetrics>,
    pub steps: Vec<StepPoint>,
    /// Cursor of the last step point returned, to pass as `after` next time.
    pub next_after: Option<i64>,
    /// The newest step point, whatever the page.
    pub last_step: Option<StepPoint>,
}

impl Store {
    /// Records step points of the run holding `claim` and the progress they bring, in one
    /// transaction, with a `step` event for each point. Returns whether a cancel was asked of the
    /// run (by whichever replica answered it).
    pub fn record_steps(&self, claim: Claim, points: &[StepPoint], progress: Progress) -> Result<bool> {
        let id = claim.job;
        self.write(|tx| {
            let cancel = claims::fence(tx, claim)?;
            let mut recorded = Vec::with_capacity(points.len());
            for p in points {
                tx.execute(
                    "INSERT INTO step_metrics (job_id, step, epoch, loss, grad_norm) VALUES ($1, $2, $3, $4, $5)",
                    args![id, p.step, p.epoch, p.loss, p.grad_norm],
                )?;
                recorded.push(events::append(tx, id, &JobEvent::Step(p.clone()))?);
            }
            tx.execute(
                "UPDATE jobs SET epoch = $2, step = $3 WHERE id = $1",
                args![id, progress.epoch, progress.step],
            )?;
            Ok((cancel, recorded))
        })
    }

    /// Records an epoch's summary of the run holding `claim` and the progress at its end, in one
    /// transaction, with its `epoch` event.
    pub fn record_epoch(&self, claim: Claim, metrics: &EpochMetrics, progress: Progress) -> Result<()> {
        let json = serde_json::to_string(metrics)?;
        let id = claim.job;
        self.write(|tx| {
            claims::fence(tx, claim)?;
            tx.execute(
                "INSERT INTO epoch_metrics (job_id, epoch, metrics) VALUES ($1, $2, $3) \
                 ON CONFLICT (job_id, epoch) DO UPDATE SET metrics = excluded.metrics",
                args![id, metrics.epoch, json.as_str()],
            )?;
            rows::write_progress(tx, id, progress)?;
            Ok(((), vec![events::append(tx, id, &JobEvent::Epoch(metrics.clone()))?]))
        })
    }

    /// The run holding `claim` starts at `progress`: forgets the metrics it will produce again
    /// (step points after its step, epoch rows after its epoch, and their events) and records the
    /// progress, in one transaction.
    pub fn begin_run(&self, claim: Claim, progress: Progress) -> Result<()> {
        let id = claim.job;
        self.write(|tx| {
            claims::fence(tx, claim)?;
            let (step, epoch) = (progress.step, progress.epoch);
            tx.execute("DELETE FROM step_metrics WHERE job_id = $1 AND step > $2", args![id, step])?;
            tx.execute("DELETE FROM epoch_metrics WHERE job_id = $1 AND epoch > $2", args![id, epoch])?;
            let dialect = tx.dialect();
            let sql = format!(
                "DELETE FROM events WHERE job_id = $1 AND ((kind = 'step' AND {} > $2) OR (kind = 'epoch' AND {} > $3))",
                dialect.json_int("data", "step"),
                dialect.json_int("data", "epoch"),
            );
            tx.execute(&sql, args![id, step, epoch])?;
            rows::write_progress(tx, id, progress)?;
            Ok(((), Vec::new()))
        })
    }

    /// How many jobs have each status (those with none left out), and how many run on each
    /// device.
    pub fn job_counts(&self) -> Result<(Vec<(JobStatus, i64)>, Vec<(String, i64)>)> {
        let (statuses, devices) = self.read(|db| {
            let statuses = db.query("SELECT status, COUNT(*) FROM jobs GROUP BY status", &[])?;
            let devices = db.query(
                "SELECT COALESCE(backend, ''), COUNT(*) FROM jobs WHERE status = 'running' GROUP BY backend",
                &[],
            )?;
            Ok((statuses, devices))
        })?;
        let mut by_status = Vec::new();
        for row in statuses {
            by_status.push((row.get(0)?, row.get(1)?));
        }
        let by_device = devices.iter().map(|r| Ok((r.get(0)?, r.get(1)?))).collect::<Result<_>>()?;
        Ok((by_status, by_device))
    }

    /// A job's epoch rows and up to `limit` step points after cursor `after`.
    pub fn metrics(&self, id: JobId, after: i64, limit: usize) -> Result<Option<MetricsPage>> {
        self.read(|db| {
            let Some(status) = rows::job_status(db, id)? else {
                return Ok(None);
            };
            let epochs = db
                .query("SELECT metrics FROM epoch_metrics WHERE job_id = $1 ORDER BY epoch", args![id])?
                .iter()
                .map(|r| Ok(serde_json::from_str(&r.get::<String>(0)?)?))
                .collect::<Result<Vec<EpochMetrics>>>()?;
            let rows = db.query(
                "SELECT seq, step, epoch, loss, grad_norm FROM step_metrics \
                 WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                args![id, after, limit],
            )?;
            let last = db.query_opt(
                "SELECT seq, step, epoch, loss, grad_norm FROM step_metrics \
                 WHERE job_id = $1 ORDER BY seq DESC LIMIT 1",
                args![id],
            )?;
            let next_after = rows.last().map(|r| r.get::<i64>(0)).transpose()?;
            Ok(Some(MetricsPage {
                status,
                epochs,
                steps: rows.iter().map(point).collect::<Result<_>>()?,
                next_after,
                last_step: last.as_ref().map(point).transpose()?,
            }))
        })
    }
}

/// A `step_metrics` row (`seq, step, epoch, loss, grad_norm`) as a point.
fn point(r: &Row) -> Result<StepPoint> {
    Ok(StepPoint { step: r.get(1)?, epoch: r.get(2)?, loss: r.get(3)?, grad_norm: r.get(4)? })
}
