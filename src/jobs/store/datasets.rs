//! The index of uploaded data sets (their kind, size, hash, label and an image set's classes and
//! shape; the text or images themselves are a file, see
//! [`crate::jobs::datasets`]), their totals (the upload quota starts from them), and which active
//! jobs read one.

use super::sql::{Row, args};
use super::{Result, Store, StoreError, removals};
use crate::jobs::datasets::{Dataset, DatasetId, DatasetKind};
use crate::jobs::{JobId, JobStatus};

/// What [`Store::delete_dataset`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetDeletion {
    /// The row is gone; the caller removes the file, of this size.
    Deleted {
        bytes: u64,
    },
    NotFound,
    /// Kept: this job, queued or running, reads the data set (the oldest such job).
    InUse(JobId, JobStatus),
}

const DATASET_COLUMNS: &str = "id, name, bytes, sha256, chars, created_at, kind, images";

/// The queued or running jobs that read uploaded data set `$1`, oldest first, with their status.
/// Finished jobs do not count: they never read their data again.
const ACTIVE_JOBS_READING: &str =
    "SELECT id, status FROM jobs WHERE dataset_id = $1 AND status IN ('queued', 'running') ORDER BY seq";

/// Reads the [`DATASET_COLUMNS`] of `row`.
fn dataset(row: &Row) -> Result<Dataset> {
    let (id, kind) = (row.get::<String>(0)?, row.get::<String>(6)?);
    let kind =
        DatasetKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("data set kind {kind:?}")))?;
    let images = row.get::<Option<String>>(7)?.map(|json| serde_json::from_str(&json)).transpose();
    let images = images.map_err(|e| StoreError::Corrupt(format!("data set images: {e}")))?;
    Ok(Dataset {
        id: DatasetId::parse_str(&id).map_err(|_| StoreError::Corrupt(format!("data set id {id:?}")))?,
        name: row.get(1)?,
        kind,
        bytes: row.get(2)?,
        sha256: row.get(3)?,
        chars: (kind == DatasetKind::Text).then(|| row.get(4)).transpose()?,
        images,
        created_at: row.get(5)?,
    })
}

/// Decodes an [`ACTIVE_JOBS_READING`] row.
fn active_job(row: &Row) -> Result<(JobId, JobStatus)> {
    Ok((row.get(0)?, row.get(1)?))
}

