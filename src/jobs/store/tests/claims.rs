//! Claims, leases and fencing on both databases: each job is claimed once, by a lane that runs
//! it; a claim that expired writes nothing more; the queue's bound holds across stores.

use std::collections::HashSet;

use super::super::{NewReplica, Store, StoreError};
use super::{MLP, insert, point, progress, spec};
use crate::backend::BackendKind;
use crate::jobs::store::testing::databases;
use crate::jobs::{JobId, JobStatus};

fn wants(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn on(backend: BackendKind) -> crate::definition::ValidJobSpec {
    let mut spec = spec(MLP);
    spec.backend = backend;
    spec
}

fn register(store: &Store, lease_ms: i64) {
    let new = NewReplica { address: "http://x", devices: "[]", version: "0" };
    store.register_replica(&new, lease_ms).unwrap();
}

#[test]
fn a_worker_claims_the_oldest_job_its_lane_runs() {
    for database in databases() {
        let (store, name) = (database.open(), database.name);
        let gpu = insert(&store, &on(BackendKind::Wgpu(Some(0))), None);
        let (first, second) =
            (insert(&store, &on(BackendKind::Cpu), None), insert(&store, &on(BackendKind::Auto), None));

        let claim = store.claim_next(&wants(&["cpu", "auto"]), "cpu (burn-flex)").unwrap().unwrap();
        assert_eq!(claim.job, first, "{name}: the oldest CPU job, not the older GPU one");
        let job = store.job(first).unwrap().unwrap();
        assert_eq!((job.status, job.replica.as_deref()), (JobStatus::Running, Some(store.replica())));
        assert_eq!(store.claim_next(&wants(&["cpu", "auto"]), "cpu").unwrap().unwrap().job, second);
        assert!(store.claim_next(&wants(&["cpu", "auto"]), "cpu").unwrap().is_none(), "{name}");
        assert_eq!(store.queued_by_backend().unwrap(), [("wgpu:0".to_string(), 1)], "{name}");
        let on_gpu = store.claim_next(&wants(&["wgpu", "wgpu:0"]), "wgpu:0").unwrap().unwrap();
        assert_eq!(on_gpu.job, gpu);
        assert!(on_gpu.token > claim.token, "{name}: tokens only grow");

        let log = store.claims(first).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].token, log[0].replica.as_str(), log[0].outcome.as_deref()),
            (claim.token, store.replica(), None)
        );
    }
}

#[test]
fn stores_claiming_at_once_take_each_job_exactly_once() {
    for database in databases() {
        let name = database.name;
        let stores = [database.open(), database.open(), database.open()];
        let jobs: HashSet<JobId> = (0..30).map(|_| insert(&stores[0], &on(BackendKind::Cpu), None)).collect();
        let claimed: Vec<JobId> = std::thread::scope(|s| {
            let claimers: Vec<_> = stores
                .iter()
                .map(|store| {
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        while let Some(claim) = store.claim_next(&wants(&["cpu"]), "cpu").unwrap() {
                            mine.push(claim.job);
                        }
                        mine
                    })
                })
                .collect();
            claimers.into_iter().flat_map(|c| c.join().unwrap()).collect()
        });
        assert_eq!(claimed.len(), jobs.len(), "{name}: no job claimed twice");
        assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), jobs, "{name}: and none left");
    }
}

