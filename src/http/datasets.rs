//! `/datasets`: upload a text corpus to train language models on, or an archive of labelled
//! images to train classifiers on; list, inspect and delete them.
//!
//! An upload is a `text/plain` body (UTF-8), or with `kind=images` an archive (`application/x-tar`,
//! `application/gzip`, `application/zip` or `application/octet-stream`: the archive's content says
//! which it is; an archive's media type alone says `kind=images`, and a `kind` it contradicts is
//! a 422), capped by `--max-dataset-bytes` instead of the JSON body limit. An archive is decoded
//! once it is complete (see [`crate::jobs::datasets`]). The
//! `UploadBody` extractor hands over the body unread with its media type; the handler checks the
//! query and the media type, begins the upload (the quotas may refuse it there, 507,
//! before any of the body is read) and streams the body into it chunk by chunk, cutting it with
//! a 413 as soon as it passes the cap. When the text itself is refused midway (not UTF-8, over
//! the bytes quota), the rest of the body, up to the cap, is read and dropped before the answer,
//! so that a client still sending reads the answer instead of a reset connection. A body that
//! stops arriving for `--body-timeout-secs` is answered 408, as a stalled JSON body is.

use std::pin::Pin;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;
use super::error::{ApiError, Problem};
use super::limits::{BodyCap, declared_length, unreadable};
use crate::jobs::JobError;
use crate::jobs::datasets::{Dataset, DatasetId, RawUpload, Upload, ValidUpload};

/// Routes of this resource; an upload may be up to `max_dataset_bytes` long (the router's
/// `DefaultBodyLimit` applies to extractors that buffer, not to the streamed upload body).
pub fn router(max_dataset_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/datasets", get(list).post(upload))
        .route_layer(from_fn_with_state(BodyCap::upload(max_dataset_bytes), declared_length))
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

/// An upload's body, not yet read, its headers (for the media type) and the length it declares
/// (`Content-Length`), if any.
struct UploadBody {
    body: Body,
    headers: HeaderMap,
    declared: Option<u64>,
}

impl FromRequest<AppState> for UploadBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let declared = parts.headers.get(header::CONTENT_LENGTH);
        let declared = declared.and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        Ok(Self { body, headers: parts.headers, declared })
    }
}

/// The media types an image archive may be sent as; the archive's content says which it is.
const ARCHIVE_TYPES: [&str; 6] = [
    "application/x-tar",
    "application/gzip",
    "application/x-gzip",
    "application/x-compressed-tar",
    "application/zip",
    "application/octet-stream",
];

/// Accepts the body's media type for an upload of images (`images`) or of a text: 415 for a
/// type neither takes, 422 on `kind` for the other kind's type (the query and the body disagree).
fn check_media_type(images: bool, headers: &HeaderMap) -> Result<(), ApiError> {
    let (archive, text) = (require_archive(headers), require_plain_text(headers));
    match (images, archive.is_ok(), text.is_ok()) {
        (true, true, _) | (false, _, true) => Ok(()),
        (true, false, true) => Err(ApiError::invalid(
            "kind",
            "is images, which takes an archive, but the body is text/plain: send the archive with its \
             media type (application/gzip, application/x-tar, application/zip or application/octet-stream)",
        )),
        (false, true, false) => Err(ApiError::invalid(
            "kind",
            "is text, which takes text/plain, but the body is an archive: leave kind out or set kind=images",
        )),
        (true, false, false) => archive,
        (false, false, false) => text,
    }
}

/// `raw` with its `kind` said, when it is not, by the body's media type: an archive type is
/// images, anything else (text among it) a text, refused later if it is not `text/plain`.
fn with_kind(mut raw: RawUpload, headers: &HeaderMap) -> RawUpload {
    if raw.kind.is_none() && require_archive(headers).is_ok() {
        raw.kind = Some("images".to_string());
    }
    raw
}

/// Accepts one of [`ARCHIVE_TYPES`].
fn require_archive(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()));
    let value = value.as_deref().unwrap_or("");
    let essence = value.split(';').next().unwrap_or("").trim();
    if ARCHIVE_TYPES.iter().any(|t| essence.eq_ignore_ascii_case(t)) {
        return Ok(());
    }
    let got = if value.is_empty() { "none".to_string() } else { format!("{value:?}") };
    Err(ApiError::UnsupportedMediaType(format!(
        "content-type must be one of {} for kind=images (an archive); got {got}",
        ARCHIVE_TYPES.join(", ")
    )))
}

