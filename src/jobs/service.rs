//! The operations on jobs that the HTTP layer calls: one method per thing a client can do.
//!
//! [`Jobs`] owns the shared state (store, queue, devices) and the worker pool. Handlers call one
//! method and map its result; every rule about jobs (admission, idempotency, what may be
//! cancelled or deleted) lives here, not in the handlers. Generation is in [`super::generation`],
//! the operations on uploaded data sets in [`super::datasets`].

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::checkpoints::{self, Located};
use super::cluster::{self, ClusterView, Membership};
use super::error::JobError;
use super::events::{Follow, History, HistorySource, Recorded};
use super::generation::Generation;
use super::shared::Shared;
use super::store::{CancelRequest, MetricsPage, NewJob, StoreError};
use super::worker::Pool;
use super::{CheckpointInfo, Job, JobId, JobStatus, datadir, disk, orphans, sweep, worker};
use crate::backend::{BackendsView, Lane};
use crate::config::Config;
use crate::definition::{FieldError, JobSpec, Limits, ValidJob};
use crate::telemetry::{Snapshot, Telemetry};

/// The result of a submit.
pub struct Submitted {
    pub job: Job,
    /// False when an earlier submit with the same `Idempotency-Key` made the job.
    pub created: bool,
}

/// The job service; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    pub(super) shared: Arc<Shared>,
    /// The workers, until shutdown joins them.
    pool: Arc<Mutex<Option<Pool>>>,
    /// This replica's heartbeat, until shutdown stops it.
    membership: Arc<Mutex<Option<Membership>>>,
    /// Generation's slots and loaded models.
    pub(super) generation: Arc<Generation>,
}

impl Jobs {
    /// Opens the data dir and joins the replicas of its database ([`cluster`]); refuses to start
    /// when it holds jobs or uploads the database does not know, unless `--adopt-orphans` or `--discard-orphans` says what to do with them (see
    /// [`orphans`]); re-queues what a previous process left unfinished, removes what it left to be
    /// removed and its temporary files ([`sweep`]) and starts the workers.
    pub fn start(config: Config) -> Result<Self, JobError> {
        let shared = Arc::new(Shared::open(config)?);
        let membership = cluster::join(&shared)?;
        let prepared = orphans::resolve(&shared)
            .and_then(|()| Ok(worker::recover(&shared)?))
            .and_then(|()| sweep::sweep(&shared.config, &shared.store));
        if let Err(e) = prepared {
            membership.leave(&shared);
            return Err(e);
        }
        let pool = Pool::start(shared.clone());
        let generation = Arc::new(Generation::from_config(&shared.config));
        let (pool, membership) = (Arc::new(Mutex::new(Some(pool))), Arc::new(Mutex::new(Some(membership))));
        Ok(Self { shared, pool, membership, generation })
    }

    /// A service over `shared` with no workers, for tests of the operations alone.
    #[cfg(test)]
    pub(super) fn without_workers(shared: Shared) -> Self {
        let generation = Arc::new(Generation::from_config(&shared.config));
        Self { shared: Arc::new(shared), pool: Arc::default(), membership: Arc::default(), generation }
    }

    /// The devices this server can train on, for `GET /backends`.
    pub fn backends(&self) -> BackendsView {
        let config = &self.shared.config;
        self.shared.backends.describe(config.workers, config.gpu_jobs_per_device)
    }

    /// Whether the data directory has room for more work (see [`disk::check_floor`]).
    pub fn has_disk_room(&self) -> Result<(), JobError> {
        disk::check_floor(&self.shared.config)
    }

    /// The configuration the service runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Parses and validates a job definition against this server's caps and devices: what a
    /// submit and a dry run both start with.
    pub(super) fn validate(&self, body: &[u8]) -> Result<ValidJob, JobError> {
        let shared = &self.shared;
        JobSpec::from_json(body)?
            .validate(&Limits { config: &shared.config, backends: &shared.backends })
            .map_err(JobError::Invalid)
    }

