//! Uploaded text corpora over real HTTP: upload, list, show and delete; the media type, size,
//! UTF-8 and label checks; where the text lands in the data dir; uploads streamed in many chunks,
//! cut off midway, and refused by the count and bytes quotas.

use std::io::Write;

use crate::common::{Server, get_json, head_only, read_answer};
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
        "the upload is larger than this server's limit of 1000 bytes (--max-dataset-bytes)"
    );
    let r = server.client.post(server.url("/jobs")).header("content-type", "application/json");
    let r = r.body("x".repeat(65)).send().await.unwrap();
    assert_eq!(r.status(), 413, "job definitions keep --max-body-bytes");

    // Without a declared length the text is cut as it passes the cap, and its file removed.
    let (status, problem) = upload_in_chunks(&server, &[b'x'; 1001], &[600]).await;
    assert_eq!(status, 413, "{problem}");
    assert_eq!(
        detail(&problem),
        "the upload is larger than this server's limit of 1000 bytes (--max-dataset-bytes)"
    );
    let kept = format!("{}.txt", dataset["id"].as_str().unwrap());
    assert_eq!(upload_dir(&server), [(kept, 1000)], "only the upload within the cap");

    let head = "POST /datasets HTTP/1.1\r\ncontent-type: text/plain\r\ncontent-length: 1001";
    let (status, _, problem) = head_only(&server, head).await;
    assert_eq!(status, 413, "a declared length over the cap is answered before the body: {problem}");
    assert_eq!(
        detail(&problem),
        "the upload is larger than this server's limit of 1000 bytes (--max-dataset-bytes)"
    );
}

/// A `POST /datasets` over a raw connection, its body sent chunk by chunk as it is fed
/// (`Transfer-Encoding: chunked`, one HTTP chunk per [`ChunkedUpload::send`]). Blocking I/O.
struct ChunkedUpload(std::net::TcpStream);

impl ChunkedUpload {
    fn start(server: &Server) -> Self {
        let addr = server.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /datasets HTTP/1.1\r\nHost: {addr}\r\ncontent-type: text/plain\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        Self(stream)
    }

    fn send(&mut self, chunk: &[u8]) {
        self.0.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).unwrap();
        self.0.write_all(chunk).unwrap();
        self.0.write_all(b"\r\n").unwrap();
        self.0.flush().unwrap();
    }

    /// Ends the body and reads the answer: status and JSON.
    fn finish(mut self) -> (u16, Value) {
        self.0.write_all(b"0\r\n\r\n").unwrap();
        let (status, _, body) = read_answer(&mut self.0);
        (status, body)
    }
}

/// `text` cut into chunks of `sizes` (cycled) and streamed to `/datasets`: the status and answer.
async fn upload_in_chunks(server: &Server, text: &[u8], sizes: &[usize]) -> (u16, Value) {
    let mut upload = ChunkedUpload::start(server);
    let (text, sizes) = (text.to_vec(), sizes.to_vec());
    tokio::task::spawn_blocking(move || {
        let (mut start, mut sizes) = (0, sizes.iter().cycle());
        while start < text.len() {
            let end = (start + sizes.next().unwrap()).min(text.len());
            upload.send(&text[start..end]);
            start = end;
        }
        upload.finish()
    })
    .await
    .unwrap()
}

/// The files in the uploads dir, temporary ones included, with their sizes; sorted.
fn upload_dir(server: &Server) -> Vec<(String, u64)> {
    let dir = server.dir.path().join("datasets/uploads");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), e.metadata().map_or(0, |m| m.len())))
        .collect();
    files.sort();
    files
}

