//! The disk under the data directory (the shared dir, `--shared-dir`, when there is one: it holds
//! what grows): how much of it is free, and the floor under which kiln
//! takes no more work (`--min-free-disk-mib`), so that running jobs keep room to checkpoint and
//! record how they end.

use std::path::Path;

use super::error::JobError;
use crate::config::Config;

/// Bytes an unprivileged process may still write on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// `Ok` while the data directory's file system has more than the floor free; a 507 otherwise.
/// A file system that cannot be read counts as full.
pub fn check_floor(config: &Config) -> Result<(), JobError> {
    let floor = config.min_free_disk_mib.saturating_mul(1 << 20);
    let free = free_bytes(config.files_dir()).unwrap_or(0);
    if free > floor {
        return Ok(());
    }
    Err(JobError::InsufficientStorage(format!(
        "the data directory has {} MiB free, at or under this server's floor of {} MiB \
         (--min-free-disk-mib); free space or delete finished jobs",
        free >> 20,
        config.min_free_disk_mib
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_refuses_work_once_free_space_is_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::with_data_dir(dir.path());
        assert!(free_bytes(dir.path()).unwrap() > 0);
        config.min_free_disk_mib = 0;
        assert!(check_floor(&config).is_ok());
        config.min_free_disk_mib = u64::MAX >> 20;
        let error = check_floor(&config).unwrap_err().to_string();
        assert!(error.contains("--min-free-disk-mib"), "{error}");
    }
}
