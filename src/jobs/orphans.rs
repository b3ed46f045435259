//! Orphans: job directories (`jobs/<id>`), uploaded texts (`datasets/uploads/<id>.txt`) and image
//! sets (`datasets/uploads/<id>.safetensors`) in
//! the data dir that the database does not know and did not record as to be removed. They appear
//! when `kiln.sqlite3` is lost (deleted, emptied) or restored from an older copy: the files are
//! the only record left, so kiln never deletes them on its own.
//!
//! [`resolve`] runs first in [`super::Jobs::start`], before anything is changed. With orphans
//! and neither flag, the server refuses to start ([`JobError::Orphans`], logged at ERROR): the
//! message counts them, names a few (relative to the data dir), says the database looks new or
//! restored, and how to proceed. `--discard-orphans` deletes them, each logged at WARN.
//! `--adopt-orphans` indexes them back ([`super::adopt`]); what cannot be adopted is moved to
//! `<data-dir>/lost+found/` (never deleted), logged at WARN, and no longer counts as an orphan.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;

use super::datasets::DatasetId;
use super::error::JobError;
use super::shared::Shared;
use super::store::Store;
use super::{JobId, adopt, datadir};
use crate::config::Config;

/// How many orphans the refusal names.
const EXAMPLES: usize = 3;

/// What the data dir holds that the database does not know.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Orphans {
    pub jobs: Vec<JobId>,
    pub uploads: Vec<DatasetId>,
    pub images: Vec<DatasetId>,
}

impl Orphans {
    fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.uploads.is_empty() && self.images.is_empty()
    }

    /// Their paths relative to the data dir, jobs first.
    fn paths(&self) -> impl Iterator<Item = String> + '_ {
        let jobs = self.jobs.iter().map(|id| datadir::job_dir(*id));
        let images = self.images.iter().map(|id| datadir::images_file(*id));
        jobs.chain(self.uploads.iter().map(|id| datadir::upload_file(*id))).chain(images)
    }
}

/// Refuses to start over orphans unless a flag says what to do with them; adopts or discards
/// them as it says.
pub(super) fn resolve(shared: &Shared) -> Result<(), JobError> {
    let (config, store) = (&shared.config, &shared.store);
    let orphans = find(config, store)?;
    if orphans.is_empty() {
        return Ok(());
    }
    if config.discard_orphans {
        discard(config, &orphans);
        Ok(())
    } else if config.adopt_orphans {
        adopt::adopt(shared, &orphans.jobs, &orphans.uploads, &orphans.images)
    } else {
        let message = refusal(store.is_empty()?, &orphans, store.is_shared());
        tracing::error!("{message}");
        Err(JobError::Orphans(message))
    }
}

/// The job directories, uploaded texts and image sets the database neither knows nor recorded as to be
/// removed, each sorted. Other entries (temporary files, names kiln never gives) are not kiln's
/// to judge here.
pub(super) fn find(config: &Config, store: &Store) -> Result<Orphans, JobError> {
    let removals: HashSet<String> = store.removals()?.into_iter().collect();
    let mut orphans = Orphans::default();
    for name in names(&config.jobs_dir())? {
        let Ok(id) = JobId::parse_str(&name) else { continue };
        if store.job(id)?.is_none() && !removals.contains(&datadir::job_dir(id)) {
            orphans.jobs.push(id);
        }
    }
    for name in names(&config.uploads_dir())? {
        let (ids, file): (_, fn(DatasetId) -> String) = match name.strip_suffix(".txt") {
            Some(id) => ((id, &mut orphans.uploads), datadir::upload_file),
            None => match name.strip_suffix(".safetensors") {
                Some(id) => ((id, &mut orphans.images), datadir::images_file),
                None => continue,
            },
        };
        let (id, found) = ids;
        let Ok(id) = DatasetId::parse_str(id) else { continue };
        if store.dataset(id)?.is_none() && !removals.contains(&file(id)) {
            found.push(id);
        }
    }
    orphans.jobs.sort();
    orphans.uploads.sort();
    orphans.images.sort();
    Ok(orphans)
}

/// The names of the entries of `dir` (none when it is missing).
fn names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        entries => entries?,
    };
    entries.map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned())).collect()
}

