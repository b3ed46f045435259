//! Databases for the store's tests: each test runs once on an SQLite file of its own and once on
//! a PostgreSQL database of its own, made on the server `$KILN_TEST_DATABASE_URL` names (a URL
//! without a database, `postgres://USER@127.0.0.1:PORT`; `scripts/test` starts a throwaway
//! server and sets it) and dropped when the test ends.

use std::path::Path;

use tempfile::TempDir;

use super::Store;
use crate::config::{Config, DatabaseUrl};

/// One database for one test.
pub(crate) struct TestDatabase {
    /// `sqlite` or `postgres`, for assertion messages.
    pub(crate) name: &'static str,
    pub(crate) url: DatabaseUrl,
    /// The SQLite file's directory, removed with it.
    _dir: Option<TempDir>,
    /// The PostgreSQL server and the database made on it, dropped with it.
    postgres: Option<(String, String)>,
}

/// An SQLite database and a PostgreSQL database, both new and empty.
pub(crate) fn databases() -> [TestDatabase; 2] {
    [sqlite(), postgres()]
}

pub(crate) fn sqlite() -> TestDatabase {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite(dir.path().join("kiln.sqlite3"));
    TestDatabase { name: "sqlite", url, _dir: Some(dir), postgres: None }
}

pub(crate) fn postgres() -> TestDatabase {
    let server = std::env::var("KILN_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "KILN_TEST_DATABASE_URL is unset: the store's tests need a PostgreSQL server to make databases on \
             (postgres://USER@127.0.0.1:PORT, no database); scripts/test starts one and sets it"
        )
    });
    let server = server.trim_end_matches('/').to_string();
    let database = format!("kiln_test_{}", uuid::Uuid::new_v4().simple());
    admin(&server, &format!("CREATE DATABASE {database}")).unwrap_or_else(|e| panic!("{e}"));
    let url = DatabaseUrl::Postgres(format!("{server}/{database}"));
    TestDatabase { name: "postgres", url, _dir: None, postgres: Some((server, database)) }
}

impl TestDatabase {
    /// The store on this database.
    pub(crate) fn open(&self) -> Store {
        Store::open(&self.url).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// A server configuration serving from `data_dir` with this database.
    pub(crate) fn config(&self, data_dir: &Path) -> Config {
        Config { database_url: Some(self.url.clone()), ..Config::with_data_dir(data_dir) }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((server, database)) = &self.postgres {
            // Best effort: a test that failed is not to be turned into an abort here.
            let _ = admin(server, &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
        }
    }
}

/// Runs `sql` on `server`'s `postgres` database, on a thread of its own (the client may not
/// block inside a test's runtime).
fn admin(server: &str, sql: &str) -> Result<(), String> {
    let url = format!("{server}/postgres");
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)
                .map_err(|e| format!("cannot reach the test PostgreSQL at {server}: {e}"))?;
            client.batch_execute(sql).map_err(|e| format!("{sql}: {e}"))
        })
        .join()
        .unwrap_or_else(|_| Err(format!("{sql}: the thread panicked")))
    })
}
