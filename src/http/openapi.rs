//! The OpenAPI document, generated from the handlers' annotations, and `GET /openapi.json`,
//! which serves it.
//!
//! `openapi/openapi.json` in the repository is this document, pretty-printed; a test fails when
//! the two differ (regenerate with `cargo run -- openapi > openapi/openapi.json`).

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use super::AppState;

/// The route of this document.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// Path list of this module.
#[derive(utoipa::OpenApi)]
#[openapi(paths(openapi))]
struct Paths;

#[derive(OpenApi)]
#[openapi(
    info(title = "kiln", description = "A model-training service: submit a job, poll its metrics, download its checkpoints."),
    tags(
        (name = "jobs", description = "Training jobs"),
        (name = "datasets", description = "Uploaded text corpora for language models"),
        (name = "backends", description = "The devices this server trains on"),
        (name = "health", description = "Liveness and readiness"),
    ),
)]
struct ApiDoc;

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::jobs::Paths::openapi());
    doc.merge(super::datasets::Paths::openapi());
    doc.merge(super::backends::Paths::openapi());
    doc.merge(super::health::Paths::openapi());
    doc.merge(Paths::openapi());
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The document as committed in `openapi/openapi.json`.
pub fn pretty() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serialises");
    text.push('\n');
    text
}
