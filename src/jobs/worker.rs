//! The worker pool: a fixed number of plain threads that each take the next queued job and run
//! its whole training loop, off the async runtime.
//!
//! A job ends `succeeded`, `cancelled` or `failed` (an error or a panic, with the reason); at
//! shutdown it is checkpointed and queued again. [`recover`] runs once at start-up and puts back
//! in the queue whatever a previous process left queued or running — a running job resumes from
//! its newest checkpoint, or starts over without one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use super::service::Inner;
use super::store::StoreError;
use super::{JobId, JobStatus};
use crate::train::{self, Outcome, TrainError, TrainJob};

/// What trains a job: [`train::run`], or a stand-in in tests of the worker itself.
type Trainer = fn(&TrainJob<'_>) -> Result<Outcome, TrainError>;

/// The running worker threads.
pub struct Pool {
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `config.workers` threads.
    pub(crate) fn start(inner: Arc<Inner>) -> Self {
        let threads = (0..inner.config.workers)
            .map(|n| {
                let inner = inner.clone();
                std::thread::Builder::new()
                    .name(format!("kiln-worker-{n}"))
                    .spawn(move || work(&inner))
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

fn work(inner: &Inner) {
    while let Some((id, cancel)) = inner.queue.next_blocking() {
        if let Err(e) = run(inner, id, &cancel, train::run) {
            tracing::error!(job = %id, error = %e, "could not record the outcome of a job");
        }
        inner.queue.lock().finish(id);
    }
}

/// Trains one job and records how it ended.
fn run(inner: &Inner, id: JobId, cancel: &AtomicBool, trainer: Trainer) -> Result<(), StoreError> {
    let store = &inner.store;
    let Some(job) = store.job(id)? else {
        return Ok(());
    };
    if job.status != JobStatus::Queued {
        return Ok(());
    }
    tracing::info!(job = %id, model = ?job.spec.model, "job starting");
    let task =
        TrainJob { id, spec: &job.spec, config: &inner.config, store, cancel, shutdown: &inner.shutdown };
    let outcome = catch_unwind(AssertUnwindSafe(|| trainer(&task)));
    match outcome {
        Ok(Ok(Outcome::Completed)) => store.finish_job(id, JobStatus::Succeeded, None)?,
        Ok(Ok(Outcome::Cancelled)) => store.finish_job(id, JobStatus::Cancelled, None)?,
        Ok(Ok(Outcome::Interrupted)) => store.mark_queued(id)?,
        Ok(Err(e)) => {
            tracing::warn!(job = %id, error = %e, "job failed");
            store.finish_job(id, JobStatus::Failed, Some(&e.to_string()))?;
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            tracing::error!(job = %id, panic = what, "training panicked");
            let reason = format!("training stopped on an internal error ({what}); the server kept running");
            store.finish_job(id, JobStatus::Failed, Some(&reason))?;
        }
    }
    tracing::info!(job = %id, "job ended");
    Ok(())
}

/// Queues again what a previous process left unfinished, oldest first.
pub(crate) fn recover(inner: &Inner) -> Result<(), StoreError> {
    for id in inner.store.job_ids_with_status(JobStatus::Running)? {
        tracing::info!(job = %id, "resuming a job interrupted by a restart");
        inner.store.mark_queued(id)?;
        inner.queue.push(id);
    }
    for id in inner.store.job_ids_with_status(JobStatus::Queued)? {
        if !inner.queue.lock().is_active(id) {
            inner.queue.push(id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::jobs::spec::{JobSpec, Limits};
    use crate::jobs::store::NewJob;

    fn queued_job(inner: &Inner) -> JobId {
        let body = br#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images"}}"#;
        let spec = JobSpec::from_json(body).unwrap().validate(&Limits { config: &inner.config }).unwrap();
        let id = JobId::new_v4();
        inner
            .store
            .insert_job(NewJob { id, spec: &spec, idempotency_key: None, parameters: 1, steps: 1 })
            .unwrap();
        id
    }

    #[test]
    fn a_panicking_job_fails_with_its_message_and_the_worker_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Inner::open(Config::with_data_dir(dir.path())).unwrap();
        let (first, second) = (queued_job(&inner), queued_job(&inner));
        let cancel = AtomicBool::new(false);
        run(&inner, first, &cancel, |_| panic!("tensor shapes disagree")).unwrap();
        run(&inner, second, &cancel, |_| Ok(Outcome::Completed)).unwrap();

        let failed = inner.store.job(first).unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed);
        assert!(failed.error.unwrap().contains("internal error (tensor shapes disagree)"));
        assert_eq!(inner.store.job(second).unwrap().unwrap().status, JobStatus::Succeeded);
    }

    #[test]
    fn interrupted_jobs_go_back_to_the_queue_and_recovery_requeues_running_ones() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Inner::open(Config::with_data_dir(dir.path())).unwrap();
        let id = queued_job(&inner);
        run(&inner, id, &AtomicBool::new(false), |_| Ok(Outcome::Interrupted)).unwrap();
        assert_eq!(inner.store.job(id).unwrap().unwrap().status, JobStatus::Queued);

        inner.store.mark_running(id, "cpu").unwrap();
        let restarted = Inner::open(inner.config.clone()).unwrap();
        recover(&restarted).unwrap();
        assert_eq!(restarted.store.job(id).unwrap().unwrap().status, JobStatus::Queued);
        assert_eq!(restarted.queue.lock().waiting(), 1);
    }
}
