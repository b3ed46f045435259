//! The store's behaviour, each test once on SQLite and once on PostgreSQL (see [`super::testing`]):
//! what one database does, the other does the same.

use super::testing::databases;
use super::{NewCheckpoint, NewJob, Store, StoreError};
use crate::backend::Backends;
use crate::config::Config;
use crate::data::TextSource;
use crate::definition::{DataSpec, JobSpec, Limits, ValidJobSpec};
use crate::jobs::datasets::{Dataset, DatasetId, DatasetKind};
use crate::jobs::{JobId, JobStatus};
use crate::metrics::{EpochMetrics, Progress, StepPoint};

/// A valid job definition from `body`.
fn spec(body: &str) -> ValidJobSpec {
    let config = Config { wgpu: false, ..Config::with_data_dir("unused") };
    let limits = Limits { config: &config, backends: &Backends::cpu_only() };
    JobSpec::from_json(body.as_bytes()).unwrap().validate(&limits).unwrap().spec
}

const MLP: &str = r#"{"name":"mlp","model":{"kind":"mlp_bn"},"data":{"dataset":"synthetic_images"}}"#;

/// A language model's definition reading uploaded data set `id`, as validation makes it when the
/// data set is there.
fn on_upload(id: DatasetId) -> ValidJobSpec {
    let mut spec = spec(r#"{"model":{"kind":"rnn_lm"},"data":{"dataset":"synthetic_text"}}"#);
    let DataSpec::Text(text) = &mut spec.data else { panic!("a language model reads text") };
    text.source = TextSource::Uploaded { dataset_id: id };
    spec
}

fn insert(store: &Store, spec: &ValidJobSpec, key: Option<&str>) -> JobId {
    let id = JobId::new_v4();
    store.insert_job(NewJob { id, spec, idempotency_key: key, parameters: 42, steps: 10 }, 100).unwrap();
    id
}

fn point(step: u64) -> StepPoint {
    StepPoint { step, epoch: 1, loss: 1.0 / step as f64, grad_norm: step.is_multiple_of(2).then_some(0.5) }
}

fn progress(epoch: u32, step: u64) -> Progress {
    Progress { epoch, epochs: 2, step, steps: 10 }
}

#[test]
fn a_job_goes_through_its_life_and_is_read_back_as_written() {
    for database in databases() {
        let store = database.open();
        let name = database.name;
        assert!(store.is_empty().unwrap(), "{name}");
        let spec = spec(MLP);
        let id = insert(&store, &spec, Some("key-1"));
        assert!(!store.is_empty().unwrap());

        let job = store.job(id).unwrap().unwrap();
        assert_eq!((job.status, job.parameters, job.name.as_deref()), (JobStatus::Queued, 42, Some("mlp")));
        assert_eq!(job.spec, spec, "{name}: the definition round-trips");
        assert_eq!(job.progress.steps, 10);
        assert_eq!(store.job_by_idempotency_key("key-1").unwrap().unwrap().id, id);
        assert!(store.job_by_idempotency_key("key-2").unwrap().is_none());
        assert!(store.job(JobId::new_v4()).unwrap().is_none());

        let claim = store.claim_job(id, "cpu (burn-flex)").unwrap();
        store.set_first_step_seconds(claim, 0.25).unwrap();
        store.set_parameters(claim, 7).unwrap();
        store.add_warning(claim, "one").unwrap();
        store.add_warning(claim, "two \"quoted\"").unwrap();
        let job = store.job(id).unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(job.backend.as_deref(), Some("cpu (burn-flex)"));
        assert_eq!((job.first_step_seconds, job.parameters), (Some(0.25), 7));
        assert_eq!(job.warnings, ["one", "two \"quoted\""], "{name}");
        let started = job.started_at.clone();
        assert!(started.is_some());

        let (by_status, by_device) = store.job_counts().unwrap();
        assert_eq!(by_status, [(JobStatus::Running, 1)]);
        assert_eq!(by_device, [("cpu (burn-flex)".to_string(), 1)]);

        store.end_run(claim, JobStatus::Queued, None).unwrap();
        store.claim_job(id, "cpu (burn-flex)").unwrap();
        assert_eq!(
            store.job(id).unwrap().unwrap().started_at,
            started,
            "{name}: a resumed job keeps its start"
        );
        store.finish_job(id, JobStatus::Failed, Some("diverged")).unwrap();
        let job = store.job(id).unwrap().unwrap();
        assert_eq!((job.status, job.error.as_deref()), (JobStatus::Failed, Some("diverged")));
        assert!(job.finished_at.is_some());

        store.delete_job(id, &format!("jobs/{id}")).unwrap();
        assert!(store.job(id).unwrap().is_none());
        assert_eq!(store.removals().unwrap(), [format!("jobs/{id}")], "{name}");
        store.removed(&format!("jobs/{id}")).unwrap();
        assert!(store.removals().unwrap().is_empty());
        assert!(store.is_empty().unwrap());
    }
}

#[test]
fn a_second_job_with_the_same_idempotency_key_is_refused_by_the_database() {
    for database in databases() {
        let store = database.open();
        let spec = spec(MLP);
        insert(&store, &spec, Some("same"));
        let again = NewJob {
            id: JobId::new_v4(),
            spec: &spec,
            idempotency_key: Some("same"),
            parameters: 1,
            steps: 1,
        };
        assert!(store.insert_job(again, 100).is_err(), "{}", database.name);
        assert_eq!(
            store.list_jobs(None, 0, 10).unwrap().0.len(),
            1,
            "{}: nothing half-written",
            database.name
        );
    }
}

#[test]
fn jobs_are_listed_in_submission_order_by_cursor_and_status() {
    for database in databases() {
        let store = database.open();
        let spec = spec(MLP);
        let ids: Vec<JobId> = (0..5).map(|_| insert(&store, &spec, None)).collect();
        store.finish_job(ids[1], JobStatus::Cancelled, None).unwrap();
        store.finish_job(ids[3], JobStatus::Cancelled, None).unwrap();

        let (page, cursor) = store.list_jobs(None, 0, 2).unwrap();
        assert_eq!(page.iter().map(|j| j.id).collect::<Vec<_>>(), ids[..2]);
        let (rest, last) = store.list_jobs(None, cursor.unwrap(), 10).unwrap();
        assert_eq!(rest.iter().map(|j| j.id).collect::<Vec<_>>(), ids[2..], "{}", database.name);
        assert!(store.list_jobs(None, last.unwrap(), 10).unwrap().0.is_empty());

        let (cancelled, _) = store.list_jobs(Some(JobStatus::Cancelled), 0, 10).unwrap();
        assert_eq!(cancelled.iter().map(|j| j.id).collect::<Vec<_>>(), [ids[1], ids[3]], "{}", database.name);
        assert_eq!(store.job_ids_with_status(JobStatus::Queued).unwrap(), [ids[0], ids[2], ids[4]]);
    }
}

#[test]
fn metrics_page_by_cursor_and_a_resumed_run_forgets_what_it_will_redo() {
    for database in databases() {
        let store = database.open();
        let name = database.name;
        let id = insert(&store, &spec(MLP), None);
        let claim = store.claim_job(id, "cpu").unwrap();
        store.record_steps(claim, &[point(1), point(2), point(3)], progress(0, 3)).unwrap();
        let mut epoch = EpochMetrics::new(1, 0.5, 2.0);
        epoch.test_accuracy = Some(0.75);
        store.record_epoch(claim, &epoch, progress(1, 5)).unwrap();
        store.record_steps(claim, &[point(4), point(5)], progress(1, 5)).unwrap();

        let page = store.metrics(id, 0, 2).unwrap().unwrap();
        assert_eq!(page.status, JobStatus::Running);
        assert_eq!(page.epochs, [epoch.clone()], "{name}");
        assert_eq!(page.steps, [point(1), point(2)], "{name}: grad norms and NULLs both round-trip");
        assert_eq!(page.last_step, Some(point(5)));
        let rest = store.metrics(id, page.next_after.unwrap(), 10).unwrap().unwrap();
        assert_eq!(rest.steps, [point(3), point(4), point(5)]);
        assert_eq!(store.job(id).unwrap().unwrap().progress, progress(1, 5));

        // The same epoch recorded again replaces its row.
        epoch.train_loss = 0.25;
        store.record_epoch(claim, &epoch, progress(1, 5)).unwrap();
        assert_eq!(store.metrics(id, 0, 10).unwrap().unwrap().epochs, [epoch.clone()], "{name}");

        store.begin_run(claim, progress(0, 2)).unwrap();
        let page = store.metrics(id, 0, 10).unwrap().unwrap();
        assert_eq!(page.steps, [point(1), point(2)], "{name}: steps after 2 forgotten");
        assert!(page.epochs.is_empty(), "{name}: epoch 1 forgotten");
        let kinds: Vec<&str> =
            store.events(id, 0, 100).unwrap().unwrap().events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["status", "status", "step", "step"], "{name}: and their events");
        assert!(store.metrics(JobId::new_v4(), 0, 10).unwrap().is_none());
    }
}

