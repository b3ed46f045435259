//! `GET /metrics`: the server's metrics in the OpenMetrics text format (read key, as Prometheus
//! sends one as a bearer token), and the middleware that counts every request by route and
//! status with its latency.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::{ApiError, Problem};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// The content type of what `prometheus-client` writes: the OpenMetrics text format, which
/// Prometheus reads (it asks for it first).
const TEXT_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The server's metrics for Prometheus.
///
/// `kiln_jobs{status}`, `kiln_queue_depth{lane}`, `kiln_running_jobs{device}`,
/// `kiln_job_throughput{job,unit}` (examples or tokens per second of each running job),
/// `kiln_epochs_completed_total`, `kiln_checkpoint_bytes_written_total`,
/// `kiln_http_requests_total{method,route,status}` and
/// `kiln_http_request_duration_seconds{method,route}` (a histogram); `method` is `other` for
/// any but the standard methods, `route` is `unmatched` for a path no route has.
#[utoipa::path(get, path = "/metrics", tag = "health", operation_id = "prometheus_metrics",
    responses((status = 200, description = "OpenMetrics text format 1.0.0", content_type = "application/openmetrics-text", body = String),
        (status = 500, body = Problem)))]
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.jobs.prometheus_text()?;
    Ok(([(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response())
}

/// Counts a request once it is answered: its method (`other` for any but the standard ones), its
/// route's pattern (`unmatched` for a path no route has), its status and how long the answer
/// took to start. No label takes a value a client makes up (see [`crate::telemetry`]).
pub async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let response = next.run(request).await;
    let route = route.as_deref().unwrap_or("unmatched");
    state.jobs.telemetry().request(
        &method,
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Path list for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(metrics))]
pub struct Paths;
