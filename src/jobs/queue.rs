//! This replica's side of the queue. The queue itself is the database's: queued jobs are rows,
//! admission counts them across the cluster and a worker claims the oldest one its lane can run
//! (see [`crate::jobs::store::Claim`]). What stays in this process is what only it can know: the
//! cancel flag of each run its workers hold, and a signal that wakes its idle workers at once when
//! something here queued a job (a submit, a run interrupted). Jobs queued through other replicas
//! are found by polling: an idle worker looks again every [`POLL`].
//!
//! Workers are plain threads, never async tasks: they wait on a condition variable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::JobId;

/// How long an idle worker waits before it looks for queued jobs again, when nothing on this
/// replica woke it: the delay before a job submitted through another replica, or queued again
/// after its replica died, is claimed here.
pub const POLL: Duration = Duration::from_secs(1);

/// The runs of this replica and the wake-up signal.
#[derive(Debug, Default)]
pub struct QueueState {
    /// Each run's claim token and cancel flag, by job: a job taken over and claimed again here
    /// while its fenced run still ends has the new run's entry.
    running: HashMap<JobId, (i64, Arc<AtomicBool>)>,
    /// Workers between claiming a job in the database and recording their run here.
    claiming: usize,
    /// Counts the wake-ups, so a worker that looked before one does not sleep through it.
    wakes: u64,
    closed: bool,
}

impl QueueState {
    /// A worker is about to claim a job: until [`QueueState::start`] or
    /// [`QueueState::claimed_none`], a job the database shows running here may be starting.
    pub fn claiming(&mut self) {
        self.claiming += 1;
    }

    /// The claim found no job.
    pub fn claimed_none(&mut self) {
        self.claiming -= 1;
    }

    /// Records that a worker here runs job `id` under claim `token` (after [`QueueState::claiming`]);
    /// returns the run's cancel flag.
    pub fn start(&mut self, id: JobId, token: i64) -> Arc<AtomicBool> {
        self.claiming -= 1;
        let flag = Arc::new(AtomicBool::new(false));
        self.running.insert(id, (token, flag.clone()));
        flag
    }

    /// Forgets the run of `id` under claim `token` that stopped (not a later run of the job).
    pub fn finish(&mut self, id: JobId, token: i64) {
        if self.running.get(&id).is_some_and(|(t, _)| *t == token) {
            self.running.remove(&id);
        }
    }

    /// Signals the run of `id` on this replica to stop; `false` if no worker here runs it.
    pub fn cancel(&mut self, id: JobId) -> bool {
        match self.running.get(&id) {
            Some((_, flag)) => {
                flag.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Whether a worker here runs `id`, or may be starting it (a claim is under way).
    pub fn may_run(&self, id: JobId) -> bool {
        self.claiming > 0 || self.running.contains_key(&id)
    }

    /// Whether the queue stopped handing out work (the server is shutting down).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// The shared local queue state and the condition idle workers wait on.
#[derive(Default)]
pub struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

impl Queue {
    /// The state, for short inspections and changes.
    pub fn lock(&self) -> MutexGuard<'_, QueueState> {
        crate::blocking::lock(&self.state)
    }

    /// Wakes every idle worker: a job was queued here.
    pub fn wake(&self) {
        self.lock().wakes += 1;
        self.changed.notify_all();
    }

    /// How many wake-ups there have been: a worker reads it before it looks for a job and passes
    /// it to [`Queue::wait`].
    pub fn wakes(&self) -> u64 {
        self.lock().wakes
    }

    /// Waits until a wake-up after the `seen`-th, or `timeout`; `false` once the queue is closed.
    pub fn wait(&self, seen: u64, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| !s.closed && s.wakes == seen)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        !state.closed
    }

    /// Stops handing out work and wakes the idle workers to stop; queued jobs stay queued in the
    /// database.
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
    fn cancel_signals_only_runs_held_here() {
        let mut q = QueueState::default();
        q.claiming();
        assert!(q.may_run(id(1)), "a claim under way may be starting it");
        let flag = q.start(id(1), 5);
        assert!(q.may_run(id(1)) && !q.may_run(id(2)));
        assert!(!q.cancel(id(2)));
        assert!(!flag.load(Ordering::SeqCst));
        assert!(q.cancel(id(1)));
        assert!(flag.load(Ordering::SeqCst));
        q.finish(id(1), 5);
        assert!(!q.may_run(id(1)) && !q.cancel(id(1)));
    }

    #[test]
    fn a_fenced_run_ending_forgets_only_itself() {
        let mut q = QueueState::default();
        q.claiming();
        let old = q.start(id(1), 5);
        // Taken over while this replica was paused, then claimed here again by another worker.
        q.claiming();
        let new = q.start(id(1), 8);
        q.finish(id(1), 5);
        assert!(q.may_run(id(1)), "the new run is still recorded");
        assert!(q.cancel(id(1)));
        assert!(new.load(Ordering::SeqCst) && !old.load(Ordering::SeqCst), "the cancel reaches the new run");
        q.finish(id(1), 8);
        assert!(!q.may_run(id(1)));
    }

    #[test]
    fn a_wake_up_between_a_look_and_the_wait_is_not_slept_through() {
        let queue = Queue::default();
        let seen = queue.wakes();
        queue.wake();
        let started = std::time::Instant::now();
        assert!(queue.wait(seen, Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn idle_workers_wake_when_a_job_is_queued_or_the_queue_closes() {
        let queue = Arc::new(Queue::default());
        let seen = queue.wakes();
        let waiter = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.wait(seen, Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "nothing woke it yet");
        queue.wake();
        assert!(waiter.join().unwrap(), "a wake-up, not a close");

        let seen = queue.wakes();
        let waiter = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.wait(seen, Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(50));
        queue.close();
        assert!(!waiter.join().unwrap(), "closed");
        assert!(!queue.wait(queue.wakes(), Duration::from_secs(30)), "a closed queue never waits");
    }

    #[test]
    fn a_wait_with_nothing_to_wake_it_ends_after_its_timeout() {
        let queue = Queue::default();
        assert!(queue.wait(queue.wakes(), Duration::from_millis(20)));
    }
}
