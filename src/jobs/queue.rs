//! Admission and scheduling: which jobs wait, which run, and how a worker gets the next one.
//!
//! [`QueueState`] is plain data — the waiting jobs in order and the cancel flag of each running
//! job — so unit tests drive it directly. [`Queue`] wraps it in a mutex with a condition variable
//! that idle workers (plain threads, never async tasks) wait on.
//!
//! Admission is bounded: a submit that finds `capacity` jobs waiting is refused (the API answers
//! 429), and the check and the insert into the database happen under one lock so the bound holds.
//! Jobs recovered after a restart are queued whatever the bound: nothing accepted is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::JobId;

/// The queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// What happened to a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was waiting and has been taken out of the queue.
    Dequeued,
    /// The job is training; it stops at its next step boundary.
    Signalled,
    /// The job is neither waiting nor running here.
    NotActive,
}

/// Waiting and running jobs.
#[derive(Debug)]
pub struct QueueState {
    capacity: usize,
    waiting: VecDeque<JobId>,
    running: HashMap<JobId, Arc<AtomicBool>>,
    closed: bool,
}

impl QueueState {
    /// An empty queue admitting at most `capacity` waiting jobs.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, waiting: VecDeque::new(), running: HashMap::new(), closed: false }
    }

    /// Whether a submit would be admitted now.
    pub fn has_room(&self) -> bool {
        !self.closed && self.waiting.len() < self.capacity
    }

    /// Appends a job, whatever the capacity (admission checks [`QueueState::has_room`] first).
    pub fn push(&mut self, id: JobId) {
        self.waiting.push_back(id);
    }

    /// Moves the oldest waiting job to running and returns it with its cancel flag.
    pub fn start_next(&mut self) -> Option<(JobId, Arc<AtomicBool>)> {
        let id = self.waiting.pop_front()?;
        let flag = Arc::new(AtomicBool::new(false));
        self.running.insert(id, flag.clone());
        Some((id, flag))
    }

    /// Forgets a job that stopped running.
    pub fn finish(&mut self, id: JobId) {
        self.running.remove(&id);
    }

    /// Cancels a waiting job or signals a running one.
    pub fn cancel(&mut self, id: JobId) -> CancelOutcome {
        if let Some(pos) = self.waiting.iter().position(|w| *w == id) {
            self.waiting.remove(pos);
            CancelOutcome::Dequeued
        } else if let Some(flag) = self.running.get(&id) {
            flag.store(true, Ordering::SeqCst);
            CancelOutcome::Signalled
        } else {
            CancelOutcome::NotActive
        }
    }

    /// Whether `id` is waiting or running.
    pub fn is_active(&self, id: JobId) -> bool {
        self.running.contains_key(&id) || self.waiting.contains(&id)
    }

    /// Number of waiting jobs.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// The shared queue.
pub struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

impl Queue {
    /// A queue admitting at most `capacity` waiting jobs.
    pub fn new(capacity: usize) -> Self {
        Self { state: Mutex::new(QueueState::new(capacity)), changed: Condvar::new() }
    }

    /// The state, for short inspections and changes.
    pub fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `insert` (which records the job durably and returns its id) only if there is room,
    /// then queues the job — all under the lock, so concurrent submits cannot overfill it.
    pub fn admit<T, E>(
        &self,
        insert: impl FnOnce() -> Result<(T, JobId), E>,
    ) -> Result<Result<T, E>, QueueFull> {
        let mut state = self.lock();
        if !state.has_room() {
            return Err(QueueFull);
        }
        Ok(insert().map(|(value, id)| {
            state.push(id);
            self.changed.notify_one();
            value
        }))
    }

    /// Queues a recovered job, whatever the capacity.
    pub fn push(&self, id: JobId) {
        self.lock().push(id);
        self.changed.notify_one();
    }

    /// Blocks until a job can start, and starts it; `None` once the queue is closed.
    pub fn next_blocking(&self) -> Option<(JobId, Arc<AtomicBool>)> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(next) = state.start_next() {
                return Some(next);
            }
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Stops handing out jobs and refuses new ones; waiting jobs stay recorded as queued.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> JobId {
        JobId::from_u128(n)
    }

    #[test]
    fn jobs_start_in_order_and_capacity_counts_only_waiting_jobs() {
        let mut q = QueueState::new(2);
        q.push(id(1));
        q.push(id(2));
        assert!(!q.has_room());
        let (first, _) = q.start_next().unwrap();
        assert_eq!(first, id(1));
        assert!(q.has_room(), "a running job frees its place in the queue");
        assert!(q.is_active(id(1)) && q.is_active(id(2)));
        q.finish(id(1));
        assert!(!q.is_active(id(1)));
        assert_eq!(q.start_next().unwrap().0, id(2));
        assert!(q.start_next().is_none());
    }

    #[test]
    fn cancel_dequeues_waiting_jobs_and_signals_running_ones() {
        let mut q = QueueState::new(8);
        q.push(id(1));
        q.push(id(2));
        let (_, flag) = q.start_next().unwrap();
        assert_eq!(q.cancel(id(2)), CancelOutcome::Dequeued);
        assert_eq!(q.waiting(), 0);
        assert!(!flag.load(Ordering::SeqCst));
        assert_eq!(q.cancel(id(1)), CancelOutcome::Signalled);
        assert!(flag.load(Ordering::SeqCst));
        assert_eq!(q.cancel(id(3)), CancelOutcome::NotActive);
    }

    #[test]
    fn admit_refuses_when_full_without_running_the_insert() {
        let queue = Queue::new(1);
        assert_eq!(queue.admit(|| Ok::<_, ()>(("a", id(1)))), Ok(Ok("a")));
        let mut ran = false;
        let refused = queue.admit(|| {
            ran = true;
            Ok::<_, ()>(((), id(2)))
        });
        assert_eq!(refused, Err(QueueFull));
        assert!(!ran);
        assert_eq!(queue.admit(|| Err::<((), JobId), _>("db down")), Err(QueueFull));
    }

    #[test]
    fn closing_wakes_idle_workers() {
        let queue = Arc::new(Queue::new(4));
        let worker = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.next_blocking())
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        queue.close();
        assert!(worker.join().unwrap().is_none());
    }
}