#[test]
fn a_run_whose_lease_expired_is_fenced_and_its_job_resumes_elsewhere() {
    for database in databases() {
        let name = database.name;
        let (dead, alive) = (database.open(), database.open());
        register(&dead, 60_000);
        register(&alive, 60_000);
        let id = insert(&dead, &on(BackendKind::Cpu), None);
        let old = dead.claim_next(&wants(&["cpu"]), "cpu").unwrap().unwrap();
        dead.record_steps(old, &[point(1)], progress(0, 1)).unwrap();

        assert!(alive.requeue_expired(60_000).unwrap().is_empty(), "{name}: a live lease holds");
        std::thread::sleep(std::time::Duration::from_millis(30));
        alive.heartbeat().unwrap();
        assert_eq!(alive.requeue_expired(20).unwrap(), [id], "{name}: the silent replica's job");
        let new = alive.claim_next(&wants(&["cpu"]), "cpu").unwrap().unwrap();
        assert_eq!(new.job, id);

        // Every write of the old run is refused now, and nothing of it lands.
        let fenced =
            |r: Result<(), StoreError>| assert!(matches!(r, Err(StoreError::Fenced(..))), "{name}: {r:?}");
        fenced(dead.record_steps(old, &[point(2)], progress(0, 2)).map(drop));
        fenced(dead.record_epoch(old, &crate::metrics::EpochMetrics::new(1, 0.5, 1.0), progress(1, 2)));
        fenced(dead.set_parameters(old, 9));
        fenced(dead.add_warning(old, "late"));
        fenced(dead.end_run(old, JobStatus::Succeeded, None));
        alive.record_steps(new, &[point(2)], progress(0, 2)).unwrap();
        let page = alive.metrics(id, 0, 10).unwrap().unwrap();
        assert_eq!(page.steps, [point(1), point(2)], "{name}: each step once");
        let job = alive.job(id).unwrap().unwrap();
        assert_eq!((job.status, job.parameters, job.warnings.len()), (JobStatus::Running, 42, 0), "{name}");
        assert_eq!(job.replica.as_deref(), Some(alive.replica()));

        alive.end_run(new, JobStatus::Succeeded, None).unwrap();
        let log: Vec<_> = alive.claims(id).unwrap().into_iter().map(|c| (c.replica, c.outcome)).collect();
        assert_eq!(
            log,
            [
                (dead.replica().to_string(), Some("expired".to_string())),
                (alive.replica().to_string(), Some("succeeded".to_string()))
            ],
            "{name}"
        );
    }
}

#[test]
fn a_cancel_reaches_the_run_through_the_database() {
    for database in databases() {
        let name = database.name;
        let (owner, other) = (database.open(), database.open());
        let (queued, running) =
            (insert(&owner, &on(BackendKind::Cpu), None), insert(&owner, &on(BackendKind::Cpu), None));
        let claim = owner.claim_job(running, "cpu").unwrap();
        assert!(
            !owner.record_steps(claim, &[point(1)], progress(0, 1)).unwrap(),
            "{name}: nothing asked yet"
        );

        use super::super::CancelRequest;
        assert_eq!(other.request_cancel(queued).unwrap(), Some(CancelRequest::Dequeued));
        assert_eq!(other.job(queued).unwrap().unwrap().status, JobStatus::Cancelled);
        let asked = other.request_cancel(running).unwrap();
        assert_eq!(asked, Some(CancelRequest::Asked(owner.replica().to_string())), "{name}");
        assert!(
            owner.record_steps(claim, &[point(2)], progress(0, 2)).unwrap(),
            "{name}: the run reads the flag"
        );
        owner.end_run(claim, JobStatus::Cancelled, None).unwrap();
        assert_eq!(
            other.request_cancel(running).unwrap(),
            Some(CancelRequest::Finished(JobStatus::Cancelled))
        );
        assert_eq!(other.request_cancel(JobId::new_v4()).unwrap(), None);

        // A run interrupted by a shutdown after a cancel was asked: cancelled, not queued again.
        let interrupted = insert(&owner, &on(BackendKind::Cpu), None);
        let claim = owner.claim_job(interrupted, "cpu").unwrap();
        other.request_cancel(interrupted).unwrap();
        owner.end_run(claim, JobStatus::Queued, None).unwrap();
        assert_eq!(owner.job(interrupted).unwrap().unwrap().status, JobStatus::Cancelled, "{name}");
    }
}

#[test]
fn the_queue_bound_holds_across_stores_submitting_at_once() {
    for database in databases() {
        let name = database.name;
        let stores = [database.open(), database.open()];
        let spec = on(BackendKind::Cpu);
        let admitted: usize = std::thread::scope(|s| {
            let submitters: Vec<_> = stores
                .iter()
                .map(|store| {
                    let spec = &spec;
                    s.spawn(move || {
                        (0..10)
                            .filter(|_| {
                                let new = super::NewJob {
                                    id: JobId::new_v4(),
                                    spec,
                                    idempotency_key: None,
                                    parameters: 1,
                                    steps: 1,
                                };
                                match store.insert_job(new, 7) {
                                    Ok(_) => true,
                                    Err(StoreError::QueueFull(waiting)) => {
                                        assert!(waiting >= 7);
                                        false
                                    }
                                    Err(e) => panic!("{e}"),
                                }
                            })
                            .count()
                    })
                })
                .collect();
            submitters.into_iter().map(|s| s.join().unwrap()).sum()
        });
        assert_eq!(admitted, 7, "{name}");
        assert_eq!(stores[0].job_ids_with_status(JobStatus::Queued).unwrap().len(), 7, "{name}");
    }
}
