//! The job API over real HTTP: validation, the job life cycle, metrics paging, checkpoints,
//! cancel and delete, idempotency, admission control and the OpenAPI document.

use std::time::Duration;

use crate::common::{
    Db, Server, get_json, head_only, on_both_databases, submit, synthetic_job, wait_finished, wait_for,
};
use serde_json::{Value, json};
use sha2::Digest;

async fn problem(server: &Server, body: &str) -> (u16, String, Value) {
    let r = server
        .client
        .post(server.url("/jobs"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
    (status, ctype, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_job_definitions_get_problem_details_naming_the_field() {
    let server = Server::start().await;
    let (status, ctype, body) = problem(
        &server,
        r#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images"},"training":{"batch_size":0}}"#,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(body["type"], "validation_error");
    assert!(
        body["detail"].as_str().unwrap().contains("training.batch_size must be between 1 and 4096"),
        "{body}"
    );
    assert_eq!(body["errors"][0]["field"], "training.batch_size");

    let (status, _, body) = problem(&server, r#"{"model":{"kind":"lenet_bn","dept":3}}"#).await;
    assert_eq!(status, 422);
    assert!(body["detail"].as_str().unwrap().starts_with("model.dept unknown field `dept`"), "{body}");

    let (status, _, body) = problem(
        &server,
        r#"{"model":{"kind":"lenet_bn"},"data":{"dataset":"synthetic_images"},"backend":"tpu"}"#,
    )
    .await;
    assert_eq!(status, 422);
    assert!(body["detail"].as_str().unwrap().contains("backend must be one of cpu, wgpu, wgpu:N"), "{body}");

    let (status, _, body) = problem(&server, r#"{"model": "#).await;
    assert_eq!(status, 400);
    assert_eq!(body["type"], "bad_request");

    let (status, _, body) = problem(&server, r#"{"model":{"kind":"vgg"},"data":{"dataset":"mnist"}}"#).await;
    assert_eq!(status, 422);
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("model.kind must be one of lenet_bn, mlp_bn, resnet, densenet"), "{detail}");
    assert!(detail.contains("data.dataset must be one of fashion_mnist, synthetic_images"), "{detail}");

    let r = server.client.get(server.url("/jobs/not-a-job")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = server.client.get(server.url("/jobs?status=done")).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().starts_with("status must be one of queued"), "{body}");

    // A body declared over the limit is answered before any of it is sent, so the client reads
    // the 413 instead of racing the server's close; one without a declared length is cut as it
    // arrives.
    for path in ["/jobs", "/jobs/00000000-0000-0000-0000-000000000000/generate"] {
        let head =
            format!("POST {path} HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: {}", 2 << 20);
        let (status, headers, body) = head_only(&server, &head).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert!(headers.contains(&("content-type".into(), "application/problem+json".into())), "{headers:?}");
        assert_eq!(body["type"], "payload_too_large");
        assert_eq!(
            body["detail"], "the body is larger than this server's limit of 1048576 bytes (--max-body-bytes)",
            "{path}"
        );
    }
}

on_both_databases!(a_job_trains_reports_metrics_and_keeps_checkpoints);
async fn a_job_trains_reports_metrics_and_keeps_checkpoints(db: &Db) {
    let server = Server::start_on(db, |_| {}).await;
    let (c, base) = (&server.client, server.base.as_str());
    let r = c.post(server.url("/jobs")).json(&synthetic_job(3)).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/jobs/{id}"));
    assert_eq!(job["parameters"], 44_878);
    assert_eq!(job["spec"]["training"]["optimizer"]["momentum"], 0.0, "defaults are filled in");
    assert_eq!(job["progress"]["steps"], 3 * 19);

    // The API answers while the job trains.
    let running =
        wait_for(c, base, &id, Duration::from_secs(120), |j| j["progress"]["step"].as_u64() > Some(0)).await;
    assert_eq!(running["backend"], "cpu (burn-flex)");
    let health = c.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let job = wait_finished(c, base, &id, Duration::from_secs(300)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"]["epoch"], 3);
    assert!(job["finished_at"].is_string() && job["started_at"].is_string());

    let m = get_json(c, &server.url(&format!("/jobs/{id}/metrics?limit=1000"))).await;
    let epochs = m["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 3);
    let last = &epochs[2];
    assert!(last["test_accuracy"].as_f64().unwrap() > 0.9, "synthetic data is learnable: {last}");
    assert!(last["examples_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(m["latest"]["test_accuracy"], last["test_accuracy"]);
    let steps = m["steps"].as_array().unwrap();
    let numbers: Vec<u64> = steps.iter().map(|s| s["step"].as_u64().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    assert_eq!(*numbers.last().unwrap(), 57);

    // Paging: only what is new after the cursor.
    let first = get_json(c, &server.url(&format!("/jobs/{id}/metrics?limit=5"))).await;
    assert_eq!(first["steps"].as_array().unwrap().len(), 5);
    let cursor = first["next_after"].as_str().unwrap();
    let rest = get_json(c, &server.url(&format!("/jobs/{id}/metrics?after={cursor}&limit=1000"))).await;
    assert_eq!(rest["steps"].as_array().unwrap().len(), steps.len() - 5);
    assert_eq!(rest["steps"][0], steps[5]);
    let end = rest["next_after"].as_str().unwrap();
    let nothing = get_json(c, &server.url(&format!("/jobs/{id}/metrics?after={end}"))).await;
    assert!(nothing["steps"].as_array().unwrap().is_empty());
    assert_eq!(nothing["next_after"], end);

    // keep_last 2, plus the best by test accuracy.
    let cps = get_json(c, &server.url(&format!("/jobs/{id}/checkpoints"))).await;
    let cps = cps.as_array().unwrap();
    assert!((2..=3).contains(&cps.len()), "{cps:?}");
    assert_eq!(cps.last().unwrap()["epoch"], 3);
    let on_disk = std::fs::read_dir(crate::common::checkpoints_dir(server.dir.path(), &id)).unwrap().count();
    assert_eq!(on_disk, cps.len(), "pruned checkpoints leave no files behind");
    let newest = cps.last().unwrap();
    let r = c.get(server.url(&format!("/jobs/{id}/checkpoints/{}", newest["id"]))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, newest["bytes"].as_u64().unwrap());
    let digest: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(digest, newest["sha256"].as_str().unwrap());

    // Finished jobs can be deleted, with their files.
    let r = c.delete(server.url(&format!("/jobs/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(c.get(server.url(&format!("/jobs/{id}"))).send().await.unwrap().status(), 404);
    assert!(!server.dir.path().join("jobs").join(&id).exists());
}

on_both_databases!(cancel_stops_a_running_job_and_the_queue_admits_what_fits);
async fn cancel_stops_a_running_job_and_the_queue_admits_what_fits(db: &Db) {
    let server = Server::start_on(db, |c| c.queue_capacity = 1).await;
    let (c, base) = (&server.client, server.base.as_str());
    let mut long = synthetic_job(200);
    long["data"]["train_size"] = json!(5000);
    let running = submit(c, base, &long).await;
    let id = running["id"].as_str().unwrap().to_string();
    wait_for(c, base, &id, Duration::from_secs(120), |j| j["status"] == "running").await;

    let queued = submit(c, base, &synthetic_job(1)).await;
    let queued_id = queued["id"].as_str().unwrap().to_string();
    let r = c.post(server.url("/jobs")).json(&synthetic_job(1)).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "30");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "queue_full");

    let r = c.delete(server.url(&format!("/jobs/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 409, "a running job cannot be deleted");

    // Cancelling the queued job takes it out of the queue at once.
    let r = c.post(server.url(&format!("/jobs/{queued_id}/cancel"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "cancelled");

    let r = c.post(server.url(&format!("/jobs/{id}/cancel"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let job = wait_finished(c, base, &id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "cancelled");
    assert!(job["progress"]["step"].as_u64().unwrap() < job["progress"]["steps"].as_u64().unwrap());
    let cps = get_json(c, &server.url(&format!("/jobs/{id}/checkpoints"))).await;
    assert_eq!(
        cps.as_array().unwrap().last().unwrap()["step"],
        job["progress"]["step"],
        "cancel checkpoints first"
    );

    let r = c.post(server.url(&format!("/jobs/{id}/cancel"))).send().await.unwrap();
    assert_eq!(r.status(), 409);

    let list = get_json(c, &server.url("/jobs?status=cancelled")).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2);
    let page = get_json(c, &server.url("/jobs?limit=1")).await;
    assert_eq!(page["jobs"][0]["id"], id.as_str());
    let next = page["next_after"].as_str().unwrap();
    let page2 = get_json(c, &server.url(&format!("/jobs?limit=1&after={next}"))).await;
    assert_eq!(page2["jobs"][0]["id"], queued_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_page_parameters_are_refused_naming_the_parameter() {
    let server = Server::start().await;
    let c = &server.client;
    let id = submit(c, &server.base, &synthetic_job(1)).await["id"].as_str().unwrap().to_string();
    // `after=` (empty) was once read as "from the start"; the document says it is an integer.
    for (query, field) in [
        ("/jobs?after=", "after"),
        ("/jobs?after=x", "after"),
        ("/jobs?after=-1", "after"),
        ("/jobs?limit=", "limit"),
        ("/jobs?limit=0", "limit"),
        ("/jobs?limit=1001", "limit"),
        ("/jobs?status=", "status"),
    ] {
        for path in [query.to_string(), query.replace("/jobs?", &format!("/jobs/{id}/metrics?"))] {
            if path.contains("status") && path.contains("metrics") {
                continue;
            }
            let r = c.get(server.url(&path)).send().await.unwrap();
            assert_eq!(r.status(), 422, "{path}");
            assert_eq!(r.headers()["content-type"], "application/problem+json", "{path}");
            let problem: Value = r.json().await.unwrap();
            assert_eq!(problem["errors"][0]["field"], field, "{path}");
        }
    }
}

on_both_databases!(an_idempotency_key_makes_a_repeated_submit_return_the_same_job);
async fn an_idempotency_key_makes_a_repeated_submit_return_the_same_job(db: &Db) {
    let server = Server::start_on(db, |_| {}).await;
    let c = &server.client;
    let send = |job: Value, key: &'static str| {
        c.post(server.url("/jobs")).header("Idempotency-Key", key).json(&job).send()
    };
    let first = send(synthetic_job(1), "abc").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = send(synthetic_job(1), "abc").await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    let other = send(synthetic_job(2), "abc").await.unwrap();
    assert_eq!(other.status(), 409);
    let list = get_json(c, &server.url("/jobs")).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_reports_why_and_the_server_keeps_going() {
    let server = Server::start().await;
    let (c, base) = (&server.client, server.base.as_str());
    // Fashion-MNIST files that exist but are corrupt: accepted at submit, fails when loaded.
    let dir = server.dir.path().join("datasets").join("fashion-mnist");
    std::fs::create_dir_all(&dir).unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(dir.join(name), b"not an idx file").unwrap();
    }
    let job = json!({"model": {"kind": "lenet_bn"}, "data": {"dataset": "fashion_mnist"}, "training": {"epochs": 1}});
    let failed = submit(c, base, &job).await;
    let id = failed["id"].as_str().unwrap();
    let failed = wait_finished(c, base, id, Duration::from_secs(60)).await;
    assert_eq!(failed["status"], "failed");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("train-images-idx3-ubyte: magic number"), "{error}");

    // A diverging job fails with a reason, not a crash.
    let diverging = json!({
        "model": {"kind": "mlp_bn", "hidden": [512, 512, 512, 512], "batch_norm": false},
        "data": {"dataset": "synthetic_images", "train_size": 512, "test_size": 64},
        "training": {"epochs": 5, "batch_size": 64, "optimizer": {"kind": "sgd", "lr": 99.0, "momentum": 0.99}}
    });
    let d = submit(c, base, &diverging).await;
    let d = wait_finished(c, base, d["id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert!(d["error"].as_str().unwrap().contains("training diverged"), "{d}");

    let ok = submit(c, base, &synthetic_job(1)).await;
    let ok = wait_finished(c, base, ok["id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(ok["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_is_the_committed_one() {
    let server = Server::start().await;
    let served: Value = get_json(&server.client, &server.url("/openapi.json")).await;
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json")).unwrap(),
    )
    .unwrap();
    assert!(
        served == committed,
        "openapi/openapi.json is stale: regenerate it with `cargo run -- openapi > openapi/openapi.json`"
    );
    assert!(served["paths"]["/jobs/{id}/metrics"]["get"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiln_healthcheck_exits_zero_for_a_ready_server_and_one_otherwise() {
    let server = Server::start().await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let check = |addr: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["healthcheck", "--bind", &addr, "--timeout-secs", "5"])
            .env_remove("KILN_BIND")
            .output()
            .expect("run kiln healthcheck")
    };
    let ready = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || check(addr)
    })
    .await
    .unwrap();
    assert!(ready.status.success(), "{}", String::from_utf8_lossy(&ready.stderr));

    // 0.0.0.0 (what a container binds) means this machine.
    let port = addr.rsplit(':').next().unwrap().to_string();
    let any = tokio::task::spawn_blocking(move || check(format!("0.0.0.0:{port}"))).await.unwrap();
    assert!(any.status.success(), "{}", String::from_utf8_lossy(&any.stderr));

    server.stop().await;
    let stopped = tokio::task::spawn_blocking(move || check(addr)).await.unwrap();
    assert_eq!(stopped.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(stderr.contains("kiln: connecting to 127.0.0.1:"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_with_spaces_or_other_invisible_characters_is_refused() {
    let server = Server::start().await;
    let c = &server.client;
    let long = "k".repeat(256);
    let bad: [&[u8]; 5] = [b"a b", b"tab\tkey", b" ", "kl\u{e9}".as_bytes(), long.as_bytes()];
    for key in bad {
        let value = reqwest::header::HeaderValue::from_bytes(key).unwrap();
        let r = c.post(server.url("/jobs")).header("Idempotency-Key", value).json(&synthetic_job(1));
        let r = r.send().await.unwrap();
        let (status, ctype) = (r.status(), r.headers()["content-type"].to_str().unwrap().to_string());
        let problem: Value = r.json().await.unwrap();
        let shown = String::from_utf8_lossy(key);
        assert_eq!(status, 400, "{shown:?}: {problem}");
        assert_eq!(ctype, "application/problem+json", "{shown:?}");
        assert!(problem["detail"].as_str().unwrap().contains("Idempotency-Key"), "{problem}");
    }
    assert_eq!(get_json(c, &server.url("/jobs")).await["jobs"].as_array().unwrap().len(), 0);
    let key = "~!visible-ASCII_only.255#";
    let r = c.post(server.url("/jobs")).header("Idempotency-Key", key).json(&synthetic_job(1));
    assert_eq!(r.send().await.unwrap().status(), 201);
}

/// The values at the edges of what `schema` documents: an integer's minimum and maximum, a
/// one-item list of each for a list of integers, and those of every branch of a `oneOf`.
fn documented_edges(doc: &Value, schema: &Value) -> Vec<Value> {
    if let Some(name) = schema["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        return documented_edges(doc, doc.pointer(name).unwrap());
    }
    if let Some(branches) = schema["oneOf"].as_array() {
        return branches.iter().flat_map(|b| documented_edges(doc, b)).collect();
    }
    let types = match &schema["type"] {
        Value::Array(types) => types.clone(),
        one => vec![one.clone()],
    };
    if types.contains(&json!("integer")) {
        return ["minimum", "maximum"].iter().filter_map(|k| schema.get(*k).cloned()).collect();
    }
    if types.contains(&json!("array")) {
        return documented_edges(doc, &schema["items"]).into_iter().map(|v| json!([v])).collect();
    }
    Vec::new()
}

/// Uploads two classes of two flat `side`-pixel images each, in colour or grey; returns the id.
async fn two_class_set(server: &Server, rgb: bool, side: u32) -> Value {
    let png = |class: u8| {
        let image = image::RgbImage::from_pixel(side, side, image::Rgb([class * 200, 0, 0]));
        let image =
            if rgb { image::DynamicImage::from(image) } else { image::DynamicImage::from(image).grayscale() };
        let mut png = Vec::new();
        image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        png
    };
    let entries: Vec<(String, Vec<u8>)> =
        (0..4).map(|i| (format!("train/{}/{i}.png", i % 2), png((i % 2) as u8))).collect();
    let r =
        server.client.post(server.url("/datasets?kind=images")).header("content-type", "application/gzip");
    let r = r.body(crate::images::tar(&entries, true)).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let dataset: Value = r.json().await.unwrap();
    assert_eq!(dataset["images"]["channels"], if rgb { 3 } else { 1 }, "{dataset}");
    dataset["id"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_integer_bound_the_api_document_gives_a_job_field_is_one_the_server_accepts() {
    let server = Server::start().await;
    let doc = get_json(&server.client, &server.url("/openapi.json")).await;
    // A base for every kind of model; each has an over-long name, so that no job is created.
    let name = "n".repeat(201);
    let images =
        |model: Value| json!({"name": name, "model": model, "data": {"dataset": "synthetic_images"}});
    // Uploaded image sets at the edges of what a job may record of one: grey at 8 pixels, RGB
    // at 512, two classes.
    let uploaded = |id: Value| {
        let layers = [json!({"global_avg_pool": {}}), json!({"flatten": {}}), json!({"linear": {"out": 2}})];
        json!({"name": name, "model": {"kind": "sequential", "layers": layers}, "data": {"dataset": "uploaded", "dataset_id": id}})
    };
    let bases = [
        images(json!({"kind": "lenet_bn"})),
        images(json!({"kind": "mlp_bn"})),
        images(json!({"kind": "resnet"})),
        images(json!({"kind": "densenet"})),
        json!({"name": name, "model": {"kind": "rnn_lm"}, "data": {"dataset": "synthetic_text"}}),
        uploaded(two_class_set(&server, false, 8).await),
        uploaded(two_class_set(&server, true, 512).await),
    ];
    let sections = [
        ("RawModel", "model"),
        ("RawData", "data"),
        ("RawTraining", "training"),
        ("RawCheckpoint", "checkpoint"),
    ];
    let mut checked = Vec::new();
    for (schema, section) in sections {
        let properties = doc["components"]["schemas"][schema]["properties"].as_object().unwrap();
        for (field, property) in properties {
            let path = format!("{section}.{field}");
            for value in documented_edges(&doc, property) {
                let mut refusals = Vec::new();
                for base in &bases {
                    let mut job = base.clone();
                    if job.get(section).is_none() {
                        job[section] = json!({});
                    }
                    job[section][field] = value.clone();
                    let (status, _, problem) = problem(&server, &job.to_string()).await;
                    assert_eq!(status, 422, "{job}: {problem}");
                    let errors = problem["errors"].as_array().unwrap();
                    let own = |e: &&Value| e["field"].as_str().unwrap().starts_with(&path);
                    match errors.iter().filter(own).map(|e| e.to_string()).collect::<Vec<_>>() {
                        own if own.is_empty() => break,
                        own => refusals.push(own),
                    }
                }
                assert!(
                    refusals.len() < bases.len(),
                    "{path} = {value}, which the document allows: {refusals:?}"
                );
                checked.push(format!("{path}={value}"));
            }
        }
    }
    for field in
        ["training.epochs=1", "training.batch_size=1", "checkpoint.every=1", "checkpoint.keep_last=1"]
    {
        assert!(checked.iter().any(|c| c == field), "{field} not checked: {checked:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_documents_example_jobs_train_in_seconds_and_its_links_follow_their_ids() {
    let server = Server::start().await;
    let (c, base) = (&server.client, server.base.as_str());
    let doc = get_json(c, &server.url("/openapi.json")).await;
    let submit_doc = &doc["paths"]["/jobs"]["post"];
    let examples = submit_doc["requestBody"]["content"]["application/json"]["examples"].as_object().unwrap();
    assert!(examples.len() >= 2, "{examples:?}");
    let mut language_model = None;
    for (name, example) in examples {
        let job = crate::common::submit(c, base, &example["value"]).await;
        let id = job["id"].as_str().unwrap().to_string();
        let done = wait_finished(c, base, &id, Duration::from_secs(60)).await;
        assert_eq!(done["status"], "succeeded", "example {name}: {done}");
        if done["spec"]["model"]["kind"] == "rnn_lm" {
            language_model = Some(id);
        }
    }
    // Every link of the 201 names an operation of the document and takes the job's id.
    let links = submit_doc["responses"]["201"]["links"].as_object().unwrap();
    let operations: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    for target in ["show", "metrics", "checkpoints", "job_events", "cancel", "remove", "generate"] {
        let link = links
            .values()
            .find(|l| l["operationId"] == target)
            .unwrap_or_else(|| panic!("{target}: {links:?}"));
        assert!(operations.contains(&target), "{target}");
        assert_eq!(link["parameters"]["id"], "$response.body#/id", "{target}");
    }
    // The generate link's body works on the example language model.
    let id = language_model.expect("an example language model");
    let body = &links.values().find(|l| l["operationId"] == "generate").unwrap()["requestBody"];
    let r = c.post(format!("{base}/jobs/{id}/generate")).json(body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let upload = &doc["paths"]["/datasets"]["post"]["responses"]["201"]["links"];
    assert_eq!(upload["show"]["operationId"], "show_dataset", "{upload}");
}
