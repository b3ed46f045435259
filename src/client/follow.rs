//! Following a job from the terminal: reads `/jobs/{id}/events` and shows, on a terminal, a
//! progress bar per epoch with the running loss and throughput (indicatif), or, in a log, one
//! plain line per event that matters (status, epoch, checkpoint). Reconnects with
//! `Last-Event-ID` if the connection drops ([`super::stream`]), so nothing is shown twice.
//!
//! The bar's rate is measured here, over the last seconds of step events ([`Rate`]): a burst of
//! events read at once (the history replayed on connecting) counts as one point, so the first
//! redraw shows no rate rather than a burst's millions per second. A finished epoch leaves one
//! line that fits the terminal (see [`super::table`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::sse::SseEvent;
use super::stream::{EventStream, Item};
use super::table::{Names, epoch_line, terminal_width};
use super::watch::status_text;
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
                if let Some(outcome) = view.show(&event, Instant::now()) {
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
    rate: Rate,
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
            rate: Rate::default(),
            unit,
        }
    }

    /// Shows one event; returns the outcome after a final status.
    fn show(&mut self, event: &SseEvent, at: Instant) -> Option<Outcome> {
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            return None;
        };
        match event.event.as_str() {
            "status" => return self.status(&data),
            "step" => self.step(&data, at),
            "epoch" => self.epoch(&data),
            "checkpoint" => self.note(&format!(
                "checkpoint of epoch {} saved (step {}, sha256 {})",
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
        self.note(&format!("status: {}", status_text(data)));
        let finished = matches!(status.as_str(), "succeeded" | "failed" | "cancelled");
        if finished && let Some(bar) = self.bar.take() {
            bar.abandon();
        }
        finished.then_some(Outcome { status, error })
    }

    fn step(&mut self, data: &Value, at: Instant) {
        let (step, epoch) = (data["step"].as_u64().unwrap_or(0), data["epoch"].as_u64().unwrap_or(0));
        let loss = data["loss"].as_f64().unwrap_or(f64::NAN);
        if self.display == Display::Lines {
            return;
        }
        let len = self.steps_per_epoch * self.per_step;
        let bar = self.bar.get_or_insert_with(|| {
            let bar = if len > 0 { ProgressBar::new(len) } else { ProgressBar::new_spinner() };
            // The message, cut to the terminal's width: `  12345 examples/s  loss 0.4123`.
            let template = "epoch {prefix} {bar:24} {percent:>3}% {wide_msg}";
            bar.set_style(
                ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        let position = step.saturating_sub(self.epoch_start) * self.per_step;
        self.rate.record(at, position);
        let rate = self.rate.per_sec().map_or(String::new(), |r| format!("{r:.0}"));
        bar.set_prefix(format!("{epoch}/{}", self.epochs));
        bar.set_position(position);
        bar.set_message(format!("{rate:>8} {}/s  loss {loss:.4}", self.unit));
    }

    fn epoch(&mut self, row: &Value) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.rate = Rate::default();
        // A terminal gets a line that fits it, under short labels; a log every field by its name.
        let line = match terminal_width() {
            Some(width) => epoch_line(row, self.epochs, Names::Short, width),
            None => epoch_line(row, self.epochs, Names::Api, usize::MAX),
        };
        println!("{line}");
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

/// Progress per second over the last [`Rate::WINDOW`] of step events, as they arrive.
#[derive(Debug, Default)]
struct Rate {
    /// When a position was seen, oldest first.
    points: VecDeque<(Instant, u64)>,
}

impl Rate {
    const WINDOW: Duration = Duration::from_secs(5);
    /// Events closer together than this arrived in one burst (read at once): one point.
    const BURST: Duration = Duration::from_millis(100);
    /// No rate is shown over a shorter span.
    const SHORTEST: Duration = Duration::from_millis(500);

    fn record(&mut self, at: Instant, position: u64) {
        match self.points.back_mut() {
            Some(last) if at.duration_since(last.0) < Self::BURST => last.1 = position,
            _ => self.points.push_back((at, position)),
        }
        while self.points.len() > 2 && at.duration_since(self.points[1].0) >= Self::WINDOW {
            self.points.pop_front();
        }
    }

    fn per_sec(&self) -> Option<f64> {
        let (&(first, from), &(last, to)) = (self.points.front()?, self.points.back()?);
        let span = last.duration_since(first);
        (span >= Self::SHORTEST).then(|| to.saturating_sub(from) as f64 / span.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_burst_shows_no_rate_and_then_counts_as_one_point() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let mut rate = Rate::default();
        // The history read at once on connecting: 5,000 examples within 3 ms.
        for (i, position) in [1000, 3000, 5000].into_iter().enumerate() {
            rate.record(ms(i as u64), position);
        }
        assert_eq!(rate.per_sec(), None, "no rate from a burst");
        rate.record(ms(400), 5400);
        assert_eq!(rate.per_sec(), None, "too short a span");
        rate.record(ms(1000), 6000);
        let per_sec = rate.per_sec().unwrap();
        assert!((per_sec - 1000.0).abs() < 1.0, "1,000 examples in 1 s after the burst: {per_sec}");
    }

    #[test]
    fn the_rate_follows_the_last_seconds() {
        let start = Instant::now();
        let mut rate = Rate::default();
        // 100 examples/s for 10 s, then 1,000/s for 10 s.
        let mut position = 0;
        for tenth in 1..=200u64 {
            position += if tenth <= 100 { 10 } else { 100 };
            rate.record(start + Duration::from_millis(tenth * 100), position);
        }
        let per_sec = rate.per_sec().unwrap();
        assert!((per_sec - 1000.0).abs() < 30.0, "{per_sec}");
        assert!(rate.points.len() <= 52, "{} points kept", rate.points.len());
    }
}
