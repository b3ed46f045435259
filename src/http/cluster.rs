//! `GET /cluster`: the replicas serving this server's database.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;
use super::error::ApiError;
use crate::jobs::cluster::ClusterView;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/cluster", get(list))
}

/// Every replica registered on this server's database, oldest first: its id (the `replica` a job
/// names), address, devices, version, last heartbeat and running jobs, and which one answered.
/// An SQLite server is one replica.
#[utoipa::path(get, path = "/cluster", tag = "cluster", operation_id = "list_replicas",
    responses((status = 200, body = ClusterView)))]
async fn list(State(state): State<AppState>) -> Result<Json<ClusterView>, ApiError> {
    let jobs = state.jobs.clone();
    let view = tokio::task::spawn_blocking(move || jobs.cluster())
        .await
        .map_err(|e| ApiError::Internal(format!("listing the replicas stopped: {e}")))??;
    Ok(Json(view))
}

/// Path list for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list))]
pub struct Paths;
