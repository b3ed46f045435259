//! The one error type of the API, answered as RFC 9457 problem details.
//!
//! Every failure a handler can return becomes an [`ApiError`] with a stable machine-readable
//! `type`, the right status and a `detail` that names the field or limit at fault. Internal
//! errors are logged with their cause and answered with a generic message: nothing about the
//! server's insides leaks to clients.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::definition::{FieldError, SpecParseError};
use crate::jobs::JobError;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{detail}")]
    Validation { detail: String, errors: Vec<FieldError> },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{detail}")]
    QueueFull { detail: String, retry_after_secs: u64 },
    #[error("{detail}")]
    Busy { detail: String, retry_after_secs: u64 },
    #[error("{0}")]
    InsufficientStorage(String),
    /// `/readyz` when the server takes no work: `kind` says why.
    #[error("{detail}")]
    NotReady { kind: &'static str, detail: String },
    /// No key, or not one of this server's.
    #[error("{0}")]
    Unauthorized(String),
    /// A key whose scope does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Answered for an error response some layer made without a problem body (404 of an
    /// unknown route, 405, an extractor's rejection): its status and what it said.
    #[error("{detail}")]
    Other { status: StatusCode, detail: String },
    #[error("{0}")]
    QuotaExceeded(String),
    /// A stored file no longer matches what was recorded of it; the detail names which.
    #[error("{0}")]
    CheckpointCorrupt(String),
    /// A checkpoint's file is gone from the data dir; the detail names which.
    #[error("{0}")]
    CheckpointMissing(String),
    /// A checkpoint's file cannot be read (a manifest that does not parse); the detail names which.
    #[error("{0}")]
    CheckpointUnreadable(String),
    #[error("internal error")]
    Internal(String),
}

/// The body of every error response (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, e.g. `validation_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Short summary of the kind.
    pub title: &'static str,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong in this request, naming the field or limit.
    pub detail: String,
    /// For `validation_error`: every problem found, each with its field path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    /// The status, stable type and title of this error.
    pub fn status_code(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", "The request is malformed"),
            Self::Validation { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_error", "The request is not valid")
            }
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", "No such resource"),
            Self::Conflict(_) => {
                (StatusCode::CONFLICT, "conflict", "The resource is not in a state that allows this")
            }
            Self::TooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "The request body is too large")
            }
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "The request body is not of a type this resource takes",
            ),
            Self::QueueFull { .. } => (StatusCode::TOO_MANY_REQUESTS, "queue_full", "The job queue is full"),
            Self::Busy { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "busy", "Every slot for this operation is taken")
            }
            Self::InsufficientStorage(_) => (
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                "The server is short of disk space",
            ),
            Self::NotReady { kind, .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, kind, "The server takes no work now")
            }
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "An API key is required"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "This API key may not do this"),
            Self::Other { status, .. } => other_kind(*status),
            Self::QuotaExceeded(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded", "A storage quota would be exceeded")
            }
            Self::CheckpointCorrupt(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "checkpoint_corrupt", "The checkpoint's file is damaged")
            }
            Self::CheckpointMissing(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "checkpoint_missing",
                "A file of the checkpoint is missing",
            ),
            Self::CheckpointUnreadable(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "checkpoint_unreadable",
                "A file of the checkpoint cannot be read",
            ),
            Self::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal server error")
            }
        }
    }

    /// A 422 for one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::from_fields(vec![FieldError { field: field.to_string(), message: message.into() }])
    }

    fn from_fields(errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        Self::Validation { detail, errors }
    }
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> Self {
        match error {
            JobError::Parse(SpecParseError::Syntax(message)) => {
                Self::BadRequest(format!("the body is not valid JSON: {message}"))
            }
            JobError::Parse(SpecParseError::Field(field)) => Self::from_fields(vec![field]),
            JobError::Invalid(errors) => Self::from_fields(errors),
            JobError::NotFound(what) => Self::NotFound(what),
            JobError::Conflict(message) => Self::Conflict(message),
            JobError::QuotaExceeded(message) => Self::QuotaExceeded(message),
            corrupt @ JobError::CheckpointCorrupt { .. } => Self::CheckpointCorrupt(corrupt.to_string()),
            missing @ JobError::CheckpointMissing { .. } => Self::CheckpointMissing(missing.to_string()),
            unreadable @ JobError::CheckpointUnreadable { .. } => {
                Self::CheckpointUnreadable(unreadable.to_string())
            }
            JobError::QueueFull { waiting, retry_after_secs } => Self::QueueFull {
                detail: format!("the queue is full ({waiting} jobs waiting); retry in {retry_after_secs} s"),
                retry_after_secs,
            },
            JobError::InsufficientStorage(detail) => Self::InsufficientStorage(detail),
            JobError::Busy { what, retry_after_secs } => {
                Self::Busy { detail: format!("{what}; retry in {retry_after_secs} s"), retry_after_secs }
            }
            internal @ (JobError::Store(_)
            | JobError::Io(_)
            | JobError::Checkpoint(_)
            | JobError::Orphans(_)) => Self::Internal(internal.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title) = self.status_code();
        let detail = match &self {
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                "the server failed to handle this request; it has been logged".to_string()
            }
            other => other.to_string(),
        };
        let retry_after = match &self {
            Self::QueueFull { retry_after_secs, .. } | Self::Busy { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            _ => None,
        };
        let unauthorized = matches!(self, Self::Unauthorized(_));
        let errors = match self {
            Self::Validation { errors, .. } => errors,
            _ => Vec::new(),
        };
        let problem = Problem { kind, title, status: status.as_u16(), detail, errors };
        let mut response = (status, Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"kiln\""));
        }
        response
    }
}

/// The type and title of an error status that no handler chose (see [`ApiError::Other`]).
fn other_kind(status: StatusCode) -> (StatusCode, &'static str, &'static str) {
    match status {
        StatusCode::NOT_FOUND => (status, "not_found", "No such resource"),
        StatusCode::METHOD_NOT_ALLOWED => {
            (status, "method_not_allowed", "This resource does not take this method")
        }
        StatusCode::REQUEST_TIMEOUT => (status, "request_timeout", "The request was not sent in time"),
        StatusCode::PAYLOAD_TOO_LARGE => (status, "payload_too_large", "The request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            (status, "unsupported_media_type", "The request body is not of a type this resource takes")
        }
        s if s.is_server_error() => (s, "internal_error", "Internal server error"),
        s => (s, "bad_request", "The request is malformed"),
    }
}

/// Middleware: every error response is problem+json. Handlers answer [`ApiError`]s already;
/// what other layers answer — the router's 404 and 405, an extractor's plain-text rejection, a
/// timed-out body — is rewritten here with its status and what it said (or what was asked).
pub async fn problems_only(request: Request, next: Next) -> Response {
    let asked = format!("{} {}", request.method(), request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let said = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    let said = String::from_utf8_lossy(&said).trim().to_string();
    let detail = match status {
        StatusCode::NOT_FOUND => format!("no resource at {asked}"),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = allow.as_ref().and_then(|a| a.to_str().ok()).unwrap_or("other methods");
            format!("{asked}: this resource takes {allowed}")
        }
        _ if said.is_empty() => status.canonical_reason().unwrap_or("error").to_string(),
        _ => said,
    };
    let mut response = ApiError::Other { status, detail }.into_response();
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}
