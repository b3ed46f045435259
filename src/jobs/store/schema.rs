//! The database's tables, as numbered migrations for each dialect, applied in order at start in
//! one transaction; the version reached is kept in `schema_version`. A database at a version this
//! binary does not know (a newer kiln migrated it) is refused, not written to.
//!
//! SQLite's first migration is the schema as it grew before versions were kept: it creates what
//! a new database lacks, adds the columns an older one lacks and rewrites its absolute checkpoint
//! paths (`jobs/<job>/checkpoints/step-…` relative to the data dir, whatever data dir the old
//! path named), so a data dir of any earlier kiln starts at version 1 like a new one.

use std::path::Path;

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
    Migration { sqlite: Step::Code(sqlite_v1), postgres: Step::Sql(POSTGRES_V1) },
    // Which uploaded data set a job reads, in a column: the check that keeps a data set from
    // being deleted under a queued job, in either dialect, without reading JSON.
    Migration { sqlite: Step::Code(sqlite_v2), postgres: Step::Sql(POSTGRES_V2) },
    // The replicas serving the database, and which one trains each job.
    Migration { sqlite: Step::Code(sqlite_v3), postgres: Step::Code(postgres_v3) },
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

/// Creates the tables a new database lacks, adds the columns an older one lacks and rewrites its
/// absolute checkpoint paths.
fn sqlite_v1(tx: &mut dyn Sql) -> Result<()> {
    tx.batch(SQLITE_V1)?;
    // Columns added before versions were kept.
    for (table, column, ty) in [
        ("step_metrics", "grad_norm", "REAL"),
        ("jobs", "first_step_seconds", "REAL"),
        ("jobs", "warnings", "TEXT NOT NULL DEFAULT '[]'"),
        ("checkpoints", "files", "TEXT"),
        ("datasets", "kind", "TEXT NOT NULL DEFAULT 'text'"),
        ("datasets", "images", "TEXT"),
    ] {
        add_missing_column(tx, table, column, ty)?;
    }
    relative_checkpoint_dirs(tx)
}

/// SQLite's later migrations are written to run on a file that has their changes already (its
/// `schema_version` lost, or a copy restored beside a newer one): each adds only what is missing.
fn add_missing_column(tx: &mut dyn Sql, table: &str, column: &str, ty: &str) -> Result<()> {
    let has = tx
        .query_one("SELECT COUNT(*) > 0 FROM pragma_table_info($1) WHERE name = $2", args![table, column])?
        .get::<bool>(0)?;
    if !has {
        tx.batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
    }
    Ok(())
}

fn sqlite_v2(tx: &mut dyn Sql) -> Result<()> {
    add_missing_column(tx, "jobs", "dataset_id", "TEXT")?;
    tx.batch(SQLITE_V2)
}

fn sqlite_v3(tx: &mut dyn Sql) -> Result<()> {
    tx.batch(REPLICAS)?;
    add_missing_column(tx, "jobs", "replica", "TEXT")
}

/// Rewrites every checkpoint directory not yet relative to the data dir (an absolute path, as
/// kiln recorded them once) as `jobs/<job>/checkpoints/<its last component>`: derived from the
/// job and the directory's name alone, so a data dir moved or copied since resolves to its own
/// files.
fn relative_checkpoint_dirs(tx: &mut dyn Sql) -> Result<()> {
    let rows = tx.query("SELECT id, job_id, dir FROM checkpoints WHERE dir NOT LIKE 'jobs/%'", &[])?;
    for row in rows {
        let (id, job, dir) = (row.get::<i64>(0)?, row.get::<String>(1)?, row.get::<String>(2)?);
        let name = Path::new(&dir).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let relative = format!("jobs/{job}/checkpoints/{name}");
        tx.execute("UPDATE checkpoints SET dir = $2 WHERE id = $1", args![id, relative])?;
    }
    Ok(())
}

const SQLITE_V2: &str = "
UPDATE jobs SET dataset_id = json_extract(spec, '$.data.dataset_id')
 WHERE json_extract(spec, '$.data.dataset') = 'uploaded';
