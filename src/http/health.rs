//! Liveness and readiness.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, Problem};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

/// Health of the server.
#[derive(Debug, Serialize, ToSchema)]
struct Health {
    /// `ok`.
    status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The server takes jobs: its database is open, it is not shutting down and its data
/// directory has more free space than `--min-free-disk-mib`.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health),
        (status = 503, description = "Shutting down (`shutting_down`), or short of disk space (`insufficient_storage`)", body = Problem)))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    if state.stopping.is_cancelled() {
        return Err(ApiError::NotReady {
            kind: "shutting_down",
            detail: "the server is shutting down and takes no more work".into(),
        });
    }
    match state.jobs.has_disk_room() {
        Ok(()) => Ok(Json(Health { status: "ok" })),
        Err(e) => Err(ApiError::NotReady { kind: "insufficient_storage", detail: e.to_string() }),
    }
}

/// Path list for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz))]
pub struct Paths;
