//! The files of uploads: written chunk by chunk as they arrive ([`TempUpload`]), a text checked
//! as UTF-8 and every file hashed on the way, so that a crash or a failed upload leaves the whole
//! file or none; removed when their data set is. An image archive is received the same way into
//! a temporary file that is never committed: its images, once decoded, are the file kept. What an interrupted upload left — a temporary
//! file ([`is_temporary`]), or a file renamed into place but never indexed, which the database
//! recorded as to be removed until its index — is removed by the start-up sweep
//! ([`super::sweep`]).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::JobError;
use super::utf8::{InvalidUtf8, Utf8Stream};
use crate::definition::FieldError;

/// Whether `name`, an entry of the uploads directory, is the temporary file of an upload
/// (`.<id>.txt.tmp`, `.<id>.safetensors.tmp`, `.<id>.archive.tmp`): it is never indexed, and one
/// left at start was cut short.
pub(super) fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// What a finished upload wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Written {
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// Characters of a text; 0 for other files.
    pub chars: u64,
}

/// A file being written to `path` as it arrives, so that a crash leaves either the whole file or
/// none: the chunks go to a temporary file beside it (`.<name>.tmp`), each hashed (and, for a
/// text, checked as UTF-8) on the way; [`TempUpload::commit`] fsyncs it, renames it to `path`, fsyncs the
/// directory and only then indexes it. Dropped before that succeeds, it removes what it wrote:
/// the temporary file, or the renamed file whose index failed.
///
/// Every method does blocking file I/O, dropping included: the async caller runs them on
/// blocking threads.
pub(super) struct TempUpload {
    path: PathBuf,
    tmp: PathBuf,
    file: File,
    hash: Sha256,
    /// `None` for a file that is not text.
    text: Option<Utf8Stream>,
    bytes: u64,
    stage: Stage,
}

/// Where the bytes of a [`TempUpload`] are, and so what dropping it removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// In the temporary file.
    Writing,
    /// At `path`, not indexed.
    Renamed,
    /// At `path` and indexed: kept.
    Stored,
}

impl TempUpload {
    /// Creates the temporary file of `path`, and its directory if needed: a text, checked as
    /// UTF-8, or (`text` false) any bytes.
    pub fn create(path: PathBuf, text: bool) -> Result<Self, JobError> {
        let dir = path.parent().expect("an upload path has a directory");
        let name = path.file_name().expect("an upload path has a file name").to_string_lossy();
        let tmp = dir.join(format!(".{name}.tmp"));
        let file =
            fs::create_dir_all(dir).and_then(|()| File::create_new(&tmp)).map_err(|e| in_file(&tmp, e))?;
        let (hash, text) = (Sha256::new(), text.then(Utf8Stream::new));
        Ok(Self { path, tmp, file, hash, text, bytes: 0, stage: Stage::Writing })
    }

    /// Appends the next chunk; refuses one that makes a text invalid UTF-8.
    pub fn append(&mut self, chunk: &[u8]) -> Result<(), JobError> {
        if let Some(text) = &mut self.text {
            text.feed(chunk).map_err(not_utf8)?;
        }
        self.hash.update(chunk);
        self.file.write_all(chunk).map_err(|e| in_file(&self.tmp, e))?;
        self.bytes += chunk.len() as u64;
        Ok(())
    }

