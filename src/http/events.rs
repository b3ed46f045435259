//! `GET /jobs/{id}/events`: a job's history as Server-Sent Events, replayed from the start (or
//! after `Last-Event-ID`) and then live, ending after the job's final status.
//!
//! Each event's `id` is its number in the store, `event` its kind (`status`, `step`, `epoch`,
//! `checkpoint`) and `data` its JSON body. Streams are capped (`--max-event-streams`), send a
//! keep-alive comment after `--event-keep-alive-secs` (15) of silence so proxies keep an idle
//! stream open, and end when the server shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::error::{ApiError, Problem};
use super::jobs::job_id;
use crate::jobs::Jobs;
use crate::jobs::events::{CheckpointEvent, Follow, Next, StatusEvent};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/jobs/{id}/events", get(events))
}

/// The cursor a reconnecting client sends: the id of the last event it saw.
fn last_event_id(headers: &HeaderMap) -> Result<i64, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(0);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|id| *id >= 0)
        .ok_or_else(|| ApiError::invalid("Last-Event-ID", "must be the id of an event this stream sent"))
}

/// Follow a job: its events so far, then new ones as they happen.
///
/// `text/event-stream`. Events: `status` (`{"status", "backend"?, "error"?}`), `step`
/// (`{"step", "epoch", "loss", "grad_norm"?}`), `epoch` (the epoch's row, as in
/// `/jobs/{id}/metrics`), `checkpoint` (`{"id", "epoch", "step", "bytes", "sha256"}`). A client
/// that reconnects with `Last-Event-ID` gets the events after that one. The stream ends after a
/// final status (`succeeded`, `failed`, `cancelled`) or when the job is deleted: do not
/// reconnect then.
#[utoipa::path(get, path = "/jobs/{id}/events", tag = "jobs", operation_id = "job_events",
    params(
        ("id" = String, Path, description = "The job's id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "The last event id received: only later events are sent")),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 404, body = Problem),
        (status = 422, description = "Last-Event-ID is not an event id", body = Problem),
        (status = 503, description = "--max-event-streams streams are open", body = Problem)))]
async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let after = last_event_id(&headers)?;
    let permit = state.event_streams.clone().try_acquire_owned().map_err(|_| ApiError::Busy {
        detail: format!("{} event streams are open; retry in 5 s", state.jobs.config().max_event_streams),
        retry_after_secs: 5,
    })?;
    let follow = state.jobs.follow(id, after)?;
    let watch = Watch { follow, jobs: state.jobs.clone(), stopping: state.stopping.clone(), _permit: permit };
    let events = stream::unfold(watch, |mut watch| async move {
        let event = watch.next().await?;
        Some((Ok::<_, Infallible>(event), watch))
    });
    let keep_alive = Duration::from_secs(state.jobs.config().event_keep_alive_secs);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive)).into_response())
}

/// One open stream: its place in the job's history and its slot under the cap.
struct Watch {
    follow: Follow,
    jobs: Jobs,
    stopping: CancellationToken,
    _permit: OwnedSemaphorePermit,
}

impl Watch {
    /// The next event to send, or `None` to end the stream.
    async fn next(&mut self) -> Option<Event> {
        let next = tokio::select! {
            next = self.follow.next(&self.jobs) => next,
            () = self.stopping.cancelled() => return None,
        };
        match next {
            Ok(Next::Event(e)) => Some(Event::default().id(e.id.to_string()).event(e.kind).data(e.data)),
            Ok(Next::End) => None,
            Err(error) => {
                tracing::error!(%error, "reading a job's events failed; ending the stream");
                None
            }
        }
    }
}

/// The cap on open streams, from `--max-event-streams`.
pub fn stream_slots(max: u32) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(max as usize))
}

/// Path list for the OpenAPI document, with the bodies of the `status` and `checkpoint` events.
#[derive(utoipa::OpenApi)]
#[openapi(paths(events), components(schemas(StatusEvent, CheckpointEvent)))]
pub struct Paths;
