//! The database's tables, and the columns added to them since the first data dirs were made.

use rusqlite::Connection;

use super::Result;

const SCHEMA: &str = "
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
    created_at TEXT NOT NULL
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
";

/// Creates the tables a new database lacks and adds the columns an older one lacks.
pub(super) fn create_or_upgrade(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCHEMA)?;
    // Columns added since the first data dirs were made.
    for (table, column, ty) in [
        ("step_metrics", "grad_norm", "REAL"),
        ("jobs", "first_step_seconds", "REAL"),
        ("jobs", "warnings", "TEXT NOT NULL DEFAULT '[]'"),
    ] {
        let has: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )?;
        if !has {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
        }
    }
    Ok(())
}
