//! Watching every job at once, over real HTTP: `GET /events` (two jobs' events on one stream in
//! the order of their ids, the same events as the jobs' own streams; reconnects; deletions; keys,
//! a bad `Last-Event-ID`, the cap, keep-alives, the end at shutdown) and `kiln jobs --watch`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use kiln::client::sse::{SseEvent, SseReader};
use serde_json::{Value, json};

use crate::common::{Db, Server, on_both_databases, submit, synthetic_job, wait_finished};
use crate::security::{WRITER, keyed_server};
use crate::watch::{data, ids, read_events};

/// An open `GET /events` and what of it has been read.
struct Open {
    response: reqwest::Response,
    reader: SseReader,
}

/// Opens `GET /events` (after `last_id`, if given), asserting it is an event stream.
async fn open(client: &reqwest::Client, base: &str, last_id: Option<&str>) -> Open {
    let mut request = client.get(format!("{base}/events"));
    if let Some(last) = last_id {
        request = request.header("Last-Event-ID", last);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    Open { response, reader: SseReader::default() }
}

impl Open {
    /// Reads on until `enough` holds for the events read by this call; fails after two minutes,
    /// or if the stream ends first. Returns the events and the raw text.
    async fn until(&mut self, enough: impl Fn(&[SseEvent]) -> bool) -> (Vec<SseEvent>, String) {
        let (mut events, mut raw) = (Vec::new(), String::new());
        let read = async {
            while !enough(&events) {
                let chunk = self.response.chunk().await.unwrap().expect("the stream goes on");
                raw.push_str(&String::from_utf8_lossy(&chunk));
                events.extend(self.reader.feed(&chunk));
            }
        };
        tokio::time::timeout(Duration::from_secs(120), read).await.expect("the events in time");
        (events, raw)
    }
}

/// Whether `events` hold job `id`'s final `succeeded` status.
fn succeeded(events: &[SseEvent], id: &str) -> bool {
    events.iter().any(|e| data(e) == json!({"job": id, "status": "succeeded"}))
}

/// `events` of job `id`, as that job's own stream sends them: the `job` field taken out.
fn of_job(events: &[SseEvent], id: &str) -> Vec<SseEvent> {
    let mine = events.iter().filter(|e| data(e)["job"] == id);
    let without = mine.map(|e| {
        let mut body = data(e);
        body.as_object_mut().unwrap().remove("job");
        SseEvent { data: body.to_string(), ..e.clone() }
    });
    without.collect()
}

/// Job `id`'s whole stream, its bodies reserialized as [`of_job`]'s are.
async fn own_stream(client: &reqwest::Client, base: &str, id: &str) -> Vec<SseEvent> {
    let events = read_events(client, base, id, None, None).await;
    events.into_iter().map(|e| SseEvent { data: data(&e).to_string(), ..e }).collect()
}

/// A job that logs every step.
fn chatty(epochs: u32) -> Value {
    let mut job = synthetic_job(epochs);
    job["training"]["log_every"] = json!(1);
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_events_arrive_on_one_stream_in_order_as_their_own_streams_send_them() {
    let server = Server::start_with(|c| c.workers = 2).await;
    let (c, base) = (&server.client, server.base.as_str());
    let before = submit(c, base, &synthetic_job(1)).await["id"].as_str().unwrap().to_string();
    wait_finished(c, base, &before, Duration::from_secs(120)).await;

    let mut stream = open(c, base, None).await;
    let a = submit(c, base, &chatty(2)).await["id"].as_str().unwrap().to_string();
    let b = submit(c, base, &chatty(1)).await["id"].as_str().unwrap().to_string();
    let (events, _) = stream.until(|e| succeeded(e, &a) && succeeded(e, &b)).await;

    let ids = ids(&events);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase over both jobs: {ids:?}");
    assert!(events.iter().all(|e| data(e)["job"] != before.as_str()), "nothing from before it opened");
    for id in [&a, &b] {
        let mine = of_job(&events, id);
        assert_eq!(data(&mine[0]), json!({"status": "queued"}), "a new job shows up at once");
        assert_eq!(data(&mine[1])["status"], "running");
        assert!(data(&mine[1])["backend"].as_str().unwrap().starts_with("cpu"));
        assert!(mine.iter().any(|e| e.event == "step") && mine.iter().any(|e| e.event == "epoch"));
        assert_eq!(mine, own_stream(c, base, id).await, "job {id}: the same ids, kinds and bodies");
    }
    let first = |id: &str| events.iter().position(|e| data(e)["job"] == id).unwrap();
    assert!(first(&a) < first(&b), "submitted first, seen first");
}

on_both_databases!(
    a_reconnect_with_last_event_id_gives_each_event_once_and_deletions_come_live_without_an_id
);
async fn a_reconnect_with_last_event_id_gives_each_event_once_and_deletions_come_live_without_an_id(db: &Db) {
    let server = Server::start_on(db, |_| {}).await;
    let (c, base) = (&server.client, server.base.as_str());
    let mut live = open(c, base, None).await;
    let id = submit(c, base, &chatty(2)).await["id"].as_str().unwrap().to_string();

    let mut first = open(c, base, Some("0")).await;
    let (head, _) = first.until(|e| e.len() >= 6).await;
    drop(first);
    let mut second = open(c, base, Some(&head[5].id)).await;
    let (rest, _) = second.until(|e| succeeded(e, &id)).await;
    let joined: Vec<SseEvent> = head[..6].iter().cloned().chain(rest).collect();
    let joined_ids = ids(&joined);
    assert!(joined_ids.windows(2).all(|w| w[0] < w[1]), "each once, in order: {joined_ids:?}");
    assert_eq!(of_job(&joined, &id), own_stream(c, base, &id).await, "the two connections are the whole");
    let (seen, _) = live.until(|e| succeeded(e, &id)).await;
    assert_eq!(seen, joined, "the live stream saw the same");

    let r = c.delete(format!("{base}/jobs/{id}")).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (after, raw) = live.until(|e| e.iter().any(|e| e.event == "deleted")).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(data(&after[0]), json!({"job": id}));
    let deleted = format!("\n\nevent: deleted\ndata: {{\"job\":\"{id}\"}}\n\n");
    assert!(format!("\n\n{raw}").contains(&deleted), "a deletion has no id field: {raw:?}");
    let mut again = open(c, base, Some("0")).await;
    let quiet = tokio::time::timeout(Duration::from_millis(500), again.response.chunk()).await;
    assert!(quiet.is_err(), "a deleted job's events are gone from the store: {quiet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_of_every_job_needs_a_read_key_and_a_good_last_event_id() {
    let (server, reader) = keyed_server().await;
    let (c, base) = (&server.client, server.base.as_str());
    let r = c.get(format!("{base}/events")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = c.get(format!("{base}/events")).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(r.status(), 200, "a read key may watch");
    drop(r);
    for bad in ["x", "-3", "1.5"] {
        let r = c.get(format!("{base}/events")).bearer_auth(WRITER).header("Last-Event-ID", bad);
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 422, "Last-Event-ID {bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let problem: Value = r.json().await.unwrap();
        assert!(problem["detail"].as_str().unwrap().contains("Last-Event-ID"), "{problem}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_of_every_job_shares_the_cap_keeps_alive_and_ends_at_shutdown() {
    let server = Server::start_with(|c| {
        c.max_event_streams = 1;
        c.event_keep_alive_secs = 1;
    })
    .await;
    let (c, base) = (server.client.clone(), server.base.clone());
    let mut open_one = open(&c, &base, None).await;
    let refused = c.get(format!("{base}/events")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let id = submit(&c, &base, &synthetic_job(1)).await["id"].as_str().unwrap().to_string();
    let refused = c.get(format!("{base}/jobs/{id}/events")).send().await.unwrap();
    assert_eq!(refused.status(), 503, "one cap for both kinds of stream");

    let (_, raw) = open_one.until(|e| succeeded(e, &id)).await;
    let mut idle = raw;
    let silence = async {
        while !idle.lines().any(|l| l.starts_with(':')) {
            idle.push_str(&String::from_utf8_lossy(&open_one.response.chunk().await.unwrap().unwrap()));
        }
    };
    tokio::time::timeout(Duration::from_secs(10), silence).await.expect("a keep-alive comment");

    let stopping = tokio::spawn(server.stop());
    let end = async { while let Ok(Some(_)) = open_one.response.chunk().await {} };
    tokio::time::timeout(Duration::from_secs(30), end).await.expect("the stream ends at shutdown");
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiln_jobs_watch_prints_the_table_then_a_line_per_change_until_it_is_stopped() {
    let (server, _) = keyed_server().await;
    let (c, base) = (&server.client, server.base.as_str());
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["jobs", "--watch"])
        .env("KILN_SERVER", base)
        .env("KILN_API_KEY", WRITER)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run kiln");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = lines_tx.send(line.unwrap());
        }
    });
    let mut seen: Vec<String> = Vec::new();
    read_lines(&mut lines, &mut seen, |l| l.starts_with("id ")).await;

    let r = c.post(format!("{base}/jobs")).bearer_auth(WRITER).json(&synthetic_job(1)).send().await.unwrap();
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    read_lines(&mut lines, &mut seen, |l| l.ends_with(&format!("{id} succeeded"))).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let mine: Vec<&str> = seen
        .iter()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, l)| l.starts_with(&id))
        .map(|p| p.1)
        .collect();
    assert_eq!(mine[0], format!("{id} queued"), "{seen:#?}");
    assert!(mine[1].starts_with(&format!("{id} running on cpu")), "{seen:#?}");
    assert!(mine[2].starts_with(&format!("{id} epoch 1/1  train_loss ")), "{seen:#?}");
    assert_eq!(mine.len(), 4, "no line per step or checkpoint: {seen:#?}");
    let time = seen.last().unwrap().split(' ').next().unwrap();
    assert!(time.len() == 20 && time.ends_with('Z'), "each line starts with the time: {time}");
}

/// Reads `lines` into `seen` until one satisfies `done`; fails after two minutes, or if they end.
async fn read_lines(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: &mut Vec<String>,
    done: impl Fn(&str) -> bool,
) {
    let read = async {
        while !seen.last().is_some_and(|l| done(l)) {
            seen.push(lines.recv().await.expect("kiln is still watching"));
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read).await.expect("the line in time");
}
