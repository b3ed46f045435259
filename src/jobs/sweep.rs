//! The start-up sweep: it removes only what kiln can prove is its own leftover. That is what the
//! database recorded as to be removed and a crash left in place (a deleted job's directory, a
//! deleted data set's file, a dropped checkpoint, an upload renamed but never indexed), and the
//! temporary files of writes cut short (`.tmp-<uuid>` checkpoint directories, possibly large;
//! `.<id>.txt.tmp`, `.<id>.archive.tmp` and `.<id>.safetensors.tmp` uploads). A checkpoint directory of a known job that the index does not know
//! (written, then a crash before its index) is left in place with a WARN: a resumed job writing
//! that step replaces it. Files the database does not know at all are orphans, handled before
//! the sweep ([`super::orphans`]). It runs in [`super::Jobs::start`] before any worker, so no
//! write of this replica is under way; it logs each path it removes, relative to the data dir.
//! On a database that several replicas share, another may be writing in the shared dir at that
//! moment: there a temporary file is removed only once it is older than [`SHARED_GRACE`].

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::error::JobError;
use super::store::Store;
use super::{JobId, datadir, uploads};
use crate::config::Config;
use crate::train::checkpoint;

/// How old a temporary file in a shared dir must be before a starting replica removes it: no
/// checkpoint or upload write of another replica takes that long.
pub(super) const SHARED_GRACE: Duration = Duration::from_secs(3600);

/// Finishes the removals the database lists, removes temporary files, and warns of checkpoint
/// directories not in the index. A removal that fails is logged and the sweep goes on.
pub(super) fn sweep(config: &Config, store: &Store) -> Result<(), JobError> {
    let grace = if store.is_shared() { SHARED_GRACE } else { Duration::ZERO };
    finish_removals(config, store)?;
    sweep_checkpoints(config, store, grace)?;
    sweep_uploads(config, grace)
}

/// Whether the file or directory at `full` was last modified at least `grace` ago (a zero grace:
/// always).
fn old_enough(full: &Path, grace: Duration) -> bool {
    if grace.is_zero() {
        return true;
    }
    let modified = fs::symlink_metadata(full).and_then(|m| m.modified());
    modified.is_ok_and(|at| SystemTime::now().duration_since(at).is_ok_and(|age| age >= grace))
}

/// Removes every path the database recorded as to be removed, and clears its record once gone.
fn finish_removals(config: &Config, store: &Store) -> Result<(), JobError> {
    for path in store.removals()? {
        // Written again since it was dropped (the index forgets the record then): keep it.
        if store.is_indexed_checkpoint(&path)? {
            store.removed(&path)?;
            continue;
        }
        let Some(full) = datadir::resolve(config, &path) else {
            tracing::warn!(%path, "a removal record that names no path in the data dir: ignored");
            store.removed(&path)?;
            continue;
        };
        let what = "what kiln had let go of before it stopped";
        match remove(&full) {
            Ok(true) => tracing::info!(%path, "removing {what}"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(%path, error = %e, "could not remove {what}");
                continue;
            }
        }
        store.removed(&path)?;
    }
    Ok(())
}

/// In every known job's checkpoints directory: removes temporary directories older than `grace`,
/// and warns of checkpoint directories the index does not know.
fn sweep_checkpoints(config: &Config, store: &Store, grace: Duration) -> Result<(), JobError> {
    for entry in fs::read_dir(config.jobs_dir())? {
        let name = entry?.file_name();
        let Some(id) = name.to_str().and_then(|n| JobId::parse_str(n).ok()) else { continue };
        if store.job(id)?.is_none() {
            continue;
        }
        let dir = config.checkpoints_dir(id);
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            entries => entries?,
        };
        let indexed: HashSet<String> = store.checkpoints(id)?.into_iter().map(|row| row.dir).collect();
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let path = datadir::checkpoint_dir(id, &name);
            let full = config.files_dir().join(&path);
            if checkpoint::is_temporary(&name) {
                if old_enough(&full, grace) {
                    remove_logged(&full, &path, "the temporary directory of a checkpoint write cut short");
                }
            } else if checkpoint::is_checkpoint_name(&name) && !indexed.contains(&path) {
                let what = "a checkpoint directory not in the index (a crash before it was indexed?)";
                tracing::warn!(job = %id, %path, "{what}: left in place");
            }
        }
    }
    Ok(())
}

