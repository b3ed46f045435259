//! The dashboard in a real browser: Debian's chromium, headless, driven over WebDriver by
//! chromedriver (plain HTTP, spoken here with reqwest), against a real server with an API key
//! while jobs train. The page asks for the key; the jobs table lists the jobs and follows them
//! over the server-wide event stream (a new job and a status change show within seconds, with
//! no second `GET /jobs`); the job page's loss chart gains points, a classifier's epoch axis says
//! loss and accuracy and a language model's perplexity, a finished job shows no error row, table
//! headers sit over their columns' alignment and a checkpoint's download, clicked, saves the file
//! the API lists with its SHA-256; the compare view draws one series per chosen job; a language
//! model's box generates text; an image dropped on a classifier's box shows what `/predict`
//! answers for it; "Forget key" leaves nothing of what the key read. `/favicon.ico` is served
//! without the key. Where no event stream can be opened, the table polls instead. A screenshot
//! of the compare view is saved under the test binary's
//! temporary directory (`target/tmp/dashboard-compare.png`). The browser ends with the test, its
//! WebDriver session first, then chromedriver, then any process of theirs still left.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{get_json, submit, synthetic_job};
use crate::security::{WRITER, keyed_server};

/// The key WebDriver's element references are sent under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Records the URL of every `fetch` the page makes in `window.fetched`, from before the page's
/// own scripts run.
const RECORD_FETCHES: &str = "window.fetched = []; const kilnFetch = window.fetch; \
    window.fetch = function (input, init) { window.fetched.push(String(input && input.url || input)); \
    return kilnFetch.apply(this, arguments); };";

