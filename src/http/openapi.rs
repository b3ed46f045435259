//! The OpenAPI document, generated from the handlers' annotations, and `GET /openapi.json`,
//! which serves it.
//!
//! `openapi/openapi.json` in the repository is this document, pretty-printed; a test fails when
//! the two differ (regenerate with `cargo run -- openapi > openapi/openapi.json`).
//!
//! What every operation shares is added here rather than on each handler: errors are
//! `application/problem+json`; every route but the open ones needs a bearer key (401, 403); a
//! route that reads JSON answers 415 to other bodies; a body that stops arriving is a 408.
//!
//! So are the examples and links that let a client follow what it creates (see [`follow_ids`]):
//! the example jobs and the example corpus are small enough to train in seconds, and the links
//! lead from `POST /jobs` and `POST /datasets` (`$response.body#/id`) to every operation on the
//! job or data set. A fuzzer's stateful phase (`scripts/fuzz-api`) creates jobs with them and
//! reaches the per-job routes with real ids.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::link::{Link, LinkBuilder};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};

use super::AppState;

/// The route of this document.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], pretty())
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
        (name = "cluster", description = "The replicas serving this server's database"),
        (name = "health", description = "Liveness and readiness"),
    ),
)]
struct ApiDoc;

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::jobs::Paths::openapi());
    doc.merge(super::checkpoints::Paths::openapi());
    doc.merge(super::events::Paths::openapi());
    doc.merge(super::prometheus::Paths::openapi());
    doc.merge(super::datasets::Paths::openapi());
    doc.merge(super::predict::Paths::openapi());
    doc.merge(super::backends::Paths::openapi());
    doc.merge(super::cluster::Paths::openapi());
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
    follow_ids(&mut doc);
    doc
}

/// The name of the bearer-key security scheme.
const KEY_SCHEME: &str = "api_key";

