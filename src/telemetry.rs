//! What `GET /metrics` shows Prometheus: the server's counters, gauges and histograms, in the
//! OpenMetrics text format (the `prometheus-client` crate) or, for clients that ask for it, the
//! classic Prometheus text format 0.0.4 ([`Format`], converted by `telemetry/text.rs`).
//!
//! Some values are counted as they happen — HTTP requests and their latency (the HTTP layer),
//! epochs completed, checkpoint bytes written and the running jobs' throughput (the job
//! service's reporting port); the rest — jobs by status, queue depth per lane, running jobs per
//! device — are read from the store and the queue when Prometheus scrapes ([`Snapshot`]). This
//! module knows no other part of kiln: the layers above fill it in.
//!
//! Every label takes a bounded set of values, whatever clients send: a request's method is one
//! of the standard ones or `other`, its route a pattern of the router or `unmatched`, its status
//! a three-digit code. Throughput is summed by lane and model kind over the jobs training now
//! (no series per job): a lane and model's series goes away when none of its jobs trains.
//!
//! A server's series carry its replica id as the `replica` label ([`Telemetry::for_replica`]).
//! Jobs by status and queue depth are read from the database, so every replica of one shows the
//! whole cluster's: aggregate them with `max`, not `sum`.

mod text;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

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

/// Where a job trains and what: the labels of its throughput.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Trainer {
    /// The lane it runs in (`cpu`, `gpu:0` ...), as `kiln_queue_depth` names it.
    pub lane: String,
    /// Its model's kind (`lenet_bn`, `rnn_lm` ...).
    pub model: String,
}

/// What a job's throughput counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Images, for a classifier.
    Examples,
    /// Tokens, for a language model.
    Tokens,
}

/// A gauge of `f64` values.
type Rate = Gauge<f64, AtomicU64>;

/// The wire format of a scrape: what the client asked for in its `Accept` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0, which Prometheus asks for first.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4 (`curl`, `promtool check metrics`).
    Text,
}

impl Format {
    /// The `Content-Type` of an exposition in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// `openmetrics`, what [`Telemetry::encode`] wrote, in this format.
    pub fn convert(self, openmetrics: String) -> String {
        match self {
            Self::OpenMetrics => openmetrics,
            Self::Text => text::from_openmetrics(&openmetrics),
        }
    }
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
    examples_per_second: Family<Trainer, Rate>,
    tokens_per_second: Family<Trainer, Rate>,
    /// Each training job's latest throughput, by job id: summed into the two families above at
    /// each scrape.
    rates: Mutex<HashMap<String, (Trainer, Unit, f64)>>,
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
    /// Series without a replica label, for tests of the metrics themselves.
    fn default() -> Self {
        Self::with_registry(Registry::with_prefix("kiln"))
    }
}

impl Telemetry {
    /// The metrics of replica `replica` (see `GET /cluster`): every series carries it as its
    /// `replica` label, so one Prometheus scraping every replica tells them apart.
    pub fn for_replica(replica: &str) -> Self {
        let label = (Cow::Borrowed("replica"), Cow::Owned(replica.to_string()));
        Self::with_registry(Registry::with_prefix_and_labels("kiln", std::iter::once(label)))
    }

