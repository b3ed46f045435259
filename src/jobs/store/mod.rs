//! The durable record of the service: jobs, their metrics and their checkpoint index, and the
//! index of uploaded data sets, in one SQLite database in the data dir. All SQL of kiln is in this
//! module: jobs here, metrics rows in [`metrics`], the checkpoint index in [`checkpoints`],
//! uploaded data sets in [`datasets`], each job's event history in [`events`]: every write that
//! changes what a watcher sees appends its event in the same transaction and announces it once
//! committed. [`removals`] lists the files kiln is about to remove: deleting a job, a data set or
//! a checkpoint's index row records its files there in the same transaction, and the row is
//! cleared once they are gone, so the start-up sweep removes only what kiln itself let go of.
//! Paths in the database are relative to the data dir.
//!
//! SQLite is embedded (rusqlite, bundled), so a kiln server needs no other process. One
//! connection behind a mutex serves the HTTP handlers and the workers; every statement is short
//! (an indexed lookup or a single-row write) and the database runs in WAL mode, so holding the
//! lock never waits on training. The checkpoint *files* are not here (training writes them), nor
//! are the uploaded data sets' (see [`crate::jobs::datasets`]). The store persists plain values: the job
//! definition, its warnings and epoch rows as JSON, everything else in columns.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::events::{Announcer, JobEvent, Recorded, StatusEvent};
use super::{Job, JobId, JobStatus};
use crate::definition::ValidJobSpec;
use crate::metrics::Progress;

/// A database failure; never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stored value is not valid: {0}")]
    Corrupt(String),
    /// A job was to be inserted on an uploaded data set that is gone (deleted after the job was
    /// validated against it).
    #[error("data set {0} is gone")]
    DatasetGone(String),
}

type Result<T> = std::result::Result<T, StoreError>;

mod checkpoints;
mod datasets;
mod events;
mod metrics;
mod references;
mod removals;
mod schema;

pub use checkpoints::{IndexedCheckpoint, NewCheckpoint};
pub use datasets::DatasetDeletion;
pub use metrics::MetricsPage;

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
    pub checkpoints: Vec<NewCheckpoint<'a>>,
}

/// The database, and the channel on which it announces the events it records.
pub struct Store {
    conn: Mutex<Connection>,
    announcer: Announcer,
}

const JOB_COLUMNS: &str = "id, name, status, spec, parameters, backend, error, epoch, epochs, step, steps, \
                           created_at, started_at, finished_at, first_step_seconds, warnings";
/// How many columns [`JOB_COLUMNS`] names: a query selecting more reads them from this index on.
const JOB_COLUMN_COUNT: usize = 16;

/// A `jobs` row before its JSON and status columns are decoded (a row closure cannot return
/// decoding errors).
struct JobRow {
    id: String,
    name: Option<String>,
    status: String,
    spec: String,
    parameters: i64,
    backend: Option<String>,
    error: Option<String>,
    progress: Progress,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    first_step_seconds: Option<f64>,
    /// A JSON array of strings.
    warnings: String,
}

