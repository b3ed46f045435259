//! Metrics rows: step points and epoch summaries of each job.

use rusqlite::{OptionalExtension, Row, params};

use super::{Result, Store, StoreError, events};
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
    /// Records step points and the progress they bring, in one transaction, with a `step` event
    /// for each point.
    pub fn record_steps(&self, id: JobId, points: &[StepPoint], progress: Progress) -> Result<()> {
        self.write(|tx| {
            let mut recorded = Vec::with_capacity(points.len());
            let mut stmt = tx.prepare_cached(
                "INSERT INTO step_metrics (job_id, step, epoch, loss, grad_norm) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for p in points {
                stmt.execute(params![id.to_string(), p.step as i64, p.epoch, p.loss, p.grad_norm])?;
                recorded.push(events::append(tx, id, &JobEvent::Step(p.clone()))?);
            }
            tx.execute(
                "UPDATE jobs SET epoch = ?2, step = ?3 WHERE id = ?1",
                params![id.to_string(), progress.epoch, progress.step as i64],
            )?;
            Ok(((), recorded))
        })
    }

    /// Records an epoch's summary and the progress at its end, in one transaction, with its
    /// `epoch` event.
    pub fn record_epoch(&self, id: JobId, metrics: &EpochMetrics, progress: Progress) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO epoch_metrics (job_id, epoch, metrics) VALUES (?1, ?2, ?3)",
                params![id.to_string(), metrics.epoch, serde_json::to_string(metrics)?],
            )?;
            super::write_progress(tx, id, progress)?;
            Ok(((), vec![events::append(tx, id, &JobEvent::Epoch(metrics.clone()))?]))
        })
    }

    /// A run starts at `progress`: forgets the metrics it will produce again (step points after
    /// its step, epoch rows after its epoch, and their events) and records the progress, in one
    /// transaction.
    pub fn begin_run(&self, id: JobId, progress: Progress) -> Result<()> {
        self.write(|tx| {
            let (job, step, epoch) = (id.to_string(), progress.step as i64, progress.epoch);
            tx.execute("DELETE FROM step_metrics WHERE job_id = ?1 AND step > ?2", params![job, step])?;
            tx.execute("DELETE FROM epoch_metrics WHERE job_id = ?1 AND epoch > ?2", params![job, epoch])?;
            tx.execute(
                "DELETE FROM events WHERE job_id = ?1 AND ((kind = 'step' AND data ->> 'step' > ?2) \
                 OR (kind = 'epoch' AND data ->> 'epoch' > ?3))",
                params![job, step, epoch],
            )?;
            super::write_progress(tx, id, progress)?;
            Ok(((), Vec::new()))
        })
    }

    /// How many jobs have each status (those with none left out), and how many run on each
    /// device.
    pub fn job_counts(&self) -> Result<(Vec<(JobStatus, i64)>, Vec<(String, i64)>)> {
        let db = self.db();
        let mut stmt = db.prepare_cached("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut by_status = Vec::new();
        for row in rows {
            let (status, count) = row?;
            let status =
                JobStatus::parse(&status).ok_or(StoreError::Corrupt(format!("status {status:?}")))?;
            by_status.push((status, count));
        }
        let mut stmt = db.prepare_cached(
            "SELECT COALESCE(backend, ''), COUNT(*) FROM jobs WHERE status = 'running' GROUP BY backend",
        )?;
        let by_device = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((by_status, by_device))
    }

    /// A job's epoch rows and up to `limit` step points after cursor `after`.
    pub fn metrics(&self, id: JobId, after: i64, limit: usize) -> Result<Option<MetricsPage>> {
        let db = self.db();
        let Some(status) = super::job_status(&db, id)? else {
            return Ok(None);
        };
        let mut stmt =
            db.prepare_cached("SELECT metrics FROM epoch_metrics WHERE job_id = ?1 ORDER BY epoch")?;
        let epochs = stmt
            .query_map([id.to_string()], |r| r.get::<_, String>(0))?
            .map(|json| Ok(serde_json::from_str(&json?)?))
            .collect::<Result<Vec<EpochMetrics>>>()?;
        let point = |r: &Row<'_>| {
            Ok((
                r.get::<_, i64>(0)?,
                StepPoint {
                    step: r.get::<_, i64>(1)? as u64,
                    epoch: r.get(2)?,
                    loss: r.get(3)?,
                    grad_norm: r.get(4)?,
                },
            ))
        };
        let mut stmt = db.prepare_cached(
            "SELECT seq, step, epoch, loss, grad_norm FROM step_metrics \
             WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![id.to_string(), after, limit as i64], point)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let last_step = db
            .query_row(
                "SELECT seq, step, epoch, loss, grad_norm FROM step_metrics \
                 WHERE job_id = ?1 ORDER BY seq DESC LIMIT 1",
                [id.to_string()],
                point,
            )
            .optional()?
            .map(|(_, p)| p);
        let next_after = rows.last().map(|(seq, _)| *seq);
        Ok(Some(MetricsPage {
            status,
            epochs,
            steps: rows.into_iter().map(|(_, p)| p).collect(),
            next_after,
            last_step,
        }))
    }
}
