//! Uploaded text corpora: the [`Dataset`] record, the checks an upload passes and the operations
//! the HTTP layer calls on them, as methods of [`Jobs`] (whose store also knows which jobs read
//! a data set).
//!
//! An upload's label is checked once into a [`ValidUpload`] (at most 200 characters) before its
//! text is read; [`Jobs::begin_upload`] then reserves its place in the quotas
//! ([`super::quota`]) and the text streams to disk as it arrives ([`Upload`]): written to a
//! temporary file beside [`crate::Config::uploaded_dataset_path`] in batches on blocking
//! threads, checked as UTF-8, counted and hashed on the way, never held whole in memory. Once
//! it is complete and not empty it is fsynced, renamed into place, the directory fsynced (see
//! [`super::uploads`]), and only then indexed in the store: a row always has its file, and a
//! file whose row could not be written is removed (at the next start, if a crash came between:
//! the store records the file as to be removed before the rename, and forgets it with the index).
//! An upload refused, failed or abandoned by its client leaves no file. A data set that a queued
//! or running job reads cannot be deleted. Training code reads the text from that path.

use serde::Serialize;
use tokio_util::bytes::Bytes;
use utoipa::ToSchema;
use uuid::Uuid;

use super::quota::Reservation;
use super::store::DatasetDeletion;
use super::uploads::{TempUpload, remove_if_present};
use super::{JobError, Jobs};
use crate::definition::{FieldError, MAX_NAME_CHARS};

/// Identifies an uploaded data set.
pub type DatasetId = Uuid;

/// An uploaded text corpus as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Dataset {
    #[schema(value_type = String, format = Uuid)]
    pub id: DatasetId,
    /// The label given at upload (`?name=`), trimmed.
    pub name: Option<String>,
    /// Size of the text in bytes, exactly as uploaded.
    pub bytes: u64,
    /// SHA-256 of those bytes, lowercase hex.
    pub sha256: String,
    /// Unicode scalar values (Rust `char`s) in the text.
    pub chars: u64,
    /// RFC 3339 time of the upload.
    pub created_at: String,
}

/// The part of an upload checked before its text is read: nothing downstream checks it again.
/// The text is checked as it streams in (see [`Upload`]).
#[derive(Debug)]
pub struct ValidUpload {
    /// Trimmed; `None` when absent or blank.
    pub name: Option<String>,
}

impl ValidUpload {
    /// Checks the label; its problem names the field `name`.
    pub fn new(name: Option<&str>) -> Result<Self, Vec<FieldError>> {
        let name = name.map(str::trim).filter(|n| !n.is_empty()).map(str::to_string);
        if name.as_ref().is_some_and(|n| n.chars().count() > MAX_NAME_CHARS) {
            let message = format!("must be at most {MAX_NAME_CHARS} characters");
            return Err(vec![FieldError { field: "name".to_string(), message }]);
        }
        Ok(Self { name })
    }
}

/// Chunks are handed to a blocking thread once this many bytes are waiting.
const WRITE_BATCH_BYTES: usize = 256 << 10;

/// An upload in progress: its text is written to disk as it arrives ([`Upload::write`]) and
/// stored by [`Upload::finish`]. Dropped before that — refused, failed, or its client gone — it
/// removes its temporary file and gives back its share of the quota.
pub struct Upload {
    jobs: Jobs,
    id: DatasetId,
    name: Option<String>,
    /// `None` once given back or committed.
    reservation: Option<Reservation>,
    /// `None` only while a blocking thread writes to it, or once finished.
    file: Option<TempUpload>,
    /// Received chunks not yet written, at most about [`WRITE_BATCH_BYTES`].
    waiting: Vec<Bytes>,
    waiting_bytes: usize,
    received: u64,
}

