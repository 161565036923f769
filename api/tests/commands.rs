//! API writes are commands: validated by the tracker before anything is stored, stored in one
//! transaction, applied to the tracker only once stored. Checked through the router, and
//! through the store itself (a reader connection on the test's store).

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use landport_store::Store;
use serde_json::{Value, json};
use support::TestApi;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-key";

async fn call(
    router: &Router,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, v)
}

/// Creates tenant `id` and returns a key of it.
async fn tenant(router: &Router, id: &str) -> String {
    let (s, v) = call(
        router,
        "POST",
        "/v1/tenants",
        ADMIN,
        Some(json!({"id": id, "name": id})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(
        router,
        "POST",
        &format!("/v1/tenants/{id}/keys"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["key"].as_str().unwrap().to_owned()
}

fn shipment_body() -> Value {
    json!({"id": "SHP-1", "device": "t1", "reference": "PO-original",
        "destination": {"lat": 40.6, "lon": 122.2}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_of_different_members_of_one_shipment_all_land() {
    let t = TestApi::new(ADMIN);
    let router = t.router();
    let key = tenant(&router, "acme").await;
    let (s, v) = call(
        &router,
        "POST",
        "/v1/shipments",
        &key,
        Some(shipment_body()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let original = v;

    // 50 PATCHes at once, each of one member of ten (five of each) with a value of its own.
    let patches: Vec<_> = (0..50)
        .map(|i| {
            let v = f64::from(i);
            let body = match i % 10 {
                0 => json!({"reference": format!("PO-{i}")}),
                1 => json!({"origin": {"lat": 41.0, "lon": 100.0 + v}}),
                2 => json!({"destination": {"lat": 40.0, "lon": 100.0 + v}}),
                3 => json!({"route": {"type": "LineString",
                    "coordinates": [[100.0, 40.0], [100.0 + v, 41.0]]}}),
                4 => json!({"route_corridor_m": 100.0 + v}),
                5 => json!({"deadline": format!("2030-01-01T00:00:{i:02}Z")}),
                6 => json!({"temp_range_c": [-v, v]}),
                7 => json!({"max_speed_kmh": 50.0 + v}),
                8 => json!({"device": format!("truck-{i}")}),
                _ => json!({"status": "delivered"}),
            };
            let router = router.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let (s, v) = call(&router, "PATCH", "/v1/shipments/SHP-1", &key, Some(body)).await;
                assert_eq!(s, StatusCode::OK, "{v}");
            })
        })
        .collect();
    for p in patches {
        p.await.unwrap();
    }

    let (_, now) = call(&router, "GET", "/v1/shipments/SHP-1", &key, None).await;
    for member in [
        "reference",
        "origin",
        "destination",
        "route",
        "route_corridor_m",
        "deadline",
        "temp_range_c",
        "max_speed_kmh",
        "device",
        "status",
    ] {
        assert_ne!(
            now[member], original[member],
            "the PATCHes of {member} were lost: {now}"
        );
    }
    let stored = Store::open_reader(t.dir.path())
        .unwrap()
        .get_shipment("acme", "SHP-1")
        .unwrap()
        .unwrap();
    assert_eq!(now["reference"], json!(stored.def.reference));
    assert_eq!(now["device"], json!(stored.def.device));
    assert_eq!(
        t.tracker
            .live()
            .shipment("acme", "SHP-1")
            .unwrap()
            .state
            .def,
        stored.def,
        "the tracker has what is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_the_tracker_refuses_is_never_stored_and_changes_no_live_state() {
    let t = TestApi::new(ADMIN);
    let router = t.router();
    let key = tenant(&router, "acme").await;
    let reader = Store::open_reader(t.dir.path()).unwrap();

    let to_nowhere = json!({"id": "SHP-2", "device": "t1", "destination": "nowhere"});
    let (s, v) = call(&router, "POST", "/v1/shipments", &key, Some(to_nowhere)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(reader.get_shipment("acme", "SHP-2").unwrap(), None);
    assert!(
        t.tracker.live().tenants().all(|t| t != "acme"),
        "the tracker has no state of the tenant"
    );

    // Refused PATCHes, while a reader watches the store: it never sees their values.
    let (s, v) = call(
        &router,
        "POST",
        "/v1/shipments",
        &key,
        Some(shipment_body()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (dir, stop) = (t.dir.path().to_owned(), stop.clone());
        std::thread::spawn(move || {
            let reader = Store::open_reader(&dir).unwrap();
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let rec = reader.get_shipment("acme", "SHP-1").unwrap().unwrap();
                assert_eq!(
                    rec.def.reference.as_deref(),
                    Some("PO-original"),
                    "saw a refused write"
                );
                seen += 1;
            }
            seen
        })
    };
    for i in 0..50 {
        let bad = json!({"reference": format!("refused-{i}"), "destination": "nowhere"});
        let (s, v) = call(&router, "PATCH", "/v1/shipments/SHP-1", &key, Some(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["code"], "bad_request");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(watcher.join().unwrap() > 0);
    let live = t.tracker.live();
    let live = live.shipment("acme", "SHP-1").unwrap();
    assert_eq!(live.state.def.reference.as_deref(), Some("PO-original"));
}

#[tokio::test]
async fn with_the_pipeline_stopped_a_write_answers_503_and_stores_nothing() {
    let t = TestApi::new(ADMIN);
    let router = t.router();
    let key = tenant(&router, "acme").await;
    // An API whose pipeline has stopped: its command channel is closed.
    let read_side = landport_pipeline::ReadSide::new(
        &landport_tracker::Tracker::new(Default::default()),
        landport_pipeline::ReadSide::DEFAULT_EVERY,
    );
    let (stopped, commands) = landport_pipeline::TrackerHandle::new(read_side.reader());
    drop(commands);
    let (events, _) = tokio::sync::broadcast::channel(4);
    let api = landport_api::ApiState::new(t.dir.path(), stopped, events, Some(ADMIN)).unwrap();
    let router = landport_api::router_with_api(t.state.clone(), api);

    let fence = json!({"type": "Feature", "id": "port",
        "geometry": {"type": "Point", "coordinates": [122.2, 40.6]},
        "properties": {"radius_m": 500}});
    for (method, path, body) in [
        ("POST", "/v1/devices", json!({"id": "t1"})),
        ("POST", "/v1/geofences", fence.clone()),
        ("PUT", "/v1/geofences/port", fence),
        ("POST", "/v1/shipments", shipment_body()),
    ] {
        let (s, v) = call(&router, method, path, &key, Some(body)).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "unavailable");
    }
    let reader = Store::open_reader(t.dir.path()).unwrap();
    assert_eq!(reader.get_device("acme", "t1").unwrap(), None);
    assert_eq!(reader.get_geofence("acme", "port").unwrap(), None);
    assert_eq!(reader.get_shipment("acme", "SHP-1").unwrap(), None);
}

#[tokio::test]
async fn a_write_the_store_refuses_leaves_the_tracker_as_it_was() {
    let t = TestApi::new(ADMIN);
    let router = t.router();
    let key = tenant(&router, "acme").await;
    let device =
        |max_speed_kmh: f64| json!({"id": "t1", "profile": {"max_speed_kmh": max_speed_kmh}});
    let (s, v) = call(&router, "POST", "/v1/devices", &key, Some(device(80.0))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // The id is taken: the store refuses, and the tracker keeps the first profile.
    let (s, v) = call(&router, "POST", "/v1/devices", &key, Some(device(30.0))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let live = t.tracker.live().device("acme", "t1").unwrap();
    assert_eq!(live.profile.max_speed_kmh, Some(80.0));
}