CREATE INDEX IF NOT EXISTS jobs_dataset ON jobs (dataset_id) WHERE dataset_id IS NOT NULL;
";

const POSTGRES_V2: &str = "
ALTER TABLE jobs ADD COLUMN dataset_id TEXT;
UPDATE jobs SET dataset_id = spec::jsonb #>> '{data,dataset_id}'
 WHERE spec::jsonb #>> '{data,dataset}' = 'uploaded';
CREATE INDEX jobs_dataset ON jobs (dataset_id) WHERE dataset_id IS NOT NULL;
";

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

fn postgres_v3(tx: &mut dyn Sql) -> Result<()> {
    tx.batch(REPLICAS)?;
    tx.batch("ALTER TABLE jobs ADD COLUMN replica TEXT")
}

/// PostgreSQL's first schema: SQLite's at version 1, with 64-bit integers and identity columns.
const POSTGRES_V1: &str = "
CREATE TABLE jobs (
    seq             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    name            TEXT,
    status          TEXT NOT NULL,
    spec            TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    parameters      BIGINT NOT NULL,
    backend         TEXT,
    error           TEXT,
    epoch           BIGINT NOT NULL DEFAULT 0,
    epochs          BIGINT NOT NULL,
    step            BIGINT NOT NULL DEFAULT 0,
    steps           BIGINT NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    finished_at     TEXT,
    first_step_seconds DOUBLE PRECISION,
    warnings        TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX jobs_status ON jobs (status, seq);
CREATE TABLE epoch_metrics (
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    epoch   BIGINT NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (job_id, epoch)
);
CREATE TABLE step_metrics (
    seq    BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step   BIGINT NOT NULL,
    epoch  BIGINT NOT NULL,
    loss   DOUBLE PRECISION NOT NULL,
    grad_norm DOUBLE PRECISION
);
CREATE INDEX step_metrics_job ON step_metrics (job_id, seq);
CREATE TABLE checkpoints (
    id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    epoch      BIGINT NOT NULL,
    step       BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    dir        TEXT NOT NULL,
    metrics    TEXT,
    created_at TEXT NOT NULL,
    files      TEXT
);
CREATE INDEX checkpoints_job ON checkpoints (job_id, id);
CREATE INDEX checkpoints_dir ON checkpoints (dir);
CREATE TABLE events (
    seq    BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind   TEXT NOT NULL,
    data   TEXT NOT NULL
);
CREATE INDEX events_job ON events (job_id, seq);
CREATE TABLE datasets (
    seq        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT,
    bytes      BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    chars      BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    kind       TEXT NOT NULL DEFAULT 'text',
    images     TEXT
);
CREATE TABLE removals (
    path TEXT PRIMARY KEY
);
";

/// SQLite's tables as they were when versions began to be kept.
const SQLITE_V1: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    name            TEXT,
    status          TEXT NOT NULL,
    spec            TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    parameters      INTEGER NOT NULL,
    backend         TEXT,
    error           TEXT,
    epoch           INTEGER NOT NULL DEFAULT 0,
    epochs          INTEGER NOT NULL,
    step            INTEGER NOT NULL DEFAULT 0,
    steps           INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    finished_at     TEXT,
    first_step_seconds REAL,
    warnings        TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS epoch_metrics (
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    epoch   INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (job_id, epoch)
);
CREATE TABLE IF NOT EXISTS step_metrics (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    epoch  INTEGER NOT NULL,
    loss   REAL NOT NULL,
    grad_norm REAL
);
CREATE INDEX IF NOT EXISTS step_metrics_job ON step_metrics (job_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    epoch      INTEGER NOT NULL,
    step       INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    dir        TEXT NOT NULL,
    metrics    TEXT,
    created_at TEXT NOT NULL,
    files      TEXT
);
CREATE INDEX IF NOT EXISTS checkpoints_job ON checkpoints (job_id, id);
CREATE TABLE IF NOT EXISTS events (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind   TEXT NOT NULL,
    data   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
CREATE TABLE IF NOT EXISTS datasets (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT,
    bytes      INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    chars      INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS removals (
    path TEXT PRIMARY KEY
);
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::store::Store;
    use crate::jobs::store::testing::{databases, sqlite};

    #[test]
    fn a_data_dir_from_before_versions_is_migrated_its_paths_made_relative_and_its_readers_found() {
        let database = sqlite();
        let crate::config::DatabaseUrl::Sqlite(path) = &database.url else { unreachable!() };
        let job = "0b7c2a61-3f7e-4c3b-9a55-2f2d1f1b6c11";
        let upload = "5d8e6c1a-0000-4000-8000-000000000001";
        {
            // The file as an older kiln left it: no schema_version, JSON only.
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute_batch(SQLITE_V1).unwrap();
            let spec = format!(r#"{{"data":{{"dataset":"uploaded","dataset_id":"{upload}"}}}}"#);
            conn.execute(
                "INSERT INTO jobs (id, status, spec, parameters, epochs, created_at) VALUES (?1, 'queued', ?2, 1, 1, '')",
                [job, spec.as_str()],
            )
            .unwrap();
            for dir in [
                format!("/srv/old/data/jobs/{job}/checkpoints/step-0000000004"),
                format!("jobs/{job}/checkpoints/step-0000000008"),
            ] {
                conn.execute(
                    "INSERT INTO checkpoints (job_id, epoch, step, bytes, sha256, dir, created_at) VALUES (?1, 1, 4, 1, '', ?2, '')",
                    [job, dir.as_str()],
                )
                .unwrap();
            }
        }
        let store = database.open();
        let read = |sql: &str| -> Vec<String> {
            let rows = store.read(|db| db.query(sql, &[])).unwrap();
            rows.iter().map(|r| r.get::<String>(0).unwrap()).collect()
        };
        assert_eq!(
            read("SELECT dir FROM checkpoints ORDER BY id"),
            [
                format!("jobs/{job}/checkpoints/step-0000000004"),
                format!("jobs/{job}/checkpoints/step-0000000008")
            ]
        );
        assert_eq!(read("SELECT dataset_id FROM jobs"), [upload], "the upload a job reads, from its JSON");
        assert_eq!(read("SELECT CAST(version AS TEXT) FROM schema_version"), [VERSION.to_string()]);
    }

    #[test]
    fn a_schema_newer_than_this_kiln_is_refused_and_the_current_one_reopens() {
        for database in databases() {
            let store = database.open();
            drop(store);
            let store = database.open();
            store.read(|db| db.execute("UPDATE schema_version SET version = version + 1", &[])).unwrap();
            drop(store);
            match Store::open(&database.url) {
                Err(StoreError::SchemaTooNew { found, known }) => {
                    assert_eq!((found, known), (VERSION + 1, VERSION), "{}", database.name)
                }
                Err(e) => panic!("{}: {e}", database.name),
                Ok(_) => panic!("{}: a newer schema was opened", database.name),
            }
        }
    }

    #[test]
    fn a_current_postgresql_database_opens_for_a_role_that_may_not_create_tables() {
        let database = crate::jobs::store::testing::postgres();
        drop(database.open());
        let crate::config::DatabaseUrl::Postgres(url) = &database.url else { unreachable!() };
        let role = format!("kiln_rows_{}", uuid::Uuid::new_v4().simple());
        let mut owner = postgres::Client::connect(url, postgres::NoTls).unwrap();
        owner
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC;
                 GRANT USAGE ON SCHEMA public TO {role};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
                 GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};"
            ))
            .unwrap();
        let as_role = crate::config::DatabaseUrl::Postgres(url.replacen("kiln@", &format!("{role}@"), 1));
        let opened = Store::open(&as_role).map(|store| store.replicas().map(|r| r.len()));
        let created =
            postgres::Client::connect(&url.replacen("kiln@", &format!("{role}@"), 1), postgres::NoTls)
                .unwrap()
                .batch_execute("CREATE TABLE t (x INT)");
        owner
            .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
            .unwrap_or_else(|e| eprintln!("{e}"));
        assert!(created.is_err(), "the role may not create tables");
        assert_eq!(opened.unwrap().unwrap(), 0, "and still opens and reads the current database");
    }
}
