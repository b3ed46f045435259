//! What happens to a job, as a numbered history that watchers can follow live: status changes,
//! step points, epoch rows and checkpoints.
//!
//! Every event is written to the store in the same transaction as the fact it reports (so the
//! history is exactly what the job's record says), gets the row's sequence number as its id, and
//! is then sent once on a broadcast channel. A watcher ([`Follow`], of one job or of every job)
//! reads the history it missed from the store, then takes new events from the channel: many
//! watchers cost one database write per event, not one read per watcher per poll. A watcher that
//! falls more than the channel's capacity behind reads what it missed from the store again.
//!
//! A run that resumes from a checkpoint forgets the step and epoch events past it, as it forgets
//! those metrics: the history then reads as if the run had never gone further, and a watcher that
//! was live at the time sees the resumed steps arrive again, under new ids.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;
use utoipa::ToSchema;

use super::{JobId, JobStatus};
use crate::metrics::{EpochMetrics, StepPoint};

/// How many events the broadcast channel holds for a slow watcher before it must catch up from
/// the store.
pub const CHANNEL_CAPACITY: usize = 4096;
/// How many events one catch-up read returns.
pub const PAGE: usize = 500;

/// A job's status changed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StatusEvent {
    pub status: JobStatus,
    /// The device a running job trains on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The replica a running job trains on (see `GET /cluster`): a job that moves to another
    /// replica shows `running` again under the new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Why a failed job failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A checkpoint was written and indexed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CheckpointEvent {
    /// Its id under `/jobs/{id}/checkpoints/`.
    pub id: i64,
    pub epoch: u32,
    pub step: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// One thing that happened to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    Status(StatusEvent),
    Step(StepPoint),
    Epoch(EpochMetrics),
    Checkpoint(CheckpointEvent),
}

impl JobEvent {
    /// The name of its kind: the Server-Sent Event's `event` field and the store's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Status(_) => "status",
            Self::Step(_) => "step",
            Self::Epoch(_) => "epoch",
            Self::Checkpoint(_) => "checkpoint",
        }
    }

    /// Its body, as JSON.
    pub fn data(&self) -> serde_json::Result<String> {
        match self {
            Self::Status(e) => serde_json::to_string(e),
            Self::Step(e) => serde_json::to_string(e),
            Self::Epoch(e) => serde_json::to_string(e),
            Self::Checkpoint(e) => serde_json::to_string(e),
        }
    }

    /// A status event for `status` with nothing else to say.
    pub fn status(status: JobStatus) -> Self {
        Self::Status(StatusEvent { status, backend: None, replica: None, error: None })
    }

    /// Whether the job's history ends here.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Status(s) if s.status.is_finished())
    }
}

/// An event as stored: its id (increasing over all jobs), its job, its kind and its JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub id: i64,
    pub job: JobId,
    pub kind: &'static str,
    pub data: String,
    /// Whether the job's history ends with it (a final status).
    pub last: bool,
}

impl Recorded {
    /// Its body with its job named first, as a stream of every job sends it:
    /// `{"job":"<id>","status":"running",...}`.
    pub fn data_with_job(&self) -> String {
        let rest = self.data.trim_start().strip_prefix('{').unwrap_or("}").trim_start();
        let comma = if rest.starts_with('}') { "" } else { "," };
        format!("{{\"job\":\"{}\"{comma}{rest}", self.job)
    }
}

/// The body of a `deleted` event: `{"job":"<id>"}`.
pub fn deleted_data(job: JobId) -> String {
    format!("{{\"job\":\"{job}\"}}")
}

/// What goes on the broadcast channel.
#[derive(Debug, Clone)]
pub enum Notice {
    Event(Arc<Recorded>),
    /// The job was deleted: its watchers stop.
    Deleted(JobId),
}

/// Where the store announces what it recorded.
#[derive(Clone)]
pub struct Announcer {
    sender: broadcast::Sender<Notice>,
}

impl Default for Announcer {
    fn default() -> Self {
        Self::with_capacity(CHANNEL_CAPACITY)
    }
}

impl Announcer {
    /// An announcer whose channel holds `capacity` events.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity).0 }
    }

    /// Sends events already committed to the store, in order. Nobody listening is not an error.
    pub fn announce(&self, events: impl IntoIterator<Item = Recorded>) {
        for event in events {
            let _ = self.sender.send(Notice::Event(Arc::new(event)));
        }
    }

    /// Tells a deleted job's watchers to stop.
    pub fn deleted(&self, job: JobId) {
        let _ = self.sender.send(Notice::Deleted(job));
    }

    /// A receiver of everything announced from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.sender.subscribe()
    }
}

/// A page of a job's stored history: the job's status now and its events after a cursor.
pub struct History {
    pub status: JobStatus,
    pub events: Vec<Recorded>,
}

/// Reads the stored history after a cursor, for watchers that catch up.
pub trait HistorySource {
    /// Job `job`'s status and up to `limit` of its events after `after` (`None`: no such job).
    fn history(&self, job: JobId, after: i64, limit: usize) -> Result<Option<History>, String>;
    /// Up to `limit` events of every job after `after`, oldest first.
    fn all_history(&self, after: i64, limit: usize) -> Result<Vec<Recorded>, String>;
}

mod follow;

pub use follow::{Follow, Next};

#[cfg(test)]
mod tests;
