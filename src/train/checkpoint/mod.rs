//! Checkpoints: what a job needs to resume, and what a client downloads.
//!
//! A checkpoint is a directory `<data-dir>/jobs/<job>/checkpoints/step-<N>/` holding
//! - `model.bpk`: the model's weights and BatchNorm running statistics (Burn burnpack);
//! - `optimizer.bpk`: the optimizer's state (momentum, Adam moments), keyed by parameter id;
//! - `checkpoint.json`: the resolved job spec and, for a language model, its vocabulary (enough
//!   to rebuild the model from this directory alone), and the position in training — epoch,
//!   step, and the running sums of an epoch cut short by a shutdown.
//!
//! It is written into a temporary directory, each file fsynced, then renamed into place and the
//! parent fsynced: a crash leaves either the whole checkpoint or none. One exception: a step
//! written again (a run resumed from its evaluation, ending that epoch) replaces the old
//! directory by removing it first, so a crash between the two leaves neither. The index (sizes, hash,
//! metrics) is kept by whoever the engine reports to ([`super::report::RunLog`]); [`to_prune`]
//! is the retention policy the engine applies to it. [`write`] digests every file it wrote
//! ([`FileDigests`]: size and SHA-256 of each), and [`open_verified`] checks a checkpoint against
//! what the index recorded before a run resumes from it, a client downloads it or a model
//! generates from it: every recorded file present, the manifest readable, each file's size and
//! SHA-256 as recorded (a checkpoint indexed before its files were all recorded is checked on its
//! model file alone).
//!
//! The digests and the checks against them are in [`verify`]. A classifier's weights written by
//! an older kiln, under the names its modules had then, load through the renames of
//! [`crate::models::legacy`].
//!
//! Errors name the file by the path they were given, for the logs; [`CheckpointError::within`]
//! makes that path relative to the data dir before an error can reach a client.
//! [`CheckpointError::damage`] tells a missing file, one that is not as recorded and one that
//! cannot be read apart, so that each is reported as what it is.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, KeyRemapper, ModuleSnapshot};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod export;
#[cfg(test)]
mod legacy_tests;
mod names;
mod verify;

use super::position::Position;
use crate::definition::ValidJobSpec;
use crate::models::{ModelSpec, legacy};
use crate::text::Vocab;

pub use names::{dir_name, is_checkpoint_name, is_temporary};
pub use verify::{FileDigest, FileDigests, digest_files, open_verified};

/// The contents of `checkpoint.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Bumped when the layout changes.
    pub format: u32,
    pub job_id: Uuid,
    pub spec: ValidJobSpec,
    pub position: Position,
    /// A language model's vocabulary: token ids mean nothing without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<Vocab>,
    /// A classifier's class names, in label order (absent in checkpoints older than them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
}

const FORMAT: u32 = 1;
const MODEL_FILE: &str = "model.bpk";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const MANIFEST_FILE: &str = "checkpoint.json";
/// Every file of a checkpoint, the model's first.
const FILES: [&str; 3] = [MODEL_FILE, OPTIMIZER_FILE, MANIFEST_FILE];
/// A checkpoint that could not be written, read or verified; `path` names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {reason}", .path.display())]
    Invalid { path: PathBuf, reason: String },
    /// A file is not what the index recorded when it was written.
    #[error("{}: {found}", .path.display())]
    Mismatch { path: PathBuf, found: String },
}

/// How a checkpoint is damaged (see [`CheckpointError::damage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// A file is gone.
    Missing,
    /// A file's size or SHA-256 is not the one recorded.
    Mismatch,
    /// A file cannot be read as what it should hold (a manifest that does not parse, weights
    /// that do not load).
    Unreadable,
}

impl CheckpointError {
    fn path_mut(&mut self) -> &mut PathBuf {
        match self {
            Self::Io { path, .. } | Self::Invalid { path, .. } | Self::Mismatch { path, .. } => path,
        }
    }

