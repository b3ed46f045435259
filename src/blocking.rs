//! Waiting on a lock from wherever the caller runs. The job service's locks (the store's write
//! order, SQLite's connection, the queue) are plain mutexes taken by worker threads and by async
//! handlers alike, and held for a statement: a moment on SQLite, but as long as a PostgreSQL
//! server takes to come back when it restarts. A handler that finds one taken waits through
//! `block_in_place`, so the runtime's other tasks (health probes among them) move to another
//! thread instead of waiting behind it.

use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use tokio::runtime::{Handle, RuntimeFlavor};

/// `mutex`, locked; a lock poisoned by a panic is taken as it is (every holder leaves its data
/// whole before it can panic).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => {
            let wait = || mutex.lock().unwrap_or_else(PoisonError::into_inner);
            match Handle::try_current() {
                Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(wait)
                }
                _ => wait(),
            }
        }
    }
}
