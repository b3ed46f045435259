//! `/datasets`: upload a text corpus to train language models on, list, inspect and delete them.
//!
//! An upload is a `text/plain` body (UTF-8), capped by `--max-dataset-bytes` instead of the
//! JSON body limit; the `PlainText` extractor checks the media type before reading the body.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, Problem};
use super::limits::{BodyCap, declared_length};
use crate::jobs::JobError;
use crate::jobs::datasets::{Dataset, DatasetId};

/// Routes of this resource; an upload may be up to `max_dataset_bytes` long.
pub fn router(max_dataset_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/datasets", get(list).post(upload.layer(DefaultBodyLimit::max(max_dataset_bytes))))
        .route_layer(from_fn_with_state(BodyCap::text(max_dataset_bytes), declared_length))
        .route("/datasets/{id}", get(show).delete(remove))
}

fn dataset_id(raw: &str) -> Result<DatasetId, ApiError> {
    DatasetId::parse_str(raw).map_err(|_| ApiError::NotFound(format!("data set {raw}")))
}

/// Runs file and database work off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, ApiError> {
    let done = tokio::task::spawn_blocking(work).await;
    Ok(done.map_err(|e| ApiError::Internal(format!("blocking task: {e}")))??)
}

/// A `text/plain` body, read once its media type is known to be right.
struct PlainText(Bytes);

impl FromRequest<AppState> for PlainText {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        require_plain_text(request.headers())?;
        let body = BodyCap::text(state.jobs.config().max_dataset_bytes)
            .read(Bytes::from_request(request, state).await)?;
        Ok(Self(body))
    }
}

/// Accepts `text/plain`, with a `charset` parameter only if it names UTF-8 (or its subset
/// US-ASCII): the body is read as UTF-8 whatever it claims.
fn require_plain_text(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()));
    let value = value.as_deref().unwrap_or("");
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("text/plain") {
        let got = if value.is_empty() { "none".to_string() } else { format!("{value:?}") };
        return Err(ApiError::UnsupportedMediaType(format!(
            "content-type must be text/plain (UTF-8 text); got {got}"
        )));
    }
    for parameter in parts {
        let (key, charset) = parameter.split_once('=').unwrap_or((parameter, ""));
        let charset = charset.trim().trim_matches('"');
        let utf8 = ["utf-8", "utf8", "us-ascii"].iter().any(|c| charset.eq_ignore_ascii_case(c));
        if key.trim().eq_ignore_ascii_case("charset") && !utf8 {
            return Err(ApiError::UnsupportedMediaType(format!(
                "content-type text/plain must be UTF-8 text; charset {charset:?} is not supported"
            )));
        }
    }
    Ok(())
}

/// Query of `POST /datasets`.
#[derive(Debug, Deserialize, IntoParams)]
struct UploadQuery {
    /// A label shown in listings, at most 200 characters (trimmed).
    name: Option<String>,
}

/// Upload a text corpus (UTF-8) for language-model jobs to train on.
#[utoipa::path(post, path = "/datasets", tag = "datasets", operation_id = "upload_dataset",
    params(UploadQuery),
    request_body(content = String, content_type = "text/plain", description = "The corpus, UTF-8 text, at most --max-dataset-bytes"),
    responses(
        (status = 201, description = "Stored", body = Dataset, headers(("Location" = String, description = "/datasets/{id}"))),
        (status = 413, description = "Body over --max-dataset-bytes", body = Problem),
        (status = 415, description = "Not text/plain, or a charset other than UTF-8", body = Problem),
        (status = 422, description = "Empty, not UTF-8 (naming the offset of the first invalid byte), or name too long", body = Problem),
    ))]
async fn upload(
    State(state): State<AppState>,
    Query(q): Query<UploadQuery>,
    PlainText(body): PlainText,
) -> Result<Response, ApiError> {
    let jobs = state.jobs.clone();
    let dataset = blocking(move || jobs.upload_dataset(q.name.as_deref(), &body)).await?;
    let location =
        HeaderValue::from_str(&format!("/datasets/{}", dataset.id)).expect("a UUID path is a valid header");
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(dataset)).into_response())
}

/// List uploaded data sets, newest first.
#[utoipa::path(get, path = "/datasets", tag = "datasets", operation_id = "list_datasets",
    responses((status = 200, body = Vec<Dataset>)))]
async fn list(State(state): State<AppState>) -> Result<Json<Vec<Dataset>>, ApiError> {
    Ok(Json(state.jobs.datasets()?))
}

/// One uploaded data set.
#[utoipa::path(get, path = "/datasets/{id}", tag = "datasets", operation_id = "show_dataset",
    responses((status = 200, body = Dataset), (status = 404, body = Problem)))]
async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Dataset>, ApiError> {
    Ok(Json(state.jobs.dataset(dataset_id(&id)?)?))
}

/// Delete an uploaded data set and its file.
#[utoipa::path(delete, path = "/datasets/{id}", tag = "datasets", operation_id = "delete_dataset",
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem),
        (status = 409, description = "A queued or running job reads it", body = Problem)))]
async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let id = dataset_id(&id)?;
    let jobs = state.jobs.clone();
    blocking(move || jobs.delete_dataset(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Path list for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(upload, list, show, remove))]
pub struct Paths;
