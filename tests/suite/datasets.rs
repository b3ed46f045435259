//! Uploaded text corpora over real HTTP: upload, list, show and delete; the media type, size,
//! UTF-8 and label checks; and where the text lands in the data dir.

use crate::common::{Server, get_json, head_only};
use serde_json::Value;
use sha2::Digest;

/// POSTs `body` as `content_type` to `/datasets` + `query`; returns the status, the
/// content-type and the JSON answer.
async fn upload(
    server: &Server,
    query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, String, Value) {
    let mut request = server.client.post(server.url(&format!("/datasets{query}"))).body(body.to_vec());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
    (status, ctype, r.json().await.unwrap())
}

fn upload_file(server: &Server, id: &str) -> std::path::PathBuf {
    server.dir.path().join("datasets").join("uploads").join(format!("{id}.txt"))
}

fn detail(problem: &Value) -> &str {
    problem["detail"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_stored_listed_shown_and_deleted() {
    let server = Server::start().await;
    let text =
        "Zeit ist Geld — 時は金なり.\nThe Time Traveller (for so it will be convenient to speak of him)\n";
    let r = server
        .client
        .post(server.url("/datasets?name=%20time%20machine%20"))
        .header("content-type", "text/plain; charset=utf-8")
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let first: Value = r.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/datasets/{id}"));
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(first["name"], "time machine");
    assert_eq!(first["bytes"], text.len());
    assert_eq!(first["chars"], text.chars().count());
    assert_ne!(text.len(), text.chars().count());
    let sha256: String = sha2::Sha256::digest(text).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(first["sha256"], sha256);
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'), "{first}");
    assert_eq!(std::fs::read_to_string(upload_file(&server, &id)).unwrap(), text);

    // The SHA-256 of "abc" is a published test vector.
    let (status, _, second) = upload(&server, "", Some("TEXT/PLAIN"), b"abc").await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["sha256"], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!((second["bytes"].as_u64(), second["chars"].as_u64()), (Some(3), Some(3)));
    assert_eq!(second["name"], Value::Null);

    let listed = get_json(&server.client, &server.url("/datasets")).await;
    assert_eq!(listed, serde_json::json!([second, first]), "newest first");
    assert_eq!(get_json(&server.client, &server.url(&format!("/datasets/{id}"))).await, first);

    let r = server.client.delete(server.url(&format!("/datasets/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(!upload_file(&server, &id).exists());
    for r in [
        server.client.get(server.url(&format!("/datasets/{id}"))).send().await.unwrap(),
        server.client.delete(server.url(&format!("/datasets/{id}"))).send().await.unwrap(),
    ] {
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["type"], "not_found");
        assert_eq!(detail(&problem), format!("data set {id} not found"));
    }
    let listed = get_json(&server.client, &server.url("/datasets")).await;
    assert_eq!(listed, serde_json::json!([second]));
    let files: Vec<_> = std::fs::read_dir(server.dir.path().join("datasets/uploads")).unwrap().collect();
    assert_eq!(files.len(), 1, "only the second upload's file is left, no temporary file");

    let r = server.client.get(server.url("/datasets/not-a-uuid")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r =
        server.client.get(server.url(&format!("/datasets/{}", uuid::Uuid::new_v4()))).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_that_are_not_utf8_text_or_are_empty_are_refused_naming_the_problem() {
    let server = Server::start().await;

    for (content_type, expected) in [
        (Some("application/json"), "got \"application/json\""),
        (None, "got none"),
        (Some("text/plain; charset=iso-8859-1"), "charset \"iso-8859-1\" is not supported"),
    ] {
        let (status, ctype, problem) = upload(&server, "", content_type, b"hello").await;
        assert_eq!(status, 415, "{problem}");
        assert_eq!(ctype, "application/problem+json");
        assert_eq!(problem["type"], "unsupported_media_type");
        assert!(detail(&problem).contains("text/plain"), "{problem}");
        assert!(detail(&problem).contains(expected), "{problem}");
    }

    let (status, _, problem) = upload(&server, "", Some("text/plain"), b"abc\xffdef").await;
    assert_eq!(status, 422);
    assert_eq!(problem["type"], "validation_error");
    assert_eq!(detail(&problem), "body is not valid UTF-8: the first invalid byte is at offset 3");
    assert_eq!(problem["errors"][0]["field"], "body");

    let (status, _, problem) = upload(&server, "", Some("text/plain"), b"").await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "body");
    assert!(detail(&problem).starts_with("body is empty"), "{problem}");

    let long = "n".repeat(201);
    let (status, _, problem) = upload(&server, &format!("?name={long}"), Some("text/plain"), b"text").await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "name");
    assert_eq!(detail(&problem), "name must be at most 200 characters");

    assert_eq!(get_json(&server.client, &server.url("/datasets")).await, serde_json::json!([]));
    let files = std::fs::read_dir(server.dir.path().join("datasets/uploads")).unwrap().count();
    assert_eq!(files, 0, "a refused upload leaves no file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_have_their_own_size_cap_instead_of_the_json_body_limit() {
    let server = Server::start_with(|c| {
        c.max_body_bytes = 64;
        c.max_dataset_bytes = 1000;
    })
    .await;
    let (status, _, dataset) = upload(&server, "", Some("text/plain"), &[b'x'; 1000]).await;
    assert_eq!(status, 201, "a body over --max-body-bytes but within --max-dataset-bytes: {dataset}");
    assert_eq!(dataset["bytes"], 1000);

    let (status, ctype, problem) = upload(&server, "", Some("text/plain"), &[b'x'; 1001]).await;
    assert_eq!(status, 413);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(problem["type"], "payload_too_large");
    assert_eq!(
        detail(&problem),
        "the text is larger than this server's limit of 1000 bytes (--max-dataset-bytes)"
    );
    let r = server.client.post(server.url("/jobs")).header("content-type", "application/json");
    let r = r.body("x".repeat(65)).send().await.unwrap();
    assert_eq!(r.status(), 413, "job definitions keep --max-body-bytes");

    let head = "POST /datasets HTTP/1.1\r\ncontent-type: text/plain\r\ncontent-length: 1001";
    let (status, _, problem) = head_only(&server, head).await;
    assert_eq!(status, 413, "a declared length over the cap is answered before the body: {problem}");
    assert_eq!(
        detail(&problem),
        "the text is larger than this server's limit of 1000 bytes (--max-dataset-bytes)"
    );
}
