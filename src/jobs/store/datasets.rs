//! The index of uploaded data sets (their kind, size, hash, label and an image set's classes and
//! shape; the text or images themselves are a file, see
//! [`crate::jobs::datasets`]), their totals (the upload quota starts from them), and which active
//! jobs read one.

use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

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

/// The queued or running jobs that read uploaded data set `?1`, oldest first, with their status
/// (`?2`, `?3`: the names of queued and running). A job's validated spec is stored as JSON in
/// `jobs.spec`; a job on an upload has `data.dataset = "uploaded"` and the data set's id, as a
/// hyphenated lowercase UUID, in `data.dataset_id`. Finished jobs do not count: they never read
/// their data again.
const ACTIVE_JOBS_READING: &str = "SELECT id, status FROM jobs
     WHERE status IN (?2, ?3)
       AND json_extract(spec, '$.data.dataset') = 'uploaded'
       AND json_extract(spec, '$.data.dataset_id') = ?1
     ORDER BY seq";

/// A `datasets` row before its id is decoded (a row closure cannot return decoding errors).
struct DatasetRow {
    id: String,
    name: Option<String>,
    bytes: i64,
    sha256: String,
    chars: i64,
    created_at: String,
    kind: String,
    /// An image set's info, as JSON.
    images: Option<String>,
}

impl DatasetRow {
    /// Reads the [`DATASET_COLUMNS`] of `row`.
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            name: row.get(1)?,
            bytes: row.get(2)?,
            sha256: row.get(3)?,
            chars: row.get(4)?,
            created_at: row.get(5)?,
            kind: row.get(6)?,
            images: row.get(7)?,
        })
    }

    fn into_dataset(self) -> Result<Dataset> {
        let kind = DatasetKind::parse(&self.kind)
            .ok_or_else(|| StoreError::Corrupt(format!("data set kind {:?}", self.kind)))?;
        let images = self.images.map(|json| serde_json::from_str(&json)).transpose();
        let images = images.map_err(|e| StoreError::Corrupt(format!("data set images: {e}")))?;
        Ok(Dataset {
            id: DatasetId::parse_str(&self.id)
                .map_err(|_| StoreError::Corrupt(format!("data set id {:?}", self.id)))?,
            name: self.name,
            kind,
            bytes: self.bytes as u64,
            sha256: self.sha256,
            chars: (kind == DatasetKind::Text).then_some(self.chars as u64),
            images,
            created_at: self.created_at,
        })
    }
}

/// Decodes an [`ACTIVE_JOBS_READING`] row.
fn active_job(id: String, status: String) -> Result<(JobId, JobStatus)> {
    let job = JobId::parse_str(&id).map_err(|_| StoreError::Corrupt(format!("job id {id:?}")))?;
    let status = JobStatus::parse(&status).ok_or(StoreError::Corrupt(format!("status {status:?}")))?;
    Ok((job, status))
}

fn active_params(id: DatasetId) -> [String; 3] {
    [id.to_string(), JobStatus::Queued.as_str().to_string(), JobStatus::Running.as_str().to_string()]
}

