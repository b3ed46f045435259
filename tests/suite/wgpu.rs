//! The WGPU backend over HTTP: `GET /backends` lists the devices, jobs train on `wgpu`, `auto`
//! records the device it got, a missing device is refused naming those that exist, and a language
//! model trained on WGPU generates from its checkpoint on the CPU.
//!
//! On a machine without a GPU the device is Mesa's software adapter, llvmpipe
//! (`mesa-vulkan-drivers`, which `scripts/test` installs).

use std::time::Duration;

use crate::common::{Process, Server, get_json, submit, wait_finished};
use serde_json::{Value, json};

async fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let r = server.client.post(server.url(path)).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn mlp_job(backend: &str) -> Value {
    json!({
        "name": format!("mlp-bn on {backend}"),
        "model": {"kind": "mlp_bn", "hidden": [64, 32]},
        "data": {"dataset": "synthetic_images", "train_size": 512, "test_size": 128, "seed": 2},
        "training": {"epochs": 3, "batch_size": 64, "seed": 4, "optimizer": {"kind": "sgd", "lr": 0.2}},
        "backend": backend
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_train_on_wgpu_and_auto_and_a_missing_device_is_refused_by_name() {
    let server = Server::start().await;
    let backends = get_json(&server.client, &server.url("/backends")).await;
    let names: Vec<&str> =
        backends["backends"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cpu", "wgpu"], "{backends}");
    let devices = backends["backends"][1]["devices"].as_array().unwrap();
    assert!(!devices.is_empty(), "no WGPU device; install mesa-vulkan-drivers: {backends}");
    assert_eq!(devices[0]["id"], "wgpu:0");
    assert_eq!(devices[0]["usable"], true, "{backends}");
    let first_name = devices[0]["name"].as_str().unwrap().to_string();
    let auto = backends["auto"].as_str().unwrap().to_string();

    // A device the server lacks: 422, naming the ones it has.
    let (status, body) = post(&server, "/jobs", &mlp_job(&format!("wgpu:{}", devices.len()))).await;
    assert_eq!(status, 422, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("backend this server has no device wgpu:{}", devices.len())),
        "{detail}"
    );
    assert!(detail.contains(&format!("wgpu:0 ({first_name})")), "{detail}");

    let on_gpu = submit(&server.client, &server.base, &mlp_job("wgpu")).await;
    let on_auto = submit(&server.client, &server.base, &mlp_job("auto")).await;
    let on_cpu = submit(&server.client, &server.base, &mlp_job("cpu")).await;
    let gpu_id = on_gpu["id"].as_str().unwrap();
    let auto_id = on_auto["id"].as_str().unwrap();
    let cpu_id = on_cpu["id"].as_str().unwrap();
    let gpu_job = wait_finished(&server.client, &server.base, gpu_id, Duration::from_secs(900)).await;
    let auto_job = wait_finished(&server.client, &server.base, auto_id, Duration::from_secs(900)).await;
    assert_eq!(gpu_job["status"], "succeeded", "{gpu_job}");
    assert_eq!(auto_job["status"], "succeeded", "{auto_job}");
    let cpu_job = wait_finished(&server.client, &server.base, cpu_id, Duration::from_secs(900)).await;
    assert_eq!(cpu_job["status"], "succeeded", "{cpu_job}");
    assert_eq!(cpu_job["backend"], "cpu (burn-flex)", "{cpu_job}");

    let backend = gpu_job["backend"].as_str().unwrap();
    assert!(backend.starts_with(&format!("wgpu:0 ({first_name}, ")), "{backend}");
    let auto_backend = auto_job["backend"].as_str().unwrap();
    if auto == "cpu" {
        assert_eq!(auto_backend, "cpu (burn-flex)");
    } else {
        assert!(auto_backend.starts_with(&format!("{auto} (")), "{auto_backend}");
    }
    for job in [&gpu_job, &auto_job] {
        let first = job["first_step_seconds"].as_f64().expect("first_step_seconds is recorded");
        assert!(first > 0.0, "{job}");
    }

    // The same definition, seed and data: the WGPU job learns as the CPU one does, whatever
    // `auto` picked on this machine.
    let epochs = |id: &str| {
        let url = server.url(&format!("/jobs/{id}/metrics"));
        let client = server.client.clone();
        async move { get_json(&client, &url).await["epochs"].as_array().unwrap().clone() }
    };
    let gpu_epochs = epochs(gpu_id).await;
    assert_eq!(gpu_epochs.len(), 3);
    let loss = |e: &Value| e["train_loss"].as_f64().unwrap();
    assert!(loss(&gpu_epochs[2]) < loss(&gpu_epochs[0]), "{gpu_epochs:?}");
    let cpu_epochs = epochs(cpu_id).await;
    assert_eq!(cpu_epochs.len(), gpu_epochs.len());
    for (g, c) in gpu_epochs.iter().zip(&cpu_epochs) {
        let (g, c) = (loss(g), loss(c));
        assert!((g - c).abs() <= 1e-3 * c.max(1.0), "epoch loss on wgpu {g}, on cpu {c}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_language_model_trained_on_wgpu_generates_from_its_checkpoint_on_the_cpu() {
    let server = Server::start().await;
    let job = json!({
        "model": {"kind": "rnn_lm", "cell": "gru", "hidden": 32},
        "data": {"dataset": "synthetic_text", "chars": 3000, "seed": 1, "num_steps": 8},
        "training": {"epochs": 2, "batch_size": 8, "optimizer": {"kind": "sgd", "lr": 1.0}},
        "backend": "wgpu"
    });
    let job = submit(&server.client, &server.base, &job).await;
    let id = job["id"].as_str().unwrap();
    let job = wait_finished(&server.client, &server.base, id, Duration::from_secs(900)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["backend"].as_str().unwrap().starts_with("wgpu:"), "{job}");

    let request = json!({"prefix": "the ", "max_tokens": 40, "temperature": 0});
    let (status, first) = post(&server, &format!("/jobs/{id}/generate"), &request).await;
    assert_eq!(status, 200, "{first}");
    let text = first["text"].as_str().unwrap();
    assert_eq!(text.chars().count(), 40, "{first}");
    assert_eq!(first["epoch"], 2);
    let (_, again) = post(&server, &format!("/jobs/{id}/generate"), &request).await;
    assert_eq!(again["text"], first["text"], "greedy generation is deterministic");
    server.stop().await;
}

#[tokio::test]
async fn a_server_started_without_wgpu_refuses_wgpu_jobs_and_runs_auto_on_the_cpu() {
    let server = Server::start_with(|c| c.wgpu = false).await;
    let backends = get_json(&server.client, &server.url("/backends")).await;
    assert_eq!(backends["auto"], "cpu");
    let names: Vec<&str> =
        backends["backends"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cpu"], "{backends}");
    let (status, body) = post(&server, "/jobs", &mlp_job("wgpu")).await;
    assert_eq!(status, 422);
    assert!(body["detail"].as_str().unwrap().contains("--wgpu false"), "{body}");
    let (status, body) = post(&server, "/jobs", &mlp_job("auto")).await;
    assert_eq!(status, 201, "{body}");
    server.stop().await;
}

/// Everything in `dir`, recursively, in bytes.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => bytes_under(&e.path()),
                _ => e.metadata().map_or(0, |m| m.len()),
            })
            .sum()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_its_gpu_caches_under_the_data_dir_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let job = json!({
        "model": {"kind": "mlp_bn", "hidden": [16]},
        "data": {"dataset": "synthetic_images", "train_size": 64, "test_size": 16},
        "training": {"epochs": 1, "batch_size": 32},
        "backend": "wgpu"
    });
    let caches = dir.path().join("gpu-cache");
    let mut first_steps = Vec::new();
    for start in ["cold", "warm"] {
        // The driver's cache goes where the server puts it, whatever this machine's environment says.
        let server = Process::spawn_with_env(
            dir.path(),
            &[("MESA_SHADER_CACHE_DIR", None), ("KILN_GPU_CACHE_DIR", None)],
        );
        let id = submit(&server.client, &server.base, &job).await["id"].as_str().unwrap().to_string();
        let done = wait_finished(&server.client, &server.base, &id, Duration::from_secs(900)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        first_steps.push((start, done["first_step_seconds"].as_f64().unwrap()));
        let (status, _) = server.terminate();
        assert!(status.success(), "{status:?}");
        // CubeCL's store (autotune results) and Mesa's shader cache are in the data dir.
        assert!(bytes_under(&caches.join("cubecl")) > 0, "no CubeCL store under {caches:?}");
        assert!(bytes_under(&caches.join("mesa")) > 0, "no Mesa shader cache under {caches:?}");
    }
    // Timings are reported, not asserted: the README's table comes from bench/wgpu-start.sh.
    println!("first step: {first_steps:?}");
}
