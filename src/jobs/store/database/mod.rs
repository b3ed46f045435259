//! Where the store's rows live: the embedded SQLite file ([`sqlite`], the default: no other
//! process needed) or a PostgreSQL server that several replicas share ([`postgres`]). Both give
//! the store the same two things, a connection to read on and a transaction to write in, as
//! [`Sql`]; the store's queries and its rules are written once, above them.

mod postgres;
mod sqlite;

use super::sql::{Dialect, Sql};
use super::{Result, StoreError};
use crate::config::DatabaseUrl;

/// The database behind the store.
pub(crate) enum Database {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

impl Database {
    /// Opens the database `url` names (creating an SQLite file if needed).
    pub(crate) fn open(url: &DatabaseUrl) -> Result<Self> {
        Ok(match url {
            DatabaseUrl::Sqlite(path) => Database::Sqlite(sqlite::Sqlite::open(path)?),
            DatabaseUrl::Postgres(url) => Database::Postgres(postgres::Postgres::connect(url)?),
            DatabaseUrl::Unrecognised => return Err(StoreError::Unrecognised),
        })
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Database::Sqlite(_) => Dialect::Sqlite,
            Database::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs `f` on a connection, outside a transaction: reads that need no snapshot across
    /// statements, and idempotent writes (on PostgreSQL `f` runs again when the server could not
    /// be reached).
    pub(crate) fn read<T: Send>(&self, f: impl FnMut(&mut dyn Sql) -> Result<T> + Send) -> Result<T> {
        match self {
            Database::Sqlite(db) => db.read(f),
            Database::Postgres(db) => db.read(f),
        }
    }

    /// Runs `f` in one transaction, committed if `f` succeeds and rolled back if it fails (on
    /// PostgreSQL, run again when the server could not be reached and it did not commit).
    pub(crate) fn transaction<T: Send>(&self, f: impl FnMut(&mut dyn Sql) -> Result<T> + Send) -> Result<T> {
        match self {
            Database::Sqlite(db) => db.transaction(f),
            Database::Postgres(db) => db.transaction(f),
        }
    }
}
