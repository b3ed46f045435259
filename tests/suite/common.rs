//! Test support: a real kiln server on 127.0.0.1:0 with a temporary data dir, in this process
//! or as a separate `kiln` process (for kill -9 and SIGTERM tests).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A server running inside the test process.
pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Starts a server with default config over a fresh data dir, as changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut kiln::Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, tweak).await
    }

    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server keeping its records in `db`, as changed by `tweak`.
    pub async fn start_on(db: &Db, tweak: impl FnOnce(&mut kiln::Config)) -> Self {
        Self::start_with(|config| {
            db.apply(config);
            tweak(config)
        })
        .await
    }

    /// Starts a server over an existing data dir.
    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut kiln::Config)) -> Self {
        let mut config = kiln::Config::with_data_dir(dir.path());
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            kiln::serve(listener, config, async move {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        let server = Self { base, client: reqwest::Client::new(), dir, stop: Some(tx), task: Some(task) };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // Alive is enough: a test may start a server that is deliberately not ready.
            if let Ok(r) = self.client.get(self.url("/healthz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server at {} never became ready", self.base);
    }

    /// Shuts the server down gracefully and returns its data dir.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.expect("server task");
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// The database a test server keeps its records in: SQLite in its data dir (the default), or a
/// PostgreSQL database of its own on `$KILN_TEST_DATABASE_URL`'s server (`scripts/test` starts a
/// throwaway one), dropped with this value.
pub enum Db {
    Sqlite,
    Postgres { server: String, name: String },
}

impl Db {
    /// A new, empty PostgreSQL database.
    pub fn postgres() -> Self {
        let server = std::env::var("KILN_TEST_DATABASE_URL").unwrap_or_else(|_| {
            panic!("KILN_TEST_DATABASE_URL is unset: a PostgreSQL server to make databases on (scripts/test starts one)")
        });
        let server = server.trim_end_matches('/').to_string();
        let name = format!("kiln_suite_{}", uuid::Uuid::new_v4().simple());
        postgres_admin(&server, &format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("{e}"));
        Db::Postgres { server, name }
    }

    /// `--database-url` for a server on this database, if not the default.
    pub fn url(&self) -> Option<String> {
        match self {
            Db::Sqlite => None,
            Db::Postgres { server, name } => Some(format!("{server}/{name}")),
        }
    }

    pub fn apply(&self, config: &mut kiln::Config) {
        config.database_url = self.url().map(|url| url.parse().unwrap());
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Postgres { server, name } = self {
            // Best effort: a failed test is not to be turned into an abort here.
            let _ = postgres_admin(server, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Runs `sql` on `server`'s `postgres` database, on a thread of its own (the client may not block
/// inside the test's runtime).
fn postgres_admin(server: &str, sql: &str) -> Result<(), String> {
    let url = format!("{server}/postgres");
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)
                .map_err(|e| format!("cannot reach the test PostgreSQL at {server}: {e}"))?;
            client.batch_execute(sql).map_err(|e| format!("{sql}: {e}"))
        })
        .join()
        .unwrap_or_else(|_| Err(format!("{sql}: the thread panicked")))
    })
}

/// Makes the async test `$name(db: &Db)` two tests, `$name::sqlite` and `$name::postgres`. The
/// runtime (and with it the server, whose shutdown waits for its workers) ends before the
/// database is dropped.
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            fn run(db: $crate::common::Db) {
                let runtime =
                    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
                runtime.unwrap().block_on(super::$name(&db));
            }

            #[test]
            fn sqlite() {
                run($crate::common::Db::Sqlite)
            }

            #[test]
            fn postgres() {
                run($crate::common::Db::postgres())
            }
        }
    };
}
pub(crate) use on_both_databases;

/// A `kiln` process.
pub struct Process {
    pub child: Child,
    pub base: String,
    pub client: reqwest::Client,
}

impl Process {
    /// Runs the `kiln` binary on `data_dir`, binding port 0, and reads the bound address from
    /// its log.
    pub fn spawn(data_dir: &Path) -> Self {
        Self::spawn_with_env(data_dir, &[])
    }

    /// [`Process::spawn`] with environment variables removed (`None`) or set.
    pub fn spawn_with_env(data_dir: &Path, env: &[(&str, Option<&str>)]) -> Self {
        Self::try_spawn_with_env(data_dir, env).unwrap_or_else(|printed| panic!("kiln exited:\n{printed}"))
    }