    /// The file at fault, as the error names it.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. } | Self::Invalid { path, .. } | Self::Mismatch { path, .. } => path,
        }
    }

    /// The same error naming its file relative to `root` (the data dir), when it lies under it:
    /// `jobs/<id>/checkpoints/step-0000000012/model.bpk`, never the server's own path.
    pub fn within(mut self, root: &Path) -> Self {
        let path = self.path_mut();
        if let Ok(relative) = path.strip_prefix(root) {
            *path = relative.to_path_buf();
        }
        self
    }

    /// What is wrong, naming the file by its name alone (`model.bpk: …`), for a message that
    /// names the checkpoint otherwise.
    pub fn in_file(&self) -> String {
        let (path, what) = match self {
            Self::Io { path, source } => (path, source.to_string()),
            Self::Invalid { path, reason } => (path, reason.clone()),
            Self::Mismatch { path, found } => (path, found.clone()),
        };
        format!("{}: {what}", path.file_name().unwrap_or_default().to_string_lossy())
    }

    /// Whether the checkpoint itself is damaged — a file missing, unreadable as a checkpoint, or
    /// not what was recorded — rather than the server unable to reach it (permissions, too many
    /// open files), which another try may not be.
    pub fn is_damage(&self) -> bool {
        self.damage().is_some()
    }

    /// How the checkpoint is damaged, if this error is damage (see [`CheckpointError::is_damage`]).
    pub fn damage(&self) -> Option<Damage> {
        match self {
            Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => Some(Damage::Missing),
            Self::Io { .. } => None,
            Self::Invalid { .. } => Some(Damage::Unreadable),
            Self::Mismatch { .. } => Some(Damage::Mismatch),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}

fn invalid(path: &Path, reason: impl ToString) -> CheckpointError {
    CheckpointError::Invalid { path: path.to_path_buf(), reason: reason.to_string() }
}

/// The model file of the checkpoint in `dir`.
pub fn model_path(dir: &Path) -> PathBuf {
    dir.join(MODEL_FILE)
}

fn sync_file(path: &Path) -> Result<(), CheckpointError> {
    File::open(path).and_then(|f| f.sync_all()).map_err(io_err(path))
}

fn sync_dir(path: &Path) -> Result<(), CheckpointError> {
    File::open(path).and_then(|d| d.sync_all()).map_err(io_err(path))
}

/// A checkpoint written to disk, not yet indexed.
pub struct Written {
    pub dir: PathBuf,
    /// SHA-256 and size of its model file.
    pub sha256: String,
    pub bytes: u64,
    /// Every file's.
    pub files: FileDigests,
}

/// What a checkpoint's manifest says besides the position: whose it is and how to rebuild it.
pub struct Identity<'a> {
    pub job_id: Uuid,
    pub spec: &'a ValidJobSpec,
    /// A language model's vocabulary.
    pub vocab: Option<&'a Vocab>,
    /// A classifier's class names, in label order.
    pub classes: Option<&'a [String]>,
}