/// Streams `body` into `upload` and stores it; see the module docs for the cap and what
/// happens to the rest of a body whose text is refused.
async fn receive(mut upload: Upload, mut body: Body, cap: BodyCap) -> Result<Dataset, ApiError> {
    let mut received = 0;
    let failed = loop {
        let chunk = match next_chunk(&mut body).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(upload.finish().await?),
            Err(unreadable) => break unreadable,
        };
        received += chunk.len();
        if received > cap.bytes {
            break cap.exceeded();
        }
        if let Err(refused) = upload.write(chunk).await {
            upload.abandon().await;
            discard(body, cap.bytes - received).await;
            return Err(refused.into());
        }
    };
    upload.abandon().await;
    Err(failed)
}

/// Reads and drops the rest of `body`, up to about `budget` bytes, so that a client still
/// sending it reads the answer.
async fn discard(mut body: Body, budget: usize) {
    let mut read = 0;
    while read <= budget {
        match next_chunk(&mut body).await {
            Ok(Some(chunk)) => read += chunk.len(),
            _ => return,
        }
    }
}

/// The next data of `body`, skipping trailers; `None` at its end. A body that stopped arriving
/// for `--body-timeout-secs` is a 408; one that cannot be read otherwise (the client went away,
/// or sent a malformed chunk) is a 400 no one may be there to read.
async fn next_chunk(body: &mut Body) -> Result<Option<Bytes>, ApiError> {
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
            None => return Ok(None),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
            Some(Err(e)) => {
                tracing::info!(%e, "an upload's body could not be read");
                return Err(unreadable(&e, format!("the body could not be read: {e}")));
            }
        }
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

/// Upload a text corpus (UTF-8) for language-model jobs to train on, or (`kind=images`) an
/// archive of labelled images for image classifiers: decoded once here, and stored decoded.
#[utoipa::path(post, path = "/datasets", tag = "datasets", operation_id = "upload_dataset",
    params(RawUpload),
    request_body(content(
        (String = "text/plain"),
        (Vec<u8> = "application/x-tar"),
        (Vec<u8> = "application/gzip"),
        (Vec<u8> = "application/zip"),
        (Vec<u8> = "application/octet-stream"),
    ), description = "The corpus, UTF-8 text; or with kind=images a tar, gzipped tar or zip archive. At most --max-dataset-bytes"),
    responses(
        (status = 201, description = "Stored", body = Dataset, headers(("Location" = String, description = "/datasets/{id}"))),
        (status = 413, description = "Body over --max-dataset-bytes", body = Problem),
        (status = 415, description = "A media type neither a text (text/plain, UTF-8) nor an archive (application/x-tar, application/gzip, application/zip, application/octet-stream) is sent as", body = Problem),
        (status = 422, description = "A query field out of range, or a `kind` the body's media type contradicts; a text empty or not UTF-8 (naming the offset of the first invalid byte); an archive that is not a tar, gzipped tar or zip, or whose images cannot be stored (not a PNG or JPEG by content, mixed sizes without side, an empty class, one class, more than --max-classes, a path outside the archive or a link, more than --max-decoded-bytes once decompressed)", body = Problem),
        (status = 507, description = "Storing it would pass --max-uploads (data sets) or --max-uploads-bytes (their bytes together, uploads in progress included)", body = Problem),
    ))]
async fn upload(
    State(state): State<AppState>,
    Query(raw): Query<RawUpload>,
    UploadBody { body, headers, declared }: UploadBody,
) -> Result<Response, ApiError> {
    let valid = ValidUpload::new(&with_kind(raw, &headers)).map_err(JobError::Invalid)?;
    check_media_type(valid.images.is_some(), &headers)?;
    let upload = state.jobs.begin_upload(valid, declared).await?;
    let dataset = receive(upload, body, BodyCap::upload(state.jobs.config().max_dataset_bytes)).await?;
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
