//! The operations on jobs that the HTTP layer calls: one method per thing a client can do.
//!
//! [`Jobs`] owns the store, the queue and the worker pool. Handlers call one method and map its
//! result; every rule about jobs (admission, idempotency, what may be cancelled or deleted)
//! lives here, not in the handlers. The operations on uploaded data sets are in
//! [`super::datasets`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::queue::{CancelOutcome, Queue};
use super::spec::{FieldError, JobSpec, Limits, SpecParseError, Task, parse_strict};
use super::store::{MetricsPage, NewJob, Store, StoreError};
use super::worker::Pool;
use super::{Job, JobId, JobStatus};
use crate::backend::{Backends, BackendsView};
use crate::config::Config;
use crate::train::checkpoint::{self, CheckpointInfo};
use crate::train::generate::{self, GenerateRequest, Generated};

/// Why an operation on jobs did not happen.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Parse(#[from] SpecParseError),
    #[error("the job definition is invalid")]
    Invalid(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(String),
    #[error("the queue is full ({waiting} jobs waiting)")]
    QueueFull { waiting: usize, retry_after_secs: u64 },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

/// The result of a submit.
pub struct Submitted {
    pub job: Job,
    /// False when an earlier submit with the same `Idempotency-Key` made the job.
    pub created: bool,
}

/// Shared state of the job service; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    pub(super) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: Config,
    pub store: Store,
    pub queue: Queue,
    /// The devices jobs may train on.
    pub backends: Backends,
    /// Set once at shutdown: every training loop checkpoints and stops at its next step.
    pub shutdown: AtomicBool,
    pool: std::sync::Mutex<Option<Pool>>,
}

impl Inner {
    /// Opens the data dir and its database; starts nothing.
    pub(crate) fn open(config: Config) -> Result<Self, JobError> {
        std::fs::create_dir_all(config.jobs_dir())?;
        std::fs::create_dir_all(config.datasets_dir())?;
        std::fs::create_dir_all(config.uploads_dir())?;
        let store = Store::open(&config.database_path())?;
        let queue = Queue::new(config.queue_capacity);
        let backends = Backends::from_config(&config);
        Ok(Inner {
            config,
            store,
            queue,
            backends,
            shutdown: AtomicBool::new(false),
            pool: Default::default(),
        })
    }
}

impl Jobs {
    /// Opens the data dir, re-queues what a previous process left unfinished, removes the upload
    /// files it left unindexed and starts the workers.
    pub fn start(config: Config) -> Result<Self, JobError> {
        let inner = Arc::new(Inner::open(config)?);
        super::worker::recover(&inner)?;
        super::datasets::remove_unindexed_uploads(&inner)?;
        let pool = Pool::start(inner.clone());
        *inner.pool.lock().expect("not poisoned at start") = Some(pool);
        Ok(Self { inner })
    }

    /// The devices this server can train on, for `GET /backends`.
    pub fn backends(&self) -> BackendsView {
        let config = &self.inner.config;
        self.inner.backends.describe(config.workers, config.gpu_jobs_per_device)
    }

    /// The configuration the service runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Validates and queues a job. With an idempotency key already used, returns that job.
    pub fn submit(&self, body: &[u8], idempotency_key: Option<&str>) -> Result<Submitted, JobError> {
        let inner = &self.inner;
        let spec = JobSpec::from_json(body)?
            .validate(&Limits { config: &inner.config, backends: &inner.backends })
            .map_err(JobError::Invalid)?;
        let lane = inner.backends.lane(spec.backend).map_err(|why| {
            JobError::Invalid(vec![FieldError { field: "backend".to_string(), message: why }])
        })?;
        if let Some(key) = idempotency_key {
            if let Some(job) = inner.store.job_by_idempotency_key(key)? {
                if job.spec != spec {
                    return Err(JobError::Conflict(format!(
                        "Idempotency-Key {key:?} was used for job {} with a different definition",
                        job.id
                    )));
                }
                return Ok(Submitted { job, created: false });
            }
        }
        let parameters = match spec.task() {
            Some(Task::Classify { model, data }) => model.parameter_count(data.input_shape()),
            // The vocabulary is known once training reads the corpus, which records the count.
            _ => 0,
        };
        let steps = crate::train::total_steps(&spec);
        let admitted = inner.queue.admit(lane, || {
            let id = JobId::new_v4();
            let new = NewJob { id, spec: &spec, idempotency_key, parameters: parameters as u64, steps };
            inner.store.insert_job(new).map(|job| (job, id))
        });
        match admitted {
            Ok(job) => Ok(Submitted { job: job?, created: true }),
            Err(_) => Err(JobError::QueueFull {
                waiting: inner.queue.lock().waiting(),
                retry_after_secs: inner.config.retry_after_secs,
            }),
        }
    }

    /// One job.
    pub fn get(&self, id: JobId) -> Result<Job, JobError> {
        self.inner.store.job(id)?.ok_or_else(|| not_found(id))
    }

    /// A page of jobs, optionally of one status.
    pub fn list(
        &self,
        status: Option<JobStatus>,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<Job>, Option<i64>), JobError> {
        Ok(self.inner.store.list_jobs(status, after, limit)?)
    }

    /// A job's epoch rows and a page of its step points.
    pub fn metrics(&self, id: JobId, after: i64, limit: usize) -> Result<MetricsPage, JobError> {
        self.inner.store.metrics(id, after, limit)?.ok_or_else(|| not_found(id))
    }

