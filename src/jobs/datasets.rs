//! Uploaded data sets — text corpora and image archives: the [`Dataset`] record, the checks an
//! upload passes and the operations the HTTP layer calls on them, as methods of [`Jobs`] (whose
//! store also knows which jobs read a data set).
//!
//! An upload's label, kind and image options are checked once into a [`ValidUpload`] before its
//! body is read; [`Jobs::begin_upload`] then reserves its place in the quotas
//! ([`super::quota`]) and the text streams to disk as it arrives ([`Upload`]): written to a
//! temporary file beside [`crate::Config::uploaded_dataset_path`] in batches on blocking
//! threads, checked as UTF-8, counted and hashed on the way, never held whole in memory. Once
//! it is complete and not empty it is fsynced, renamed into place, the directory fsynced (see
//! [`super::uploads`]), and only then indexed in the store: a row always has its file, and a
//! file whose row could not be written is removed (at the next start, if a crash came between:
//! the store records the file as to be removed before the rename, and forgets it with the index).
//! An upload refused, failed or abandoned by its client leaves no file. A data set that a queued
//! or running job reads cannot be deleted. Training code reads the text from that path.
//!
//! An image archive streams the same way into a temporary file; once complete it is decoded
//! ([`crate::data::import`]) on a blocking thread, and the decoded images
//! ([`crate::data::uploaded`]) are the file stored, hashed and indexed as a text is. The archive
//! is removed either way; a refused archive (422) leaves nothing.

use serde::{Deserialize, Serialize};
use tokio_util::bytes::Bytes;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::image_uploads::ImageUpload;
use super::quota::Reservation;
use super::store::DatasetDeletion;
use super::uploads::{TempUpload, remove_if_present};
use super::{JobError, Jobs};
use crate::data::uploaded::ImageSetInfo;
use crate::definition::{FieldError, MAX_NAME_CHARS};

/// Identifies an uploaded data set.
pub type DatasetId = Uuid;

/// What an uploaded data set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// A text corpus, for language models.
    Text,
    /// Labelled images, for image classifiers.
    Images,
}

impl DatasetKind {
    /// Its name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Images => "images",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Text, Self::Images].into_iter().find(|kind| kind.as_str() == name)
    }
}

/// An uploaded data set as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Dataset {
    #[schema(value_type = String, format = Uuid)]
    pub id: DatasetId,
    /// The label given at upload (`?name=`), trimmed.
    pub name: Option<String>,
    pub kind: DatasetKind,
    /// Size of the stored file in bytes: a text exactly as uploaded; images decoded (a
    /// safetensors file of `uint8` pixels and `uint16` labels).
    pub bytes: u64,
    /// SHA-256 of those bytes, lowercase hex.
    pub sha256: String,
    /// Text: Unicode scalar values (Rust `char`s) in the text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chars: Option<u64>,
    /// Images: the classes (in label order), channels, side and the train and test counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageSetInfo>,
    /// RFC 3339 time of the upload.
    pub created_at: String,
}

/// The query of `POST /datasets`, as sent: text, so that a wrong value is a 422 naming it; an
/// unknown parameter is refused (a misspelt option is not silently ignored).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RawUpload {
    /// A label shown in listings, at most 200 characters (trimmed).
    pub name: Option<String>,
    /// `text` (a UTF-8 corpus, `text/plain`) or `images` (an archive: a tar, gzipped tar or zip
    /// of class folders `train/<class>/*.png|jpg` and optionally `test/<class>/…`, or of the four
    /// IDX files of the MNIST format). Default: said by the body's media type (an archive type
    /// is images).
    #[param(value_type = Option<DatasetKind>)]
    pub kind: Option<String>,
    /// Images: resize every image to this many pixels square, 8 to 512 (default: keep their
    /// size, which must then be one square size for all).
    #[param(value_type = Option<u32>, minimum = 8, maximum = 512)]
    pub side: Option<String>,
    /// Images: `true` to store one grey channel even when the images are in colour (default
    /// `false`: 3 channels when any image is in colour, else 1).
    #[param(value_type = Option<bool>)]
    pub to_grayscale: Option<String>,
    /// Images without a `test/` split: the share of the training images held out for testing,
    /// chosen by `seed` (default 0.1), above 0 and at most 0.5.
    #[param(value_type = Option<f64>, exclusive_minimum = 0.0, maximum = 0.5)]
    pub test_fraction: Option<String>,
    /// Images: the seed of that choice (default 0).
    #[param(value_type = Option<u64>)]
    pub seed: Option<String>,
}

