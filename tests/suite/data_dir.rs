//! The data dir on disk: a lost database never costs the files (the server refuses to start over
//! jobs and uploads it does not know, until told to adopt or discard them); a data dir moved or
//! copied serves its own checkpoints; every file of a checkpoint is checked before a resume, a
//! download or a generation, and each error names its real cause.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{Server, checkpoint_at_step, checkpoints_dir, get_json, submit, wait_finished, wait_for};

/// An MLP on generated images: 4 steps an epoch, a checkpoint every epoch, the newest 3 kept.
fn mlp_job(epochs: u32) -> Value {
    json!({
        "model": {"kind": "mlp_bn", "hidden": [32]},
        "data": {"dataset": "synthetic_images", "train_size": 256, "test_size": 64, "seed": 3},
        "training": {"epochs": epochs, "batch_size": 64, "seed": 7, "log_every": 1,
                     "optimizer": {"kind": "sgd", "lr": 0.1, "momentum": 0.9}},
        "checkpoint": {"every": 1, "keep_last": 3}
    })
}

/// A small GRU language model on generated text, two epochs.
fn lm_job() -> Value {
    json!({
        "model": {"kind": "rnn_lm", "cell": "gru", "hidden": 16},
        "data": {"dataset": "synthetic_text", "chars": 3000, "seed": 2, "num_steps": 10},
        "training": {"epochs": 2, "batch_size": 8, "log_every": 1, "optimizer": {"kind": "adam", "lr": 0.01}},
        "checkpoint": {"every": 1, "keep_last": 2}
    })
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `dir` with its SHA-256, by path relative to `dir`.
fn files(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut found = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for entry in fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                found.insert(path.strip_prefix(dir).unwrap().to_path_buf(), hex(&fs::read(&path).unwrap()));
            }
        }
    }
    found
}

/// The files of the data dir that are kiln's record: jobs and uploads (not the database).
fn records(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut found = BTreeMap::new();
    for records in ["jobs", "datasets"] {
        if dir.join(records).is_dir() {
            let within =
                files(&dir.join(records)).into_iter().map(|(p, sha)| (Path::new(records).join(p), sha));
            found.extend(within);
        }
    }
    found
}

