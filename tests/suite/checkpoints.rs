//! Verified checkpoints: a resume skips a damaged newest checkpoint for the newest intact one and
//! says so in the job; a damaged file is never downloaded; what a checkpoint write cut short left
//! is gone after a restart; and no answer names the server's data dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{Server, checkpoint_at_step, checkpoints_dir, submit, wait_finished, wait_for};

/// An MLP on generated images: 4 steps an epoch, a checkpoint every epoch, the newest 3 kept.
fn job(epochs: u32) -> Value {
    json!({
        "model": {"kind": "mlp_bn", "hidden": [32]},
        "data": {"dataset": "synthetic_images", "train_size": 256, "test_size": 64, "seed": 3},
        "training": {"epochs": epochs, "batch_size": 64, "seed": 7, "log_every": 1,
                     "optimizer": {"kind": "sgd", "lr": 0.1}},
        "checkpoint": {"every": 1, "keep_last": 3}
    })
}

/// Enough epochs that a job is still training when the test stops the server after its third:
/// an epoch takes milliseconds (12 epochs were once enough, until the CPU kernels got faster and a
/// job finished before the stop).
const EPOCHS: u32 = 300;

/// A GET's status, content type and body; the body is also kept in `seen`.
async fn fetch(c: &reqwest::Client, url: &str, seen: &mut Vec<String>) -> (u16, String, Vec<u8>) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    let body = r.bytes().await.unwrap().to_vec();
    seen.push(String::from_utf8_lossy(&body).into_owned());
    (status, content_type.unwrap_or_default(), body)
}

async fn fetch_json(c: &reqwest::Client, url: &str, seen: &mut Vec<String>) -> Value {
    let (status, _, body) = fetch(c, url, seen).await;
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The problem+json answer of a GET expected to fail with `status`.
async fn problem(c: &reqwest::Client, url: &str, status: u16, seen: &mut Vec<String>) -> Value {
    let (got, content_type, body) = fetch(c, url, seen).await;
    assert_eq!(got, status, "GET {url}: {}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "application/problem+json");
    serde_json::from_slice(&body).unwrap()
}

/// The model files of a job's checkpoints on disk, by step, oldest first.
fn model_files(data: &Path, id: &str) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = fs::read_dir(checkpoints_dir(data, id))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|dir| {
            // `step-<step>`, then `-<claim>` for the run that wrote it.
            let step = dir.file_name()?.to_str()?.strip_prefix("step-")?.split('-').next()?.parse().ok()?;
            Some((step, dir.join("model.bpk")))
        })
        .collect();
    files.sort();
    files
}

fn model_file(data: &Path, id: &str, checkpoint: &Value) -> PathBuf {
    checkpoint_at_step(data, id, checkpoint["step"].as_u64().unwrap()).join("model.bpk")
}