/// A chromedriver process and one browser session in it.
struct Browser {
    driver: Child,
    http: reqwest::Client,
    port: u16,
    id: String,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    /// Whether the session was ended (by [`Browser::close`]).
    closed: bool,
    downloads: tempfile::TempDir,
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
        let downloads = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1400,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let prefs = json!({"download.default_directory": downloads.path(),
            "download.prompt_for_download": false});
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": chromium(), "args": args, "prefs": prefs}}}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("{created}")).to_string();
        let session = format!("{base}/session/{id}");
        let browser = Self { driver, http, port, id, session, closed: false, downloads, _profile: profile };
        let path = browser.downloads.path().display().to_string();
        browser.cdp("Page.setDownloadBehavior", json!({"behavior": "allow", "downloadPath": path})).await;
        browser.cdp("Page.addScriptToEvaluateOnNewDocument", json!({"source": RECORD_FETCHES})).await;
        browser
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        let r = self.http.post(format!("{}{path}", self.session)).json(&body).send().await.unwrap();
        let answer: Value = r.json().await.unwrap();
        assert!(answer["value"]["error"].is_null(), "WebDriver {path}: {answer}");
        answer["value"].clone()
    }

    /// A Chrome DevTools Protocol command, through chromedriver.
    async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.command("/goog/cdp/execute", json!({"cmd": cmd, "params": params})).await
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
        self.wait_within(Duration::from_secs(90), what, script).await
    }

    /// [`Browser::wait_for`], failing after `limit`.
    async fn wait_within(&self, limit: Duration, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.eval(script).await;
            if !value.is_null() && value != json!(false) {
                return value;
            }
            assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Clicks the element `css` selects, as a user would.
    async fn click(&self, css: &str) {
        let found = self.command("/element", json!({"using": "css selector", "value": css})).await;
        let element = found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}"));
        self.command(&format!("/element/{element}/click"), json!({})).await;
    }

    /// The browser's console messages since the last call.
    async fn console(&self) -> Vec<Value> {
        self.command("/se/log", json!({"type": "browser"})).await.as_array().cloned().unwrap_or_default()
    }

    async fn screenshot(&self) -> Vec<u8> {
        let r = self.http.get(format!("{}/screenshot", self.session)).send().await.unwrap();
        let encoded = r.json::<Value>().await.unwrap()["value"].as_str().unwrap().to_string();
        base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()
    }

    /// The file the browser saved in its download directory, once it is complete.
    async fn downloaded(&self) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done: Vec<PathBuf> = std::fs::read_dir(self.downloads.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "bpk"))
                .collect();
            if let [file] = done.as_slice() {
                return file.clone();
            }
            assert!(done.len() <= 1, "one download, not {done:?}");
            assert!(Instant::now() < deadline, "the download never completed");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Ends the WebDriver session (chromedriver then quits chromium) and checks that no
    /// process chromedriver started is left; [`Drop`] then stops chromedriver.
    async fn close(mut self) {
        let started = descendants(self.driver.id());
        assert!(!started.is_empty(), "chromedriver runs a browser");
        let r = self.http.delete(&self.session).send().await.unwrap();
        assert!(r.status().is_success(), "ending the WebDriver session: {}", r.status());
        self.closed = true;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left: Vec<_> = started.iter().filter(|p| p.alive()).collect();
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "the browser outlived its session: {left:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    /// On every path, a panicking test's too: the session ends (a blocking request: no runtime
    /// is needed in a drop), then chromedriver, then whatever it started that is still there.
    fn drop(&mut self) {
        let started = descendants(self.driver.id());
        if !self.closed {
            end_session(self.port, &self.id);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        for process in started.iter().filter(|p| p.alive()) {
            // SAFETY: kill(2) on a pid that is still the process we saw (same start time).
            unsafe { libc::kill(process.pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// `DELETE /session/{id}` over a plain socket, best effort.
fn end_session(port: u16, id: &str) {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let request = format!(
        "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

/// A process, told from a later one with the same pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Process {
    pid: u32,
    start: u64,
}

impl Process {
    /// Whether it still runs (a zombie waiting for its parent does not).
    fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|(state, _, start)| start == self.start && state != 'Z')
    }
}

/// State, parent pid and start time of process `pid`, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name, in parentheses, may hold spaces: the fields after its last ')' are fixed.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((state, fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

/// Every running process below `root`.
fn descendants(root: u32) -> Vec<Process> {
    let all: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pid| {
            stat(pid).filter(|(state, _, _)| *state != 'Z').map(|(_, ppid, start)| (pid, ppid, start))
        })
        .collect();
    let mut found: Vec<Process> = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for &(pid, ppid, start) in &all {
            if ppid == parent && !found.iter().any(|p| p.pid == pid) {
                found.push(Process { pid, start });
                parents.push(pid);
            }
        }
    }
    found
}

/// How many points the chart on canvas `id` draws (the page keeps it in `data-points`).
fn points(id: &str) -> String {
    format!(
        "const c = document.getElementById('{id}'); return c && c.dataset.points ? Number(c.dataset.points) : null;"
    )
}

/// The title of axis `axis` of the chart on canvas `id`.
fn axis_title(id: &str, axis: &str) -> String {
    format!(
        "const c = Chart.getChart(document.getElementById('{id}')); \
         const a = c && c.options.scales['{axis}']; return a ? a.title.text : null;"
    )
}

/// Every table of the view whose header's alignment differs from its column's cells', and how
/// many body rows the tables have.
const MISALIGNED: &str = "const bad = []; let rows = 0;
    for (const table of document.querySelectorAll('#view table')) {
      const heads = table.querySelectorAll('thead th');
      for (const tr of table.querySelectorAll('tbody tr')) {
        rows++;
        tr.querySelectorAll('td').forEach((td, i) => {
          const th = heads[i];
          const a = th ? getComputedStyle(th).textAlign : 'none', b = getComputedStyle(td).textAlign;
          if (a !== b) bad.push(`${table.id} column ${i} (${th ? th.textContent : 'no header'}): ${a} over ${b}`);
        });
      }
    }
    return {rows, bad};";

/// Checks that the tables of the view have rows and every header is aligned as its column.
async fn assert_aligned(browser: &Browser, view: &str) {
    let tables = browser.eval(MISALIGNED).await;
    assert!(tables["rows"].as_u64().unwrap() > 0, "{view}: no table rows");
    assert_eq!(tables["bad"], json!([]), "{view}: headers not aligned with their columns");
}

/// The status the jobs table shows for job `id`, once it is `status`.
fn row_status(id: &str, status: &str) -> String {
    format!(
        "const r = document.querySelector('tr[data-id=\"{id}\"] .status'); return r !== null && r.textContent === '{status}';"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_jobs_live_curves_and_a_comparison_in_a_real_browser() {
    let (mut server, _) = keyed_server().await;
    let base = server.base.clone();
    let base = base.as_str();

    // Browsers ask for /favicon.ico on their own: it is served without the key.
    let r = reqwest::get(format!("{base}/favicon.ico")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/x-icon");
    assert!(r.bytes().await.unwrap().starts_with(&[0, 0, 1, 0]), "an ICO file");

    server.client = crate::common::authorized(WRITER);
    let c = &server.client;
    // A layer list (the batch-normalization chapter's small network at 28 pixels): its page
    // shows its layers.
    let mut quick = synthetic_job(2);
    quick["name"] = json!("seed network quick");
    quick["model"] = json!({"kind": "sequential", "layers": [
        {"conv2d": {"out": 6, "kernel": 5}}, {"batch_norm": {}}, {"sigmoid": {}},
        {"avg_pool2d": {"kernel": 2, "stride": 2}}, {"flatten": {}},
        {"linear": {"out": 32}}, {"batch_norm": {}}, {"sigmoid": {}}, {"linear": {"out": 10}}
    ]});
    let done = submit(c, base, &quick).await["id"].as_str().unwrap().to_string();
    let mut long = synthetic_job(200);
    long["name"] = json!("lenet-bn long");
    long["data"]["train_size"] = json!(5000);
    long["training"]["log_every"] = json!(1);
    let training = submit(c, base, &long).await["id"].as_str().unwrap().to_string();

    let browser = Browser::start().await;
    browser.open(&format!("{base}/#/")).await;
    browser
        .wait_for("the form asking for a key", "return !document.getElementById('key-form').hidden;")
        .await;
    browser.eval(&format!("document.getElementById('key').value = '{WRITER}';")).await;
    browser.click("#key-form button").await;
    for id in [&done, &training] {
        let row = format!("return document.querySelector('tr[data-id=\"{id}\"]') !== null;");
        browser.wait_for("the jobs table to list the job", &row).await;
    }

    // The table follows the server-wide stream: a new job shows, and its cancel, in less
    // than the 30 s of the fallback poll, and the page read GET /jobs once.
    browser
        .wait_for("the event stream", "return document.getElementById('jobs').dataset.live === 'events';")
        .await;
    let mut third = synthetic_job(200);
    third["name"] = json!("lenet-bn cancelled");
    let third = submit(c, base, &third).await["id"].as_str().unwrap().to_string();
    let row = format!("return document.querySelector('tr[data-id=\"{third}\"]') !== null;");
    browser.wait_within(Duration::from_secs(20), "a new job's row", &row).await;
    let r = c.post(format!("{base}/jobs/{third}/cancel")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    browser.wait_within(Duration::from_secs(20), "its cancel", &row_status(&third, "cancelled")).await;
    let fetched = browser.eval("return window.fetched;").await;
    let fetched: Vec<&str> = fetched.as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
    assert!(fetched.contains(&"/events"), "the page follows GET /events: {fetched:?}");
    let lists = fetched.iter().filter(|u| u.starts_with("/jobs?")).count();
    assert_eq!(lists, 1, "one GET /jobs, then events: {fetched:?}");
    assert_aligned(&browser, "the jobs table").await;

    // A finished classifier: its epochs on a loss and an accuracy axis, no error row, its
    // checkpoints by epoch, and the file its download link saves.
    let finished = crate::common::wait_finished(c, base, &done, Duration::from_secs(300)).await;
    assert_eq!(finished["status"], "succeeded");
    browser.open(&format!("{base}/#/jobs/{done}")).await;
    let checkpoints = get_json(c, &format!("{base}/jobs/{done}/checkpoints")).await;
    let checkpoints = checkpoints.as_array().unwrap().clone();
    let rows = format!(
        "return document.querySelectorAll('#checkpoints tbody tr').length === {};",
        checkpoints.len()
    );
    browser.wait_for("the job's checkpoints", &rows).await;
    let epochs = browser
        .eval("return [...document.querySelectorAll('#checkpoints tbody tr')].map(r => Number(r.cells[0].textContent));")
        .await;
    let listed: Vec<Value> = checkpoints.iter().map(|c| c["epoch"].clone()).collect();
    assert_eq!(epochs, json!(listed), "the first column is the epoch");
    browser.wait_for("the epoch chart's points", &points("epoch-chart")).await;
    assert_eq!(browser.eval(&axis_title("epoch-chart", "y")).await, "loss");
    assert_eq!(browser.eval(&axis_title("epoch-chart", "accuracy")).await, "accuracy");
    assert_eq!(browser.eval("return document.getElementById('error') === null;").await, true, "no error row");
    let layers = browser
        .eval("return [...document.querySelectorAll('#layers tbody tr')].map(r => [r.cells[1].textContent, r.cells[2].textContent, r.cells[3].textContent]);")
        .await;
    let shown: Vec<Value> = finished["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let output: Vec<String> = l["output"].as_array().unwrap().iter().map(|d| d.to_string()).collect();
            let parameters = l["parameters"].as_u64().unwrap();
            json!([
                l["kind"],
                output.join("×"),
                if parameters >= 1000 {
                    format!("{},{:03}", parameters / 1000, parameters % 1000)
                } else {
                    parameters.to_string()
                }
            ])
        })
        .collect();
    assert_eq!(layers, json!(shown), "the layer table is the job's layers");
    assert_eq!(layers[0], json!(["conv2d", "6×24×24", "156"]));
    assert_aligned(&browser, "the checkpoints and layers tables").await;
    let newest = checkpoints.last().unwrap();
    browser.click(&format!("#checkpoints a[data-checkpoint=\"{}\"]", newest["id"])).await;
    let file = browser.downloaded().await;
    let digest = format!("{:x}", Sha256::digest(std::fs::read(&file).unwrap()));
    assert_eq!(digest, newest["sha256"].as_str().unwrap(), "{} is the checkpoint listed", file.display());

    // An image dropped on the predict box: the table shows what /predict answers for it.
    let image = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((x * 9 + y * 5) % 256) as u8]));
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let hex: String = png.iter().map(|b| format!("{b:02x}")).collect();
    let drop = format!(
        "const bytes = new Uint8Array('{hex}'.match(/../g).map(h => parseInt(h, 16))); \
         const dt = new DataTransfer(); dt.items.add(new File([bytes], 'shoe.png', {{type: 'image/png'}})); \
         document.getElementById('drop').dispatchEvent(new DragEvent('drop', {{dataTransfer: dt, bubbles: true, cancelable: true}}));"
    );
    browser.eval(&drop).await;
    let rows = "const rows = [...document.querySelectorAll('#predicted tbody tr')]; \
                return rows.length === 5 && rows[0].cells.length === 2 ? rows.map(r => r.cells[0].textContent) : null;";
    let shown = browser.wait_for("the dropped image's classes", rows).await;
    let r = c.post(format!("{base}/jobs/{done}/predict")).header("content-type", "image/png").body(png);
    let answer: Value = r.send().await.unwrap().json().await.unwrap();
    let top = answer["predictions"][0]["top"].as_array().unwrap();
    assert_eq!(shown, json!(top.iter().map(|t| t["class"].clone()).collect::<Vec<_>>()), "{answer}");

    browser.open(&format!("{base}/#/jobs/{training}")).await;
    let first = browser.wait_for("the loss chart's first points", &points("step-chart")).await;
    let grows = format!("return Number(document.getElementById('step-chart').dataset.points) > {first};");
    browser.wait_for("the loss chart to grow while the job trains", &grows).await;

    browser.open(&format!("{base}/#/compare?ids={done},{training}")).await;
    let series = "const c = document.getElementById('compare-steps'); return c && c.dataset.series === '2';";
    browser.wait_for("two series in the compare view", series).await;
    browser.wait_for("epoch points in the compare view", &points("compare-epochs")).await;
    assert_eq!(browser.eval(&axis_title("compare-epochs", "y")).await, "loss");
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a screenshot with something drawn");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-compare.png");
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {}", path.display());

    let r = c.post(format!("{base}/jobs/{training}/cancel")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A language model's page: perplexity on its epoch axis, its checkpoints, generation.
    let language = json!({"model": {"kind": "rnn_lm", "cell": "gru", "hidden": 32},
        "data": {"dataset": "synthetic_text", "chars": 4000, "num_steps": 10},
        "training": {"epochs": 2, "batch_size": 16}, "checkpoint": {"every": 1}});
    let lm = submit(c, base, &language).await["id"].as_str().unwrap().to_string();
    crate::common::wait_finished(c, base, &lm, Duration::from_secs(120)).await;
    browser.open(&format!("{base}/#/jobs/{lm}")).await;
    let listed = "return document.querySelectorAll('#checkpoints a[data-checkpoint]').length >= 1;";
    browser.wait_for("the checkpoints with their download links", listed).await;
    browser.wait_for("the epoch chart's points", &points("epoch-chart")).await;
    assert_eq!(browser.eval(&axis_title("epoch-chart", "y")).await, "perplexity");
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

    // "Forget key": the form asks again, empty, and nothing the key read stays on screen.
    browser.click("#forget-key").await;
    let forgotten = "return !document.getElementById('key-form').hidden \
        && document.getElementById('key').value === '' \
        && document.getElementById('view').children.length === 0 \
        && !document.querySelector('#checkpoints, #generated, #step-chart, #jobs');";
    browser.wait_within(Duration::from_secs(10), "a page with nothing of the key's", forgotten).await;

    let errors: Vec<Value> = browser
        .console()
        .await
        .into_iter()
        .filter(|m| m["message"].as_str().is_some_and(|t| t.contains("favicon")))
        .collect();
    assert_eq!(errors, Vec::<Value>::new(), "no console message about the favicon");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_table_polls_while_the_event_stream_cannot_be_opened() {
    // No slot for an event stream: GET /events answers 503, and the table lists the jobs anyway.
    let server = crate::common::Server::start_with(|c| c.max_event_streams = 0).await;
    let base = server.base.as_str();
    let id = submit(&server.client, base, &synthetic_job(1)).await["id"].as_str().unwrap().to_string();
    let browser = Browser::start().await;
    browser.open(&format!("{base}/#/")).await;
    let row = format!("return document.querySelector('tr[data-id=\"{id}\"]') !== null;");
    browser.wait_for("the jobs table to list the job", &row).await;
    let polling = "return document.getElementById('jobs').dataset.live === 'polling' \
        && document.getElementById('live').textContent.includes('every 30 s');";
    browser.wait_for("the table to say it polls", polling).await;
    browser.close().await;
}

/// The browser binary: Debian's chromium, or `$KILN_CHROMIUM`.
fn chromium() -> String {
    std::env::var("KILN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}
