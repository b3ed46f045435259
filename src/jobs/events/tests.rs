//! Following a job, or every job: the stored history first, then the live events, each once and
//! in order.

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

    fn all_history(&self, after: i64, limit: usize) -> Result<Vec<Recorded>, String> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let events = self.events.lock().unwrap();
        Ok(events.iter().filter(|e| e.id > after).take(limit).cloned().collect())
    }
}

/// Everything `follow` yields until the end, as event ids.
async fn drain(follow: &mut Follow, source: &Source) -> Vec<i64> {
    let mut ids = Vec::new();
    loop {
        match follow.next(source).await.unwrap() {
            Next::Event(e) => ids.push(e.id),
            Next::End => return ids,
            Next::Deleted(job) => panic!("a job's watcher is told of deleting {job}"),
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

/// The next `n` things a watcher of every job yields, as `(id, job)` (id 0: a deletion); fails if
/// one does not come within a second.
async fn take_all(follow: &mut Follow, source: &Source, n: usize) -> Vec<(i64, JobId)> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let next = tokio::time::timeout(std::time::Duration::from_secs(1), follow.next(source));
        match next.await.expect("the next event in time").unwrap() {
            Next::Event(e) => seen.push((e.id, e.job)),
            Next::Deleted(job) => seen.push((0, job)),
            Next::End => panic!("a watcher of every job ended after {seen:?}"),
        }
    }
    seen
}

/// Whether `follow` is waiting: nothing more to yield, and not ended.
async fn waits(follow: &mut Follow, source: &Source) -> bool {
    tokio::time::timeout(std::time::Duration::from_millis(50), follow.next(source)).await.is_err()
}

#[tokio::test]
async fn a_watcher_of_every_job_gets_all_their_events_in_order_each_once_past_final_statuses() {
    let (a, b, announcer, source) =
        (JobId::new_v4(), JobId::new_v4(), Announcer::default(), Source::new(JobStatus::Running));
    source.record(a, 1, false);
    source.record(b, 2, false);
    let mut follow = Follow::all(announcer.subscribe(), 0);
    assert!(follow.is_all());
    // Recorded after the watcher subscribed: in the store and on the channel.
    announcer.announce([source.record(a, 3, true), source.record(b, 4, false)]);
    announcer.announce([source.record(b, 5, true)]);
    let seen = take_all(&mut follow, &source, 5).await;
    assert_eq!(seen, [(1, a), (2, b), (3, a), (4, b), (5, b)]);
    assert!(waits(&mut follow, &source).await, "a final status ends nothing");
    announcer.announce([source.record(a, 6, false)]);
    assert_eq!(take_all(&mut follow, &source, 1).await, [(6, a)]);

    // From a cursor: only later events.
    let mut resumed = Follow::all(announcer.subscribe(), 4);
    assert_eq!(take_all(&mut resumed, &source, 2).await, [(5, b), (6, a)]);
    assert!(waits(&mut resumed, &source).await);
}

#[tokio::test]
async fn a_watcher_of_every_job_that_falls_behind_catches_up_from_the_store() {
    let (a, b, source) = (JobId::new_v4(), JobId::new_v4(), Source::new(JobStatus::Running));
    let announcer = Announcer::with_capacity(4);
    let mut follow = Follow::all(announcer.subscribe(), 0);
    follow.read_stored(&source).unwrap();
    assert!(follow.pending.is_empty() && !follow.catch_up, "waits on the channel");
    let many: Vec<_> = (1..=50).map(|id| source.record(if id % 3 == 0 { a } else { b }, id, false)).collect();
    announcer.announce(many);
    let ids: Vec<i64> = take_all(&mut follow, &source, 50).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>());
    assert!(waits(&mut follow, &source).await, "nothing twice");
}

#[tokio::test]
async fn a_watcher_of_every_job_reads_a_long_history_in_pages() {
    let (a, b, announcer, source) =
        (JobId::new_v4(), JobId::new_v4(), Announcer::default(), Source::new(JobStatus::Running));
    let total = PAGE as i64 * 2 + 7;
    for id in 1..=total {
        source.record(if id % 2 == 0 { a } else { b }, id, false);
    }
    let mut follow = Follow::all(announcer.subscribe(), 0);
    let ids: Vec<i64> =
        take_all(&mut follow, &source, total as usize).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, (1..=total).collect::<Vec<_>>());
    assert_eq!(source.reads.load(Ordering::SeqCst), 3, "three pages, the last one short");
}

#[tokio::test]
async fn a_deletion_reaches_a_watcher_of_every_job_in_its_place() {
    let (a, b, announcer, source) =
        (JobId::new_v4(), JobId::new_v4(), Announcer::default(), Source::new(JobStatus::Running));
    let mut follow = Follow::all(announcer.subscribe(), 0);
    // Live from the start: a deletion has no id, so only the channel places it among the events.
    follow.read_stored(&source).unwrap();
    let mut of_a = Follow::new(&announcer, a, 0);
    announcer.announce([source.record(a, 1, false), source.record(b, 2, false)]);
    announcer.deleted(a);
    announcer.announce([source.record(b, 3, false)]);
    assert_eq!(take_all(&mut follow, &source, 4).await, [(1, a), (2, b), (0, a), (3, b)]);
    assert_eq!(drain(&mut of_a, &source).await, [1], "a job's own watcher ends instead");
}

#[test]
fn a_body_sent_to_a_watcher_of_every_job_names_the_job_first() {
    let job = JobId::new_v4();
    let event = |data: &str| Recorded { id: 1, job, kind: "status", data: data.into(), last: false };
    let running = event(r#"{"status":"running","backend":"cpu (burn-flex)"}"#).data_with_job();
    assert_eq!(running, format!(r#"{{"job":"{job}","status":"running","backend":"cpu (burn-flex)"}}"#));
    assert_eq!(event("{}").data_with_job(), format!(r#"{{"job":"{job}"}}"#));
    assert_eq!(deleted_data(job), format!(r#"{{"job":"{job}"}}"#));
    let parsed: serde_json::Value = serde_json::from_str(&running).unwrap();
    assert_eq!(parsed["job"], job.to_string());
}
