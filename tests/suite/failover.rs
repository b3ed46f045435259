//! Several kiln processes on one PostgreSQL database and one shared dir, as a cluster runs:
//! queued jobs spread over every replica, a job whose replica is killed resumes on another from
//! its newest checkpoint with every step and epoch recorded once, and a replica paused past its
//! lease is fenced off: the job moves on, and nothing the paused one writes afterwards lands.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::common::{Db, Process, get_json, submit, wait_finished};
use crate::watch::{data, read_events};

/// The lease of the replicas in these tests (`--lease-secs`): short, for quick failovers, yet
/// long enough that a heartbeat delayed by a loaded machine is not taken for a death.
const LEASE_SECS: u64 = 5;

/// These tests run one at a time: each starts three kiln processes training on a 2-core machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One replica: a process with its own data dir, one CPU worker, the shared dir and the database.
struct Replica {
    process: Process,
    id: String,
    _data: TempDir,
}

impl Replica {
    async fn start(url: &str, shared: &Path) -> Self {
        let data = tempfile::tempdir().unwrap();
        let lease = LEASE_SECS.to_string();
        let env = [
            ("KILN_DATABASE_URL", Some(url)),
            ("KILN_SHARED_DIR", Some(shared.to_str().unwrap())),
            ("KILN_LEASE_SECS", Some(lease.as_str())),
            ("KILN_WORKERS", Some("1")),
            ("KILN_WGPU", Some("false")),
        ];
        let process = Process::spawn_with_env(data.path(), &env);
        let cluster = get_json(&process.client, &process.url("/cluster")).await;
        let id = cluster["replica"].as_str().unwrap().to_string();
        Self { process, id, _data: data }
    }

    async fn job(&self, id: &str) -> Value {
        get_json(&self.process.client, &self.process.url(&format!("/jobs/{id}"))).await
    }
}

/// `n` replicas on a new PostgreSQL database and a new shared dir: the database (dropped with
/// it), its URL, the shared dir and the replicas.
async fn cluster(n: usize) -> (Db, String, TempDir, Vec<Replica>) {
    let db = Db::postgres();
    let url = db.url().unwrap();
    let shared = tempfile::tempdir().unwrap();
    let mut replicas = Vec::new();
    for _ in 0..n {
        replicas.push(Replica::start(&url, shared.path()).await);
    }
    (db, url, shared, replicas)
}

/// A LeNet-BN job of two epochs of `steps` steps each, logging every step and checkpointing every
/// epoch.
fn job(seed: u64, steps: u64) -> Value {
    json!({
        "model": {"kind": "lenet_bn"},
        "data": {"dataset": "synthetic_images", "train_size": steps * 64, "test_size": 128, "seed": seed},
        "training": {"epochs": 2, "batch_size": 64, "seed": 7, "optimizer": {"kind": "sgd", "lr": 0.1}, "log_every": 1},
        "checkpoint": {"every": 1, "keep_last": 2}
    })
}

/// Polls job `id` through `replica` until `done` holds; fails after two minutes.
async fn wait_until(replica: &Replica, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = replica.job(id).await;
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "{what}: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Job `id`'s claim log, read from the database: (replica, outcome, claimed_at, ended_at).
fn claims(url: &str, id: &str) -> Vec<(String, Option<String>, String, Option<String>)> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut db = postgres::Client::connect(url, postgres::NoTls).unwrap();
            let rows = db
                .query(
                    "SELECT replica, outcome, claimed_at, ended_at FROM claims WHERE job_id = $1 ORDER BY id",
                    &[&id],
                )
                .unwrap();
            rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
        })
        .join()
        .unwrap()
    })
}