    fn with_registry(mut registry: Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_buckets);
        let (epochs, checkpoint_bytes) = (Counter::default(), Counter::default());
        let (examples_per_second, tokens_per_second) = (Family::default(), Family::default());
        let (jobs, queue, running) = (Family::default(), Family::default(), Family::default());
        registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request, by route",
            latency.clone(),
        );
        registry.register("epochs_completed", "Training epochs completed, all jobs", epochs.clone());
        registry.register(
            "checkpoint_written_bytes",
            "Bytes of model files written as checkpoints",
            checkpoint_bytes.clone(),
        );
        registry.register(
            "training_examples_per_second",
            "Images per second of the classifiers training now, summed by lane and model kind",
            examples_per_second.clone(),
        );
        registry.register(
            "training_tokens_per_second",
            "Tokens per second of the language models training now, summed by lane and model kind",
            tokens_per_second.clone(),
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
            examples_per_second,
            tokens_per_second,
            rates: Mutex::default(),
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

    /// Job `job`, training as `trainer`, now runs at `per_sec` `unit`s per second. The id only
    /// tells one job's report from another's: it labels no series.
    pub fn throughput(&self, job: &str, trainer: &Trainer, unit: Unit, per_sec: f64) {
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        // Reported every few steps: a known job's rate is updated in place, without allocating.
        match rates.get_mut(job) {
            Some(rate) => rate.2 = per_sec,
            None => {
                rates.insert(job.to_string(), (trainer.clone(), unit, per_sec));
            }
        }
    }

    /// Job `job` stopped training: it counts in no throughput any more.
    pub fn stopped(&self, job: &str) {
        self.rates.lock().unwrap_or_else(|p| p.into_inner()).remove(job);
    }

    /// Sets the throughput gauges to the sums over the jobs training now; a lane and model
    /// with none has no series.
    fn sum_rates(&self) {
        self.examples_per_second.clear();
        self.tokens_per_second.clear();
        let rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        for (trainer, unit, per_sec) in rates.values() {
            let family = match unit {
                Unit::Examples => &self.examples_per_second,
                Unit::Tokens => &self.tokens_per_second,
            };
            family.get_or_create(trainer).inc_by(*per_sec);
        }
    }

    /// Everything in the OpenMetrics text format, with the scrape-time values of `snapshot`
    /// ([`Format::convert`] gives the classic text format).
    pub fn encode(&self, snapshot: &Snapshot) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.sum_rates();
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

    fn trainer(lane: &str, model: &str) -> Trainer {
        Trainer { lane: lane.into(), model: model.into() }
    }

    #[test]
    fn a_replicas_series_carry_its_id() {
        let telemetry = Telemetry::for_replica("r-1");
        telemetry.epoch_completed();
        telemetry.request("GET", "/jobs", 200, 0.01);
        let snapshot = Snapshot { jobs_by_status: vec![("queued".into(), 2)], ..Snapshot::default() };
        let text = telemetry.encode(&snapshot);
        for line in [
            r#"kiln_epochs_completed_total{replica="r-1"} 1"#,
            r#"kiln_jobs{replica="r-1",status="queued"} 2"#,
            r#"kiln_http_requests_total{replica="r-1",method="GET",route="/jobs",status="200"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    #[test]
    fn counters_and_scrape_time_values_are_encoded() {
        let telemetry = Telemetry::default();
        telemetry.request("GET", "/jobs/{id}", 200, 0.004);
        telemetry.request("GET", "/jobs/{id}", 200, 0.5);
        telemetry.epoch_completed();
        telemetry.checkpoint_written(1234);
        telemetry.throughput("j1", &trainer("cpu", "lenet_bn"), Unit::Examples, 4000.5);
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
            "kiln_checkpoint_written_bytes_total 1234",
            r#"kiln_training_examples_per_second{lane="cpu",model="lenet_bn"} 4000.5"#,
            r#"kiln_jobs{status="running"} 1"#,
            r#"kiln_queue_depth{lane="cpu"} 3"#,
            r#"kiln_running_jobs{device="cpu (burn-flex)"} 1"#,
            "# TYPE kiln_checkpoint_written_bytes counter",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        telemetry.stopped("j1");
        let after = telemetry.encode(&Snapshot::default());
        assert!(!after.contains("kiln_training_examples_per_second{"), "{after}");
        assert!(!after.contains(r#"status="running""#), "{after}");
    }

    #[test]
    fn throughput_is_summed_by_lane_and_model_with_no_job_label() {
        let telemetry = Telemetry::default();
        telemetry.throughput("a", &trainer("cpu", "lenet_bn"), Unit::Examples, 100.0);
        telemetry.throughput("b", &trainer("cpu", "lenet_bn"), Unit::Examples, 50.5);
        telemetry.throughput("c", &trainer("gpu:0", "lenet_bn"), Unit::Examples, 7.0);
        telemetry.throughput("d", &trainer("cpu", "rnn_lm"), Unit::Tokens, 900.0);
        // A newer report of a job replaces its older one.
        telemetry.throughput("a", &trainer("cpu", "lenet_bn"), Unit::Examples, 200.0);
        let text = telemetry.encode(&Snapshot::default());
        for line in [
            r#"kiln_training_examples_per_second{lane="cpu",model="lenet_bn"} 250.5"#,
            r#"kiln_training_examples_per_second{lane="gpu:0",model="lenet_bn"} 7.0"#,
            r#"kiln_training_tokens_per_second{lane="cpu",model="rnn_lm"} 900.0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("job="), "{text}");
        telemetry.stopped("a");
        telemetry.stopped("d");
        let text = telemetry.encode(&Snapshot::default());
        let line = r#"kiln_training_examples_per_second{lane="cpu",model="lenet_bn"} 50.5"#;
        assert!(text.lines().any(|l| l == line), "{text}");
        assert!(!text.contains("kiln_training_tokens_per_second{"), "no language model trains: {text}");
    }

    #[test]
    fn the_text_format_names_counters_with_total_and_has_no_eof() {
        let telemetry = Telemetry::default();
        telemetry.epoch_completed();
        telemetry.request("GET", "/healthz", 200, 0.001);
        let text = Format::Text.convert(telemetry.encode(&Snapshot::default()));
        for line in [
            "# TYPE kiln_epochs_completed_total counter",
            "# TYPE kiln_checkpoint_written_bytes_total counter",
            "# TYPE kiln_http_requests_total counter",
            "kiln_epochs_completed_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
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
