//! The worker pool: a fixed number of plain threads that each claim the next queued job of their
//! lane (from the database, whichever replica it was submitted to) and run its whole training
//! loop, off the async runtime.
//!
//! `--workers` threads serve the CPU lane; each usable GPU device gets `--gpu-jobs-per-device`
//! threads of its own (see [`crate::backend::Lane`]).
//!
//! The worker is the one place that ends a run: `running` once claimed (see
//! [`crate::jobs::store::Claim`]), then `succeeded`, `cancelled` or `failed` (an error or a
//! panic, with the reason, which names files relative to the data dir, never by the server's
//! path); at shutdown it is checkpointed and queued again, for any replica to resume. What
//! happens in between, training reports through a [`Recorder`]; every write carries the claim,
//! and a run whose claim was taken over (its replica was taken for dead) stops at its next write
//! and records nothing more. [`recover`] runs once at start-up and queues again what replicas
//! that died left running — a running job resumes from its newest checkpoint, or starts over
//! without one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Duration;

use super::JobStatus;
use super::queue::POLL;
use super::recorder::Recorder;
use super::shared::Shared;
use super::store::{Claim, StoreError};
use crate::backend::Lane;
use crate::train::{self, Outcome, Run, TrainError};

/// What trains a job: [`train::run`], or a stand-in in tests of the worker itself.
type Trainer = fn(&Run<'_>) -> Result<Outcome, TrainError>;

/// The running worker threads.
pub struct Pool {
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `--workers` CPU threads and `--gpu-jobs-per-device` threads per usable GPU.
    pub(crate) fn start(shared: Arc<Shared>) -> Self {
        let cpu = (0..shared.config.workers).map(|n| (format!("kiln-worker-{n}"), Lane::Cpu));
        let gpus: Vec<usize> = shared.backends.usable_gpus().collect();
        let per_gpu = shared.config.gpu_jobs_per_device;
        let gpu = gpus
            .into_iter()
            .flat_map(|g| (0..per_gpu).map(move |n| (format!("kiln-gpu{g}-{n}"), Lane::Gpu(g))));
        let threads = cpu
            .chain(gpu)
            .map(|(name, lane)| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || work(&shared, lane))
                    .expect("spawning a worker thread")
            })
            .collect();
        Self { threads }
    }

    /// Waits for every worker to finish its job and stop.
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn work(shared: &Shared, lane: Lane) {
    let wants = shared.backends.accepts(lane);
    let device = shared.backends.resolve(lane);
    loop {
        let seen = shared.queue.wakes();
        if shared.queue.lock().is_closed() {
            return;
        }
        shared.queue.lock().claiming();
        match shared.store.claim_next(&wants, &device.name) {
            Ok(Some(claim)) => {
                let cancel = shared.queue.lock().start(claim.job, claim.token);
                if let Err(e) = run(shared, claim, &cancel, lane, train::run) {
                    tracing::error!(job = %claim.job, error = %e, "could not record the outcome of a job");
                }
                shared.queue.lock().finish(claim.job, claim.token);
                continue;
            }
            Ok(None) => shared.queue.lock().claimed_none(),
            Err(e) => {
                shared.queue.lock().claimed_none();
                tracing::warn!(error = %e, "looking for a queued job failed");
            }
        }
        if !shared.queue.wait(seen, POLL) {
            return;
        }
    }
}

/// Trains the job `claim` holds and records how it ended.
fn run(
    shared: &Shared,
    claim: Claim,
    cancel: &AtomicBool,
    lane: Lane,
    trainer: Trainer,
) -> Result<(), StoreError> {
    let id = claim.job;
    let job = match shared.store.job(id) {
        Ok(Some(job)) => job,
        Ok(None) => return Ok(()),
        Err(e) => {
            // Claimed, so nothing else will end it: it fails, saying why.
            let reason = format!("reading the job's definition failed: {e}");
            record_outcome(shared, claim, JobStatus::Failed, Some(&reason), &RETRY_DELAYS)?;
            return Err(e);
        }
    };
    tracing::info!(job = %id, claim = claim.token, model = ?job.spec.model, "job starting");
    let device = shared.backends.resolve(lane);
    let log = Recorder::new(shared, claim, &job.spec, lane, cancel);
    let run = Run {
        id,
        attempt: claim.token,
        spec: &job.spec,
        config: &shared.config,
        device: &device,
        log: &log,
        cancel,
        shutdown: &shared.shutdown,
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| trainer(&run)));
    shared.telemetry.stopped(&id.to_string());
    let (status, reason) = match outcome {
        Ok(Ok(Outcome::Completed)) => (JobStatus::Succeeded, None),
        Ok(Ok(Outcome::Cancelled)) => (JobStatus::Cancelled, None),
        Ok(Ok(Outcome::Interrupted)) => (JobStatus::Queued, None),
        Ok(Err(e)) => {
            tracing::warn!(job = %id, error = %e, "job failed");
            (JobStatus::Failed, Some(shown_to_clients(&e.to_string(), &shared.config)))
        }
        Err(panic) => {
            let what = crate::panics::message(panic.as_ref());
            tracing::error!(job = %id, panic = what, "training panicked");
            let reason = format!("training stopped on an internal error ({what}); the server kept running");
            (JobStatus::Failed, Some(shown_to_clients(&reason, &shared.config)))
        }
    };
    match record_outcome(shared, claim, status, reason.as_deref(), &RETRY_DELAYS) {
        Err(StoreError::Fenced(..)) => {
            tracing::warn!(job = %id, claim = claim.token, "the job was taken over elsewhere: this run stopped and recorded nothing more");
        }
        Err(e) => return Err(e),
        Ok(()) => tracing::info!(job = %id, "job ended"),
    }
    if status == JobStatus::Queued {
        shared.queue.wake();
    }
    Ok(())
}

