//! Paths in the data dir as the database records them: relative to the data dir (or the shared
//! dir, `--shared-dir`, when replicas share their files: [`Config::files_dir`]), with `/`
//! between components (`jobs/<job>/checkpoints/step-0000000012`, `datasets/uploads/<id>.txt`),
//! resolved against it on every read. A data dir can therefore be moved, copied, restored from a
//! backup or mounted elsewhere, and each copy's database names its own files.
//! [`to_lost_and_found`] moves aside what kiln may not delete and cannot use.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use uuid::Uuid;

use super::JobId;
use crate::config::Config;

/// A job's directory: `jobs/<job>`.
pub(super) fn job_dir(job: JobId) -> String {
    format!("jobs/{job}")
}

/// The directory of a job's checkpoint named `name` (`step-…`): `jobs/<job>/checkpoints/<name>`.
pub(super) fn checkpoint_dir(job: JobId, name: &str) -> String {
    format!("jobs/{job}/checkpoints/{name}")
}

/// The directory of a job's checkpoint whose path (wherever it lies) is `dir`.
pub(super) fn checkpoint_dir_of(job: JobId, dir: &Path) -> String {
    checkpoint_dir(job, &dir.file_name().unwrap_or_default().to_string_lossy())
}

/// An uploaded data set's text: `datasets/uploads/<id>.txt`.
pub(super) fn upload_file(id: Uuid) -> String {
    format!("datasets/uploads/{id}.txt")
}

/// An uploaded image data set's decoded images: `datasets/uploads/<id>.safetensors`.
pub(super) fn images_file(id: Uuid) -> String {
    format!("datasets/uploads/{id}.safetensors")
}

/// `relative` resolved against the data dir; `None` unless it is a plain relative path (no
/// root, no `..`), so that no row of the database can name a file outside the data dir.
pub(super) fn resolve(config: &Config, relative: &str) -> Option<PathBuf> {
    let path = Path::new(relative);
    let plain = !relative.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    plain.then(|| config.files_dir().join(path))
}

/// `path`, which lies in the data dir, relative to it (for logs and messages); a path elsewhere
/// is shown whole.
pub(super) fn shown(config: &Config, path: &Path) -> String {
    path.strip_prefix(config.files_dir()).unwrap_or(path).display().to_string()
}

/// Moves `path` (relative to the files dir) to the same place under its `lost+found/`,
/// with a numbered suffix if that is taken; logs it at WARN with `why`.
pub(super) fn to_lost_and_found(config: &Config, path: &str, why: &str) -> io::Result<PathBuf> {
    let lost = config.files_dir().join("lost+found");
    let mut target = lost.join(path);
    let mut n = 0;
    while target.exists() {
        n += 1;
        target = lost.join(format!("{path}.{n}"));
    }
    fs::create_dir_all(target.parent().expect("a path under lost+found has a parent"))?;
    fs::rename(config.files_dir().join(path), &target)?;
    let moved = shown(config, &target);
    tracing::warn!(%path, to = %moved, "{why}: moved to lost+found, not adopted");
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_resolve_and_inside_the_data_dir() {
        let config = Config::with_data_dir("/srv/kiln");
        let job = JobId::nil();
        let dir = checkpoint_dir(job, "step-0000000004");
        assert_eq!(dir, format!("jobs/{job}/checkpoints/step-0000000004"));
        assert_eq!(resolve(&config, &dir).unwrap(), Path::new("/srv/kiln").join(&dir));
        assert_eq!(checkpoint_dir_of(job, Path::new("/elsewhere/step-0000000004")), dir);
        for unsafe_path in ["", "/etc", "jobs/../../etc", "../x", "./jobs"] {
            assert_eq!(resolve(&config, unsafe_path), None, "{unsafe_path}");
        }
        assert_eq!(shown(&config, &Path::new("/srv/kiln").join(&dir)), dir);
    }
}
