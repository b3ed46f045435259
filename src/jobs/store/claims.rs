//! Claims: how a queued job comes to train on exactly one worker of one replica. A worker claims
//! the oldest queued job its lane can run (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas
//! claiming at once take different jobs; SQLite has one writer). The claim's id, from the
//! `claims` table, is the run's fencing token: every write of the run ([`Claim`] in the store's
//! run methods) first checks, under the job row's lock, that the job still holds that claim, and
//! is refused ([`StoreError::Fenced`]) once it does not. A claim lives as long as its replica's
//! heartbeat (see [`super::replicas`]): [`Store::requeue_expired`] queues again the jobs of a
//! replica whose heartbeat is older than the lease, ending their claims, so a replica that was
//! paused or cut off finds its runs fenced when it comes back and records nothing more of them.
//!
//! The `claims` table is also the log of who trained a job when, and how each claim ended.

use super::events as history;
use super::sql::{Sql, Value, args};
use super::{Result, Store, StoreError};
use crate::jobs::events::{JobEvent, Recorded, StatusEvent};
use crate::jobs::{JobId, JobStatus};

/// A run's hold on its job: the token every write of the run carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub job: JobId,
    /// The claim's id in the `claims` log; claims only ever grow.
    pub token: i64,
}

/// How a claim ended, as the log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimEnd {
    /// The run ended the job with this status.
    Finished(JobStatus),
    /// The run stopped at a shutdown and queued the job again.
    Interrupted,
    /// The replica's heartbeat expired and another replica queued the job again.
    Expired,
    /// The job was ended while no run could (cancelled or deleted from elsewhere).
    Ended,
}

impl ClaimEnd {
    fn as_str(self) -> &'static str {
        match self {
            Self::Finished(status) => status.as_str(),
            Self::Interrupted => "interrupted",
            Self::Expired => "expired",
            Self::Ended => "ended",
        }
    }
}

/// One entry of a job's claim log.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRow {
    pub token: i64,
    pub replica: String,
    pub device: String,
    pub claimed_at: String,
    pub ended_at: Option<String>,
    /// [`ClaimEnd`]'s name; `None` while the claim holds.
    pub outcome: Option<String>,
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelRequest {
    /// The job was queued: it is cancelled.
    Dequeued,
    /// The job is running on replica `.0`: the flag is set for its run to read.
    Asked(String),
    /// The job had already ended with this status.
    Finished(JobStatus),
}

/// Locks job `claim.job`'s row inside `tx` and checks that `claim` still holds it; returns
/// whether a cancel was asked of the run.
pub(super) fn fence(tx: &mut dyn Sql, claim: Claim) -> Result<bool> {
    let lock = tx.dialect().lock_rows(false);
    let sql = format!("SELECT claim, cancel_requested FROM jobs WHERE id = $1{lock}");
    match tx.query_opt(&sql, args![claim.job])? {
        Some(row) if row.get::<Option<i64>>(0)? == Some(claim.token) => Ok(row.get::<i64>(1)? != 0),
        _ => Err(StoreError::Fenced(claim.job, claim.token)),
    }
}

/// Claims job `job` for `replica`'s worker on `device` inside `tx`: a new entry in the claim log,
/// whose id is the token, and the job marked running there with its event.
fn claim(tx: &mut dyn Sql, job: JobId, replica: &str, device: &str) -> Result<(Claim, Recorded)> {
    let now = crate::jobs::now();
    let token = tx
        .query_one(
            "INSERT INTO claims (job_id, replica, device, claimed_at) VALUES ($1, $2, $3, $4) RETURNING id",
            args![job, replica, device, now.as_str()],
        )?
        .get::<i64>(0)?;
    tx.execute(
        "UPDATE jobs SET status = 'running', claim = $2, replica = $3, backend = $4, \
         started_at = COALESCE(started_at, $5), cancel_requested = 0 WHERE id = $1",
        args![job, token, replica, device, now.as_str()],
    )?;
    let running = StatusEvent {
        status: JobStatus::Running,
        backend: Some(device.to_string()),
        replica: Some(replica.to_string()),
        error: None,
    };
    let event = history::append(tx, job, &JobEvent::Status(running))?;
    Ok((Claim { job, token }, event))
}

