//! The HTTP API: the router, its shared state and the server's life cycle.
//!
//! Each resource has its own module with its own `router()`: [`jobs`] (jobs, their metrics and
//! checkpoints), [`datasets`] (uploaded text corpora), [`backends`] (devices), [`health`]
//! (liveness, readiness) and [`openapi`] (the API document). Handlers are thin: they extract, call one method of [`crate::jobs::Jobs`]
//! and map the result; every error goes through [`error::ApiError`].

pub mod backends;
pub mod datasets;
pub mod error;
pub mod health;
pub mod jobs;
pub mod limits;
pub mod openapi;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use self::limits::{BodyCap, declared_length};
use crate::config::Config;
use crate::jobs::{JobError, Jobs};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub jobs: Jobs,
    /// False once shutdown began: `/readyz` answers 503 so load balancers stop sending work.
    pub ready: Arc<AtomicBool>,
}

/// The whole API. Bodies are capped at `--max-body-bytes`, except uploads to `/datasets`, which
/// set their own cap (`--max-dataset-bytes`).
pub fn router(state: AppState) -> Router {
    let limit = state.jobs.config().max_body_bytes;
    Router::new()
        .merge(jobs::router().route_layer(from_fn_with_state(BodyCap::json(limit), declared_length)))
        .merge(datasets::router(state.jobs.config().max_dataset_bytes))
        .merge(backends::router())
        .merge(health::router())
        .merge(openapi::router())
        .layer(DefaultBodyLimit::max(limit))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then stops the workers: running
/// jobs checkpoint at their next step and are queued again for the next start.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), JobError> {
    let jobs = tokio::task::spawn_blocking(move || Jobs::start(config))
        .await
        .expect("starting the job service does not panic")?;
    let ready = Arc::new(AtomicBool::new(true));
    let state = AppState { jobs: jobs.clone(), ready: ready.clone() };
    tracing::info!(addr = %listener.local_addr()?, "kiln listening");
    let app = router(state);
    let stopping = jobs.clone();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            ready.store(false, Ordering::SeqCst);
            stopping.begin_shutdown();
            tracing::info!("shutting down: stopping training at the next step");
        })
        .await;
    tokio::task::spawn_blocking(move || jobs.shutdown()).await.expect("shutdown does not panic");
    tracing::info!("kiln stopped");
    Ok(result?)
}
