//! Request body caps answered before the body is read, and what a body that cannot be read is
//! answered (408 when it stalled, 400 otherwise).
//!
//! Axum's `DefaultBodyLimit` stops reading a body once it passes the cap, but only after
//! reading up to the cap; a client that keeps sending then races the server's close and may see
//! a reset connection instead of the 413. [`declared_length`] answers a request whose
//! `Content-Length` already says it is too large at once, before any of its body is read. Bodies
//! without a declared length (chunked) are still cut by `DefaultBodyLimit` as they arrive.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// One cap: its size, what the body is called in errors and the flag that sets it.
#[derive(Debug, Clone, Copy)]
pub struct BodyCap {
    pub bytes: usize,
    /// "body" for JSON, "upload" for uploads.
    pub noun: &'static str,
    pub flag: &'static str,
}

impl BodyCap {
    /// The cap on JSON bodies.
    pub fn json(bytes: usize) -> Self {
        Self { bytes, noun: "body", flag: "--max-body-bytes" }
    }

    /// The cap on the images sent to predict (JSON arrays of pixels, or a PNG or JPEG).
    pub fn predict(bytes: usize) -> Self {
        Self { bytes, noun: "body", flag: "--max-dataset-bytes" }
    }

    /// The cap on uploads (a text or an archive).
    pub fn upload(bytes: usize) -> Self {
        Self { bytes, noun: "upload", flag: "--max-dataset-bytes" }
    }

    /// The body a `Bytes` extractor read, or the error to answer: 413 past this cap, else as
    /// [`unreadable`] says.
    pub fn read(&self, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
        body.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => self.exceeded(),
            _ => unreadable(&rejection, rejection.body_text()),
        })
    }

    /// The 413 this cap answers.
    pub fn exceeded(&self) -> ApiError {
        ApiError::TooLarge(format!(
            "the {} is larger than this server's limit of {} bytes ({})",
            self.noun, self.bytes, self.flag
        ))
    }
}

/// The answer to a body that could not be read (`error`, which `said` describes): 408 if it
/// stalled past `--body-timeout-secs`, 400 for anything else (a malformed chunk, a client gone).
/// Both the buffered JSON bodies and the streamed uploads answer through here.
pub fn unreadable(error: &(dyn std::error::Error + 'static), said: String) -> ApiError {
    if timed_out(error) {
        ApiError::Other {
            status: StatusCode::REQUEST_TIMEOUT,
            detail: "the body stopped arriving for longer than this server waits (--body-timeout-secs)"
                .into(),
        }
    } else {
        ApiError::BadRequest(said)
    }
}

/// Whether `error` comes from the body read timeout (`tower_http`'s `TimeoutBody`).
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Middleware: refuses a request whose declared `Content-Length` is over `cap`.
pub async fn declared_length(State(cap): State<BodyCap>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match declared {
        Some(length) if length > cap.bytes as u64 => cap.exceeded().into_response(),
        _ => next.run(request).await,
    }
}
