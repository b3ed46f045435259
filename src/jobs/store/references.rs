//! What a job's definition refers to, checked in the transaction that inserts the job: an
//! uploaded data set it trains on must still be indexed. Validation saw the data set's file; a
//! delete may have come between, on this replica or another, so the check here is the last word.

use uuid::Uuid;

use super::sql::{Sql, args};
use super::{Result, StoreError};

/// Refuses, inside the transaction that inserts a job reading uploaded data set `dataset`, a job
/// whose data set's row is gone: it was deleted between the job's validation and this insert.
///
/// The row is read with a share lock: a [`super::Store::delete_dataset`] in flight (which locks
/// the row before it looks for jobs reading it) makes this wait and then find the row gone, and
/// one that starts after this waits for the job's insert to commit and then finds the job. On
/// SQLite a write transaction holds the whole file, so the two cannot interleave at all.
pub(super) fn refuse_gone_dataset(tx: &mut dyn Sql, dataset: Uuid) -> Result<()> {
    let lock = tx.dialect().lock_rows(true);
    let sql = format!("SELECT 1 FROM datasets WHERE id = $1{lock}");
    match tx.query_opt(&sql, args![dataset])? {
        Some(_) => Ok(()),
        None => Err(StoreError::DatasetGone(dataset.to_string())),
    }
}
