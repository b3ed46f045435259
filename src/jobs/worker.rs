//! The worker pool: a fixed number of plain threads that each take the next queued job of their
//! lane and run its whole training loop, off the async runtime.
//!
//! `--workers` threads serve the CPU lane; each usable GPU device gets `--gpu-jobs-per-device`
//! threads of its own (see [`crate::backend::Lane`]).
//!
//! The worker is the one place that writes a job's status: `running` on its device before
//! training, then `succeeded`, `cancelled` or `failed` (an error or a panic, with the reason, which
//! names files relative to the data dir, never by the server's path); at
//! shutdown it is checkpointed and queued again. What happens in between, training reports
//! through a [`Recorder`]. [`recover`] runs once at start-up and puts back
//! in the queue whatever a previous process left queued or running — a running job resumes from
//! its newest checkpoint, or starts over without one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Duration;

use super::recorder::Recorder;
use super::shared::Shared;
use super::store::StoreError;
use super::{JobId, JobStatus};
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
    while let Some((id, cancel)) = shared.queue.next_blocking(lane) {
        if let Err(e) = run(shared, id, &cancel, lane, train::run) {
            tracing::error!(job = %id, error = %e, "could not record the outcome of a job");
        }
        shared.queue.lock().finish(id);
    }
}

/// Trains one job and records how it ended.
fn run(
    shared: &Shared,
    id: JobId,
    cancel: &AtomicBool,
    lane: Lane,
    trainer: Trainer,
) -> Result<(), StoreError> {
    let store = &shared.store;
    let Some(job) = store.job(id)? else {
        return Ok(());
    };
    if job.status != JobStatus::Queued {
        return Ok(());
    }
    tracing::info!(job = %id, model = ?job.spec.model, "job starting");
    let device = shared.backends.resolve(lane);
    if let Err(e) = store.mark_running(id, &device.name) {
        // The job has left the queue: leaving it `queued` would strand it until a restart.
        store.finish_job(id, JobStatus::Failed, Some(&format!("recording progress: {e}")))?;
        return Err(e);
    }
    let log = Recorder::new(shared, id, &job.spec, lane);
    let run = Run {
        id,
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
    record_outcome(shared, id, status, reason.as_deref(), &RETRY_DELAYS)?;
    tracing::info!(job = %id, "job ended");
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

/// Records how a job ended (`Queued`: interrupted, to resume), trying again after each of
/// `delays` while the store fails (a full disk, a locked database) — a job whose outcome is lost
/// would show `running` until the next start. If every attempt fails the job is left to
/// [`super::Jobs::cancel`] and [`super::Jobs::delete`], which treat a job that is `running` in
/// the store but held by no worker as stopped.
fn record_outcome(
    shared: &Shared,
    id: JobId,
    status: JobStatus,
    reason: Option<&str>,
    delays: &[Duration],
) -> Result<(), StoreError> {
    let mut delays = delays.iter();
    loop {
        let recorded = match status {
            JobStatus::Queued => shared.store.mark_queued(id),
            _ => shared.store.finish_job(id, status, reason),
        };
        match (recorded, delays.next()) {
            (Ok(()), _) => return Ok(()),
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

/// Queues again what a previous process left unfinished, oldest first. A job whose device this
/// server lacks (a GPU gone since it was submitted) fails, saying so, rather than wait forever.
pub(crate) fn recover(shared: &Shared) -> Result<(), StoreError> {
    for id in shared.store.job_ids_with_status(JobStatus::Running)? {
        tracing::info!(job = %id, "resuming a job interrupted by a restart");
        shared.store.mark_queued(id)?;
        requeue(shared, id)?;
    }
    for id in shared.store.job_ids_with_status(JobStatus::Queued)? {
        if !shared.queue.lock().is_active(id) {
            requeue(shared, id)?;
        }
    }
    Ok(())
}

fn requeue(shared: &Shared, id: JobId) -> Result<(), StoreError> {
    let Some(job) = shared.store.job(id)? else { return Ok(()) };
    match shared.backends.lane(job.spec.backend) {
        Ok(lane) => shared.queue.push(id, lane),
        Err(why) => {
            let reason = format!("backend {}: {why}", job.spec.backend.name());
            tracing::warn!(job = %id, reason, "cannot resume a job here");
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
    use crate::jobs::store::NewJob;

    fn queued_job(shared: &Shared) -> JobId {
        shared.store_job_for_test(br#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images"}}"#)
    }

    #[test]
    fn a_panicking_job_fails_with_its_message_and_the_worker_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let (first, second) = (queued_job(&shared), queued_job(&shared));
        let cancel = AtomicBool::new(false);
        run(&shared, first, &cancel, Lane::Cpu, |_| panic!("tensor shapes disagree")).unwrap();
        run(&shared, second, &cancel, Lane::Cpu, |_| Ok(Outcome::Completed)).unwrap();

        let failed = shared.store.job(first).unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed);
        assert!(failed.error.unwrap().contains("internal error (tensor shapes disagree)"));
        assert_eq!(shared.store.job(second).unwrap().unwrap().status, JobStatus::Succeeded);
    }

    #[test]
    fn interrupted_jobs_go_back_to_the_queue_and_recovery_requeues_running_ones() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let id = queued_job(&shared);
        run(&shared, id, &AtomicBool::new(false), Lane::Cpu, |_| Ok(Outcome::Interrupted)).unwrap();
        assert_eq!(shared.store.job(id).unwrap().unwrap().status, JobStatus::Queued);

        shared.store.mark_running(id, "cpu").unwrap();
        let restarted = Shared::open(shared.config.clone()).unwrap();
        recover(&restarted).unwrap();
        assert_eq!(restarted.store.job(id).unwrap().unwrap().status, JobStatus::Queued);
        assert_eq!(restarted.queue.lock().waiting(), 1);
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
        let id = queued_job(&shared);
        shared.store.mark_running(id, "cpu").unwrap();
        let db = break_updates(&shared);
        let delays = [Duration::from_millis(50); 40];
        std::thread::scope(|s| {
            let recording = s.spawn(|| record_outcome(&shared, id, JobStatus::Succeeded, None, &delays));
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
        let id = queued_job(shared);
        shared.store.mark_running(id, "cpu").unwrap();
        let db = break_updates(shared);
        assert!(record_outcome(shared, id, JobStatus::Failed, Some("diverged"), &[]).is_err());
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
            .insert_job(NewJob { id, spec: &spec, idempotency_key: None, parameters: 1, steps: 1 })
            .unwrap();

        recover(&shared).unwrap();
        let job = shared.store.job(id).unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        let error = job.error.unwrap();
        assert!(
            error.contains("backend wgpu:9: this server has no device wgpu:9; it can run: cpu"),
            "{error}"
        );
        assert_eq!(shared.queue.lock().waiting(), 0);
    }
}