/// Writes a checkpoint of `model` and `optim` at `position` into its step's directory under
/// `parent` (named by [`dir_name`] for the run holding claim `attempt`), through a temporary directory renamed into place (see the module's note on a step
/// written again). A write that fails removes its temporary directory; one cut short by a crash
/// leaves it, for [`is_temporary`] to find at the next start.
pub fn write<M: Module>(
    parent: &Path,
    attempt: i64,
    identity: &Identity<'_>,
    model: &M,
    optim: &ModuleOptimizer,
    position: &Position,
) -> Result<Written, CheckpointError> {
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let dir = parent.join(dir_name(position.step, attempt));
    let tmp = parent.join(names::temporary());
    fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    if let Err(e) = fill(&tmp, identity, model, optim, position) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    sync_dir(&tmp)?;
    if dir.exists() {
        // A step written again (a resumed job reaching the same step): replace it.
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
    sync_dir(parent)?;
    let files = digest_files(&dir)?;
    let model = &files[MODEL_FILE];
    let (sha256, bytes) = (model.sha256.clone(), model.bytes);
    Ok(Written { dir, sha256, bytes, files })
}

/// Writes the files of a checkpoint into the directory `tmp`, each fsynced, then the directory.
fn fill<M: Module>(
    tmp: &Path,
    identity: &Identity<'_>,
    model: &M,
    optim: &ModuleOptimizer,
    position: &Position,
) -> Result<(), CheckpointError> {
    let model_file = tmp.join(MODEL_FILE);
    model.valid().save_file(&model_file).map_err(|e| invalid(&model_file, e))?;
    let optim_file = tmp.join(OPTIMIZER_FILE);
    optim.save(&optim_file).map_err(|e| invalid(&optim_file, e))?;
    let manifest_file = tmp.join(MANIFEST_FILE);
    let manifest = Manifest {
        format: FORMAT,
        job_id: identity.job_id,
        spec: identity.spec.clone(),
        position: position.clone(),
        vocab: identity.vocab.cloned(),
        classes: identity.classes.map(<[String]>::to_vec),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    File::create(&manifest_file).and_then(|mut f| f.write_all(&json)).map_err(io_err(&manifest_file))?;
    for file in [&model_file, &optim_file, &manifest_file] {
        sync_file(file)?;
    }
    sync_dir(tmp)
}

/// A checkpoint read back: the model on `device`, its optimizer and where training stood.
pub struct Restored<M> {
    pub model: M,
    pub optim: ModuleOptimizer,
    pub position: Position,
}

/// Reads `checkpoint.json` of the checkpoint in `dir`.
pub fn manifest(dir: &Path) -> Result<Manifest, CheckpointError> {
    let manifest_file = dir.join(MANIFEST_FILE);
    let json = fs::read(&manifest_file).map_err(io_err(&manifest_file))?;
    let manifest: Manifest = serde_json::from_slice(&json).map_err(|e| invalid(&manifest_file, e))?;
    if manifest.format != FORMAT {
        return Err(invalid(&manifest_file, format!("format {} is not {FORMAT}", manifest.format)));
    }
    Ok(manifest)
}

/// Loads the weights of the checkpoint in `dir` into a language model (built from the job's
/// spec), for generation. A classifier's go through [`read_weights`], which knows their older
/// names.
pub fn read_model<M: Module>(dir: &Path, model: M) -> Result<M, CheckpointError> {
    load_weights(&dir.join(MODEL_FILE), model, Vec::new())
}

/// Loads the weights of the checkpoint in `dir`, whose `manifest` the caller has read, into
/// `model` (built from that manifest's spec), whichever kiln wrote them: a classifier's weights
/// written under older names are renamed ([`crate::models::legacy`]).
pub fn read_weights<M: Module>(dir: &Path, manifest: &Manifest, model: M) -> Result<M, CheckpointError> {
    let renames = match &manifest.spec.model {
        ModelSpec::Classifier(spec) => legacy::renames(spec),
        ModelSpec::Language(_) => Vec::new(),
    };
    load_weights(&dir.join(MODEL_FILE), model, renames)
}

/// Loads the weights in `model_file` into `model`, each with the parameter id it was saved
/// with (the optimizer's state is keyed by it), after renaming those an older kiln wrote under
/// other names (`renames`, regular expressions and replacements: [`crate::models::legacy`]).
/// Every parameter must find its weight, of its shape, and every weight its parameter.
fn load_weights<M: Module>(
    model_file: &Path,
    mut model: M,
    renames: Vec<(String, String)>,
) -> Result<M, CheckpointError> {
    let remapper = KeyRemapper::from_patterns(renames).map_err(|e| invalid(model_file, e))?;
    let mut store = BurnpackStore::from_file(model_file).remap(remapper);
    let loaded = model.load_from(&mut store).map_err(|e| invalid(model_file, e))?;
    if !loaded.unused.is_empty() {
        let unused = loaded.unused.join(", ");
        return Err(invalid(model_file, format!("weights the model has no parameter for: {unused}")));
    }
    Ok(model)
}

/// Reads the checkpoint in `dir`, whose `manifest` the caller has read (and checked), into a
/// fresh `model`, built from the job's spec on the plain (non-autodiff) device it will train on,
/// and a fresh `optim`. The model comes back ready to train: on that device's autodiff twin,
/// every parameter tracking gradients.
pub fn read<M: Module>(
    dir: &Path,
    manifest: &Manifest,
    model: M,
    optim: ModuleOptimizer,
) -> Result<Restored<M>, CheckpointError> {
    // Loaded into an autodiff model, Burn's parameters stop tracking gradients; loaded into a
    // plain one and switched to training, they track them (see the checkpoint test in train::fit).
    let model = read_weights(dir, manifest, model)?.train();
    let optim_file = dir.join(OPTIMIZER_FILE);
    let optim = optim.load(&optim_file).map_err(|e| invalid(&optim_file, e))?;
    Ok(Restored { model, optim, position: manifest.position.clone() })
}

/// Removes a checkpoint directory; a missing one is not an error.
pub fn remove(dir: &Path) -> Result<(), CheckpointError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(dir)(e)),
        _ => Ok(()),
    }
}

/// Which checkpoints to delete so that the newest `keep_last` and the best (by
/// [`crate::metrics::EpochMetrics::score`]: test accuracy, or lower perplexity) remain.
/// `scores` are the kept checkpoints' scores, oldest first; returns indices into it.
pub fn to_prune(scores: &[Option<f64>], keep_last: usize) -> Vec<usize> {
    let best = scores
        .iter()
        .enumerate()
        .filter_map(|(i, score)| score.map(|score| (i, score)))
        .fold(None, |best: Option<(usize, f64)>, (i, acc)| match best {
            Some((_, b)) if b >= acc => best,
            _ => Some((i, acc)),
        })
        .map(|(i, _)| i);
    let newest_from = scores.len().saturating_sub(keep_last);
    (0..newest_from).filter(|i| Some(*i) != best).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_language_model_keeps_its_lowest_perplexity() {
        // A language model's score is minus its perplexity.
        let cps = [Some(-9.0), Some(-1.5), Some(-2.0), Some(-3.0)];
        assert_eq!(to_prune(&cps, 1), vec![0, 2]);
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_best() {
        let cps = [Some(0.5), Some(0.9), Some(0.7), None, Some(0.8)];
        assert_eq!(to_prune(&cps, 2), vec![0, 2]);
        assert_eq!(to_prune(&cps, 5), Vec::<usize>::new());
        assert_eq!(to_prune(&cps[..1], 1), Vec::<usize>::new());
        // The best among the newest is kept anyway; nothing older is spared for it.
        let cps = [Some(0.1), Some(0.2), Some(0.9)];
        assert_eq!(to_prune(&cps, 1), vec![0, 1]);
    }
}
