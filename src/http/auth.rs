//! Who may call which route: the `Authorization: Bearer <key>` check in front of the API, and
//! the media-type and CORS rules that keep other web pages from driving it.
//!
//! Every route needs a key when the server has keys ([`crate::keys::Access`]), except
//! `/healthz`, `/readyz`, `/openapi.json` and the dashboard's page and assets, `/favicon.ico`
//! among them (they hold no data: the page asks for a key and reads everything through the API
//! with it). `read` keys may use `GET` routes, generation and prediction; everything else needs a `write`
//! key. Without a key the answer is 401 with `WWW-Authenticate: Bearer`; with a read key on a
//! write route, 403.
//!
//! A browser sends some cross-site requests without asking first ("simple" requests:
//! `text/plain`, form encodings), so a JSON route that took any body type could be driven by any
//! web page a user of an open (loopback) server visits. [`json_only`] answers 415 to every body
//! that is not `application/json` on the routes that read JSON, and to any body type on the POST
//! routes that take no body. CORS headers are only sent for the origins `--cors-origin` lists.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;
use crate::keys::{Access, Scope};

/// Routes anyone may call: probes and the API document.
const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/openapi.json"];

/// The scope a request needs, or `None` for an open route.
fn needed_scope(method: &Method, path: &str) -> Option<Scope> {
    if OPEN_PATHS.contains(&path) || (method == Method::GET && super::dashboard::is_asset(path)) {
        return None;
    }
    let generation = method == Method::POST
        && path.starts_with("/jobs/")
        && (path.ends_with("/generate") || path.ends_with("/predict"));
    if method == Method::GET || method == Method::HEAD || generation {
        Some(Scope::Read)
    } else {
        Some(Scope::Write)
    }
}

/// Middleware: refuses a request without a key of the scope its route needs.
pub async fn require_key(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let Access::Keys(keys) = access.as_ref() else {
        return next.run(request).await;
    };
    let Some(needed) = needed_scope(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let token = match bearer_token(request.headers()) {
        Ok(token) => token,
        Err(error) => return error.into_response(),
    };
    match Access::scope_of(keys, token) {
        None => ApiError::Unauthorized("the API key is not one of this server's".into()).into_response(),
        Some(scope) if scope < needed => ApiError::Forbidden(format!(
            "a {} key may not {} {}; this needs a {} key",
            scope.as_str(),
            request.method(),
            request.uri().path(),
            needed.as_str()
        ))
        .into_response(),
        Some(_) => next.run(request).await,
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let missing = || ApiError::Unauthorized("send an API key as `Authorization: Bearer <key>`".into());
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(missing());
    }
    Ok(token)
}

/// Routes that read a JSON body, and POST routes that read none.
fn body_rule(method: &Method, path: &str) -> BodyRule {
    // An upload, and a PNG or JPEG to predict: their handlers check the media type.
    if method != Method::POST || path == "/datasets" || path.ends_with("/predict") {
        return BodyRule::Any;
    }
    if path == "/jobs" || path.ends_with("/generate") { BodyRule::Json } else { BodyRule::NoneOrJson }
}

enum BodyRule {
    Any,
    Json,
    NoneOrJson,
}

/// Whether a `Content-Type` value is JSON: `application/json`, any parameters (e.g. `charset`).
fn is_json(value: &HeaderValue) -> bool {
    let essence = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Middleware: 415 for a body that is not JSON on a JSON route (see the module doc).
pub async fn json_only(request: Request, next: Next) -> Response {
    let content_type = request.headers().get(header::CONTENT_TYPE);
    let refused = match body_rule(request.method(), request.uri().path()) {
        BodyRule::Any => false,
        BodyRule::Json => !content_type.is_some_and(is_json),
        BodyRule::NoneOrJson => content_type.is_some_and(|v| !is_json(v)),
    };
    if refused {
        let got = content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let got = got.map_or_else(|| "none".to_string(), |v| format!("{v:?}"));
        return ApiError::UnsupportedMediaType(format!("content-type must be application/json; got {got}"))
            .into_response();
    }
    next.run(request).await
}

/// The CORS layer for `origins`, or an error naming the one that is not an origin.
pub fn cors(origins: &[String]) -> Result<Option<CorsLayer>, String> {
    if origins.is_empty() {
        return Ok(None);
    }
    let mut values = Vec::new();
    for origin in origins {
        let origin = origin.trim().trim_end_matches('/');
        let well_formed = (origin.starts_with("http://") || origin.starts_with("https://"))
            && !origin.split_once("://").is_some_and(|(_, rest)| rest.is_empty() || rest.contains('/'));
        let value = HeaderValue::from_str(origin).ok().filter(|_| well_formed).ok_or_else(|| {
            format!("--cors-origin {origin:?} is not an origin like https://example.com or http://host:8080")
        })?;
        values.push(value);
    }
    let layer = CorsLayer::new()
        .allow_origin(AllowOrigin::list(values))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            header::LOCATION,
            header::RETRY_AFTER,
            header::HeaderName::from_static("x-checksum-sha256"),
        ]);
    Ok(Some(layer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_a_read_key_changes_a_write_key_and_probes_none() {
        assert_eq!(needed_scope(&Method::GET, "/jobs"), Some(Scope::Read));
        assert_eq!(needed_scope(&Method::POST, "/jobs/x/generate"), Some(Scope::Read));
        assert_eq!(needed_scope(&Method::POST, "/jobs/x/predict"), Some(Scope::Read));
        assert_eq!(needed_scope(&Method::POST, "/jobs"), Some(Scope::Write));
        assert_eq!(needed_scope(&Method::DELETE, "/datasets/x"), Some(Scope::Write));
        assert_eq!(needed_scope(&Method::POST, "/jobs/x/cancel"), Some(Scope::Write));
        assert_eq!(needed_scope(&Method::GET, "/nowhere"), Some(Scope::Read));
        for open in OPEN_PATHS.into_iter().chain(["/", "/dashboard/app.js", "/favicon.ico"]) {
            assert_eq!(needed_scope(&Method::GET, open), None, "{open}");
        }
    }

    #[test]
    fn only_origins_make_a_cors_layer() {
        assert!(cors(&[]).unwrap().is_none());
        assert!(cors(&["https://ui.example.com".into(), "http://localhost:3000/".into()]).unwrap().is_some());
        for bad in ["ui.example.com", "https://", "https://a.com/path", "*"] {
            assert!(cors(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