/// Ends the log entry of job `id`'s open claim, if any, inside `tx`.
pub(super) fn end_claim(tx: &mut dyn Sql, id: JobId, end: ClaimEnd) -> Result<()> {
    tx.execute(
        "UPDATE claims SET ended_at = $2, outcome = $3 WHERE job_id = $1 AND ended_at IS NULL",
        args![id, crate::jobs::now(), end.as_str()],
    )?;
    Ok(())
}

impl Store {
    /// Claims the oldest queued job that asked for one of `wants` (backends as definitions name
    /// them) for a worker on `device` of this replica: marks it running here, with its `running`
    /// event, and returns the claim; `None` when no such job waits.
    pub fn claim_next(&self, wants: &[String], device: &str) -> Result<Option<Claim>> {
        if wants.is_empty() {
            return Ok(None);
        }
        let listed: Vec<String> = (0..wants.len()).map(|i| format!("${}", i + 1)).collect();
        let replica = self.replica.as_str();
        self.write(|tx| {
            let sql = format!(
                "SELECT id FROM jobs WHERE status = 'queued' AND wants IN ({}) ORDER BY seq LIMIT 1{}",
                listed.join(", "),
                tx.dialect().lock_free_rows()
            );
            let values: Vec<Value> = wants.iter().map(|w| w.as_str().into()).collect();
            let Some(row) = tx.query_opt(&sql, &values)? else { return Ok((None, Vec::new())) };
            let job: JobId = row.get(0)?;
            let (claim, event) = claim(tx, job, replica, device)?;
            Ok((Some(claim), vec![event]))
        })
    }

    /// Claims queued job `id` for this replica on `device`, as [`Store::claim_next`] would.
    #[cfg(test)]
    pub(crate) fn claim_job(&self, id: JobId, device: &str) -> Result<Claim> {
        let replica = self.replica.as_str();
        self.write(|tx| {
            let (claim, event) = claim(tx, id, replica, device)?;
            Ok((claim, vec![event]))
        })
    }

    /// Ends a run that holds `claim`: the job is `status` (with the reason of a failure), or
    /// queued again for `Queued` (the run was interrupted; its metrics stay) unless a cancel was
    /// asked meanwhile. Refused if the claim no longer holds.
    pub fn end_run(&self, claim: Claim, status: JobStatus, error: Option<&str>) -> Result<()> {
        self.write(|tx| {
            let cancel_asked = fence(tx, claim)?;
            let id = claim.job;
            // Interrupted (a shutdown) after a cancel was asked through another replica: the
            // cancel wins, or the job would train again.
            let status =
                if status == JobStatus::Queued && cancel_asked { JobStatus::Cancelled } else { status };
            if status == JobStatus::Queued {
                tx.execute(
                    "UPDATE jobs SET status = 'queued', claim = NULL, replica = NULL, cancel_requested = 0 \
                     WHERE id = $1",
                    args![id],
                )?;
                end_claim(tx, id, ClaimEnd::Interrupted)?;
            } else {
                tx.execute(
                    "UPDATE jobs SET status = $2, error = $3, finished_at = $4, claim = NULL WHERE id = $1",
                    args![id, status.as_str(), error, crate::jobs::now()],
                )?;
                end_claim(tx, id, ClaimEnd::Finished(status))?;
            }
            let event =
                StatusEvent { status, backend: None, replica: None, error: error.map(str::to_string) };
            Ok(((), vec![history::append(tx, id, &JobEvent::Status(event))?]))
        })
    }

