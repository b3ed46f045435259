//! Text corpora for language models: where the characters come from.
//!
//! [`TextSource`] is the `data.dataset` of a language-model job. [`TextSource::load`] returns the
//! whole corpus as a string; [`crate::text`] turns it into a vocabulary and token batches.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::DataError;
use crate::config::Config;
use crate::text::time_machine;

/// The `data.dataset` of a language-model job, with the fields that belong to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "dataset", rename_all = "snake_case")]
pub enum TextSource {
    /// H. G. Wells' *The Time Machine*, the book's corpus, built into kiln (checked against the
    /// book's SHA-1).
    TimeMachine,
    /// A corpus uploaded with `POST /datasets`.
    Uploaded { dataset_id: Uuid },
    /// Generated English-like text of about `chars` characters.
    SyntheticText { chars: usize, seed: u64 },
}

impl TextSource {
    /// Whether the corpus can be read, without reading it; the error says how to provide it.
    pub fn check_available(&self, config: &Config) -> Result<(), String> {
        match self {
            Self::TimeMachine => Ok(()),
            Self::Uploaded { dataset_id } => {
                if config.uploaded_dataset_path(*dataset_id).is_file() {
                    Ok(())
                } else if config.uploaded_images_path(*dataset_id).is_file() {
                    Err(format!("data set {dataset_id} holds images: a language model needs a text corpus"))
                } else {
                    Err(format!("no uploaded data set has id {dataset_id}; upload one with POST /datasets"))
                }
            }
            Self::SyntheticText { .. } => Ok(()),
        }
    }

    /// The whole corpus.
    pub fn load(&self, config: &Config) -> Result<String, DataError> {
        match self {
            Self::TimeMachine => {
                time_machine::text().map(str::to_string).map_err(|e| DataError::Missing(e.to_string()))
            }
            Self::Uploaded { dataset_id } => {
                let path = config.uploaded_dataset_path(*dataset_id);
                std::fs::read_to_string(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => DataError::Missing(format!(
                        "uploaded data set {dataset_id} was deleted before the job could read it"
                    )),
                    _ => DataError::Io { path: path.display().to_string(), source: e },
                })
            }
            Self::SyntheticText { chars, seed } => Ok(crate::text::synthetic_text(*seed, *chars)),
        }
    }
}