impl Store {
    /// Indexes an uploaded data set whose text `file` (relative to the data dir) is already in
    /// place, and forgets that the file was to be removed, in one transaction.
    pub fn insert_dataset(&self, dataset: &Dataset, file: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT INTO datasets (id, name, bytes, sha256, chars, created_at, kind, images)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                dataset.id.to_string(),
                dataset.name,
                dataset.bytes as i64,
                dataset.sha256,
                dataset.chars.unwrap_or(0) as i64,
                dataset.created_at,
                dataset.kind.as_str(),
                dataset
                    .images
                    .as_ref()
                    .map(|info| serde_json::to_string(info).expect("image info serializes")),
            ],
        )?;
        removals::forget(&tx, file)?;
        tx.commit()?;
        Ok(())
    }

    /// The uploaded data set `id`.
    pub fn dataset(&self, id: DatasetId) -> Result<Option<Dataset>> {
        let row = self
            .db()
            .query_row(
                &format!("SELECT {DATASET_COLUMNS} FROM datasets WHERE id = ?1"),
                [id.to_string()],
                DatasetRow::read,
            )
            .optional()?;
        row.map(DatasetRow::into_dataset).transpose()
    }

    /// Every uploaded data set, newest first.
    pub fn datasets(&self) -> Result<Vec<Dataset>> {
        let db = self.db();
        let mut stmt = db.prepare(&format!("SELECT {DATASET_COLUMNS} FROM datasets ORDER BY seq DESC"))?;
        let rows = stmt.query_map([], DatasetRow::read)?;
        rows.map(|row| row?.into_dataset()).collect()
    }

    /// Removes the row of data set `id` unless a queued or running job reads it, and records its
    /// `file` (relative to the data dir) as to be removed in the same transaction.
    ///
    /// The check and the delete run in one transaction under the store's one connection lock,
    /// which [`Store::insert_job`] takes too: no job can be inserted between them. A job
    /// validated against this data set before the delete and inserted after it is refused by
    /// its insert ([`super::references`]), so no job is ever queued on a data set that is gone.
    pub fn delete_dataset(&self, id: DatasetId, file: &str) -> Result<DatasetDeletion> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let reader = tx
            .query_row(&format!("{ACTIVE_JOBS_READING} LIMIT 1"), active_params(id), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?;
        if let Some((job, status)) = reader {
            let (job, status) = active_job(job, status)?;
            return Ok(DatasetDeletion::InUse(job, status));
        }
        let deleted = tx
            .query_row("DELETE FROM datasets WHERE id = ?1 RETURNING bytes", [id.to_string()], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?;
        if deleted.is_some() {
            removals::record(&tx, file)?;
        }
        tx.commit()?;
        Ok(match deleted {
            None => DatasetDeletion::NotFound,
            Some(bytes) => DatasetDeletion::Deleted { bytes: bytes as u64 },
        })
    }

    /// How many uploaded data sets are stored, and their bytes together.
    pub fn upload_totals(&self) -> Result<(usize, u64)> {
        let (count, bytes) =
            self.db().query_row("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM datasets", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?;
        Ok((count as usize, bytes as u64))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

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

    /// Inserts a bare job row with `spec`: the query reads only `status` and `spec`, so no valid
    /// job definition is needed.
    fn job(store: &Store, status: JobStatus, spec: Value) -> JobId {
        let id = JobId::new_v4();
        store
            .db()
            .execute(
                "INSERT INTO jobs (id, status, spec, parameters, epochs, created_at) VALUES (?1, ?2, ?3, 1, 1, ?4)",
                params![id.to_string(), status.as_str(), spec.to_string(), crate::jobs::now()],
            )
            .unwrap();
        id
    }

    /// The queued or running jobs that read uploaded data set `id`, oldest first: the readers
    /// that keep it from being deleted.
    fn readers(store: &Store, id: DatasetId) -> Vec<(JobId, JobStatus)> {
        let db = store.db();
        let mut stmt = db.prepare(ACTIVE_JOBS_READING).unwrap();
        let rows = stmt
            .query_map(active_params(id), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .unwrap();
        rows.map(|row| {
            let (id, status) = row.unwrap();
            active_job(id, status).unwrap()
        })
        .collect()
    }

    fn on_upload(id: DatasetId) -> Value {
        json!({"model": {"kind": "rnn"}, "data": {"dataset": "uploaded", "dataset_id": id.to_string()}})
    }

    #[test]
    fn a_dataset_read_by_a_queued_or_running_job_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kiln.sqlite3")).unwrap();
        let (used, other) = (dataset("corpus"), dataset("other"));
        store.insert_dataset(&used, "datasets/uploads/used.txt").unwrap();
        store.insert_dataset(&other, "datasets/uploads/other.txt").unwrap();

        job(&store, JobStatus::Succeeded, on_upload(used.id));
        job(&store, JobStatus::Failed, on_upload(used.id));
        job(&store, JobStatus::Queued, json!({"data": {"dataset": "synthetic_images"}}));
        job(&store, JobStatus::Queued, json!({"data": {"dataset": "other", "dataset_id": used.id}}));
        assert!(readers(&store, used.id).is_empty());

        let queued = job(&store, JobStatus::Queued, on_upload(used.id));
        let running = job(&store, JobStatus::Running, on_upload(used.id));
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
        assert_eq!(store.datasets().unwrap(), vec![other]);
    }

    #[test]
    fn datasets_are_listed_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kiln.sqlite3")).unwrap();
        let all: Vec<Dataset> = ["a", "b", "c"].map(dataset).into();
        for d in &all {
            store.insert_dataset(d, "datasets/uploads/d.txt").unwrap();
        }
        let names: Vec<_> = store.datasets().unwrap().into_iter().map(|d| d.name.unwrap()).collect();
        assert_eq!(names, ["c", "b", "a"]);
    }
}
