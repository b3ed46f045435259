//! The database's tables, as numbered migrations for each dialect, applied in order at start in
//! one transaction; the version reached is kept in `schema_version`. A database at a version this
//! binary does not know (a newer kiln migrated it) is refused, not written to.
//!
//! SQLite's first migration is the schema as it grew before versions were kept: it creates what
//! a new database lacks, adds the columns an older one lacks and rewrites its absolute checkpoint
//! paths (`jobs/<job>/checkpoints/step-…` relative to the data dir, whatever data dir the old
//! path named), so a data dir of any earlier kiln starts at version 1 like a new one.

mod postgres;
mod sqlite;

use super::database::Database;
use super::sql::{Dialect, Sql, args};
use super::{Result, StoreError};

/// The newest schema this binary knows.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// One step of the schema, in each dialect.
struct Migration {
    sqlite: Step,
    postgres: Step,
}

enum Step {
    Sql(&'static str),
    Code(fn(&mut dyn Sql) -> Result<()>),
}

/// Version N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[Migration] = &[
    Migration { sqlite: Step::Code(sqlite::v1), postgres: Step::Sql(postgres::V1) },
    // Which uploaded data set a job reads, in a column: the check that keeps a data set from
    // being deleted under a queued job, in either dialect, without reading JSON.
    Migration { sqlite: Step::Code(sqlite::v2), postgres: Step::Sql(postgres::V2) },
    // The replicas serving the database, and which one trains each job.
    Migration { sqlite: Step::Code(sqlite::v3), postgres: Step::Code(postgres::v3) },
    // Jobs claimed through the database: the claim (fencing token) a run holds, the backend a
    // queued job waits for, a cancel asked of whichever replica trains it, and the log of claims.
    Migration { sqlite: Step::Code(sqlite::v4), postgres: Step::Code(postgres::v4) },
];

/// An arbitrary constant: the advisory lock under which PostgreSQL replicas migrate one at a time.
const MIGRATION_LOCK: i64 = 0x6b696c6e;

/// Brings the database to [`VERSION`], or refuses one that is newer.
pub(super) fn migrate(db: &Database) -> Result<()> {
    let dialect = db.dialect();
    db.transaction(|tx| {
        if dialect == Dialect::Postgres {
            tx.execute("SELECT pg_advisory_xact_lock($1)", args![MIGRATION_LOCK])?;
        }
        // Looked up before anything is created, so a database already current needs no right to
        // create tables: a role that may only read and write rows can serve it.
        let exists = match dialect {
            Dialect::Postgres => "SELECT to_regclass('schema_version') IS NOT NULL",
            Dialect::Sqlite => {
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            }
        };
        if !tx.query_one(exists, &[])?.get::<bool>(0)? {
            tx.batch("CREATE TABLE schema_version (version BIGINT NOT NULL)")?;
        }
        let current = match tx.query_opt("SELECT version FROM schema_version", &[])? {
            Some(row) => row.get::<i64>(0)?,
            None => {
                tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])?;
                0
            }
        };
        if current > VERSION {
            return Err(StoreError::SchemaTooNew { found: current, known: VERSION });
        }
        if current < 0 {
            return Err(StoreError::Corrupt(format!("schema version {current}")));
        }
        if current == VERSION {
            return Ok(());
        }
        for migration in &MIGRATIONS[current as usize..] {
            let step = match dialect {
                Dialect::Sqlite => &migration.sqlite,
                Dialect::Postgres => &migration.postgres,
            };
            match step {
                Step::Sql(sql) => tx.batch(sql)?,
                Step::Code(run) => run(tx)?,
            }
        }
        tx.execute("UPDATE schema_version SET version = $1", args![VERSION])?;
        Ok(())
    })
}

/// The same in both dialects: SQLite's INTEGER and PostgreSQL's BIGINT both hold 64 bits, and
/// SQLite takes `BIGINT` as INTEGER.
const REPLICAS: &str = "
CREATE TABLE IF NOT EXISTS replicas (
    id           TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    devices      TEXT NOT NULL,
    version      TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_ms BIGINT NOT NULL
);
";

/// The claims log (see `store/claims.rs`) and the index the claim query reads, in either dialect:
/// `id` is how the dialect spells an id that counts up.
fn claims(id: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS claims (
            id         {id},
            job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            replica    TEXT NOT NULL,
            device     TEXT NOT NULL,
            claimed_at TEXT NOT NULL,
            ended_at   TEXT,
            outcome    TEXT
        );
        CREATE INDEX IF NOT EXISTS claims_job ON claims (job_id, id);
        CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (status, wants, seq);"
    )
}

/// Fills `jobs.wants` (the backend a job asked for, as its definition names it) of the jobs
/// still queued or running: the claim query reads it, not the JSON. Finished jobs need none.
fn fill_wants(tx: &mut dyn Sql) -> Result<()> {
    let rows = tx.query("SELECT id, spec FROM jobs WHERE status IN ('queued', 'running')", &[])?;
    for row in rows {
        let (id, spec) = (row.get::<String>(0)?, row.get::<String>(1)?);
        let spec: serde_json::Value = serde_json::from_str(&spec)?;
        let wants = spec["backend"].as_str().unwrap_or("cpu").to_string();
        tx.execute("UPDATE jobs SET wants = $2 WHERE id = $1", args![id, wants])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
