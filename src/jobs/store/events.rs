//! The event history of each job (see [`crate::jobs::events`]): appended inside the transaction
//! that records the fact, announced after it commits — on SQLite by the writer, before the store
//! takes the next write, so the channel carries ids in order; on PostgreSQL by every replica's
//! listener ([`super::feed`]) — and read back by watchers that catch up, of one job or of all.
use super::sql::{Dialect, Row, Sql, args};
use super::{Result, Store, StoreError, rows};
use crate::jobs::events::{History, HistorySource, JobEvent, Recorded};
use crate::jobs::{JobId, JobStatus};

/// The PostgreSQL channel on which a transaction that appends events notifies the replicas'
/// listeners (see [`super::feed`]).
pub(super) const CHANNEL: &str = "kiln_events";
/// The payload of a deletion's notification on [`CHANNEL`] is this, then the job's id.
pub(super) const DELETED: &str = "deleted:";

/// An arbitrary constant: the advisory lock that every PostgreSQL transaction appending events
/// holds from its first event to its commit, so events commit in the order of their ids across
/// replicas (see [`super::feed`]).
const EVENTS_LOCK: i64 = 0x6b696c6e_0002;

/// Appends `event` to job `id`'s history inside `tx`; returns it as recorded, to announce once
/// `tx` commits. On PostgreSQL, first takes the events lock and notifies the replicas' listeners
/// (delivered at the commit; several in one transaction arrive as one).
pub(super) fn append(tx: &mut dyn Sql, id: JobId, event: &JobEvent) -> Result<Recorded> {
    if tx.dialect() == Dialect::Postgres {
        let notify = format!("SELECT pg_advisory_xact_lock($1), pg_notify('{}', '')", CHANNEL);
        tx.execute(&notify, args![EVENTS_LOCK])?;
    }
    let data = event.data()?;
    let seq = tx
        .query_one(
            "INSERT INTO events (job_id, kind, data) VALUES ($1, $2, $3) RETURNING seq",
            args![id, event.kind(), data.as_str()],
        )?
        .get::<i64>(0)?;
    Ok(Recorded { id: seq, job: id, kind: event.kind(), data, last: event.is_final() })
}

/// The kinds the store writes, by name, for reading rows back.
fn kind(name: &str) -> Result<&'static str> {
    ["status", "step", "epoch", "checkpoint"]
        .into_iter()
        .find(|k| *k == name)
        .ok_or_else(|| StoreError::Corrupt(format!("event kind {name:?}")))
}

impl Store {
    /// Job `id`'s status and up to `limit` of its events after event `after`, oldest first, read
    /// together (so a finished status means the page ends the history); `None` if no such job.
    pub fn events(&self, id: JobId, after: i64, limit: usize) -> Result<Option<History>> {
        self.read(|db| {
            // The status first: a final status read before the page means the page holds the end.
            let Some(status) = rows::job_status(db, id)? else {
                return Ok(None);
            };
            let rows = db.query(
                "SELECT seq, job_id, kind, data FROM events WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                args![id, after, limit],
            )?;
            let events = rows.iter().map(row_recorded).collect::<Result<_>>()?;
            Ok(Some(History { status, events }))
        })
    }

    /// Up to `limit` events of every job after event `after`, oldest first.
    pub fn all_events(&self, after: i64, limit: usize) -> Result<Vec<Recorded>> {
        let rows = self.read(|db| {
            db.query(
                "SELECT seq, job_id, kind, data FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
                args![after, limit],
            )
        })?;
        rows.iter().map(row_recorded).collect()
    }
}

/// An `events` row (`seq, job_id, kind, data`) decoded.
fn row_recorded(row: &Row) -> Result<Recorded> {
    recorded(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)
}

/// An event read back from its columns.
pub(super) fn recorded(id: i64, job: String, name: String, data: String) -> Result<Recorded> {
    let job = JobId::parse_str(&job).map_err(|_| StoreError::Corrupt(format!("job id {job:?}")))?;
    let kind = kind(&name)?;
    let last = kind == "status" && is_final_status(&data);
    Ok(Recorded { id, job, kind, data, last })
}

/// Whether a stored status event's body is a final status.
fn is_final_status(data: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v["status"].as_str().and_then(JobStatus::parse))
        .is_some_and(JobStatus::is_finished)
}

impl HistorySource for Store {
    fn history(&self, job: JobId, after: i64, limit: usize) -> std::result::Result<Option<History>, String> {
        self.events(job, after, limit).map_err(|e| e.to_string())
    }