/// Waits between attempts to record how a job ended: about a minute in all.
const RETRY_DELAYS: [Duration; 6] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(30),
];

/// Records how a run ended (`Queued`: interrupted, to resume), trying again after each of
/// `delays` while the store fails (a full disk, a locked database) — a job whose outcome is lost
/// would show `running` until the next start. A run whose claim no longer holds is not retried:
/// nothing it writes may land. If every attempt fails the job is left to
/// [`super::Jobs::cancel`] and [`super::Jobs::delete`], which treat a job that is `running` in
/// the store but held by no worker as stopped.
fn record_outcome(
    shared: &Shared,
    claim: Claim,
    status: JobStatus,
    reason: Option<&str>,
    delays: &[Duration],
) -> Result<(), StoreError> {
    let id = claim.job;
    let mut delays = delays.iter();
    loop {
        match (shared.store.end_run(claim, status, reason), delays.next()) {
            (Ok(()), _) => return Ok(()),
            (Err(e @ StoreError::Fenced(..)), _) => return Err(e),
            (Err(e), Some(delay)) => {
                tracing::warn!(job = %id, error = %e, retry_in = ?delay, "recording how the job ended failed");
                std::thread::sleep(*delay);
            }
            (Err(e), None) => return Err(e),
        }
    }
}

/// A failure reason without the shared dir's path nor the data dir's.
fn shown_to_clients(reason: &str, config: &crate::config::Config) -> String {
    let reason = without_server_paths(reason, config.files_dir());
    without_server_paths(&reason, &config.data_dir)
}

/// The last guard on a failure reason before clients can read it: the data dir's absolute path
/// (as configured, or resolved) is cut from the files it names, leaving `jobs/<id>/…`. Errors
/// should name files so already ([`crate::train::Run::checkpoint_error`]); this catches the rest.
fn without_server_paths(reason: &str, data_dir: &Path) -> String {
    let resolved = data_dir.canonicalize().ok();
    let absolute = [Some(data_dir.to_path_buf()), resolved].into_iter().flatten().filter(|d| d.is_absolute());
    absolute.fold(reason.to_string(), |reason, dir| {
        let dir = dir.display().to_string();
        let dir = dir.trim_end_matches('/');
        reason.replace(&format!("{dir}/"), "").replace(dir, "the data dir")
    })
}

