//! Admission and scheduling: which jobs wait, which run, and how a worker gets the next one.
//!
//! Every waiting job has a [`Lane`]: the CPU, or one GPU device. A worker serves one lane and
//! takes the oldest job waiting in it, so a GPU job waits for its device and never for CPU jobs
//! (nor the reverse). [`QueueState`] is plain data — the waiting jobs in order with their lanes
//! and the cancel flag of each running job — so unit tests drive it directly. [`Queue`] wraps it
//! in a mutex with a condition variable that idle workers (plain threads, never async tasks) wait
//! on.
//!
//! Admission is bounded: a submit that finds `capacity` jobs waiting is refused (the API answers
//! 429), and the check and the insert into the database happen under one lock so the bound holds.
//! Jobs recovered after a restart are queued whatever the bound: nothing accepted is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::JobId;
use crate::backend::Lane;

/// The queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// What happened to a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was waiting and has been taken out of the queue.
    Dequeued,
    /// The job is training; it stops before its next step or evaluation batch.
    Signalled,
    /// The job is neither waiting nor running here.
    NotActive,
}

/// Waiting and running jobs.
#[derive(Debug)]
pub struct QueueState {
    capacity: usize,
    waiting: VecDeque<(JobId, Lane)>,
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

    /// Appends a job to `lane`, whatever the capacity (admission checks
    /// [`QueueState::has_room`] first).
    pub fn push(&mut self, id: JobId, lane: Lane) {
        self.waiting.push_back((id, lane));
    }

    /// Moves the oldest job waiting in `lane` to running and returns it with its cancel flag.
    pub fn start_next(&mut self, lane: Lane) -> Option<(JobId, Arc<AtomicBool>)> {
        let pos = self.waiting.iter().position(|(_, l)| *l == lane)?;
        let (id, _) = self.waiting.remove(pos)?;
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
        if let Some(pos) = self.waiting.iter().position(|(w, _)| *w == id) {
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
        self.running.contains_key(&id) || self.waiting.iter().any(|(w, _)| *w == id)
    }

    /// Number of waiting jobs.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Number of jobs waiting in `lane`.
    pub fn waiting_in(&self, lane: Lane) -> usize {
        self.waiting.iter().filter(|(_, l)| *l == lane).count()
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
        crate::blocking::lock(&self.state)
    }

    /// Runs `insert` (which records the job durably and returns its id) only if there is room,
    /// then queues the job in `lane` — all under the lock, so concurrent submits cannot
    /// overfill it.
    pub fn admit<T, E>(
        &self,
        lane: Lane,
        insert: impl FnOnce() -> Result<(T, JobId), E>,
    ) -> Result<Result<T, E>, QueueFull> {
        let mut state = self.lock();
        if !state.has_room() {
            return Err(QueueFull);
        }
        Ok(insert().map(|(value, id)| {
            state.push(id, lane);
            // Workers of every lane wait on one condition: wake them all, the right one starts it.
            self.changed.notify_all();
            value
        }))
    }

    /// Queues a recovered job, whatever the capacity.
    pub fn push(&self, id: JobId, lane: Lane) {
        self.lock().push(id, lane);
        self.changed.notify_all();
    }

    /// Blocks until a job of `lane` can start, and starts it; `None` once the queue is closed.
    pub fn next_blocking(&self, lane: Lane) -> Option<(JobId, Arc<AtomicBool>)> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(next) = state.start_next(lane) {
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
        q.push(id(1), Lane::Cpu);
        q.push(id(2), Lane::Cpu);
        assert!(!q.has_room());
        let (first, _) = q.start_next(Lane::Cpu).unwrap();
        assert_eq!(first, id(1));
        assert!(q.has_room(), "a running job frees its place in the queue");
        assert!(q.is_active(id(1)) && q.is_active(id(2)));
        q.finish(id(1));
        assert!(!q.is_active(id(1)));
        assert_eq!(q.start_next(Lane::Cpu).unwrap().0, id(2));
        assert!(q.start_next(Lane::Cpu).is_none());
    }

    #[test]
    fn cancel_dequeues_waiting_jobs_and_signals_running_ones() {
        let mut q = QueueState::new(8);
        q.push(id(1), Lane::Cpu);
        q.push(id(2), Lane::Cpu);
        let (_, flag) = q.start_next(Lane::Cpu).unwrap();
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
        assert_eq!(queue.admit(Lane::Cpu, || Ok::<_, ()>(("a", id(1)))), Ok(Ok("a")));
        let mut ran = false;
        let refused = queue.admit(Lane::Cpu, || {
            ran = true;
            Ok::<_, ()>(((), id(2)))
        });
        assert_eq!(refused, Err(QueueFull));
        assert!(!ran);
        assert_eq!(queue.admit(Lane::Cpu, || Err::<((), JobId), _>("db down")), Err(QueueFull));
    }

    #[test]
    fn each_lane_starts_its_own_oldest_job() {
        let mut q = QueueState::new(8);
        q.push(id(1), Lane::Gpu(0));
        q.push(id(2), Lane::Cpu);
        q.push(id(3), Lane::Gpu(0));
        q.push(id(4), Lane::Gpu(1));
        assert_eq!(q.start_next(Lane::Cpu).unwrap().0, id(2), "a CPU worker does not wait behind GPU jobs");
        assert!(q.start_next(Lane::Cpu).is_none());
        assert_eq!(q.start_next(Lane::Gpu(1)).unwrap().0, id(4));
        assert_eq!(q.start_next(Lane::Gpu(0)).unwrap().0, id(1));
        assert_eq!(q.start_next(Lane::Gpu(0)).unwrap().0, id(3));
        assert_eq!(q.waiting(), 0);
    }

    #[test]
    fn a_worker_wakes_for_its_lane_only() {
        let queue = Arc::new(Queue::new(4));
        let gpu = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.next_blocking(Lane::Gpu(0)))
        };
        queue.admit(Lane::Cpu, || Ok::<_, ()>(((), id(1)))).unwrap().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!gpu.is_finished(), "the GPU worker must not take a CPU job");
        queue.admit(Lane::Gpu(0), || Ok::<_, ()>(((), id(2)))).unwrap().unwrap();
        assert_eq!(gpu.join().unwrap().unwrap().0, id(2));
        assert_eq!(queue.lock().waiting(), 1);
    }

    #[test]
    fn closing_wakes_idle_workers() {
        let queue = Arc::new(Queue::new(4));
        let worker = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.next_blocking(Lane::Cpu))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        queue.close();
        assert!(worker.join().unwrap().is_none());
    }
}
