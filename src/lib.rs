//! # kiln
//!
//! A model-training microservice. Clients submit job definitions over HTTP — a model, a data
//! set, hyperparameters and a backend — and a pool of workers trains them with Burn, recording
//! metrics and checkpoints in a data directory that survives restarts.
//!
//! ## Layout
//!
//! - [`config`]: the one configuration, from flags and `KILN_*` variables.
//! - [`http`]: the axum API — router, one module per resource, the error type, OpenAPI.
//! - [`definition`]: the job definition — what a client sends, its validation, what kiln runs —
//!   and the generate request.
//! - [`jobs`]: the job service — the store (SQLite or PostgreSQL), the replicas, the queue, the
//!   workers, uploaded data sets.
//! - [`train`]: the training engine, the tasks it drives, checkpoints, generation.
//! - [`metrics`]: what training reports and the API shows (progress, epoch rows, step points).
//! - [`models`]: the networks, each built from a Burn `Config`.
//! - [`fused`]: the recurrent cells' pointwise step and the sigmoid as one operation each, with
//!   fused CPU kernels (the `kiln-kernels` crate in `kernels/`).
//! - [`data`]: data sets (Fashion-MNIST from IDX files, generated images).
//! - [`text`]: text corpora for language models — tokens, vocabulary, batches, The Time Machine.
//! - [`keys`]: API keys — where they come from, how a presented one is checked.
//! - [`backend`]: which Burn devices a job can train on.
//! - [`bench`]: the throughput benchmark behind `kiln bench`.
//! - [`client`]: the command-line client (`kiln submit --follow`, `jobs`, `metrics` ...).
//! - [`healthcheck`]: `kiln healthcheck`, the container health check.
//! - [`telemetry`]: the Prometheus metrics of `GET /metrics`.
//! - [`blocking`]: waiting on the service's locks from async handlers and threads alike.
//! - [`parity`]: `kiln parity`, training that `bench/parity.py` replays in PyTorch step by step.
//!
//! [`serve`] runs the whole service on an already-bound listener, which is how the tests start
//! a real server on `127.0.0.1:0`.

pub mod backend;
pub mod bench;
pub mod blocking;
pub mod client;
pub mod config;
pub mod data;
pub mod definition;
pub mod fused;
pub mod healthcheck;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod metrics;
pub mod models;
mod panics;
pub mod parity;
pub mod telemetry;
pub mod text;
pub mod train;

pub use config::Config;
pub use http::serve;
