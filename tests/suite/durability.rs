//! Restarts: a `kiln` process killed with SIGKILL mid-epoch, or stopped with SIGTERM, loses
//! nothing it accepted. Queued jobs stay queued; running jobs resume from their newest
//! checkpoint with their metrics up to it intact.

use std::time::Duration;

use crate::common::{Process, get_json, submit, synthetic_job, wait_finished, wait_for};
use serde_json::{Value, json};

/// Six epochs of 188 steps: long enough (seconds, however fast the CPU) to be stopped mid-way.
fn long_job() -> Value {
    let mut job = synthetic_job(6);
    job["data"]["train_size"] = json!(12000);
    job["training"]["optimizer"] = json!({"kind": "sgd", "lr": 0.3, "momentum": 0.9});
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_mid_epoch_resumes_from_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let first = Process::spawn(dir.path());
    let (c, base) = (first.client.clone(), first.base.clone());
    let running = submit(&c, &base, &long_job()).await;
    let id = running["id"].as_str().unwrap().to_string();
    let queued = submit(&c, &base, &synthetic_job(1)).await;
    let queued_id = queued["id"].as_str().unwrap().to_string();

    // Wait until the first epoch is checkpointed and the second is under way, then kill.
    let steps_per_epoch = 188;
    wait_for(&c, &base, &id, Duration::from_secs(300), |j| {
        j["progress"]["step"].as_u64() > Some(steps_per_epoch + 5)
    })
    .await;
    let checkpoints = get_json(&c, &format!("{base}/jobs/{id}/checkpoints")).await;
    let before = get_json(&c, &format!("{base}/jobs/{id}/metrics?limit=1000")).await;
    let last_checkpoint = checkpoints.as_array().unwrap().last().unwrap().clone();
    first.kill9();

    let second = Process::spawn(dir.path());
    let (c, base) = (second.client.clone(), second.base.clone());
    let queued = get_json(&c, &format!("{base}/jobs/{queued_id}")).await;
    assert!(matches!(queued["status"].as_str(), Some("queued" | "running" | "succeeded")), "{queued}");
    let job = wait_finished(&c, &base, &id, Duration::from_secs(600)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"]["epoch"], 6);

    let after = get_json(&c, &format!("{base}/jobs/{id}/metrics?limit=1000")).await;
    let resumed_epoch = last_checkpoint["epoch"].as_u64().unwrap() as usize;
    assert!(resumed_epoch >= 1);
    // Epochs up to the checkpoint are the very rows recorded before the kill.
    assert_eq!(
        after["epochs"].as_array().unwrap()[..resumed_epoch],
        before["epochs"].as_array().unwrap()[..resumed_epoch]
    );
    assert_eq!(after["epochs"].as_array().unwrap().len(), 6);
    // Step points run without gaps or repeats across the restart.
    let steps: Vec<u64> =
        after["steps"].as_array().unwrap().iter().map(|s| s["step"].as_u64().unwrap()).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    assert_eq!(*steps.last().unwrap(), 6 * steps_per_epoch);
    let q = wait_finished(&c, &base, &queued_id, Duration::from_secs(300)).await;
    assert_eq!(q["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_checkpoints_at_a_step_and_the_next_start_resumes_there() {
    let dir = tempfile::tempdir().unwrap();
    let first = Process::spawn(dir.path());
    let (c, base) = (first.client.clone(), first.base.clone());
    let job = submit(&c, &base, &long_job()).await;
    let id = job["id"].as_str().unwrap().to_string();
    wait_for(&c, &base, &id, Duration::from_secs(300), |j| j["progress"]["step"].as_u64() > Some(10)).await;
    let (status, took) = first.terminate();
    assert!(status.success(), "clean exit: {status}");
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");

    let second = Process::spawn(dir.path());
    let (c, base) = (second.client.clone(), second.base.clone());
    let cps = get_json(&c, &format!("{base}/jobs/{id}/checkpoints")).await;
    let interrupted = cps.as_array().unwrap().last().unwrap().clone();
    assert!(interrupted["step"].as_u64().unwrap() > 10, "{interrupted}");
    assert!(interrupted["metrics"].is_null(), "a mid-epoch checkpoint has no epoch metrics");
    let job = wait_finished(&c, &base, &id, Duration::from_secs(600)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let metrics = get_json(&c, &format!("{base}/jobs/{id}/metrics?limit=1000")).await;
    let last = metrics["epochs"].as_array().unwrap().last().unwrap().clone();
    assert!(last["test_accuracy"].as_f64().unwrap() > 0.9, "{last}");
    second.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_language_model_stopped_mid_epoch_resumes_with_its_vocabulary() {
    // Four epochs of about 600 steps, about a second each on a 2-core build machine: the 60-step
    // epochs this test once had lasted one 100 ms poll, and the stop could land on an epoch's end.
    const EPOCHS: u32 = 4;
    let dir = tempfile::tempdir().unwrap();
    let first = Process::spawn(dir.path());
    let (c, base) = (first.client.clone(), first.base.clone());
    let job = json!({
        "model": {"kind": "rnn_lm", "cell": "gru", "hidden": 32},
        "data": {"dataset": "synthetic_text", "chars": 200000, "seed": 2, "num_steps": 20},
        "training": {"epochs": EPOCHS, "batch_size": 16, "log_every": 1, "optimizer": {"kind": "adam", "lr": 0.01}},
        "checkpoint": {"every": 1, "keep_last": 2}
    });
    let job = submit(&c, &base, &job).await;
    let id = job["id"].as_str().unwrap().to_string();
    let running = wait_for(&c, &base, &id, Duration::from_secs(300), |j| {
        j["progress"]["epoch"].as_u64() >= Some(1) && j["progress"]["step"].as_u64() > Some(0)
    })
    .await;
    let steps_per_epoch = running["progress"]["steps"].as_u64().unwrap() / u64::from(EPOCHS);
    // Stopped in the first half of an epoch after the first (progress is polled every 100 ms):
    // the stop lands mid-epoch unless the signal takes half an epoch to act.
    let seen = wait_for(&c, &base, &id, Duration::from_secs(300), |j| {
        let step = j["progress"]["step"].as_u64().unwrap();
        let mid = step > steps_per_epoch && (4..steps_per_epoch / 2).contains(&(step % steps_per_epoch));
        mid || j["status"] != "running"
    })
    .await;
    assert_eq!(seen["status"], "running", "no poll fell in the first half of an epoch: {seen}");
    let (status, _) = first.terminate();
    assert!(status.success(), "clean exit: {status}");

    let second = Process::spawn(dir.path());
    let (c, base) = (second.client.clone(), second.base.clone());
    let cps = get_json(&c, &format!("{base}/jobs/{id}/checkpoints")).await;
    let interrupted = cps.as_array().unwrap().last().unwrap().clone();
    assert!(interrupted["step"].as_u64().unwrap() % steps_per_epoch != 0, "mid-epoch: {interrupted}");
    let job = wait_finished(&c, &base, &id, Duration::from_secs(600)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let metrics = get_json(&c, &format!("{base}/jobs/{id}/metrics?limit=1000")).await;
    assert_eq!(metrics["epochs"].as_array().unwrap().len(), EPOCHS as usize);
    let mut steps: Vec<u64> = Vec::new();
    let mut after = "0".to_string();
    loop {
        let page = get_json(&c, &format!("{base}/jobs/{id}/metrics?limit=1000&after={after}")).await;
        let points = page["steps"].as_array().unwrap();
        if points.is_empty() {
            break;
        }
        steps.extend(points.iter().map(|s| s["step"].as_u64().unwrap()));
        after = page["next_after"].as_str().unwrap().to_string();
    }
    assert_eq!(
        steps,
        (1..=u64::from(EPOCHS) * steps_per_epoch).collect::<Vec<_>>(),
        "every step once, in order"
    );
    let last = metrics["epochs"][EPOCHS as usize - 1]["perplexity"].as_f64().unwrap();
    let first_epoch = metrics["epochs"][0]["perplexity"].as_f64().unwrap();
    assert!(last < first_epoch, "{first_epoch} -> {last}");
    let r = c
        .post(format!("{base}/jobs/{id}/generate"))
        .json(&json!({"prefix": "the ", "max_tokens": 12}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    second.terminate();
}
