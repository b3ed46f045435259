//! Files kiln has let go of but may not have removed yet: a deleted job's directory, a deleted
//! data set's text, a dropped checkpoint's directory, each as a path relative to the data dir.
//! The row is written in the same transaction as the deletion it follows, and cleared once the
//! files are gone; the start-up sweep removes what a crash left listed. Nothing else is ever
//! removed for being unknown to the database.

use rusqlite::Connection;

use super::{Result, Store};

/// Records `path` as to be removed, on `db` or inside a caller's transaction.
pub(super) fn record(db: &Connection, path: &str) -> Result<()> {
    db.execute("INSERT OR IGNORE INTO removals (path) VALUES (?1)", [path])?;
    Ok(())
}

/// Forgets that `path` is to be removed (it is gone, or in use again), on `db` or inside a
/// caller's transaction.
pub(super) fn forget(db: &Connection, path: &str) -> Result<()> {
    db.execute("DELETE FROM removals WHERE path = ?1", [path])?;
    Ok(())
}

impl Store {
    /// Every path recorded as to be removed, relative to the data dir.
    pub fn removals(&self) -> Result<Vec<String>> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT path FROM removals ORDER BY path")?;
        let paths = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(paths.collect::<rusqlite::Result<_>>()?)
    }

    /// Records `path` (relative to the data dir) as to be removed: a file about to be put in place
    /// and indexed, which a crash between the two would leave unindexed.
    pub fn record_removal(&self, path: &str) -> Result<()> {
        record(&self.db(), path)
    }

    /// Records that `path` (relative to the data dir) is gone.
    pub fn removed(&self, path: &str) -> Result<()> {
        forget(&self.db(), path)
    }
}
