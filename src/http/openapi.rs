//! The OpenAPI document, generated from the handlers' annotations.
//!
//! `openapi/openapi.json` in the repository is this document, pretty-printed; a test fails when
//! the two differ (regenerate with `cargo run -- openapi > openapi/openapi.json`).

use utoipa::OpenApi;

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
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The document as committed in `openapi/openapi.json`.
pub fn pretty() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serialises");
    text.push('\n');
    text
}
