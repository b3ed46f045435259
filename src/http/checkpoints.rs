//! `/jobs/{id}/checkpoints`: a job's checkpoints, and each one's weights for download — the
//! burnpack itself, or made into safetensors for PyTorch.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_util::io::ReaderStream;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, Problem};
use super::jobs::job_id;
use crate::jobs::CheckpointInfo;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs/{id}/checkpoints", get(checkpoints))
        .route("/jobs/{id}/checkpoints/{checkpoint_id}", get(download))
}

/// A job's checkpoints, oldest first.
#[utoipa::path(get, path = "/jobs/{id}/checkpoints", tag = "jobs",
    responses((status = 200, body = Vec<CheckpointInfo>), (status = 404, body = Problem)))]
async fn checkpoints(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<CheckpointInfo>>, ApiError> {
    Ok(Json(state.jobs.checkpoints(job_id(&id)?)?))
}

/// Query of a checkpoint download.
#[derive(Debug, Deserialize, IntoParams)]
struct DownloadQuery {
    /// `burnpack` (the default): the checkpoint's own file. `safetensors`: the weights under
    /// PyTorch's `state_dict` names (an image classifier's `nn.Sequential` of its layers with the
    /// book's block classes; a language model's `nn.GRU`/`nn.LSTM` and `linear`, or the book's
    /// scratch RNN), for `model.load_state_dict(safetensors.torch.load_file(f))`.
    #[param(value_type = Option<String>, pattern = "^(burnpack|safetensors)$")]
    format: Option<String>,
}

/// Download a checkpoint's model weights: a Burn burnpack file (`.bpk`), checked against the
/// size and SHA-256 recorded when it was written before any of it is sent; or, with
/// `format=safetensors`, the weights under PyTorch's names, made from it.
#[utoipa::path(get, path = "/jobs/{id}/checkpoints/{checkpoint_id}", tag = "jobs",
    params(DownloadQuery),
    responses(
        (status = 200, description = "The burnpack file, or the safetensors file made from it", content_type = "application/octet-stream",
         headers(("X-Checksum-Sha256" = String, description = "SHA-256 of the body"))),
        (status = 404, body = Problem),
        (status = 422, description = "A `format` other than `burnpack` or `safetensors`", body = Problem),
        (status = 503, description = "`format=safetensors` while every --max-generations slot is taken; see Retry-After", body = Problem,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "The checkpoint cannot be served: a file of it is gone from the data dir (`checkpoint_missing`), no longer matches its recorded size and SHA-256 (`checkpoint_corrupt`), or its `checkpoint.json` (or, for `format=safetensors`, its weights) cannot be read (`checkpoint_unreadable`)", body = Problem)))]
async fn download(
    State(state): State<AppState>,
    Path((id, checkpoint_id)): Path<(String, String)>,
    Query(query): Query<DownloadQuery>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let checkpoint_id: i64 = checkpoint_id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("checkpoint {checkpoint_id} of job {id}")))?;
    let jobs = state.jobs.clone();
    match query.format.as_deref() {
        None | Some("burnpack") => {}
        Some("safetensors") => {
            // Converted and hashed off the async runtime.
            let export = move || {
                let (_, file) = jobs.checkpoint_safetensors(id, checkpoint_id)?;
                Ok::<_, crate::jobs::JobError>((format!("{:x}", Sha256::digest(&file)), file))
            };
            let (sha256, file) = tokio::task::spawn_blocking(export)
                .await
                .map_err(|e| ApiError::Internal(format!("exporting a checkpoint stopped: {e}")))??;
            return Ok(attachment(format!("{id}-{checkpoint_id}.safetensors"), sha256, file));
        }
        Some(_) => return Err(ApiError::invalid("format", "must be burnpack or safetensors")),
    }
    let (info, file) = tokio::task::spawn_blocking(move || jobs.checkpoint_file(id, checkpoint_id))
        .await
        .map_err(|e| ApiError::Internal(format!("checking a checkpoint stopped: {e}")))??;
    let disposition = format!("attachment; filename=\"{id}-{checkpoint_id}.bpk\"");
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CONTENT_LENGTH, info.bytes.to_string()),
        (header::CONTENT_DISPOSITION, disposition),
        (header::HeaderName::from_static("x-checksum-sha256"), info.sha256.clone()),
    ];
    let file = tokio::fs::File::from_std(file);
    Ok((headers, Body::from_stream(ReaderStream::new(file))).into_response())
}

/// A file made in memory, sent for download with its SHA-256 (hex).
fn attachment(filename: String, sha256: String, file: Vec<u8>) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        (header::HeaderName::from_static("x-checksum-sha256"), sha256),
    ];
    (headers, file).into_response()
}

/// Path list for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(checkpoints, download))]
pub struct Paths;