/// At start: queues again what replicas that stopped renewing their heartbeat left running (on
/// SQLite, the previous process of this data dir). On a database this replica alone serves, a
/// queued job whose device this server lacks (a GPU gone since it was submitted) fails, saying
/// so, rather than wait forever; on a shared one another replica may have that device.
pub(crate) fn recover(shared: &Shared) -> Result<(), StoreError> {
    let lease_ms = (shared.config.lease_secs * 1000) as i64;
    for id in shared.store.requeue_expired(lease_ms)? {
        tracing::info!(job = %id, "queued again a job its replica left running");
    }
    if shared.store.is_shared() {
        return Ok(());
    }
    for id in shared.store.job_ids_with_status(JobStatus::Queued)? {
        let Some(job) = shared.store.job(id)? else { continue };
        if let Err(why) = shared.backends.lane(job.spec.backend) {
            let reason = format!("backend {}: {why}", job.spec.backend.name());
            tracing::warn!(job = %id, reason, "cannot run a queued job here");
            shared.store.finish_job(id, JobStatus::Failed, Some(&reason))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::definition::{JobSpec, Limits};
    use crate::jobs::JobId;
    use crate::jobs::store::NewJob;

    fn queued_job(shared: &Shared) -> JobId {
        shared.store_job_for_test(br#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images"}}"#)
    }

    /// A queued job, claimed as a worker would.
    fn claimed_job(shared: &Shared) -> Claim {
        let id = queued_job(shared);
        shared.claim_for_test(id)
    }

    #[test]
    fn a_panicking_job_fails_with_its_message_and_the_worker_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let cancel = AtomicBool::new(false);
        let first = claimed_job(&shared);
        run(&shared, first, &cancel, Lane::Cpu, |_| panic!("tensor shapes disagree")).unwrap();
        let second = claimed_job(&shared);
        run(&shared, second, &cancel, Lane::Cpu, |_| Ok(Outcome::Completed)).unwrap();
        let (first, second) = (first.job, second.job);

        let failed = shared.store.job(first).unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed);
        assert!(failed.error.unwrap().contains("internal error (tensor shapes disagree)"));
        assert_eq!(shared.store.job(second).unwrap().unwrap().status, JobStatus::Succeeded);
    }

    #[test]
    fn interrupted_jobs_go_back_to_the_queue_and_recovery_requeues_running_ones() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let claim = claimed_job(&shared);
        let id = claim.job;
        run(&shared, claim, &AtomicBool::new(false), Lane::Cpu, |_| Ok(Outcome::Interrupted)).unwrap();
        assert_eq!(shared.store.job(id).unwrap().unwrap().status, JobStatus::Queued);

        let again = shared.claim_for_test(id);
        assert!(again.token > claim.token, "each claim has a new token");
        let restarted = Shared::open(shared.config.clone()).unwrap();
        recover(&restarted).unwrap();
        let job = restarted.store.job(id).unwrap().unwrap();
        assert_eq!((job.status, job.replica), (JobStatus::Queued, None));
        let outcomes: Vec<_> = restarted.store.claims(id).unwrap().into_iter().map(|c| c.outcome).collect();
        assert_eq!(outcomes, [Some("interrupted".to_string()), Some("expired".to_string())]);
        // The claim that recovery ended no longer writes.
        let fenced = restarted.store.end_run(again, JobStatus::Succeeded, None);
        assert!(matches!(fenced, Err(StoreError::Fenced(..))), "{fenced:?}");
        assert_eq!(restarted.store.job(id).unwrap().unwrap().status, JobStatus::Queued);
    }

    /// Makes every update of the jobs table fail, as a full disk would, until dropped.
    fn break_updates(shared: &Shared) -> rusqlite::Connection {
        let db = rusqlite::Connection::open(shared.config.database_path()).unwrap();
        db.execute_batch("CREATE TRIGGER full BEFORE UPDATE ON jobs BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;")
            .unwrap();
        db
    }

    #[test]
    fn an_outcome_that_cannot_be_recorded_is_retried_until_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let claim = claimed_job(&shared);
        let id = claim.job;
        let db = break_updates(&shared);
        let delays = [Duration::from_millis(50); 40];
        std::thread::scope(|s| {
            let recording = s.spawn(|| record_outcome(&shared, claim, JobStatus::Succeeded, None, &delays));
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(shared.store.job(id).unwrap().unwrap().status, JobStatus::Running);
            db.execute_batch("DROP TRIGGER full").unwrap();
            recording.join().unwrap().unwrap();
        });
        assert_eq!(shared.store.job(id).unwrap().unwrap().status, JobStatus::Succeeded);
    }

    #[test]
    fn a_job_whose_outcome_was_lost_can_still_be_cancelled_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let jobs =
            crate::jobs::Jobs::without_workers(Shared::open(Config::with_data_dir(dir.path())).unwrap());
        let shared = &jobs.shared;
        let claim = claimed_job(shared);
        let id = claim.job;
        let db = break_updates(shared);
        assert!(record_outcome(shared, claim, JobStatus::Failed, Some("diverged"), &[]).is_err());
        db.execute_batch("DROP TRIGGER full").unwrap();
        // No worker holds it, yet the store says running.
        assert_eq!(jobs.get(id).unwrap().status, JobStatus::Running);
        let cancelled = jobs.cancel(id).unwrap();
        assert_eq!(cancelled.status, JobStatus::Cancelled);
        assert!(cancelled.error.unwrap().contains("could not record"));
        jobs.delete(id).unwrap();
        assert!(matches!(jobs.get(id), Err(crate::jobs::JobError::NotFound(_))));
    }

    #[test]
    fn failure_reasons_name_files_relative_to_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("kiln-data");
        std::fs::create_dir(&data).unwrap();
        let reason =
            format!("checkpoint: {}/jobs/x/model.bpk: No space left; in {}", data.display(), data.display());
        let shown = without_server_paths(&reason, &data);
        assert_eq!(shown, "checkpoint: jobs/x/model.bpk: No space left; in the data dir");
        // A relative data dir is no server path; the words of the reason stay as they are.
        assert_eq!(without_server_paths("the data set", Path::new("data")), "the data set");
    }

    #[test]
    fn recovery_fails_a_job_whose_device_is_gone_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let body = br#"{"model":{"kind":"mlp_bn"},"data":{"dataset":"synthetic_images"}}"#;
        let limits = Limits { config: &shared.config, backends: &shared.backends };
        let mut spec = JobSpec::from_json(body).unwrap().validate(&limits).unwrap().spec;
        // As if submitted to a server with ten GPUs, restarted on this one.
        spec.backend = crate::backend::BackendKind::Wgpu(Some(9));
        let id = JobId::new_v4();
        shared
            .store
            .insert_job(NewJob { id, spec: &spec, idempotency_key: None, parameters: 1, steps: 1 }, 8)
            .unwrap();

        recover(&shared).unwrap();
        let job = shared.store.job(id).unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        let error = job.error.unwrap();
        assert!(
            error.contains("backend wgpu:9: this server has no device wgpu:9; it can run: cpu"),
            "{error}"
        );
    }
}