impl Store {
    /// Indexes an uploaded data set whose `file` (relative to the data dir) is already in place,
    /// and forgets that the file was to be removed, in one transaction.
    pub fn insert_dataset(&self, dataset: &Dataset, file: &str) -> Result<()> {
        let images = dataset.images.as_ref().map(serde_json::to_string).transpose()?;
        self.transaction(|tx| {
            tx.execute(
                "INSERT INTO datasets (id, name, bytes, sha256, chars, created_at, kind, images)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                args![
                    dataset.id,
                    dataset.name.as_deref(),
                    dataset.bytes,
                    dataset.sha256.as_str(),
                    dataset.chars.unwrap_or(0),
                    dataset.created_at.as_str(),
                    dataset.kind.as_str(),
                    images.as_deref(),
                ],
            )?;
            removals::forget(tx, file)
        })
    }

    /// The uploaded data set `id`.
    pub fn dataset(&self, id: DatasetId) -> Result<Option<Dataset>> {
        self.read(|db| {
            let sql = format!("SELECT {DATASET_COLUMNS} FROM datasets WHERE id = $1");
            db.query_opt(&sql, args![id])?.as_ref().map(dataset).transpose()
        })
    }

    /// Every uploaded data set, newest first.
    pub fn datasets(&self) -> Result<Vec<Dataset>> {
        let sql = format!("SELECT {DATASET_COLUMNS} FROM datasets ORDER BY seq DESC");
        self.read(|db| db.query(&sql, &[]))?.iter().map(dataset).collect()
    }

    /// Removes the row of data set `id` unless a queued or running job reads it, and records its
    /// `file` (relative to the data dir) as to be removed in the same transaction.
    ///
    /// The row is locked first, then the readers looked for: a job insert in flight
    /// ([`super::references`]) holds a share lock on the row until it commits, so it either
    /// commits first (and is found here) or waits for this delete (and then finds the row gone
    /// and refuses the job). No job is ever queued on a data set that is gone.
    pub fn delete_dataset(&self, id: DatasetId, file: &str) -> Result<DatasetDeletion> {
        self.transaction(|tx| {
            let lock = tx.dialect().lock_rows(false);
            let sql = format!("SELECT bytes FROM datasets WHERE id = $1{lock}");
            let Some(row) = tx.query_opt(&sql, args![id])? else {
                return Ok(DatasetDeletion::NotFound);
            };
            let bytes = row.get::<u64>(0)?;
            if let Some(reader) = tx.query_opt(&format!("{ACTIVE_JOBS_READING} LIMIT 1"), args![id])? {
                let (job, status) = active_job(&reader)?;
                return Ok(DatasetDeletion::InUse(job, status));
            }
            tx.execute("DELETE FROM datasets WHERE id = $1", args![id])?;
            removals::record(tx, file)?;
            Ok(DatasetDeletion::Deleted { bytes })
        })
    }

    /// How many uploaded data sets are stored, and their bytes together.
    pub fn upload_totals(&self) -> Result<(usize, u64)> {
        let row = self.read(|db| {
            db.query_one("SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM datasets", &[])
        })?;
        Ok((row.get::<u64>(0)? as usize, row.get(1)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::store::testing::databases;

    fn dataset(name: &str) -> Dataset {
        Dataset {
            id: DatasetId::new_v4(),
            name: Some(name.to_string()),
            bytes: 5,
            kind: DatasetKind::Text,
            sha256: "00".repeat(32),
            chars: Some(5),
            images: None,
            created_at: crate::jobs::now(),
        }
    }

    /// Inserts a bare job row reading `reads` (no valid job definition is needed: the query reads
    /// only `status` and `dataset_id`).
    fn job(store: &Store, status: JobStatus, reads: Option<DatasetId>) -> JobId {
        let id = JobId::new_v4();
        store
            .read(|db| {
                db.execute(
                    "INSERT INTO jobs (id, status, spec, parameters, epochs, created_at, dataset_id) \
                     VALUES ($1, $2, '{}', 1, 1, $3, $4)",
                    args![id, status.as_str(), crate::jobs::now(), reads],
                )
            })
            .unwrap();
        id
    }

    /// The queued or running jobs that read uploaded data set `id`, oldest first: the readers
    /// that keep it from being deleted.
    fn readers(store: &Store, id: DatasetId) -> Vec<(JobId, JobStatus)> {
        let rows = store.read(|db| db.query(ACTIVE_JOBS_READING, args![id])).unwrap();
        rows.iter().map(|row| active_job(row).unwrap()).collect()
    }

    #[test]
    fn a_dataset_read_by_a_queued_or_running_job_is_kept() {
        for database in databases() {
            let store = database.open();
            let (used, other) = (dataset("corpus"), dataset("other"));
            store.insert_dataset(&used, "datasets/uploads/used.txt").unwrap();
            store.insert_dataset(&other, "datasets/uploads/other.txt").unwrap();

            job(&store, JobStatus::Succeeded, Some(used.id));
            job(&store, JobStatus::Failed, Some(used.id));
            job(&store, JobStatus::Queued, None);
            job(&store, JobStatus::Queued, Some(other.id));
            assert!(readers(&store, used.id).is_empty(), "{}", database.name);

            let queued = job(&store, JobStatus::Queued, Some(used.id));
            let running = job(&store, JobStatus::Running, Some(used.id));
            assert_eq!(
                readers(&store, used.id),
                vec![(queued, JobStatus::Queued), (running, JobStatus::Running)]
            );
            assert_eq!(
                store.delete_dataset(used.id, "datasets/uploads/used.txt").unwrap(),
                DatasetDeletion::InUse(queued, JobStatus::Queued)
            );
            assert_eq!(store.dataset(used.id).unwrap().as_ref(), Some(&used));

            store.finish_job(queued, JobStatus::Cancelled, None).unwrap();
            assert_eq!(
                store.delete_dataset(used.id, "datasets/uploads/used.txt").unwrap(),
                DatasetDeletion::InUse(running, JobStatus::Running)
            );
            store.finish_job(running, JobStatus::Succeeded, None).unwrap();
            assert_eq!(store.upload_totals().unwrap(), (2, 10));
            assert_eq!(
                store.delete_dataset(used.id, "datasets/uploads/used.txt").unwrap(),
                DatasetDeletion::Deleted { bytes: 5 }
            );
            assert_eq!(store.removals().unwrap(), ["datasets/uploads/used.txt"], "recorded with the delete");
            assert_eq!(store.upload_totals().unwrap(), (1, 5));
            assert_eq!(store.dataset(used.id).unwrap(), None);
            assert_eq!(
                store.delete_dataset(used.id, "datasets/uploads/used.txt").unwrap(),
                DatasetDeletion::NotFound
            );
            assert_eq!(store.datasets().unwrap(), vec![other], "{}", database.name);
        }
    }

    #[test]
    fn datasets_are_listed_newest_first() {
        for database in databases() {
            let store = database.open();
            let all: Vec<Dataset> = ["a", "b", "c"].map(dataset).into();
            for d in &all {
                store.insert_dataset(d, "datasets/uploads/d.txt").unwrap();
            }
            let names: Vec<_> = store.datasets().unwrap().into_iter().map(|d| d.name.unwrap()).collect();
            assert_eq!(names, ["c", "b", "a"], "{}", database.name);
        }
    }
}
