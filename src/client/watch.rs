//! `kiln jobs --watch`: after the jobs table, one line per change to any job as it happens, read
//! from `GET /events`: `<time> <job> running on cpu (burn-flex)`, `<time> <job> epoch 2/5
//! train_loss 0.4123 ...`, `<time> <job> deleted` (steps and checkpoints are not shown; the time
//! is when the line was printed, UTC). The stream is opened before the table is read, so no
//! change after the table is missed, and reopened with `Last-Event-ID` when it drops
//! ([`super::stream`]). It runs until interrupted, or until its reader goes away (a closed pipe
//! ends the process quietly, as `main.rs` sets up).

use std::collections::HashMap;

use serde_json::Value;

use super::stream::{EventStream, Item};
use super::table::number;
use super::{Client, ClientError};

/// A watch of every job.
pub struct Watch<'a> {
    client: &'a Client,
    events: EventStream<'a>,
    /// Each job's number of epochs, for its epoch lines: from the table, or asked for once.
    epochs: HashMap<String, u64>,
}

impl<'a> Watch<'a> {
    /// Opens `GET /events`: changes from now on are kept for [`Watch::run`].
    pub async fn open(client: &'a Client) -> Result<Self, ClientError> {
        let mut events = EventStream::new(client, "/events", "every job").endless();
        events.connect().await?;
        Ok(Self { client, events, epochs: HashMap::new() })
    }

    /// Remembers the number of epochs of the jobs in the table.
    pub fn know(&mut self, jobs: &[Value]) {
        for job in jobs {
            if let (Some(id), Some(epochs)) = (job["id"].as_str(), job["spec"]["training"]["epochs"].as_u64())
            {
                self.epochs.insert(id.to_string(), epochs);
            }
        }
    }

    /// Prints a line per change until the stream is lost (an error) or the process is stopped.
    pub async fn run(mut self) -> Result<bool, ClientError> {
        loop {
            match self.events.next().await? {
                // Steps, most of the stream, and checkpoints are not shown: not even parsed.
                Item::Event(event) if matches!(event.event.as_str(), "status" | "epoch" | "deleted") => {
                    let Ok(data) = serde_json::from_str::<Value>(&event.data) else { continue };
                    let job = data["job"].as_str().unwrap_or_default();
                    let epochs = if event.event == "epoch" { self.epochs_of(job).await } else { 0 };
                    if event.event == "deleted" {
                        self.epochs.remove(job);
                    }
                    if let Some(text) = describe(&event.event, &data, epochs) {
                        println!("{} {job} {text}", now());
                    }
                }
                Item::Event(_) => {}
                Item::Dropped(why) => eprintln!("stream dropped ({why}); reconnecting"),
                // An endless stream's end is a drop.
                Item::Ended => {}
            }
        }
    }

    /// Job `job`'s number of epochs (0 if it cannot be read).
    async fn epochs_of(&mut self, job: &str) -> u64 {
        if let Some(epochs) = self.epochs.get(job) {
            return *epochs;
        }
        let read = self.client.get(&format!("/jobs/{job}")).await;
        let epochs = read.ok().and_then(|j| j["spec"]["training"]["epochs"].as_u64()).unwrap_or(0);
        self.epochs.insert(job.to_string(), epochs);
        epochs
    }
}

/// What an event of kind `kind` with body `data` is shown as, after the time and the job:
/// `running on cpu (burn-flex)`, `failed: <why>`, `epoch 2/5  train_loss 0.4123 ...`,
/// `deleted`; `None` for the kinds not shown.
pub fn describe(kind: &str, data: &Value, epochs: u64) -> Option<String> {
    match kind {
        "status" => Some(status_text(data)),
        "epoch" => Some(epoch_text(data, epochs)),
        "deleted" => Some("deleted".to_string()),
        _ => None,
    }
}

/// A status event's body in words: `running on cpu (burn-flex)`, `failed: <why>`, `queued`.
pub fn status_text(data: &Value) -> String {
    let status = data["status"].as_str().unwrap_or("unknown");
    match (data["backend"].as_str(), data["error"].as_str()) {
        (Some(backend), _) => format!("{status} on {backend}"),
        (_, Some(error)) => format!("{status}: {error}"),
        _ => status.to_string(),
    }
}

/// A finished epoch in a few words: `epoch 2/5  train_loss 0.4123  test_accuracy 0.8512`, the
/// second metric the one that says how good the model is (test accuracy, else perplexity on held
/// out text, else on the training text). `kiln metrics` shows them all.
fn epoch_text(row: &Value, epochs: u64) -> String {
    let mut text = format!("epoch {}/{epochs}", row["epoch"].as_u64().unwrap_or_default());
    let quality =
        ["test_accuracy", "validation_perplexity", "perplexity"].into_iter().find(|m| row[m].is_number());
    for name in ["train_loss"].into_iter().chain(quality) {
        if let Some(value) = row[name].as_f64() {
            text.push_str(&format!("  {name} {}", number(value)));
        }
    }
    text
}

/// The time now, UTC, to the second: `2026-01-31T12:00:00Z`.
fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn status_changes_epochs_and_deletions_each_make_a_line_and_steps_none() {
        let running = json!({"job": "j", "status": "running", "backend": "cpu (burn-flex)"});
        assert_eq!(describe("status", &running, 0).unwrap(), "running on cpu (burn-flex)");
        let failed = json!({"job": "j", "status": "failed", "error": "out of memory"});
        assert_eq!(describe("status", &failed, 0).unwrap(), "failed: out of memory");
        assert_eq!(describe("status", &json!({"job": "j", "status": "queued"}), 0).unwrap(), "queued");
        let epoch = json!({"job": "j", "epoch": 2, "train_loss": 0.5, "test_accuracy": 0.75, "seconds": 3.0});
        assert_eq!(
            describe("epoch", &epoch, 5).unwrap(),
            "epoch 2/5  train_loss 0.5000  test_accuracy 0.7500"
        );
        let language = json!({"job": "j", "epoch": 1, "train_loss": 2.0, "perplexity": 7.5});
        assert_eq!(
            describe("epoch", &language, 3).unwrap(),
            "epoch 1/3  train_loss 2.0000  perplexity 7.5000"
        );
        assert_eq!(describe("deleted", &json!({"job": "j"}), 0).unwrap(), "deleted");
        assert_eq!(describe("step", &json!({"job": "j", "step": 3, "epoch": 1, "loss": 0.1}), 0), None);
        assert_eq!(describe("checkpoint", &json!({"job": "j", "id": 1}), 0), None);
    }

    #[test]
    fn the_time_is_utc_to_the_second() {
        let now = now();
        assert_eq!(now.len(), "2026-01-31T12:00:00Z".len(), "{now}");
        assert!(now.ends_with('Z'), "{now}");
    }
}
