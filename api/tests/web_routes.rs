//! The pages and their assets (`landport_api::web`), called through the router: content
//! types, cache headers, the 404 page for an unknown share token, and that the HTML loads
//! nothing but this server's assets (and the configured tiles).

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use landport_api::web::{self, MapSettings};
use serde_json::{Value, json};
use support::TestApi;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-key";
const TILES: &str = "https://tiles.example.test/{z}/{x}/{y}.png";

fn app() -> (Router, TestApi) {
    let t = TestApi::new(ADMIN);
    let router = t.router_with_pages(MapSettings {
        tile_url: TILES.into(),
        tile_attribution: "Tiles: <b>Example</b>".into(),
    });
    (router, t)
}

struct Got {
    status: StatusCode,
    content_type: String,
    cache: String,
    etag: Option<String>,
    body: Vec<u8>,
}

async fn send(router: &Router, req: Request<Body>) -> Got {
    let res = router.clone().oneshot(req).await.unwrap();
    let h = |name| {
        res.headers()
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let (content_type, cache, etag) = (
        h(header::CONTENT_TYPE).unwrap_or_default(),
        h(header::CACHE_CONTROL).unwrap_or_default(),
        h(header::ETAG),
    );
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Got {
        status,
        content_type,
        cache,
        etag,
        body,
    }
}

async fn get(router: &Router, path: &str) -> Got {
    send(router, Request::get(path).body(Body::empty()).unwrap()).await
}

async fn post(router: &Router, path: &str, key: &str, body: Value) -> Value {
    let req = Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let got = send(router, req).await;
    assert_eq!(
        got.status,
        StatusCode::CREATED,
        "{path}: {}",
        String::from_utf8_lossy(&got.body)
    );
    serde_json::from_slice(&got.body).unwrap()
}

/// The URLs an HTML page loads: every `src="..."` and `href="..."`.
fn loaded_urls(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            out.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    out
}

fn assert_local_only(what: &str, html: &str) {
    let urls = loaded_urls(html);
    assert!(!urls.is_empty(), "{what}");
    for u in &urls {
        assert!(u.starts_with("/assets/"), "{what} loads {u}");
    }
    // No other absolute URL anywhere in the page, inline config included.
    let rest = html.replace(TILES, "");
    assert!(
        !rest.contains("http:") && !rest.contains("https:"),
        "{what}: {rest}"
    );
    assert!(!rest.contains("//"), "{what} has a protocol-relative URL");
}

#[tokio::test]
async fn the_live_map_is_html_that_loads_only_local_assets() {
    let (router, _dir) = app();
    let got = get(&router, "/").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.content_type, "text/html; charset=utf-8");
    assert_eq!(got.cache, "no-cache");
    let html = String::from_utf8(got.body).unwrap();
    assert_local_only("/", &html);
    // The settings are in the page, the attribution's markup escaped for the script element.
    assert!(html.contains(TILES), "{html}");
    assert!(html.contains("\\u003cb\\u003eExample"), "{html}");
    for a in ["/assets/vendor/leaflet/leaflet.js", "/assets/map.js"] {
        assert!(html.contains(a), "{a}");
    }
}

#[tokio::test]
async fn an_unknown_share_token_gets_a_friendly_404_page() {
    let (router, _dir) = app();
    let got = get(&router, "/track/x").await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert_eq!(got.content_type, "text/html; charset=utf-8");
    let html = String::from_utf8(got.body).unwrap();
    assert!(html.contains("could not find this shipment"), "{html}");
    assert_local_only("/track/x", &html);
}

#[tokio::test]
async fn a_shared_shipment_gets_its_tracking_page() {
    let (router, _dir) = app();
    post(
        &router,
        "/v1/tenants",
        ADMIN,
        json!({"id": "acme", "name": "Acme"}),
    )
    .await;
    let key = post(&router, "/v1/tenants/acme/keys", ADMIN, json!({})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let device = json!({"id": "truck-1", "name": "Truck 1", "kind": "truck"});
    post(&router, "/v1/devices", &key, device).await;
    let shipment = json!({"id": "SHP-1", "device": "truck-1", "reference": "PO-1",
        "destination": {"lat": 38.9, "lon": 121.6}});
    post(&router, "/v1/shipments", &key, shipment).await;
    let share = post(&router, "/v1/shipments/SHP-1/share", &key, json!({})).await;
    let token = share["token"].as_str().unwrap();

    let got = get(&router, &format!("/track/{token}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.content_type, "text/html; charset=utf-8");
    let html = String::from_utf8(got.body).unwrap();
    assert!(html.contains("/assets/track.js"), "{html}");
    assert_local_only("/track/{token}", &html);

    // revoked (SPEC 15): the page is the 404 one, as for an unknown token
    let revoke = axum::http::Request::delete("/v1/shipments/SHP-1/share")
        .header("authorization", format!("Bearer {key}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(router.clone(), revoke)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let got = get(&router, &format!("/track/{token}")).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_asset_has_its_content_type_and_cache_headers() {
    let (router, _dir) = app();
    let mut n = 0;
    for path in web::asset_paths() {
        n += 1;
        let url = format!("/assets/{path}");
        let got = get(&router, &url).await;
        assert_eq!(got.status, StatusCode::OK, "{url}");
        assert!(!got.body.is_empty(), "{url}");
        let want = match path.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "png" => "image/png",
            _ => "text/plain; charset=utf-8",
        };
        assert_eq!(got.content_type, want, "{url}");
        if path.starts_with("vendor/") {
            assert!(got.cache.contains("max-age="), "{url}: {}", got.cache);
        } else {
            assert_eq!(got.cache, "no-cache", "{url}");
            // Our own scripts and styles load nothing from elsewhere.
            // (The SVG namespace is a name, not a fetch.)
            let text = String::from_utf8(got.body)
                .unwrap()
                .replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http:") && !text.contains("https:"), "{url}");
        }
        // Revalidation answers 304 without a body.
        let etag = got.etag.expect("an ETag");
        let req = Request::get(&url)
            .header(header::IF_NONE_MATCH, &etag)
            .body(Body::empty())
            .unwrap();
        let again = send(&router, req).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{url}");
        assert!(again.body.is_empty());
    }
    assert!(n >= 8, "{n} assets");
    assert_eq!(
        get(&router, "/assets/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn leaflet_css_points_only_at_bundled_images() {
    let (router, _dir) = app();
    let css = get(&router, "/assets/vendor/leaflet/leaflet.css")
        .await
        .body;
    let css = String::from_utf8(css).unwrap();
    for (i, _) in css.match_indices("url(") {
        let rest = &css[i + 4..];
        let url = rest[..rest.find(')').unwrap()].trim_matches(['"', '\'']);
        // `#default#VML` is an old-IE behavior, not a fetch.
        if url.starts_with("data:") || url.starts_with('#') {
            continue;
        }
        let path = format!("/assets/vendor/leaflet/{url}");
        assert_eq!(get(&router, &path).await.status, StatusCode::OK, "{path}");
    }
}
