//! Files kiln has let go of but may not have removed yet: a deleted job's directory, a deleted
//! data set's text, a dropped checkpoint's directory, each as a path relative to the data dir.
//! The row is written in the same transaction as the deletion it follows, and cleared once the
//! files are gone; the start-up sweep removes what a crash left listed. Nothing else is ever
//! removed for being unknown to the database.

use super::sql::{Sql, args};
use super::{Result, Store};

/// Records `path` as to be removed, inside a caller's transaction.
pub(super) fn record(tx: &mut dyn Sql, path: &str) -> Result<()> {
    tx.execute("INSERT INTO removals (path) VALUES ($1) ON CONFLICT DO NOTHING", args![path])?;
    Ok(())
}

/// Forgets that `path` is to be removed (it is gone, or in use again), inside a caller's
/// transaction.
pub(super) fn forget(tx: &mut dyn Sql, path: &str) -> Result<()> {
    tx.execute("DELETE FROM removals WHERE path = $1", args![path])?;
    Ok(())
}

impl Store {
    /// Every path recorded as to be removed, relative to the data dir.
    pub fn removals(&self) -> Result<Vec<String>> {
        let rows = self.read(|db| db.query("SELECT path FROM removals ORDER BY path", &[]))?;
        rows.iter().map(|row| row.get(0)).collect()
    }

    /// Records `path` (relative to the data dir) as to be removed: a file about to be put in place
    /// and indexed, which a crash between the two would leave unindexed.
    pub fn record_removal(&self, path: &str) -> Result<()> {
        self.read(|db| record(db, path))
    }

    /// Records that `path` (relative to the data dir) is gone.
    pub fn removed(&self, path: &str) -> Result<()> {
        self.read(|db| forget(db, path))
    }
}