    /// Validates and queues a job. With an idempotency key already used, returns that job.
    pub fn submit(&self, body: &[u8], idempotency_key: Option<&str>) -> Result<Submitted, JobError> {
        let shared = &self.shared;
        disk::check_floor(&shared.config)?;
        let valid = self.validate(body)?;
        if let Some(key) = idempotency_key {
            if let Some(job) = shared.store.job_by_idempotency_key(key)? {
                if job.spec != valid.spec {
                    return Err(JobError::Conflict(format!(
                        "Idempotency-Key {key:?} was used for job {} with a different definition",
                        job.id
                    )));
                }
                return Ok(Submitted { job, created: false });
            }
        }
        let new = NewJob {
            id: JobId::new_v4(),
            spec: &valid.spec,
            idempotency_key,
            parameters: valid.parameters,
            steps: valid.steps,
        };
        match shared.store.insert_job(new, shared.config.queue_capacity) {
            Ok(job) => {
                shared.queue.wake();
                Ok(Submitted { job, created: true })
            }
            Err(StoreError::DatasetGone(id)) => Err(JobError::Invalid(vec![FieldError {
                field: "data.dataset_id".into(),
                message: format!("data set {id} was deleted while this job was submitted; upload it again"),
            }])),
            Err(StoreError::QueueFull(waiting)) => Err(JobError::QueueFull {
                waiting: waiting.max(0) as usize,
                retry_after_secs: shared.config.retry_after_secs,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// One job.
    pub fn get(&self, id: JobId) -> Result<Job, JobError> {
        self.shared.store.job(id)?.ok_or_else(|| not_found(id))
    }

    /// A page of jobs, optionally of one status.
    pub fn list(
        &self,
        status: Option<JobStatus>,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<Job>, Option<i64>), JobError> {
        Ok(self.shared.store.list_jobs(status, after, limit)?)
    }

    /// A job's epoch rows and a page of its step points.
    pub fn metrics(&self, id: JobId, after: i64, limit: usize) -> Result<MetricsPage, JobError> {
        self.shared.store.metrics(id, after, limit)?.ok_or_else(|| not_found(id))
    }

    /// The server's Prometheus metrics, for the HTTP layer to count requests in.
    pub fn telemetry(&self) -> &Telemetry {
        &self.shared.telemetry
    }

    /// Every metric in the Prometheus text format, with jobs by status, queue depth per lane
    /// and running jobs per device read now.
    pub fn prometheus_text(&self) -> Result<String, JobError> {
        let shared = &self.shared;
        let (by_status, by_device) = shared.store.job_counts()?;
        let jobs_by_status = JobStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), by_status.iter().find(|(t, _)| t == s).map_or(0, |(_, n)| *n)))
            .collect();
        let waiting = shared.store.queued_by_backend()?;
        let lanes = std::iter::once(Lane::Cpu).chain(shared.backends.usable_gpus().map(Lane::Gpu));
        let queue_depth = lanes
            .map(|lane| {
                let accepts = shared.backends.accepts(lane);
                let depth = waiting.iter().filter(|(wants, _)| accepts.contains(wants)).map(|(_, n)| n).sum();
                (lane.to_string(), depth)
            })
            .collect();
        let snapshot = Snapshot { jobs_by_status, queue_depth, running_by_device: by_device };
        Ok(shared.telemetry.encode(&snapshot))
    }

    /// Starts following job `id`'s events after event `after` (0: from its start). The watcher
    /// subscribes before the job is looked up, so nothing recorded in between is missed.
    pub fn follow(&self, id: JobId, after: i64) -> Result<Follow, JobError> {
        let follow = Follow::new(self.shared.store.announcer(), id, after);
        self.get(id)?;
        Ok(follow)
    }

    /// Starts following every job's events: after event `after`, or, with `None`, those recorded
    /// from now on.
    pub fn follow_all(&self, after: Option<i64>) -> Result<Follow, JobError> {
        let store = &self.shared.store;
        match after {
            // Subscribed before the first store read (the watcher's), so nothing is missed.
            Some(after) => Ok(Follow::all(store.announcer().subscribe(), after)),
            // Only a watcher without a cursor needs the newest id, read as it subscribes.
            None => {
                let (live, newest) = store.subscribe()?;
                Ok(Follow::all(live, newest))
            }
        }
    }

    /// Cancels a queued job at once, or asks a running one to stop at its next step: at once
    /// when it runs here, else through the database, whose flag its replica's run reads when it
    /// records its next steps.
    pub fn cancel(&self, id: JobId) -> Result<Job, JobError> {
        let shared = &self.shared;
        // Signalled here at once when its run is here; the flag in the database too, which
        // whatever run holds the job reads.
        let signalled = shared.queue.lock().cancel(id);
        match shared.store.request_cancel(id)? {
            None => return Err(not_found(id)),
            Some(CancelRequest::Finished(status)) => {
                return Err(JobError::Conflict(format!("job {id} already {}", status.as_str())));
            }
            Some(CancelRequest::Asked(replica))
                if !signalled && replica == shared.store.replica() && !self.runs_here(id) =>
            {
                // Running here in the store, yet no worker here holds it: its worker could not
                // record how it ended. Nothing runs it, so it is stopped now.
                let reason = "cancelled after its worker could not record how it ended";
                shared.store.finish_job(id, JobStatus::Cancelled, Some(reason))?;
            }
            Some(_) => {}
        }
        self.get(id)
    }

    /// Whether a worker of this replica trains job `id`, or may be starting it.
    fn runs_here(&self, id: JobId) -> bool {
        self.shared.queue.lock().may_run(id)
    }

    /// Removes a job that nothing trains or will train — a finished one, or one whose worker
    /// here could not record how it ended — with its metrics and its checkpoint files.
    pub fn delete(&self, id: JobId) -> Result<(), JobError> {
        let job = self.get(id)?;
        let lost = job.status == JobStatus::Running
            && job.replica.as_deref() == Some(self.shared.store.replica())
            && !self.runs_here(id);
        if !job.status.is_finished() && !lost {
            return Err(JobError::Conflict(format!(
                "job {id} is {}: cancel it and wait for it to stop before deleting it",
                job.status.as_str()
            )));
        }
        let files = datadir::job_dir(id);
        self.shared.store.delete_job(id, &files)?;
        self.generation.forget(id);
        match std::fs::remove_dir_all(self.shared.config.job_dir(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(self.shared.store.removed(&files)?),
        }
    }

    /// A job's checkpoints, oldest first.
    pub fn checkpoints(&self, id: JobId) -> Result<Vec<CheckpointInfo>, JobError> {
        self.get(id)?;
        Ok(self.shared.store.checkpoints(id)?.into_iter().map(|row| row.info).collect())
    }

    /// The model file of one checkpoint with its index row, open at its start once the checkpoint
    /// is checked against its index (every file's size and SHA-256 where recorded): a file gone
    /// from the data dir, damaged or unreadable is refused with its cause (see [`checkpoints`]),
    /// never served. Reads the whole checkpoint: call it off the async runtime.
    pub fn checkpoint_file(&self, id: JobId, checkpoint_id: i64) -> Result<(CheckpointInfo, File), JobError> {
        self.verified_checkpoint(id, checkpoint_id).map(|(at, file)| (at.info, file))
    }

    /// Checkpoint `checkpoint_id` of job `id`, checked against its index (see
    /// [`Self::checkpoint_file`]), with its model file open.
    pub(super) fn verified_checkpoint(
        &self,
        id: JobId,
        checkpoint_id: i64,
    ) -> Result<(Located, File), JobError> {
        let at = self.indexed_checkpoint(id, checkpoint_id)?;
        match checkpoints::verify(&self.shared.config, id, &at) {
            Ok(file) => Ok((at, file)),
            // Pruned by training between the lookup and the open: gone, not damaged.
            Err(_) if !at.dir.exists() && self.pruned(id, checkpoint_id)? => {
                Err(JobError::NotFound(format!("checkpoint {checkpoint_id} of job {id}")))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether checkpoint `checkpoint_id` of job `id` has left the index (training pruned it).
    pub(super) fn pruned(&self, id: JobId, checkpoint_id: i64) -> Result<bool, JobError> {
        Ok(self.shared.store.checkpoints(id)?.iter().all(|row| row.info.id != checkpoint_id))
    }

    /// A checkpoint's index row, located in the data dir.
    pub(super) fn indexed_checkpoint(&self, id: JobId, checkpoint_id: i64) -> Result<Located, JobError> {
        self.get(id)?;
        checkpoints::located(&self.shared.config, &self.shared.store, id)?
            .into_iter()
            .find(|at| at.info.id == checkpoint_id)
            .ok_or_else(|| JobError::NotFound(format!("checkpoint {checkpoint_id} of job {id}")))
    }

    /// Stops taking queued jobs and asks running ones to checkpoint and stop at their next step.
    pub fn begin_shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.queue.close();
    }

    /// [`Jobs::begin_shutdown`], then waits for the workers to finish. Interrupted jobs are
    /// queued again, for another replica or the next start to resume.
    pub fn shutdown(&self) {
        self.begin_shutdown();
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(pool) = pool {
            pool.join();
        }
        let membership = self.membership.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(membership) = membership {
            membership.leave(&self.shared);
        }
    }

    /// The replicas serving this server's database, for `GET /cluster`.
    pub fn cluster(&self) -> Result<ClusterView, JobError> {
        cluster::view(&self.shared)
    }
}

fn not_found(id: JobId) -> JobError {
    JobError::NotFound(format!("job {id}"))
}

/// Watchers catch up from the store.
impl HistorySource for Jobs {
    fn history(&self, job: JobId, after: i64, limit: usize) -> Result<Option<History>, String> {
        self.shared.store.history(job, after, limit)
    }

    fn all_history(&self, after: i64, limit: usize) -> Result<Vec<Recorded>, String> {
        self.shared.store.all_history(after, limit)
    }
}
