//! The dashboard in a real browser: Debian's chromium, headless, driven over WebDriver by
//! chromedriver (plain HTTP, spoken here with reqwest), against a real server while jobs train.
//! The jobs table lists the jobs, the job page's loss chart gains points, and the compare view
//! draws one series per chosen job; a language model's page lists its checkpoints and its box
//! generates text. A screenshot of the compare view is saved under the test
//! binary's temporary directory (`target/tmp/dashboard-compare.png`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::common::{Server, submit, synthetic_job};

/// A chromedriver process and one browser session in it.
struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/test installs it)");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1400,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium(), "args": args}}}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session =
            created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("{created}")).to_string();
        Self { driver, http, session: format!("{base}/session/{session}"), _profile: profile }
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        let r = self.http.post(format!("{}{path}", self.session)).json(&body).send().await.unwrap();
        let answer: Value = r.json().await.unwrap();
        assert!(answer["value"]["error"].is_null(), "WebDriver {path}: {answer}");
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command("/url", json!({"url": url})).await;
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    async fn eval(&self, script: &str) -> Value {
        self.command("/execute/sync", json!({"script": script, "args": []})).await
    }

    /// Evaluates `script` until it returns something other than null or false.
    async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let value = self.eval(script).await;
            if !value.is_null() && value != json!(false) {
                return value;
            }
            assert!(Instant::now() < deadline, "waited too long for {what}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn screenshot(&self) -> Vec<u8> {
        let r = self.http.get(format!("{}/screenshot", self.session)).send().await.unwrap();
        let encoded = r.json::<Value>().await.unwrap()["value"].as_str().unwrap().to_string();
        base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// How many points the chart on canvas `id` draws (the page keeps it in `data-points`).
fn points(id: &str) -> String {
    format!(
        "const c = document.getElementById('{id}'); return c && c.dataset.points ? Number(c.dataset.points) : null;"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_jobs_live_curves_and_a_comparison_in_a_real_browser() {
    let server = Server::start().await;
    let (c, base) = (&server.client, server.base.as_str());
    let mut quick = synthetic_job(2);
    quick["name"] = json!("lenet-bn quick");
    let done = submit(c, base, &quick).await["id"].as_str().unwrap().to_string();
    let mut long = synthetic_job(200);
    long["name"] = json!("lenet-bn long");
    long["data"]["train_size"] = json!(5000);
    long["training"]["log_every"] = json!(1);
    let training = submit(c, base, &long).await["id"].as_str().unwrap().to_string();

    let browser = Browser::start().await;
    browser.open(&format!("{base}/#/")).await;
    for id in [&done, &training] {
        let row = format!("return document.querySelector('tr[data-id=\"{id}\"]') !== null;");
        browser.wait_for("the jobs table to list the job", &row).await;
    }

    browser.open(&format!("{base}/#/jobs/{training}")).await;
    let first = browser.wait_for("the loss chart's first points", &points("step-chart")).await;
    let grows = format!("return Number(document.getElementById('step-chart').dataset.points) > {first};");
    browser.wait_for("the loss chart to grow while the job trains", &grows).await;

    browser.open(&format!("{base}/#/compare?ids={done},{training}")).await;
    let series = "const c = document.getElementById('compare-steps'); return c && c.dataset.series === '2';";
    browser.wait_for("two series in the compare view", series).await;
    browser.wait_for("epoch points in the compare view", &points("compare-epochs")).await;
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a screenshot with something drawn");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-compare.png");
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {}", path.display());

    let r = c.post(format!("{base}/jobs/{training}/cancel")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A language model's page lists its checkpoints and generates text from the box.
    let language = json!({"model": {"kind": "rnn_lm", "cell": "gru", "hidden": 32},
        "data": {"dataset": "synthetic_text", "chars": 4000, "num_steps": 10},
        "training": {"epochs": 2, "batch_size": 16}, "checkpoint": {"every": 1}});
    let lm = submit(c, base, &language).await["id"].as_str().unwrap().to_string();
    crate::common::wait_finished(c, base, &lm, Duration::from_secs(120)).await;
    browser.open(&format!("{base}/#/jobs/{lm}")).await;
    let listed = "return document.querySelectorAll('#checkpoints a[data-checkpoint]').length >= 1;";
    browser.wait_for("the checkpoints with their download links", listed).await;
    browser
        .eval(
            "document.getElementById('prefix').value = 'the '; document.getElementById('generate').click();",
        )
        .await;
    let generated = "const t = document.getElementById('generated').value; \
                     return t.length > 50 ? t : null;";
    let text = browser.wait_for("generated text in the box", generated).await;
    // Greedy generation is deterministic: the box shows what the API answers to the same request.
    let body = json!({"prefix": "the ", "max_tokens": 100});
    let r = c.post(format!("{base}/jobs/{lm}/generate")).json(&body).send().await.unwrap();
    let answer: Value = r.json().await.unwrap();
    let expected = format!("{}{}", answer["prompt"].as_str().unwrap(), answer["text"].as_str().unwrap());
    assert_eq!(text.as_str().unwrap(), expected);
}

/// The browser binary: Debian's chromium, or `$KILN_CHROMIUM`.
fn chromium() -> String {
    std::env::var("KILN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}
