//! The HTTP API: the router, its shared state and the server's life cycle.
//!
//! Each resource has its own module with its own `router()`: [`jobs`] (jobs, their metrics and
//! checkpoints), [`events`] (a job's live event stream), [`datasets`] (uploaded text corpora),
//! [`backends`] (devices), [`cluster`] (replicas), [`health`] (liveness, readiness), [`prometheus`] (`/metrics`),
//! [`dashboard`] (the page at `/`) and [`openapi`] (the API document). Handlers are thin: they
//! extract, call one method of [`crate::jobs::Jobs`] and map the result; every error goes through
//! [`error::ApiError`]. [`auth`] checks keys and media types in front of every route; [`server`]
//! is the connection loop (timeouts, the connection caps), [`wire`] what passes on its sockets
//! (the write deadline, problem+json for hyper's own error answers).

pub mod auth;
pub mod backends;
pub mod checkpoints;
pub mod cluster;
pub mod dashboard;
pub mod datasets;
pub mod error;
pub mod events;
pub mod health;
pub mod jobs;
pub mod limits;
pub mod openapi;
pub mod predict;
pub mod prometheus;
pub mod server;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use self::limits::{BodyCap, declared_length};
use self::server::ConnectionLimits;
use crate::config::Config;
use crate::jobs::{JobError, Jobs};
use crate::keys::Access;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub jobs: Jobs,
    /// Cancelled once shutdown began: `/readyz` answers 503 so load balancers stop sending
    /// work, and open event streams end.
    pub stopping: CancellationToken,
    /// Slots for open event streams (`--max-event-streams`).
    pub event_streams: Arc<Semaphore>,
}

/// The whole API behind its keys (`access`). Bodies are capped at `--max-body-bytes`, except
/// uploads to `/datasets`, which set their own cap (`--max-dataset-bytes`). Layers, outermost
/// first: tracing, CORS, the problem+json rewrite of bare errors, keys, media types, the body
/// read timeout.
pub fn router(state: AppState, access: Access) -> Result<Router, String> {
    let config = state.jobs.config();
    let limit = config.max_body_bytes;
    let cors = auth::cors(&config.cors_origins)?;
    let body_timeout = Duration::from_secs(config.body_timeout_secs);
    let app = Router::new()
        .merge(jobs::router().route_layer(from_fn_with_state(BodyCap::json(limit), declared_length)))
        .merge(checkpoints::router().route_layer(from_fn_with_state(BodyCap::json(limit), declared_length)))
        .merge(events::router())
        .merge(datasets::router(config.max_dataset_bytes))
        .merge(predict::router(config.max_dataset_bytes))
        .merge(backends::router())
        .merge(cluster::router())
        .merge(health::router())
        .merge(openapi::router())
        .merge(prometheus::router())
        .merge(dashboard::router())
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(from_fn(auth::json_only))
        .layer(from_fn_with_state(Arc::new(access), auth::require_key))
        .layer(from_fn(error::problems_only))
        .layer(from_fn_with_state(state.clone(), prometheus::count_requests));
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    // A 5xx is logged at WARN here: most are expected refusals (503 over a cap, 507 under the
    // disk floor), and a real internal error is logged at ERROR with its cause by `ApiError`.
    let trace = TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::WARN));
    Ok(app.layer(trace).with_state(state))
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Jobs(#[from] JobError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeysError),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Serves the API on `listener` until `shutdown` completes, then stops the workers: running
/// jobs checkpoint at their next step and are queued again for the next start.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr()?;
    let limits = ConnectionLimits {
        max_connections: config.max_connections as usize,
        max_connections_per_ip: config.connections_per_ip() as usize,
        idle_timeout: Duration::from_secs(config.idle_timeout_secs),
        write_timeout: Duration::from_secs(config.write_timeout_secs),
        max_requests_per_connection: config.max_requests_per_connection,
        drain_timeout: Duration::from_secs(60),
    };
    let mut config = config;
    // Other replicas and `GET /cluster` reach this one where it listens, unless told otherwise.
    if config.advertise_url.is_none() {
        config.advertise_url = Some(format!("http://{addr}"));
    }
    let jobs = tokio::task::spawn_blocking(move || Jobs::start(config))
        .await
        .expect("starting the job service does not panic")?;
    let access = Access::resolve(jobs.config(), addr.ip());
    let stopping = CancellationToken::new();
    let event_streams = events::stream_slots(jobs.config().max_event_streams);
    let state = AppState { jobs: jobs.clone(), stopping: stopping.clone(), event_streams };
    let app =
        access.map_err(ServeError::from).and_then(|access| router(state, access).map_err(ServeError::Config));
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            tokio::task::spawn_blocking(move || jobs.shutdown()).await.expect("shutdown does not panic");
            return Err(e);
        }
    };
    tracing::info!(%addr, "kiln listening");
    let service = jobs.clone();
    server::run(listener, app, limits, async move {
        shutdown.await;
        stopping.cancel();
        service.begin_shutdown();
        tracing::info!("shutting down: stopping training at the next step");
    })
    .await;
    // An error here is a runtime that is itself shutting down (a test's, dropped): nothing to do.
    let _ = tokio::task::spawn_blocking(move || jobs.shutdown()).await;
    tracing::info!("kiln stopped");
    Ok(())
}