/// Every step of the finished job `id` listed once, in order, and every epoch once.
async fn assert_recorded_once(replica: &Replica, id: &str, done: &Value) {
    let metrics =
        get_json(&replica.process.client, &replica.process.url(&format!("/jobs/{id}/metrics?limit=1000")))
            .await;
    let steps: Vec<u64> =
        metrics["steps"].as_array().unwrap().iter().map(|s| s["step"].as_u64().unwrap()).collect();
    let total = done["progress"]["steps"].as_u64().unwrap();
    assert_eq!(steps, (1..=total).collect::<Vec<_>>(), "every step once: {id}");
    let epochs: Vec<u64> =
        metrics["epochs"].as_array().unwrap().iter().map(|e| e["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, [1, 2], "every epoch once: {id}");
}

/// The statuses of job `id`'s event stream, with the replica each `running` names.
async fn status_events(replica: &Replica, id: &str) -> Vec<(String, Option<String>)> {
    let events = read_events(&replica.process.client, &replica.process.base, id, None, None).await;
    events
        .iter()
        .filter(|e| e.event == "status")
        .map(|e| {
            let body = data(e);
            (body["status"].as_str().unwrap().to_string(), body["replica"].as_str().map(str::to_string))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_spread_over_every_replica() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (_db, _, _shared, replicas) = cluster(3).await;
    // Three jobs, all submitted to one replica, which runs one at a time.
    let front = &replicas[0];
    let (c, base) = (&front.process.client, front.process.base.as_str());
    let mut ids = Vec::new();
    // Each long enough (a few seconds) that the front replica's one worker is still busy when
    // the others look for work.
    for seed in 0..3 {
        ids.push(submit(c, base, &job(seed, 300)).await["id"].as_str().unwrap().to_string());
    }
    let mut trained_on = Vec::new();
    for id in &ids {
        let done = wait_finished(c, base, id, Duration::from_secs(180)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        trained_on.push(done["replica"].as_str().unwrap().to_string());
    }
    trained_on.sort();
    let mut all: Vec<String> = replicas.iter().map(|r| r.id.clone()).collect();
    all.sort();
    assert_eq!(trained_on, all, "each replica trained one of the three jobs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_replica_is_killed_resumes_on_another_and_records_every_step_once() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (_db, url, _shared, mut replicas) = cluster(3).await;
    // Two jobs: more than one replica runs, and a third replica stays idle for the failover.
    let (c, base) = (&replicas[0].process.client, replicas[0].process.base.clone());
    let ids = [
        submit(c, &base, &job(1, 400)).await["id"].as_str().unwrap().to_string(),
        submit(c, &base, &job(2, 400)).await["id"].as_str().unwrap().to_string(),
    ];
    // The job on a replica other than the front one, caught past its first checkpoint and mid-epoch.
    let front = replicas[0].id.clone();
    let running = |j: &Value| j["status"] == "running" && j["replica"] != front.as_str();
    let deadline = Instant::now() + Duration::from_secs(120);
    let moving = loop {
        let mut found = None;
        for id in &ids {
            let j = replicas[0].job(id).await;
            if running(&j) {
                found = Some(j);
            }
        }
        if let Some(j) = found {
            break j;
        }
        assert!(Instant::now() < deadline, "no job trains on another replica than the front one");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let id = moving["id"].as_str().unwrap().to_string();
    let caught = wait_until(&replicas[0], &id, "past its first epoch", |j| {
        let step = j["progress"]["step"].as_u64().unwrap_or(0);
        step > 420 && step < 700
    })
    .await;
    let dead = caught["replica"].as_str().unwrap().to_string();
    let index = replicas.iter().position(|r| r.id == dead).unwrap();
    let killed_at = caught["progress"]["step"].as_u64().unwrap();
    replicas.remove(index).process.kill9();
    let killed = Instant::now();

    let front = &replicas[0];
    let resumed = wait_until(front, &id, "resumed elsewhere", |j| {
        j["status"] == "running" && j["replica"].as_str().is_some_and(|r| r != dead)
    })
    .await;
    eprintln!(
        "job {id} killed at step {killed_at} on {dead}, running again on {} after {:.1} s (lease {LEASE_SECS} s)",
        resumed["replica"],
        killed.elapsed().as_secs_f64()
    );
    let done = wait_finished(&front.process.client, &front.process.base, &id, Duration::from_secs(240)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let other = ids.iter().find(|i| **i != id).unwrap();
    let other_done =
        wait_finished(&front.process.client, &front.process.base, other, Duration::from_secs(240)).await;
    assert_eq!(other_done["status"], "succeeded", "{other_done}");
    assert_recorded_once(front, &id, &done).await;

    // The claim log: the dead replica's claim expired before the next one began; never two at once.
    let log = claims(&url, &id);
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!((log[0].0.as_str(), log[0].1.as_deref()), (dead.as_str(), Some("expired")), "{log:?}");
    assert_eq!(
        (log[1].0.as_str(), log[1].1.as_deref()),
        (resumed["replica"].as_str().unwrap(), Some("succeeded"))
    );
    assert!(log[0].3.as_deref().is_some_and(|ended| ended <= log[1].2.as_str()), "claims overlap: {log:?}");
    // It resumed from its checkpoint: the new run began at the end of the first epoch.
    assert!(done["warnings"].as_array().unwrap().is_empty(), "{done}");

    // The event stream shows the move.
    let statuses = status_events(front, &id).await;
    let expected = [
        ("queued".to_string(), None),
        ("running".to_string(), Some(dead.clone())),
        ("queued".to_string(), None),
        ("running".to_string(), resumed["replica"].as_str().map(str::to_string)),
        ("succeeded".to_string(), None),
    ];
    assert_eq!(statuses, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_paused_past_its_lease_is_fenced_off_and_nothing_it_writes_lands() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (_db, url, _shared, replicas) = cluster(2).await;
    let [first, second] = &replicas[..] else { unreachable!() };
    let (c, base) = (&first.process.client, first.process.base.as_str());
    let id = submit(c, base, &job(3, 400)).await["id"].as_str().unwrap().to_string();
    let caught = wait_until(first, &id, "training", |j| j["progress"]["step"].as_u64() > Some(5)).await;
    let owner = caught["replica"].as_str().unwrap().to_string();
    let (paused, other) = if owner == first.id { (first, second) } else { (second, first) };
    let pid = paused.process.child.id().to_string();
    let signal = |name: &str| {
        assert!(std::process::Command::new("kill").args([name, &pid]).status().unwrap().success())
    };

    signal("-STOP");
    let moved = wait_until(other, &id, "taken over", |j| {
        j["status"] == "running" && j["replica"] == other.id.as_str()
    })
    .await;
    // Let the new owner train a little, then wake the paused one mid-step.
    wait_until(other, &id, "training again", |j| {
        j["progress"]["step"].as_u64() > moved["progress"]["step"].as_u64()
    })
    .await;
    signal("-CONT");

    let done = wait_finished(&other.process.client, &other.process.base, &id, Duration::from_secs(240)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["replica"], other.id.as_str());
    assert_recorded_once(other, &id, &done).await;
    let log = claims(&url, &id);
    let outcomes: Vec<(&str, Option<&str>)> = log.iter().map(|c| (c.0.as_str(), c.1.as_deref())).collect();
    assert_eq!(outcomes, [(owner.as_str(), Some("expired")), (other.id.as_str(), Some("succeeded"))]);
    let statuses = status_events(other, &id).await;
    assert_eq!(statuses.last().unwrap().0, "succeeded", "nothing after the end: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| s.0 == "running").count(), 2, "{statuses:?}");

    // The paused replica lives on: it registered again and answers.
    let cluster = get_json(&paused.process.client, &paused.process.url("/cluster")).await;
    let ids: Vec<&str> =
        cluster["replicas"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&paused.id.as_str()) && ids.contains(&other.id.as_str()), "{cluster}");
    let job = paused.job(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
}
