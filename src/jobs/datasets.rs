//! Uploaded text corpora: the [`Dataset`] record, the checks an upload passes and the operations
//! the HTTP layer calls on them, as methods of [`Jobs`] (whose store also knows which jobs read
//! a data set).
//!
//! An upload is checked once into a [`ValidUpload`] — a label of at most 200 characters and a
//! non-empty body of UTF-8 text — then written to [`crate::Config::uploaded_dataset_path`]
//! atomically (a temporary file in the same directory, written, fsynced, renamed into place, the
//! directory fsynced) and only then indexed in the store: a row always has its file, and a file
//! whose row could not be written is removed (at the next start, if a crash came between). A data
//! set that a queued or running job reads cannot be deleted. Training code reads the text from
//! that path.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::service::Inner;
use super::spec::{FieldError, MAX_NAME_CHARS};
use super::store::DatasetDeletion;
use super::{JobError, Jobs};

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

/// An upload that passed every check: nothing downstream checks it again.
#[derive(Debug)]
pub struct ValidUpload<'a> {
    /// Trimmed; `None` when absent or blank.
    pub name: Option<String>,
    /// The body, non-empty.
    pub text: &'a str,
}

impl<'a> ValidUpload<'a> {
    /// Checks the label and the body; every problem names its field (`name` or `body`).
    pub fn new(name: Option<&str>, body: &'a [u8]) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut problem = |field: &str, message: String| {
            errors.push(FieldError { field: field.to_string(), message });
        };
        let name = name.map(str::trim).filter(|n| !n.is_empty()).map(str::to_string);
        if name.as_ref().is_some_and(|n| n.chars().count() > MAX_NAME_CHARS) {
            problem("name", format!("must be at most {MAX_NAME_CHARS} characters"));
        }
        let text = match std::str::from_utf8(body) {
            Ok("") => {
                problem("body", "is empty: upload at least one character of text".to_string());
                ""
            }
            Ok(text) => text,
            Err(e) => {
                problem(
                    "body",
                    format!("is not valid UTF-8: the first invalid byte is at offset {}", e.valid_up_to()),
                );
                ""
            }
        };
        if errors.is_empty() { Ok(Self { name, text }) } else { Err(errors) }
    }
}

impl Jobs {
    /// Checks `body` and stores it as a new data set labelled `name`.
    pub fn upload_dataset(&self, name: Option<&str>, body: &[u8]) -> Result<Dataset, JobError> {
        let upload = ValidUpload::new(name, body).map_err(JobError::Invalid)?;
        let dataset = Dataset {
            id: DatasetId::new_v4(),
            name: upload.name,
            bytes: upload.text.len() as u64,
            sha256: Sha256::digest(upload.text).iter().map(|b| format!("{b:02x}")).collect(),
            chars: upload.text.chars().count() as u64,
            created_at: super::now(),
        };
        let path = self.config().uploaded_dataset_path(dataset.id);
        write_atomically(&path, upload.text.as_bytes())?;
        if let Err(e) = self.inner.store.insert_dataset(&dataset) {
            if let Err(removing) = remove_if_present(&path) {
                tracing::warn!(path = %path.display(), %removing, "removing an unindexed upload");
            }
            return Err(e.into());
        }
        Ok(dataset)
    }

    /// Every uploaded data set, newest first.
    pub fn datasets(&self) -> Result<Vec<Dataset>, JobError> {
        Ok(self.inner.store.datasets()?)
    }

    /// One uploaded data set.
    pub fn dataset(&self, id: DatasetId) -> Result<Dataset, JobError> {
        self.inner.store.dataset(id)?.ok_or_else(|| not_found(id))
    }

    /// Removes a data set and its file, unless a queued or running job reads it.
    pub fn delete_dataset(&self, id: DatasetId) -> Result<(), JobError> {
        match self.inner.store.delete_dataset(id)? {
            DatasetDeletion::NotFound => Err(not_found(id)),
            DatasetDeletion::InUse(job, status) => Err(JobError::Conflict(format!(
                "data set {id} is read by job {job}, which is {}: cancel the job or wait for it to \
                 finish before deleting the data set",
                status.as_str()
            ))),
            DatasetDeletion::Deleted => Ok(remove_if_present(&self.config().uploaded_dataset_path(id))?),
        }
    }
}

