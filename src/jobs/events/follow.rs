//! One watcher of the event history: of one job ([`Follow::new`], `GET /jobs/{id}/events`) or of
//! every job ([`Follow::all`], `GET /events`). Either way it yields the events after a cursor,
//! the stored ones first, then the live ones, each once and in order of id.
//!
//! The watcher subscribes to the channel before it first reads the store, so an event recorded
//! in between is in both: it comes from the store, and its copy on the channel is skipped (its id
//! is not past the cursor). The store announces each event before it lets the next write in, so
//! the channel carries ids in increasing order over all jobs. A watcher that falls behind the
//! channel reads what it missed from the store again, a page at a time. A job's watcher ends
//! after the job's final status or its deletion; a watcher of every job never ends (it yields
//! each deletion it sees live instead), unless the store's channel closes. A deletion is not
//! stored (its job's events go with it), so a watcher of every job that catches up from the store
//! misses the deletions it fell behind on: its client lists the jobs again.

use std::collections::VecDeque;

use tokio::sync::broadcast;

use super::{Announcer, HistorySource, Notice, PAGE, Recorded};
use crate::jobs::JobId;

/// Whose events a watcher follows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scope {
    Job(JobId),
    All,
}

/// One watcher: see the module's documentation.
pub struct Follow {
    scope: Scope,
    /// The id of the last event yielded (or the watcher's `Last-Event-ID`).
    cursor: i64,
    live: broadcast::Receiver<Notice>,
    pub(super) pending: VecDeque<Recorded>,
    /// The store must be read before the channel: at the start, and after falling behind.
    pub(super) catch_up: bool,
    /// Nothing more will come once `pending` is empty.
    done: bool,
}

/// What [`Follow::next`] gives.
#[derive(Debug)]
pub enum Next {
    Event(Recorded),
    /// A job was deleted (only to a watcher of every job; it has no id in the store).
    Deleted(JobId),
    /// The history ended (a job's final status, or the job is gone; for every job, the channel
    /// closed).
    End,
}

impl Follow {
    /// Starts following `job` after event `cursor`. Subscribes before the first store read, so
    /// nothing recorded in between is missed.
    pub fn new(announcer: &Announcer, job: JobId, cursor: i64) -> Self {
        Self::with(Scope::Job(job), announcer.subscribe(), cursor)
    }

    /// Starts following every job after event `cursor`, on `live`: a receiver subscribed before
    /// any store read that the cursor comes from (see [`crate::jobs::store::Store::subscribe`]).
    pub fn all(live: broadcast::Receiver<Notice>, cursor: i64) -> Self {
        Self::with(Scope::All, live, cursor)
    }

    fn with(scope: Scope, live: broadcast::Receiver<Notice>, cursor: i64) -> Self {
        Self { scope, cursor, live, pending: VecDeque::new(), catch_up: true, done: false }
    }

    /// Whether this watcher follows every job (so its events must name their job).
    pub fn is_all(&self) -> bool {
        self.scope == Scope::All
    }

    /// The next event, waiting for one if needed. `source` is read at the start and after the
    /// watcher fell behind the channel.
    pub async fn next(&mut self, source: &impl HistorySource) -> Result<Next, String> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.cursor = event.id;
                self.done |= event.last && self.scope != Scope::All;
                return Ok(Next::Event(event));
            }
            if self.done {
                return Ok(Next::End);
            }
            if self.catch_up {
                self.read_stored(source)?;
                continue;
            }
            match self.live.recv().await {
                Ok(Notice::Event(e)) if self.wants(e.job) && e.id > self.cursor => {
                    self.pending.push_back(Recorded::clone(&e))
                }
                Ok(Notice::Deleted(job)) if self.scope == Scope::All => return Ok(Next::Deleted(job)),
                Ok(Notice::Deleted(job)) if self.wants(job) => self.done = true,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up = true,
                Err(broadcast::error::RecvError::Closed) => self.done = true,
            }
        }
    }

    /// Whether `job`'s events are this watcher's.
    fn wants(&self, job: JobId) -> bool {
        match self.scope {
            Scope::Job(mine) => mine == job,
            Scope::All => true,
        }
    }

    /// Reads the next page of stored events; only called with nothing pending, so the page
    /// starts right after the cursor.
    pub(super) fn read_stored(&mut self, source: &impl HistorySource) -> Result<(), String> {
        let Scope::Job(job) = self.scope else {
            let page = source.all_history(self.cursor, PAGE)?;
            self.catch_up = page.len() == PAGE;
            self.pending.extend(page);
            return Ok(());
        };
        let Some(page) = source.history(job, self.cursor, PAGE)? else {
            self.done = true;
            return Ok(());
        };
        if page.events.len() < PAGE {
            self.catch_up = false;
            // A finished job's history is complete (its final event, if it has one, is in it).
            self.done = page.status.is_finished();
        }
        self.pending.extend(page.events);
        Ok(())
    }
}
