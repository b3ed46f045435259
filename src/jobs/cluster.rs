//! This process as one replica of those serving its database: it registers when the service
//! starts, a thread renews its heartbeat every third of `--lease-secs`, and it leaves at a clean
//! shutdown. `GET /cluster` lists the replicas.
//!
//! The heartbeat is also the lease of every job the replica claimed (see
//! [`super::store::Claim`]): after each beat, the thread queues again the jobs of replicas whose
//! heartbeat is older than the lease, for any replica's workers to claim and resume. A replica
//! that was only paused, or cut off from the database, past its lease registers again when it
//! comes back; the jobs it was training have moved on, and their runs stop at their next write,
//! which the store refuses.
//!
//! An SQLite file has one replica, the process that has it open; a row left by one that was
//! killed is removed when the next starts.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

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

/// Registers this replica and starts its heartbeat, which also queues again the jobs of replicas
/// that died (see the module's note).
pub(crate) fn join(shared: &Arc<Shared>) -> Result<Membership, JobError> {
    let (address, devices) = describe(shared);
    let new = NewReplica { address: &address, devices: &devices, version: env!("CARGO_PKG_VERSION") };
    // SQLite: whoever registered before is this data dir's previous process, gone.
    let lease = if shared.store.is_shared() { lease_ms(shared) } else { 0 };
    shared.store.register_replica(&new, lease)?;
    let (stop, stopped) = mpsc::channel();
    let (done, finished) = mpsc::channel();
    let every = Duration::from_millis(lease_ms(shared) as u64 / 3);
    let beating = shared.clone();
    std::thread::Builder::new()
        .name("kiln-heartbeat".into())
        .spawn(move || {
            let again =
                NewReplica { address: &address, devices: &devices, version: env!("CARGO_PKG_VERSION") };
            // A beat may wait on an unreachable database past the stop.
            let stopping = || matches!(stopped.try_recv(), Err(TryRecvError::Disconnected));
            // Since when every beat has renewed: see `reap`.
            let mut renewing_since = Some(Instant::now());
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                if stopping() {
                    break;
                }
                let renewed = beat(&beating, &again, stopping);
                renewing_since = if renewed { renewing_since.or(Some(Instant::now())) } else { None };
                let lease = Duration::from_millis(lease_ms(&beating) as u64);
                if renewing_since.is_some_and(|since| since.elapsed() >= lease) && !stopping() {
                    reap(&beating);
                }
            }
            // The service may hold the last other reference: once `leave` returns, the store
            // (and its database file) is closed with it.
            drop(beating);
            let _ = done.send(());
        })
        .expect("spawning the heartbeat thread");
    Ok(Membership { stop, finished })
}

/// Renews the heartbeat; says whether it did. If another replica took this one for dead (it was
/// paused, or cut off from the database, past its lease) and removed its row, registers again —
/// unless it is `stopping` (its row was removed by its own leave): the jobs it was training were
/// queued again meanwhile, and their runs here are fenced off.
fn beat(shared: &Shared, again: &NewReplica<'_>, stopping: impl Fn() -> bool) -> bool {
    match shared.store.heartbeat() {
        Ok(true) => true,
        Ok(false) if stopping() => false,
        Ok(false) => match shared.store.register_replica(again, lease_ms(shared)) {
            Ok(_) => {
                tracing::warn!(
                    "this replica was taken for dead (its heartbeat row was gone): registered again; \
                     the jobs it was training have been queued again"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "registering again failed");
                false
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "renewing this replica's heartbeat failed");
            false
        }
    }
}

/// Queues again the jobs of replicas whose heartbeat expired, and wakes this replica's idle
/// workers to claim them. Only called once this replica has renewed its own heartbeat for a
/// whole lease: after an outage of the database every replica's heartbeat is stale, and the first
/// to reconnect must not take the others' jobs before they have had a lease to renew theirs.
fn reap(shared: &Shared) {
    match shared.store.requeue_expired(lease_ms(shared)) {
        Ok(requeued) if requeued.is_empty() => {}
        Ok(requeued) => {
            for id in &requeued {
                tracing::warn!(job = %id, "queued again a job whose replica stopped renewing its lease");
            }
            shared.queue.wake();
        }
        Err(e) => tracing::warn!(error = %e, "queueing again the jobs of dead replicas failed"),
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