    /// Cancels a queued job at once, or asks a running one to stop at its next step.
    pub fn cancel(&self, id: JobId) -> Result<Job, JobError> {
        let job = self.get(id)?;
        let outcome = self.inner.queue.lock().cancel(id);
        match outcome {
            CancelOutcome::Dequeued => self.inner.store.finish_job(id, JobStatus::Cancelled, None)?,
            CancelOutcome::Signalled => {}
            CancelOutcome::NotActive if job.status.is_finished() => {
                return Err(JobError::Conflict(format!("job {id} already {}", job.status.as_str())));
            }
            CancelOutcome::NotActive => {
                return Err(JobError::Conflict(format!(
                    "job {id} is {} but not active here",
                    job.status.as_str()
                )));
            }
        }
        self.get(id)
    }

    /// Removes a finished job, its metrics and its checkpoint files.
    pub fn delete(&self, id: JobId) -> Result<(), JobError> {
        let job = self.get(id)?;
        if !job.status.is_finished() || self.inner.queue.lock().is_active(id) {
            return Err(JobError::Conflict(format!(
                "job {id} is {}: cancel it and wait for it to stop before deleting it",
                job.status.as_str()
            )));
        }
        self.inner.store.delete_job(id)?;
        match std::fs::remove_dir_all(checkpoint::job_dir(&self.inner.config, id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// A job's checkpoints, oldest first.
    pub fn checkpoints(&self, id: JobId) -> Result<Vec<CheckpointInfo>, JobError> {
        self.get(id)?;
        Ok(self.inner.store.checkpoints(id)?.into_iter().map(|(info, _)| info).collect())
    }

    /// The model file of one checkpoint.
    pub fn checkpoint_file(
        &self,
        id: JobId,
        checkpoint_id: i64,
    ) -> Result<(CheckpointInfo, PathBuf), JobError> {
        self.get(id)?;
        let (info, dir) = self
            .inner
            .store
            .checkpoints(id)?
            .into_iter()
            .find(|(info, _)| info.id == checkpoint_id)
            .ok_or_else(|| JobError::NotFound(format!("checkpoint {checkpoint_id} of job {id}")))?;
        Ok((info, checkpoint::model_path(&PathBuf::from(dir))))
    }

    /// Continues a prefix with a language-model job's newest checkpoint, or the one the request
    /// names. Blocking: it runs the model on the CPU, so call it off the async runtime.
    pub fn generate(&self, id: JobId, body: &[u8]) -> Result<Generated, JobError> {
        let job = self.get(id)?;
        let Some(Task::Language { model, data }) = job.spec.task() else {
            return Err(JobError::Conflict(format!(
                "job {id} trains an image classifier; only language models (model.kind = rnn_lm) generate text"
            )));
        };
        let request =
            parse_strict::<GenerateRequest>(body)?.validate(&self.inner.config).map_err(JobError::Invalid)?;
        // Training prunes old checkpoints while this reads one: a checkpoint gone between the
        // listing and the read is looked up again once.
        // Generation runs on the CPU whatever the job trained on: checkpoints are portable, and a
        // GPU stays with training.
        let device = burn::tensor::Device::flex();
        let mut attempts = 0;
        let (info, lm, vocab) = loop {
            attempts += 1;
            let checkpoints = self.inner.store.checkpoints(id)?;
            let (info, dir) = match request.checkpoint {
                Some(wanted) => checkpoints
                    .into_iter()
                    .find(|(info, _)| info.id == wanted)
                    .ok_or_else(|| JobError::NotFound(format!("checkpoint {wanted} of job {id}")))?,
                None => checkpoints.into_iter().last().ok_or_else(|| {
                    JobError::Conflict(format!(
                        "job {id} has no checkpoint yet; it can generate once its first epoch is saved"
                    ))
                })?,
            };
            let dir = PathBuf::from(dir);
            match load_language_model(&dir, model, &device) {
                Ok((lm, vocab)) => break (info, lm, vocab),
                Err(_) if !dir.exists() && attempts < 2 => continue,
                Err(_) if !dir.exists() => {
                    return Err(JobError::NotFound(format!(
                        "checkpoint {} of job {id}: training removed it (checkpoint.keep_last)",
                        info.id
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let (prompt, text) = generate::generate(&lm, &vocab, data, &request, &device)
            .map_err(|e| JobError::Invalid(vec![e]))?;
        Ok(Generated { prompt, text, checkpoint: info.id, epoch: info.epoch, seed: request.seed })
    }

    /// Stops admitting jobs and asks running ones to checkpoint and stop at their next step.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        self.inner.queue.close();
    }

    /// [`Jobs::begin_shutdown`], then waits for the workers to finish. Interrupted jobs are
    /// queued again and resume at the next start.
    pub fn shutdown(&self) {
        self.begin_shutdown();
        let pool = self.inner.pool.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(pool) = pool {
            pool.join();
        }
    }
}

/// A language model and its vocabulary from the checkpoint in `dir`, on `device`.
fn load_language_model(
    dir: &std::path::Path,
    model: &crate::models::LanguageModelSpec,
    device: &burn::tensor::Device,
) -> Result<(crate::models::RnnLm, crate::text::Vocab), checkpoint::CheckpointError> {
    let manifest = checkpoint::manifest(dir)?;
    let vocab = manifest.vocab.ok_or_else(|| checkpoint::CheckpointError::Invalid {
        path: dir.display().to_string(),
        reason: "a language model's checkpoint without its vocabulary".into(),
    })?;
    let lm = checkpoint::read_model(dir, model.config(vocab.len()).init(device))?;
    Ok((lm, vocab))
}

fn not_found(id: JobId) -> JobError {
    JobError::NotFound(format!("job {id}"))
}
