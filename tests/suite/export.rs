//! Checkpoints exported for PyTorch over HTTP and through the CLI: an image classifier's
//! weights as safetensors under PyTorch's `state_dict` names, the job's definition in the
//! metadata; a language model's as the book's `nn.GRU` model names them; an unknown format is
//! refused by name.

use std::collections::BTreeMap;
use std::time::Duration;

use safetensors::SafeTensors;
use serde_json::{Value, json};
use sha2::Digest;

use crate::common::{Server, get_json, submit, synthetic_job, wait_finished};

/// The job's newest checkpoint.
async fn newest_checkpoint(server: &Server, id: &str) -> Value {
    let list = get_json(&server.client, &server.url(&format!("/jobs/{id}/checkpoints"))).await;
    list.as_array().unwrap().last().cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classifiers_checkpoint_downloads_as_safetensors_with_pytorchs_names() {
    let server = Server::start().await;
    let job = submit(&server.client, &server.base, &synthetic_job(1)).await;
    let id = job["id"].as_str().unwrap();
    let done = wait_finished(&server.client, &server.base, id, Duration::from_secs(300)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let checkpoint = newest_checkpoint(&server, id).await;
    let url = server.url(&format!("/jobs/{id}/checkpoints/{}?format=safetensors", checkpoint["id"]));
    let r = server.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let disposition = r.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.ends_with(&format!("{id}-{}.safetensors\"", checkpoint["id"])), "{disposition}");
    let sha256 = r.headers()["x-checksum-sha256"].to_str().unwrap().to_string();
    let file = r.bytes().await.unwrap();
    assert_eq!(format!("{:x}", sha2::Sha256::digest(&file)), sha256);

    // The book's LeNet-BN `nn.Sequential`: 16 layers, 5 with weights, 4 BatchNorms.
    let read = SafeTensors::deserialize(&file).unwrap();
    let shapes: BTreeMap<String, Vec<usize>> =
        read.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec())).collect();
    assert_eq!(shapes.len(), 30, "{shapes:?}");
    assert_eq!(shapes["0.weight"], [6, 1, 5, 5]);
    assert_eq!(shapes["9.weight"], [120, 256], "Linear weights as PyTorch keeps them");
    assert_eq!(shapes["15.weight"], [10, 84]);
    assert_eq!(shapes["13.running_var"], [84]);
    let tracked = read.tensor("1.num_batches_tracked").unwrap();
    let steps = i64::from_le_bytes(tracked.data().try_into().unwrap());
    assert_eq!(steps, checkpoint["step"].as_i64().unwrap(), "BatchNorm counts the steps trained");

    let (_, header) = SafeTensors::read_metadata(&file).unwrap();
    let metadata = header.metadata().clone().unwrap();
    assert_eq!(metadata["format"], "pt");
    assert_eq!(metadata["kiln.job"], id);
    let definition: Value = serde_json::from_str(&metadata["kiln.definition"]).unwrap();
    assert_eq!(definition["model"]["kind"], "lenet_bn");

    // The burnpack stays the default and can be asked for by name.
    for query in ["", "?format=burnpack"] {
        let url = server.url(&format!("/jobs/{id}/checkpoints/{}{query}", checkpoint["id"]));
        let bytes = server.client.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, checkpoint["bytes"].as_u64().unwrap(), "{query}");
    }
    let url = server.url(&format!("/jobs/{id}/checkpoints/{}?format=onnx", checkpoint["id"]));
    let r = server.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "format", "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_language_model_exports_the_books_gru_names_and_the_cli_saves_a_safetensors_file() {
    let server = Server::start().await;
    let lm = json!({
        "model": {"kind": "rnn_lm", "cell": "gru", "hidden": 16, "layers": 2, "embedding": 8},
        "data": {"dataset": "time_machine", "max_tokens": 2000},
        "training": {"epochs": 1}
    });
    let lm = submit(&server.client, &server.base, &lm).await;
    let classifier = submit(&server.client, &server.base, &synthetic_job(1)).await;
    for job in [&lm, &classifier] {
        let id = job["id"].as_str().unwrap();
        let done = wait_finished(&server.client, &server.base, id, Duration::from_secs(300)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    let id = lm["id"].as_str().unwrap();
    let checkpoint = newest_checkpoint(&server, id).await;
    let url = server.url(&format!("/jobs/{id}/checkpoints/{}?format=safetensors", checkpoint["id"]));
    let file = server.client.get(&url).send().await.unwrap().bytes().await.unwrap();
    // The book's concise RNNModel: an nn.GRU of two layers over an embedding, and its Linear head.
    let read = SafeTensors::deserialize(&file).unwrap();
    let shapes: BTreeMap<String, Vec<usize>> =
        read.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec())).collect();
    let (_, header) = SafeTensors::read_metadata(&file).unwrap();
    let vocab: Vec<Value> = serde_json::from_str(&header.metadata().as_ref().unwrap()["kiln.vocab"]).unwrap();
    let v = vocab.len();
    let expected: BTreeMap<String, Vec<usize>> = [
        ("embedding.weight", vec![v, 8]),
        ("rnn.weight_ih_l0", vec![48, 8]),
        ("rnn.weight_hh_l0", vec![48, 16]),
        ("rnn.bias_ih_l0", vec![48]),
        ("rnn.bias_hh_l0", vec![48]),
        ("rnn.weight_ih_l1", vec![48, 16]),
        ("rnn.weight_hh_l1", vec![48, 16]),
        ("rnn.bias_ih_l1", vec![48]),
        ("rnn.bias_hh_l1", vec![48]),
        ("linear.weight", vec![v, 16]),
        ("linear.bias", vec![v]),
    ]
    .into_iter()
    .map(|(name, shape)| (name.to_string(), shape))
    .collect();
    assert_eq!(shapes, expected);

    let dir = tempfile::tempdir().unwrap();
    let id = classifier["id"].as_str().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["checkpoints", id, "--download"])
        .arg(dir.path())
        .args(["--format", "safetensors"])
        .env("KILN_SERVER", &server.base)
        .env_remove("KILN_API_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let checkpoint = newest_checkpoint(&server, id).await;
    let saved = dir.path().join(format!("{id}-checkpoint-{}.safetensors", checkpoint["id"]));
    let file = std::fs::read(&saved).unwrap_or_else(|e| panic!("{}: {e}", saved.display()));
    assert_eq!(SafeTensors::deserialize(&file).unwrap().len(), 30);
}
