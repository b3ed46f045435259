//! LeNet-BN on the real Fashion-MNIST with the book's settings (SGD lr 1.0, batch 256, seed 42),
//! trained for 2 epochs through the service. Needs Debian's `dataset-fashion-mnist`, which the
//! test command installs.
//!
//! The bar: training accuracy past 0.80 and test accuracy (evaluation mode, BatchNorm running
//! statistics) past 0.70 after 2 epochs. Test accuracy at lr 1.0 swings from epoch to epoch:
//! PyTorch with the same model and settings on the same machine gave 0.68 to 0.83 after 2 epochs
//! over 9 seeds (only 2 of them past 0.80), while its training accuracy was ~0.82 for every seed.

use std::time::Duration;

use crate::common::{Server, get_json, submit, wait_finished};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenet_bn_learns_fashion_mnist_in_two_epochs() {
    assert!(
        std::path::Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
        "install Debian's dataset-fashion-mnist (the test command does)"
    );
    let server = Server::start().await;
    let job = json!({
        "model": {"kind": "lenet_bn", "batch_norm": true},
        "data": {"dataset": "fashion_mnist"},
        "training": {"epochs": 2, "batch_size": 256, "seed": 42, "optimizer": {"kind": "sgd", "lr": 1.0}},
        "backend": "cpu"
    });
    let job = submit(&server.client, &server.base, &job).await;
    let id = job["id"].as_str().unwrap();
    let done = wait_finished(&server.client, &server.base, id, Duration::from_secs(1200)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let metrics = get_json(&server.client, &server.url(&format!("/jobs/{id}/metrics"))).await;
    let epochs = metrics["epochs"].as_array().unwrap();
    println!("fashion-mnist lenet-bn: {epochs:?}");
    assert_eq!(epochs.len(), 2);
    let train = epochs[1]["train_accuracy"].as_f64().unwrap();
    let test = epochs[1]["test_accuracy"].as_f64().unwrap();
    assert!(train > 0.80, "train accuracy {train}");
    assert!(test > 0.70, "test accuracy {test}");
    assert!(epochs[1]["train_loss"].as_f64() < epochs[0]["train_loss"].as_f64());
}
