//! `--adopt-orphans`: indexing back the jobs and uploads a lost database no longer knows (see
//! [`super::orphans`]).
//!
//! An uploaded text is read whole once — its size, SHA-256 and characters counted as an upload
//! counts them — and indexed without a label, dated by the file's modification time; one that is
//! empty or not UTF-8 was never a stored upload and is not adopted. An uploaded image set is
//! adopted the same way when its file loads whole (its header describes it). A job is read back from its
//! checkpoints: every `step-…` directory whose `checkpoint.json` parses (and names this job) is
//! indexed, its files digested now, so downloads and generation work; the newest gives the
//! definition and where training stood. The job is stored finished: `succeeded` when every
//! epoch was done, else `failed`, saying so (its metrics history died with the database).
//! What cannot be adopted — a job without one readable checkpoint, an unusable text — is moved
//! to `lost+found/`, never deleted.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::checkpoints::files_json;
use super::datadir::{self, to_lost_and_found};
use super::datasets::{Dataset, DatasetId, DatasetKind};
use super::error::JobError;
use super::shared::Shared;
use super::store::{AdoptedJob, NewCheckpoint};
use super::utf8::Utf8Stream;
use super::{JobId, JobStatus};
use crate::definition::{Task, ValidJobSpec};
use crate::metrics::Progress;
use crate::train::checkpoint::{self, FileDigests, Manifest};

/// Adopts the orphaned `jobs`, uploaded `texts` and `images` (see [`super::orphans`]), or moves
/// each to `lost+found/`.
pub(super) fn adopt(
    shared: &Shared,
    jobs: &[JobId],
    texts: &[DatasetId],
    images: &[DatasetId],
) -> Result<(), JobError> {
    let texts = texts.iter().map(|&id| (datadir::upload_file(id), read_upload(shared, id)));
    let images = images.iter().map(|&id| (datadir::images_file(id), read_images(shared, id)));
    for (path, read) in texts.chain(images) {
        match read? {
            Some(dataset) => {
                shared.store.insert_dataset(&dataset, &path)?;
                shared.uploads.adopt_stored(dataset.bytes);
                let bytes = dataset.bytes;
                tracing::warn!(%path, bytes, "adopted an uploaded data set the database did not know");
            }
            None => {
                to_lost_and_found(
                    &shared.config,
                    &path,
                    "an upload that is empty, not UTF-8 or not an image set",
                )?;
            }
        }
    }
    for &id in jobs {
        let path = datadir::job_dir(id);
        match read_job(shared, id)? {
            Some(adopted) => {
                let job = adopted.as_job(id);
                shared.store.adopt_job(&job)?;
                let (status, step) = (job.status.as_str(), job.progress.step);
                let checkpoints = job.checkpoints.len();
                tracing::warn!(%path, status, step, checkpoints, "adopted a job the database did not know");
            }
            None => {
                to_lost_and_found(&shared.config, &path, "a job without a readable checkpoint")?;
            }
        }
    }
    Ok(())
}

