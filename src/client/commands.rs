//! The client subcommands of the `kiln` binary. Each returns whether it succeeded: `submit
//! --follow` succeeds only when the job does, so a CI step can train and gate on the result.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use super::follow::{Display, follow};
use super::table::{epochs_table, terminal_width};
use super::watch::Watch;
use super::{Client, ClientError, ServerArgs};

/// A client subcommand with its arguments.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Submit a job definition (a JSON file, `-` for stdin); with --follow, show its progress
    /// and exit 0 only if it succeeds.
    Submit {
        file: PathBuf,
        #[arg(long)]
        follow: bool,
        /// Only validate the definition and show what would run (each layer of a layer list
        /// with its output shape and parameters, the totals, the lane); nothing is stored.
        #[arg(long, conflicts_with = "follow")]
        dry_run: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List jobs, oldest first; with --watch, then print a line per change to any job as it
    /// happens (status, finished epoch, deletion) until interrupted.
    Jobs {
        /// Only jobs with this status (in the table; --watch shows every job's changes).
        #[arg(long)]
        status: Option<String>,
        /// After the table, follow every job's changes (`GET /events`).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A job's epoch metrics, as a table.
    Metrics {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Cancel a queued or running job. A running job stops at its next step; with --wait, wait
    /// until it has.
    Cancel {
        id: String,
        /// Wait until the job has stopped, and exit 0 only if it ended cancelled.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Generate text from a trained language model, starting with PREFIX.
    Generate {
        id: String,
        prefix: String,
        /// How many tokens to generate.
        #[arg(long, default_value_t = 50)]
        tokens: u32,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List a job's checkpoints; with --download DIR, save the newest one's file there.
    Checkpoints {
        id: String,
        #[arg(long)]
        download: Option<PathBuf>,
        /// The downloaded file's format: the checkpoint's own burnpack, or an image
        /// classifier's weights under PyTorch's names (safetensors).
        #[arg(long, value_enum, default_value_t = WeightsFormat::Burnpack, requires = "download")]
        format: WeightsFormat,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// The format of a downloaded checkpoint (`kiln checkpoints --format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsFormat {
    Burnpack,
    Safetensors,
}

impl WeightsFormat {
    /// The `format` query value and the file's extension.
    fn query_and_extension(self) -> (&'static str, &'static str) {
        match self {
            Self::Burnpack => ("burnpack", "bpk"),
            Self::Safetensors => ("safetensors", "safetensors"),
        }
    }
}

/// Runs `command`; `Ok(false)` when it ran but what it reports failed (a job that did not
/// succeed).
pub fn run(command: ClientCommand) -> Result<bool, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(dispatch(command)).map_err(|e| e.to_string())
}

async fn dispatch(command: ClientCommand) -> Result<bool, ClientError> {
    match command {
        ClientCommand::Submit { file, follow, dry_run, server } => {
            submit(&Client::new(&server), &file, follow, dry_run).await
        }
        ClientCommand::Jobs { status, watch, server } => jobs(&Client::new(&server), status, watch).await,
        ClientCommand::Metrics { id, server } => {
            let metrics = Client::new(&server).get(&format!("/jobs/{id}/metrics")).await?;
            print_epochs(&metrics["epochs"]);
            Ok(true)
        }
        ClientCommand::Cancel { id, wait, server } => cancel(&Client::new(&server), &id, wait).await,
        ClientCommand::Generate { id, prefix, tokens, server } => {
            let body = json!({"prefix": prefix, "max_tokens": tokens});
            let generated = Client::new(&server).post(&format!("/jobs/{id}/generate"), &body).await?;
            let (prompt, text) = (&generated["prompt"], &generated["text"]);
            println!("{}{}", prompt.as_str().unwrap_or_default(), text.as_str().unwrap_or_default());
            Ok(true)
        }
        ClientCommand::Checkpoints { id, download, format, server } => {
            checkpoints(&Client::new(&server), &id, download, format).await
        }
    }
}

/// `kiln jobs`: the table, then, with `watch`, every job's changes.
async fn jobs(client: &Client, status: Option<String>, watch: bool) -> Result<bool, ClientError> {
    let path = status.map_or("/jobs?limit=1000".to_string(), |s| format!("/jobs?limit=1000&status={s}"));
    // Opened before the table is read, so no change after it is missed.
    let watch = if watch { Some(Watch::open(client).await?) } else { None };
    let page = client.get(&path).await?;
    let listed = page["jobs"].as_array().map_or(&[][..], Vec::as_slice);
    print_jobs(listed);
    let Some(mut watch) = watch else {
        return Ok(true);
    };
    watch.know(listed);
    watch.run().await
}

async fn submit(client: &Client, file: &Path, follow_it: bool, dry_run: bool) -> Result<bool, ClientError> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(|e| ClientError::Other(format!("reading {}: {e}", file.display())))?;
    let definition: Value = serde_json::from_str(&text)
        .map_err(|e| ClientError::Other(format!("{} is not JSON: {e}", file.display())))?;
    if dry_run {
        print_dry_run(&client.post("/jobs?dry_run=true", &definition).await?);
        return Ok(true);
    }
    let job = client.post("/jobs", &definition).await?;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    println!("job {id} {}", job["status"].as_str().unwrap_or("?"));
    if !follow_it {
        return Ok(true);
    }
    let display = if std::io::stderr().is_terminal() { Display::Bars } else { Display::Lines };
    let outcome = follow(client, &job, display).await?;
    let metrics = client.get(&format!("/jobs/{id}/metrics")).await?;
    print_epochs(&metrics["epochs"]);
    if let Some(error) = &outcome.error {
        eprintln!("job {id} {}: {error}", outcome.status);
    }
    println!("job {id} {}", outcome.status);
    Ok(outcome.status == "succeeded")
}

async fn checkpoints(
    client: &Client,
    id: &str,
    download: Option<PathBuf>,
    format: WeightsFormat,
) -> Result<bool, ClientError> {
    let list = client.get(&format!("/jobs/{id}/checkpoints")).await?;
    let list = list.as_array().map_or(&[][..], Vec::as_slice);
    println!("{:>6} {:>6} {:>8} {:>12}  sha256", "id", "epoch", "step", "bytes");
    for c in list {
        println!(
            "{:>6} {:>6} {:>8} {:>12}  {}",
            c["id"].as_i64().unwrap_or_default(),
            c["epoch"].as_u64().unwrap_or_default(),
            c["step"].as_u64().unwrap_or_default(),
            c["bytes"].as_u64().unwrap_or_default(),
            c["sha256"].as_str().unwrap_or("")
        );
    }
    let Some(dir) = download else {
        return Ok(true);
    };
    let newest = list.last().ok_or_else(|| ClientError::Other(format!("job {id} has no checkpoint")))?;
    let (query, extension) = format.query_and_extension();
    let url = format!("/jobs/{id}/checkpoints/{}?format={query}", newest["id"]);
    let bytes = client
        .send(client.request(Method::GET, &url))
        .await?
        .bytes()
        .await
        .map_err(|e| ClientError::Other(format!("downloading checkpoint {}: {e}", newest["id"])))?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| ClientError::Other(format!("creating {}: {e}", dir.display())))?;
    let path = dir.join(format!("{id}-checkpoint-{}.{extension}", newest["id"]));
    std::fs::write(&path, &bytes)
        .map_err(|e| ClientError::Other(format!("writing {}: {e}", path.display())))?;
    println!("saved {} ({} bytes)", path.display(), bytes.len());
    Ok(true)
}

fn print_jobs(jobs: &[Value]) {
    println!("{:<36}  {:<9}  {:<10}  {:<18}  {:>9}  name", "id", "status", "model", "backend", "progress");
    for job in jobs {
        let progress = &job["progress"];
        let steps = progress["steps"].as_u64().unwrap_or(0);
        let done =
            if steps == 0 { 0.0 } else { progress["step"].as_u64().unwrap_or(0) as f64 / steps as f64 };
        println!(
            "{:<36}  {:<9}  {:<10}  {:<18}  {:>8.0}%  {}",
            job["id"].as_str().unwrap_or(""),
            job["status"].as_str().unwrap_or(""),
            job["spec"]["model"]["kind"].as_str().unwrap_or(""),
            job["backend"].as_str().or(job["spec"]["backend"].as_str()).unwrap_or(""),
            done * 100.0,
            job["name"].as_str().unwrap_or(""),
        );
    }
}

/// Epoch rows as a table whose columns are the metrics any row has, fitted to the terminal.
fn print_epochs(epochs: &Value) {
    let rows = epochs.as_array().map_or(&[][..], Vec::as_slice);
    if rows.is_empty() {
        println!("no epoch finished");
        return;
    }
    for line in epochs_table(rows, terminal_width().unwrap_or(usize::MAX)) {
        println!("{line}");
    }
}

/// How often `cancel --wait` looks at the job.
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Asks the server to cancel job `id`; says whether it is stopped or when it will be, and with
/// `wait` polls the job until it has stopped. Succeeds if the job ended cancelled (or, without
/// `wait`, will).
async fn cancel(client: &Client, id: &str, wait: bool) -> Result<bool, ClientError> {
    let status = |job: &Value| job["status"].as_str().unwrap_or("?").to_string();
    let mut job = match client.post(&format!("/jobs/{id}/cancel"), &json!({})).await {
        // Already finished: cancelling again is not an error if it ended cancelled.
        Err(ClientError::Refused { status: reqwest::StatusCode::CONFLICT, .. }) => {
            let job = client.get(&format!("/jobs/{id}")).await?;
            println!("job {id}: already {}", status(&job));
            return Ok(status(&job) == "cancelled");
        }
        answer => answer?,
    };
    if status(&job) == "running" {
        if !wait {
            println!(
                "job {id}: cancel requested; it stops at its next training step \
                 (`kiln cancel --wait {id}` waits for it)"
            );
            return Ok(true);
        }
        println!("job {id}: cancel requested; waiting for it to stop at its next training step");
        while status(&job) == "running" {
            tokio::time::sleep(CANCEL_POLL).await;
            job = client.get(&format!("/jobs/{id}")).await?;
        }
    }
    let status = status(&job);
    match job["error"].as_str() {
        Some(error) => println!("job {id}: {status}: {error}"),
        None => println!("job {id}: {status}"),
    }
    Ok(status == "cancelled")
}

/// What `POST /jobs?dry_run=true` answered: the layers as a table, then the totals.
fn print_dry_run(answer: &Value) {
    let model = &answer["spec"]["model"];
    if let Some(layers) = answer["layers"].as_array() {
        println!("{:>5}  {:<15}  {:>12}  {:>10}", "layer", "kind", "output", "parameters");
        for layer in layers {
            let output = layer["output"].as_array().map_or(String::new(), |dims| {
                dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")
            });
            println!(
                "{:>5}  {:<15}  {:>12}  {:>10}",
                layer["index"].as_u64().unwrap_or(0),
                layer["kind"].as_str().unwrap_or(""),
                output,
                thousands(layer["parameters"].as_u64().unwrap_or(0))
            );
        }
    }
    let kind = model["kind"].as_str().unwrap_or("?");
    let mut totals =
        vec![format!("{kind}: {} parameters", thousands(answer["parameters"].as_u64().unwrap_or(0)))];
    if let Some(bytes) = answer["activation_bytes"].as_u64() {
        let batch = answer["spec"]["training"]["batch_size"].as_u64().unwrap_or(0);
        totals.push(format!("~{:.1} MiB of activations per batch of {batch}", bytes as f64 / 1048576.0));
    }
    if let Some(steps) = answer["steps"].as_u64().filter(|s| *s > 0) {
        totals.push(format!("{} steps", thousands(steps)));
    }
    totals.push(format!("lane {}", answer["lane"].as_str().unwrap_or("?")));
    println!("{}; nothing was stored", totals.join("; "));
}

/// `1268` as `1,268`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
