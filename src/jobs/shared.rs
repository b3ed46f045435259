//! What the job service and its workers share: the configuration, the store, the queue, the
//! upload quota, the devices, the shutdown flag and the Prometheus metrics. The service ([`super::service`]) and the workers
//! ([`super::worker`]) both hold it behind an `Arc`; neither imports the other for it.

use std::sync::atomic::AtomicBool;

use super::error::JobError;
use super::queue::Queue;
use super::quota::UploadQuota;
use super::store::Store;
use crate::backend::Backends;
use crate::config::Config;
use crate::telemetry::Telemetry;

/// The state of one running job service.
pub(crate) struct Shared {
    pub(super) config: Config,
    pub(super) store: Store,
    pub(super) queue: Queue,
    /// Uploaded data sets stored and in progress, against `--max-uploads(-bytes)`.
    pub(super) uploads: UploadQuota,
    /// The devices jobs may train on.
    pub(super) backends: Backends,
    /// Set once at shutdown: every training run checkpoints and stops at its next step.
    pub(super) shutdown: AtomicBool,
    /// The server's Prometheus metrics.
    pub(super) telemetry: Telemetry,
}

impl Shared {
    /// Opens the data dir and its database; starts nothing.
    pub(super) fn open(config: Config) -> Result<Self, JobError> {
        std::fs::create_dir_all(config.jobs_dir())?;
        std::fs::create_dir_all(config.datasets_dir())?;
        std::fs::create_dir_all(config.uploads_dir())?;
        let store = Store::open(&config.database())?;
        let queue = Queue::default();
        let (stored, stored_bytes) = store.upload_totals()?;
        let uploads = UploadQuota::new(config.max_uploads, config.max_uploads_bytes, stored, stored_bytes);
        let backends = Backends::from_config(&config);
        let (shutdown, telemetry) = (AtomicBool::new(false), Telemetry::for_replica(store.replica()));
        Ok(Shared { config, store, queue, uploads, backends, shutdown, telemetry })
    }
}

#[cfg(test)]
impl Shared {
    /// Validates `body` against this server and stores it as a queued job, as a submit would
    /// without the queue: for tests of what works on stored jobs.
    pub(super) fn store_job_for_test(&self, body: &[u8]) -> super::JobId {
        use crate::definition::{JobSpec, Limits};
        let limits = Limits { config: &self.config, backends: &self.backends };
        let spec = JobSpec::from_json(body).unwrap().validate(&limits).unwrap().spec;
        let id = super::JobId::new_v4();
        let new = super::store::NewJob { id, spec: &spec, idempotency_key: None, parameters: 1, steps: 1 };
        self.store.insert_job(new, usize::MAX).unwrap();
        id
    }

    /// Claims job `id` (the oldest queued CPU job) as a worker of this server would.
    pub(super) fn claim_for_test(&self, id: super::JobId) -> super::store::Claim {
        let claim = self.store.claim_next(&["cpu".to_string()], "cpu").unwrap().unwrap();
        assert_eq!(claim.job, id, "the job claimed is the oldest queued");
        claim
    }
}
