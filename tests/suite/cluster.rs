//! `GET /cluster` and the replicas of one database: every server registers as a replica, a job
//! names the replica that trained it, files live in the shared dir for the next replica, and a
//! database restart mid-training loses nothing. Several replicas training at once, failing over
//! and fenced off are in [`crate::failover`].

use std::time::Duration;

use serde_json::Value;

use crate::common::{Db, Process, Server, get_json, on_both_databases, submit, synthetic_job, wait_finished};

on_both_databases!(the_cluster_lists_this_replica_and_a_job_names_the_replica_that_trained_it);
async fn the_cluster_lists_this_replica_and_a_job_names_the_replica_that_trained_it(db: &Db) {
    let server = Server::start_on(db, |_| {}).await;
    let (c, base) = (&server.client, server.base.as_str());
    let cluster = get_json(c, &server.url("/cluster")).await;
    let replicas = cluster["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 1, "{cluster}");
    let me = &replicas[0];
    assert_eq!(me["id"], cluster["replica"]);
    assert_eq!(me["address"], base, "where it listens");
    assert_eq!(me["alive"], true);
    assert!(me["heartbeat_age_secs"].as_f64().unwrap() < 30.0);
    assert_eq!(me["devices"][0], "cpu (burn-flex)", "{me}");
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));

    let id = submit(c, base, &synthetic_job(1)).await["id"].as_str().unwrap().to_string();
    let job = wait_finished(c, base, &id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["replica"], cluster["replica"], "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_shared_dir_files_live_there_and_the_next_replica_on_the_database_serves_them() {
    let db = Db::postgres();
    let shared = tempfile::tempdir().unwrap();
    let on_shared = |c: &mut kiln::Config| c.shared_dir = Some(shared.path().to_path_buf());
    let first = Server::start_on(&db, on_shared).await;
    let (c, base) = (&first.client, first.base.as_str());
    let corpus = "the time traveller for so it will be convenient to speak of him ".repeat(40);
    let r = c
        .post(first.url("/datasets?name=corpus"))
        .header("content-type", "text/plain; charset=utf-8")
        .body(corpus)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let dataset = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let job = serde_json::json!({
        "model": {"kind": "rnn_lm", "cell": "gru", "hidden": 16},
        "data": {"dataset": "uploaded", "dataset_id": dataset, "num_steps": 10},
        "training": {"epochs": 1, "batch_size": 8, "optimizer": {"kind": "adam", "lr": 0.01}}
    });
    let id = submit(c, base, &job).await["id"].as_str().unwrap().to_string();
    let done = wait_finished(c, base, &id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let checkpoints = get_json(c, &first.url(&format!("/jobs/{id}/checkpoints"))).await;
    let newest = checkpoints.as_array().unwrap().last().unwrap().clone();

    // The files are in the shared dir; the data dir keeps none of them.
    assert!(shared.path().join(format!("jobs/{id}/checkpoints")).is_dir());
    assert!(shared.path().join(format!("datasets/uploads/{dataset}.txt")).is_file());
    let data_dir = first.stop().await;
    assert!(!data_dir.path().join("jobs").join(&id).exists());
    assert!(!data_dir.path().join(format!("datasets/uploads/{dataset}.txt")).exists());

    // Another replica, its own data dir, the same database and shared dir: it serves them.
    let second = Server::start_on(&db, on_shared).await;
    let r = second
        .client
        .get(second.url(&format!("/jobs/{id}/checkpoints/{}", newest["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-checksum-sha256"], newest["sha256"].as_str().unwrap());
    let r = second
        .client
        .post(second.url(&format!("/jobs/{id}/generate")))
        .json(&serde_json::json!({"prefix": "the ", "max_tokens": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let listed = get_json(&second.client, &second.url(&format!("/datasets/{dataset}"))).await;
    assert_eq!(listed["id"], dataset.as_str());
}

/// A PostgreSQL server of this test's own (`scripts/postgres`), to restart without touching the
/// server the other tests share; stopped when dropped.
struct OwnPostgres {
    dir: tempfile::TempDir,
    url: String,
}

impl OwnPostgres {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = postgres_script("start", dir.path());
        Self { dir, url: url.trim().to_string() }
    }

    fn restart(&self) {
        postgres_script("restart", self.dir.path());
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres"))
            .args(["stop"])
            .arg(self.dir.path())
            .status();
    }
}

fn postgres_script(command: &str, dir: &std::path::Path) -> String {
    let output = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres"))
        .arg(command)
        .arg(dir)
        .output()
        .expect("run scripts/postgres");
    assert!(
        output.status.success(),
        "scripts/postgres {command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_training_stalls_two_replicas_and_loses_or_repeats_nothing() {
    let postgres = OwnPostgres::start();
    let url = format!("{}/postgres", postgres.url);
    let shared = tempfile::tempdir().unwrap();
    let replica = |c: &mut kiln::Config| {
        c.database_url = Some(url.parse().unwrap());
        c.shared_dir = Some(shared.path().to_path_buf());
    };
    let servers = [Server::start_with(replica).await, Server::start_with(replica).await];
    let (c, base) = (&servers[0].client, servers[0].base.as_str());
    let mut job = synthetic_job(4);
    job["data"]["train_size"] = serde_json::json!(6000);
    job["training"]["log_every"] = serde_json::json!(1);
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(submit(c, base, &job).await["id"].as_str().unwrap().to_string());
    }
    // One job on each replica (each has one worker), both training.
    let mut trained_by = Vec::new();
    for id in &ids {
        let running = crate::common::wait_for(c, base, id, Duration::from_secs(120), |j| {
            j["status"] == "running" && j["progress"]["step"].as_u64() > Some(2)
        })
        .await;
        trained_by.push(running["replica"].as_str().unwrap().to_string());
    }
    assert_ne!(trained_by[0], trained_by[1], "both replicas train");

    let restart = tokio::task::spawn_blocking(move || {
        postgres.restart();
        postgres
    });
    // Asked while the server restarts: the answer waits for it rather than fails.
    let during = get_json(c, &servers[1].url(&format!("/jobs/{}", ids[0]))).await;
    assert_eq!(during["id"], ids[0].as_str());
    let postgres = restart.await.unwrap();
    for id in &ids {
        let after = get_json(c, &servers[1].url(&format!("/jobs/{id}"))).await;
        assert_eq!(after["status"], "running", "the restart came while the jobs trained: {after}");
    }

    for (id, by) in ids.iter().zip(&trained_by) {
        let done = wait_finished(c, base, id, Duration::from_secs(300)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["replica"], by.as_str(), "no job moved: the replicas' leases held");
        let metrics = get_json(c, &servers[0].url(&format!("/jobs/{id}/metrics?limit=1000"))).await;
        let steps: Vec<u64> =
            metrics["steps"].as_array().unwrap().iter().map(|s| s["step"].as_u64().unwrap()).collect();
        assert_eq!(
            steps,
            (1..=done["progress"]["steps"].as_u64().unwrap()).collect::<Vec<_>>(),
            "every step once"
        );
        let epochs: Vec<u64> =
            metrics["epochs"].as_array().unwrap().iter().map(|e| e["epoch"].as_u64().unwrap()).collect();
        assert_eq!(epochs, [1, 2, 3, 4]);
    }
    for server in servers {
        server.stop().await;
    }
    drop(postgres);
}

#[test]
fn a_database_url_kiln_cannot_use_is_refused_without_printing_its_password() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "postgresq://kiln:hunter2@127.0.0.1:5432/kiln",
        "postgres://kiln:hunter2@127.0.0.1:notaport/kiln",
        "sqlite://",
    ] {
        let Err(printed) = Process::try_spawn_with_env(dir.path(), &[("KILN_DATABASE_URL", Some(url))])
        else {
            panic!("kiln served on {url}")
        };
        assert!(printed.contains("database"), "{url}: {printed}");
        assert!(!printed.contains("hunter2"), "{url}: the password was printed: {printed}");
    }
}