    /// Queues again the running jobs whose replica's heartbeat is older than `lease_ms` on the
    /// database's clock (or whose replica is gone), ending their claims as expired; a job asked
    /// to cancel meanwhile is cancelled instead. Never this replica's own jobs: if its heartbeat
    /// failed, the others take them. Returns the jobs queued again.
    pub fn requeue_expired(&self, lease_ms: i64) -> Result<Vec<JobId>> {
        self.write(|tx| {
            let dialect = tx.dialect();
            let sql = format!(
                "SELECT id, cancel_requested FROM jobs j WHERE status = 'running' \
                 AND (j.replica IS NULL OR j.replica <> $2) AND NOT EXISTS \
                 (SELECT 1 FROM replicas r WHERE r.id = j.replica AND r.heartbeat_ms >= {} - $1) \
                 ORDER BY seq{}",
                dialect.now_ms(),
                dialect.lock_free_rows()
            );
            let mut requeued = Vec::new();
            let mut recorded = Vec::new();
            for row in tx.query(&sql, args![lease_ms, self.replica.as_str()])? {
                let id: JobId = row.get(0)?;
                let status = if row.get::<i64>(1)? != 0 { JobStatus::Cancelled } else { JobStatus::Queued };
                let finished = (status == JobStatus::Cancelled).then(crate::jobs::now);
                tx.execute(
                    "UPDATE jobs SET status = $2, claim = NULL, replica = NULL, finished_at = $3 WHERE id = $1",
                    args![id, status.as_str(), finished],
                )?;
                end_claim(tx, id, ClaimEnd::Expired)?;
                recorded.push(history::append(tx, id, &JobEvent::status(status))?);
                if status == JobStatus::Queued {
                    requeued.push(id);
                }
            }
            Ok((requeued, recorded))
        })
    }

    /// Cancels a queued job at once, or asks the replica training a running one to stop it at
    /// its next step (the run reads the flag when it records steps).
    pub fn request_cancel(&self, id: JobId) -> Result<Option<CancelRequest>> {
        self.write(|tx| {
            let lock = tx.dialect().lock_rows(false);
            let sql = format!("SELECT status, replica FROM jobs WHERE id = $1{lock}");
            let Some(row) = tx.query_opt(&sql, args![id])? else { return Ok((None, Vec::new())) };
            let status: JobStatus = row.get(0)?;
            match status {
                JobStatus::Queued => {
                    tx.execute(
                        "UPDATE jobs SET status = 'cancelled', finished_at = $2 WHERE id = $1",
                        args![id, crate::jobs::now()],
                    )?;
                    let event = history::append(tx, id, &JobEvent::status(JobStatus::Cancelled))?;
                    Ok((Some(CancelRequest::Dequeued), vec![event]))
                }
                JobStatus::Running => {
                    tx.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = $1", args![id])?;
                    let replica = row.get::<Option<String>>(1)?.unwrap_or_default();
                    Ok((Some(CancelRequest::Asked(replica)), Vec::new()))
                }
                finished => Ok((Some(CancelRequest::Finished(finished)), Vec::new())),
            }
        })
    }

    /// How many jobs wait for each backend (as definitions name them), the whole cluster's.
    pub fn queued_by_backend(&self) -> Result<Vec<(String, i64)>> {
        let rows = self.read(|db| {
            db.query(
                "SELECT COALESCE(wants, ''), COUNT(*) FROM jobs WHERE status = 'queued' GROUP BY wants",
                &[],
            )
        })?;
        rows.iter().map(|r| Ok((r.get(0)?, r.get(1)?))).collect()
    }

    /// Job `id`'s claim log, oldest first: which replica trained it when, and how each ended.
    pub fn claims(&self, id: JobId) -> Result<Vec<ClaimRow>> {
        let rows = self.read(|db| {
            db.query(
                "SELECT id, replica, device, claimed_at, ended_at, outcome FROM claims WHERE job_id = $1 ORDER BY id",
                args![id],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(ClaimRow {
                    token: r.get(0)?,
                    replica: r.get(1)?,
                    device: r.get(2)?,
                    claimed_at: r.get(3)?,
                    ended_at: r.get(4)?,
                    outcome: r.get(5)?,
                })
            })
            .collect()
    }
}
