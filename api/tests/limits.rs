//! SPEC 15 through the router: pagination, per-tenant quotas (422 naming the limit), the
//! per-key and per-share-link rate (429 with `retry-after`), the live streams' cap, the
//! geofence vertex cap and bounded validation.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use landport_api::{ApiState, AppState, Limits, router_with_api};
use landport_pipeline::metrics::Metrics;
use landport_pipeline::{Core, Output, TrackerHandle};
use landport_store::{DeviceRecord, Store};
use landport_tracker::{Reading, Tracker, TrackerSettings};
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-key-for-the-limits-tests-0123456789";

struct App {
    dir: tempfile::TempDir,
    router: Router,
    tracker: TrackerHandle,
    api: ApiState,
}

impl App {
    fn new(limits: Limits) -> App {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let core = Core::new(
            Tracker::new(TrackerSettings::default()),
            true,
            metrics.clone(),
        );
        let tracker = TrackerHandle::standalone(core);
        let (events, _) = tokio::sync::broadcast::channel(16);
        let api = ApiState::with_limits(dir.path(), tracker.clone(), events, Some(ADMIN), limits)
            .unwrap();
        let state = AppState {
            metrics,
            ready: Arc::new(AtomicBool::new(true)),
        };
        let router = router_with_api(state, api.clone()).merge(landport_api::web::router(
            landport_api::web::MapSettings {
                tile_url: "/tiles/{z}/{x}/{y}.png".into(),
                tile_attribution: String::new(),
            },
            api.clone(),
        ));
        App {
            dir,
            router,
            tracker,
            api,
        }
    }

    /// Limits with a rate no test here reaches, except where a test lowers it.
    fn unhurried(limits: Limits) -> App {
        App::new(Limits {
            requests_per_second: 1_000_000,
            burst: 1_000_000,
            ..limits
        })
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b)),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, v)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (s, _, v) = self
            .raw(method, path, Some(key), body.map(|b| b.to_string()))
            .await;
        (s, v)
    }

    /// Creates tenant `id` and returns a key of it.
    async fn tenant(&self, id: &str) -> String {
        let (s, v) = self
            .call(
                "POST",
                "/v1/tenants",
                ADMIN,
                Some(json!({"id": id, "name": id})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (s, v) = self
            .call("POST", &format!("/v1/tenants/{id}/keys"), ADMIN, None)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["key"].as_str().unwrap().to_owned()
    }

    /// Every item of a paged list, following `next`, with the page sizes seen.
    async fn walk(&self, path: &str, items: &str, key: &str) -> (Vec<Value>, Vec<usize>) {
        let (mut all, mut sizes) = (Vec::new(), Vec::new());
        let mut next: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &next {
                Some(c) => format!("{path}{sep}next={c}"),
                None => path.to_owned(),
            };
            let (s, v) = self.call("GET", &url, key, None).await;
            assert_eq!(s, StatusCode::OK, "{url}: {v}");
            let page = v[items].as_array().unwrap().clone();
            sizes.push(page.len());
            all.extend(page);
            match v["next"].as_str() {
                Some(c) => next = Some(c.to_owned()),
                None => {
                    assert!(v["next"].is_null(), "{v}");
                    return (all, sizes);
                }
            }
        }
    }
}

fn device(tenant: &str, id: &str) -> DeviceRecord {
    DeviceRecord {
        tenant: tenant.into(),
        id: id.into(),
        name: id.into(),
        kind: "truck".into(),
        profile: Value::Null,
        created_ms: 0,
    }
}

/// A closed ring of `n` positions (the first repeated last) around (lon, lat): a star, simple.
fn ring(n: usize, lon: f64, lat: f64) -> Vec<[f64; 2]> {
    let k = n - 1;
    let mut v: Vec<[f64; 2]> = (0..k)
        .map(|i| {
            let a = i as f64 / k as f64 * std::f64::consts::TAU;
            let r = 0.05 + 0.03 * ((i * 7919) % 1000) as f64 / 1000.0;
            [lon + r * a.cos(), lat + r * a.sin()]
        })
        .collect();
    v.push(v[0]);
    v
}

fn polygon(coords: Vec<[f64; 2]>) -> Value {
    json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [coords]}})
}

