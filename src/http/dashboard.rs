//! `GET /`: the dashboard, a page of HTML, CSS and JavaScript embedded in the binary (no build
//! step), that shows the jobs table, a job's live curves, its checkpoints and generation, and a
//! view that overlays the curves of chosen jobs. Charts are Chart.js 3.9.1, vendored unchanged
//! from Debian's `libjs-chart.js` with its licence (`dashboard/vendor/`).
//!
//! The page and its assets are open even when the server has keys: they hold no data, and the
//! page must load to ask for a key. So is `/favicon.ico` (a 32×32 icon, the page's too), which
//! browsers ask for on their own: without it a keyed server answered 401 on every page. Everything it shows it reads from the API with that key, which
//! it keeps in the tab's session storage.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

/// The page and its assets: path, content type, body.
const ASSETS: [(&str, &str, &[u8]); 5] = [
    ("/", "text/html; charset=utf-8", include_bytes!("dashboard/index.html")),
    ("/dashboard/app.js", "text/javascript; charset=utf-8", include_bytes!("dashboard/app.js")),
    ("/dashboard/style.css", "text/css; charset=utf-8", include_bytes!("dashboard/style.css")),
    (
        "/dashboard/chart.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/vendor/chart-3.9.1.min.js"),
    ),
    ("/favicon.ico", "image/x-icon", include_bytes!("dashboard/favicon.ico")),
];

/// Only this server's own scripts and styles; no framing by other sites.
const POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
                      frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Whether `path` is one of the dashboard's (open) paths.
pub fn is_asset(path: &str) -> bool {
    ASSETS.iter().any(|(p, _, _)| *p == path)
}

/// Routes of the dashboard.
pub fn router() -> Router<AppState> {
    ASSETS.iter().fold(Router::new(), |router, &(path, content_type, body)| {
        router.route(path, get(move || async move { asset(content_type, body) }))
    })
}

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_favicon_is_an_open_asset_and_an_icon() {
        assert!(is_asset("/favicon.ico"));
        let (_, content_type, body) = ASSETS.iter().find(|(p, _, _)| *p == "/favicon.ico").unwrap();
        assert_eq!(*content_type, "image/x-icon");
        // An ICO header (reserved 0, type 1 = icon, one image) holding a PNG.
        assert_eq!(&body[..6], &[0, 0, 1, 0, 1, 0]);
        assert_eq!(&body[22..30], b"\x89PNG\r\n\x1a\n");
    }
}
