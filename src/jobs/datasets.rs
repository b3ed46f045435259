//! Uploaded text corpora: the [`Dataset`] record, the checks an upload passes and the operations
//! the HTTP layer calls on them, as methods of [`Jobs`] (whose store also knows which jobs read
//! a data set).
//!
//! An upload is checked once into a [`ValidUpload`] — a label of at most 200 characters and a
//! non-empty body of UTF-8 text — then written to [`crate::Config::uploaded_dataset_path`]
//! atomically (a temporary file in the same directory, written, fsynced, renamed into place, the
//! directory fsynced, see [`super::uploads`]) and only then indexed in the store: a row always
//! has its file, and a file whose row could not be written is removed (at the next start, if a
//! crash came between). A data set that a queued or running job reads cannot be deleted.
//! Training code reads the text from that path.

use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::store::DatasetDeletion;
use super::uploads::{remove_if_present, write_atomically};
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
        if let Err(e) = self.shared.store.insert_dataset(&dataset) {
            if let Err(removing) = remove_if_present(&path) {
                tracing::warn!(path = %path.display(), %removing, "removing an unindexed upload");
            }
            return Err(e.into());
        }
        Ok(dataset)
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
        match self.shared.store.delete_dataset(id)? {
            DatasetDeletion::NotFound => Err(not_found(id)),
            DatasetDeletion::InUse(job, status) => Err(JobError::Conflict(format!(
                "data set {id} is read by job {job}, which is {}: cancel the job or wait for it to \
                 finish before deleting the data set",
                status.as_str()
            ))),
            DatasetDeletion::Deleted { bytes } => {
                self.shared.uploads.release_stored(bytes);
                Ok(remove_if_present(&self.config().uploaded_dataset_path(id))?)
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
}
