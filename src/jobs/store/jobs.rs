//! Job rows: inserted queued (or adopted finished, from a lost database's checkpoints), moved
//! through their statuses, listed and deleted, each status change with its event.

use super::claims::{self, Claim, ClaimEnd};
use super::events::{self as history};
use super::sql::{Dialect, Row, args};
use super::{Result, Store, StoreError, checkpoints, references, removals};
use crate::definition::ValidJobSpec;
use crate::jobs::events::{JobEvent, StatusEvent};
use crate::jobs::{Job, JobId, JobStatus};
use crate::metrics::Progress;

/// A job about to be inserted.
pub struct NewJob<'a> {
    pub id: JobId,
    pub spec: &'a ValidJobSpec,
    pub idempotency_key: Option<&'a str>,
    pub parameters: u64,
    pub steps: u64,
}

/// A job read back from its checkpoints, for a database that lost it: it is stored finished.
pub struct AdoptedJob<'a> {
    pub id: JobId,
    pub spec: &'a ValidJobSpec,
    pub parameters: u64,
    /// Where its newest checkpoint stands.
    pub progress: Progress,
    /// `succeeded` or `failed`, with the reason.
    pub status: JobStatus,
    pub error: Option<&'a str>,
    /// When it was made, as far as its files tell.
    pub created_at: &'a str,
    /// Its checkpoints, oldest first.
    pub checkpoints: Vec<super::NewCheckpoint<'a>>,
}

/// An arbitrary constant: the advisory lock under which PostgreSQL replicas admit jobs one at a
/// time, so the queue's capacity holds across the cluster.
const ADMISSION_LOCK: i64 = 0x6b696c6e_0001;

const JOB_COLUMNS: &str = "id, name, status, spec, parameters, backend, error, epoch, epochs, step, steps, \
                           created_at, started_at, finished_at, first_step_seconds, warnings, replica";
/// How many columns [`JOB_COLUMNS`] names: a query selecting more reads them from this index on.
const JOB_COLUMN_COUNT: usize = 17;

/// Reads the [`JOB_COLUMNS`] of `row`.
fn job(row: &Row) -> Result<Job> {
    let spec: ValidJobSpec = serde_json::from_str(&row.get::<String>(3)?)?;
    Ok(Job {
        layers: spec.layers(),
        id: row.get(0)?,
        name: row.get(1)?,
        status: row.get(2)?,
        spec,
        parameters: row.get(4)?,
        backend: row.get(5)?,
        error: row.get(6)?,
        progress: Progress {
            epoch: row.get(7)?,
            epochs: row.get(8)?,
            step: row.get(9)?,
            steps: row.get(10)?,
        },
        created_at: row.get(11)?,
        started_at: row.get(12)?,
        finished_at: row.get(13)?,
        first_step_seconds: row.get(14)?,
        warnings: serde_json::from_str(&row.get::<String>(15)?)?,
        replica: row.get(16)?,
    })
}

