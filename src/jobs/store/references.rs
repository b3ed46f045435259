//! What a job's definition refers to, checked in the transaction that inserts the job: an
//! uploaded data set it trains on must still be indexed. Validation saw the data set's file; a
//! delete may have come between, and under the store's one connection lock the insert and the
//! delete cannot interleave, so the check here is the last word.

use rusqlite::OptionalExtension;

use super::{Result, StoreError};

/// Refuses, inside the transaction that inserts a job with definition `spec` (JSON), a job on
/// an uploaded data set whose row is gone: the data set was deleted between the job's
/// validation and this insert. Under the store's one connection lock, as
/// [`super::Store::delete_dataset`] runs, so the two cannot interleave.
pub(super) fn refuse_gone_dataset(tx: &rusqlite::Transaction<'_>, spec: &str) -> Result<()> {
    let gone: Option<String> = tx
        .query_row(
            "SELECT json_extract(?1, '$.data.dataset_id') WHERE json_extract(?1, '$.data.dataset') = 'uploaded'
               AND NOT EXISTS (SELECT 1 FROM datasets WHERE id = json_extract(?1, '$.data.dataset_id'))",
            [spec],
            |r| r.get(0),
        )
        .optional()?;
    match gone {
        Some(id) => Err(StoreError::DatasetGone(id)),
        None => Ok(()),
    }
}
