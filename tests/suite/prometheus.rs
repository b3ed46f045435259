//! `GET /metrics` read by Prometheus's own `promtool`: after a job trains, the classic text
//! format (what `curl` and `Accept: text/plain` get) passes `promtool check metrics` without a
//! single lint, and the OpenMetrics text (what Prometheus asks for first) is read by
//! Prometheus's OpenMetrics parser (`promtool tsdb create-blocks-from openmetrics`; `check
//! metrics` reads only the classic format, where an OpenMetrics counter's family and sample
//! names differ by `_total`). promtool is `$KILN_PROMTOOL`, else `promtool` on the `PATH`;
//! `scripts/test` provides it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{Server, submit, synthetic_job, wait_finished};

/// What Prometheus 2.42 sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Runs promtool with `args` and `stdin`; fails the test, saying where to get it, if it does
/// not run.
fn promtool(args: &[&str], stdin: &str) -> Output {
    let program = std::env::var("KILN_PROMTOOL").unwrap_or_else(|_| "promtool".to_string());
    let child = Command::new(&program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.unwrap_or_else(|e| {
        panic!(
            "cannot run promtool ({program}: {e}): scripts/test provides it (Debian's prometheus \
             package, extracted under target/tools, in KILN_PROMTOOL); or set KILN_PROMTOOL"
        )
    });
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// `GET /metrics` with `accept` (none: reqwest's `*/*`): the content type and the body.
async fn scrape(server: &Server, accept: Option<&str>) -> (String, String) {
    let mut request = server.client.get(server.url("/metrics"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["vary"], "accept");
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    (content_type, r.text().await.unwrap())
}

/// Asserts that `promtool check metrics` passes `text` and has nothing to say about it.
fn assert_lint_free(text: &str) {
    let out = promtool(&["check", "metrics"], text);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
}

/// Asserts that Prometheus's OpenMetrics parser reads `text` whole: promtool turns it into a
/// TSDB block in `dir`, which takes every sample with a timestamp (the scrape's time here).
fn assert_openmetrics_parses(text: &str, dir: &Path) {
    let stamped: String = text
        .lines()
        .map(|l| if l.starts_with('#') { format!("{l}\n") } else { format!("{l} 1700000000\n") })
        .collect();
    let file = dir.join("scrape.om");
    std::fs::write(&file, &stamped).unwrap();
    let blocks = dir.join("blocks");
    let args =
        ["tsdb", "create-blocks-from", "openmetrics", file.to_str().unwrap(), blocks.to_str().unwrap()];
    let out = promtool(&args, "");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool tsdb create-blocks-from openmetrics: {said}\n{stamped}");
    let samples = text.lines().filter(|l| !l.starts_with('#')).count();
    assert!(said.contains(&format!(" {samples} ")), "every one of {samples} samples in the block: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_reads_both_formats_after_a_job_trains() {
    let server = Server::start().await;
    let job = submit(&server.client, &server.base, &synthetic_job(1)).await;
    let id = job["id"].as_str().unwrap();
    let done = wait_finished(&server.client, &server.base, id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let cluster = crate::common::get_json(&server.client, &server.url("/cluster")).await;
    // Every series names the replica it comes from.
    let replica = format!(r#"{{replica="{}"}}"#, cluster["replica"].as_str().unwrap());
    let epochs = format!("kiln_epochs_completed_total{replica} 1");

    for accept in [Some("text/plain;version=0.0.4"), Some("text/plain"), None] {
        let (content_type, text) = scrape(&server, accept).await;
        assert_eq!(content_type, TEXT, "Accept: {accept:?}");
        assert_lint_free(&text);
        for line in [
            "# TYPE kiln_checkpoint_written_bytes_total counter",
            "# TYPE kiln_epochs_completed_total counter",
            "# TYPE kiln_http_requests_total counter",
            &epochs,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("_per_second{"), "no job trains, no throughput series: {text}");
    }

    let (content_type, text) = scrape(&server, Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(content_type, OPENMETRICS);
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.lines().any(|l| l == "# TYPE kiln_checkpoint_written_bytes counter"), "{text}");
    let written = format!("kiln_checkpoint_written_bytes_total{replica} ");
    let written = text.lines().find_map(|l| l.strip_prefix(&written));
    assert!(written.unwrap().parse::<f64>().unwrap() > 0.0, "{text}");
    assert_openmetrics_parses(&text, tempfile::tempdir().unwrap().path());
}
