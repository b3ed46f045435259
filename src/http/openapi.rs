//! The OpenAPI document, generated from the handlers' annotations, and `GET /openapi.json`,
//! which serves it.
//!
//! `openapi/openapi.json` in the repository is this document, pretty-printed; a test fails when
//! the two differ (regenerate with `cargo run -- openapi > openapi/openapi.json`).
//!
//! What every operation shares is added here rather than on each handler: errors are
//! `application/problem+json`; every route but the open ones needs a bearer key (401, 403); a
//! route that reads JSON answers 415 to other bodies.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};

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
    doc.merge(super::events::Paths::openapi());
    doc.merge(super::prometheus::Paths::openapi());
    doc.merge(super::datasets::Paths::openapi());
    doc.merge(super::backends::Paths::openapi());
    doc.merge(super::health::Paths::openapi());
    doc.merge(Paths::openapi());
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(KEY_SCHEME, SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    doc.security = Some(vec![SecurityRequirement::new(KEY_SCHEME, Vec::<String>::new())]);
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            ("GET", &mut item.get),
            ("POST", &mut item.post),
            ("DELETE", &mut item.delete),
            ("PUT", &mut item.put),
            ("PATCH", &mut item.patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                shared_rules(method, path, operation);
            }
        }
    }
    doc
}

/// The name of the bearer-key security scheme.
const KEY_SCHEME: &str = "api_key";

/// Adds what every operation shares (see the module doc) to one operation.
fn shared_rules(method: &str, path: &str, operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    for (status, response) in responses.iter_mut() {
        let error = status.parse::<u16>().is_ok_and(|code| code >= 400);
        if let (RefOr::T(response), true) = (response, error) {
            if let Some(content) = response.content.shift_remove("application/json") {
                response.content.insert("application/problem+json".to_string(), content);
            }
        }
    }
    if ["/healthz", "/readyz", "/openapi.json"].contains(&path) {
        operation.security = Some(Vec::new());
        return;
    }
    let mut add = |status: &str, description: &str| {
        responses.entry(status.to_string()).or_insert_with(|| RefOr::T(problem(description)));
    };
    add("401", "No API key, or not one of this server's (`WWW-Authenticate: Bearer`)");
    if method != "GET" && !path.ends_with("/generate") {
        add("403", "A read key on a route that needs a write key");
    }
    if method == "POST" && path != "/datasets" {
        add("415", "A body that is not application/json");
    }
    let queried = operation.parameters.iter().flatten().any(|p| p.parameter_in == ParameterIn::Query);
    if queried {
        operation
            .responses
            .responses
            .entry("400".to_string())
            .or_insert_with(|| RefOr::T(problem("A malformed query string, e.g. a repeated parameter")));
    }
}

/// A response whose body is a problem.
fn problem(description: &str) -> Response {
    let mut response = Response::new(description);
    let content = Content::new(Some(Ref::from_schema_name("Problem")));
    response.content.insert("application/problem+json".to_string(), content);
    response
}

/// The document as committed in `openapi/openapi.json`.
pub fn pretty() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serialises");
    text.push('\n');
    text
}