impl Upload {
    /// Takes the next chunk of the text; refuses one past a quota. Chunks are written in
    /// batches, each checked as UTF-8 then, so an invalid one may be refused a batch later.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), JobError> {
        self.received += chunk.len() as u64;
        self.reservation
            .as_mut()
            .expect("an upload in progress holds its reservation")
            .grow_to(self.received)?;
        self.waiting_bytes += chunk.len();
        self.waiting.push(chunk);
        if self.waiting_bytes >= WRITE_BATCH_BYTES { self.flush().await } else { Ok(()) }
    }

    /// Writes the waiting chunks on a blocking thread.
    async fn flush(&mut self) -> Result<(), JobError> {
        let chunks = std::mem::take(&mut self.waiting);
        self.waiting_bytes = 0;
        let mut file = self.file.take().expect("an upload in progress has its file");
        let file = blocking(move || {
            chunks.iter().try_for_each(|chunk| file.append(chunk))?;
            Ok(file)
        })
        .await?;
        self.file = Some(file);
        Ok(())
    }

    /// Ends the text: puts the file in place, indexes the data set and counts it as stored —
    /// all on one blocking thread, so that a client gone meanwhile cannot stop it halfway.
    pub async fn finish(mut self) -> Result<Dataset, JobError> {
        self.flush().await?;
        let file = self.file.take().expect("an upload in progress has its file");
        let reservation = self.reservation.take().expect("an upload in progress holds its reservation");
        let (jobs, id, name) = (self.jobs.clone(), self.id, self.name.take());
        blocking(move || {
            let store = &jobs.shared.store;
            // To be removed until indexed: a crash between the rename and the index leaves the
            // file to the start-up sweep, not to the orphan check.
            let path = super::datadir::upload_file(id);
            store.record_removal(&path)?;
            let committed = file.commit(|written| {
                let dataset = Dataset {
                    id,
                    name,
                    bytes: written.bytes,
                    sha256: written.sha256,
                    chars: written.chars,
                    created_at: super::now(),
                };
                store.insert_dataset(&dataset, &path)?;
                Ok(dataset)
            });
            let dataset = match committed {
                Ok(dataset) => dataset,
                Err(e) => {
                    // The file is gone already (see `TempUpload`); the start-up sweep clears a
                    // record left here.
                    if let Err(cleared) = store.removed(&path) {
                        tracing::warn!(%path, error = %cleared, "could not clear an upload's removal record");
                    }
                    return Err(e);
                }
            };
            reservation.commit(dataset.bytes);
            Ok(dataset)
        })
        .await
    }

    /// Gives up the upload: gives back its share of the quota, then removes its temporary file,
    /// which is gone when this returns. (Merely dropping it removes the file a little later.)
    pub async fn abandon(mut self) {
        let file = self.file.take();
        drop(self);
        let _ = blocking(move || {
            drop(file);
            Ok(())
        })
        .await;
    }
}

impl Drop for Upload {
    /// Gives back the reservation, then removes the temporary file off the async runtime.
    fn drop(&mut self) {
        drop(self.reservation.take());
        if let (Some(file), Ok(runtime)) = (self.file.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn_blocking(move || drop(file));
        }
    }
}

/// Runs file and database work on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, JobError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(e) => Err(JobError::Io(std::io::Error::other(format!("blocking task: {e}")))),
    }
}

impl Jobs {
    /// Starts an upload labelled as `upload` says: reserves its place in the quotas, with the
    /// `declared` length if known (refusing it at once if that is too much), and creates its
    /// temporary file.
    pub async fn begin_upload(&self, upload: ValidUpload, declared: Option<u64>) -> Result<Upload, JobError> {
        super::disk::check_floor(self.config())?;
        let reservation = self.shared.uploads.reserve(declared.unwrap_or(0))?;
        let id = DatasetId::new_v4();
        let path = self.config().uploaded_dataset_path(id);
        let file = blocking(move || TempUpload::create(path)).await?;
        Ok(Upload {
            jobs: self.clone(),
            id,
            name: upload.name,
            reservation: Some(reservation),
            file: Some(file),
            waiting: Vec::new(),
            waiting_bytes: 0,
            received: 0,
        })
    }

