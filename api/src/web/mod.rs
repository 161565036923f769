//! The browser side of Landport (SPEC 6): `GET /`, the live map for operators, and
//! `GET /track/{token}`, the page for an end customer following one shipment.
//!
//! Layout: `assets` (every file the pages load, compiled into the binary, served under
//! `/assets/...`), this file (the two pages and the router). The pages are static HTML plus
//! plain JavaScript (no build step) that read the JSON API from the browser: the map page
//! uses the caller's key (`/v1/devices`, `/v1/geofences`, `/v1/shipments`, `/v1/events`, and
//! the `/v1/stream` SSE read with `fetch`, since `EventSource` cannot send the
//! `Authorization` header); the tracking page polls the keyless `/v1/public/{token}`.
//!
//! The map page also replays a device's history (SPEC 14): a device picked in its searchable
//! list (or a shipment's "Replay track"), or the fragment `#key=K&device=ID&from=T&to=T`,
//! loads `/v1/devices/{id}/track` and `/v1/devices/{id}/stops` for the range and draws the
//! track, a labelled marker per stop and a slider (with play) moving a marker along it by
//! time. Shipments' planned routes and geofence names are drawn on the live map.
//!
//! Nothing is fetched at run time but map tiles, from the configured URL; the pages work
//! (markers, shapes, panels) without them.

mod assets;

/// The customer tracking page's template (`{{CONFIG}}` stands for its settings): cluster
/// mode's front renders it too.
pub use assets::TRACK_HTML;
mod webhooks;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::error::ApiError;
use crate::state::ApiState;

/// What the pages need from the `[map]` config section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapSettings {
    /// Raster tile URL template (`{z}`, `{x}`, `{y}`, optionally `{s}`), absolute or a path on
    /// this server: the only thing the pages load from elsewhere.
    pub tile_url: String,
    /// Attribution shown under the map for the tiles (HTML, as Leaflet takes it).
    pub tile_attribution: String,
}

/// The pages, rendered once with the settings in them.
#[derive(Clone)]
struct Web {
    api: ApiState,
    /// The pages with the settings in them (cheap to clone per response).
    map_html: Bytes,
    track_html: Bytes,
}

/// `GET /`, `GET /track/{token}` and `GET /assets/...`. `api` is used to tell a known share
/// token from an unknown one (404 page).
pub fn router(map: MapSettings, api: ApiState) -> Router {
    let config = page_config(&map);
    let render = |page: &str| Bytes::from(page.replace("{{CONFIG}}", &config));
    let rate = axum::middleware::from_fn_with_state(api.clone(), crate::v1::token_rate);
    let web = Web {
        api,
        map_html: render(assets::MAP_HTML),
        track_html: render(assets::TRACK_HTML),
    };
    Router::new()
        .route("/", get(map_page))
        .route("/track/{token}", get(track_page).layer(rate))
        .route("/assets/{*path}", get(asset))
        .with_state(web)
        .merge(webhooks::router())
}

/// The paths under `/assets/` this router serves (every file the pages may load).
pub fn asset_paths() -> impl Iterator<Item = &'static str> {
    assets::ALL.iter().map(|a| a.path)
}

/// The settings as JSON safe inside a `<script type="application/json">` element: `<`, `>`
/// and `&` only occur inside JSON strings, where their `\u` escapes mean the same.
fn page_config(map: &MapSettings) -> String {
    json!({"tile_url": map.tile_url, "tile_attribution": map.tile_attribution})
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The pages may load scripts, styles and data from this server only; images (tiles) from
/// anywhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src * data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

fn html(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn map_page(State(w): State<Web>) -> Response {
    html(StatusCode::OK, w.map_html.clone())
}

/// The tracking page for a token that opens a shipment now, a friendly 404 page for any other
/// (unknown, revoked or expired: SPEC 15).
async fn track_page(State(w): State<Web>, Path(token): Path<String>) -> Result<Response, ApiError> {
    let open = crate::v1::shipments::open_share(&w.api, &token).await?;
    Ok(if open.is_some() {
        html(StatusCode::OK, w.track_html.clone())
    } else {
        html(
            StatusCode::NOT_FOUND,
            Bytes::from_static(assets::NOT_FOUND_HTML.as_bytes()),
        )
    })
}

/// One bundled file, with an `ETag` (answered with 304 when it matches).
async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(a) = assets::find(&path) else {
        return ApiError::not_found("asset", path).into_response();
    };
    let etag = a.etag();
    let cache = if a.immutable {
        "public, max-age=604800"
    } else {
        "no-cache"
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let etag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
    if matches {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            ],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (header::ETAG, etag),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        a.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_config_cannot_close_the_script_element() {
        let c = page_config(&MapSettings {
            tile_url: "/t/{z}/{x}/{y}.png".into(),
            tile_attribution: "</script><b>&</b>".into(),
        });
        assert!(
            !c.contains('<') && !c.contains('>') && !c.contains('&'),
            "{c}"
        );
        let v: serde_json::Value = serde_json::from_str(&c).unwrap();
        assert_eq!(v["tile_attribution"], "</script><b>&</b>");
    }
}
