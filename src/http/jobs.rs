//! `/jobs`: submit, list, inspect, cancel and delete jobs; read their metrics; generate text.
//! Their checkpoints are in [`super::checkpoints`].

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, Problem};
use super::limits::BodyCap;
use crate::definition::generate::GenerateRequest;
use crate::jobs::dry_run::DryRun;
use crate::jobs::generation::Generated;
use crate::jobs::store::MetricsPage;
use crate::jobs::{Job, JobId, JobStatus};
use crate::metrics::{EpochMetrics, StepPoint};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", post(submit).get(list))
        .route("/jobs/{id}", get(show).delete(remove))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/metrics", get(metrics))
        .route("/jobs/{id}/generate", post(generate))
}

const MAX_IDEMPOTENCY_KEY: usize = 255;
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

pub(super) fn job_id(raw: &str) -> Result<JobId, ApiError> {
    JobId::parse_str(raw).map_err(|_| ApiError::NotFound(format!("job {raw}")))
}

/// Parses an optional cursor (`after`) and page size (`limit`). An empty value is not a cursor:
/// the document says `after` is an integer, so `after=` is refused like any other non-number.
fn page(after: Option<&str>, limit: Option<&str>) -> Result<(i64, usize), ApiError> {
    let after = match after {
        None => 0,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|a| *a >= 0)
            .ok_or_else(|| ApiError::invalid("after", "must be a cursor returned as next_after"))?,
    };
    let limit = match limit {
        None => DEFAULT_PAGE,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| ApiError::invalid("limit", format!("must be between 1 and {MAX_PAGE}")))?,
    };
    Ok((after, limit))
}

fn located(status: StatusCode, job: Job) -> Response {
    let location =
        HeaderValue::from_str(&format!("/jobs/{}", job.id)).expect("a UUID path is a valid header");
    (status, [(header::LOCATION, location)], Json(job)).into_response()
}

/// The `Idempotency-Key` of a submit, if it has one: 1 to 255 visible ASCII characters (no
/// spaces), else a 400 naming the header.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let visible =
        |k: &&str| (1..=MAX_IDEMPOTENCY_KEY).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic());
    match std::str::from_utf8(value.as_bytes()).ok().filter(visible) {
        Some(key) => Ok(Some(key)),
        None => Err(ApiError::BadRequest(format!(
            "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters, without spaces"
        ))),
    }
}

/// Query of `POST /jobs`.
#[derive(Debug, Deserialize, IntoParams)]
struct SubmitQuery {
    /// `true`: validate the definition and answer what would run (200, a `DryRun`: the layers
    /// with their shapes and parameters, the totals, the lane), storing nothing.
    #[param(value_type = Option<bool>)]
    dry_run: Option<String>,
}

/// What `POST /jobs` answers with 200, for the API document: the job an `Idempotency-Key`
/// already made, or a dry run.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(untagged)]
enum SubmitAnswer {
    Job(Job),
    DryRun(DryRun),
}

/// Submit a job definition. It is validated, stored and queued; with `dry_run=true` only
/// validated, and answered with what would run.
#[utoipa::path(post, path = "/jobs", tag = "jobs",
    request_body(content = crate::definition::JobSpec, description = "The job definition"),
    params(SubmitQuery, ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
        description = "Repeat a submit safely: the same key returns the same job. 1 to 255 visible ASCII characters, no spaces")),
    responses(
        (status = 201, description = "Queued", body = Job, headers(("Location" = String, description = "/jobs/{id}"))),
        (status = 200, description = "Already submitted with this Idempotency-Key (a `Job`), or with `dry_run=true` what would run (a `DryRun`; nothing is stored)", body = SubmitAnswer),
        (status = 400, description = "Not JSON, or a malformed Idempotency-Key", body = Problem),
        (status = 409, description = "Idempotency-Key reused with another definition", body = Problem),
        (status = 413, description = "Body over the size limit", body = Problem),
        (status = 422, description = "Invalid definition; each problem names its field", body = Problem),
        (status = 429, description = "Queue full; see Retry-After", body = Problem),
        (status = 507, description = "The data directory is under its free-space floor (--min-free-disk-mib)", body = Problem),
    ))]
async fn submit(
    State(state): State<AppState>,
    Query(query): Query<SubmitQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let dry_run = match query.dry_run.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("dry_run", "must be true or false")),
    };
    let key = idempotency_key(&headers)?;
    let body = BodyCap::json(state.jobs.config().max_body_bytes).read(body)?;
    if dry_run {
        return Ok(Json(state.jobs.dry_run(&body)?).into_response());
    }
    let submitted = state.jobs.submit(&body, key)?;
    let status = if submitted.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(located(status, submitted.job))
}

/// Query of `GET /jobs`.
#[derive(Debug, Deserialize, IntoParams)]
struct ListQuery {
    /// Only jobs with this status.
    #[param(value_type = Option<JobStatus>)]
    status: Option<String>,
    /// Cursor from the previous page's `next_after`.
    #[param(value_type = Option<u64>, minimum = 0)]
    after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
struct JobPage {
    jobs: Vec<Job>,
    /// Pass as `after` to get the next page; absent on an empty page.
    next_after: Option<String>,
}

/// List jobs, oldest first, optionally of one status.
#[utoipa::path(get, path = "/jobs", tag = "jobs", params(ListQuery),
    responses((status = 200, body = JobPage), (status = 422, body = Problem)))]
async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Result<Json<JobPage>, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            JobStatus::parse(s).ok_or_else(|| {
                let names: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::invalid("status", format!("must be one of {}", names.join(", ")))
            })
        })
        .transpose()?;
    let (after, limit) = page(q.after.as_deref(), q.limit.as_deref())?;
    let (jobs, last) = state.jobs.list(status, after, limit)?;
    Ok(Json(JobPage { jobs, next_after: last.map(|c| c.to_string()) }))
}