#[test]
fn checkpoints_are_indexed_replaced_by_directory_and_dropped_into_removals() {
    for database in databases() {
        let store = database.open();
        let name = database.name;
        let id = insert(&store, &spec(MLP), None);
        let claim = store.claim_job(id, "cpu").unwrap();
        let metrics = EpochMetrics::new(1, 0.5, 1.0);
        let checkpoint = |dir, step, sha256| NewCheckpoint {
            dir,
            epoch: 1,
            step,
            bytes: 1 << 40,
            sha256,
            files: Some(r#"{"model.mpk":{"bytes":1,"sha256":"ab"}}"#),
            metrics: Some(&metrics),
        };
        let first =
            store.insert_checkpoint(claim, &checkpoint("jobs/x/checkpoints/step-4", 4, "aa")).unwrap();
        let second =
            store.insert_checkpoint(claim, &checkpoint("jobs/x/checkpoints/step-8", 8, "bb")).unwrap();
        assert!(second > first);
        let again =
            store.insert_checkpoint(claim, &checkpoint("jobs/x/checkpoints/step-4", 4, "cc")).unwrap();
        let rows = store.checkpoints(id).unwrap();
        assert_eq!(rows.iter().map(|r| r.info.id).collect::<Vec<_>>(), [second, again], "{name}");
        assert_eq!(rows[1].info.sha256, "cc", "{name}: the directory's row replaced");
        assert_eq!((rows[0].info.bytes, rows[0].info.step), (1 << 40, 8));
        assert_eq!(rows[0].info.metrics.as_ref(), Some(&metrics));
        assert_eq!(rows[0].files.as_deref(), Some(r#"{"model.mpk":{"bytes":1,"sha256":"ab"}}"#));
        assert!(store.is_indexed_checkpoint("jobs/x/checkpoints/step-8").unwrap());

        store.drop_checkpoint(claim, second).unwrap();
        assert!(!store.is_indexed_checkpoint("jobs/x/checkpoints/step-8").unwrap());
        assert_eq!(store.removals().unwrap(), ["jobs/x/checkpoints/step-8"], "{name}");
        // Written again: it is no longer to be removed.
        store.insert_checkpoint(claim, &checkpoint("jobs/x/checkpoints/step-8", 8, "dd")).unwrap();
        assert!(store.removals().unwrap().is_empty(), "{name}");
        let kinds: Vec<&str> =
            store.events(id, 0, 100).unwrap().unwrap().events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["status", "status", "checkpoint", "checkpoint", "checkpoint", "checkpoint"]);
    }
}

#[test]
fn a_job_on_an_uploaded_data_set_that_is_gone_is_refused_and_one_on_a_present_set_keeps_it() {
    for database in databases() {
        let store = database.open();
        let dataset = Dataset {
            id: DatasetId::new_v4(),
            name: None,
            kind: DatasetKind::Text,
            bytes: 3,
            sha256: "00".repeat(32),
            chars: Some(3),
            images: None,
            created_at: crate::jobs::now(),
        };
        let on_missing = on_upload(DatasetId::new_v4());
        let missing =
            NewJob { id: JobId::new_v4(), spec: &on_missing, idempotency_key: None, parameters: 1, steps: 1 };
        assert!(
            matches!(store.insert_job(missing, 100), Err(StoreError::DatasetGone(_))),
            "{}",
            database.name
        );

        store.insert_dataset(&dataset, "datasets/uploads/a.txt").unwrap();
        let reader = insert(&store, &on_upload(dataset.id), None);
        assert_eq!(
            store.delete_dataset(dataset.id, "datasets/uploads/a.txt").unwrap(),
            super::DatasetDeletion::InUse(reader, JobStatus::Queued),
            "{}",
            database.name
        );
    }
}

#[test]
fn replicas_register_beat_list_their_running_jobs_and_leave_and_a_dead_one_is_removed() {
    use super::NewReplica;
    for database in databases() {
        let name = database.name;
        let (first, second) = (database.open(), database.open());
        let new = |address| NewReplica { address, devices: r#"["cpu (burn-flex)"]"#, version: "0.1.0" };
        assert!(first.register_replica(&new("http://a"), 60_000).unwrap().is_empty(), "{name}");
        let others = second.register_replica(&new("http://b"), 60_000).unwrap();
        assert_eq!(others.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [first.replica()], "{name}");
        assert_ne!(first.replica(), second.replica());

        let id = insert(&first, &spec(MLP), None);
        first.claim_job(id, "cpu").unwrap();
        assert_eq!(first.job(id).unwrap().unwrap().replica.as_deref(), Some(first.replica()), "{name}");
        assert!(first.heartbeat().unwrap());
        let all = second.replicas().unwrap();
        assert_eq!(all.len(), 2);
        let a = all.iter().find(|r| r.id == first.replica()).unwrap();
        assert_eq!(
            (a.address.as_str(), a.running_jobs, a.version.as_str()),
            ("http://a", 1, "0.1.0"),
            "{name}"
        );
        assert!((0..10_000).contains(&a.heartbeat_age_ms), "{name}: {}", a.heartbeat_age_ms);

        // A lease of 0 ms: every heartbeat is too old, so a new registration removes the first.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let third = database.open();
        let alive = third.register_replica(&new("http://c"), 0).unwrap();
        assert!(alive.is_empty(), "{name}: {alive:?}");
        assert!(!first.heartbeat().unwrap(), "{name}: the first was removed as dead");
        third.leave().unwrap();
        assert!(third.replicas().unwrap().is_empty(), "{name}");
    }
}

mod claims;
