//! The event history of each job (see [`crate::jobs::events`]): appended inside the transaction
//! that records the fact, announced after it commits, read back by watchers that catch up.

use rusqlite::{Transaction, params};

use super::{Result, Store, StoreError};
use crate::jobs::events::{History, HistorySource, JobEvent, Recorded};
use crate::jobs::{JobId, JobStatus};

/// Appends `event` to job `id`'s history inside `tx`; returns it as recorded, to announce once
/// `tx` commits.
pub(super) fn append(tx: &Transaction<'_>, id: JobId, event: &JobEvent) -> Result<Recorded> {
    let data = event.data()?;
    tx.prepare_cached("INSERT INTO events (job_id, kind, data) VALUES (?1, ?2, ?3)")?.execute(params![
        id.to_string(),
        event.kind(),
        data
    ])?;
    Ok(Recorded { id: tx.last_insert_rowid(), job: id, kind: event.kind(), data, last: event.is_final() })
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
        let db = self.db();
        let Some(status) = super::job_status(&db, id)? else {
            return Ok(None);
        };
        let mut stmt = db.prepare_cached(
            "SELECT seq, kind, data FROM events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![id.to_string(), after, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })?;
        let mut events = Vec::new();
        for row in rows {
            let (seq, name, data) = row?;
            let kind = kind(&name)?;
            let last = kind == "status" && is_final_status(&data);
            events.push(Recorded { id: seq, job: id, kind, data, last });
        }
        Ok(Some(History { status, events }))
    }
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
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::jobs::JobStatus;
    use crate::jobs::events::Notice;
    use crate::jobs::shared::Shared;
    use crate::metrics::{EpochMetrics, Progress, StepPoint};

    fn step(step: u64) -> StepPoint {
        StepPoint { step, epoch: 1, loss: 1.0 / step as f64, grad_norm: None }
    }

    #[test]
    fn every_recorded_fact_has_its_event_in_the_store_and_on_the_channel() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(Config::with_data_dir(dir.path())).unwrap();
        let mut live = shared.store.announcer().subscribe();
        let id = shared
            .store_job_for_test(br#"{"model":{"kind":"mlp_bn"},"data":{"dataset":"synthetic_images"}}"#);
        let store = &shared.store;
        store.mark_running(id, "cpu (burn-flex)").unwrap();
        let progress = |step| Progress { epoch: 0, epochs: 2, step, steps: 10 };
        store.record_steps(id, &[step(1), step(2), step(3)], progress(3)).unwrap();
        store.record_epoch(id, &EpochMetrics::new(1, 0.5, 1.0), progress(3)).unwrap();
        // A resumed run from step 2 forgets step 3 and the epoch row, and their events.
        store.begin_run(id, Progress { epoch: 0, epochs: 2, step: 2, steps: 10 }).unwrap();
        store.finish_job(id, JobStatus::Failed, Some("out of patience")).unwrap();

        let history = store.events(id, 0, 100).unwrap().unwrap();
        assert_eq!(history.status, JobStatus::Failed);
        let kinds: Vec<&str> = history.events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["status", "status", "step", "step", "status"]);
        assert_eq!(history.events[1].data, r#"{"status":"running","backend":"cpu (burn-flex)"}"#);
        assert_eq!(history.events[3].data, r#"{"step":2,"epoch":1,"loss":0.5}"#);
        assert_eq!(history.events[4].data, r#"{"status":"failed","error":"out of patience"}"#);
        assert!(history.events.iter().map(|e| e.last).eq([false, false, false, false, true]));
        let after = store.events(id, history.events[2].id, 100).unwrap().unwrap();
        assert_eq!(after.events.len(), 2, "only events after the cursor");

        // The channel had all of them, the forgotten ones included, in order.
        let mut announced = Vec::new();
        while let Ok(Notice::Event(e)) = live.try_recv() {
            announced.push(e.kind);
        }
        assert_eq!(announced, ["status", "status", "step", "step", "step", "epoch", "status"]);
        assert!(store.events(crate::jobs::JobId::new_v4(), 0, 10).unwrap().is_none());
    }
}