/// Why the server does not start, and how to proceed; `empty`: whether the database knows
/// nothing at all; `postgres`: whether it is a PostgreSQL server rather than `kiln.sqlite3`.
fn refusal(empty: bool, orphans: &Orphans, postgres: bool) -> String {
    let count = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut found = Vec::new();
    if !orphans.jobs.is_empty() {
        found.push(count(orphans.jobs.len(), "job directory", "job directories"));
    }
    let uploads = orphans.uploads.len() + orphans.images.len();
    if uploads > 0 {
        found.push(count(uploads, "uploaded data set", "uploaded data sets"));
    }
    let examples: Vec<String> = orphans.paths().take(EXAMPLES).collect();
    let more = orphans.jobs.len() + uploads - examples.len();
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    let name = if postgres { "the database (PostgreSQL)" } else { "the database (kiln.sqlite3)" };
    let database = if empty {
        format!("{name} is empty: it looks new, as when it was deleted or emptied")
    } else {
        format!("{name} does not list them: it looks restored from an older copy")
    };
    let restore = if postgres {
        "restore the database from a backup as new as these files"
    } else {
        "restore kiln.sqlite3 together with its kiln.sqlite3-wal file"
    };
    format!(
        "the data dir holds {} that the database does not know ({}{more}); {database}. Nothing was \
         changed. To keep them, stop and {restore}, or restart with --adopt-orphans to index them \
         back (jobs from their checkpoints, data sets from their files; what cannot be read back is \
         moved to lost+found/); to delete them, restart with --discard-orphans",
        found.join(" and "),
        examples.join(", "),
    )
}

/// Deletes every orphan, each logged at WARN; one that cannot be deleted is logged and left.
fn discard(config: &Config, orphans: &Orphans) {
    for path in orphans.paths() {
        let full = config.files_dir().join(&path);
        tracing::warn!(%path, "deleting what the database does not know (--discard-orphans)");
        let removed = if full.is_dir() { fs::remove_dir_all(&full) } else { fs::remove_file(&full) };
        if let Err(e) = removed {
            tracing::warn!(%path, error = %e, "could not delete an orphan");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_jobs_and_uploads_are_orphans_unless_recorded_as_to_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let config = &shared.config;
        let known = shared
            .store_job_for_test(br#"{"model":{"kind":"mlp_bn"},"data":{"dataset":"synthetic_images"}}"#);
        let (lost, deleted) = (JobId::new_v4(), JobId::new_v4());
        for id in [known, lost, deleted] {
            fs::create_dir_all(config.checkpoints_dir(id)).unwrap();
        }
        shared.store.record_removal(&datadir::job_dir(deleted)).unwrap();
        let upload = DatasetId::new_v4();
        fs::write(config.uploaded_dataset_path(upload), "text").unwrap();
        fs::write(config.uploads_dir().join(format!(".{}.txt.tmp", DatasetId::new_v4())), "half").unwrap();
        fs::write(config.jobs_dir().join("notes.txt"), "not kiln's").unwrap();

        let orphans = find(config, &shared.store).unwrap();
        assert_eq!(orphans, Orphans { jobs: vec![lost], uploads: vec![upload], images: vec![] });
        let message = refusal(shared.store.is_empty().unwrap(), &orphans, false);
        assert!(
            message.starts_with("the data dir holds 1 job directory and 1 uploaded data set"),
            "{message}"
        );
        assert!(message.contains(&format!("(jobs/{lost}, datasets/uploads/{upload}.txt)")), "{message}");
        assert!(message.contains("looks restored") && message.contains("--adopt-orphans"), "{message}");
        assert!(refusal(true, &orphans, false).contains("is empty: it looks new"));
        let on_postgres = refusal(false, &orphans, true);
        assert!(
            on_postgres.contains("(PostgreSQL)") && !on_postgres.contains("kiln.sqlite3"),
            "{on_postgres}"
        );
        assert!(!message.contains(&dir.path().display().to_string()), "{message}");

        let moved = datadir::to_lost_and_found(config, &datadir::job_dir(lost), "test").unwrap();
        assert_eq!(moved, dir.path().join(format!("lost+found/jobs/{lost}")));
        fs::create_dir_all(config.job_dir(lost)).unwrap();
        let again = datadir::to_lost_and_found(config, &datadir::job_dir(lost), "test").unwrap();
        assert_eq!(again, dir.path().join(format!("lost+found/jobs/{lost}.1")));
        discard(config, &find(config, &shared.store).unwrap());
        assert!(!config.uploaded_dataset_path(upload).exists());
        assert!(config.job_dir(known).exists() && config.job_dir(deleted).exists());
        assert_eq!(find(config, &shared.store).unwrap(), Orphans::default());
    }
}