    /// [`Process::spawn_with_env`], or what kiln wrote to stderr if it exited instead of serving.
    pub fn try_spawn_with_env(data_dir: &Path, env: &[(&str, Option<&str>)]) -> Result<Self, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let mut child = command
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("KILN_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kiln");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(addr) = line.split("addr=").nth(1) {
                        let addr: String = addr.chars().take_while(|c| !c.is_whitespace()).collect();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        // Passed on to the test's stderr as it comes, and kept for a start that fails.
        let stderr = child.stderr.take().unwrap();
        let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let keep = printed.clone();
        let forwarding = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                keep.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => Ok(Self { child, base: format!("http://{addr}"), client: reqwest::Client::new() }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().expect("reap kiln");
                let _ = forwarding.join();
                let printed = printed.lock().unwrap().clone();
                Err(format!("{status}: {printed}"))
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// Sends SIGTERM and waits for the exit, returning how long it took.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM").success();
        assert!(ok, "kill -TERM {pid}");
        let status = self.child.wait().expect("wait");
        (status, started.elapsed())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small LeNet-BN job on generated images.
pub fn synthetic_job(epochs: u32) -> Value {
    json!({
        "name": "synthetic lenet",
        "model": {"kind": "lenet_bn"},
        "data": {"dataset": "synthetic_images", "train_size": 1200, "test_size": 300, "seed": 3},
        "training": {"epochs": epochs, "batch_size": 64, "seed": 7,
                     "optimizer": {"kind": "sgd", "lr": 0.5}, "log_every": 2},
        "checkpoint": {"every": 1, "keep_last": 2}
    })
}

/// POSTs a job, asserting 201, returning its body.
pub async fn submit(client: &reqwest::Client, base: &str, job: &Value) -> Value {
    let r = client.post(format!("{base}/jobs")).json(job).send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "submit failed: {body}");
    body
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let r = client.get(url).send().await.unwrap();
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.json().await.unwrap()
}

/// Polls a job until `done(job)` holds or `timeout` passes.
pub async fn wait_for(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let job = get_json(client, &format!("{base}/jobs/{id}")).await;
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "timed out waiting on job {id}: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a job is finished (succeeded, failed or cancelled).
pub async fn wait_finished(client: &reqwest::Client, base: &str, id: &str, timeout: Duration) -> Value {
    wait_for(client, base, id, timeout, |j| {
        matches!(j["status"].as_str(), Some("succeeded" | "failed" | "cancelled"))
    })
    .await
}

/// The data dir path of a job's checkpoints.
pub fn checkpoints_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("jobs").join(id).join("checkpoints")
}

/// The directory of job `id`'s checkpoint at `step`: `step-<step>-<claim>`, the claim being the
/// run's that wrote it. Fails unless exactly one run wrote that step.
pub fn checkpoint_at_step(data_dir: &Path, id: &str, step: u64) -> PathBuf {
    let prefix = format!("step-{step:010}-");
    let mut found = std::fs::read_dir(checkpoints_dir(data_dir, id))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&prefix));
    let dir = found.next().unwrap_or_else(|| panic!("no checkpoint of step {step} on disk"));
    assert!(found.next().is_none(), "one run wrote step {step}");
    dir
}

/// Sends `head` (a request line and headers, without the blank line) over a raw connection and
/// none of the body it may declare, and reads the answer: status, headers (names lower-cased)
/// and body. For limits that must be answered before a body is read.
pub async fn head_only(server: &Server, head: &str) -> (u16, Vec<(String, String)>, Value) {
    let addr = server.base.trim_start_matches("http://").to_string();
    let head = head.to_string();
    tokio::task::spawn_blocking(move || raw_exchange(&addr, &head)).await.unwrap()
}

fn raw_exchange(addr: &str, head: &str) -> (u16, Vec<(String, String)>, Value) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(format!("{head}\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    read_answer(&mut stream)
}

/// Reads one answer from a raw connection (within 10 s): status, headers (names lower-cased)
/// and JSON body.
pub fn read_answer(stream: &mut std::net::TcpStream) -> (u16, Vec<(String, String)>, Value) {
    use std::io::Read;
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let mut read = |raw: &mut Vec<u8>| {
        let n = stream.read(&mut buf).expect("the server answers without waiting for the body");
        assert!(n > 0, "connection closed before a full answer: {}", String::from_utf8_lossy(raw));
        raw.extend_from_slice(&buf[..n]);
    };
    let end = loop {
        read(&mut raw);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let text = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .expect("a sized answer");
    while raw.len() < end + 4 + length {
        read(&mut raw);
    }
    (status, headers, serde_json::from_slice(&raw[end + 4..end + 4 + length]).unwrap())
}

/// A client that sends `key` as its bearer token with every request.
pub fn authorized(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}
