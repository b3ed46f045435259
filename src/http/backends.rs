//! `GET /backends`: the backends and devices this server can train on.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;
use crate::backend::BackendsView;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/backends", get(list))
}

/// Every backend this server can run, each WGPU device with its adapter, type, graphics API and
/// whether jobs may use it, and the device `"backend": "auto"` picks.
#[utoipa::path(get, path = "/backends", tag = "backends", operation_id = "list_backends",
    responses((status = 200, body = BackendsView)))]
async fn list(State(state): State<AppState>) -> Json<BackendsView> {
    Json(state.jobs.backends())
}

/// Path list for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list))]
pub struct Paths;
