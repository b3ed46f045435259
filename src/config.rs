//! The one configuration of a kiln server.
//!
//! Parsed once in `main.rs` from command-line flags, each with a `KILN_*` environment fallback,
//! and passed down by value. Everything the server keeps lives under [`Config::data_dir`]; the
//! `max_*` fields are the server-side caps that job validation enforces.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use uuid::Uuid;

/// Settings of `kiln serve`. Every field is a flag with an environment fallback.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address and port the HTTP API listens on.
    #[arg(long, env = "KILN_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Directory holding everything the server keeps: the SQLite database, checkpoints and
    /// data sets (`<data-dir>/datasets/fashion-mnist/` is searched before the system copy;
    /// uploaded text is kept in `<data-dir>/datasets/uploads/`).
    #[arg(long, env = "KILN_DATA_DIR", default_value = "./kiln-data")]
    pub data_dir: PathBuf,
    /// Where checkpoints and data sets are kept when several replicas share them: a volume each
    /// mounts (NFS, a cloud file share, a Docker volume). The data dir then keeps only what is
    /// this replica's own (the GPU caches, a generated API key); unset, everything is in the data
    /// dir.
    #[arg(long, env = "KILN_SHARED_DIR")]
    pub shared_dir: Option<PathBuf>,
    /// Where jobs, metrics and the indexes are kept: unset, or `sqlite://PATH`, is an SQLite file
    /// (by default `kiln.sqlite3` in the data dir); `postgres://USER:PASSWORD@HOST:PORT/DB` is a
    /// PostgreSQL server, which several replicas may share.
    #[arg(long, env = "KILN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,
    /// Seconds a replica's heartbeat stays good: a replica that has not renewed it for this long
    /// is taken for dead, and the jobs it was training are queued again for the others. It
    /// renews it every third of this.
    #[arg(long, env = "KILN_LEASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_secs: u64,
    /// The URL at which this replica's API answers, as `GET /cluster` lists it (default:
    /// `http://` and the address it listens on).
    #[arg(long, env = "KILN_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// Number of jobs that train at the same time on CPU backends.
    #[arg(long, env = "KILN_WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,

    /// Look for WGPU devices (GPUs through Vulkan, Metal or DX12) at start-up; `false` serves
    /// CPU backends only.
    #[arg(long, env = "KILN_WGPU", default_value_t = true, action = clap::ArgAction::Set)]
    pub wgpu: bool,

    /// Number of jobs that train at the same time on each GPU device, beside the CPU workers.
    #[arg(long, env = "KILN_GPU_JOBS_PER_DEVICE", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub gpu_jobs_per_device: u32,

    /// Directory of the GPU caches (CubeCL's autotune results and kernels, the drivers' shader
    /// caches), kept so that a restart does not compile and tune again; default
    /// `<data-dir>/gpu-cache`.
    #[arg(long, env = "KILN_GPU_CACHE_DIR")]
    pub gpu_cache_dir: Option<PathBuf>,

    /// Most jobs that may wait in the queue; a submit beyond it gets 429 with `Retry-After`.
    #[arg(long, env = "KILN_QUEUE_CAPACITY", default_value_t = 64)]
    pub queue_capacity: usize,

    /// Largest `training.epochs` a job may ask for.
    #[arg(long, env = "KILN_MAX_EPOCHS", default_value_t = 1000)]
    pub max_epochs: u32,

    /// Largest `training.batch_size` a job may ask for.
    #[arg(long, env = "KILN_MAX_BATCH_SIZE", default_value_t = 4096)]
    pub max_batch_size: usize,

    /// Largest model, in trainable parameters, a job may build.
    #[arg(long, env = "KILN_MAX_PARAMETERS", default_value_t = 50_000_000)]
    pub max_parameters: usize,

    /// Largest estimated activation memory of one training batch, in MiB: bigger jobs are
    /// refused at submit with the estimate instead of exhausting the machine's memory.
    #[arg(long, env = "KILN_MAX_BATCH_MEMORY_MIB", default_value_t = 8192)]
    pub max_batch_memory_mib: usize,

    /// Largest number of examples a generated (`synthetic_*`) data set may have, train and test
    /// together.
    #[arg(long, env = "KILN_MAX_SYNTHETIC_EXAMPLES", default_value_t = 200_000)]
    pub max_synthetic_examples: usize,

    /// Largest request body accepted, in bytes (job definitions; uploaded text has its own cap).
    #[arg(long, env = "KILN_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,

    /// Most tokens one `POST /jobs/{id}/generate` may ask for.
    #[arg(long, env = "KILN_MAX_GENERATE_TOKENS", default_value_t = 2000)]
    pub max_generate_tokens: usize,

    /// Most images one `POST /jobs/{id}/predict` may send.
    #[arg(long, env = "KILN_MAX_PREDICT_BATCH", default_value_t = 256)]
    pub max_predict_batch: usize,

    /// Longest prefix, in characters, `POST /jobs/{id}/generate` accepts.
    #[arg(long, env = "KILN_MAX_PREFIX_CHARS", default_value_t = 10_000)]
    pub max_prefix_chars: usize,

    /// Largest upload `POST /datasets` accepts (a text corpus, or an image archive as sent), in
    /// bytes; a bigger upload gets 413.
    #[arg(long, env = "KILN_MAX_DATASET_BYTES", default_value_t = 64 << 20)]
    pub max_dataset_bytes: usize,

    /// Most bytes one image data set upload may expand to: its archive's entries once
    /// decompressed, and the decoded images kiln stores (a decompression bomb stops here, 422).
    #[arg(long, env = "KILN_MAX_DECODED_BYTES", default_value_t = 512 << 20)]
    pub max_decoded_bytes: u64,

    /// Most classes an uploaded image data set may have.
    #[arg(long, env = "KILN_MAX_CLASSES", default_value_t = 1000)]
    pub max_classes: usize,

    /// Most uploaded data sets stored at once, uploads in progress included; one more gets 507.
    #[arg(long, env = "KILN_MAX_UPLOADS", default_value_t = 100)]
    pub max_uploads: usize,

    /// Most bytes all uploaded data sets may take together, uploads in progress included; an
    /// upload that would pass it gets 507.
    #[arg(long, env = "KILN_MAX_UPLOADS_BYTES", default_value_t = 1 << 30)]
    pub max_uploads_bytes: u64,

    /// Seconds a client is told to wait (`Retry-After`) when the queue is full.
    #[arg(long, env = "KILN_RETRY_AFTER_SECS", default_value_t = 30)]
    pub retry_after_secs: u64,

    /// One API key with full access (prefer the environment variable to the flag, which shows
    /// in process listings). See `src/keys.rs` for how keys are chosen.
    #[arg(long, env = "KILN_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,

    /// A file of API keys, one per line: `<read|write> sha256:<hex of the key's SHA-256> [label]`
    /// (`kiln new-api-key` prints a key and its line).
    #[arg(long, env = "KILN_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Serve without API keys on any address. Without keys a loopback server is open anyway;
    /// on any other address kiln otherwise generates a key into `<data-dir>/api-key`.
    #[arg(long, env = "KILN_NO_AUTH")]
    pub no_auth: bool,

    /// Origins (`https://host[:port]`) whose web pages may call the API; repeat the flag or
    /// separate with commas. Without it no CORS headers are sent.
    #[arg(long = "cors-origin", env = "KILN_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Seconds a connection may take to send a request's head, counted from when the server
    /// waits for it: slow headers and idle keep-alive connections are closed after this.
    #[arg(long, env = "KILN_IDLE_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout_secs: u64,

    /// Seconds the server waits for each next piece of a request body: a stalled upload is cut,
    /// a large slow one that keeps sending is not.
    #[arg(long, env = "KILN_BODY_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout_secs: u64,

    /// Most open client connections; one more is answered 503 and closed.
    #[arg(long, env = "KILN_MAX_CONNECTIONS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,

    /// Most open connections from one client address; one more from it is answered 503 and
    /// closed. Default: a quarter of `--max-connections` (at least 1).
    #[arg(long, env = "KILN_MAX_CONNECTIONS_PER_IP", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections_per_ip: Option<u32>,

    /// Seconds a response may make no progress while being written (its client not reading)
    /// before the connection is closed. An event stream whose client keeps reading never hits it.
    #[arg(long, env = "KILN_WRITE_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub write_timeout_secs: u64,

    /// Most requests one connection may send (pipelined or one after another); the answer to
    /// the last says `connection: close`, as nginx's `keepalive_requests` does.
    #[arg(long, env = "KILN_MAX_REQUESTS_PER_CONNECTION", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_requests_per_connection: u32,

    /// Start even though the database does not know some jobs' or uploads' files in the data
    /// dir (a lost or restored database): index what can be read back, keep the rest in place.
    #[arg(long, env = "KILN_ADOPT_ORPHANS", conflicts_with = "discard_orphans")]
    pub adopt_orphans: bool,

    /// Start even though the database does not know some jobs' or uploads' files in the data
    /// dir, and delete those files.
    #[arg(long, env = "KILN_DISCARD_ORPHANS")]
    pub discard_orphans: bool,

    /// Most `POST /jobs/{id}/generate` requests and safetensors exports of checkpoints running
    /// at once; one more is answered 503 with `Retry-After`.
    #[arg(long, env = "KILN_MAX_GENERATIONS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub max_generations: u32,

    /// Most event streams open at once (`GET /jobs/{id}/events` over all jobs and `GET /events`,
    /// together); one more is answered 503 with `Retry-After`. Each stream also holds one of
    /// `--max-connections`.
    #[arg(long, env = "KILN_MAX_EVENT_STREAMS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_event_streams: u32,

    /// Seconds an event stream may stay silent before the server sends a comment line, so that
    /// proxies do not close an idle stream.
    #[arg(long, env = "KILN_EVENT_KEEP_ALIVE_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub event_keep_alive_secs: u64,

    /// Language models kept loaded for generation, newest used first; 0 loads each time.
    #[arg(long, env = "KILN_GENERATION_CACHE", default_value_t = 4)]
    pub generation_cache: usize,

    /// Largest `checkpoint.keep_last` a job may ask for.
    #[arg(long, env = "KILN_MAX_KEEP_LAST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_keep_last: u32,

    /// Most disk one job's checkpoints may take, in MiB, as estimated at submit from the model's
    /// size, its optimizer and `keep_last`.
    #[arg(long, env = "KILN_MAX_JOB_CHECKPOINT_MIB", default_value_t = 8192)]
    pub max_job_checkpoint_mib: u64,

    /// Free space, in MiB, the data directory's file system must keep: below it submits and
    /// uploads answer 507 and `/readyz` says not ready.
    #[arg(long, env = "KILN_MIN_FREE_DISK_MIB", default_value_t = 512)]
    pub min_free_disk_mib: u64,
}

