//! Watching training live, over real HTTP: the event stream (order, reconnects, many watchers,
//! the end of a finished job's stream, the cap) and the Prometheus scrape.

use std::time::Duration;

use kiln::client::sse::{SseEvent, SseReader};
use serde_json::{Value, json};

use crate::common::{Db, Server, authorized, on_both_databases, submit, synthetic_job, wait_finished};
use crate::security::keyed_server;

/// Reads job `id`'s event stream from `last_id` (none: from the start) until it ends, or until
/// `stop_after` events. Fails if the stream does not end within two minutes.
pub async fn read_events(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    last_id: Option<&str>,
    stop_after: Option<usize>,
) -> Vec<SseEvent> {
    let mut request = client.get(format!("{base}/jobs/{id}/events"));
    if let Some(last) = last_id {
        request = request.header("Last-Event-ID", last);
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut reader = SseReader::default();
    let mut events = Vec::new();
    let read = async {
        while let Some(chunk) = response.chunk().await.unwrap() {
            events.extend(reader.feed(&chunk));
            if stop_after.is_some_and(|n| events.len() >= n) {
                events.truncate(stop_after.unwrap());
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read).await.expect("the stream ended");
    events
}

pub(crate) fn data(event: &SseEvent) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

pub(crate) fn ids(events: &[SseEvent]) -> Vec<i64> {
    events.iter().map(|e| e.id.parse().unwrap()).collect()
}

/// A job of two epochs that logs every step: enough events to split and compare.
fn two_epochs() -> Value {
    let mut job = synthetic_job(2);
    job["training"]["log_every"] = json!(1);
    job
}

on_both_databases!(events_arrive_in_order_while_a_job_trains_and_match_what_the_api_shows);
async fn events_arrive_in_order_while_a_job_trains_and_match_what_the_api_shows(db: &Db) {
    let server = Server::start_on(db, |_| {}).await;
    let (c, base) = (&server.client, server.base.as_str());
    let id = submit(c, base, &two_epochs()).await["id"].as_str().unwrap().to_string();
    let events = read_events(c, base, &id, None, None).await;

    let ids = ids(&events);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(data(&events[0]), json!({"status": "queued"}));
    assert_eq!(kinds[1], "status");
    assert_eq!(data(&events[1])["status"], "running");
    assert!(data(&events[1])["backend"].as_str().unwrap().starts_with("cpu"));
    assert_eq!(data(events.last().unwrap()), json!({"status": "succeeded"}));

    let steps: Vec<u64> =
        events.iter().filter(|e| e.event == "step").map(|e| data(e)["step"].as_u64().unwrap()).collect();
    let job = wait_finished(c, base, &id, Duration::from_secs(5)).await;
    let total = job["progress"]["steps"].as_u64().unwrap();
    assert_eq!(steps, (1..=total).collect::<Vec<_>>(), "every step, once, in order");

    let metrics: Value =
        c.get(format!("{base}/jobs/{id}/metrics")).send().await.unwrap().json().await.unwrap();
    let epochs: Vec<Value> = events.iter().filter(|e| e.event == "epoch").map(data).collect();
    assert_eq!(Value::Array(epochs), metrics["epochs"], "epoch events are the metrics rows");
    let position =
        |kind: &str, n: usize| events.iter().enumerate().filter(|(_, e)| e.event == kind).nth(n).unwrap().0;
    assert!(position("epoch", 0) < position("step", steps.len() / 2), "epoch 1 ends before epoch 2's steps");

    let kept: Vec<Value> =
        c.get(format!("{base}/jobs/{id}/checkpoints")).send().await.unwrap().json().await.unwrap();
    let written: Vec<Value> = events.iter().filter(|e| e.event == "checkpoint").map(data).collect();
    for checkpoint in &kept {
        let event = written.iter().find(|w| w["id"] == checkpoint["id"]).expect("a checkpoint event");
        assert_eq!((&event["sha256"], &event["epoch"]), (&checkpoint["sha256"], &checkpoint["epoch"]));
    }
}

on_both_databases!(a_reconnect_with_last_event_id_loses_and_repeats_nothing_and_many_watchers_see_it_all);
async fn a_reconnect_with_last_event_id_loses_and_repeats_nothing_and_many_watchers_see_it_all(db: &Db) {
    let server = Server::start_on(db, |_| {}).await;
    let (c, base) = (&server.client, server.base.as_str());
    let id = submit(c, base, &two_epochs()).await["id"].as_str().unwrap().to_string();
    let watchers: Vec<_> = (0..50)
        .map(|_| {
            let (c, base, id) = (c.clone(), base.to_string(), id.clone());
            tokio::spawn(async move { read_events(&c, &base, &id, None, None).await })
        })
        .collect();

    let first = read_events(c, base, &id, None, Some(6)).await;
    let rest = read_events(c, base, &id, Some(&first.last().unwrap().id), None).await;
    wait_finished(c, base, &id, Duration::from_secs(120)).await;
    let whole = read_events(c, base, &id, None, None).await;
    assert!(whole.len() > 20, "{} events", whole.len());
    let joined: Vec<SseEvent> = first.into_iter().chain(rest).collect();
    assert_eq!(joined, whole, "the two connections together are the whole stream");

    for watcher in watchers {
        assert_eq!(watcher.await.unwrap(), whole, "a watcher saw all of it");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_jobs_stream_replays_and_ends_and_streams_are_capped() {
    let server = Server::start_with(|c| {
        c.max_event_streams = 1;
        c.event_keep_alive_secs = 1;
    })
    .await;
    let (c, base) = (&server.client, server.base.as_str());
    let id = submit(c, base, &synthetic_job(1)).await["id"].as_str().unwrap().to_string();
    wait_finished(c, base, &id, Duration::from_secs(120)).await;
    let events = read_events(c, base, &id, None, None).await;
    assert_eq!(data(events.last().unwrap())["status"], "succeeded");
    let last = events.last().unwrap().id.clone();
    assert!(read_events(c, base, &id, Some(&last), None).await.is_empty(), "nothing after the end");

    for (header, status) in [("x", 422), ("-3", 422)] {
        let r =
            c.get(format!("{base}/jobs/{id}/events")).header("Last-Event-ID", header).send().await.unwrap();
        assert_eq!(r.status(), status, "Last-Event-ID {header}");
    }
    let unknown = format!("{base}/jobs/{}/events", uuid::Uuid::new_v4());
    assert_eq!(c.get(unknown).send().await.unwrap().status(), 404);

    // A waiting job's stream stays open and silent but for keep-alive comments; it holds the one
    // slot, so a second stream is refused.
    let mut long = synthetic_job(200);
    long["data"]["train_size"] = json!(5000);
    let running = submit(c, base, &long).await["id"].as_str().unwrap().to_string();
    let waiting = submit(c, base, &synthetic_job(1)).await["id"].as_str().unwrap().to_string();
    let mut open = c.get(format!("{base}/jobs/{waiting}/events")).send().await.unwrap();
    assert_eq!(open.status(), 200);
    let refused = c.get(format!("{base}/jobs/{running}/events")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let mut seen = String::new();
    let silence = async {
        while !seen.lines().any(|l| l.starts_with(':')) {
            seen.push_str(&String::from_utf8_lossy(&open.chunk().await.unwrap().unwrap()));
        }
    };
    tokio::time::timeout(Duration::from_secs(10), silence).await.expect("a keep-alive comment");
    assert!(seen.contains("event: status") && seen.contains("data: {\"status\":\"queued\"}"), "{seen}");
    drop(open);
    for id in [&waiting, &running] {
        let r = c.post(format!("{base}/jobs/{id}/cancel")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_with_a_read_key_while_a_job_trains() {
    let (server, reader) = keyed_server().await;
    let (c, base) = (&server.client, server.base.as_str());
    assert_eq!(c.get(format!("{base}/metrics")).send().await.unwrap().status(), 401);
    // Long enough to be scraped while it trains, however fast the machine; it is cancelled.
    let mut job = synthetic_job(100);
    job["data"]["train_size"] = json!(4000);
    let r =
        c.post(format!("{base}/jobs")).bearer_auth(crate::security::WRITER).json(&job).send().await.unwrap();
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();

    let scrape = || async {
        // What Prometheus 2.42 sends: OpenMetrics first.
        let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let r = c
            .get(format!("{base}/metrics"))
            .bearer_auth(&reader)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
        parse_prometheus(&r.text().await.unwrap())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let during = loop {
        let samples = scrape().await;
        if value(&samples, "kiln_training_examples_per_second", "").is_some() {
            break samples;
        }
        assert!(std::time::Instant::now() < deadline, "no throughput while training");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(value(&during, "kiln_jobs", "status=\"running\""), Some(1.0));
    assert_eq!(value(&during, "kiln_queue_depth", "lane=\"cpu\""), Some(0.0));
    assert_eq!(value(&during, "kiln_running_jobs", "device=\"cpu"), Some(1.0));
    let lenet = r#"lane="cpu",model="lenet_bn""#;
    assert!(value(&during, "kiln_training_examples_per_second", lenet).unwrap() > 0.0);
    assert!(during.iter().all(|(_, labels, _)| !labels.contains(&id)), "no series names the job");
    let gets = r#"method="GET",route="/jobs/{id}",status="200""#;
    assert!(value(&during, "kiln_http_requests_total", r#"route="/metrics",status="200""#).unwrap() >= 1.0);
    assert!(value(&during, "kiln_http_requests_total", r#"route="/metrics",status="401""#).unwrap() >= 1.0);
    assert!(
        value(&during, "kiln_http_request_duration_seconds_count", r#"route="/metrics""#).unwrap() >= 1.0
    );

    let r =
        c.post(format!("{base}/jobs/{id}/cancel")).bearer_auth(crate::security::WRITER).send().await.unwrap();
    assert_eq!(r.status(), 200);
    wait_finished(&authorized(&reader), base, &id, Duration::from_secs(60)).await;
    let after = scrape().await;
    assert_eq!(value(&after, "kiln_jobs", "status=\"cancelled\""), Some(1.0));
    assert_eq!(value(&after, "kiln_training_examples_per_second", ""), None, "gone once none trains");
    assert!(value(&after, "kiln_http_requests_total", gets).unwrap() >= 1.0, "wait_finished's polls");
    assert!(value(&after, "kiln_epochs_completed_total", "").is_some());
    assert!(value(&after, "kiln_checkpoint_written_bytes_total", "").unwrap() > 0.0, "cancel checkpoints");
}

/// A client that sends `key` with every request.
/// The samples of a Prometheus text exposition: (name, labels, value). Every line that is not a
/// comment must parse.
fn parse_prometheus(text: &str) -> Vec<(String, String, f64)> {
    assert!(text.ends_with("# EOF\n"), "OpenMetrics-style end marker");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.strip_suffix('}').expect("closed labels")),
                None => (series, ""),
            };
            (name.to_string(), labels.to_string(), value)
        })
        .collect()
}

/// The value of the first sample named `name` whose labels contain `labels`.
fn value(samples: &[(String, String, f64)], name: &str, labels: &str) -> Option<f64> {
    samples.iter().find(|(n, l, _)| n == name && l.contains(labels)).map(|s| s.2)
}