    fn all_history(&self, after: i64, limit: usize) -> std::result::Result<Vec<Recorded>, String> {
        self.all_events(after, limit).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::jobs::JobStatus;
    use crate::jobs::events::{Follow, Next, Notice};
    use crate::jobs::shared::Shared;
    use crate::jobs::store::testing::databases;
    use crate::metrics::{EpochMetrics, Progress, StepPoint};

    fn step(step: u64) -> StepPoint {
        StepPoint { step, epoch: 1, loss: 1.0 / step as f64, grad_norm: None }
    }

    #[test]
    fn every_recorded_fact_has_its_event_in_the_store_and_on_the_channel() {
        for database in databases() {
            let dir = tempfile::tempdir().unwrap();
            every_recorded_fact_has_its_event(&database.config(dir.path()));
        }
    }

    fn every_recorded_fact_has_its_event(config: &Config) {
        let shared = Shared::open(config.clone()).unwrap();
        let mut live = shared.store.announcer().subscribe();
        let id = shared
            .store_job_for_test(br#"{"model":{"kind":"mlp_bn"},"data":{"dataset":"synthetic_images"}}"#);
        let store = &shared.store;
        let claim = store.claim_job(id, "cpu (burn-flex)").unwrap();
        let progress = |step| Progress { epoch: 0, epochs: 2, step, steps: 10 };
        store.record_steps(claim, &[step(1), step(2), step(3)], progress(3)).unwrap();
        store.record_epoch(claim, &EpochMetrics::new(1, 0.5, 1.0), progress(3)).unwrap();
        // A resumed run from step 2 forgets step 3 and the epoch row, and their events.
        store.begin_run(claim, Progress { epoch: 0, epochs: 2, step: 2, steps: 10 }).unwrap();
        store.end_run(claim, JobStatus::Failed, Some("out of patience")).unwrap();

        let history = store.events(id, 0, 100).unwrap().unwrap();
        assert_eq!(history.status, JobStatus::Failed);
        let kinds: Vec<&str> = history.events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["status", "status", "step", "step", "status"]);
        let running =
            format!(r#"{{"status":"running","backend":"cpu (burn-flex)","replica":"{}"}}"#, store.replica());
        assert_eq!(history.events[1].data, running);
        assert_eq!(history.events[3].data, r#"{"step":2,"epoch":1,"loss":0.5}"#);
        assert_eq!(history.events[4].data, r#"{"status":"failed","error":"out of patience"}"#);
        assert!(history.events.iter().map(|e| e.last).eq([false, false, false, false, true]));
        let after = store.events(id, history.events[2].id, 100).unwrap().unwrap();
        assert_eq!(after.events.len(), 2, "only events after the cursor");

        // The channel carries them in order, up to the final status. On SQLite each write
        // announces its own, so the forgotten ones came too; on PostgreSQL the listener reads
        // the table, and may have read it after they were forgotten.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut announced = Vec::new();
        while !announced.last().is_some_and(|e: &std::sync::Arc<crate::jobs::events::Recorded>| e.last) {
            assert!(
                std::time::Instant::now() < deadline,
                "the final status was never announced: {announced:?}"
            );
            match live.try_recv() {
                Ok(Notice::Event(e)) => announced.push(e),
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        let ids: Vec<i64> = announced.iter().map(|e| e.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let stored: Vec<i64> = history.events.iter().map(|e| e.id).collect();
        assert!(stored.iter().all(|id| ids.contains(id)), "every stored event announced: {ids:?}");
        if !shared.store.is_shared() {
            let kinds: Vec<&str> = announced.iter().map(|e| e.kind).collect();
            assert_eq!(kinds, ["status", "status", "step", "step", "step", "epoch", "status"]);
        }
        assert!(store.events(crate::jobs::JobId::new_v4(), 0, 10).unwrap().is_none());
    }

    #[tokio::test]
    async fn every_jobs_events_are_read_in_order_and_a_new_watcher_starts_after_the_newest() {
        for database in databases() {
            let dir = tempfile::tempdir().unwrap();
            every_jobs_events_in_order(&database.config(dir.path())).await;
        }
    }

    async fn every_jobs_events_in_order(config: &Config) {
        let shared = Shared::open(config.clone()).unwrap();
        let body = br#"{"model":{"kind":"mlp_bn"},"data":{"dataset":"synthetic_images"}}"#;
        let (a, b) = (shared.store_job_for_test(body), shared.store_job_for_test(body));
        let store = &shared.store;
        store.claim_job(a, "cpu (burn-flex)").unwrap();
        let all = store.all_events(0, 100).unwrap();
        let jobs: Vec<_> = all.iter().map(|e| e.job).collect();
        assert_eq!(jobs, [a, b, a], "both jobs' events, in the order they happened");
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(store.all_events(all[0].id, 1).unwrap(), all[1..2], "after a cursor, up to a limit");

        // On PostgreSQL the listener may not have read the newest yet: it catches up.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let (live, newest) = loop {
            let (live, newest) = store.subscribe().unwrap();
            assert!(newest <= all[2].id, "never past what is stored");
            if newest == all[2].id {
                break (live, newest);
            }
            assert!(std::time::Instant::now() < deadline, "the listener never caught up");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let mut follow = Follow::all(live, newest);
        store.finish_job(b, JobStatus::Cancelled, None).unwrap();
        let Next::Event(event) = follow.next(store).await.unwrap() else { panic!("an event") };
        assert_eq!((event.job, event.kind, event.last), (b, "status", true));
        assert_eq!(event.data_with_job(), format!(r#"{{"job":"{b}","status":"cancelled"}}"#));
        store.delete_job(b, "jobs/b").unwrap();
        assert!(matches!(follow.next(store).await.unwrap(), Next::Deleted(job) if job == b));
        assert_eq!(
            store.all_events(0, 100).unwrap(),
            all[..1].iter().chain(&all[2..]).cloned().collect::<Vec<_>>()
        );
    }
}
