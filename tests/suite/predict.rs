//! `POST /jobs/{id}/predict`, and the proof that an exported checkpoint holds the same weights:
//! NumPy, given only the safetensors file (`tests/interop/numpy_forward.py`), computes the
//! probabilities kiln's `/predict` answers for the same batch, to 1e-4, for LeNet-BN and for a
//! small layer list. Python with numpy and safetensors is `$KILN_NUMPY_PYTHON` (scripts/test
//! makes a venv for it), else `python3` on the `PATH`.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, get_json, submit, synthetic_job, wait_finished};

/// Submits `job` and waits for it to succeed; returns its id.
async fn trained(server: &Server, job: &Value) -> String {
    let job = submit(&server.client, &server.base, job).await;
    let id = job["id"].as_str().unwrap().to_string();
    let done = wait_finished(&server.client, &server.base, &id, Duration::from_secs(300)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    id
}

/// `n` images of 1×28×28 numbers in [0, 1], nested `[C][H][W]` as `tensor.tolist()` writes them.
fn images(n: usize) -> Vec<Value> {
    let pixel = |i: usize, y: usize, x: usize| ((i * 131 + y * 29 + x * 7) % 97) as f64 / 96.0;
    (0..n)
        .map(|i| {
            json!([(0..28).map(|y| (0..28).map(|x| pixel(i, y, x)).collect::<Vec<_>>()).collect::<Vec<_>>()])
        })
        .collect()
}

async fn predict(server: &Server, id: &str, body: &Value) -> (u16, Value) {
    let r = server.client.post(server.url(&format!("/jobs/{id}/predict"))).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// The probabilities NumPy computes from the safetensors file of `id`'s newest checkpoint.
async fn numpy_probabilities(server: &Server, id: &str, images: &[Value]) -> Vec<Vec<f64>> {
    let list = get_json(&server.client, &server.url(&format!("/jobs/{id}/checkpoints"))).await;
    let checkpoint = list.as_array().unwrap().last().unwrap()["id"].clone();
    let url = server.url(&format!("/jobs/{id}/checkpoints/{checkpoint}?format=safetensors"));
    let file = server.client.get(url).send().await.unwrap().bytes().await.unwrap();
    let path = server.dir.path().join(format!("{id}.safetensors"));
    std::fs::write(&path, &file).unwrap();
    let python = std::env::var("KILN_NUMPY_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/numpy_forward.py");
    let mut child = Command::new(&python)
        .args([script, path.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}): set KILN_NUMPY_PYTHON to a Python with numpy and safetensors (scripts/test makes one)"));
    let request = json!({"shape": [1, 28, 28], "images": images});
    serde_json::to_writer(child.stdin.take().unwrap(), &request).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{python} {script} failed (it needs numpy and safetensors: scripts/test makes a venv and sets KILN_NUMPY_PYTHON): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numpy_given_only_the_safetensors_file_matches_predict_to_1e_4() {
    let server = Server::start().await;
    let small = json!({
        "model": {"kind": "sequential", "layers": [
            {"conv2d": {"out": 4, "kernel": 3, "padding": 1}}, {"batch_norm": {}}, {"relu": {}},
            {"max_pool2d": {"kernel": 2}}, {"conv2d": {"out": 6, "kernel": 3, "stride": 2}}, {"tanh": {}},
            {"avg_pool2d": {"kernel": 2}}, {"flatten": {}}, {"linear": {"out": 16}}, {"batch_norm": {}},
            {"gelu": {}}, {"dropout": {"p": 0.3}}, {"linear": {"out": 10}}
        ]},
        "data": {"dataset": "synthetic_images", "train_size": 600, "test_size": 100},
        "training": {"epochs": 1, "batch_size": 50}
    });
    let batch = images(6);
    for job in [synthetic_job(1), small] {
        let id = trained(&server, &job).await;
        let (status, answer) = predict(&server, &id, &json!({"images": batch, "top_k": 10})).await;
        assert_eq!(status, 200, "{answer}");
        let numpy = numpy_probabilities(&server, &id, &batch).await;
        assert_eq!(numpy.len(), batch.len());
        let predictions = answer["predictions"].as_array().unwrap();
        for (image, (prediction, expected)) in predictions.iter().zip(&numpy).enumerate() {
            let top = prediction["top"].as_array().unwrap();
            assert_eq!(top.len(), 10);
            for score in top {
                let label = score["label"].as_u64().unwrap() as usize;
                let (kiln, numpy) = (score["probability"].as_f64().unwrap(), expected[label]);
                assert!(
                    (kiln - numpy).abs() < 1e-4,
                    "{}: image {image} class {label}: kiln {kiln}, numpy {numpy}",
                    job["model"]["kind"]
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_checks_its_input_and_its_limits() {
    let server = Server::start_with(|c| c.max_predict_batch = 2).await;
    let id = trained(&server, &synthetic_job(1)).await;
    let problem = |answer: &Value| {
        (answer["errors"][0]["field"].as_str().unwrap_or("").to_string(), answer.to_string())
    };

    let (status, answer) = predict(&server, &id, &json!({"images": images(3)})).await;
    assert_eq!((status, problem(&answer).0.as_str()), (422, "images"), "{answer}");
    let (status, answer) = predict(&server, &id, &json!({"images": [vec![0.5; 27]]})).await;
    assert_eq!((status, problem(&answer).0.as_str()), (422, "images[0]"), "{answer}");
    assert!(
        answer.to_string().contains("1x28x28: send [1][28][28], [28][28], or 784 numbers flat"),
        "{answer}"
    );
    let (status, answer) = predict(&server, &id, &json!({"images": images(1), "top_k": 11})).await;
    assert_eq!((status, problem(&answer).0.as_str()), (422, "top_k"), "{answer}");
    let (status, answer) = predict(&server, &id, &json!({"images": images(1), "checkpoint": 999_999})).await;
    assert_eq!((status, problem(&answer).0.as_str()), (422, "checkpoint"), "{answer}");

    // The default is the five likeliest classes, named.
    let (status, answer) = predict(&server, &id, &json!({"images": images(2)})).await;
    assert_eq!(status, 200, "{answer}");
    let top = answer["predictions"][1]["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    assert!(top.windows(2).all(|w| w[0]["probability"].as_f64() >= w[1]["probability"].as_f64()), "{answer}");
    assert_eq!(top[0]["class"], top[0]["label"].to_string(), "synthetic classes are named by their labels");

    // Media types, and options in the wrong place.
    let url = server.url(&format!("/jobs/{id}/predict"));
    let r = server.client.post(&url).header("content-type", "image/gif").body("GIF89a").send().await.unwrap();
    assert_eq!(r.status(), 415);
    let r =
        server.client.post(&url).header("content-type", "image/png").body("not a png").send().await.unwrap();
    assert_eq!(r.status(), 422);
    let r = server
        .client
        .post(format!("{url}?top_k=2"))
        .json(&json!({"images": images(1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let png = |query: &str| {
        server.client.post(format!("{url}?{query}")).header("content-type", "image/png").body("x")
    };
    let answer: Value = png("top_k=many").send().await.unwrap().json().await.unwrap();
    assert_eq!(problem(&answer).0, "top_k", "{answer}");
    let r = png("topk=2").send().await.unwrap();
    assert_eq!(r.status(), 400, "an unknown option is not ignored");

    // A language model generates instead.
    let lm = json!({"model": {"kind": "rnn_lm", "hidden": 8}, "data": {"dataset": "synthetic_text", "chars": 2000},
                    "training": {"epochs": 1}});
    let lm = trained(&server, &lm).await;
    let (status, answer) = predict(&server, &lm, &json!({"images": images(1)})).await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["detail"].as_str().unwrap().contains(&format!("/jobs/{lm}/generate")), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_takes_a_generation_slot_and_answers_503_past_them() {
    let server = Server::start_with(|c| c.max_generations = 0).await;
    let id = trained(&server, &synthetic_job(1)).await;
    let r =
        server.client.post(server.url(&format!("/jobs/{id}/predict"))).json(&json!({"images": images(1)}));
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
}
