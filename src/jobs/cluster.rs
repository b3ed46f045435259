//! This process as one replica of those serving its database: it registers when the service
//! starts, a thread renews its heartbeat every third of `--lease-secs`, and it leaves at a clean
//! shutdown. `GET /cluster` lists the replicas.
//!
//! An SQLite file has one replica, the process that has it open; a row left by one that was
//! killed is removed when the next starts. On PostgreSQL a second replica is refused while
//! another one's heartbeat is alive: each keeps its queue in memory and resumes at start what
//! the database lists as running, so two would train the same jobs. Sharing the queue through
//! the database (jobs claimed under leases, writes fenced) lifts that; until then one replica
//! serves each PostgreSQL database, and a replica that died is replaced once its lease expires.
//! One that was only paused past its lease and finds another in its place exits at its next
//! beat (see [`beat`]).

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use super::error::JobError;
use super::shared::Shared;
use super::store::{NewReplica, ReplicaRow};
use crate::backend::Lane;

/// The replicas serving this server's database.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterView {
    /// The id of the replica that answered.
    pub replica: String,
    /// Every registered replica, oldest first.
    pub replicas: Vec<ReplicaView>,
}

/// One replica.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplicaView {
    pub id: String,
    /// Where its API answers (`--advertise-url`).
    pub address: String,
    /// The devices it trains on, as jobs' `backend` shows them.
    pub devices: Vec<String>,
    /// kiln's version.
    pub version: String,
    /// RFC 3339 time it started.
    pub started_at: String,
    /// Seconds since its last heartbeat, on the database's clock.
    pub heartbeat_age_secs: f64,
    /// Whether that heartbeat is within the lease (`--lease-secs`): false for a replica that
    /// stopped without leaving, until another one starts and removes it.
    pub alive: bool,
    /// Jobs it is training.
    pub running_jobs: u64,
}

/// The heartbeat thread of this replica: dropping `stop` stops it, and it says so on `finished`.
pub(crate) struct Membership {
    stop: mpsc::Sender<()>,
    finished: mpsc::Receiver<()>,
}

/// What this replica tells the others about itself.
fn describe(shared: &Shared) -> (String, String) {
    let config = &shared.config;
    let address = config.advertise_url.clone().unwrap_or_else(|| format!("http://{}", config.bind));
    let gpus = shared.backends.usable_gpus().map(|g| shared.backends.resolve(Lane::Gpu(g)).name);
    let devices: Vec<String> = std::iter::once(shared.backends.resolve(Lane::Cpu).name).chain(gpus).collect();
    (address, serde_json::to_string(&devices).expect("strings serialize"))
}

fn lease_ms(shared: &Shared) -> i64 {
    (shared.config.lease_secs * 1000) as i64
}

/// Registers this replica and starts its heartbeat. Refuses to start on a PostgreSQL database
/// another live replica serves (see the module's note).
pub(crate) fn join(shared: &Arc<Shared>) -> Result<Membership, JobError> {
    let (address, devices) = describe(shared);
    let new = NewReplica { address: &address, devices: &devices, version: env!("CARGO_PKG_VERSION") };
    // SQLite: whoever registered before is this data dir's previous process, gone.
    let lease = if shared.store.is_shared() { lease_ms(shared) } else { 0 };
    let others = shared.store.register_replica(&new, lease)?;
    if let Some(other) = others.first() {
        shared.store.leave()?;
        return Err(JobError::Conflict(format!(
            "another kiln replica ({}, at {}) serves this database, its heartbeat {:.1} s old: one replica \
             per PostgreSQL database for now. Stop it, or wait --lease-secs ({} s) after it died",
            other.id,
            other.address,
            other.heartbeat_age_ms as f64 / 1000.0,
            shared.config.lease_secs
        )));
    }
    let (stop, stopped) = mpsc::channel();
    let (done, finished) = mpsc::channel();
    let every = Duration::from_millis(lease_ms(shared) as u64 / 3);
    let beating = shared.clone();
    std::thread::Builder::new()
        .name("kiln-heartbeat".into())
        .spawn(move || {
            let again =
                NewReplica { address: &address, devices: &devices, version: env!("CARGO_PKG_VERSION") };
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                // A beat may have waited on an unreachable database past the stop.
                beat(&beating, &again, || matches!(stopped.try_recv(), Err(TryRecvError::Disconnected)));
            }
            let _ = done.send(());
        })
        .expect("spawning the heartbeat thread");
    Ok(Membership { stop, finished })
}

/// Renews the heartbeat. If another replica took this one for dead (it was paused, or cut off
/// from the database, past its lease), registers again when no other replica is alive; when one
/// is, that one may have resumed this one's jobs, and until runs are fenced the only safe thing
/// is to stop writing at once: the process exits, as if killed, and a restart is refused while
/// the other lives.
fn beat(shared: &Shared, again: &NewReplica<'_>, stopping: impl Fn() -> bool) {
    match shared.store.heartbeat() {
        Ok(true) => {}
        Ok(false) if stopping() => {}
        Ok(false) => match shared.store.register_replica(again, lease_ms(shared)) {
            Ok(others) if others.is_empty() => {
                tracing::warn!(
                    "this replica was taken for dead (its heartbeat row was gone): registered again"
                );
            }
            Ok(others) => {
                tracing::error!(
                    replica = %others[0].id,
                    "this replica was taken for dead and another now serves the database: exiting without another write"
                );
                let _ = shared.store.leave();
                std::process::exit(1);
            }
            Err(e) => tracing::warn!(error = %e, "registering again failed"),
        },
        Err(e) => tracing::warn!(error = %e, "renewing this replica's heartbeat failed"),
    }
}

impl Membership {
    /// Stops the heartbeat and removes this replica's row. Waits a few seconds for a beat in
    /// flight (it may be waiting on an unreachable database), not longer.
    pub(crate) fn leave(self, shared: &Shared) {
        drop(self.stop);
        let _ = self.finished.recv_timeout(Duration::from_secs(5));
        if let Err(e) = shared.store.leave() {
            tracing::warn!(error = %e, "could not remove this replica from the database");
        }
    }
}

/// The replicas, for `GET /cluster`.
pub(crate) fn view(shared: &Shared) -> Result<ClusterView, JobError> {
    let lease = lease_ms(shared);
    let replicas = shared.store.replicas()?.into_iter().map(|row| replica_view(row, lease)).collect();
    Ok(ClusterView { replica: shared.store.replica().to_string(), replicas })
}

fn replica_view(row: ReplicaRow, lease_ms: i64) -> ReplicaView {
    ReplicaView {
        devices: serde_json::from_str(&row.devices).unwrap_or_default(),
        heartbeat_age_secs: row.heartbeat_age_ms.max(0) as f64 / 1000.0,
        alive: row.heartbeat_age_ms < lease_ms,
        running_jobs: row.running_jobs.max(0) as u64,
        id: row.id,
        address: row.address,
        version: row.version,
        started_at: row.started_at,
    }
}
