//! Reading caught panics: training and device discovery run under `catch_unwind`, and the
//! message of what they caught is what a failed job or an unusable device reports.

/// The message of a caught panic (`panic!` with a literal or a formatted string), or
/// "no message".
pub(crate) fn message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("no message")
}