/// The part of an upload checked before its body is read: nothing downstream checks it again.
/// A text is checked as it streams in, an archive once it is complete (see [`Upload`]).
#[derive(Debug)]
pub struct ValidUpload {
    /// Trimmed; `None` when absent or blank.
    pub name: Option<String>,
    /// `None` for a text.
    pub images: Option<ImageUpload>,
}

impl ValidUpload {
    /// Checks the query; each problem names its field.
    pub fn new(raw: &RawUpload) -> Result<Self, Vec<FieldError>> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(FieldError { field: field.to_string(), message });
        };
        let name = raw.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).map(str::to_string);
        if name.as_ref().is_some_and(|n| n.chars().count() > MAX_NAME_CHARS) {
            problem("name", format!("must be at most {MAX_NAME_CHARS} characters"));
        }
        let kind = raw.kind.as_deref().unwrap_or("text");
        let kind = DatasetKind::parse(kind).unwrap_or_else(|| {
            problem("kind", format!("must be text or images (got {kind:?})"));
            DatasetKind::Text
        });
        let image_fields = [
            ("side", &raw.side),
            ("to_grayscale", &raw.to_grayscale),
            ("test_fraction", &raw.test_fraction),
            ("seed", &raw.seed),
        ];
        if kind == DatasetKind::Text {
            for (field, _) in image_fields.iter().filter(|(_, value)| value.is_some()) {
                problem(field, "is for kind=images only".to_string());
            }
        }
        let images = (kind == DatasetKind::Images).then(|| {
            let query = [&raw.side, &raw.to_grayscale, &raw.test_fraction, &raw.seed].map(|v| v.as_deref());
            ImageUpload::from_query(query, &mut problem)
        });
        if problems.is_empty() { Ok(Self { name, images }) } else { Err(problems) }
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
    /// What to make of an image archive; `None` for a text.
    images: Option<ImageUpload>,
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
        let mut reservation = self.reservation.take().expect("an upload in progress holds its reservation");
        let (jobs, id, name, images) = (self.jobs.clone(), self.id, self.name.take(), self.images.take());
        blocking(move || {
            let (file, info) = match images {
                None => (file, None),
                Some(options) => {
                    // Dropping the archive removes it, decoded or not.
                    let (decoded, info) = jobs.decode_images(id, &file, &options, &mut reservation)?;
                    drop(file);
                    (decoded, Some(info))
                }
            };
            let store = &jobs.shared.store;
            // To be removed until indexed: a crash between the rename and the index leaves the
            // file to the start-up sweep, not to the orphan check.
            let (kind, path) = match info {
                None => (DatasetKind::Text, super::datadir::upload_file(id)),
                Some(_) => (DatasetKind::Images, super::datadir::images_file(id)),
            };
            store.record_removal(&path)?;
            let committed = file.commit(|written| {
                let dataset = Dataset {
                    id,
                    name,
                    kind,
                    bytes: written.bytes,
                    sha256: written.sha256,
                    chars: info.is_none().then_some(written.chars),
                    images: info,
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
        let text = upload.images.is_none();
        // An archive is received beside the file its images become, and never committed.
        let path = match text {
            true => self.config().uploaded_dataset_path(id),
            false => self.config().uploads_dir().join(format!("{id}.archive")),
        };
        let file = blocking(move || TempUpload::create(path, text)).await?;
        Ok(Upload {
            jobs: self.clone(),
            id,
            name: upload.name,
            images: upload.images,
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
        let kind = self.dataset(id)?.kind;
        let (file, full) = match kind {
            DatasetKind::Text => (super::datadir::upload_file(id), self.config().uploaded_dataset_path(id)),
            DatasetKind::Images => (super::datadir::images_file(id), self.config().uploaded_images_path(id)),
        };
        match self.shared.store.delete_dataset(id, &file)? {
            DatasetDeletion::NotFound => Err(not_found(id)),
            DatasetDeletion::InUse(job, status) => Err(JobError::Conflict(format!(
                "data set {id} is read by job {job}, which is {}: cancel the job or wait for it to \
                 finish before deleting the data set",
                status.as_str()
            ))),
            DatasetDeletion::Deleted { bytes } => {
                self.shared.uploads.release_stored(bytes);
                remove_if_present(&full)?;
                Ok(self.shared.store.removed(&file)?)
            }
        }
    }
}

fn not_found(id: DatasetId) -> JobError {
    JobError::NotFound(format!("data set {id}"))
}

#[cfg(test)]
mod tests;