impl Config {
    /// The defaults of every flag, serving from `data_dir` on an ephemeral loopback port; what
    /// tests and benchmarks start from. `KILN_*` variables in the environment still apply.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: Config,
        }
        let mut config = <Defaults as clap::Parser>::parse_from(["kiln"]).config;
        config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        config.data_dir = data_dir.into();
        config
    }

    /// Directory of the GPU caches.
    pub fn gpu_cache_dir(&self) -> PathBuf {
        self.gpu_cache_dir.clone().unwrap_or_else(|| self.data_dir.join("gpu-cache"))
    }

    /// Most open connections from one client address (`--max-connections-per-ip`, or a quarter
    /// of `--max-connections`).
    pub fn connections_per_ip(&self) -> u32 {
        self.max_connections_per_ip.unwrap_or((self.max_connections / 4).max(1))
    }

    /// Path of the SQLite database, when the store is SQLite's.
    pub fn database_path(&self) -> PathBuf {
        match &self.database_url {
            Some(DatabaseUrl::Sqlite(path)) => path.clone(),
            _ => self.data_dir.join("kiln.sqlite3"),
        }
    }

    /// The database the store opens: `--database-url`, else SQLite in the data dir.
    pub fn database(&self) -> DatabaseUrl {
        self.database_url.clone().unwrap_or_else(|| DatabaseUrl::Sqlite(self.database_path()))
    }

    /// The directory the database's file paths are relative to: `--shared-dir`, else the data
    /// dir. It holds `jobs/` (checkpoints) and `datasets/`.
    pub fn files_dir(&self) -> &Path {
        self.shared_dir.as_deref().unwrap_or(&self.data_dir)
    }

    /// Directory holding one folder per job (its checkpoints).
    pub fn jobs_dir(&self) -> PathBuf {
        self.files_dir().join("jobs")
    }

    /// Directory holding one job's files.
    pub fn job_dir(&self, id: Uuid) -> PathBuf {
        self.jobs_dir().join(id.to_string())
    }

    /// Directory holding one job's checkpoints, one folder each.
    pub fn checkpoints_dir(&self, id: Uuid) -> PathBuf {
        self.job_dir(id).join("checkpoints")
    }

    /// Directory holding data sets a user placed or uploaded.
    pub fn datasets_dir(&self) -> PathBuf {
        self.files_dir().join("datasets")
    }

    /// Directory holding the data sets uploaded with `POST /datasets`, one file each.
    pub fn uploads_dir(&self) -> PathBuf {
        uploads_in(&self.datasets_dir())
    }

    /// The file holding uploaded image data set `id`, decoded (see [`crate::data::uploaded`]).
    /// It exists as long as `GET /datasets/{id}` finds the data set.
    pub fn uploaded_images_path(&self, id: Uuid) -> PathBuf {
        images_in(&self.datasets_dir(), id)
    }

    /// The file holding uploaded data set `id`: UTF-8 text, exactly the bytes uploaded. It exists
    /// as long as `GET /datasets/{id}` finds the data set.
    pub fn uploaded_dataset_path(&self, id: Uuid) -> PathBuf {
        self.uploads_dir().join(format!("{id}.txt"))
    }
}