/// Adds what every operation shares (see the module doc) to one operation.
fn shared_rules(method: &str, path: &str, operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    for (status, response) in responses.iter_mut() {
        let error = status.parse::<u16>().is_ok_and(|code| code >= 400);
        let RefOr::T(response) = response else { continue };
        if let Some(content) = response.content.get_mut("text/event-stream") {
            content.schema = Some(sse_event(path == "/events").into());
        }
        if !error {
            continue;
        }
        if let Some(content) = response.content.shift_remove("application/json") {
            response.content.insert("application/problem+json".to_string(), content);
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
    if method == "POST" && operation.request_body.is_some() {
        add("408", "The body stopped arriving for --body-timeout-secs (the connection is closed)");
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

/// Jobs that train in seconds on a small server (one epoch of tiny generated data), as examples
/// of `POST /jobs`: a fuzzer mixes them into what it sends, so it creates jobs for real.
fn example_jobs() -> [(&'static str, &'static str, Value); 3] {
    [
        (
            "lenet",
            "LeNet on 64 generated images, one epoch",
            json!({
                "name": "tiny lenet",
                "model": {"kind": "lenet_bn"},
                "data": {"dataset": "synthetic_images", "train_size": 64, "test_size": 16, "seed": 1},
                "training": {"epochs": 1, "batch_size": 16, "optimizer": {"kind": "sgd", "lr": 0.1}},
                "checkpoint": {"every": 1, "keep_last": 1}
            }),
        ),
        (
            "mlp",
            "An MLP with Adam on 64 generated images",
            json!({
                "name": "tiny mlp",
                "model": {"kind": "mlp_bn", "hidden": [32]},
                "data": {"dataset": "synthetic_images", "train_size": 64, "test_size": 16},
                "training": {"epochs": 1, "batch_size": 16, "optimizer": {"kind": "adam", "lr": 0.001}}
            }),
        ),
        (
            "language_model",
            "A GRU language model on 2,000 generated characters: it can generate",
            json!({
                "name": "tiny language model",
                "model": {"kind": "rnn_lm", "cell": "gru", "hidden": 16},
                "data": {"dataset": "synthetic_text", "chars": 2000, "num_steps": 8},
                "training": {"epochs": 1, "batch_size": 8},
                "checkpoint": {"keep_last": 1}
            }),
        ),
    ]
}

/// A short corpus, the example of `POST /datasets`.
const EXAMPLE_CORPUS: &str = "the time traveller for so it will be convenient to speak of him was \
    expounding a recondite matter to us his grey eyes shone and twinkled and his usually pale face \
    was flushed and animated the fire burned brightly and the soft radiance of the incandescent \
    lights in the lilies of silver caught the bubbles that flashed and passed in our glasses";

/// The request of `POST /jobs/{id}/generate` that links follow, also its example.
fn example_generate() -> Value {
    json!({"prefix": "the ", "max_tokens": 10})
}

/// A link to operation `operation_id`, with `parameters` (name, runtime expression).
fn to(operation_id: &str, parameters: &[(&str, &str)], description: &str) -> Link {
    let mut link = LinkBuilder::new().operation_id(operation_id).description(description);
    for (name, expression) in parameters {
        link = link.parameter(*name, *expression);
    }
    link.build()
}

/// A predict request for the example classifiers: one blank 28x28 grey image, flat.
fn example_predict() -> Value {
    json!({"images": [vec![0.0; 28 * 28]], "top_k": 3})
}

/// Adds the examples and links of the module doc.
fn follow_ids(doc: &mut utoipa::openapi::OpenApi) {
    let paths = &mut doc.paths;
    let job = [("id", "$response.body#/id")];
    let generate = LinkBuilder::new()
        .operation_id("generate")
        .parameter("id", "$response.body#/id")
        .request_body(Some(example_generate()))
        .description("Text from it, once it has a checkpoint (a language model)")
        .build();
    let predict = LinkBuilder::new()
        .operation_id("predict")
        .parameter("id", "$response.body#/id")
        .request_body(Some(example_predict()))
        .description("The likeliest classes of an image, once it has a checkpoint (an image classifier)")
        .build();
    let job_links = [
        ("show", to("show", &job, "The job")),
        ("metrics", to("metrics", &job, "Its metrics")),
        ("checkpoints", to("checkpoints", &job, "Its checkpoints")),
        ("events", to("job_events", &job, "Its event stream")),
        ("cancel", to("cancel", &job, "Cancel it")),
        ("delete", to("remove", &job, "Delete it (once finished)")),
        ("generate", generate),
        ("predict", predict),
    ];
    if let Some(submit) = operation(paths, "/jobs", true) {
        examples(submit, "application/json", example_jobs());
        link(submit, "201", &job_links);
        link(submit, "200", &job_links);
    }
    if let Some(generate) = operation(paths, "/jobs/{id}/generate", true) {
        examples(generate, "application/json", [("greedy", "Ten tokens after \"the \"", example_generate())]);
    }
    if let Some(predict) = operation(paths, "/jobs/{id}/predict", true) {
        examples(predict, "application/json", [("blank", "A blank 28x28 grey image", example_predict())]);
    }
    if let Some(checkpoints) = operation(paths, "/jobs/{id}/checkpoints", false) {
        let parameters = [("id", "$request.path.id"), ("checkpoint_id", "$response.body#/0/id")];
        link(checkpoints, "200", &[("download", to("download", &parameters, "The oldest kept checkpoint"))]);
    }
    if let Some(upload) = operation(paths, "/datasets", true) {
        let corpus = Value::String(EXAMPLE_CORPUS.into());
        examples(upload, "text/plain", [("corpus", "A paragraph of The Time Machine", corpus)]);
        let dataset = [("id", "$response.body#/id")];
        let train = LinkBuilder::new()
            .operation_id("submit")
            .request_body(Some(json!({
                "name": "tiny language model on an upload",
                "model": {"kind": "rnn_lm", "hidden": 16},
                "data": {"dataset": "uploaded", "dataset_id": "$response.body#/id", "num_steps": 8},
                "training": {"epochs": 1, "batch_size": 4}
            })))
            .description("A language model trained on it")
            .build();
        let links = [
            ("show", to("show_dataset", &dataset, "The data set")),
            ("delete", to("delete_dataset", &dataset, "Delete it")),
            ("train", train),
        ];
        link(upload, "201", &links);
    }
}

/// The `POST` (else the `GET`) operation at `path`.
fn operation<'a>(paths: &'a mut utoipa::openapi::Paths, path: &str, post: bool) -> Option<&'a mut Operation> {
    let item = paths.paths.get_mut(path)?;
    if post { item.post.as_mut() } else { item.get.as_mut() }
}

/// Adds `examples` (name, summary, value) to the request body of `operation` as `media_type`.
fn examples<const N: usize>(operation: &mut Operation, media_type: &str, examples: [(&str, &str, Value); N]) {
    let body = operation.request_body.as_mut();
    let Some(content) = body.and_then(|body| body.content.get_mut(media_type)) else { return };
    for (name, summary, value) in examples {
        let example = ExampleBuilder::new().summary(summary).value(Some(value)).build();
        content.examples.insert(name.to_string(), RefOr::T(example));
    }
}

/// Adds `links` (name, link) to the `status` response of `operation`.
fn link(operation: &mut Operation, status: &str, links: &[(&str, Link)]) {
    if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) {
        for (name, link) in links {
            response.links.insert(name.to_string(), RefOr::T(link.clone()));
        }
    }
}

/// One Server-Sent Event, which the `schema` of a `text/event-stream` response describes in
/// OpenAPI 3.1 (3.2 calls it `itemSchema`): its `id`, its kind and its JSON body. The stream of
/// every job (`all`) adds `deleted`, an event without an id.
fn sse_event(all: bool) -> Schema {
    let text =
        |description: &str| ObjectBuilder::new().schema_type(Type::String).description(Some(description));
    let mut kinds = vec!["status", "step", "epoch", "checkpoint"];
    let mut id = "The event's number: send it as Last-Event-ID to resume after it".to_string();
    if all {
        kinds.push("deleted");
        id = id.replace("number", "number (none on `deleted`)");
    }
    let event = ObjectBuilder::new()
        .property("id", text(&id))
        .property("event", text("The kind of event").enum_values(Some(kinds)))
        .property("data", text("The event's body, a JSON object"));
    let event = if all { event } else { event.required("id") };
    event.required("event").required("data").description(Some("One event of the stream")).into()
}

/// A response whose body is a problem.
fn problem(description: &str) -> Response {
    let mut response = Response::new(description);
    let content = Content::new(Some(Ref::from_schema_name("Problem")));
    response.content.insert("application/problem+json".to_string(), content);
    response
}

/// The document as committed in `openapi/openapi.json` and served, pretty-printed JSON.
///
/// utoipa 5 writes a link's fields in snake case (`operation_id`, `request_body`,
/// `operation_ref`), where the OpenAPI specification, and every client, reads camel case: they
/// are renamed here. No other key of the document has these names (a test checks).
pub fn pretty() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serialises");
    for (snake, camel) in LINK_FIELDS {
        text = text.replace(&format!("\"{snake}\": "), &format!("\"{camel}\": "));
    }
    text.push('\n');
    text
}