    /// Where the bytes are while they are written (and, for a file never committed, until it is
    /// dropped).
    pub fn written_path(&self) -> &Path {
        &self.tmp
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Ends the file, puts it in place and calls `index` with what was written; refuses an empty
    /// file, and a text that ends inside a character. When `index` fails the file is removed.
    pub fn commit<T>(mut self, index: impl FnOnce(Written) -> Result<T, JobError>) -> Result<T, JobError> {
        let text = self.text.take();
        let what = if text.is_some() { "at least one character of text" } else { "an archive" };
        let chars = text.map(|text| text.finish().map_err(not_utf8)).transpose()?.unwrap_or(0);
        if self.bytes == 0 {
            return Err(body_error(format!("is empty: upload {what}")));
        }
        self.file.sync_all().map_err(|e| in_file(&self.tmp, e))?;
        fs::rename(&self.tmp, &self.path).map_err(|e| in_file(&self.path, e))?;
        self.stage = Stage::Renamed;
        let dir = self.path.parent().expect("an upload path has a directory");
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| in_file(dir, e))?;
        let sha256 = format!("{:x}", std::mem::take(&mut self.hash).finalize());
        let indexed = index(Written { bytes: self.bytes, sha256, chars })?;
        self.stage = Stage::Stored;
        Ok(indexed)
    }
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        let left = match self.stage {
            Stage::Writing => &self.tmp,
            Stage::Renamed => &self.path,
            Stage::Stored => return,
        };
        if let Err(e) = remove_if_present(left) {
            tracing::warn!(%e, "removing an upload that was not stored");
        }
    }
}

fn not_utf8(e: InvalidUtf8) -> JobError {
    body_error(format!("is not valid UTF-8: the first invalid byte is at offset {}", e.offset))
}

fn body_error(message: String) -> JobError {
    JobError::Invalid(vec![FieldError { field: "body".to_string(), message }])
}

/// An I/O error naming the file it happened on.
fn in_file(path: &Path, e: io::Error) -> JobError {
    JobError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Removes a file; one that is already gone is fine.
pub(super) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io::Error::new(e.kind(), format!("removing {}: {e}", path.display())))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::config::Config;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    fn written(chunks: &[&[u8]], path: &Path) -> Result<Written, JobError> {
        let mut upload = TempUpload::create(path.to_path_buf(), true)?;
        for chunk in chunks {
            upload.append(chunk)?;
        }
        upload.commit(Ok)
    }

    #[test]
    fn a_text_written_in_chunks_is_renamed_into_place_whole() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::with_data_dir(dir.path());
        let path = config.uploaded_dataset_path(Uuid::new_v4());
        let crab = "🦀".as_bytes();
        let written = written(&[b"a", &crab[..1], &crab[1..3], &crab[3..], b"bc"], &path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), "a🦀bc".as_bytes());
        assert_eq!((written.bytes, written.chars), (7, 4));
        let sha256: String = Sha256::digest("a🦀bc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(written.sha256, sha256);
        assert_eq!(names(&config.uploads_dir()), [path.file_name().unwrap().to_str().unwrap()]);
        remove_if_present(&path).unwrap();
        remove_if_present(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn an_upload_that_is_refused_dropped_or_not_indexed_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::with_data_dir(dir.path());
        let path = config.uploaded_dataset_path(Uuid::new_v4());
        let detail = |e: JobError| match e {
            JobError::Invalid(errors) => errors[0].to_string(),
            other => panic!("{other:?}"),
        };
        let refused = written(&[b"ok", b"\xe2\x9c", b"x"], &path).unwrap_err();
        assert_eq!(detail(refused), "body is not valid UTF-8: the first invalid byte is at offset 2");
        let refused = written(&[b"ok", b"\xe2\x9c"], &path).unwrap_err();
        assert_eq!(detail(refused), "body is not valid UTF-8: the first invalid byte is at offset 2");
        assert_eq!(
            detail(written(&[], &path).unwrap_err()),
            "body is empty: upload at least one character of text"
        );

        let mut dropped = TempUpload::create(path.clone(), true).unwrap();
        dropped.append(b"half of it").unwrap();
        assert_eq!(
            names(&config.uploads_dir()),
            [format!(".{}.tmp", path.file_name().unwrap().to_str().unwrap())]
        );
        drop(dropped);
        assert!(names(&config.uploads_dir()).is_empty());

        let mut unindexed = TempUpload::create(path.clone(), true).unwrap();
        unindexed.append(b"text").unwrap();
        let failed = unindexed.commit(|_| -> Result<(), JobError> {
            assert!(path.exists(), "indexed only once the file is in place");
            Err(JobError::Conflict("the index failed".to_string()))
        });
        assert!(matches!(failed, Err(JobError::Conflict(_))));
        assert!(names(&config.uploads_dir()).is_empty());
    }
}
