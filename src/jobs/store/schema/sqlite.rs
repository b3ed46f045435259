//! SQLite's steps of the schema. The first is the schema as it grew before versions were kept;
//! the later ones add only what is missing, so they also run cleanly on a file that has their
//! changes already (its `schema_version` lost, or a copy restored beside a newer one).

use std::path::Path;

use super::REPLICAS;
use crate::jobs::store::Result;
use crate::jobs::store::sql::{Sql, args};

/// Creates the tables a new database lacks, adds the columns an older one lacks and rewrites its
/// absolute checkpoint paths.
pub(super) fn v1(tx: &mut dyn Sql) -> Result<()> {
    tx.batch(V1)?;
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

pub(super) fn v2(tx: &mut dyn Sql) -> Result<()> {
    add_missing_column(tx, "jobs", "dataset_id", "TEXT")?;
    tx.batch(V2)
}

pub(super) fn v3(tx: &mut dyn Sql) -> Result<()> {
    tx.batch(REPLICAS)?;
    add_missing_column(tx, "jobs", "replica", "TEXT")
}

pub(super) fn v4(tx: &mut dyn Sql) -> Result<()> {
    add_missing_column(tx, "jobs", "claim", "INTEGER")?;
    add_missing_column(tx, "jobs", "wants", "TEXT")?;
    add_missing_column(tx, "jobs", "cancel_requested", "INTEGER NOT NULL DEFAULT 0")?;
    tx.batch(&super::claims("INTEGER PRIMARY KEY AUTOINCREMENT"))?;
    super::fill_wants(tx)
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

const V2: &str = "
UPDATE jobs SET dataset_id = json_extract(spec, '$.data.dataset_id')
 WHERE json_extract(spec, '$.data.dataset') = 'uploaded';
CREATE INDEX IF NOT EXISTS jobs_dataset ON jobs (dataset_id) WHERE dataset_id IS NOT NULL;
";

/// SQLite's tables as they were when versions began to be kept.
pub(super) const V1: &str = "
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