/// The fields of a link object utoipa names in snake case, and their names.
const LINK_FIELDS: [(&str, &str); 3] =
    [("operation_id", "operationId"), ("request_body", "requestBody"), ("operation_ref", "operationRef")];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_links_have_keys_named_in_snake_case_and_they_are_renamed() {
        let text = pretty();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let links: Vec<&Value> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .flat_map(|operation| operation["responses"].as_object().unwrap().values())
            .filter_map(|response| response["links"].as_object())
            .flat_map(|links| links.values())
            .collect();
        assert!(links.len() >= 10, "{links:?}");
        let utoipas = serde_json::to_string_pretty(&document()).unwrap();
        for (snake, camel) in LINK_FIELDS {
            let renamed = links.iter().filter(|link| link.get(camel).is_some()).count();
            assert_eq!(utoipas.matches(&format!("\"{snake}\": ")).count(), renamed, "{snake} outside a link");
            assert!(!text.contains(&format!("\"{snake}\"")), "{snake}");
        }
        assert!(links.iter().all(|link| link["operationId"].is_string()), "{links:?}");
    }

    /// Client generators merge an `allOf` of objects only: openapi-python-client drops a schema
    /// that takes `allOf` over a `oneOf` (a flattened enum), and with it every type that holds it.
    #[test]
    fn every_all_of_is_over_objects() {
        let doc: Value = serde_json::to_value(document()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let resolve = |schema: &Value| -> Value {
            match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
                Some(name) => schemas[name].clone(),
                None => schema.clone(),
            }
        };
        let mut pending = vec![&doc];
        let mut all_ofs = 0;
        while let Some(value) = pending.pop() {
            match value {
                Value::Object(object) => {
                    for part in object.get("allOf").and_then(Value::as_array).into_iter().flatten() {
                        let part = resolve(part);
                        assert_eq!(part["type"], "object", "an allOf over {part}");
                        all_ofs += 1;
                    }
                    pending.extend(object.values());
                }
                Value::Array(items) => pending.extend(items),
                _ => {}
            }
        }
        assert!(all_ofs >= 4, "the data sets' allOfs are gone: the test checks nothing");
    }
}