/// Removes the temporary files of uploads cut short, once older than `grace`.
fn sweep_uploads(config: &Config, grace: Duration) -> Result<(), JobError> {
    for entry in fs::read_dir(config.uploads_dir())? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let path = format!("datasets/uploads/{name}");
        let full = config.files_dir().join(&path);
        if uploads::is_temporary(&name) && old_enough(&full, grace) {
            remove_logged(&full, &path, "the temporary file of an upload cut short");
        }
    }
    Ok(())
}

/// Removes `full` (shown as `path`), logging it; a failure is logged too.
fn remove_logged(full: &Path, path: &str, what: &str) {
    tracing::info!(%path, "removing {what}");
    if let Err(e) = remove(full) {
        tracing::warn!(%path, error = %e, "could not remove {what}");
    }
}

/// Removes a directory with its contents, or a file; returns whether there was one.
fn remove(path: &Path) -> io::Result<bool> {
    let removed = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        _ => fs::remove_file(path),
    };
    match removed {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        removed => removed.map(|()| true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::shared::Shared;
    use crate::jobs::store::NewCheckpoint;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    #[test]
    fn in_a_shared_dir_only_temporary_files_older_than_the_grace_are_taken_for_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join(".tmp-fresh");
        fs::write(&fresh, b"being written by another replica").unwrap();
        assert!(old_enough(&fresh, Duration::ZERO), "alone on its database, anything temporary goes");
        assert!(!old_enough(&fresh, SHARED_GRACE));
        let stale = dir.path().join(".tmp-stale");
        fs::write(&stale, b"cut short").unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        fs::File::options().write(true).open(&stale).unwrap().set_modified(two_hours_ago).unwrap();
        assert!(old_enough(&stale, SHARED_GRACE));
        assert!(!old_enough(&dir.path().join("gone"), SHARED_GRACE), "nothing there: nothing to remove");
    }

    #[test]
    fn only_temporary_files_and_recorded_removals_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let (config, store) = (&shared.config, &shared.store);
        let id = shared
            .store_job_for_test(br#"{"model":{"kind":"mlp_bn"},"data":{"dataset":"synthetic_images"}}"#);
        let claim = shared.claim_for_test(id);
        let checkpoints = config.checkpoints_dir(id);
        let steps = ["step-0000000004", "step-0000000008", "step-0000000012", "step-0000000016"];
        for d in steps.iter().chain([&".tmp-1234"]) {
            fs::create_dir_all(checkpoints.join(d).join("inner")).unwrap();
            fs::write(checkpoints.join(d).join("model.bpk"), b"weights").unwrap();
        }
        fs::write(checkpoints.join("notes.txt"), b"not kiln's").unwrap();
        let index = |name: &str| {
            let dir = datadir::checkpoint_dir(id, name);
            let new = NewCheckpoint {
                dir: &dir,
                epoch: 1,
                step: 4,
                bytes: 7,
                sha256: "",
                files: None,
                metrics: None,
            };
            store.insert_checkpoint(claim, &new).unwrap()
        };
        index(steps[0]);
        // Dropped, its removal cut short by a crash.
        let dropped = index(steps[1]);
        store.drop_checkpoint(claim, dropped).unwrap();
        // Dropped, then written again by a resumed run: indexed anew, kept.
        let rewritten = index(steps[2]);
        store.drop_checkpoint(claim, rewritten).unwrap();
        index(steps[2]);
        // steps[3]: written, never indexed (a crash between the rename and the index).
        let deleted = JobId::new_v4();
        fs::create_dir_all(config.checkpoints_dir(deleted).join(steps[0])).unwrap();
        store.record_removal(&datadir::job_dir(deleted)).unwrap();
        store.record_removal("../outside").unwrap();
        let uploads = config.uploads_dir();
        let (tmp, renamed) = (format!(".{id}.txt.tmp"), format!("{id}.txt"));
        fs::write(uploads.join(&tmp), "half written").unwrap();
        fs::write(uploads.join(&renamed), "renamed, never indexed").unwrap();
        store.record_removal(&format!("datasets/uploads/{renamed}")).unwrap();
        fs::write(uploads.join("notes.md"), "not kiln's").unwrap();
        fs::write(dir.path().join("outside"), "not kiln's").unwrap();

        sweep(config, store).unwrap();
        assert_eq!(names(&checkpoints), ["notes.txt", steps[0], steps[2], steps[3]]);
        assert_eq!(fs::read(checkpoints.join(steps[0]).join("model.bpk")).unwrap(), b"weights");
        assert!(!config.job_dir(deleted).exists(), "a deleted job's directory");
        assert_eq!(names(&uploads), ["notes.md"]);
        assert!(dir.path().join("outside").exists(), "no record names a path outside the data dir");
        assert!(store.removals().unwrap().is_empty(), "every record is cleared");
    }
}
