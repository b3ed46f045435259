//! The durable record of the service: jobs, their metrics and their checkpoint index, and the
//! index of uploaded data sets, in one database: an SQLite file in the data dir by default, or a
//! PostgreSQL server that several replicas share (`--database-url`; see [`database`]). All SQL of
//! kiln is in this module, written once for both ([`sql`]): job rows in [`jobs`], metrics rows in
//! [`metrics`], the checkpoint index in [`checkpoints`], which replica trains which job (and the
//! fencing token every write of a run carries) in [`claims`], uploaded data sets in [`datasets`], each
//! job's event history in [`events`]: every write that changes what a watcher sees appends its
//! event in the same transaction and announces it once committed. [`removals`] lists the files
//! kiln is about to remove: deleting a job, a data set or a checkpoint's index row records its
//! files there in the same transaction, and the row is cleared once they are gone, so the
//! start-up sweep removes only what kiln itself let go of. Paths in the database are relative to
//! the data dir, or to the shared dir when there is one (`Config::files_dir`). [`schema`] holds the numbered migrations, applied when the store opens.
//!
//! The checkpoint *files* are not here (training writes them), nor are the uploaded data sets'
//! (see [`crate::jobs::datasets`]). The store persists plain values: the job definition, its
//! warnings and epoch rows as JSON, everything else in columns.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::events::{Announcer, Notice, Recorded};
use crate::config::DatabaseUrl;

/// A database failure; never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database: {}", postgres_message(.0))]
    Postgres(#[from] postgres::Error),
    #[error("database connection: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("stored JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stored value is not valid: {0}")]
    Corrupt(String),
    /// A job was to be inserted on an uploaded data set that is gone (deleted after the job was
    /// validated against it).
    #[error("data set {0} is gone")]
    DatasetGone(String),
    /// A job was to be inserted while this many jobs wait, the queue's capacity or more.
    #[error("{0} jobs wait already")]
    QueueFull(i64),
    /// A run's write was refused: the job no longer holds that claim (its replica's lease
    /// expired and the job moved, or it was ended from elsewhere).
    #[error("job {0} is no longer held by claim {1}: the run was taken over or ended elsewhere")]
    Fenced(crate::jobs::JobId, i64),
    /// `--database-url` is neither `sqlite://PATH` nor `postgres://…` (not repeated: it may hold
    /// a password).
    #[error("--database-url must be sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE")]
    Unrecognised,
    /// The database was migrated by a newer kiln; this one does not write to it.
    #[error(
        "the database's schema is version {found}, newer than this kiln knows ({known}): run the kiln that migrated it, or a newer one"
    )]
    SchemaTooNew { found: i64, known: i64 },
}

type Result<T> = std::result::Result<T, StoreError>;

/// What the server said, where `postgres::Error` alone shows only "db error".
fn postgres_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

mod checkpoints;
mod claims;
mod database;
mod datasets;
mod events;
mod feed;
mod jobs;
mod metrics;
mod references;
mod removals;
mod replicas;
mod rows;
mod schema;
pub(crate) mod sql;
#[cfg(test)]
pub(crate) mod testing;

pub use checkpoints::{IndexedCheckpoint, NewCheckpoint};
pub use claims::{CancelRequest, Claim, ClaimRow};
pub use datasets::DatasetDeletion;
pub use jobs::{AdoptedJob, NewJob};
pub use metrics::MetricsPage;
pub use replicas::{NewReplica, ReplicaRow};

use database::Database;
use sql::Sql;

/// The database, and the channel on which it announces the events it records.
pub struct Store {
    db: Database,
    /// Held from a write's transaction until its events are announced, so the channel carries
    /// this server's events in the order of their ids.
    write_order: Mutex<()>,
    announcer: Announcer,
    /// This process's id among the replicas serving the database (see [`replicas`]).
    replica: String,
    /// On PostgreSQL, the listener that announces every replica's events (see [`feed`]); on
    /// SQLite, each write announces its own.
    feed: Option<feed::Feed>,
}

impl Store {
    /// Opens the database `url` names, creating an SQLite file if needed, and brings its schema
    /// up to date (see [`schema`]).
    pub fn open(url: &DatabaseUrl) -> Result<Self> {
        let db = Database::open(url)?;
        schema::migrate(&db)?;
        let replica = uuid::Uuid::new_v4().to_string();
        let announcer = Announcer::default();
        let feed = match url {
            DatabaseUrl::Postgres(url) => {
                Some(feed::Feed::start(url, announcer.clone(), newest_event(&db)?)?)
            }
            _ => None,
        };
        Ok(Self { db, write_order: Mutex::new(()), announcer, replica, feed })
    }

    /// Whether the database knows no job and no data set (it is new, or was lost and made anew).
    pub fn is_empty(&self) -> Result<bool> {
        self.read(|db| {
            db.query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM jobs) AND NOT EXISTS (SELECT 1 FROM datasets)",
                &[],
            )?
            .get(0)
        })
    }

    /// Runs `read` on a connection.
    fn read<T: Send>(&self, read: impl FnMut(&mut dyn Sql) -> Result<T> + Send) -> Result<T> {
        self.db.read(read)
    }

    /// Runs `write` in one transaction, with no events to announce.
    fn transaction<T: Send>(&self, write: impl FnMut(&mut dyn Sql) -> Result<T> + Send) -> Result<T> {
        self.db.transaction(write)
    }

    /// Runs `write` in one transaction; once it commits, announces the events it recorded, still
    /// in write order: the channel then carries every job's events in the order of their ids.
    /// On PostgreSQL the listener announces them, with every other replica's (see [`feed`]).
    fn write<T: Send>(
        &self,
        mut write: impl FnMut(&mut dyn Sql) -> Result<(T, Vec<Recorded>)> + Send,
    ) -> Result<T> {
        if self.feed.is_some() {
            return self.db.transaction(|tx| write(tx).map(|(value, _)| value));
        }
        let order = self.write_order();
        let (value, events) = self.db.transaction(write)?;
        self.announcer.announce(events);
        drop(order);
        Ok(value)
    }

    fn write_order(&self) -> MutexGuard<'_, ()> {
        crate::blocking::lock(&self.write_order)
    }

    /// Whether several replicas may share this database (PostgreSQL; an SQLite file belongs to
    /// one process).
    pub fn is_shared(&self) -> bool {
        self.db.dialect() == sql::Dialect::Postgres
    }

    /// A receiver of every event announced from now on, and the id of the newest event stored
    /// now (0: none), taken together in write order: the receiver gets every event after that id.
    pub fn subscribe(&self) -> Result<(broadcast::Receiver<Notice>, i64)> {
        if let Some(feed) = &self.feed {
            return Ok(feed.subscribe(&self.announcer));
        }
        let order = self.write_order();
        let newest = newest_event(&self.db)?;
        let live = self.announcer.subscribe();
        drop(order);
        Ok((live, newest))
    }

    /// Where recorded events are announced, for watchers to subscribe.
    pub fn announcer(&self) -> &Announcer {
        &self.announcer
    }
}
/// The id of the newest event stored (0: none).
fn newest_event(db: &Database) -> Result<i64> {
    db.read(|db| db.query_one("SELECT COALESCE(MAX(seq), 0) FROM events", &[])?.get(0))
}

#[cfg(test)]
mod tests;
