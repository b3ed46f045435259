//! `sequential` models over HTTP: the batch-normalization chapter's seed network refused at
//! submit by layer with both widths, accepted with the width left out and trained on
//! Fashion-MNIST; a mixed list learns generated images; mistakes are named by layer, all at once;
//! a layer-list job resumes after `kill -9` like any other.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Process, Server, get_json, submit, wait_finished, wait_for};

async fn post(server: &Server, body: &Value) -> (u16, Value) {
    let r = server.client.post(server.url("/jobs")).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The problem's `(field, message)` pairs.
fn errors(problem: &Value) -> Vec<(String, String)> {
    let errors = problem["errors"].as_array().unwrap_or_else(|| panic!("no errors in {problem}"));
    errors
        .iter()
        .map(|e| (e["field"].as_str().unwrap().into(), e["message"].as_str().unwrap().into()))
        .collect()
}

/// The seed network of the book's batch-normalization chapter, on Fashion-MNIST at 12 pixels;
/// its first linear layer's width as given.
fn seed_job(linear: Value) -> Value {
    json!({
        "model": {"kind": "sequential", "layers": [
            {"conv2d": {"out": 6, "kernel": 5}}, {"batch_norm": {}}, {"sigmoid": {}},
            {"avg_pool2d": {"kernel": 2, "stride": 2}}, {"flatten": {}},
            {"linear": linear}, {"batch_norm": {}}, {"sigmoid": {}}, {"linear": {"out": 10}}
        ]},
        "data": {"dataset": "fashion_mnist", "resize": 12, "limit_train": 6000, "limit_test": 1000},
        "training": {"epochs": 3, "batch_size": 64, "optimizer": {"kind": "sgd", "lr": 0.9}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_network_is_refused_at_its_linear_layer_and_trains_with_the_width_inferred() {
    let server = Server::start().await;
    let (status, problem) = post(&server, &seed_job(json!({"in": 36, "out": 10}))).await;
    assert_eq!(status, 422, "{problem}");
    let errors = errors(&problem);
    assert_eq!(errors.len(), 1, "{problem}");
    assert_eq!(errors[0].0, "model.layers[5]");
    assert_eq!(errors[0].1, "(linear): expects 36 inputs, the layer before gives 96 (6×4×4)");
    let listed = get_json(&server.client, &server.url("/jobs")).await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 0, "nothing stored");

    let job = submit(&server.client, &server.base, &seed_job(json!({"out": 10}))).await;
    assert_eq!(job["parameters"], 1_268);
    assert_eq!(job["spec"]["model"]["kind"], "sequential");
    assert_eq!(
        job["spec"]["model"]["layers"][0],
        json!({"conv2d": {"out": 6, "kernel": 5, "stride": 1, "padding": 0}})
    );
    // Three epochs of 6,000 images, 10 classes.
    assert!(final_accuracy(&server, &job).await > 0.5);
}

/// The test accuracy submitted job `job` ends with, once it succeeded.
async fn final_accuracy(server: &Server, job: &Value) -> f64 {
    let id = job["id"].as_str().unwrap();
    let done = wait_finished(&server.client, &server.base, id, Duration::from_secs(600)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let metrics = get_json(&server.client, &server.url(&format!("/jobs/{id}/metrics"))).await;
    let accuracy = metrics["latest"]["test_accuracy"].as_f64().unwrap();
    eprintln!("{id}: test accuracy {accuracy}, epochs {}", metrics["epochs"]);
    accuracy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_book_blocks_learns_generated_images() {
    let server = Server::start().await;
    let job = json!({
        "model": {"kind": "sequential", "layers": [
            {"conv2d": {"out": 8, "kernel": 3, "padding": 1}}, {"batch_norm": {}}, {"relu": {}},
            {"max_pool2d": {"kernel": 3, "stride": 2, "padding": 1}},
            {"residual": {"out": 8}}, {"residual": {"out": 16, "stride": 2}},
            {"dense_block": {"convs": 2, "growth": 8}}, {"transition": {"out": 16}},
            {"global_avg_pool": {}}, {"flatten": {}}, {"dropout": {"p": 0.2}}, {"linear": {"out": 10}}
        ]},
        "data": {"dataset": "synthetic_images", "train_size": 1200, "test_size": 300, "seed": 3},
        "training": {"epochs": 3, "batch_size": 64, "seed": 7,
                     "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9}}
    });
    let job = submit(&server.client, &server.base, &job).await;
    assert!(final_accuracy(&server, &job).await > 0.9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mistake_of_a_layer_list_is_named_by_layer_at_once() {
    let server = Server::start().await;
    let data = json!({"dataset": "synthetic_images"});
    let cases = [
        (
            json!([{"conv3d": {"out": 4}}, {"linear": {"out": 10, "bias": false}}, {"dropout": {"p": 1.5}}]),
            vec!["model.layers[0]", "model.layers[1]", "model.layers[2].dropout.p"],
        ),
        (json!([]), vec!["model.layers"]),
        (json!(3), vec!["model.layers"]),
        (json!([{"conv2d": {"out": 6, "kernel": 40}}]), vec!["model.layers[0]"]),
        (json!([{"linear": {"out": 10}}]), vec!["model.layers[0]"]),
        (json!([{"flatten": {}}, {"linear": {"out": 3}}]), vec!["model.layers[1]"]),
        (
            json!([{"conv2d": {"out": 0, "kernel": 3, "stride": 0}}]),
            vec!["model.layers[0].conv2d.out", "model.layers[0].conv2d.stride"],
        ),
    ];
    for (layers, expected) in cases {
        let body = json!({"model": {"kind": "sequential", "layers": layers}, "data": data});
        let (status, problem) = post(&server, &body).await;
        assert_eq!(status, 422, "{layers}: {problem}");
        let fields: Vec<String> = errors(&problem).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, expected, "{layers}: {problem}");
    }
    let (_, problem) =
        post(&server, &json!({"model": {"kind": "sequential", "layers": [{"conv3d": {}}]}, "data": data}))
            .await;
    let message = &errors(&problem)[0].1;
    assert!(message.contains("conv3d") && message.contains("conv2d, batch_norm, linear"), "{message}");
    let (_, problem) = post(&server, &json!({"model": {"kind": "sequential"}, "data": data})).await;
    assert_eq!(errors(&problem)[0].0, "model.layers", "{problem}");
    let (_, problem) = post(&server, &json!({"model": {"kind": "rnn_lm", "layers": [{"relu": {}}]}, "data": {"dataset": "synthetic_text"}})).await;
    assert_eq!(errors(&problem)[0].0, "model.layers", "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_list_job_resumes_after_kill_dash_nine() {
    let dir = tempfile::tempdir().unwrap();
    let first = Process::spawn(dir.path());
    let (c, base) = (first.client.clone(), first.base.clone());
    let job = json!({
        "model": {"kind": "sequential", "layers": [
            {"conv2d": {"out": 6, "kernel": 5}}, {"batch_norm": {}}, {"sigmoid": {}},
            {"avg_pool2d": {"kernel": 2, "stride": 2}}, {"flatten": {}}, {"dropout": {"p": 0.1}},
            {"linear": {"out": 32}}, {"batch_norm": {}}, {"relu": {}}, {"linear": {"out": 10}}
        ]},
        "data": {"dataset": "synthetic_images", "train_size": 12000, "test_size": 300, "seed": 3},
        "training": {"epochs": 3, "batch_size": 64, "optimizer": {"kind": "sgd", "lr": 0.3}},
        "checkpoint": {"every": 1, "keep_last": 2}
    });
    let id = submit(&c, &base, &job).await["id"].as_str().unwrap().to_string();
    let steps_per_epoch = 188;
    wait_for(&c, &base, &id, Duration::from_secs(300), |j| {
        j["progress"]["step"].as_u64() > Some(steps_per_epoch + 5)
    })
    .await;
    let before = get_json(&c, &format!("{base}/jobs/{id}/metrics")).await;
    first.kill9();

    let second = Process::spawn(dir.path());
    let (c, base) = (second.client.clone(), second.base.clone());
    let done = wait_finished(&c, &base, &id, Duration::from_secs(600)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let after = get_json(&c, &format!("{base}/jobs/{id}/metrics")).await;
    assert_eq!(after["epochs"][0], before["epochs"][0], "the checkpointed epoch is kept as it was");
    assert_eq!(after["epochs"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_shows_each_layer_and_the_totals_and_stores_nothing() {
    let server = Server::start().await;
    let url = server.url("/jobs?dry_run=true");
    let r = server.client.post(&url).json(&seed_job(json!({"out": 10}))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    let layers = answer["layers"].as_array().unwrap();
    let shapes: Vec<&Value> = layers.iter().map(|l| &l["output"]).collect();
    assert_eq!(shapes[0], &json!([6, 8, 8]));
    assert_eq!(shapes[3], &json!([6, 4, 4]));
    assert_eq!(shapes[4], &json!([96]));
    assert_eq!(layers[5], json!({"index": 5, "kind": "linear", "output": [10], "parameters": 970}));
    let sum: u64 = layers.iter().map(|l| l["parameters"].as_u64().unwrap()).sum();
    assert_eq!((answer["parameters"].as_u64(), sum), (Some(1_268), 1_268));
    assert_eq!(answer["lane"], "cpu");
    assert!(answer["activation_bytes"].as_u64().unwrap() > 0, "{answer}");
    assert_eq!(answer["spec"]["data"]["resize"], 12);

    // The same 422 as a submit; a built-in kind shows its preset list; a bad flag is named.
    let r = server.client.post(&url).json(&seed_job(json!({"in": 36, "out": 10}))).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let lenet = json!({"model": {"kind": "lenet_bn"}, "data": {"dataset": "synthetic_images"}});
    let answer: Value = server.client.post(&url).json(&lenet).send().await.unwrap().json().await.unwrap();
    let preset = answer["layers"].as_array().unwrap();
    let kinds: Vec<&str> = preset.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds[..4], ["conv2d", "batch_norm", "sigmoid", "avg_pool2d"], "{answer}");
    assert_eq!(
        (kinds.len(), preset[8]["output"].clone()),
        (16, json!([256])),
        "LeNet's flatten gives 16×4×4"
    );
    let sum: u64 = preset.iter().map(|l| l["parameters"].as_u64().unwrap()).sum();
    assert_eq!((answer["parameters"].as_u64(), sum), (Some(44_878), 44_878), "{answer}");
    let r = server.client.post(server.url("/jobs?dry_run=maybe")).json(&lenet).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(errors(&problem)[0].0, "dry_run", "{problem}");
    let listed = get_json(&server.client, &server.url("/jobs")).await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 0, "a dry run stores nothing");

    // A submitted layer-list job shows the same layers.
    let job = submit(&server.client, &server.base, &seed_job(json!({"out": 10}))).await;
    assert_eq!(job["layers"].as_array().unwrap(), layers);
    let shown =
        get_json(&server.client, &server.url(&format!("/jobs/{}", job["id"].as_str().unwrap()))).await;
    assert_eq!(shown["layers"], job["layers"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiln_submit_dry_run_prints_the_layer_table() {
    let server = Server::start().await;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed-sequential.json");
    let base = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["submit", example, "--dry-run", "--server", &base])
            .env_remove("KILN_API_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 9 + 1, "a header, 9 layers, the totals:\n{stdout}");
    assert!(
        lines[1].contains("conv2d") && lines[1].contains("6×8×8") && lines[1].trim_end().ends_with("156")
    );
    assert!(lines[6].contains("linear") && lines[6].trim_end().ends_with("970"), "{stdout}");
    assert!(
        lines[10].starts_with("sequential: 1,268 parameters") && lines[10].contains("lane cpu"),
        "{stdout}"
    );
    let listed = get_json(&server.client, &server.url("/jobs")).await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 0, "nothing stored");
}