/// The uploads directory of `datasets_dir` (see [`Config::uploads_dir`]).
pub fn uploads_in(datasets_dir: &Path) -> PathBuf {
    datasets_dir.join("uploads")
}

/// The file of uploaded image data set `id` in `datasets_dir` (see
/// [`Config::uploaded_images_path`]), for code that knows only that directory.
pub fn images_in(datasets_dir: &Path, id: Uuid) -> PathBuf {
    uploads_in(datasets_dir).join(format!("{id}.safetensors"))
}

/// The database of `--database-url`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file (`sqlite://PATH`; `sqlite:///abs/path` or `sqlite://relative/path`).
    Sqlite(PathBuf),
    /// A PostgreSQL server, as libpq's URL (`postgres://` or `postgresql://`); it may hold a
    /// password, so it is never printed.
    Postgres(String),
    /// Neither: the store refuses to open it.
    Unrecognised,
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "Sqlite({path:?})"),
            DatabaseUrl::Postgres(_) => f.write_str("Postgres(…)"),
            DatabaseUrl::Unrecognised => f.write_str("Unrecognised"),
        }
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    /// Never fails here: clap would print a refused value whole, password included. A value of
    /// neither form is refused when the store opens, without repeating it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if let Some(path) = s.strip_prefix("sqlite://").filter(|p| !p.is_empty()) {
            DatabaseUrl::Sqlite(PathBuf::from(path))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            DatabaseUrl::Postgres(s.to_string())
        } else {
            DatabaseUrl::Unrecognised
        })
    }
}

/// A secret from the configuration (`KILN_API_KEY`): never printed, not even by `Debug`.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Self(s.to_string()))
    }
}
