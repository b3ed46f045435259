//! RNN language models over HTTP: an uploaded corpus trains an LSTM that memorises it and
//! generates its continuation; metrics carry perplexity and gradient norms; the Time Machine
//! and generated text work as data sets; definitions and generate requests that cannot work are
//! refused with the field named.

use std::time::Duration;

use crate::common::{Server, get_json, submit, wait_finished, wait_for};
use serde_json::{Value, json};

/// One sentence in which three characters of context always decide the next one.
const SENTENCE: &str = "kiln trains models with burn and ships them ";

async fn upload(server: &Server, text: &str) -> String {
    let r = server
        .client
        .post(server.url("/datasets"))
        .header("content-type", "text/plain; charset=utf-8")
        .body(text.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let r = server.client.post(server.url(path)).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_lstm_memorises_a_repeated_text_and_greedy_generation_continues_it() {
    let server = Server::start().await;
    let dataset = upload(&server, &SENTENCE.repeat(40)).await;
    let job = json!({
        "name": "memorise",
        "model": {"kind": "rnn_lm", "cell": "lstm", "hidden": 64},
        "data": {"dataset": "uploaded", "dataset_id": dataset, "num_steps": 16, "sampling": "random",
                 "normalize": "none"},
        "training": {"epochs": 30, "batch_size": 16, "seed": 3, "log_every": 5,
                     "optimizer": {"kind": "adam", "lr": 0.01}},
        "checkpoint": {"every": 10, "keep_last": 2}
    });
    let job = submit(&server.client, &server.base, &job).await;
    assert_eq!(job["spec"]["training"]["grad_clip_norm"], 1.0, "language models clip at θ = 1 by default");
    let id = job["id"].as_str().unwrap().to_string();

    // The corpus cannot go while a job uses it.
    let r = server.client.delete(server.url(&format!("/datasets/{dataset}"))).send().await.unwrap();
    assert_eq!(r.status(), 409);

    let done = wait_finished(&server.client, &server.base, &id, Duration::from_secs(900)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // 18 symbols and <unk>, one-hot into 64 LSTM units, a head back to 18.
    let (v, h) = (19, 64);
    assert_eq!(done["parameters"], 4 * (v * h + h * h + 2 * h) + h * v + v);

    let metrics = get_json(&server.client, &server.url(&format!("/jobs/{id}/metrics?limit=1000"))).await;
    let epochs = metrics["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 30);
    for e in epochs {
        let loss = e["train_loss"].as_f64().unwrap();
        assert!((e["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-9, "{e}");
        assert!(e["tokens_per_sec"].as_f64().unwrap() > 0.0);
        assert!(e["grad_norm_max"].as_f64().unwrap() >= e["grad_norm"].as_f64().unwrap());
        assert!(e.get("test_accuracy").is_none(), "classifier metrics stay out: {e}");
    }
    let first = epochs[0]["perplexity"].as_f64().unwrap();
    let last = epochs[29]["perplexity"].as_f64().unwrap();
    assert!(first > 3.0 && last < 1.1, "perplexity {first} -> {last}");
    let steps = metrics["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["grad_norm"].as_f64().unwrap() > 0.0), "{steps:?}");
    assert!(metrics["latest"]["perplexity"].as_f64().unwrap() < 1.1);

    // Greedy generation from the first word reproduces the text.
    let (status, generated) =
        post(&server, &format!("/jobs/{id}/generate"), &json!({"prefix": "kiln", "max_tokens": 88})).await;
    assert_eq!(status, 200, "{generated}");
    let expected: String = SENTENCE.repeat(3).chars().skip(4).take(88).collect();
    assert_eq!(generated["text"], expected.as_str());
    assert_eq!(generated["prompt"], "kiln");
    // The CLI prints the prompt and its continuation.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(["generate", &id, "kiln", "--tokens", "88", "--server", &server.base])
        .env_remove("KILN_API_KEY");
    let cli = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert_eq!(String::from_utf8(cli.stdout).unwrap(), format!("kiln{expected}\n"));

    // Sampling is repeatable with a seed; characters outside the vocabulary become <unk>.
    let sample = json!({"prefix": "KILN ", "max_tokens": 30, "temperature": 1.0, "top_k": 3, "seed": 9});
    let (_, a) = post(&server, &format!("/jobs/{id}/generate"), &sample).await;
    let (_, b) = post(&server, &format!("/jobs/{id}/generate"), &sample).await;
    assert_eq!(a["text"], b["text"]);
    assert_eq!(a["text"].as_str().unwrap().chars().count(), 30);

    // Generation is bounded: a burst past --max-generations (2 by default) is answered 503 with
    // Retry-After, and what is admitted is answered.
    let long = json!({"prefix": SENTENCE.repeat(200), "max_tokens": 2000});
    let burst: Vec<_> = (0..12)
        .map(|_| {
            let request = server.client.post(server.url(&format!("/jobs/{id}/generate"))).json(&long);
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    let (mut answered, mut refused) = (0, 0);
    for answer in burst {
        let answer = answer.await.unwrap();
        match answer.status().as_u16() {
            200 => answered += 1,
            503 => {
                assert_eq!(answer.headers()["retry-after"], "1");
                let problem: Value = answer.json().await.unwrap();
                assert_eq!(problem["type"], "busy", "{problem}");
                refused += 1;
            }
            other => panic!("generation answered {other}"),
        }
    }
    assert!(answered >= 2 && refused >= 1, "{answered} answered, {refused} refused");

    // An older checkpoint by id.
    let checkpoints = get_json(&server.client, &server.url(&format!("/jobs/{id}/checkpoints"))).await;
    let oldest = checkpoints[0]["id"].as_i64().unwrap();
    let (status, old) = post(
        &server,
        &format!("/jobs/{id}/generate"),
        &json!({"prefix": "kiln", "max_tokens": 5, "checkpoint": oldest}),
    )
    .await;
    assert_eq!((status, old["checkpoint"].as_i64()), (200, Some(oldest)), "{old}");

    let (status, problem) = post(
        &server,
        &format!("/jobs/{id}/generate"),
        &json!({"prefix": "", "max_tokens": 0, "temperature": -1, "top_k": 0}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["prefix", "max_tokens", "temperature", "top_k"]);
    // A checkpoint the job does not have is a problem with the body, not a missing job.
    let (status, problem) =
        post(&server, &format!("/jobs/{id}/generate"), &json!({"prefix": "kiln", "checkpoint": 999_999}))
            .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["checkpoint"]);
    assert!(
        problem["errors"][0]["message"].as_str().unwrap().contains("/checkpoints lists them"),
        "{problem}"
    );
    let (status, problem) = post(&server, &format!("/jobs/{id}/generate"), &json!({"prefx": "kiln"})).await;
    assert_eq!(status, 422, "{problem}");

    // Once the job is done, the corpus may go.
    let r = server.client.delete(server.url(&format!("/datasets/{dataset}"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    // Generation still works: the vocabulary travels with the checkpoint.
    let (status, _) = post(&server, &format!("/jobs/{id}/generate"), &json!({"prefix": "kiln"})).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scratch_rnn_on_generated_text_reports_validation_perplexity_and_generates_while_training() {
    let server = Server::start().await;
    let job = json!({
        "model": {"kind": "rnn_lm", "cell": "rnn", "hidden": 32},
        "data": {"dataset": "synthetic_text", "chars": 20000, "seed": 1, "validation_fraction": 0.1,
                 "num_steps": 10},
        "training": {"epochs": 1000, "batch_size": 8, "optimizer": {"kind": "sgd", "lr": 1.0}},
        "checkpoint": {"every": 1, "keep_last": 2}
    });
    let job = submit(&server.client, &server.base, &job).await;
    let id = job["id"].as_str().unwrap().to_string();
    // As soon as a checkpoint exists, generation answers while the job keeps training.
    wait_for(&server.client, &server.base, &id, Duration::from_secs(300), |j| {
        j["progress"]["epoch"].as_u64() >= Some(2)
    })
    .await;
    let (status, generated) =
        post(&server, &format!("/jobs/{id}/generate"), &json!({"prefix": "the ", "max_tokens": 20})).await;
    assert_eq!(status, 200, "{generated}");
    assert_eq!(generated["text"].as_str().unwrap().chars().count(), 20);
    let (status, problem) =
        post(&server, &format!("/jobs/{id}/generate"), &json!({"prefix": "1898 --", "max_tokens": 5})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["prefix"]);
    let running = get_json(&server.client, &server.url(&format!("/jobs/{id}"))).await;
    assert_eq!(running["status"], "running");

    let r = server.client.post(server.url(&format!("/jobs/{id}/cancel"))).send().await.unwrap();
    assert!(r.status().is_success());
    let done = wait_finished(&server.client, &server.base, &id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "cancelled");
    let metrics = get_json(&server.client, &server.url(&format!("/jobs/{id}/metrics"))).await;
    let epochs = metrics["epochs"].as_array().unwrap();
    let vocab = 28.0;
    for e in epochs {
        let validation = e["validation_perplexity"].as_f64().unwrap();
        assert!(validation > 1.0 && validation < vocab, "{e}");
    }
    // A scratch RNN of 32 units over v symbols: (v·32 + 32·32 + 32) + (32·v + v), v at most 28.
    let params = done["parameters"].as_u64().unwrap();
    assert!((params - 32 * 32 - 32) % 65 == 0 && (params - 32 * 32 - 32) / 65 <= 28, "{params}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_machine_is_built_in_and_trains_on_a_fresh_data_dir() {
    let server = Server::start().await;
    let datasets = server.dir.path().join("datasets");
    assert!(!datasets.join("timemachine.txt").exists(), "nothing on disk: the text is in the binary");
    let job = json!({
        "model": {"kind": "rnn_lm", "hidden": 16},
        "data": {"dataset": "time_machine", "max_tokens": 2000},
        "training": {"epochs": 1}
    });
    let job = submit(&server.client, &server.base, &job).await;
    let id = job["id"].as_str().unwrap();
    let done = wait_finished(&server.client, &server.base, id, Duration::from_secs(300)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // 28 symbols: the book's vocabulary.
    assert_eq!(done["parameters"], (28 * 16 + 16 * 16 + 16) + (16 * 28 + 28));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn language_model_definitions_that_cannot_work_are_refused_by_field() {
    let server = Server::start().await;
    let cases = [
        (json!({"model": {"kind": "rnn_lm"}, "data": {"dataset": "fashion_mnist"}}), vec!["data.dataset"]),
        (json!({"model": {"kind": "lenet_bn"}, "data": {"dataset": "synthetic_text"}}), vec!["data.dataset"]),
        (json!({"model": {"kind": "rnn_lm"}, "data": {"dataset": "uploaded"}}), vec!["data.dataset_id"]),
        (
            json!({"model": {"kind": "rnn_lm"},
                   "data": {"dataset": "uploaded", "dataset_id": "6f1c3c1e-52a7-4a43-9f3e-6b1d1f6b7c11"}}),
            vec!["data.dataset_id"],
        ),
        (
            json!({"model": {"kind": "rnn_lm", "cell": "transformer", "hidden": [4, 4], "depth": 18},
                   "data": {"dataset": "synthetic_text", "tokenizer": "bpe", "sampling": "shuffled",
                            "num_steps": 0, "resize": 96, "validation_fraction": 1.5},
                   "training": {"grad_clip_norm": -1}}),
            vec![
                "model.depth",
                "model.cell",
                "data.resize",
                "data.tokenizer",
                "data.sampling",
                "data.num_steps",
                "data.validation_fraction",
                "training.grad_clip_norm",
            ],
        ),
    ];
    for (job, expected) in cases {
        let (status, problem) = post(&server, "/jobs", &job).await;
        assert_eq!(status, 422, "{job}: {problem}");
        let got = fields(&problem);
        for field in &expected {
            assert!(got.contains(&field.to_string()), "{job}: {field} missing from {got:?}");
        }
    }

    // A classifier job has no text to generate.
    let job = submit(&server.client, &server.base, &crate::common::synthetic_job(1)).await;
    let id = job["id"].as_str().unwrap();
    let (status, problem) = post(&server, &format!("/jobs/{id}/generate"), &json!({"prefix": "a"})).await;
    assert_eq!(status, 409, "{problem}");
    // Null turns clipping off.
    let (status, job) = post(
        &server,
        "/jobs",
        &json!({"model": {"kind": "rnn_lm"}, "data": {"dataset": "synthetic_text"},
                "training": {"grad_clip_norm": null, "epochs": 1}}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["spec"]["training"]["grad_clip_norm"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generating_before_the_first_checkpoint_says_when_it_comes() {
    let server = Server::start().await;
    let job = json!({"model": {"kind": "rnn_lm"}, "data": {"dataset": "synthetic_text"},
                     "training": {"epochs": 60}, "checkpoint": {"every": 50}});
    let job = submit(&server.client, &server.base, &job).await;
    let id = job["id"].as_str().unwrap();
    let (status, problem) = post(&server, &format!("/jobs/{id}/generate"), &json!({"prefix": "a"})).await;
    assert_eq!(status, 409, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("at the end of epoch 50 of 60 (checkpoint.every: 50)"), "{detail}");
    let cancel = server.client.post(server.url(&format!("/jobs/{id}/cancel"))).send().await.unwrap();
    assert!(cancel.status().is_success());
}
