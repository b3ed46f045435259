//! The replicas serving this database: each kiln process is one, under an id of its own
//! ([`Store::replica`]). It registers when it starts, renews its heartbeat while it runs (on the
//! database's clock, which replicas on several machines share) and leaves at a clean shutdown;
//! one that stops renewing is dead once its heartbeat is older than the lease.

use super::sql::args;
use super::{Result, Store};

/// A replica about to register.
pub struct NewReplica<'a> {
    /// Where its API answers, as other replicas and clients are told.
    pub address: &'a str,
    /// The devices it trains on, as `GET /backends` names them (JSON array of strings).
    pub devices: &'a str,
    pub version: &'a str,
}

/// A replica's row, with its heartbeat's age on the database's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaRow {
    pub id: String,
    pub address: String,
    /// JSON array of device names.
    pub devices: String,
    pub version: String,
    pub started_at: String,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: i64,
    /// Jobs running on it, as the jobs table says.
    pub running_jobs: i64,
}

impl Store {
    /// Registers this process as a replica, first removing the rows of replicas whose heartbeat
    /// is older than `lease_ms` (dead). Returns the replicas that are still alive, this one left
    /// out, so a caller can refuse to share the database with them.
    pub fn register_replica(&self, new: &NewReplica<'_>, lease_ms: i64) -> Result<Vec<ReplicaRow>> {
        self.transaction(|tx| {
            let now = tx.dialect().now_ms();
            tx.execute(&format!("DELETE FROM replicas WHERE heartbeat_ms < {now} - $1"), args![lease_ms])?;
            tx.execute(
                &format!(
                    "INSERT INTO replicas (id, address, devices, version, started_at, heartbeat_ms) \
                     VALUES ($1, $2, $3, $4, $5, {now})"
                ),
                args![self.replica.as_str(), new.address, new.devices, new.version, crate::jobs::now()],
            )?;
            Ok(())
        })?;
        Ok(self.replicas()?.into_iter().filter(|r| r.id != self.replica).collect())
    }

    /// Renews this replica's heartbeat; `false` if its row is gone (another replica took it for
    /// dead and removed it).
    pub fn heartbeat(&self) -> Result<bool> {
        let renewed = self.read(|db| {
            let sql = format!("UPDATE replicas SET heartbeat_ms = {} WHERE id = $1", db.dialect().now_ms());
            db.execute(&sql, args![self.replica.as_str()])
        })?;
        Ok(renewed == 1)
    }

    /// Removes this replica's row: it stopped cleanly.
    pub fn leave(&self) -> Result<()> {
        self.read(|db| db.execute("DELETE FROM replicas WHERE id = $1", args![self.replica.as_str()]))?;
        Ok(())
    }

    /// Every registered replica, oldest first.
    pub fn replicas(&self) -> Result<Vec<ReplicaRow>> {
        let rows = self.read(|db| {
            let sql = format!(
                "SELECT r.id, r.address, r.devices, r.version, r.started_at, {} - r.heartbeat_ms, \
                 (SELECT COUNT(*) FROM jobs j WHERE j.replica = r.id AND j.status = 'running') \
                 FROM replicas r ORDER BY r.started_at, r.id",
                db.dialect().now_ms()
            );
            db.query(&sql, &[])
        })?;
        rows.iter()
            .map(|r| {
                Ok(ReplicaRow {
                    id: r.get(0)?,
                    address: r.get(1)?,
                    devices: r.get(2)?,
                    version: r.get(3)?,
                    started_at: r.get(4)?,
                    heartbeat_age_ms: r.get(5)?,
                    running_jobs: r.get(6)?,
                })
            })
            .collect()
    }

    /// This process's replica id.
    pub fn replica(&self) -> &str {
        &self.replica
    }
}
