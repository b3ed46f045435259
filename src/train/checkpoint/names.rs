//! How the entries of a job's checkpoints directory are named: a checkpoint's directory
//! (`step-<step>`, then `-<claim>`), and the temporary directory of a write in progress, which the
//! start-up sweep tells apart by these names.

/// How the temporary directory of a write in progress is named: `.tmp-<uuid>`.
const TMP_PREFIX: &str = ".tmp-";
/// How a checkpoint's directory is named: `step-<step, 10 digits>`, then `-<claim>` when the run
/// that wrote it held a claim (see [`dir_name`]).
const STEP_PREFIX: &str = "step-";

/// The name of the directory of a checkpoint at `step` written by the run holding claim
/// `attempt` (0: none). Two runs of one job never share a directory: a run fenced off, still
/// writing before its next write to the database is refused, cannot replace the checkpoint of the
/// run that took the job over.
pub fn dir_name(step: u64, attempt: i64) -> String {
    match attempt {
        0 => format!("{STEP_PREFIX}{step:010}"),
        claim => format!("{STEP_PREFIX}{step:010}-{claim}"),
    }
}

/// A new temporary directory's name.
pub(super) fn temporary() -> String {
    format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4())
}

/// Whether `name`, an entry of a job's checkpoints directory, is the temporary directory of a
/// write that never finished.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with(TMP_PREFIX)
}

/// Whether `name`, an entry of a job's checkpoints directory, is named as a checkpoint is.
pub fn is_checkpoint_name(name: &str) -> bool {
    name.starts_with(STEP_PREFIX)
}
