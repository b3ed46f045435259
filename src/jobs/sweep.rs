//! The start-up sweep of the jobs' checkpoint directories: it removes what a checkpoint write cut
//! short by a crash left (`.tmp-<uuid>` directories, possibly large) and checkpoint directories
//! the index does not know (written but never indexed, dropped but never removed, or of a job
//! deleted since). It runs in [`super::Jobs::start`] before any worker, so no write is under way;
//! it logs each path it removes.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::Path;

use super::JobId;
use super::error::JobError;
use super::store::Store;
use crate::config::Config;
use crate::train::checkpoint;

/// Removes, in every job's checkpoints directory, temporary directories and checkpoint
/// directories not in the index. A removal that fails is logged and the sweep goes on.
pub(super) fn sweep_checkpoints(config: &Config, store: &Store) -> Result<(), JobError> {
    for entry in fs::read_dir(config.jobs_dir())? {
        let name = entry?.file_name();
        let Some(id) = name.to_str().and_then(|n| JobId::parse_str(n).ok()) else { continue };
        let dir = config.checkpoints_dir(id);
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            entries => entries?,
        };
        // By directory name: the index's paths may name the data dir otherwise (moved, relative).
        let indexed: HashSet<OsString> = store
            .checkpoints(id)?
            .into_iter()
            .filter_map(|(_, dir)| Path::new(&dir).file_name().map(OsString::from))
            .collect();
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default();
            let text = name.to_string_lossy();
            let what = if checkpoint::is_temporary(&text) {
                "the temporary directory of a checkpoint write cut short"
            } else if checkpoint::is_checkpoint_name(&text) && !indexed.contains(name) {
                "a checkpoint directory not in the index"
            } else {
                continue;
            };
            tracing::info!(job = %id, path = %path.display(), "removing {what}");
            if let Err(e) = remove(&path) {
                tracing::warn!(job = %id, path = %path.display(), error = %e, "could not remove {what}");
            }
        }
    }
    Ok(())
}

/// Removes a directory with its contents, or a file.
fn remove(path: &Path) -> io::Result<()> {
    if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::shared::Shared;
    use crate::jobs::store::NewCheckpoint;

    #[test]
    fn temporary_and_unindexed_checkpoint_directories_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let id = shared
            .store_job_for_test(br#"{"model":{"kind":"mlp_bn"},"data":{"dataset":"synthetic_images"}}"#);
        let checkpoints = shared.config.checkpoints_dir(id);
        let indexed = checkpoints.join("step-0000000004");
        for d in [&indexed, &checkpoints.join("step-0000000008"), &checkpoints.join(".tmp-1234/inner")] {
            fs::create_dir_all(d).unwrap();
            fs::write(d.join("model.bpk"), b"weights").unwrap();
        }
        fs::write(checkpoints.join("notes.txt"), b"not kiln's").unwrap();
        let new = NewCheckpoint {
            dir: &indexed.display().to_string(),
            epoch: 1,
            step: 4,
            bytes: 7,
            sha256: "",
            metrics: None,
        };
        shared.store.insert_checkpoint(id, &new).unwrap();
        // A deleted job's directory: nothing of it is indexed.
        let gone = shared.config.checkpoints_dir(JobId::new_v4()).join("step-0000000001");
        fs::create_dir_all(&gone).unwrap();

        sweep_checkpoints(&shared.config, &shared.store).unwrap();
        let mut left: Vec<String> = fs::read_dir(&checkpoints)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["notes.txt", "step-0000000004"]);
        assert_eq!(fs::read(indexed.join("model.bpk")).unwrap(), b"weights");
        assert!(!gone.exists());
    }
}