/// Data set `id` read back from its text, or `None` when the text is empty or not UTF-8.
fn read_upload(shared: &Shared, id: DatasetId) -> Result<Option<Dataset>, JobError> {
    let path = shared.config.uploaded_dataset_path(id);
    let mut file = File::open(&path)?;
    let (mut hash, mut text, mut bytes) = (Sha256::new(), Utf8Stream::new(), 0u64);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if text.feed(&buf[..n]).is_err() {
            return Ok(None);
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    let Ok(chars) = text.finish() else { return Ok(None) };
    if bytes == 0 {
        return Ok(None);
    }
    let sha256 = format!("{:x}", hash.finalize());
    let created_at = modified(&path);
    let (kind, chars, images) = (DatasetKind::Text, Some(chars), None);
    Ok(Some(Dataset { id, name: None, kind, bytes, sha256, chars, images, created_at }))
}

/// Image set `id` read back from its file, or `None` when it does not load.
fn read_images(shared: &Shared, id: DatasetId) -> Result<Option<Dataset>, JobError> {
    let path = shared.config.uploaded_images_path(id);
    let Ok(info) = crate::data::uploaded::verify(&path) else { return Ok(None) };
    let mut hash = Sha256::new();
    let bytes = io::copy(&mut File::open(&path)?, &mut hash)?;
    let sha256 = format!("{:x}", hash.finalize());
    let (kind, images, created_at) = (DatasetKind::Images, Some(info), modified(&path));
    Ok(Some(Dataset { id, name: None, kind, bytes, sha256, chars: None, images, created_at }))
}

/// When `path` was last modified (RFC 3339), or now.
fn modified(path: &Path) -> String {
    let time = fs::metadata(path).and_then(|m| m.modified()).unwrap_or_else(|_| SystemTime::now());
    time::OffsetDateTime::from(time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| super::now())
}

/// A checkpoint that reads: its directory's name, manifest and file digests.
struct Readable {
    name: String,
    manifest: Manifest,
    files: FileDigests,
}

/// A job read back from its readable checkpoints, oldest first.
struct Adopted {
    checkpoints: Vec<Readable>,
    /// The checkpoints' directories, relative to the data dir, in the same order.
    dirs: Vec<String>,
    files: Vec<String>,
    created_at: String,
    error: Option<String>,
}

impl Adopted {
    /// The store's record of job `id`.
    fn as_job(&self, id: JobId) -> AdoptedJob<'_> {
        let newest = &self.checkpoints.last().expect("an adopted job has a checkpoint").manifest;
        let spec = &newest.spec;
        let (parameters, steps) = size(spec, newest);
        let position = &newest.position;
        let progress =
            Progress { epoch: position.epoch, epochs: spec.training.epochs, step: position.step, steps };
        let status = if self.error.is_none() { JobStatus::Succeeded } else { JobStatus::Failed };
        let checkpoints = self.checkpoints.iter().zip(&self.dirs).zip(&self.files);
        let checkpoints = checkpoints
            .map(|((c, dir), files)| {
                let model = &c.files["model.bpk"];
                NewCheckpoint {
                    dir,
                    epoch: c.manifest.position.epoch,
                    step: c.manifest.position.step,
                    bytes: model.bytes,
                    sha256: &model.sha256,
                    files: Some(files),
                    metrics: None,
                }
            })
            .collect();
        AdoptedJob {
            id,
            spec,
            parameters,
            progress,
            status,
            error: self.error.as_deref(),
            created_at: &self.created_at,
            checkpoints,
        }
    }
}

/// Job `id` read back from its checkpoints, or `None` when none reads. A checkpoint directory
/// that does not read is logged and left where it is.
fn read_job(shared: &Shared, id: JobId) -> Result<Option<Adopted>, JobError> {
    let dir = shared.config.checkpoints_dir(id);
    let entries = match fs::read_dir(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        entries => entries?,
    };
    let mut checkpoints = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !checkpoint::is_checkpoint_name(&name) {
            continue;
        }
        let read = checkpoint::manifest(&dir.join(&name))
            .and_then(|manifest| Ok((checkpoint::digest_files(&dir.join(&name))?, manifest)));
        match read {
            Ok((files, manifest)) if manifest.job_id == id => {
                checkpoints.push(Readable { name, manifest, files })
            }
            Ok(_) => {
                tracing::warn!(job = %id, checkpoint = %name, "a checkpoint of another job: not adopted")
            }
            Err(e) => {
                let error = e.within(shared.config.files_dir());
                tracing::warn!(job = %id, %error, "a checkpoint that does not read: not adopted");
            }
        }
    }
    checkpoints.sort_by_key(|c| c.manifest.position.step);
    let Some(newest) = checkpoints.last() else { return Ok(None) };
    let (position, epochs) = (&newest.manifest.position, newest.manifest.spec.training.epochs);
    let error = (position.epoch < epochs).then(|| {
        format!(
            "adopted from its checkpoints after the database was lost at epoch {} step {}; its \
             metrics history is gone",
            position.epoch, position.step
        )
    });
    let created_at = modified(&dir.join(&checkpoints[0].name));
    let dirs = checkpoints.iter().map(|c| datadir::checkpoint_dir(id, &c.name)).collect();
    let files = checkpoints.iter().map(|c| files_json(&c.files)).collect();
    Ok(Some(Adopted { checkpoints, dirs, files, created_at, error }))
}

