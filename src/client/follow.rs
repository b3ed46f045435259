//! Following a job from the terminal: reads `/jobs/{id}/events` and shows, on a terminal, a
//! progress bar per epoch with the running loss and throughput (indicatif), or, in a log, one
//! plain line per event that matters (status, epoch, checkpoint). Reconnects with
//! `Last-Event-ID` if the connection drops ([`super::stream`]), so nothing is shown twice.

use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use serde_json::Value;

use super::sse::SseEvent;
use super::stream::{EventStream, Item};
use super::{Client, ClientError};

/// How the progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Progress bars, redrawn in place (a terminal).
    Bars,
    /// One line per status change, epoch and checkpoint (CI logs, files, pipes).
    Lines,
}

/// How a followed job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `succeeded`, `failed` or `cancelled`.
    pub status: String,
    pub error: Option<String>,
}

/// Follows `job` (as `GET /jobs/{id}` shows it) to its end.
pub async fn follow(client: &Client, job: &Value, display: Display) -> Result<Outcome, ClientError> {
    let id = job["id"].as_str().ok_or_else(|| ClientError::Other("the job has no id".into()))?;
    let mut view = View::new(job, display);
    let mut events = EventStream::new(client, &format!("/jobs/{id}/events"), &format!("job {id}"));
    loop {
        match events.next().await? {
            Item::Event(event) => {
                if let Some(outcome) = view.show(&event) {
                    return Ok(outcome);
                }
            }
            Item::Dropped(why) => view.note(&format!("stream dropped ({why}); reconnecting")),
            Item::Ended => return Err(ClientError::Other(format!("the stream of job {id} ended early"))),
        }
    }
}

/// What has been shown so far.
struct View {
    display: Display,
    /// Steps per epoch (0 until known) and examples or tokens per step.
    steps_per_epoch: u64,
    per_step: u64,
    epochs: u64,
    /// The step the current epoch started after.
    epoch_start: u64,
    bar: Option<ProgressBar>,
    unit: &'static str,
}

impl View {
    fn new(job: &Value, display: Display) -> Self {
        let progress = &job["progress"];
        let (steps, epochs) =
            (progress["steps"].as_u64().unwrap_or(0), progress["epochs"].as_u64().unwrap_or(1));
        let batch = job["spec"]["training"]["batch_size"].as_u64().unwrap_or(1);
        let (per_step, unit) = match job["spec"]["data"]["num_steps"].as_u64() {
            Some(tokens) => (batch * tokens, "tokens"),
            None => (batch, "examples"),
        };
        Self {
            display,
            steps_per_epoch: steps / epochs.max(1),
            per_step,
            epochs,
            epoch_start: progress["step"].as_u64().unwrap_or(0),
            bar: None,
            unit,
        }
    }

    /// Shows one event; returns the outcome after a final status.
    fn show(&mut self, event: &SseEvent) -> Option<Outcome> {
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            return None;
        };
        match event.event.as_str() {
            "status" => return self.status(&data),
            "step" => self.step(&data),
            "epoch" => self.epoch(&data),
            "checkpoint" => self.note(&format!(
                "checkpoint {} written (epoch {}, step {}, sha256 {})",
                data["id"],
                data["epoch"],
                data["step"],
                data["sha256"].as_str().unwrap_or("").get(..12).unwrap_or("")
            )),
            _ => {}
        }
        None
    }

    fn status(&mut self, data: &Value) -> Option<Outcome> {
        let status = data["status"].as_str().unwrap_or("unknown").to_string();
        let error = data["error"].as_str().map(str::to_string);
        match (&data["backend"], &error) {
            (Value::String(backend), _) => self.note(&format!("status: {status} on {backend}")),
            (_, Some(error)) => self.note(&format!("status: {status}: {error}")),
            _ => self.note(&format!("status: {status}")),
        }
        let finished = matches!(status.as_str(), "succeeded" | "failed" | "cancelled");
        if finished && let Some(bar) = self.bar.take() {
            bar.abandon();
        }
        finished.then_some(Outcome { status, error })
    }

    fn step(&mut self, data: &Value) {
        let (step, epoch) = (data["step"].as_u64().unwrap_or(0), data["epoch"].as_u64().unwrap_or(0));
        let loss = data["loss"].as_f64().unwrap_or(f64::NAN);
        if self.display == Display::Lines {
            return;
        }
        let (len, per_step, unit) = (self.steps_per_epoch * self.per_step, self.per_step, self.unit);
        let bar = self.bar.get_or_insert_with(|| {
            let bar = if len > 0 { ProgressBar::new(len) } else { ProgressBar::new_spinner() };
            let template =
                format!("epoch {{prefix}} {{bar:30}} {{percent:>3}}% {{rate:>8}} {unit}/s  {{msg}}");
            let style =
                ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}", state.per_sec());
            }));
            bar
        });
        bar.set_prefix(format!("{epoch}/{}", self.epochs));
        bar.set_position(step.saturating_sub(self.epoch_start) * per_step);
        bar.set_message(format!("loss {loss:.4}"));
    }

    fn epoch(&mut self, row: &Value) {
        match self.bar.take() {
            // The bar stays, its prefix naming the epoch: the message needs only the metrics.
            Some(bar) => bar.finish_with_message(metrics_text(row, 4)),
            None => println!("{}", epoch_line(row, self.epochs)),
        }
        let epoch = row["epoch"].as_u64().unwrap_or(0);
        self.epoch_start = epoch * self.steps_per_epoch;
    }

    /// A line that is not progress: above the bar on a terminal, printed in a log.
    fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }
}

/// The metrics of an epoch row in the order they are shown; any other field comes after them.
const ORDER: [&str; 12] = [
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "perplexity",
    "validation_perplexity",
    "grad_norm",
    "grad_norm_max",
    "examples_per_sec",
    "tokens_per_sec",
    "seconds",
    "epoch",
];

/// The numeric fields of epoch rows other than `epoch`, in [`ORDER`], each once.
pub fn columns<'a>(rows: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        for (name, value) in row.as_object().into_iter().flatten() {
            if name != "epoch" && value.is_number() && !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    let rank = |n: &String| ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len());
    names.sort_by_key(rank);
    names
}

/// An epoch row as one line: `epoch 2/5  train_loss 0.4123  test_accuracy 0.8512 ...`.
pub fn epoch_line(row: &Value, epochs: u64) -> String {
    format!("epoch {}/{epochs}  {}", row["epoch"].as_u64().unwrap_or_default(), metrics_text(row, usize::MAX))
}

/// The first `most` metrics of an epoch row: `train_loss 0.4123  train_accuracy 0.8512 ...`.
fn metrics_text(row: &Value, most: usize) -> String {
    let fields = columns([row]).into_iter().take(most);
    let fields = fields.map(|name| format!("{name} {}", number(row[&name].as_f64().unwrap_or(f64::NAN))));
    fields.collect::<Vec<_>>().join("  ")
}

/// A metric for a table: four decimals below 100, whole numbers above.
pub fn number(v: f64) -> String {
    if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.4}") }
}