/// Polls until `done` holds of the uploads dir, for at most 10 s; the last listing.
async fn wait_for_upload_dir(server: &Server, done: impl Fn(&[(String, u64)]) -> bool) -> Vec<(String, u64)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let files = upload_dir(server);
        if done(&files) || std::time::Instant::now() > deadline {
            return files;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_streamed_in_many_chunks_is_stored_byte_exact() {
    let server = Server::start().await;
    let piece = "kiln ✓ 時は金なり — 🦀 crabs\n";
    let text = piece.repeat((5 << 20) / piece.len() + 1);
    // The first chunk ends inside ✓ (bytes 5..8); the others cut it anywhere, some one byte long.
    let sizes = [6, 1, 2, 3, 65_537, 4_093, 131_071, 7];
    let cuts = sizes.iter().cycle().scan(0, |at, size| {
        *at += size;
        Some(*at)
    });
    let split = cuts.take_while(|&at| at < text.len()).filter(|&at| !text.is_char_boundary(at));
    assert!(split.count() > 50, "many chunk boundaries fall inside a character");

    let (status, dataset) = upload_in_chunks(&server, text.as_bytes(), &sizes).await;
    assert_eq!(status, 201, "{dataset}");
    assert_eq!(dataset["bytes"], text.len());
    assert_eq!(dataset["chars"], text.chars().count());
    assert_eq!(dataset["sha256"], sha256_hex(text.as_bytes()));
    let id = dataset["id"].as_str().unwrap();
    assert!(std::fs::read(upload_file(&server, id)).unwrap() == text.as_bytes(), "stored byte-exact");
    assert_eq!(upload_dir(&server), [(format!("{id}.txt"), text.len() as u64)], "no temporary file left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_deep_in_a_streamed_upload_is_refused_at_its_offset_leaving_no_file() {
    let server = Server::start().await;
    let mut text = "é".repeat(300 << 10).into_bytes();
    let offset = (300 << 10) + 1234;
    text[offset] = 0xff;
    // Chunks of an odd length: every boundary splits an é; the invalid byte is in the second.
    let (status, problem) = upload_in_chunks(&server, &text, &[(300 << 10) + 1]).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "validation_error");
    assert_eq!(
        detail(&problem),
        format!("body is not valid UTF-8: the first invalid byte is at offset {offset}")
    );
    assert_eq!(upload_dir(&server), [], "a refused upload leaves no file, not even a temporary one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_the_count_quota_are_refused_until_one_is_deleted() {
    let server = Server::start_with(|c| c.max_uploads = 2).await;
    let (_, _, first) = upload(&server, "", Some("text/plain"), b"one").await;
    let (status, _, _) = upload(&server, "", Some("text/plain"), b"two").await;
    assert_eq!(status, 201);
    let (status, ctype, problem) = upload(&server, "", Some("text/plain"), b"three").await;
    assert_eq!((status, ctype.as_str()), (507, "application/problem+json"), "{problem}");
    assert_eq!(problem["type"], "quota_exceeded");
    assert_eq!(problem["status"], 507);
    assert_eq!(
        detail(&problem),
        "this server stores at most 2 uploaded data sets (--max-uploads); 2 are stored and 0 being \
         uploaded: delete a data set first"
    );
    let r = server.client.delete(server.url(&format!("/datasets/{}", first["id"].as_str().unwrap())));
    assert_eq!(r.send().await.unwrap().status(), 204);
    let (status, _, _) = upload(&server, "", Some("text/plain"), b"three").await;
    assert_eq!(status, 201, "a deleted data set frees its place");

    // The count is read back from the store at start.
    let server = Server::start_in(server.stop().await, |c| c.max_uploads = 2).await;
    let (status, _, problem) = upload(&server, "", Some("text/plain"), b"four").await;
    assert_eq!(status, 507, "{problem}");
    assert_eq!(upload_dir(&server).len(), 2, "no file for the refused upload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_in_progress_and_stored_count_against_the_bytes_quota() {
    const KIB: usize = 1 << 10;
    let server = Server::start_with(|c| c.max_uploads_bytes = (1024 * KIB) as u64).await;
    // A declared length over the quota is refused before any of the body is sent.
    let head = "POST /datasets HTTP/1.1\r\ncontent-type: text/plain\r\ncontent-length: 1048577";
    let (status, _, problem) = head_only(&server, head).await;
    assert_eq!(status, 507, "{problem}");
    assert!(detail(&problem).contains("at most 1048576 bytes together (--max-uploads-bytes)"), "{problem}");

    // Upload A sends 768 KiB and waits, its temporary file on disk.
    let mut a = ChunkedUpload::start(&server);
    for _ in 0..12 {
        a.send(&[b'a'; 64 * KIB]);
    }
    let files = wait_for_upload_dir(&server, |f| f.len() == 1 && f[0].1 >= 512 * KIB as u64).await;
    assert!(files.len() == 1 && files[0].0.ends_with(".txt.tmp"), "A is written as it arrives: {files:?}");

    // B alone would fit, but not beside what A has received: refused midway, its file removed.
    let (status, problem) = upload_in_chunks(&server, &vec![b'b'; 600 * KIB], &[64 * KIB]).await;
    assert_eq!(status, 507, "{problem}");
    assert_eq!(problem["type"], "quota_exceeded");
    assert!(detail(&problem).contains("reserved by other uploads in progress"), "{problem}");
    assert_eq!(upload_dir(&server).len(), 1, "only A's temporary file");

    a.send(&[b'a'; 100 * KIB]);
    let (status, a) = tokio::task::spawn_blocking(move || a.finish()).await.unwrap();
    assert_eq!((status, a["bytes"].as_u64()), (201, Some(868 * KIB as u64)), "{a}");

    // Stored bytes count too, until deleted.
    let (status, problem) = upload_in_chunks(&server, &vec![b'c'; 200 * KIB], &[64 * KIB]).await;
    assert_eq!(status, 507, "{problem}");
    assert!(detail(&problem).contains(&format!("{} are stored", 868 * KIB)), "{problem}");
    let r = server.client.delete(server.url(&format!("/datasets/{}", a["id"].as_str().unwrap())));
    assert_eq!(r.send().await.unwrap().status(), 204);
    let (status, c) = upload_in_chunks(&server, &vec![b'c'; 1024 * KIB], &[64 * KIB]).await;
    assert_eq!(status, 201, "exactly the quota fits once A is gone: {c}");
    assert_eq!(upload_dir(&server).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_midway_leaves_no_file_and_gives_back_its_quota() {
    let server = Server::start_with(|c| c.max_uploads = 1).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    // Declares 2 MiB and sends half of it.
    let stream = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        let head = format!("POST /datasets HTTP/1.1\r\nHost: {addr}\r\ncontent-type: text/plain\r\n");
        stream.write_all(format!("{head}content-length: {}\r\n\r\n", 2 << 20).as_bytes()).unwrap();
        stream.write_all(&vec![b'x'; 1 << 20]).unwrap();
        stream
    })
    .await
    .unwrap();
    let files = wait_for_upload_dir(&server, |f| f.iter().any(|(_, len)| *len > 0)).await;
    assert!(files.len() == 1 && files[0].0.ends_with(".txt.tmp"), "half of it on disk: {files:?}");

    drop(stream);
    let files = wait_for_upload_dir(&server, |f| f.is_empty()).await;
    assert_eq!(files, [], "the temporary file of an abandoned upload is removed");
    let (status, _, dataset) = upload(&server, "", Some("text/plain"), b"the one upload allowed").await;
    assert_eq!(status, 201, "the abandoned upload gave back its place: {dataset}");
    assert_eq!(get_json(&server.client, &server.url("/datasets")).await.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_answered_408_and_leaves_no_file() {
    let server = Server::start_with(|c| c.body_timeout_secs = 1).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    // Declares 100 bytes, sends 10 and stops, still reading.
    let started = std::time::Instant::now();
    let (status, headers, problem) = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        let head = format!("POST /datasets HTTP/1.1\r\nHost: {addr}\r\ncontent-type: text/plain\r\n");
        stream.write_all(format!("{head}content-length: 100\r\n\r\nthe time t").as_bytes()).unwrap();
        read_answer(&mut stream)
    })
    .await
    .unwrap();
    assert_eq!(status, 408, "{problem}");
    assert!(started.elapsed() < std::time::Duration::from_secs(8), "{:?}", started.elapsed());
    let ctype = headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str());
    assert_eq!(ctype, Some("application/problem+json"));
    assert_eq!(problem["type"], "request_timeout", "{problem}");
    assert!(detail(&problem).contains("--body-timeout-secs"), "{problem}");
    assert_eq!(wait_for_upload_dir(&server, |f| f.is_empty()).await, [], "nothing left on disk");
}