/// The parameter count and step total of a job, counted as a submit counts them (a language
/// model's from its checkpoint's vocabulary; its steps, which its corpus decides, from where
/// its newest checkpoint stands).
fn size(spec: &ValidJobSpec, newest: &Manifest) -> (u64, u64) {
    let position = &newest.position;
    let epochs = u64::from(spec.training.epochs);
    match spec.task() {
        Some(Task::Classify { model, data }) => {
            let per_epoch = crate::data::batches_per_epoch(data.train_len(), spec.training.batch_size);
            let parameters = model.parameter_count(data.input_shape(), data.source.classes());
            (parameters as u64, per_epoch as u64 * epochs)
        }
        Some(Task::Language { model, .. }) => {
            let vocab = newest.vocab.as_ref().map_or(0, |v| v.len());
            let parameters = if vocab > 0 { model.config(vocab).parameter_count() as u64 } else { 0 };
            let steps = match (position.epoch, position.step_in_epoch) {
                (0, _) | (_, 1..) => position.step,
                (done, 0) => position.step / u64::from(done) * epochs,
            };
            (parameters, steps)
        }
        None => (0, position.step),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn an_adopted_upload_is_indexed_and_counts_against_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::with_data_dir(dir.path());
        config.max_uploads = 1;
        let shared = Shared::open(config).unwrap();
        let (text, empty) = (DatasetId::new_v4(), DatasetId::new_v4());
        fs::write(shared.config.uploaded_dataset_path(text), "a🦀b").unwrap();
        fs::write(shared.config.uploaded_dataset_path(empty), "").unwrap();
        adopt(&shared, &[], &[text, empty], &[]).unwrap();
        let dataset = shared.store.dataset(text).unwrap().unwrap();
        assert_eq!((dataset.name, dataset.bytes, dataset.chars), (None, 6, Some(3)));
        assert_eq!(dataset.sha256, format!("{:x}", Sha256::digest("a🦀b")));
        assert_eq!(shared.store.upload_totals().unwrap(), (1, 6));
        assert!(matches!(shared.uploads.reserve(0), Err(JobError::QuotaExceeded(_))), "the quota counts it");
        assert!(shared.store.dataset(empty).unwrap().is_none());
        let lost = dir.path().join(format!("lost+found/datasets/uploads/{empty}.txt"));
        assert!(lost.exists() && !shared.config.uploaded_dataset_path(empty).exists());
    }

    #[test]
    fn an_image_set_that_loads_is_adopted_with_its_info_and_one_that_does_not_is_moved_aside() {
        use crate::data::import::{ImportedImages, Layout, Split};
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let images = ImportedImages {
            classes: vec!["a".into(), "b".into()],
            channels: 1,
            side: 8,
            train: Split { pixels: vec![7; 3 * 64], labels: vec![0, 1, 1] },
            test: Split { pixels: vec![9; 64], labels: vec![0] },
            layout: Layout::ClassFolders,
        };
        let (bytes, info) = crate::data::uploaded::encode(&images).unwrap();
        let (set, cut) = (DatasetId::new_v4(), DatasetId::new_v4());
        fs::create_dir_all(shared.config.uploads_dir()).unwrap();
        fs::write(shared.config.uploaded_images_path(set), &bytes).unwrap();
        fs::write(shared.config.uploaded_images_path(cut), &bytes[..bytes.len() / 2]).unwrap();
        adopt(&shared, &[], &[], &[set, cut]).unwrap();
        let dataset = shared.store.dataset(set).unwrap().unwrap();
        assert_eq!((dataset.kind, dataset.images, dataset.chars), (DatasetKind::Images, Some(info), None));
        assert_eq!(
            (dataset.bytes, dataset.sha256),
            (bytes.len() as u64, format!("{:x}", Sha256::digest(&bytes)))
        );
        assert!(shared.store.dataset(cut).unwrap().is_none());
        assert!(dir.path().join(format!("lost+found/datasets/uploads/{cut}.safetensors")).exists());
    }
}
