//! The database's tables, the columns added to them since the first data dirs were made, and the
//! rows rewritten since: checkpoint directories recorded as absolute paths become relative to the
//! data dir (`jobs/<job>/checkpoints/step-…`), whatever data dir the old path named.

use std::path::Path;

use rusqlite::{Connection, params};

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

/// Creates the tables a new database lacks, adds the columns an older one lacks and rewrites its
/// absolute checkpoint paths.
pub(super) fn create_or_upgrade(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCHEMA)?;
    // Columns added since the first data dirs were made.
    for (table, column, ty) in [
        ("step_metrics", "grad_norm", "REAL"),
        ("jobs", "first_step_seconds", "REAL"),
        ("jobs", "warnings", "TEXT NOT NULL DEFAULT '[]'"),
        ("checkpoints", "files", "TEXT"),
        ("datasets", "kind", "TEXT NOT NULL DEFAULT 'text'"),
        ("datasets", "images", "TEXT"),
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
    relative_checkpoint_dirs(conn)
}

/// Rewrites every checkpoint directory not yet relative to the data dir (an absolute path, as
/// kiln recorded them once) as `jobs/<job>/checkpoints/<its last component>`: derived from the
/// job and the directory's name alone, so a data dir moved or copied since resolves to its own
/// files.
fn relative_checkpoint_dirs(conn: &Connection) -> Result<()> {
    let mut stmt = conn.prepare("SELECT id, job_id, dir FROM checkpoints WHERE dir NOT LIKE 'jobs/%'")?;
    let rows =
        stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    let rows: Vec<_> = rows.collect::<rusqlite::Result<_>>()?;
    for (id, job, dir) in rows {
        let name = Path::new(&dir).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let relative = format!("jobs/{job}/checkpoints/{name}");
        conn.execute("UPDATE checkpoints SET dir = ?2 WHERE id = ?1", params![id, relative])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_checkpoint_dirs_become_relative_to_the_data_dir() {
        let conn = Connection::open_in_memory().unwrap();
        create_or_upgrade(&conn).unwrap();
        let job = "0b7c2a61-3f7e-4c3b-9a55-2f2d1f1b6c11";
        conn.execute(
            "INSERT INTO jobs (id, status, spec, parameters, epochs, created_at) VALUES (?1, 'succeeded', '{}', 1, 1, '')",
            [job],
        )
        .unwrap();
        for dir in [
            format!("/srv/old/data/jobs/{job}/checkpoints/step-0000000004"),
            format!("jobs/{job}/checkpoints/step-0000000008"),
        ] {
            conn.execute(
                "INSERT INTO checkpoints (job_id, epoch, step, bytes, sha256, dir, created_at) VALUES (?1, 1, 4, 1, '', ?2, '')",
                params![job, dir],
            )
            .unwrap();
        }
        create_or_upgrade(&conn).unwrap();
        let mut stmt = conn.prepare("SELECT dir FROM checkpoints ORDER BY id").unwrap();
        let dirs: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(|d| d.unwrap()).collect();
        assert_eq!(
            dirs,
            [
                format!("jobs/{job}/checkpoints/step-0000000004"),
                format!("jobs/{job}/checkpoints/step-0000000008")
            ]
        );
    }
}
