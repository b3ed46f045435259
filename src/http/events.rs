//! The event streams, as Server-Sent Events: `GET /jobs/{id}/events`, one job's history replayed
//! from the start (or after `Last-Event-ID`) and then live, ending after the job's final status;
//! `GET /events`, every job's events from now on (or after `Last-Event-ID`), never ending.
//!
//! Each event's `id` is its number in the store (the same on both streams), `event` its kind
//! (`status`, `step`, `epoch`, `checkpoint`; on `/events` also `deleted`, which has no id) and
//! `data` its JSON body, which on `/events` names its job first. Streams are capped
//! (`--max-event-streams`, both kinds together), send a keep-alive comment after
//! `--event-keep-alive-secs` (15) of silence so proxies keep an idle stream open, and end when
//! the server shuts down.

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
use crate::jobs::events::{CheckpointEvent, Follow, Next, StatusEvent, deleted_data};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/jobs/{id}/events", get(events)).route("/events", get(all_events))
}

/// The cursor a reconnecting client sends: the id of the last event it saw (`None`: no header).
fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let id = value.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()).filter(|id| *id >= 0);
    id.map(Some)
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
    let after = last_event_id(&headers)?.unwrap_or(0);
    let permit = stream_slot(&state)?;
    let follow = state.jobs.follow(id, after)?;
    Ok(respond(&state, follow, permit))
}

/// Follow every job: each change to any job as it happens.
///
/// `text/event-stream`. The events of `/jobs/{id}/events` (`status`, `step`, `epoch`,
/// `checkpoint`), with the same ids, of every job, each body naming its job first (`{"job":
/// "<id>", "status": "running", "backend": "cpu (burn-flex)"}`), and `deleted` (`{"job":
/// "<id>"}`) when a job is deleted: a `deleted` event has no `id` field, as it is not stored.
/// A submitted job's first event is its `queued` status. Without `Last-Event-ID` the stream
/// starts with what happens after it opened: open it, then list `GET /jobs`. With
/// `Last-Event-ID` it sends every stored event after that one, oldest first, then the live ones,
/// each once. Deletions are sent only live (a deleted job's events leave the store with it): a
/// client that reconnects lists `GET /jobs` again to see the jobs deleted meanwhile. The stream
/// never ends but at shutdown: reconnect then.
#[utoipa::path(get, path = "/events", tag = "jobs", operation_id = "all_events",
    params(
        ("Last-Event-ID" = Option<u64>, Header, description = "The last event id received: every later stored event is sent")),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 422, description = "Last-Event-ID is not an event id", body = Problem),
        (status = 503, description = "--max-event-streams streams are open", body = Problem)))]
async fn all_events(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let after = last_event_id(&headers)?;
    let permit = stream_slot(&state)?;
    let follow = state.jobs.follow_all(after)?;
    Ok(respond(&state, follow, permit))
}

/// A slot under `--max-event-streams`, or 503.
fn stream_slot(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    state.event_streams.clone().try_acquire_owned().map_err(|_| ApiError::Busy {
        detail: format!("{} event streams are open; retry in 5 s", state.jobs.config().max_event_streams),
        retry_after_secs: 5,
    })
}

/// The response that sends `follow`'s events, with keep-alives, until it ends or the server stops.
fn respond(state: &AppState, follow: Follow, permit: OwnedSemaphorePermit) -> Response {
    let watch = Watch { follow, jobs: state.jobs.clone(), stopping: state.stopping.clone(), _permit: permit };
    let events = stream::unfold(watch, |mut watch| async move {
        let event = watch.next().await?;
        Some((Ok::<_, Infallible>(event), watch))
    });
    let keep_alive = Duration::from_secs(state.jobs.config().event_keep_alive_secs);
    Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive)).into_response()
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
            Ok(Next::Event(e)) => {
                let data = if self.follow.is_all() { e.data_with_job() } else { e.data };
                Some(Event::default().id(e.id.to_string()).event(e.kind).data(data))
            }
            Ok(Next::Deleted(job)) => Some(Event::default().event("deleted").data(deleted_data(job))),
            Ok(Next::End) => None,
            Err(error) => {
                tracing::error!(%error, "reading the stored events failed; ending the stream");
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
#[openapi(paths(events, all_events), components(schemas(StatusEvent, CheckpointEvent)))]
pub struct Paths;