impl JobRow {
    /// Reads the [`JOB_COLUMNS`] of `row`.
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            name: row.get(1)?,
            status: row.get(2)?,
            spec: row.get(3)?,
            parameters: row.get(4)?,
            backend: row.get(5)?,
            error: row.get(6)?,
            progress: Progress {
                epoch: row.get(7)?,
                epochs: row.get(8)?,
                step: row.get::<_, i64>(9)? as u64,
                steps: row.get::<_, i64>(10)? as u64,
            },
            created_at: row.get(11)?,
            started_at: row.get(12)?,
            finished_at: row.get(13)?,
            first_step_seconds: row.get(14)?,
            warnings: row.get(15)?,
        })
    }

    fn into_job(self) -> Result<Job> {
        let spec: ValidJobSpec = serde_json::from_str(&self.spec)?;
        Ok(Job {
            layers: spec.layers(),
            id: JobId::parse_str(&self.id)
                .map_err(|_| StoreError::Corrupt(format!("job id {:?}", self.id)))?,
            name: self.name,
            status: JobStatus::parse(&self.status)
                .ok_or(StoreError::Corrupt(format!("status {:?}", self.status)))?,
            spec,
            progress: self.progress,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            error: self.error,
            backend: self.backend,
            parameters: self.parameters as u64,
            first_step_seconds: self.first_step_seconds,
            warnings: serde_json::from_str(&self.warnings)?,
        })
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::create_or_upgrade(&conn)?;
        Ok(Self { conn: Mutex::new(conn), announcer: Announcer::default() })
    }

    /// Whether the database knows no job and no data set (it is new, or was lost and made anew).
    pub fn is_empty(&self) -> Result<bool> {
        let empty = self.db().query_row(
            "SELECT NOT EXISTS (SELECT 1 FROM jobs) AND NOT EXISTS (SELECT 1 FROM datasets)",
            [],
            |r| r.get(0),
        )?;
        Ok(empty)
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written: keep serving.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `write` in one transaction; once it commits, announces the events it recorded, still
    /// holding the lock: the channel then carries every job's events in the order of their ids.
    fn write<T>(&self, write: impl FnOnce(&Transaction<'_>) -> Result<(T, Vec<Recorded>)>) -> Result<T> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let (value, events) = write(&tx)?;
        tx.commit()?;
        self.announcer.announce(events);
        drop(db);
        Ok(value)
    }

    /// Where recorded events are announced, for watchers to subscribe.
    pub fn announcer(&self) -> &Announcer {
        &self.announcer
    }

    /// Inserts a queued job and returns it.
    pub fn insert_job(&self, new: NewJob<'_>) -> Result<Job> {
        let spec = serde_json::to_string(new.spec)?;
        self.write(|tx| {
            references::refuse_gone_dataset(tx, &spec)?;
            tx.execute(
                "INSERT INTO jobs (id, name, status, spec, idempotency_key, parameters, epochs, steps, created_at)
                 VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    new.id.to_string(),
                    new.spec.name,
                    spec,
                    new.idempotency_key,
                    new.parameters as i64,
                    new.spec.training.epochs,
                    new.steps as i64,
                    super::now(),
                ],
            )?;
            Ok(((), vec![events::append(tx, new.id, &JobEvent::status(JobStatus::Queued))?]))
        })?;
        Ok(self.job(new.id)?.expect("the row just inserted"))
    }

    /// Stores a job read back from its checkpoints, finished, with its checkpoint index, in one
    /// transaction with their events.
    pub fn adopt_job(&self, job: &AdoptedJob<'_>) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO jobs (id, name, status, spec, parameters, error, epoch, epochs, step, steps,
                                   created_at, started_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12)",
                params![
                    job.id.to_string(),
                    job.spec.name,
                    job.status.as_str(),
                    serde_json::to_string(job.spec)?,
                    job.parameters as i64,
                    job.error,
                    job.progress.epoch,
                    job.progress.epochs,
                    job.progress.step as i64,
                    job.progress.steps as i64,
                    job.created_at,
                    super::now(),
                ],
            )?;
            let mut recorded = Vec::new();
            for new in &job.checkpoints {
                recorded.extend(checkpoints::insert_checkpoint(tx, job.id, new)?.1);
            }
            let end = StatusEvent { status: job.status, backend: None, error: job.error.map(str::to_string) };
            recorded.push(events::append(tx, job.id, &JobEvent::Status(end))?);
            Ok(((), recorded))
        })
    }

    /// The job with `id`.
    pub fn job(&self, id: JobId) -> Result<Option<Job>> {
        let row = self
            .db()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id.to_string()],
                JobRow::read,
            )
            .optional()?;
        row.map(JobRow::into_job).transpose()
    }

    /// The job submitted with `key`.
    pub fn job_by_idempotency_key(&self, key: &str) -> Result<Option<Job>> {
        let row = self
            .db()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = ?1"),
                [key],
                JobRow::read,
            )
            .optional()?;
        row.map(JobRow::into_job).transpose()
    }

    /// Jobs in submission order, after cursor `after`, optionally of one status. Returns the
    /// jobs and the cursor of the last one.
    pub fn list_jobs(
        &self,
        status: Option<JobStatus>,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<Job>, Option<i64>)> {
        let db = self.db();
        let mut stmt = db.prepare(&format!(
            "SELECT {JOB_COLUMNS}, seq FROM jobs WHERE seq > ?1 AND (?2 IS NULL OR status = ?2) ORDER BY seq LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![after, status.map(JobStatus::as_str), limit as i64], |row| {
            Ok((JobRow::read(row)?, row.get::<_, i64>(JOB_COLUMN_COUNT)?))
        })?;
        let mut jobs = Vec::new();
        let mut last = None;
        for row in rows {
            let (job, seq) = row?;
            jobs.push(job.into_job()?);
            last = Some(seq);
        }
        Ok((jobs, last))
    }

    /// Ids of the jobs with `status`, oldest first.
    pub fn job_ids_with_status(&self, status: JobStatus) -> Result<Vec<JobId>> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT id FROM jobs WHERE status = ?1 ORDER BY seq")?;
        let ids = stmt.query_map([status.as_str()], |row| row.get::<_, String>(0))?;
        Ok(ids.filter_map(|id| id.ok().and_then(|id| JobId::parse_str(&id).ok())).collect())
    }

    /// Marks a job running on `backend`; keeps the first start time of a resumed job.
    pub fn mark_running(&self, id: JobId, backend: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET status = 'running', backend = ?2, started_at = COALESCE(started_at, ?3) WHERE id = ?1",
                params![id.to_string(), backend, super::now()],
            )?;
            let running =
                StatusEvent { status: JobStatus::Running, backend: Some(backend.to_string()), error: None };
            Ok(((), vec![events::append(tx, id, &JobEvent::Status(running))?]))
        })
    }

    /// Records how long the job's latest run took to finish its first step.
    pub fn set_first_step_seconds(&self, id: JobId, seconds: f64) -> Result<()> {
        self.db().execute(
            "UPDATE jobs SET first_step_seconds = ?2 WHERE id = ?1",
            params![id.to_string(), seconds],
        )?;
        Ok(())
    }

    /// Records a job's parameter count, for models whose size depends on the data (a language
    /// model's vocabulary).
    pub fn set_parameters(&self, id: JobId, parameters: u64) -> Result<()> {
        self.db().execute(
            "UPDATE jobs SET parameters = ?2 WHERE id = ?1",
            params![id.to_string(), parameters as i64],
        )?;
        Ok(())
    }

    /// Adds a warning to a job's list: something went wrong that its run got past.
    pub fn add_warning(&self, id: JobId, message: &str) -> Result<()> {
        self.db().execute(
            "UPDATE jobs SET warnings = json_insert(warnings, '$[#]', ?2) WHERE id = ?1",
            params![id.to_string(), message],
        )?;
        Ok(())
    }

    /// Puts a job back in the queue (server shutdown or restart), keeping its metrics.
    pub fn mark_queued(&self, id: JobId) -> Result<()> {
        self.write(|tx| {
            tx.execute("UPDATE jobs SET status = 'queued' WHERE id = ?1", [id.to_string()])?;
            Ok(((), vec![events::append(tx, id, &JobEvent::status(JobStatus::Queued))?]))
        })
    }

    /// Ends a job with `status` and, for failures, the reason.
    pub fn finish_job(&self, id: JobId, status: JobStatus, error: Option<&str>) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET status = ?2, error = ?3, finished_at = ?4 WHERE id = ?1",
                params![id.to_string(), status.as_str(), error, super::now()],
            )?;
            let end = StatusEvent { status, backend: None, error: error.map(str::to_string) };
            Ok(((), vec![events::append(tx, id, &JobEvent::Status(end))?]))
        })
    }

    /// Removes a job with its metrics, checkpoint index and events, and records its directory
    /// `files` (relative to the data dir) as to be removed, in one transaction; its watchers stop.
    pub fn delete_job(&self, id: JobId, files: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute("DELETE FROM jobs WHERE id = ?1", [id.to_string()])?;
        removals::record(&tx, files)?;
        tx.commit()?;
        self.announcer.deleted(id);
        drop(db);
        Ok(())
    }
}

/// The status of job `id`, or `None` if there is no such job.
fn job_status(db: &Connection, id: JobId) -> Result<Option<JobStatus>> {
    let status: Option<String> =
        db.query_row("SELECT status FROM jobs WHERE id = ?1", [id.to_string()], |r| r.get(0)).optional()?;
    status
        .map(|s| JobStatus::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("status {s:?}"))))
        .transpose()
}

/// Records how far a job has come, inside a caller's transaction.
fn write_progress(tx: &rusqlite::Transaction<'_>, id: JobId, progress: Progress) -> Result<()> {
    tx.execute(
        "UPDATE jobs SET epoch = ?2, epochs = ?3, step = ?4, steps = ?5 WHERE id = ?1",
        params![id.to_string(), progress.epoch, progress.epochs, progress.step as i64, progress.steps as i64],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_column_count_is_the_number_of_job_columns() {
        assert_eq!(JOB_COLUMNS.split(',').count(), JOB_COLUMN_COUNT);
    }
}