#[tokio::test]
async fn walking_2500_devices_page_by_page_returns_each_once_in_order() {
    let app = App::unhurried(Limits::default());
    let acme = app.tenant("acme").await;
    let beta = app.tenant("beta").await;
    // 2,400 registered in one transaction-free go, 100 through the API, and live-only ones
    // the tracker knows from telemetry (auto-registered).
    let mut store = Store::open(app.dir.path()).unwrap();
    for i in 0..2_400 {
        store
            .insert_device(&device("acme", &format!("d{i:05}")))
            .unwrap();
    }
    drop(store);
    for i in 2_400..2_500 {
        let (s, v) = app
            .call(
                "POST",
                "/v1/devices",
                &acme,
                Some(json!({"id": format!("d{i:05}")})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    for (t, d) in [("acme", "live-1"), ("acme", "d00100"), ("beta", "live-2")] {
        let (t, d) = (t.to_owned(), d.to_owned());
        let reading = Reading::at(1_700_000_000_000).with_position(10.0, 50.0);
        app.tracker
            .call(move |core| {
                let mut out = Output::default();
                let _ = core.apply(&t, &d, &[reading], 1_700_000_000_000, &mut out);
            })
            .await
            .unwrap();
    }

    let (all, sizes) = app.walk("/v1/devices", "devices", &acme).await;
    let ids: Vec<&str> = all.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2_501, "pages {sizes:?}");
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "an id twice"
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "not in id order");
    assert!(ids.contains(&"live-1"));
    assert!(
        sizes[..sizes.len() - 1].iter().all(|n| *n == 100),
        "{sizes:?}"
    );
    // The live state is on the page: d00100 reported a position.
    let d100 = all.iter().find(|d| d["id"] == "d00100").unwrap();
    assert_eq!(d100["position"]["lon"], 10.0);

    let (all, sizes) = app.walk("/v1/devices?limit=1000", "devices", &acme).await;
    assert_eq!((all.len(), sizes), (2_501, vec![1000, 1000, 501]));

    // An admin's list spans tenants, by tenant then id.
    let (all, _) = app.walk("/v1/devices?limit=333", "devices", ADMIN).await;
    let keys: Vec<(String, String)> = all
        .iter()
        .map(|d| {
            (
                d["tenant"].as_str().unwrap().into(),
                d["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(keys.len(), 2_502);
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        keys.last().unwrap(),
        &("beta".to_owned(), "live-2".to_owned())
    );
    let (_, sizes) = app.walk("/v1/devices", "devices", &beta).await;
    assert_eq!(sizes, [1]);

    // A device deleted between two pages neither shifts nor repeats the others.
    let (s, first) = app.call("GET", "/v1/devices?limit=10", &acme, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.call("DELETE", "/v1/devices/d00005", &acme, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let next = first["next"].as_str().unwrap();
    let (_, second) = app
        .call(
            "GET",
            &format!("/v1/devices?limit=10&next={next}"),
            &acme,
            None,
        )
        .await;
    assert_eq!(second["devices"][0]["id"], "d00010");
}

#[tokio::test]
async fn bad_limits_and_cursors_are_400s() {
    let app = App::unhurried(Limits::default());
    let acme = app.tenant("acme").await;
    for q in ["limit=0", "limit=1001", "limit=x", "next=zz", "next=00"] {
        let (s, v) = app
            .call("GET", &format!("/v1/devices?{q}"), &acme, None)
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{q}: {v}"
        );
    }
}

#[tokio::test]
async fn active_shipments_are_capped_and_a_cancelled_one_frees_its_place() {
    let app = App::unhurried(Limits {
        shipments_active: 2,
        ..Limits::default()
    });
    let acme = app.tenant("acme").await;
    let (s, _) = app
        .call("POST", "/v1/devices", &acme, Some(json!({"id": "truck"})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let shipment = |id: &str| {
        json!({"id": id, "device": "truck",
            "destination": {"type": "Point", "coordinates": [10.0, 50.0]}})
    };
    for id in ["s1", "s2"] {
        let (s, v) = app
            .call("POST", "/v1/shipments", &acme, Some(shipment(id)))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, v) = app
        .call("POST", "/v1/shipments", &acme, Some(shipment("s3")))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["limit"], "limits.shipments_active");
    let (s, v) = app
        .call(
            "PATCH",
            "/v1/shipments/s1",
            &acme,
            Some(json!({"status": "cancelled"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app
        .call("POST", "/v1/shipments", &acme, Some(shipment("s3")))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn geofences_page_too() {
    let app = App::unhurried(Limits::default());
    let acme = app.tenant("acme").await;
    for i in 0..25 {
        let f = json!({"type": "Feature", "id": format!("f{i:02}"),
            "geometry": {"type": "Point", "coordinates": [10.0, 50.0]},
            "properties": {"radius_m": 100}});
        let (s, v) = app.call("POST", "/v1/geofences", &acme, Some(f)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (all, sizes) = app.walk("/v1/geofences?limit=10", "geofences", &acme).await;
    assert_eq!(sizes, [10, 10, 5]);
    let ids: Vec<_> = all
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, (0..25).map(|i| format!("f{i:02}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn over_a_quota_a_create_is_a_422_naming_the_limit() {
    let app = App::unhurried(Limits {
        devices: 3,
        geofences: 2,
        ..Limits::default()
    });
    let acme = app.tenant("acme").await;
    let beta = app.tenant("beta").await;
    for i in 0..3 {
        let (s, _) = app
            .call(
                "POST",
                "/v1/devices",
                &acme,
                Some(json!({"id": format!("t{i}")})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (s, v) = app
        .call("POST", "/v1/devices", &acme, Some(json!({"id": "t3"})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "limit_exceeded");
    assert_eq!(v["error"]["limit"], "limits.devices");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.devices"),
        "{v}"
    );
    // Per tenant: another one is not affected.
    let (s, _) = app
        .call("POST", "/v1/devices", &beta, Some(json!({"id": "t0"})))
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let fence = |id: &str| {
        json!({"type": "Feature", "id": id, "geometry": {"type": "Point",
            "coordinates": [10.0, 50.0]}, "properties": {"radius_m": 50}})
    };
    for id in ["a", "b"] {
        let (s, _) = app
            .call("POST", "/v1/geofences", &acme, Some(fence(id)))
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (s, v) = app
        .call("POST", "/v1/geofences", &acme, Some(fence("c")))
        .await;
    assert_eq!(
        (s, &v["error"]["limit"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("limits.geofences"))
    );
    let (s, v) = app
        .call("PUT", "/v1/geofences/c", &acme, Some(fence("c")))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Replacing one at the quota is fine.
    let (s, v) = app
        .call("PUT", "/v1/geofences/a", &acme, Some(fence("a")))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after_and_other_keys_do_not() {
    let app = App::new(Limits {
        requests_per_second: 2,
        burst: 10,
        ..Limits::default()
    });
    // The admin key has its own budget: 4 requests to set up.
    let acme = app.tenant("acme").await;
    let beta = app.tenant("beta").await;
    for i in 0..10 {
        let (s, _, v) = app.raw("GET", "/v1/devices", Some(&acme), None).await;
        assert_eq!(s, StatusCode::OK, "request {i}: {v}");
    }
    let (s, headers, v) = app.raw("GET", "/v1/devices", Some(&acme), None).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["limit"], "limits.requests_per_second");
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    let (s, _, _) = app.raw("GET", "/v1/devices", Some(&beta), None).await;
    assert_eq!(s, StatusCode::OK);
    // After the wait, the key works again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, _, _) = app.raw("GET", "/v1/devices", Some(&acme), None).await;
    assert_eq!(s, StatusCode::OK);

    // A share link's budget is its own: unknown tokens are 404s until the rate, then 429s.
    let statuses: Vec<StatusCode> = {
        let mut v = Vec::new();
        for _ in 0..12 {
            v.push(app.raw("GET", "/v1/public/not-a-token", None, None).await.0);
        }
        v
    };
    assert!(
        statuses[..10].iter().all(|s| *s == StatusCode::NOT_FOUND),
        "{statuses:?}"
    );
    assert_eq!(statuses[11], StatusCode::TOO_MANY_REQUESTS);
    let (s, _, _) = app.raw("GET", "/track/not-a-token", None, None).await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "the page shares the link's budget"
    );
    let (s, _, _) = app.raw("GET", "/v1/public/another-token", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_keys_are_refused_quickly_and_valid_ones_still_work() {
    let app = App::unhurried(Limits::default());
    let acme = app.tenant("acme").await;
    let reads = app.api.key_store_reads();
    // The same unknown key many times: remembered after the first store read.
    for _ in 0..500 {
        let (s, _, _) = app.raw("GET", "/v1/devices", Some("lp_guess"), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.api.key_store_reads() - reads, 1);
    // A valid key: one read, then remembered too.
    for _ in 0..3 {
        let (s, _, _) = app.raw("GET", "/v1/devices", Some(&acme), None).await;
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(app.api.key_store_reads() - reads, 2);
}

#[tokio::test]
async fn a_tenant_may_hold_only_its_share_of_live_streams() {
    let app = App::unhurried(Limits {
        sse_connections: 2,
        ..Limits::default()
    });
    let acme = app.tenant("acme").await;
    let beta = app.tenant("beta").await;
    let one = support::SseStream::open(&app.router, "/v1/stream?topics=events", &acme).await;
    let _two = support::SseStream::open(&app.router, "/v1/stream?topics=events", &acme).await;
    let (s, headers, v) = app
        .raw("GET", "/v1/stream?topics=events", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["limit"], "limits.sse_connections");
    assert!(headers.contains_key(header::RETRY_AFTER));
    let _b = support::SseStream::open(&app.router, "/v1/stream?topics=events", &beta).await;
    // A closed stream gives its slot back.
    drop(one);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _three = support::SseStream::open(&app.router, "/v1/stream?topics=events", &acme).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vertex_cap_refuses_a_50000_vertex_fence_within_a_second_while_ingest_goes_on() {
    let app = App::unhurried(Limits::default());
    let acme = app.tenant("acme").await;
    // Ingest, as the pipeline's task would run it, all along.
    let applied = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (tracker, applied, stop) = (app.tracker.clone(), applied.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ts = 1_700_000_000_000i64;
            while !stop.load(Ordering::Relaxed) {
                ts += 1_000;
                let reading = Reading::at(ts).with_position(10.0, 50.0);
                tracker
                    .call(move |core| {
                        let mut out = Output::default();
                        let _ = core.apply("acme", "truck", &[reading], ts, &mut out);
                    })
                    .await
                    .unwrap();
                applied.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    let body = polygon(ring(50_000, 10.0, 50.0)).to_string();
    let before = applied.load(Ordering::Relaxed);
    let started = Instant::now();
    let (s, _, v) = app
        .raw("POST", "/v1/geofences", Some(&acme), Some(body))
        .await;
    let took = started.elapsed();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["limit"], "limits.geofence_vertices");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        applied.load(Ordering::Relaxed) > before,
        "ingest stood still"
    );

    // A valid fence at the cap (10,000 positions) is accepted, validated off the async
    // workers while ingest goes on.
    let before = applied.load(Ordering::Relaxed);
    let body = polygon(ring(10_000, 10.0, 50.0)).to_string();
    let (s, _, v) = app
        .raw("POST", "/v1/geofences", Some(&acme), Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(
        applied.load(Ordering::Relaxed) > before,
        "ingest stood still"
    );
    // One more than the cap is not.
    let body = polygon(ring(10_001, 10.0, 50.0)).to_string();
    let (s, _, v) = app
        .raw("POST", "/v1/geofences", Some(&acme), Some(body))
        .await;
    assert_eq!(
        (s, &v["error"]["limit"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!("limits.geofence_vertices")
        )
    );
    // A self-intersecting one of 10,000 positions is a 400 saying so.
    let mut crossed = ring(10_000, 11.0, 50.0);
    crossed.swap(10, 5_000);
    let (s, _, v) = app
        .raw(
            "POST",
            "/v1/geofences",
            Some(&acme),
            Some(polygon(crossed).to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("self-intersection"),
        "{v}"
    );
    stop.store(true, Ordering::Relaxed);
    feeder.await.unwrap();
}
