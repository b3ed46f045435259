//! `GET /metrics`: the server's metrics (read key, as Prometheus sends one as a bearer token) in
//! the format the `Accept` header asks for — OpenMetrics when it names it, as Prometheus does,
//! else the classic text format 0.0.4 — and the middleware that counts every request by route
//! and status with its latency.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::{ApiError, Problem};
use crate::telemetry::Format;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// The server's metrics for Prometheus.
///
/// `kiln_jobs{status}`, `kiln_queue_depth{lane}`, `kiln_running_jobs{device}`,
/// `kiln_training_examples_per_second{lane,model}` and
/// `kiln_training_tokens_per_second{lane,model}` (summed over the jobs training now; a lane and
/// model kind with none has no series), `kiln_epochs_completed_total`,
/// `kiln_checkpoint_written_bytes_total`, `kiln_http_requests_total{method,route,status}` and
/// `kiln_http_request_duration_seconds{method,route}` (a histogram); `method` is `other` for
/// any but the standard methods, `route` is `unmatched` for a path no route has. Every series
/// also carries `replica`, this replica's id (`GET /cluster`); `kiln_jobs` and
/// `kiln_queue_depth` count the whole cluster's jobs, the same on every replica.
///
/// OpenMetrics 1.0.0 when `Accept` names `application/openmetrics-text` (as Prometheus does) at
/// a quality no lower than the text format's; otherwise the classic text format 0.0.4
/// (`curl`, `promtool check metrics`), whose `# TYPE` lines name counters with `_total`.
#[utoipa::path(get, path = "/metrics", tag = "health", operation_id = "prometheus_metrics",
    responses((status = 200, description = "OpenMetrics text format 1.0.0, or the Prometheus text format 0.0.4, as `Accept` asks",
            content((String = "application/openmetrics-text"), (String = "text/plain"))),
        (status = 500, body = Problem)))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let format = negotiate(&headers);
    let text = state.jobs.prometheus_text()?;
    let text = format.convert(text);
    let headers = [(header::CONTENT_TYPE, format.content_type()), (header::VARY, "accept")];
    Ok((headers, text).into_response())
}

/// The format an `Accept` header asks for: OpenMetrics 1.0.0 (or with no version) if named at a
/// quality above 0 and no lower than the best of `text/plain`, `text/*` and `*/*`; the text
/// format otherwise, also with no `Accept` at all.
fn negotiate(headers: &HeaderMap) -> Format {
    let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
    let ranges = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok());
    for range in ranges.flat_map(|v| v.split(',')) {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let (mut quality, mut version) = (1.0_f32, None);
        for (name, value) in parts.filter_map(|p| p.split_once('=')) {
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => quality = value.parse().unwrap_or(0.0),
                "version" => version = Some(value.to_string()),
                _ => {}
            }
        }
        match media.as_str() {
            "application/openmetrics-text" if version.is_none_or(|v| v == "1.0.0") => {
                openmetrics = openmetrics.max(quality)
            }
            "text/plain" | "text/*" | "*/*" => text = text.max(quality),
            _ => {}
        }
    }
    if openmetrics > 0.0 && openmetrics >= text { Format::OpenMetrics } else { Format::Text }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn format(accept: &[&str]) -> Format {
        let mut headers = HeaderMap::new();
        for value in accept {
            headers.append(header::ACCEPT, value.parse().unwrap());
        }
        negotiate(&headers)
    }

    #[test]
    fn prometheus_gets_openmetrics() {
        // What Prometheus 2.42 sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(format(&[prometheus]), Format::OpenMetrics);
        assert_eq!(format(&["application/openmetrics-text"]), Format::OpenMetrics);
        assert_eq!(
            format(&["Application/OpenMetrics-Text; Version=\"1.0.0\"; q=0.9, text/plain;q=0.2"]),
            Format::OpenMetrics
        );
        assert_eq!(format(&["text/plain;q=0.5", "application/openmetrics-text"]), Format::OpenMetrics);
    }

    #[test]
    fn everyone_else_gets_the_text_format() {
        assert_eq!(format(&[]), Format::Text, "no Accept");
        assert_eq!(format(&["*/*"]), Format::Text, "curl");
        assert_eq!(format(&["text/plain;version=0.0.4"]), Format::Text);
        assert_eq!(format(&["text/plain"]), Format::Text);
        assert_eq!(format(&["application/json"]), Format::Text, "nothing acceptable: the default");
        assert_eq!(format(&["application/openmetrics-text;q=0.5,text/plain"]), Format::Text, "preferred");
        assert_eq!(format(&["application/openmetrics-text;q=0"]), Format::Text, "refused");
        assert_eq!(format(&["application/openmetrics-text;q=oops"]), Format::Text, "a bad quality");
        assert_eq!(format(&["application/openmetrics-text;version=0.0.1"]), Format::Text, "not ours");
    }

    #[test]
    fn each_format_has_its_content_type() {
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(Format::Text.content_type(), "text/plain; version=0.0.4; charset=utf-8");
    }
}
