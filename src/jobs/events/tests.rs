//! Following a job: the stored history first, then the live events, each once and in order.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A store stand-in: a job's status and its recorded events.
struct Source {
    status: Mutex<JobStatus>,
    events: Mutex<Vec<Recorded>>,
    /// How many times watchers read it.
    reads: AtomicUsize,
}

impl Source {
    fn new(status: JobStatus) -> Self {
        Self { status: Mutex::new(status), events: Mutex::default(), reads: AtomicUsize::new(0) }
    }

    /// Records event `id` (a step, or a final status when `last`) and returns it to announce.
    fn record(&self, job: JobId, id: i64, last: bool) -> Recorded {
        let event =
            Recorded { id, job, kind: if last { "status" } else { "step" }, data: id.to_string(), last };
        self.events.lock().unwrap().push(event.clone());
        if last {
            *self.status.lock().unwrap() = JobStatus::Succeeded;
        }
        event
    }
}

impl HistorySource for Source {
    fn history(&self, job: JobId, after: i64, limit: usize) -> Result<Option<History>, String> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let events = self.events.lock().unwrap();
        let page = events.iter().filter(|e| e.job == job && e.id > after).take(limit).cloned().collect();
        Ok(Some(History { status: *self.status.lock().unwrap(), events: page }))
    }
}

/// Everything `follow` yields until the end, as event ids.
async fn drain(follow: &mut Follow, source: &Source) -> Vec<i64> {
    let mut ids = Vec::new();
    loop {
        match follow.next(source).await.unwrap() {
            Next::Event(e) => ids.push(e.id),
            Next::End => return ids,
        }
    }
}

#[tokio::test]
async fn stored_events_come_first_then_live_ones_each_once() {
    let (job, announcer, source) = (JobId::new_v4(), Announcer::default(), Source::new(JobStatus::Running));
    source.record(job, 1, false);
    let mut follow = Follow::new(&announcer, job, 0);
    // Recorded after the watcher subscribed: both in the store and on the channel.
    let both = [source.record(job, 2, false), source.record(job, 3, false)];
    announcer.announce(both);
    let other = JobId::new_v4();
    announcer.announce([Recorded { id: 4, job: other, kind: "step", data: String::new(), last: false }]);
    let live = [source.record(job, 5, false), source.record(job, 6, true)];
    announcer.announce(live);
    assert_eq!(drain(&mut follow, &source).await, [1, 2, 3, 5, 6]);
}

#[tokio::test]
async fn a_cursor_resumes_after_the_last_event_seen() {
    let (job, announcer, source) = (JobId::new_v4(), Announcer::default(), Source::new(JobStatus::Running));
    for id in 1..=4 {
        source.record(job, id, id == 4);
    }
    assert_eq!(drain(&mut Follow::new(&announcer, job, 2), &source).await, [3, 4]);
    assert_eq!(drain(&mut Follow::new(&announcer, job, 4), &source).await, Vec::<i64>::new());
}

#[tokio::test]
async fn a_watcher_that_falls_behind_the_channel_reads_the_store_again() {
    let (job, source) = (JobId::new_v4(), Source::new(JobStatus::Running));
    let announcer = Announcer::with_capacity(4);
    let mut follow = Follow::new(&announcer, job, 0);
    // The first read of the store: nothing yet, so the watcher waits on the channel.
    follow.read_stored(&source).unwrap();
    assert!(follow.pending.is_empty() && !follow.catch_up);
    let many: Vec<_> = (1..=50).map(|id| source.record(job, id, id == 50)).collect();
    announcer.announce(many);
    assert_eq!(drain(&mut follow, &source).await, (1..=50).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_long_history_is_read_in_pages() {
    let (job, announcer, source) = (JobId::new_v4(), Announcer::default(), Source::new(JobStatus::Running));
    let total = PAGE as i64 * 2 + 7;
    for id in 1..=total {
        source.record(job, id, id == total);
    }
    assert_eq!(drain(&mut Follow::new(&announcer, job, 0), &source).await, (1..=total).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_finished_job_without_a_final_event_still_ends() {
    // Jobs finished before kiln kept events have no history at all.
    let (job, announcer) = (JobId::new_v4(), Announcer::default());
    let source = Source::new(JobStatus::Failed);
    assert!(drain(&mut Follow::new(&announcer, job, 0), &source).await.is_empty());
}

#[tokio::test]
async fn deleting_the_job_ends_its_watchers() {
    let (job, announcer, source) = (JobId::new_v4(), Announcer::default(), Source::new(JobStatus::Running));
    source.record(job, 1, false);
    let mut follow = Follow::new(&announcer, job, 0);
    announcer.deleted(JobId::new_v4());
    announcer.deleted(job);
    assert_eq!(drain(&mut follow, &source).await, [1]);
}

#[tokio::test]
async fn live_events_reach_every_watcher_without_reading_the_store_again() {
    let (job, announcer, source) = (JobId::new_v4(), Announcer::default(), Source::new(JobStatus::Running));
    let mut watchers: Vec<Follow> = (0..20).map(|_| Follow::new(&announcer, job, 0)).collect();
    for watcher in &mut watchers {
        watcher.read_stored(&source).unwrap();
    }
    assert_eq!(source.reads.load(Ordering::SeqCst), 20, "one read each to start");
    let live: Vec<_> = (1..=100).map(|id| source.record(job, id, id == 100)).collect();
    announcer.announce(live);
    for watcher in &mut watchers {
        assert_eq!(drain(watcher, &source).await, (1..=100).collect::<Vec<_>>());
    }
    assert_eq!(source.reads.load(Ordering::SeqCst), 20, "100 live events cost no read");
}
