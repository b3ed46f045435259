//! What a client can do to the connection loop below the router: pipeline requests and never
//! read the answers, take every slot from one address, keep a connection forever, or send a
//! request head hyper cannot parse. Clients that misbehave come from 127.0.0.2, the well-behaved
//! one from 127.0.0.1: on Linux the whole of 127.0.0.0/8 is this machine.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Server, read_answer};

const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A connection to `server` from 127.0.0.2.
async fn connect_from_other(server: &Server) -> TcpStream {
    let addr = server.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((OTHER, 0).into()).unwrap();
    let stream = socket.connect(addr).await.unwrap().into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// GET `path` from 127.0.0.2 on a new connection; the status, or 0 if the connection broke.
async fn status_from_other(server: &Server, path: &str) -> u16 {
    let client = reqwest::Client::builder().local_address(OTHER).build().unwrap();
    client.get(server.url(path)).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_their_answers_cannot_hold_the_server() {
    let server = Server::start_with(|c| {
        c.max_connections = 20;
        c.write_timeout_secs = 2;
    })
    .await;
    // Twenty connections, each a hundred pipelined requests for the dashboard's 200 KB script,
    // and none of the answers read: 20 MB each, far more than the socket buffers hold.
    let request = "GET /dashboard/chart.js HTTP/1.1\r\nHost: kiln\r\n\r\n".repeat(100);
    let mut hogs = Vec::new();
    for _ in 0..20 {
        let mut stream = connect_from_other(&server).await;
        let _ = stream.write_all(request.as_bytes());
        hogs.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // One address holds at most a quarter of the slots: everyone else is still served.
    // On a new connection: the server's client keeps one from before the hogs came.
    let ready = reqwest::Client::new().get(server.url("/readyz")).send().await;
    let status = ready.map(|r| r.status().as_u16()).unwrap_or(0);
    assert_eq!(status, 200, "a new client from another address is served (0: refused before an answer)");
    let refused: Vec<TcpStream> = hogs.drain(5..).collect();
    let answers = tokio::task::spawn_blocking(move || {
        refused.into_iter().map(|mut s| read_answer(&mut s)).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (status, headers, problem) in answers {
        assert_eq!(status, 503, "{problem}");
        assert_eq!(problem["type"], "too_many_connections_from_address", "{problem}");
        assert!(headers.iter().any(|(k, _)| k == "retry-after"), "{headers:?}");
    }
    let mut sixth = connect_from_other(&server).await;
    let (status, _, problem) = tokio::task::spawn_blocking(move || read_answer(&mut sixth)).await.unwrap();
    assert_eq!(status, 503, "the address is at its cap: {problem}");

    // The five it was let in make no progress writing: closed after --write-timeout-secs.
    let deadline = Instant::now() + Duration::from_secs(15);
    while status_from_other(&server, "/healthz").await != 200 {
        assert!(Instant::now() < deadline, "connections that read nothing were never closed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The others stalled at about the same time: give them the deadline again before reading,
    // which would let a connection still open make progress.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cut = tokio::task::spawn_blocking(move || hogs.into_iter().map(read_all).collect::<Vec<_>>())
        .await
        .unwrap();
    for received in cut {
        assert!(received < 100 * 199_560, "a hog was closed before its answers were all written: {received}");
    }
}

/// Reads a connection to its end (or its reset); how many bytes came.
fn read_all(mut stream: TcpStream) -> usize {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0; 1 << 16];
    let mut total = 0;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_serves_at_most_its_share_of_requests() {
    let server = Server::start_with(|c| c.max_requests_per_connection = 2).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let answers = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let request = "GET /healthz HTTP/1.1\r\nHost: kiln\r\n\r\n".repeat(3);
        stream.write_all(request.as_bytes()).unwrap();
        let mut answers = Vec::new();
        stream.read_to_end(&mut answers).expect("the server closes the connection");
        String::from_utf8(answers).unwrap()
    })
    .await
    .unwrap();
    let heads: Vec<&str> = answers.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(heads.len(), 2, "two answers, then the connection closes: {answers}");
    assert!(heads.iter().all(|h| h.starts_with("200 ")), "{answers}");
    assert!(!heads[0].contains("connection: close"), "{answers}");
    assert!(heads[1].contains("connection: close"), "the second answer closes the connection: {answers}");
}

/// Sends `request` whole over a new connection (what the server may not read is ignored) and
/// reads the answer.
async fn raw(server: &Server, request: Vec<u8>) -> (u16, Vec<(String, String)>, Value) {
    let addr = server.base.trim_start_matches("http://").to_string();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        let mut writer = stream.try_clone().unwrap();
        // The server answers and closes before reading all of a huge head: write beside it.
        std::thread::spawn(move || {
            let _ = writer.write_all(&request);
        });
        read_answer(&mut stream)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_hyper_refuses_are_answered_as_problems() {
    let server = Server::start().await;
    let get = |headers: &str| format!("GET /healthz HTTP/1.1\r\nHost: kiln\r\n{headers}\r\n").into_bytes();
    let many: String = (0..101).map(|i| format!("x-{i}: {i}\r\n")).collect();
    let large = format!("x-large: {}\r\n", "a".repeat(1 << 20));
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: kiln\r\n\r\n", "a".repeat(70 << 10)).into_bytes();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("a negative length", get("content-length: -1\r\n"), 400),
        ("two lengths", get("content-length: 1\r\ncontent-length: 2\r\n"), 400),
        ("a gzip transfer coding", get("transfer-encoding: gzip\r\n"), 400),
        ("a garbage request line", b"\x01\x02 nonsense\r\n\r\n".to_vec(), 400),
        ("101 headers", get(&many), 431),
        ("1 MB of headers", get(&large), 431),
        ("a 70 KB URI", long_uri, 414),
    ];
    for (what, request, expected) in cases {
        let (status, headers, problem) = raw(&server, request).await;
        assert_eq!(status, expected, "{what}: {problem}");
        let content_type = headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str());
        assert_eq!(content_type, Some("application/problem+json"), "{what}");
        assert_eq!(problem["status"], expected, "{what}: {problem}");
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{what}: {problem}");
    }
    // And the server still serves.
    assert_eq!(server.client.get(server.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_that_its_client_reads_outlives_the_write_deadline() {
    let server = Server::start_with(|c| {
        c.write_timeout_secs = 1;
        c.event_keep_alive_secs = 1;
    })
    .await;
    // Long enough to still be training after the four seconds read below; cancelled then.
    let mut job = crate::common::synthetic_job(50);
    job["data"]["train_size"] = serde_json::json!(12000);
    let job = crate::common::submit(&server.client, &server.base, &job).await;
    let id = job["id"].as_str().unwrap();
    let mut stream = server.client.get(server.url(&format!("/jobs/{id}/events"))).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    // Read for four write deadlines.
    let started = Instant::now();
    let mut received = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let chunk = tokio::time::timeout(Duration::from_secs(3), stream.chunk()).await;
        let chunk = chunk.expect("the stream keeps sending").expect("the stream is not cut");
        received += chunk.expect("the stream has not ended").len();
    }
    assert!(received > 0);
    let cancel = server.client.post(server.url(&format!("/jobs/{id}/cancel"))).send().await.unwrap();
    assert!(cancel.status().is_success());
}