fn flip_a_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path) {
    let bytes = fs::read(path).unwrap();
    fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

/// The checkpoint id a warning names: `checkpoint <id> (step …`.
fn named_checkpoint(warning: &str) -> i64 {
    warning.strip_prefix("checkpoint ").and_then(|w| w.split(' ').next()).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_newest_checkpoint_is_skipped_on_resume_and_never_served() {
    let server = Server::start_with(|c| c.workers = 2).await;
    let (c, base) = (server.client.clone(), server.base.clone());
    let data_dir = server.dir.path().display().to_string();
    let mut seen = Vec::new();
    let (truncated, flipped) = (submit(&c, &base, &job(EPOCHS)).await, submit(&c, &base, &job(EPOCHS)).await);
    let ids = [truncated["id"].as_str().unwrap().to_string(), flipped["id"].as_str().unwrap().to_string()];
    for id in &ids {
        wait_for(&c, &base, id, Duration::from_secs(120), |j| j["progress"]["epoch"].as_u64() >= Some(3))
            .await;
    }
    // A graceful stop: each job checkpoints at its next step and waits in the queue to resume.
    let data = server.stop().await;
    let mut damaged_steps = Vec::new();
    let mut resume_steps = Vec::new();
    for (id, damage) in ids.iter().zip([truncate as fn(&Path), flip_a_byte]) {
        let files = model_files(data.path(), id);
        let [.., (previous, _), (newest, newest_file)] = &files[..] else { panic!("{files:?}") };
        damage(newest_file);
        damaged_steps.push(*newest);
        resume_steps.push(*previous);
    }
    // What a checkpoint write cut short by kill -9 leaves, and a directory never indexed.
    let checkpoints = checkpoints_dir(data.path(), &ids[0]);
    let tmp = checkpoints.join(".tmp-5a0c4a4e-8f3b-4c1e-9a57-0d5c1c7f2b10");
    let unindexed = checkpoints.join("step-9999999999");
    for dir in [&tmp, &unindexed] {
        fs::create_dir(dir).unwrap();
        fs::write(dir.join("model.bpk"), vec![0u8; 4096]).unwrap();
    }

    let server = Server::start_in(data, |c| c.workers = 2).await;
    let (c, base) = (server.client.clone(), server.base.clone());
    assert!(!tmp.exists(), "the temporary directory is swept at start");
    assert!(unindexed.exists(), "a checkpoint directory the index does not know is left in place");
    for ((id, damaged), resumed) in ids.iter().zip(damaged_steps).zip(resume_steps) {
        wait_finished(&c, &base, id, Duration::from_secs(300)).await;
        let job = fetch_json(&c, &format!("{base}/jobs/{id}"), &mut seen).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["progress"]["epoch"], EPOCHS);
        let warnings = job["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1, "{job}");
        let warning = warnings[0].as_str().unwrap();
        assert!(warning.contains(&format!(" (step {damaged}) is damaged (model.bpk: ")), "{warning}");
        assert!(warning.ends_with(&format!(" (step {resumed})")), "{warning}");
        assert!(warning.contains("and was dropped; the job resumed from checkpoint "), "{warning}");
        // The damaged checkpoint is out of the index: neither listed nor served.
        let dropped = named_checkpoint(warning);
        let listed = fetch_json(&c, &format!("{base}/jobs/{id}/checkpoints"), &mut seen).await;
        assert!(listed.as_array().unwrap().iter().all(|cp| cp["id"] != dropped), "{listed}");
        let answer = problem(&c, &format!("{base}/jobs/{id}/checkpoints/{dropped}"), 404, &mut seen).await;
        assert_eq!(answer["type"], "not_found");
    }

    // A finished job's files damaged on disk: each download is refused, never a short 200.
    let id = &ids[0];
    let listed = fetch_json(&c, &format!("{base}/jobs/{id}/checkpoints"), &mut seen).await;
    let listed = listed.as_array().unwrap();
    assert!(listed.len() >= 3, "the newest 3 and the best: {listed:?}");
    let intact = listed.last().unwrap();
    let (status, _, body) =
        fetch(&c, &format!("{base}/jobs/{id}/checkpoints/{}", intact["id"]), &mut seen).await;
    assert_eq!(status, 200);
    assert_eq!(body.len() as u64, intact["bytes"].as_u64().unwrap());
    let hex: String = Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, intact["sha256"].as_str().unwrap());
    let damages: [fn(&Path); 3] = [flip_a_byte, truncate, |p| fs::remove_file(p).unwrap()];
    for (checkpoint, damage) in listed.iter().zip(damages) {
        damage(&model_file(server.dir.path(), id, checkpoint));
        let url = format!("{base}/jobs/{id}/checkpoints/{}", checkpoint["id"]);
        let answer = problem(&c, &url, 500, &mut seen).await;
        let detail = answer["detail"].as_str().unwrap();
        if model_file(server.dir.path(), id, checkpoint).exists() {
            assert_eq!(answer["type"], "checkpoint_corrupt", "{answer}");
            let damaged = format!("checkpoint {} of job {id} is damaged", checkpoint["id"]);
            assert!(detail.starts_with(&damaged), "{detail}");
            assert!(detail.contains("model.bpk no longer matches its recorded SHA-256"), "{detail}");
        } else {
            assert_eq!(answer["type"], "checkpoint_missing", "{answer}");
            assert!(detail.contains("model.bpk is gone from the data dir"), "{detail}");
        }
    }
    assert!(seen.iter().all(|body| !body.contains(&data_dir)), "an answer names {data_dir}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_cannot_write_its_checkpoint_fails_naming_no_server_path() {
    let server = Server::start().await;
    let (c, base) = (server.client.clone(), server.base.clone());
    let data_dir = server.dir.path().display().to_string();
    let mut seen = Vec::new();
    // One worker: the second job waits while its checkpoints directory is made a plain file.
    let blocker = submit(&c, &base, &job(1000)).await;
    let failing = submit(&c, &base, &job(1)).await;
    let id = failing["id"].as_str().unwrap();
    let checkpoints = checkpoints_dir(server.dir.path(), id);
    fs::create_dir_all(checkpoints.parent().unwrap()).unwrap();
    fs::write(&checkpoints, "not a directory").unwrap();
    let cancelled = c.post(format!("{base}/jobs/{}/cancel", blocker["id"].as_str().unwrap())).send().await;
    assert_eq!(cancelled.unwrap().status(), 200);

    wait_finished(&c, &base, id, Duration::from_secs(120)).await;
    let job = fetch_json(&c, &format!("{base}/jobs/{id}"), &mut seen).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.starts_with(&format!("checkpoint: jobs/{id}/checkpoints")), "{error}");
    fetch_json(&c, &format!("{base}/jobs"), &mut seen).await;
    assert!(seen.iter().all(|body| !body.contains(&data_dir)), "an answer names {data_dir}");
    server.stop().await;
}
