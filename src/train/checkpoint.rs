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
//! is the retention policy the engine applies to it.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::position::Position;
use super::report::KeptCheckpoint;
use crate::definition::ValidJobSpec;
use crate::text::Vocab;

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
}

const FORMAT: u32 = 1;
const MODEL_FILE: &str = "model.bpk";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const MANIFEST_FILE: &str = "checkpoint.json";

/// A checkpoint that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.display().to_string(), source }
}

fn invalid(path: &Path, reason: impl ToString) -> CheckpointError {
    CheckpointError::Invalid { path: path.display().to_string(), reason: reason.to_string() }
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

/// SHA-256 and size of a file.
fn digest(path: &Path) -> Result<(String, u64), CheckpointError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    let hex = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, total))
}

/// A checkpoint written to disk, not yet indexed.
pub struct Written {
    pub dir: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// What a checkpoint's manifest says besides the position: whose it is and how to rebuild it.
pub struct Identity<'a> {
    pub job_id: Uuid,
    pub spec: &'a ValidJobSpec,
    /// A language model's vocabulary.
    pub vocab: Option<&'a Vocab>,
}

/// Writes a checkpoint of `model` and `optim` at `position` into its step's directory under
/// `parent`, through a temporary directory renamed into place (see the module's note on a step
/// written again).
pub fn write<M: Module>(
    parent: &Path,
    identity: &Identity<'_>,
    model: &M,
    optim: &ModuleOptimizer,
    position: &Position,
) -> Result<Written, CheckpointError> {
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let dir = parent.join(format!("step-{:010}", position.step));
    let tmp = parent.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    fs::create_dir(&tmp).map_err(io_err(&tmp))?;

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
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    File::create(&manifest_file).and_then(|mut f| f.write_all(&json)).map_err(io_err(&manifest_file))?;
    for file in [&model_file, &optim_file, &manifest_file] {
        sync_file(file)?;
    }
    sync_dir(&tmp)?;
    if dir.exists() {
        // A step written again (a resumed job reaching the same step): replace it.
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
    sync_dir(parent)?;
    let (sha256, bytes) = digest(&model_path(&dir))?;
    Ok(Written { dir, sha256, bytes })
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

/// Loads the weights of the checkpoint in `dir` into `model` (built from the job's spec),
/// for evaluation or generation.
pub fn read_model<M: Module>(dir: &Path, model: M) -> Result<M, CheckpointError> {
    let model_file = dir.join(MODEL_FILE);
    model.try_load_file(&model_file).map_err(|e| invalid(&model_file, e))
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
    let model = read_model(dir, model)?.train();
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
/// `checkpoints` is oldest first; returns indices into it.
pub fn to_prune(checkpoints: &[KeptCheckpoint], keep_last: usize) -> Vec<usize> {
    let best = checkpoints
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.score.map(|score| (i, score)))
        .fold(None, |best: Option<(usize, f64)>, (i, acc)| match best {
            Some((_, b)) if b >= acc => best,
            _ => Some((i, acc)),
        })
        .map(|(i, _)| i);
    let newest_from = checkpoints.len().saturating_sub(keep_last);
    (0..newest_from).filter(|i| Some(*i) != best).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(id: i64, score: Option<f64>) -> KeptCheckpoint {
        KeptCheckpoint { id, dir: PathBuf::from(format!("step-{id}")), score }
    }

    #[test]
    fn a_language_model_keeps_its_lowest_perplexity() {
        // A language model's score is minus its perplexity.
        let cps = [kept(1, Some(-9.0)), kept(2, Some(-1.5)), kept(3, Some(-2.0)), kept(4, Some(-3.0))];
        assert_eq!(to_prune(&cps, 1), vec![0, 2]);
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_best() {
        let cps =
            [kept(1, Some(0.5)), kept(2, Some(0.9)), kept(3, Some(0.7)), kept(4, None), kept(5, Some(0.8))];
        assert_eq!(to_prune(&cps, 2), vec![0, 2]);
        assert_eq!(to_prune(&cps, 5), Vec::<usize>::new());
        assert_eq!(to_prune(&cps[..1], 1), Vec::<usize>::new());
        // The best among the newest is kept anyway; nothing older is spared for it.
        let cps = [kept(1, Some(0.1)), kept(2, Some(0.2)), kept(3, Some(0.9))];
        assert_eq!(to_prune(&cps, 1), vec![0, 1]);
    }
}
