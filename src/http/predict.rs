//! `POST /jobs/{id}/predict`: a trained image classifier's likeliest classes for images sent as
//! JSON arrays of pixels (a batch) or as one PNG or JPEG (`image/png`, `image/jpeg`; its options
//! in the query). Bodies may be as large as an upload (`--max-dataset-bytes`): a batch of pixel
//! arrays outgrows the JSON cap of job definitions.

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::middleware::from_fn_with_state;
use axum::routing::post;
use axum::{Json, Router};

use super::AppState;
use super::error::{ApiError, Problem};
use super::jobs::job_id;
use super::limits::{BodyCap, declared_length};
use crate::definition::predict::{PredictQuery, PredictRequest};
use crate::jobs::predict::{PredictInput, Predictions};

/// The route, with its body cap.
pub fn router(max_dataset_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/jobs/{id}/predict", post(predict))
        .route_layer(from_fn_with_state(BodyCap::predict(max_dataset_bytes), declared_length))
        // Over the server's JSON cap, which an outer layer sets for every route.
        .route_layer(DefaultBodyLimit::max(max_dataset_bytes))
}

/// What the body is, by its `Content-Type`.
enum Sent {
    Json,
    Image,
}

fn sent(headers: &HeaderMap) -> Result<Sent, ApiError> {
    let value = headers.get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = value.as_deref().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Sent::Json),
        "image/png" | "image/jpeg" => Ok(Sent::Image),
        _ => {
            let got = value.map_or_else(|| "none".to_string(), |v| format!("{v:?}"));
            Err(ApiError::UnsupportedMediaType(format!(
                "content-type must be application/json (arrays of pixels), image/png or image/jpeg; got {got}"
            )))
        }
    }
}

/// The likeliest classes of each image, from an image classifier's newest checkpoint or the one
/// named. JSON: `{"images": [...], "top_k": 5, "checkpoint": 3}`, each image an array of numbers
/// in [0, 1] (nested `[C][H][W]`, `[H][W]` or flat) of the data set's channels x side x side,
/// before the job's `resize`; at most `--max-predict-batch` images. A PNG or JPEG body is one
/// image, converted to the data set's channels and resized to its side (as uploads are), with
/// `top_k` and `checkpoint` in the query.
#[utoipa::path(post, path = "/jobs/{id}/predict", tag = "jobs", params(PredictQuery),
    request_body(content(
        (PredictRequest = "application/json"),
        (Vec<u8> = "image/png"),
        (Vec<u8> = "image/jpeg"),
    )),
    responses(
        (status = 200, body = Predictions),
        (status = 400, description = "Body is not JSON", body = Problem),
        (status = 404, description = "No such job", body = Problem),
        (status = 409, description = "A language model (use /generate), no checkpoint yet, or the newest removed by training while it was read (retry)", body = Problem),
        (status = 413, description = "Body over --max-dataset-bytes", body = Problem),
        (status = 415, description = "Not application/json, image/png or image/jpeg", body = Problem),
        (status = 422, description = "Images of the wrong size or range, too many (--max-predict-batch), not a PNG or JPEG by content, a `top_k` past the classes, or a `checkpoint` the job does not have; each problem names its field", body = Problem),
        (status = 500, description = "The checkpoint cannot be loaded (`checkpoint_missing`, `checkpoint_corrupt`, `checkpoint_unreadable`)", body = Problem),
        (status = 503, description = "Every generation slot is taken (--max-generations); see Retry-After", body = Problem,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn predict(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PredictQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Predictions>, ApiError> {
    let id = job_id(&id)?;
    let sent = sent(&headers)?;
    if let Sent::Json = sent {
        for (field, given) in [("top_k", query.top_k.is_some()), ("checkpoint", query.checkpoint.is_some())] {
            if given {
                return Err(ApiError::invalid(
                    field,
                    "in the query is for a PNG or JPEG body: put it in the JSON",
                ));
            }
        }
    }
    let body = BodyCap::predict(state.jobs.config().max_dataset_bytes).read(body)?;
    let jobs = state.jobs.clone();
    let predictions = tokio::task::spawn_blocking(move || {
        let input = match sent {
            Sent::Json => PredictInput::Json(&body),
            Sent::Image => PredictInput::Image(&body, query),
        };
        jobs.predict(id, input)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("prediction stopped: {e}")))??;
    Ok(Json(predictions))
}

/// Path list for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(predict))]
pub struct Paths;