/// Starts the service over `dir` as `tweak` says and returns why it refused to start.
async fn refusal(dir: &Path, tweak: impl FnOnce(&mut kiln::Config)) -> String {
    let mut config = kiln::Config::with_data_dir(dir);
    tweak(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    match kiln::serve(listener, config, std::future::ready(())).await {
        Ok(()) => panic!("the server started over {}", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// `cp -a from/. to`.
fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from.join(".")).arg(to).status().unwrap();
    assert!(status.success(), "cp -a");
}

fn flip_a_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

fn checkpoint_dir(data: &Path, job: &str, checkpoint: &Value) -> PathBuf {
    checkpoint_at_step(data, job, checkpoint["step"].as_u64().unwrap())
}

/// A GET or POST's status and JSON body.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Downloads a checkpoint: its status, and the SHA-256 of its body when it is 200.
async fn download(server: &Server, job: &str, checkpoint: &Value) -> (u16, Value) {
    let url = server.url(&format!("/jobs/{job}/checkpoints/{}", checkpoint["id"]));
    let r = server.client.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    match status {
        200 => (status, json!(hex(&body))),
        _ => (status, serde_json::from_slice(&body).unwrap()),
    }
}

/// A finished MLP job with its checkpoints, and an uploaded data set; returns the data dir, the
/// job and its checkpoints, and the data set as listed.
async fn finished_job_and_upload() -> (tempfile::TempDir, Value, Value, Value) {
    let server = Server::start().await;
    let job = submit(&server.client, &server.base, &mlp_job(3)).await;
    let id = job["id"].as_str().unwrap().to_string();
    let r = server.client.post(server.url("/datasets?name=corpus")).header("content-type", "text/plain");
    let (status, dataset) = answer(r.body("the time traveller — 時は金なり\n")).await;
    assert_eq!(status, 201, "{dataset}");
    let job = wait_finished(&server.client, &server.base, &id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let checkpoints = get_json(&server.client, &server.url(&format!("/jobs/{id}/checkpoints"))).await;
    assert_eq!(checkpoints.as_array().unwrap().len(), 3, "{checkpoints}");
    (server.stop().await, job, checkpoints, dataset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_refuses_to_start_until_told_to_adopt_or_discard() {
    let (data, before, checkpoints, dataset) = finished_job_and_upload().await;
    let id = before["id"].as_str().unwrap().to_string();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(data.path(), copy.path());
    let kept = records(data.path());
    assert!(kept.len() >= 10, "{kept:?}");

    // Truncated to zero bytes: nothing starts, nothing is touched.
    let database = data.path().join("kiln.sqlite3");
    fs::write(&database, b"").unwrap();
    let refused = refusal(data.path(), |_| {}).await;
    let upload = format!("datasets/uploads/{}.txt", dataset["id"].as_str().unwrap());
    assert!(refused.starts_with("the data dir holds 1 job directory and 1 uploaded data set"), "{refused}");
    assert!(refused.contains(&format!("(jobs/{id}, {upload})")), "{refused}");
    for words in ["kiln.sqlite3) is empty", "restore", "-wal", "--adopt-orphans", "--discard-orphans"] {
        assert!(refused.contains(words), "{words}: {refused}");
    }
    assert!(!refused.contains(&data.path().display().to_string()), "{refused}");
    assert_eq!(records(data.path()), kept, "a refused start changes nothing");

    // Adopted: the job, its checkpoints (the very files) and the data set are back.
    let server = Server::start_in(data, |c| c.adopt_orphans = true).await;
    let (c, base) = (server.client.clone(), server.base.clone());
    let jobs = get_json(&c, &format!("{base}/jobs")).await;
    let job = &jobs["jobs"][0];
    assert_eq!(job["id"], id.as_str(), "{jobs}");
    assert_eq!(job["status"], "succeeded", "{job}");
    for field in ["spec", "progress", "parameters"] {
        assert_eq!(job[field], before[field], "{field}: {job}");
    }
    let adopted = get_json(&c, &format!("{base}/jobs/{id}/checkpoints")).await;
    let pairs = |list: &Value| -> Vec<(Value, Value, Value)> {
        let list = list.as_array().unwrap().iter();
        list.map(|c| (c["step"].clone(), c["bytes"].clone(), c["sha256"].clone())).collect()
    };
    assert_eq!(pairs(&adopted), pairs(&checkpoints));
    for checkpoint in adopted.as_array().unwrap() {
        assert_eq!(download(&server, &id, checkpoint).await, (200, checkpoint["sha256"].clone()));
    }
    let datasets = get_json(&c, &format!("{base}/datasets")).await;
    let listed = &datasets[0];
    for field in ["id", "bytes", "sha256", "chars"] {
        assert_eq!(listed[field], dataset[field], "{field}: {listed}");
    }
    let data = server.stop().await;
    assert_eq!(records(data.path()), kept, "adoption moves no file");
    // Adopted once: the next start needs no flag.
    Server::start_in(data, |_| {}).await.stop().await;

    // Deleted with its -wal and -shm: refused by the binary too, with a non-zero exit.
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(copy.path().join(format!("kiln.sqlite3{suffix}")));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["serve", "--bind", "127.0.0.1:0", "--wgpu", "false", "--data-dir"])
        .arg(copy.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("kiln: the data dir holds 1 job directory and 1 uploaded data set"), "{stderr}");
    assert_eq!(records(copy.path()), kept);

    // Discarded: gone, and the server starts blank.
    let server = Server::start_in(copy, |c| c.discard_orphans = true).await;
    let jobs = get_json(&server.client, &server.url("/jobs")).await;
    assert_eq!(jobs["jobs"], json!([]));
    let copy = server.stop().await;
    assert!(records(copy.path()).is_empty(), "{:?}", records(copy.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_orphans_go_to_lost_and_found_and_are_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let (job, upload) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let step = dir.path().join(format!("jobs/{job}/checkpoints/step-0000000004"));
    fs::create_dir_all(&step).unwrap();
    fs::write(step.join("checkpoint.json"), b"{ not json").unwrap();
    fs::create_dir_all(dir.path().join("datasets/uploads")).unwrap();
    fs::write(dir.path().join(format!("datasets/uploads/{upload}.txt")), b"\xff\xfe not UTF-8").unwrap();
    let refused = refusal(dir.path(), |_| {}).await;
    assert!(refused.contains("1 job directory and 1 uploaded data set"), "{refused}");

    let server = Server::start_in(dir, |c| c.adopt_orphans = true).await;
    let jobs = get_json(&server.client, &server.url("/jobs")).await;
    assert_eq!(jobs["jobs"], json!([]));
    let dir = server.stop().await;
    let lost = dir.path().join("lost+found");
    assert!(lost.join(format!("jobs/{job}/checkpoints/step-0000000004/checkpoint.json")).exists());
    assert!(lost.join(format!("datasets/uploads/{upload}.txt")).exists());
    assert!(!dir.path().join(format!("jobs/{job}")).exists());
    // Nothing is left to refuse over.
    Server::start_in(dir, |_| {}).await.stop().await;
}

/// Rewrites the checkpoint index as an older kiln wrote it: absolute paths into `old`, and no
/// record of schema versions (kept since).
fn absolute_paths_into(data: &Path, old: &Path) {
    let db = rusqlite::Connection::open(data.join("kiln.sqlite3")).unwrap();
    let changed =
        db.execute("UPDATE checkpoints SET dir = ?1 || '/' || dir", [old.display().to_string()]).unwrap();
    assert!(changed > 0);
    db.execute_batch("DROP TABLE schema_version").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_or_copied_data_dir_serves_its_own_checkpoints() {
    let server = Server::start().await;
    let job = submit(&server.client, &server.base, &lm_job()).await;
    let id = job["id"].as_str().unwrap().to_string();
    let job = wait_finished(&server.client, &server.base, &id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let checkpoints = get_json(&server.client, &server.url(&format!("/jobs/{id}/checkpoints"))).await;
    let [older, newest] = &checkpoints.as_array().unwrap()[..] else { panic!("{checkpoints}") };
    let data = server.stop().await;
    // As an older kiln indexed them, then `mv data moved`.
    absolute_paths_into(data.path(), data.path());
    let moved = tempfile::tempdir().unwrap();
    fs::remove_dir(moved.path()).unwrap();
    fs::rename(data.path(), moved.path()).unwrap();

    let server = Server::start_in(moved, |_| {}).await;
    let generate = |server: &Server, body: Value| {
        server.client.post(server.url(&format!("/jobs/{id}/generate"))).json(&body)
    };
    for checkpoint in [older, newest] {
        assert_eq!(download(&server, &id, checkpoint).await, (200, checkpoint["sha256"].clone()));
    }
    let (status, generated) = answer(generate(&server, json!({"prefix": "the ", "max_tokens": 8}))).await;
    assert_eq!(status, 200, "{generated}");
    let moved = server.stop().await;

    // `cp -a moved copy`, then the original's newest model damaged: the copy serves its own.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(moved.path(), copy.path());
    flip_a_byte(&checkpoint_dir(moved.path(), &id, newest).join("model.bpk"));
    let server = Server::start_in(copy, |_| {}).await;
    assert_eq!(download(&server, &id, newest).await, (200, newest["sha256"].clone()));

    // The copy's own files damaged: each error names its cause, and no server path.
    let copy_dir_of = |c: &Value| checkpoint_dir(server.dir.path(), &id, c);
    fs::write(copy_dir_of(newest).join("checkpoint.json"), b"{ not json").unwrap();
    let (status, problem) = answer(generate(&server, json!({"prefix": "the "}))).await;
    assert_eq!((status, problem["type"].as_str()), (500, Some("checkpoint_unreadable")), "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    let newest_dir = copy_dir_of(newest);
    let newest_name = newest_dir.file_name().unwrap().to_str().unwrap();
    let manifest = format!("jobs/{id}/checkpoints/{newest_name}/checkpoint.json");
    assert!(detail.contains(&format!("{manifest} is not valid")), "{detail}");
    let (status, problem) = download(&server, &id, newest).await;
    assert_eq!((status, problem["type"].as_str()), (500, Some("checkpoint_unreadable")), "{problem}");
    fs::remove_file(copy_dir_of(older).join("model.bpk")).unwrap();
    let body = json!({"prefix": "the ", "checkpoint": older["id"]});
    let (status, problem) = answer(generate(&server, body)).await;
    assert_eq!((status, problem["type"].as_str()), (500, Some("checkpoint_missing")), "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("model.bpk is gone from the data dir"), "{detail}");
    assert!(!detail.contains(&server.dir.path().display().to_string()), "{detail}");

    // A DELETE on the copy removes the copy's files, not the original's.
    let r = server.client.delete(server.url(&format!("/jobs/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(!server.dir.path().join("jobs").join(&id).exists());
    assert!(checkpoint_dir(moved.path(), &id, older).join("model.bpk").exists());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_of_a_checkpoint_is_verified_before_resume_and_download() {
    let server = Server::start_with(|c| c.workers = 2).await;
    let (c, base) = (server.client.clone(), server.base.clone());
    let finished = submit(&c, &base, &mlp_job(3)).await["id"].as_str().unwrap().to_string();
    let running = submit(&c, &base, &mlp_job(1000)).await["id"].as_str().unwrap().to_string();
    wait_finished(&c, &base, &finished, Duration::from_secs(120)).await;
    wait_for(&c, &base, &running, Duration::from_secs(120), |j| j["progress"]["epoch"].as_u64() >= Some(3))
        .await;
    let finished_checkpoints = get_json(&c, &format!("{base}/jobs/{finished}/checkpoints")).await;
    // A graceful stop: the running job checkpoints at its next step and waits to resume.
    let data = server.stop().await;

    let mut steps: Vec<PathBuf> = fs::read_dir(checkpoints_dir(data.path(), &running))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("step-"))
        .collect();
    steps.sort();
    let [.., previous, newest] = &steps[..] else { panic!("{steps:?}") };
    flip_a_byte(&newest.join("optimizer.bpk"));
    let [oldest, middle, last] = &finished_checkpoints.as_array().unwrap()[..] else { panic!() };
    flip_a_byte(&checkpoint_dir(data.path(), &finished, last).join("optimizer.bpk"));
    fs::remove_file(checkpoint_dir(data.path(), &finished, middle).join("model.bpk")).unwrap();
    fs::write(checkpoint_dir(data.path(), &finished, oldest).join("checkpoint.json"), b"[]").unwrap();

    let server = Server::start_in(data, |c| c.workers = 2).await;
    let (c, base) = (server.client.clone(), server.base.clone());
    let job = wait_for(&c, &base, &running, Duration::from_secs(120), |j| {
        !j["warnings"].as_array().unwrap().is_empty()
    })
    .await;
    let warning = job["warnings"][0].as_str().unwrap();
    assert!(warning.contains("is damaged (optimizer.bpk: its SHA-256 is not the one recorded)"), "{warning}");
    // `step-<step>-<claim>`
    let resumed = previous.file_name().unwrap().to_str().unwrap().trim_start_matches("step-");
    let resumed: u64 = resumed.split('-').next().unwrap().parse().unwrap();
    assert!(warning.ends_with(&format!("(step {resumed})")), "{warning}");
    // Cancelled unless it finished meanwhile (an epoch takes milliseconds).
    let r = c.post(format!("{base}/jobs/{running}/cancel")).send().await.unwrap();
    assert!(matches!(r.status().as_u16(), 200 | 409), "{}", r.status());

    let (status, problem) = download(&server, &finished, last).await;
    assert_eq!((status, problem["type"].as_str()), (500, Some("checkpoint_corrupt")), "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("optimizer.bpk no longer matches its recorded SHA-256"), "{detail}");
    let (status, problem) = download(&server, &finished, middle).await;
    assert_eq!((status, problem["type"].as_str()), (500, Some("checkpoint_missing")), "{problem}");
    let (status, problem) = download(&server, &finished, oldest).await;
    assert_eq!((status, problem["type"].as_str()), (500, Some("checkpoint_unreadable")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("checkpoint.json is not valid"), "{problem}");
    wait_finished(&c, &base, &running, Duration::from_secs(60)).await;
    server.stop().await;
}
