//! A checkpoint's files against what the index recorded of them: [`digest_files`] measures the
//! size and SHA-256 of each ([`FileDigests`]) once a checkpoint is written, and [`open_verified`]
//! checks a checkpoint before a run resumes from it, a client downloads it or a model generates
//! from it, naming the plainest cause first: a recorded file missing, then a manifest that does
//! not parse, then a size or SHA-256 not as recorded.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{CheckpointError, FILES, MANIFEST_FILE, MODEL_FILE, io_err, manifest, model_path};

/// Size and SHA-256 (lowercase hex) of one file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
}

/// The digests of a checkpoint's files by name: `model.bpk`, `optimizer.bpk`, `checkpoint.json`.
pub type FileDigests = BTreeMap<String, FileDigest>;

/// SHA-256 and size of what `file` (at `path`) holds from where it stands.
fn digest(mut file: impl Read, path: &Path) -> Result<(String, u64), CheckpointError> {
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
    let hex = format!("{:x}", hasher.finalize());
    Ok((hex, total))
}

/// Size and SHA-256 of every file of the checkpoint in `dir`, as [`write`] records them.
pub fn digest_files(dir: &Path) -> Result<FileDigests, CheckpointError> {
    let mut files = FileDigests::new();
    for name in FILES {
        let path = dir.join(name);
        let (sha256, bytes) = digest(File::open(&path).map_err(io_err(&path))?, &path)?;
        files.insert(name.to_string(), FileDigest { bytes, sha256 });
    }
    Ok(files)
}

/// Checks the checkpoint in `dir` against what the index recorded — its model file's size
/// (`bytes`) and SHA-256 (hex), and every file's when `files` was recorded — and returns the
/// model file open at its start, so that what a caller reads is what was checked (a file pruned
/// meanwhile stays readable through it).
///
/// The checks run from the plainest cause to the subtlest, so the error names the real one:
/// a recorded file missing, then (with `files`) a manifest that does not parse, then a size or
/// SHA-256 that is not the one recorded. Only the three files of a checkpoint are read, whatever
/// names `files` holds.
pub fn open_verified(
    dir: &Path,
    bytes: u64,
    sha256: &str,
    files: Option<&FileDigests>,
) -> Result<File, CheckpointError> {
    let model = FileDigest { bytes, sha256: sha256.to_string() };
    let mut expected = vec![(MODEL_FILE, &model)];
    if let Some(files) = files {
        let others = FILES[1..].iter().filter_map(|name| files.get(*name).map(|d| (*name, d)));
        expected.extend(others);
    }
    for (name, _) in &expected {
        let path = dir.join(name);
        fs::metadata(&path).map_err(io_err(&path))?;
    }
    if expected.iter().any(|(name, _)| *name == MANIFEST_FILE) {
        manifest(dir)?;
    }
    for (name, recorded) in &expected[1..] {
        let path = dir.join(name);
        check(&mut File::open(&path).map_err(io_err(&path))?, &path, recorded)?;
    }
    let path = model_path(dir);
    let mut file = File::open(&path).map_err(io_err(&path))?;
    check(&mut file, &path, &model)?;
    file.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
    Ok(file)
}

/// Checks that what `file` (at `path`) holds has the `recorded` size and SHA-256.
fn check(file: &mut File, path: &Path, recorded: &FileDigest) -> Result<(), CheckpointError> {
    let (found, size) = digest(&mut *file, path)?;
    let mismatch = |found: String| CheckpointError::Mismatch { path: path.to_path_buf(), found };
    if size != recorded.bytes {
        return Err(mismatch(format!("{size} bytes where {} were recorded", recorded.bytes)));
    }
    if found != recorded.sha256 {
        return Err(mismatch("its SHA-256 is not the one recorded".to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::train::checkpoint::Damage;

    #[test]
    fn a_model_file_is_served_only_as_it_was_recorded() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("jobs/j/checkpoints/step-0000000004");
        fs::create_dir_all(&dir).unwrap();
        let weights: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        fs::write(model_path(&dir), &weights).unwrap();
        let (sha256, bytes) = digest(&weights[..], Path::new("-")).unwrap();
        assert_eq!(bytes, 5000);

        let mut read = Vec::new();
        open_verified(&dir, bytes, &sha256, None).unwrap().read_to_end(&mut read).unwrap();
        assert_eq!(read, weights, "read from its start");

        let mut flipped = weights.clone();
        flipped[2500] ^= 0x01;
        fs::write(model_path(&dir), &flipped).unwrap();
        let error = open_verified(&dir, bytes, &sha256, None).unwrap_err();
        assert_eq!(error.damage(), Some(Damage::Mismatch), "{error}");
        assert_eq!(error.in_file(), "model.bpk: its SHA-256 is not the one recorded");

        fs::write(model_path(&dir), &weights[..4000]).unwrap();
        let error = open_verified(&dir, bytes, &sha256, None).unwrap_err();
        assert_eq!(error.in_file(), "model.bpk: 4000 bytes where 5000 were recorded");
        let shown = error.within(root.path()).to_string();
        assert_eq!(
            shown,
            "jobs/j/checkpoints/step-0000000004/model.bpk: 4000 bytes where 5000 were recorded"
        );

        fs::remove_file(model_path(&dir)).unwrap();
        let error = open_verified(&dir, bytes, &sha256, None).unwrap_err();
        assert_eq!(error.damage(), Some(Damage::Missing), "a missing file is damage: {error}");
    }
}