    /// Every uploaded data set, newest first.
    pub fn datasets(&self) -> Result<Vec<Dataset>, JobError> {
        Ok(self.shared.store.datasets()?)
    }

    /// One uploaded data set.
    pub fn dataset(&self, id: DatasetId) -> Result<Dataset, JobError> {
        self.shared.store.dataset(id)?.ok_or_else(|| not_found(id))
    }

    /// Removes a data set and its file, unless a queued or running job reads it.
    pub fn delete_dataset(&self, id: DatasetId) -> Result<(), JobError> {
        let file = super::datadir::upload_file(id);
        match self.shared.store.delete_dataset(id, &file)? {
            DatasetDeletion::NotFound => Err(not_found(id)),
            DatasetDeletion::InUse(job, status) => Err(JobError::Conflict(format!(
                "data set {id} is read by job {job}, which is {}: cancel the job or wait for it to \
                 finish before deleting the data set",
                status.as_str()
            ))),
            DatasetDeletion::Deleted { bytes } => {
                self.shared.uploads.release_stored(bytes);
                remove_if_present(&self.config().uploaded_dataset_path(id))?;
                Ok(self.shared.store.removed(&file)?)
            }
        }
    }
}

fn not_found(id: DatasetId) -> JobError {
    JobError::NotFound(format!("data set {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::jobs::shared::Shared;

    fn files(jobs: &Jobs) -> usize {
        std::fs::read_dir(jobs.config().uploads_dir()).unwrap().count()
    }

    #[tokio::test]
    async fn an_upload_holds_its_place_until_stored_deleted_or_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::with_data_dir(dir.path());
        config.max_uploads = 1;
        let jobs = Jobs::without_workers(Shared::open(config).unwrap());
        let unnamed = || ValidUpload::new(None).unwrap();

        let mut upload = jobs.begin_upload(unnamed(), None).await.unwrap();
        upload.write(Bytes::from_static(b"half")).await.unwrap();
        assert!(matches!(jobs.begin_upload(unnamed(), None).await, Err(JobError::QuotaExceeded(_))));
        assert_eq!(files(&jobs), 1);
        upload.abandon().await;
        assert_eq!(files(&jobs), 0, "abandoned: its temporary file is gone");

        let mut upload = jobs.begin_upload(ValidUpload::new(Some(" c ")).unwrap(), Some(3)).await.unwrap();
        let e = "é".as_bytes();
        for chunk in [&b"a"[..], &e[..1], &e[1..]] {
            upload.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        let dataset = upload.finish().await.unwrap();
        assert_eq!((dataset.name.as_deref(), dataset.bytes, dataset.chars), (Some("c"), 3, 2));
        assert_eq!(std::fs::read(jobs.config().uploaded_dataset_path(dataset.id)).unwrap(), "aé".as_bytes());
        assert_eq!(jobs.dataset(dataset.id).unwrap(), dataset);
        assert!(matches!(jobs.begin_upload(unnamed(), None).await, Err(JobError::QuotaExceeded(_))));

        jobs.delete_dataset(dataset.id).unwrap();
        assert_eq!(files(&jobs), 0);
        jobs.begin_upload(unnamed(), None).await.expect("a deleted data set gives back its place");
    }

    #[test]
    fn a_label_is_trimmed_blank_is_none_and_long_is_refused() {
        assert_eq!(ValidUpload::new(Some("  corpus \n")).unwrap().name.as_deref(), Some("corpus"));
        assert_eq!(ValidUpload::new(Some("   ")).unwrap().name, None);
        assert_eq!(ValidUpload::new(None).unwrap().name, None);
        let longest = "é".repeat(MAX_NAME_CHARS);
        assert_eq!(ValidUpload::new(Some(&longest)).unwrap().name, Some(longest.clone()));
        let errors = ValidUpload::new(Some(&format!("{longest}n"))).unwrap_err();
        let errors: Vec<_> = errors.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(errors, [format!("name must be at most {MAX_NAME_CHARS} characters")]);
    }
}