/// Removes what an upload interrupted by a crash left in the uploads directory: temporary files,
/// and files written but never indexed. Runs at start, before any request.
pub(super) fn remove_unindexed_uploads(inner: &Inner) -> Result<(), JobError> {
    let dir = inner.config.uploads_dir();
    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let indexed = match name.strip_suffix(".txt").map(DatasetId::parse_str) {
            Some(Ok(id)) => inner.store.dataset(id)?.is_some(),
            _ => !name.ends_with(".txt.tmp"),
        };
        if !indexed {
            tracing::info!(path = %path.display(), "removing an upload left unindexed by a crash");
            remove_if_present(&path)?;
        }
    }
    Ok(())
}

fn not_found(id: DatasetId) -> JobError {
    JobError::NotFound(format!("data set {id}"))
}

/// Writes `bytes` to `path` so that a crash leaves either the whole file or none: a temporary
/// file beside it is written and fsynced, renamed to `path`, and the directory fsynced. The
/// directory is created if needed.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("an upload path has a directory");
    let name = path.file_name().expect("an upload path has a file name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        fs::create_dir_all(dir)?;
        let mut file = File::create_new(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_file(path);
    }
    written.map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

/// Removes a file; one that is already gone is fine.
fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io::Error::new(e.kind(), format!("removing {}: {e}", path.display())))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn an_upload_is_trimmed_non_empty_utf8_text() {
        let upload = ValidUpload::new(Some("  corpus \n"), "héllo".as_bytes()).unwrap();
        assert_eq!((upload.name.as_deref(), upload.text), (Some("corpus"), "héllo"));
        assert_eq!(ValidUpload::new(Some("   "), b"x").unwrap().name, None);

        let errors = ValidUpload::new(None, b"abc\xffdef").unwrap_err();
        assert_eq!(fields(errors), ["body is not valid UTF-8: the first invalid byte is at offset 3"]);
        // A character cut off at the end: its first byte is the first invalid one.
        let errors = ValidUpload::new(None, &"ab✓".as_bytes()[..4]).unwrap_err();
        assert!(fields(errors)[0].ends_with("offset 2"));

        let long = "n".repeat(MAX_NAME_CHARS + 1);
        let errors = ValidUpload::new(Some(&long), b"").unwrap_err();
        assert_eq!(
            fields(errors),
            [
                format!("name must be at most {MAX_NAME_CHARS} characters"),
                "body is empty: upload at least one character of text".to_string()
            ]
        );
    }

    #[test]
    fn an_atomic_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::with_data_dir(dir.path());
        let path = config.uploaded_dataset_path(DatasetId::new_v4());
        write_atomically(&path, b"text").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"text");
        let names: Vec<_> =
            fs::read_dir(config.uploads_dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [path.file_name().unwrap()]);
        remove_if_present(&path).unwrap();
        remove_if_present(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn files_a_crash_left_unindexed_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Inner::open(Config::with_data_dir(dir.path())).unwrap();
        let jobs = Jobs { inner: std::sync::Arc::new(inner) };
        let kept = jobs.upload_dataset(None, b"kept").unwrap();
        let uploads = jobs.config().uploads_dir();
        let orphan = jobs.config().uploaded_dataset_path(DatasetId::new_v4());
        fs::write(&orphan, "renamed, never indexed").unwrap();
        fs::write(uploads.join(format!(".{}.txt.tmp", DatasetId::new_v4())), "half written").unwrap();
        fs::write(uploads.join("notes.md"), "not kiln's").unwrap();

        remove_unindexed_uploads(&jobs.inner).unwrap();
        let mut left: Vec<_> =
            fs::read_dir(&uploads).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, [format!("{}.txt", kept.id), "notes.md".to_string()]);
        assert_eq!(fs::read(jobs.config().uploaded_dataset_path(kept.id)).unwrap(), b"kept");
    }
}