impl Store {
    /// Inserts a queued job and returns it, unless `capacity` jobs or more wait already in the
    /// whole cluster ([`StoreError::QueueFull`]): the count and the insert are one transaction,
    /// serialized across replicas, so concurrent submits cannot overfill the queue.
    pub fn insert_job(&self, new: NewJob<'_>, capacity: usize) -> Result<Job> {
        let spec = serde_json::to_string(new.spec)?;
        let dataset = new.spec.data.uploaded_dataset();
        let wants = new.spec.backend.name();
        self.write(|tx| {
            if tx.dialect() == Dialect::Postgres {
                tx.execute("SELECT pg_advisory_xact_lock($1)", args![ADMISSION_LOCK])?;
            }
            let waiting: i64 = tx.query_one("SELECT COUNT(*) FROM jobs WHERE status = 'queued'", &[])?.get(0)?;
            if waiting >= i64::try_from(capacity).unwrap_or(i64::MAX) {
                return Err(StoreError::QueueFull(waiting));
            }
            if let Some(dataset) = &dataset {
                references::refuse_gone_dataset(tx, *dataset)?;
            }
            tx.execute(
                "INSERT INTO jobs (id, name, status, spec, idempotency_key, parameters, epochs, steps, created_at, dataset_id, wants)
                 VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9, $10)",
                args![
                    new.id,
                    new.spec.name.as_deref(),
                    spec.as_str(),
                    new.idempotency_key,
                    new.parameters,
                    new.spec.training.epochs,
                    new.steps,
                    crate::jobs::now(),
                    dataset,
                    wants.as_str(),
                ],
            )?;
            Ok(((), vec![history::append(tx, new.id, &JobEvent::status(JobStatus::Queued))?]))
        })?;
        Ok(self.job(new.id)?.expect("the row just inserted"))
    }

    /// Stores a job read back from its checkpoints, finished, with its checkpoint index, in one
    /// transaction with their events.
    pub fn adopt_job(&self, job: &AdoptedJob<'_>) -> Result<()> {
        let spec = serde_json::to_string(job.spec)?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO jobs (id, name, status, spec, parameters, error, epoch, epochs, step, steps,
                                   created_at, started_at, finished_at, dataset_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13)",
                args![
                    job.id,
                    job.spec.name.as_deref(),
                    job.status.as_str(),
                    spec.as_str(),
                    job.parameters,
                    job.error,
                    job.progress.epoch,
                    job.progress.epochs,
                    job.progress.step,
                    job.progress.steps,
                    job.created_at,
                    crate::jobs::now(),
                    job.spec.data.uploaded_dataset(),
                ],
            )?;
            let mut recorded = Vec::new();
            for new in &job.checkpoints {
                recorded.extend(checkpoints::insert_checkpoint(tx, job.id, new)?.1);
            }
            let end = StatusEvent {
                status: job.status,
                backend: None,
                replica: None,
                error: job.error.map(str::to_string),
            };
            recorded.push(history::append(tx, job.id, &JobEvent::Status(end))?);
            Ok(((), recorded))
        })
    }

    /// The job with `id`.
    pub fn job(&self, id: JobId) -> Result<Option<Job>> {
        self.read(|db| {
            let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
            db.query_opt(&sql, args![id])?.as_ref().map(job).transpose()
        })
    }

    /// The job submitted with `key`.
    pub fn job_by_idempotency_key(&self, key: &str) -> Result<Option<Job>> {
        self.read(|db| {
            let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = $1");
            db.query_opt(&sql, args![key])?.as_ref().map(job).transpose()
        })
    }

    /// Jobs in submission order, after cursor `after`, optionally of one status. Returns the
    /// jobs and the cursor of the last one.
    pub fn list_jobs(
        &self,
        status: Option<JobStatus>,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<Job>, Option<i64>)> {
        let rows = self.read(|db| {
            let sql = format!(
                "SELECT {JOB_COLUMNS}, seq FROM jobs WHERE seq > $1 AND (CAST($2 AS TEXT) IS NULL OR status = $2) \
                 ORDER BY seq LIMIT $3"
            );
            db.query(&sql, args![after, status.map(JobStatus::as_str), limit])
        })?;
        let last = rows.last().map(|row| row.get::<i64>(JOB_COLUMN_COUNT)).transpose()?;
        Ok((rows.iter().map(job).collect::<Result<_>>()?, last))
    }

    /// Ids of the jobs with `status`, oldest first.
    pub fn job_ids_with_status(&self, status: JobStatus) -> Result<Vec<JobId>> {
        let rows = self.read(|db| {
            db.query("SELECT id FROM jobs WHERE status = $1 ORDER BY seq", args![status.as_str()])
        })?;
        Ok(rows
            .iter()
            .filter_map(|row| row.get::<String>(0).ok().and_then(|id| JobId::parse_str(&id).ok()))
            .collect())
    }

    /// Records how long the run holding `claim` took to finish its first step.
    pub fn set_first_step_seconds(&self, claim: Claim, seconds: f64) -> Result<()> {
        self.update_claimed(claim, "first_step_seconds", seconds.into())
    }

    /// Records a job's parameter count, for models whose size depends on the data (a language
    /// model's vocabulary).
    pub fn set_parameters(&self, claim: Claim, parameters: u64) -> Result<()> {
        self.update_claimed(claim, "parameters", parameters.into())
    }

    /// Sets one column of the job that `claim` holds, or refuses once the claim does not hold.
    fn update_claimed(&self, claim: Claim, column: &str, value: super::sql::Value) -> Result<()> {
        let sql = format!("UPDATE jobs SET {column} = $3 WHERE id = $1 AND claim = $2");
        let changed =
            self.read(|db| db.execute(&sql, &[claim.job.into(), claim.token.into(), value.clone()]))?;
        if changed == 1 { Ok(()) } else { Err(StoreError::Fenced(claim.job, claim.token)) }
    }

    /// Adds a warning to the list of the job that `claim` holds: something went wrong that its
    /// run got past.
    pub fn add_warning(&self, claim: Claim, message: &str) -> Result<()> {
        let id = claim.job;
        self.transaction(|tx| {
            claims::fence(tx, claim)?;
            let Some(row) = tx.query_opt("SELECT warnings FROM jobs WHERE id = $1", args![id])? else {
                return Ok(());
            };
            let mut warnings: Vec<String> = serde_json::from_str(&row.get::<String>(0)?)?;
            warnings.push(message.to_string());
            let warnings = serde_json::to_string(&warnings)?;
            tx.execute("UPDATE jobs SET warnings = $2 WHERE id = $1", args![id, warnings])?;
            Ok(())
        })
    }

    /// Ends a job with `status` and, for failures, the reason, whatever run holds it: a run
    /// still holding it is fenced off from then on (see [`Store::end_run`] for a run's own end).
    pub fn finish_job(&self, id: JobId, status: JobStatus, error: Option<&str>) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET status = $2, error = $3, finished_at = $4, claim = NULL WHERE id = $1",
                args![id, status.as_str(), error, crate::jobs::now()],
            )?;
            claims::end_claim(tx, id, ClaimEnd::Ended)?;
            let end = StatusEvent { status, backend: None, replica: None, error: error.map(str::to_string) };
            Ok(((), vec![history::append(tx, id, &JobEvent::Status(end))?]))
        })
    }

    /// Removes a job with its metrics, checkpoint index and events, and records its directory
    /// `files` (relative to the data dir) as to be removed, in one transaction; its watchers stop.
    pub fn delete_job(&self, id: JobId, files: &str) -> Result<()> {
        let order = self.write_order();
        self.transaction(|tx| {
            tx.execute("DELETE FROM jobs WHERE id = $1", args![id])?;
            if tx.dialect() == Dialect::Postgres {
                // Its watchers on the other replicas stop too (see `feed`).
                let payload = format!("{}{id}", history::DELETED);
                tx.execute("SELECT pg_notify($1, $2)", args![history::CHANNEL, payload])?;
            }
            removals::record(tx, files)
        })?;
        // On PostgreSQL every replica's listener announces it, after the job's last events.
        if self.feed.is_none() {
            self.announcer.deleted(id);
        }
        drop(order);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_column_count_is_the_number_of_job_columns() {
        assert_eq!(JOB_COLUMNS.split(',').count(), JOB_COLUMN_COUNT);
    }
}
