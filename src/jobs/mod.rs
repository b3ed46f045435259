//! Jobs: their durable record, the queue that admits them, the workers that train them, the
//! uploaded data sets they may train on, and what their checkpoints answer. A job's definition is [`crate::definition`]'s; training is
//! [`crate::train`]'s.
//!
//! - [`service`]: [`Jobs`], the operations the HTTP layer calls (submit, cancel, delete ...);
//!   [`generation`], [`predict`] and `export` add the operations on a trained model (text,
//!   classes, weights for PyTorch), [`datasets`] those on uploaded corpora and image sets
//!   (`image_uploads` decodes an archive), [`dry_run`] a submit that only says what would run.
//! - [`store`]: the database (SQLite, or PostgreSQL for several replicas) — jobs, metrics,
//!   checkpoint index, uploaded data sets, replicas. All SQL lives there.
//! - [`cluster`]: this process as one replica of its database: registered, heartbeat, listed.
//! - [`queue`]: bounded admission and the order in which queued jobs start.
//! - [`worker`]: the pool of threads that train, and the restart recovery.
//! - [`recorder`]: what a training run reports, written to the store.
//! - [`events`]: each job's numbered history (status, steps, epochs, checkpoints), which the
//!   store records and announces, and [`events::Follow`], one watcher of it.
//! - [`disk`]: free space under the data directory, and the floor under which no work is taken.
//! - [`uploads`]: the files of uploads, written as they stream in; [`utf8`], the UTF-8
//!   check of a text arriving in chunks; [`quota`], how many uploads and bytes may be stored.
//! - [`checkpoints`]: a job's checkpoint index located in the data dir, verified before use, and
//!   its damage reported by cause; [`datadir`]: paths as the database records them, relative to
//!   the data dir.
//! - [`orphans`]: at start, jobs and uploads on disk that the database does not know (a lost or
//!   restored database): refused, or adopted ([`adopt`]) or discarded as a flag says.
//! - [`sweep`]: the start-up sweep of what kiln itself let go of and a crash left behind.
//! - [`shared`]: the state the service and the workers share.
//! - [`error`]: [`JobError`], why an operation did not happen.

mod adopt;
mod checkpoints;
pub mod cluster;
mod datadir;
pub mod datasets;
pub mod disk;
pub mod dry_run;
pub mod error;
pub mod events;
mod export;
pub mod generation;
mod image_uploads;
mod orphans;
pub mod predict;
pub mod queue;
pub mod quota;
pub mod recorder;
pub mod service;
pub mod shared;
pub mod store;
pub mod sweep;
pub mod uploads;
pub mod utf8;
pub mod worker;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use error::JobError;
pub use service::Jobs;

use crate::definition::{LayerSummary, ValidJobSpec};
use crate::metrics::{EpochMetrics, Progress};

/// Identifies a job.
pub type JobId = Uuid;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// Every status, by name.
    pub const ALL: [JobStatus; 5] =
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a name from [`JobStatus::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the job will not change any more.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Job {
    #[schema(value_type = String, format = Uuid)]
    pub id: JobId,
    pub name: Option<String>,
    pub status: JobStatus,
    /// The definition as resolved, defaults filled in.
    pub spec: ValidJobSpec,
    pub progress: Progress,
    /// RFC 3339 times.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Why the job failed, in words a user can act on.
    pub error: Option<String>,
    /// The device the job trains on, once it started, e.g. `cpu (burn-flex)` or
    /// `wgpu:0 (NVIDIA H100 80GB HBM3, discrete, vulkan)`; for `auto`, the one it got.
    pub backend: Option<String>,
    /// Trainable parameters of the model.
    pub parameters: u64,
    /// An image classifier's layers, resolved for the job's data: each one's output shape and
    /// parameters (a built-in kind's as its preset list writes it). Absent for a language model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerSummary>>,
    /// Seconds from the start of the job's latest run (or resume) to the end of its first
    /// optimizer step: loading the data, building the model and, on a GPU, compiling and
    /// autotuning kernels. Compare a cold and a warm start with it.
    pub first_step_seconds: Option<f64>,
    /// What went wrong without stopping the job, oldest first: e.g. a damaged checkpoint that a
    /// resume skipped, named by id and step, and where the job resumed instead.
    pub warnings: Vec<String>,
    /// The replica (see `GET /cluster`) that trains the job, or last trained it; null before it
    /// first starts.
    pub replica: Option<String>,
}

/// A checkpoint as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointInfo {
    /// Id to download it with.
    pub id: i64,
    /// Epochs completed when it was written.
    pub epoch: u32,
    /// Optimizer steps taken when it was written.
    pub step: u64,
    /// Size of the model file.
    pub bytes: u64,
    /// SHA-256 of the model file, hex.
    pub sha256: String,
    /// The epoch's metrics, for checkpoints written at the end of an epoch.
    pub metrics: Option<EpochMetrics>,
    /// RFC 3339 time it was written.
    pub created_at: String,
}

/// The current time as RFC 3339.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 formats every UTC time")
}