/// One job.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs",
    responses((status = 200, body = Job), (status = 404, body = Problem)))]
async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    Ok(Json(state.jobs.get(job_id(&id)?)?))
}

/// Cancel a job: a queued one at once, a running one at its next step.
#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs",
    responses((status = 200, body = Job), (status = 404, body = Problem), (status = 409, description = "Already finished", body = Problem)))]
async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    Ok(Json(state.jobs.cancel(job_id(&id)?)?))
}

/// Delete a finished job with its metrics and checkpoints.
#[utoipa::path(delete, path = "/jobs/{id}", tag = "jobs",
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem), (status = 409, description = "Queued or running", body = Problem)))]
async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.jobs.delete(job_id(&id)?)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /jobs/{id}/metrics`.
#[derive(Debug, Deserialize, IntoParams)]
struct MetricsQuery {
    /// Cursor from the previous answer's `next_after`: only newer step points are returned.
    #[param(value_type = Option<u64>, minimum = 0)]
    after: Option<String>,
    /// Most step points to return, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// The newest value of each metric.
#[derive(Debug, Default, Serialize, ToSchema)]
struct Latest {
    epoch: Option<u32>,
    step: Option<u64>,
    loss: Option<f64>,
    train_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    train_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    test_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    test_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    examples_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    perplexity: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    validation_perplexity: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_per_sec: Option<f64>,
    /// Global gradient norm of the newest step point, before clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    grad_norm: Option<f64>,
}

/// A job's metrics.
#[derive(Debug, Serialize, ToSchema)]
struct Metrics {
    status: JobStatus,
    latest: Latest,
    /// One row per completed epoch.
    epochs: Vec<EpochMetrics>,
    /// Step points after the cursor, oldest first.
    steps: Vec<StepPoint>,
    /// Pass as `after` to get only newer step points; the same cursor when nothing is new.
    next_after: Option<String>,
}

impl Metrics {
    /// The answer for a page read after cursor `after`, with the newest value of each metric.
    fn new(page: MetricsPage, after: i64) -> Self {
        let last_epoch = page.epochs.last();
        let last_step = page.last_step.as_ref();
        let latest = Latest {
            epoch: last_epoch.map(|e| e.epoch),
            step: last_step.map(|s| s.step),
            loss: last_step.map(|s| s.loss),
            train_loss: last_epoch.map(|e| e.train_loss),
            train_accuracy: last_epoch.and_then(|e| e.train_accuracy),
            test_loss: last_epoch.and_then(|e| e.test_loss),
            test_accuracy: last_epoch.and_then(|e| e.test_accuracy),
            examples_per_sec: last_epoch.and_then(|e| e.examples_per_sec),
            perplexity: last_epoch.and_then(|e| e.perplexity),
            validation_perplexity: last_epoch.and_then(|e| e.validation_perplexity),
            tokens_per_sec: last_epoch.and_then(|e| e.tokens_per_sec),
            grad_norm: last_step.and_then(|s| s.grad_norm),
        };
        let next_after = page.next_after.unwrap_or(after);
        Self {
            status: page.status,
            latest,
            epochs: page.epochs,
            steps: page.steps,
            next_after: Some(next_after.to_string()),
        }
    }
}

/// A job's per-epoch metrics and its step-level loss, paged by cursor.
#[utoipa::path(get, path = "/jobs/{id}/metrics", tag = "jobs", params(MetricsQuery),
    responses((status = 200, body = Metrics), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> Result<Json<Metrics>, ApiError> {
    let (after, limit) = page(q.after.as_deref(), q.limit.as_deref())?;
    let page = state.jobs.metrics(job_id(&id)?, after, limit)?;
    Ok(Json(Metrics::new(page, after)))
}

/// Text from a language-model job: warm the model on `prefix`, then generate `max_tokens`
/// tokens, greedily at temperature 0 (the book's `predict_ch8`) or sampled with `seed`. Uses the
/// newest checkpoint unless `checkpoint` names one, so it works while the job trains.
#[utoipa::path(post, path = "/jobs/{id}/generate", tag = "jobs", request_body = GenerateRequest,
    responses(
        (status = 200, body = Generated),
        (status = 400, description = "Body is not JSON", body = Problem),
        (status = 404, description = "No such job", body = Problem),
        (status = 409, description = "Not a language model, no checkpoint yet, or the newest removed by training while it was read (retry)", body = Problem),
        (status = 413, description = "Body over --max-body-bytes", body = Problem),
        (status = 422, description = "Invalid request, or a `checkpoint` the job does not have; each problem names its field", body = Problem),
        (status = 500, description = "The newest checkpoint cannot be loaded: a file of it is gone from the data dir (`checkpoint_missing`), no longer matches its recorded size and SHA-256 (`checkpoint_corrupt`), or its `checkpoint.json` cannot be read (`checkpoint_unreadable`)", body = Problem),
        (status = 503, description = "Every generation slot is taken (--max-generations); see Retry-After", body = Problem,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn generate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Generated>, ApiError> {
    let id = job_id(&id)?;
    let body = BodyCap::json(state.jobs.config().max_body_bytes).read(body)?;
    let jobs = state.jobs.clone();
    let generated = tokio::task::spawn_blocking(move || jobs.generate(id, &body))
        .await
        .map_err(|e| ApiError::Internal(format!("generation stopped: {e}")))??;
    Ok(Json(generated))
}

/// Path list for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(submit, list, show, cancel, remove, metrics, generate))]
pub struct Paths;
