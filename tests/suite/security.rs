//! What keeps an exposed server safe, over real HTTP: API keys and their scopes, JSON-only
//! bodies, CORS, one error contract (404/405/extractor errors as problem+json), timeouts for
//! stalled connections, the connection cap, the free-space floor and the checkpoint caps; the
//! generated key file's mode, bounded Prometheus labels, and the level refusals are logged at.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{Server, synthetic_job};
use serde_json::{Value, json};

pub(crate) const WRITER: &str = "kiln_test-writer-key-0123456789";

/// A server whose keys are a write key (`KILN_API_KEY`) and a read key from a key file.
pub(crate) async fn keyed_server() -> (Server, String) {
    let reader = kiln::keys::generate_token();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), kiln::keys::key_file_line(&reader, kiln::keys::Scope::Read, "tests"))
        .unwrap();
    let path = file.into_temp_path().keep().unwrap();
    let server = Server::start_with(|c| {
        c.api_key = Some(kiln::config::Secret(WRITER.into()));
        c.api_keys_file = Some(path);
    })
    .await;
    (server, reader)
}

async fn status_and_problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    if status >= 400 {
        let ctype = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(ctype.as_deref(), Some("application/problem+json"), "status {status}");
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_guard_every_route_but_the_probes_and_scopes_split_reading_from_writing() {
    let (server, reader) = keyed_server().await;
    let c = &server.client;
    for open in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(c.get(server.url(open)).send().await.unwrap().status(), 200, "{open}");
    }

    let r = c.get(server.url("/jobs")).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"kiln\"");
    let (status, problem) = status_and_problem(r).await;
    assert_eq!((status, problem["type"].as_str()), (401, Some("unauthorized")), "{problem}");
    let r = c.get(server.url("/jobs")).bearer_auth("kiln_not-a-key-of-this-server").send().await.unwrap();
    assert_eq!(status_and_problem(r).await.0, 401);
    let r = c.get(server.url("/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 401, "unknown routes say nothing without a key");

    let r = c.get(server.url("/jobs")).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let job = synthetic_job(1);
    let r = c.post(server.url("/jobs")).bearer_auth(&reader).json(&job).send().await.unwrap();
    let (status, problem) = status_and_problem(r).await;
    assert_eq!((status, problem["type"].as_str()), (403, Some("forbidden")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("a read key may not POST /jobs"), "{problem}");

    let r = c.post(server.url("/jobs")).bearer_auth(WRITER).json(&job).send().await.unwrap();
    let (status, created) = status_and_problem(r).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let r = c.get(server.url(&format!("/jobs/{id}"))).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.post(server.url(&format!("/jobs/{id}/cancel"))).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = c.post(server.url(&format!("/jobs/{id}/cancel"))).bearer_auth(WRITER).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_routes_take_only_json_and_every_error_is_a_problem() {
    let server = Server::start().await;
    let c = &server.client;
    let body = synthetic_job(1).to_string();
    for ctype in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut r = c.post(server.url("/jobs")).body(body.clone());
        if let Some(ctype) = ctype {
            r = r.header("content-type", ctype);
        }
        let (status, problem) = status_and_problem(r.send().await.unwrap()).await;
        assert_eq!((status, problem["type"].as_str()), (415, Some("unsupported_media_type")), "{ctype:?}");
    }
    let id = uuid::Uuid::new_v4();
    let r = c.post(server.url(&format!("/jobs/{id}/cancel"))).header("content-type", "text/plain").body("x");
    assert_eq!(status_and_problem(r.send().await.unwrap()).await.0, 415, "a simple cross-site cancel");
    let r = c.post(server.url(&format!("/jobs/{id}/cancel"))).send().await.unwrap();
    assert_eq!(status_and_problem(r).await.0, 404, "no body at all is fine");
    let r = c.post(server.url("/jobs")).header("content-type", "application/json; charset=utf-8").body(body);
    assert_eq!(status_and_problem(r.send().await.unwrap()).await.0, 201);

    let (status, problem) = status_and_problem(c.get(server.url("/nowhere")).send().await.unwrap()).await;
    assert_eq!((status, problem["type"].as_str()), (404, Some("not_found")), "{problem}");
    let r = c.put(server.url("/jobs")).send().await.unwrap();
    assert!(r.headers()["allow"].to_str().unwrap().contains("POST"));
    let (status, problem) = status_and_problem(r).await;
    assert_eq!((status, problem["type"].as_str()), (405, Some("method_not_allowed")), "{problem}");
    let r = c.get(server.url("/jobs?status=queued&status=running")).send().await.unwrap();
    let (status, problem) = status_and_problem(r).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("status"), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_go_only_to_the_listed_origins() {
    let server = Server::start_with(|c| c.cors_origins = vec!["https://ui.example.com".into()]).await;
    let preflight = |origin: &'static str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, server.url("/jobs"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let r = preflight("https://ui.example.com").await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "https://ui.example.com");
    let r = preflight("https://evil.example.net").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let plain = Server::start().await;
    let r = plain.client.get(plain.url("/jobs")).header("origin", "https://ui.example.com").send().await;
    assert!(r.unwrap().headers().get("access-control-allow-origin").is_none());
}

/// Connects to the server and sends `bytes` (no more).
fn connect(server: &Server, bytes: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(bytes.as_bytes()).unwrap();
    stream
}

/// Reads until the server closes the connection; what it sent and how long that took.
fn read_until_closed(mut stream: TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_idle_connections_are_closed_within_their_timeouts() {
    let server = Server::start_with(|c| {
        c.idle_timeout_secs = 1;
        c.body_timeout_secs = 1;
    })
    .await;
    let half_head = connect(&server, "GET /healthz HTTP/1.1\r\nHost: kiln\r\n");
    let idle = connect(&server, "GET /healthz HTTP/1.1\r\nHost: kiln\r\n\r\n");
    let short_body = connect(
        &server,
        "POST /jobs HTTP/1.1\r\nHost: kiln\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"mo",
    );
    let (half, idle, short) = tokio::task::spawn_blocking(move || {
        (read_until_closed(half_head), read_until_closed(idle), read_until_closed(short_body))
    })
    .await
    .unwrap();
    for (what, (_, took)) in [("half a head", &half), ("an idle keep-alive", &idle), ("a short body", &short)]
    {
        assert!(*took < Duration::from_secs(8), "{what} stayed open {took:?}");
    }
    assert!(idle.0.starts_with("HTTP/1.1 200"), "the request itself was answered: {}", idle.0);
    assert!(short.0.starts_with("HTTP/1.1 408"), "{}", short.0);
    assert!(short.0.contains("application/problem+json"), "{}", short.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_refused_with_a_problem() {
    let server = Server::start_with(|c| {
        c.max_connections = 2;
        c.max_connections_per_ip = Some(2);
    })
    .await;
    let held: Vec<TcpStream> = (0..2).map(|_| connect(&server, "")).collect();
    // Give the accept loop time to take both.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = connect(&server, "GET /healthz HTTP/1.1\r\nHost: kiln\r\n\r\n");
    let (answer, _) = tokio::task::spawn_blocking(move || read_until_closed(third)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections") && answer.contains("retry-after"), "{answer}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.client.get(server.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_free_space_floor_submits_answer_507_and_the_server_is_not_ready() {
    let server = Server::start_with(|c| c.min_free_disk_mib = u64::MAX >> 21).await;
    let r = server.client.post(server.url("/jobs")).json(&synthetic_job(1)).send().await.unwrap();
    let (status, problem) = status_and_problem(r).await;
    assert_eq!((status, problem["type"].as_str()), (507, Some("insufficient_storage")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("--min-free-disk-mib"), "{problem}");
    let r = server.client.get(server.url("/readyz")).send().await.unwrap();
    let (status, problem) = status_and_problem(r).await;
    assert_eq!((status, problem["type"].as_str()), (503, Some("insufficient_storage")), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_capped_in_number_and_in_bytes_per_job() {
    let server = Server::start_with(|c| c.max_job_checkpoint_mib = 10).await;
    let mut job = synthetic_job(1);
    job["checkpoint"]["keep_last"] = json!(21);
    let r = server.client.post(server.url("/jobs")).json(&job).send().await.unwrap();
    let (status, problem) = status_and_problem(r).await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "checkpoint.keep_last", "{problem}");
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("between 1 and 20"), "{problem}");

    // 5.8 M parameters with Adam: 70 MB a checkpoint, far over 10 MiB for three.
    let big = json!({"model": {"kind": "mlp_bn", "hidden": [2048, 2048]}, "data": {"dataset": "synthetic_images"},
                     "training": {"optimizer": {"kind": "adam", "lr": 0.001}}});
    let r = server.client.post(server.url("/jobs")).json(&big).send().await.unwrap();
    let (status, problem) = status_and_problem(r).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "checkpoint.keep_last", "{problem}");
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("--max-job-checkpoint-mib"), "{problem}");
    // The small job fits.
    let r = server.client.post(server.url("/jobs")).json(&synthetic_job(1)).send().await.unwrap();
    assert_eq!(r.status(), 201);
}

/// The `/metrics` text of an open server, and how many series it holds.
async fn scrape(server: &Server) -> (String, usize) {
    let text = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    (text, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_do_not_become_prometheus_series() {
    let server = Server::start().await;
    let send = |method: String, path: &'static str| {
        let server = &server;
        async move {
            let (status, _, problem) =
                crate::common::head_only(server, &format!("{method} {path} HTTP/1.1")).await;
            assert!([404, 405].contains(&status), "{method:.20} {path}: {status} {problem}");
        }
    };
    for n in 0..3 {
        send(format!("BREW{n}"), "/jobs").await;
        send(format!("BREW{n}"), "/no/such/route").await;
    }
    scrape(&server).await;
    let (before_text, before) = scrape(&server).await;
    for n in 0..100 {
        send(format!("MADEUP{n}"), "/jobs").await;
        send(format!("NOWHERE{n}"), "/no/such/route").await;
    }
    send("X".repeat(5000), "/jobs").await;
    let (after_text, after) = scrape(&server).await;
    assert_eq!(before, after, "series grew:\n{before_text}\n---\n{after_text}");
    for made_up in ["BREW", "MADEUP", "NOWHERE", "XXXX"] {
        assert!(!after_text.contains(made_up), "{made_up} is a label:\n{after_text}");
    }
    assert!(after_text.len() < before_text.len() + 200, "{} -> {}", before_text.len(), after_text.len());
    let other = r#"method="other",route="/jobs",status="405"} 104"#;
    let counted = |l: &&str| l.starts_with("kiln_http_requests_total{replica=") && l.ends_with(other);
    assert!(after_text.lines().any(|l| counted(&l)), "{after_text}");
}

/// A `kiln serve` child bound to `bind`, whose log lines (stdout) are kept.
struct Logged {
    child: std::process::Child,
    base: String,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Logged {
    fn spawn(data_dir: &std::path::Path, bind: &str, env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
        command.args(["serve", "--bind", bind, "--wgpu", "false", "--data-dir"]).arg(data_dir);
        for name in ["KILN_API_KEY", "KILN_API_KEYS_FILE", "KILN_NO_AUTH", "KILN_BIND"] {
            command.env_remove(name);
        }
        command.envs(env.iter().copied()).env("KILN_LOG", "info").env("NO_COLOR", "1");
        let mut child = command.stdout(std::process::Stdio::piped()).spawn().expect("spawn kiln");
        let stdout = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let port = addr.split_whitespace().next().unwrap().rsplit(':').next().unwrap();
                    let _ = tx.send(port.to_string());
                }
                kept.lock().unwrap().push(line);
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(60)).expect("kiln printed its address");
        Self { child, base: format!("http://127.0.0.1:{port}"), lines }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_api_key_file_open_to_others_is_made_0600_with_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = kiln::keys::generated_key_path(dir.path());
    let token = kiln::keys::generate_token();
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Bound to every address, without a configured key: the key in the file guards the API.
    let server = Logged::spawn(dir.path(), "0.0.0.0:0", &[]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", server.log());
    let client = reqwest::Client::new();
    assert_eq!(client.get(server.url("/jobs")).send().await.unwrap().status(), 401);
    let r = client.get(server.url("/jobs")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200, "the kept key is still the key");
    let log = server.log();
    let warned = log.lines().any(|l| l.contains(" WARN ") && l.contains("0600") && l.contains("was=0644"));
    assert!(warned, "no warning about the file's mode:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_refusals_are_not_logged_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A floor no disk meets: submits and uploads answer 507, readiness 503.
    let floor = (u64::MAX >> 21).to_string();
    let server = Logged::spawn(dir.path(), "127.0.0.1:0", &[("KILN_MIN_FREE_DISK_MIB", floor.as_str())]);
    let client = reqwest::Client::new();
    let r = client.post(server.url("/jobs")).json(&synthetic_job(1)).send().await.unwrap();
    assert_eq!(r.status(), 507);
    let r = client.post(server.url("/datasets")).header("content-type", "text/plain").body("some text");
    assert_eq!(r.send().await.unwrap().status(), 507);
    assert_eq!(client.get(server.url("/readyz")).send().await.unwrap().status(), 503);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.log();
    assert!(log.contains("kiln listening"), "the log is read: {log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "refusals logged as errors:\n{}", errors.join("\n"));
}
