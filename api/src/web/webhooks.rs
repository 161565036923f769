//! `GET /webhooks`: a small page showing each webhook's health (last success, failures,
//! pending) from `/v1/webhooks`, with the caller's key from the URL fragment (`#key=...`) or
//! the browser's storage, like the live map. Its script is served at `/webhooks/app.js` (the
//! pages' content security policy allows scripts from this server only).

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const PAGE: &str = include_str!("webhooks.html");
const SCRIPT: &str = include_str!("webhooks.js");

/// The page and its script.
pub(super) fn router() -> Router {
    Router::new()
        .route("/webhooks", get(page))
        .route("/webhooks/app.js", get(script))
}

async fn page() -> Response {
    super::html(StatusCode::OK, Bytes::from_static(PAGE.as_bytes()))
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        SCRIPT,
    )
        .into_response()
}
