//! The files of uploaded text corpora: written so that a crash leaves the whole file or none,
//! removed when their data set is, and swept at start-up of what an interrupted upload left.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use uuid::Uuid;

use super::error::JobError;
use super::store::Store;
use crate::config::Config;

/// Removes what an upload interrupted by a crash left in the uploads directory: temporary files,
/// and files written but never indexed. Runs at start, before any request.
pub(super) fn remove_unindexed(config: &Config, store: &Store) -> Result<(), JobError> {
    let dir = config.uploads_dir();
    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let indexed = match name.strip_suffix(".txt").map(Uuid::parse_str) {
            Some(Ok(id)) => store.dataset(id)?.is_some(),
            _ => !name.ends_with(".txt.tmp"),
        };
        if !indexed {
            tracing::info!(path = %path.display(), "removing an upload left unindexed by a crash");
            remove_if_present(&path)?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` so that a crash leaves either the whole file or none: a temporary
/// file beside it is written and fsynced, renamed to `path`, and the directory fsynced. The
/// directory is created if needed.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
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
    use super::*;
    use crate::jobs::Jobs;
    use crate::jobs::shared::Shared;

    #[test]
    fn an_atomic_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::with_data_dir(dir.path());
        let path = config.uploaded_dataset_path(Uuid::new_v4());
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
        let jobs = Jobs::without_workers(Shared::open(Config::with_data_dir(dir.path())).unwrap());
        let kept = jobs.upload_dataset(None, b"kept").unwrap();
        let uploads = jobs.config().uploads_dir();
        let orphan = jobs.config().uploaded_dataset_path(Uuid::new_v4());
        fs::write(&orphan, "renamed, never indexed").unwrap();
        fs::write(uploads.join(format!(".{}.txt.tmp", Uuid::new_v4())), "half written").unwrap();
        fs::write(uploads.join("notes.md"), "not kiln's").unwrap();

        remove_unindexed(jobs.config(), &jobs.shared.store).unwrap();
        let mut left: Vec<_> =
            fs::read_dir(&uploads).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, [format!("{}.txt", kept.id), "notes.md".to_string()]);
        assert_eq!(fs::read(jobs.config().uploaded_dataset_path(kept.id)).unwrap(), b"kept");
    }
}
