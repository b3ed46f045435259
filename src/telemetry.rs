//! What `GET /metrics` shows Prometheus: the server's counters, gauges and histograms, in the
//! Prometheus text format (the `prometheus-client` crate).
//!
//! Some values are counted as they happen — HTTP requests and their latency (the HTTP layer),
//! epochs completed, checkpoint bytes written and each running job's throughput (the job
//! service's reporting port); the rest — jobs by status, queue depth per lane, running jobs per
//! device — are read from the store and the queue when Prometheus scrapes ([`Snapshot`]). This
//! module knows no other part of kiln: the layers above fill it in.
//!
//! Every label takes a bounded set of values, whatever clients send: a request's method is one
//! of the standard ones or `other`, its route a pattern of the router or `unmatched`, its status
//! a three-digit code; a job's throughput series goes away when the job stops training.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route's pattern (`/jobs/{id}`), not the path, so ids do not make new series.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
    /// `examples` or `tokens`.
    unit: String,
}

/// One label, `name="value"`, of the values read at scrape time.
type Label = Vec<(&'static str, String)>;

/// Values read from the store and the queue at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Jobs per status name (every status, zeros included).
    pub jobs_by_status: Vec<(String, i64)>,
    /// Waiting jobs per lane (`cpu`, `gpu:0` ...).
    pub queue_depth: Vec<(String, i64)>,
    /// Running jobs per device, as the job shows its backend.
    pub running_by_device: Vec<(String, i64)>,
}

/// Every metric of one server.
pub struct Telemetry {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    epochs: Counter,
    checkpoint_bytes: Counter,
    throughput: Family<JobLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    jobs: Family<Label, Gauge>,
    queue: Family<Label, Gauge>,
    running: Family<Label, Gauge>,
    /// Serialises scrapes: each resets the scrape-time gauges before filling them in.
    scrape: Mutex<()>,
}

fn latency_buckets() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kiln");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_buckets);
        let (epochs, checkpoint_bytes) = (Counter::default(), Counter::default());
        let throughput = Family::default();
        let (jobs, queue, running) = (Family::default(), Family::default(), Family::default());
        registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request, by route",
            latency.clone(),
        );
        registry.register("epochs_completed", "Training epochs completed, all jobs", epochs.clone());
        registry.register(
            "checkpoint_bytes_written",
            "Bytes of model files written as checkpoints",
            checkpoint_bytes.clone(),
        );
        registry.register(
            "job_throughput",
            "Examples or tokens per second of each running job, over its latest steps",
            throughput.clone(),
        );
        registry.register("jobs", "Jobs by status", jobs.clone());
        registry.register("queue_depth", "Jobs waiting, by lane (cpu, gpu:N)", queue.clone());
        registry.register("running_jobs", "Jobs training, by device", running.clone());
        Self {
            registry,
            requests,
            latency,
            epochs,
            checkpoint_bytes,
            throughput,
            jobs,
            queue,
            running,
            scrape: Mutex::default(),
        }
    }
}

/// The methods a request is counted under by name; any other (a client may send any token as
/// its method) is counted as `other`, so that made-up methods cannot add series.
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];

/// The `method` label of a request's method.
fn method_label(method: &str) -> &'static str {
    METHODS.iter().find(|m| **m == method).copied().unwrap_or("other")
}

impl Telemetry {
    /// An answered request: `route` is the matched pattern (or `unmatched`); a method other than
    /// the standard ones is counted as `other`, a status outside 100..=599 as 0.
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let (method, route) = (method_label(method).to_string(), route.to_string());
        let status = if (100..=599).contains(&status) { status } else { 0 };
        self.requests
            .get_or_create(&RequestLabels { method: method.clone(), route: route.clone(), status })
            .inc();
        self.latency.get_or_create(&RouteLabels { method, route }).observe(seconds);
    }

    /// An epoch ended.
    pub fn epoch_completed(&self) {
        self.epochs.inc();
    }

    /// A checkpoint's model file of `bytes` was written.
    pub fn checkpoint_written(&self, bytes: u64) {
        self.checkpoint_bytes.inc_by(bytes);
    }

    /// Job `job` trains at `per_sec` examples or tokens (`unit`) per second.
    pub fn throughput(&self, job: &str, unit: &str, per_sec: f64) {
        self.throughput.get_or_create(&JobLabels { job: job.into(), unit: unit.into() }).set(per_sec);
    }

    /// Job `job` stopped training: its throughput series goes away.
    pub fn stopped(&self, job: &str) {
        for unit in ["examples", "tokens"] {
            self.throughput.remove(&JobLabels { job: job.into(), unit: unit.into() });
        }
    }

    /// Everything, in the Prometheus text format, with the scrape-time values of `snapshot`.
    pub fn encode(&self, snapshot: &Snapshot) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        for (family, name, values) in [
            (&self.jobs, "status", &snapshot.jobs_by_status),
            (&self.queue, "lane", &snapshot.queue_depth),
            (&self.running, "device", &snapshot.running_by_device),
        ] {
            family.clear();
            for (value, count) in values {
                family.get_or_create(&vec![(name, value.clone())]).set(*count);
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_scrape_time_values_are_encoded() {
        let telemetry = Telemetry::default();
        telemetry.request("GET", "/jobs/{id}", 200, 0.004);
        telemetry.request("GET", "/jobs/{id}", 200, 0.5);
        telemetry.epoch_completed();
        telemetry.checkpoint_written(1234);
        telemetry.throughput("j1", "examples", 4000.5);
        let snapshot = Snapshot {
            jobs_by_status: vec![("running".into(), 1), ("queued".into(), 0)],
            queue_depth: vec![("cpu".into(), 3)],
            running_by_device: vec![("cpu (burn-flex)".into(), 1)],
        };
        let text = telemetry.encode(&snapshot);
        for line in [
            r#"kiln_http_requests_total{method="GET",route="/jobs/{id}",status="200"} 2"#,
            r#"kiln_http_request_duration_seconds_count{method="GET",route="/jobs/{id}"} 2"#,
            "kiln_epochs_completed_total 1",
            "kiln_checkpoint_bytes_written_total 1234",
            r#"kiln_job_throughput{job="j1",unit="examples"} 4000.5"#,
            r#"kiln_jobs{status="running"} 1"#,
            r#"kiln_queue_depth{lane="cpu"} 3"#,
            r#"kiln_running_jobs{device="cpu (burn-flex)"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        telemetry.stopped("j1");
        let after = telemetry.encode(&Snapshot::default());
        assert!(!after.contains("j1") && !after.contains(r#"status="running""#), "{after}");
    }

    #[test]
    fn made_up_methods_share_one_series() {
        let telemetry = Telemetry::default();
        for method in ["BREW", "PROPFIND", &"X".repeat(5000)] {
            telemetry.request(method, "unmatched", 405, 0.001);
        }
        telemetry.request("DELETE", "/jobs/{id}", 204, 0.001);
        let text = telemetry.encode(&Snapshot::default());
        let line = r#"kiln_http_requests_total{method="other",route="unmatched",status="405"} 3"#;
        assert!(text.lines().any(|l| l == line), "{text}");
        assert!(text.contains(r#"method="DELETE""#), "{text}");
        assert!(!text.contains("BREW") && !text.contains("PROPFIND") && !text.contains("XXX"), "{text}");
    }
}
