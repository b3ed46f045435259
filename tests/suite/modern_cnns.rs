//! ResNet and DenseNet as job kinds over HTTP: small variants on generated images train to high
//! accuracy, and definitions the models cannot take are refused up front.

use std::time::Duration;

use crate::common::{Server, get_json, submit, wait_finished};
use serde_json::{Value, json};

/// Trains `model` for 3 epochs on generated images and checks it learned them; returns the job.
async fn learns(server: &Server, model: Value, resize: Option<usize>) -> Value {
    let mut data = json!({"dataset": "synthetic_images", "train_size": 1200, "test_size": 300, "seed": 3});
    if let Some(side) = resize {
        data["resize"] = json!(side);
    }
    let job = json!({
        "model": model,
        "data": data,
        "training": {"epochs": 3, "batch_size": 64, "seed": 7,
                     "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9}},
    });
    let job = submit(&server.client, &server.base, &job).await;
    let id = job["id"].as_str().unwrap().to_string();
    let done = wait_finished(&server.client, &server.base, &id, Duration::from_secs(600)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let metrics = get_json(&server.client, &server.url(&format!("/jobs/{id}/metrics"))).await;
    let accuracy = metrics["latest"]["test_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.9, "{}", metrics["epochs"]);
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_resnet_learns_generated_images() {
    let server = Server::start().await;
    let model = json!({"kind": "resnet", "widths": [8, 16], "blocks": [1, 1]});
    let job = learns(&server, model, None).await;
    assert_eq!(job["spec"]["model"]["depth"], 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_densenet_learns_generated_images_resized() {
    let server = Server::start().await;
    let model = json!({"kind": "densenet", "growth_rate": 8, "blocks": [2, 2, 2], "stem_channels": 16});
    let job = learns(&server, model, Some(40)).await;
    assert_eq!(job["spec"]["data"]["resize"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_nets_are_sized_and_checked_before_they_are_queued() {
    let server = Server::start().await;
    let post = |body: Value| server.client.post(server.url("/jobs")).json(&body).send();
    // The book-sized jobs are only admitted and sized here, not trained.
    let cancel = |job: &Value| {
        let url = server.url(&format!("/jobs/{}/cancel", job["id"].as_str().unwrap()));
        server.client.post(url).send()
    };
    let data = json!({"dataset": "synthetic_images"});
    let r =
        post(json!({"model": {"kind": "resnet"}, "data": data, "training": {"epochs": 1}})).await.unwrap();
    assert_eq!(r.status(), 201);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["parameters"], 11_178_378);
    assert_eq!(job["spec"]["model"]["blocks"], json!([2, 2, 2, 2]));
    assert_eq!(cancel(&job).await.unwrap().status(), 200);

    // Four dense blocks pool a 28-pixel image away: the definition says how to fix it.
    let r = post(json!({"model": {"kind": "densenet"}, "data": data})).await.unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "data.resize", "{body}");
    let r =
        post(json!({"model": {"kind": "densenet"}, "data": {"dataset": "synthetic_images", "resize": 96},
                        "training": {"epochs": 1}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["parameters"], 758_226);
    assert_eq!(cancel(&job).await.unwrap().status(), 200);

    let r = post(json!({"model": {"kind": "resnet", "depth": 50, "growth_rate": 3}, "data": data}))
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let detail = r.json::<Value>().await.unwrap()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("model.growth_rate is not allowed with model.kind = resnet"), "{detail}");
    assert!(detail.contains("model.depth must be one of 18, 34"), "{detail}");
    let r = post(json!({"model": {"kind": "resnet", "widths": [8, 16], "blocks": [1]}, "data": data}))
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}
