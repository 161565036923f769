//! The `/v1` API against a real store (temp dir) and a real tracker behind a real
//! `TrackerHandle`, called through the router (`tower::ServiceExt::oneshot`).

mod support;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use landport_pipeline::{Output, TrackerHandle, now_ms};
use landport_tracker::Reading;
use serde_json::{Value, json};
use support::{SseItem, SseStream, TestApi};
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-key";

struct App {
    router: Router,
    tracker: TrackerHandle,
    /// The live event broadcast, as the pipeline would feed it.
    events: tokio::sync::broadcast::Sender<Arc<landport_tracker::Event>>,
    api: TestApi,
}

impl App {
    async fn new() -> App {
        let t = TestApi::new(ADMIN);
        App {
            router: t.router(),
            tracker: t.tracker.clone(),
            events: t.events.clone(),
            api: t,
        }
    }

    /// Sends a request; `body` is sent as JSON text when `Some`.
    async fn raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Value) {
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
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        (status, v)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.raw(method, path, key, body.map(|b| b.to_string()))
            .await
    }

    async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call("GET", path, Some(key), None).await
    }

    /// Creates a tenant and returns a key of it.
    async fn tenant(&self, id: &str) -> String {
        let (s, v) = self
            .call(
                "POST",
                "/v1/tenants",
                Some(ADMIN),
                Some(json!({"id": id, "name": id})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (s, v) = self
            .call("POST", &format!("/v1/tenants/{id}/keys"), Some(ADMIN), None)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["key"].as_str().unwrap().to_owned()
    }

    async fn device(&self, key: &str, id: &str) {
        let (s, v) = self
            .call(
                "POST",
                "/v1/devices",
                Some(key),
                Some(json!({"id": id, "name": format!("Truck {id}"), "kind": "truck"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    /// Applies one reading to the live core, as the pipeline does with a decoded message (a
    /// device that is not registered is refused there, as over MQTT).
    async fn fix(&self, tenant: &str, device: &str, lon: f64, lat: f64) {
        let (tenant, device) = (tenant.to_owned(), device.to_owned());
        let reading = Reading::at(next_ts())
            .with_position(lon, lat)
            .with_speed(50.0);
        self.tracker
            .call(move |core| {
                let mut out = Output::default();
                let _ = core.apply(&tenant, &device, &[reading], now_ms(), &mut out);
            })
            .await
            .unwrap();
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

fn square(lon: f64, lat: f64, d: f64) -> Value {
    json!([[
        [lon - d, lat - d],
        [lon + d, lat - d],
        [lon + d, lat + d],
        [lon - d, lat + d],
        [lon - d, lat - d]
    ]])
}

fn polygon_feature(id: &str, lon: f64, lat: f64) -> Value {
    json!({"type": "Feature", "id": id,
        "geometry": {"type": "Polygon", "coordinates": square(lon, lat, 0.05)},
        "properties": {"name": "Yingkou port", "kind": "port", "confirm_seconds": 0}})
}

#[tokio::test]
async fn every_endpoint_wants_a_valid_key() {
    let app = App::new().await;
    let routes = [
        ("POST", "/v1/tenants"),
        ("POST", "/v1/tenants/acme/keys"),
        ("DELETE", "/v1/tenants/acme/keys/k"),
        ("GET", "/v1/devices"),
        ("POST", "/v1/devices"),
        ("GET", "/v1/devices/x"),
        ("PATCH", "/v1/devices/x"),
        ("DELETE", "/v1/devices/x"),
        ("GET", "/v1/devices/nearby?lat=1&lon=1"),
        ("GET", "/v1/geofences"),
        ("POST", "/v1/geofences"),
        ("GET", "/v1/geofences/x"),
        ("PUT", "/v1/geofences/x"),
        ("DELETE", "/v1/geofences/x"),
        ("GET", "/v1/geofences/x/devices"),
        ("GET", "/v1/positions?bbox=0,0,1,1"),
        ("GET", "/v1/devices/x/track"),
        ("GET", "/v1/events"),
        ("GET", "/v1/shipments"),
        ("POST", "/v1/shipments"),
        ("GET", "/v1/shipments/x"),
        ("PATCH", "/v1/shipments/x"),
        ("DELETE", "/v1/shipments/x"),
        ("GET", "/v1/shipments/x/eta"),
        ("POST", "/v1/shipments/x/share"),
        ("GET", "/v1/stream"),
    ];
    for (m, p) in routes {
        for key in [None, Some("wrong-key"), Some("")] {
            let (s, v) = app.call(m, p, key, None).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {p} {key:?}");
            assert_eq!(code(&v), "unauthorized", "{m} {p}");
        }
    }
}

#[tokio::test]
async fn tenants_and_keys_are_admin_only_and_revoked_keys_stop_working() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let (s, v) = app
        .call(
            "POST",
            "/v1/tenants",
            Some(ADMIN),
            Some(json!({"id": "acme", "name": "x"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"));
    let (s, v) = app
        .call(
            "POST",
            "/v1/tenants",
            Some(&acme),
            Some(json!({"id": "evil", "name": "x"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, _) = app
        .call(
            "POST",
            "/v1/tenants",
            Some(ADMIN),
            Some(json!({"id": "a/b", "name": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = app
        .call("POST", "/v1/tenants/nobody/keys", Some(ADMIN), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));

    let (s, v) = app
        .call("POST", "/v1/tenants/acme/keys", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (key_id, key) = (v["id"].as_str().unwrap(), v["key"].as_str().unwrap());
    assert!(key.len() >= 32);
    assert_eq!(app.get("/v1/devices", key).await.0, StatusCode::OK);
    assert_eq!(app.get("/v1/devices", &acme).await.0, StatusCode::OK);
    let path = format!("/v1/tenants/acme/keys/{key_id}");
    assert_eq!(
        app.call("DELETE", &path, Some(&acme), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("DELETE", &path, Some(ADMIN), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/v1/devices", key).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/v1/devices", &acme).await.0,
        StatusCode::OK,
        "other key still works"
    );
    assert_eq!(
        app.call("DELETE", &path, Some(ADMIN), None).await.0,
        StatusCode::NOT_FOUND
    );
    // Another tenant's key id through this tenant's path: 404.
    app.tenant("globex").await;
    let (_, v) = app
        .call("POST", "/v1/tenants/globex/keys", Some(ADMIN), None)
        .await;
    let gpath = format!("/v1/tenants/acme/keys/{}", v["id"].as_str().unwrap());
    assert_eq!(
        app.call("DELETE", &gpath, Some(ADMIN), None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn devices_register_show_live_state_update_and_unregister() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;
    app.device(&acme, "truck-17").await;
    let (s, v) = app.get("/v1/devices/truck-17", &acme).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["name"], "Truck truck-17");
    assert_eq!(v["kind"], "truck");
    assert_eq!(v["position"], Value::Null);
    assert_eq!(v["geofences"], json!([]));
    let (s, v) = app
        .call(
            "POST",
            "/v1/devices",
            Some(&acme),
            Some(json!({"id": "truck-17"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"));

    // Registered: its telemetry is accepted and shows up.
    app.fix("acme", "truck-17", 122.2, 40.6).await;
    let (_, v) = app.get("/v1/devices/truck-17", &acme).await;
    assert_eq!(v["position"]["lat"], 40.6);
    assert_eq!(v["position"]["lon"], 122.2);
    assert_eq!(v["position"]["speed_kmh"], 50.0);
    assert_eq!(v["online"], true);
    let ts = v["position"]["ts"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'),
        "{ts}"
    );
    assert!(v["last_seen"].as_str().unwrap().ends_with('Z'));

    // Unregistered devices' telemetry is refused (auto_register = false).
    app.fix("acme", "stranger", 122.2, 40.6).await;
    assert_eq!(
        app.get("/v1/devices/stranger", &acme).await.0,
        StatusCode::NOT_FOUND
    );

    let (s, v) = app
        .call(
            "PATCH",
            "/v1/devices/truck-17",
            Some(&acme),
            Some(json!({"name": "Big truck", "profile": {"max_speed_kmh": 90.0}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "Big truck");
    assert_eq!(v["kind"], "truck");
    let (_, v) = app.get("/v1/devices", &acme).await;
    let list = v["devices"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], "truck-17");
    assert_eq!(list[0]["name"], "Big truck");

    let (s, _) = app
        .call("DELETE", "/v1/devices/truck-17", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/v1/devices/truck-17", &acme).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/v1/devices", &acme).await.1["devices"], json!([]));
    // Unregistered again: new telemetry is refused.
    app.fix("acme", "truck-17", 122.3, 40.7).await;
    assert_eq!(
        app.get("/v1/devices/truck-17", &acme).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, _) = app
        .call("DELETE", "/v1/devices/truck-17", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_tenants_device_is_exactly_like_a_missing_one() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.device(&acme, "truck-1").await;
    app.fix("acme", "truck-1", 122.2, 40.6).await;
    app.device(&globex, "van-1").await;

    let theirs = app.get("/v1/devices/truck-1", &globex).await;
    let missing = app
        .get("/v1/devices/truck-1", &app.tenant("initech").await)
        .await;
    assert_eq!(theirs.0, StatusCode::NOT_FOUND);
    assert_eq!(theirs, missing);
    let patch = Some(json!({"name": "mine"}));
    let (s, v) = app
        .call("PATCH", "/v1/devices/truck-1", Some(&globex), patch)
        .await;
    assert_eq!((s, &v), (StatusCode::NOT_FOUND, &theirs.1));
    let (s, v) = app
        .call("DELETE", "/v1/devices/truck-1", Some(&globex), None)
        .await;
    assert_eq!((s, &v), (StatusCode::NOT_FOUND, &theirs.1));
    // Untouched.
    assert_eq!(
        app.get("/v1/devices/truck-1", &acme).await.1["name"],
        "Truck truck-1"
    );

    let ids = |v: &Value| -> Vec<String> {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&app.get("/v1/devices", &globex).await.1), ["van-1"]);
    assert_eq!(ids(&app.get("/v1/devices", &acme).await.1), ["truck-1"]);
    // Same id in two tenants: separate devices.
    app.device(&globex, "truck-1").await;
    assert_eq!(
        app.get("/v1/devices/truck-1", &globex).await.1["position"],
        Value::Null
    );

    // Admin: every tenant in lists; one tenant with ?tenant=.
    let (_, v) = app.get("/v1/devices", ADMIN).await;
    assert_eq!(ids(&v), ["truck-1", "truck-1", "van-1"]);
    assert_eq!(
        ids(&app.get("/v1/devices?tenant=globex", ADMIN).await.1),
        ["truck-1", "van-1"]
    );
    let (s, v) = app.get("/v1/devices/truck-1", ADMIN).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (s, v) = app.get("/v1/devices/truck-1?tenant=acme", ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["position"]["lat"], 40.6);
    // A tenant key's ?tenant= is ignored.
    assert_eq!(
        app.get("/v1/devices/van-1?tenant=acme", &globex).await.0,
        StatusCode::OK
    );
    assert_eq!(
        ids(&app.get("/v1/devices?tenant=acme", &globex).await.1),
        ["truck-1", "van-1"]
    );
}

#[tokio::test]
async fn geofences_round_trip_as_geojson_features() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;

    let (s, v) = app
        .call(
            "POST",
            "/v1/geofences",
            Some(&acme),
            Some(polygon_feature("yingkou-port", 122.2, 40.6)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["type"], "Feature");
    assert_eq!(v["id"], "yingkou-port");
    assert_eq!(v["geometry"]["type"], "Polygon");
    assert_eq!(v["properties"]["kind"], "port");
    assert_eq!(v["properties"]["confirm_seconds"], 0);
    let (s, v) = app
        .call(
            "POST",
            "/v1/geofences",
            Some(&acme),
            Some(polygon_feature("yingkou-port", 1.0, 1.0)),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"));

    // A hole, a MultiPolygon, a circle, a corridor; an id generated when absent.
    let mut rings = square(123.0, 41.0, 0.1);
    rings
        .as_array_mut()
        .unwrap()
        .push(square(123.0, 41.0, 0.01)[0].clone());
    let holed = json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings},
        "properties": {"name": "Shenyang depot", "kind": "depot", "dwell_seconds": 600}});
    let (s, v) = app
        .call("POST", "/v1/geofences", Some(&acme), Some(holed))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let generated = v["id"].as_str().unwrap().to_owned();
    assert!(generated.starts_with("gf_"));
    assert_eq!(
        v["geometry"]["coordinates"].as_array().unwrap().len(),
        2,
        "the hole is kept"
    );
    let multi = json!({"type": "Feature", "id": "two",
        "geometry": {"type": "MultiPolygon", "coordinates": [square(10.0, 10.0, 0.1), square(11.0, 11.0, 0.1)]}});
    let (s, v) = app
        .call("POST", "/v1/geofences", Some(&acme), Some(multi))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["geometry"]["type"], "MultiPolygon");
    let circle = json!({"type": "Feature", "id": "dalian-customer",
        "geometry": {"type": "Point", "coordinates": [121.6, 38.9]},
        "properties": {"radius_m": 500.0, "kind": "customer"}});
    let (s, v) = app
        .call("POST", "/v1/geofences", Some(&acme), Some(circle))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["properties"]["radius_m"], 500.0);
    let corridor = json!({"type": "Feature", "id": "g15",
        "geometry": {"type": "LineString", "coordinates": [[121.6, 38.9], [122.2, 40.6]]},
        "properties": {"corridor_m": 2000.0}});
    let (s, v) = app
        .call("POST", "/v1/geofences", Some(&acme), Some(corridor))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["properties"]["corridor_m"], 2000.0);

    let (_, v) = app.get("/v1/geofences", &acme).await;
    let ids: Vec<&str> = v["geofences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5);
    assert!(ids.contains(&generated.as_str()));

    // GET returns the stored Feature, which PUT accepts back unchanged.
    let (s, stored) = app.get("/v1/geofences/dalian-customer", &acme).await;
    assert_eq!(s, StatusCode::OK);
    let (s, again) = app
        .call(
            "PUT",
            "/v1/geofences/dalian-customer",
            Some(&acme),
            Some(stored.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["geometry"], stored["geometry"]);
    // PUT replaces (200) or creates (201); a different Feature id is refused.
    let (s, v) = app
        .call(
            "PUT",
            "/v1/geofences/yingkou-port",
            Some(&acme),
            Some(polygon_feature("yingkou-port", 122.3, 40.7)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["geometry"]["coordinates"][0][0],
        json!([122.3 - 0.05, 40.7 - 0.05])
    );
    let (s, _) = app
        .call(
            "PUT",
            "/v1/geofences/new-one",
            Some(&acme),
            Some(polygon_feature("new-one", 5.0, 5.0)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = app
        .call(
            "PUT",
            "/v1/geofences/new-one",
            Some(&acme),
            Some(polygon_feature("other", 5.0, 5.0)),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));

    assert_eq!(
        app.call("DELETE", "/v1/geofences/new-one", Some(&acme), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/v1/geofences/new-one", &acme).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call("DELETE", "/v1/geofences/new-one", Some(&acme), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn devices_inside_a_geofence_are_listed() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let (s, _) = app
        .call(
            "POST",
            "/v1/geofences",
            Some(&acme),
            Some(polygon_feature("port", 122.2, 40.6)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    app.device(&acme, "in").await;
    app.device(&acme, "out").await;
    app.fix("acme", "in", 122.21, 40.61).await;
    app.fix("acme", "out", 123.5, 41.5).await;
    let (s, v) = app.get("/v1/geofences/port/devices", &acme).await;
    assert_eq!(s, StatusCode::OK);
    let list = v["devices"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["id"], "in");
    assert_eq!(list[0]["name"], "Truck in");
    assert_eq!(list[0]["geofences"], json!(["port"]));
    assert_eq!(
        app.get("/v1/devices/in", &acme).await.1["geofences"],
        json!(["port"])
    );
    assert_eq!(
        app.get("/v1/geofences/nope/devices", &acme).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn another_tenants_geofence_is_exactly_like_a_missing_one() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let (s, _) = app
        .call(
            "POST",
            "/v1/geofences",
            Some(&acme),
            Some(polygon_feature("port", 122.2, 40.6)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    for path in ["/v1/geofences/port", "/v1/geofences/port/devices"] {
        let theirs = app.get(path, &globex).await;
        let missing = app.get(&path.replace("port", "nope"), &globex).await;
        assert_eq!(theirs.0, StatusCode::NOT_FOUND);
        assert_eq!(theirs.1["error"]["code"], missing.1["error"]["code"]);
        assert_eq!(
            theirs.1,
            app.get(path, &app_key_missing(&app).await).await.1
        );
    }
    let (s, _) = app
        .call("DELETE", "/v1/geofences/port", Some(&globex), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/v1/geofences", &globex).await.1["geofences"],
        json!([])
    );
    // PUT by another tenant makes its own fence of that id; acme's is untouched.
    let (s, _) = app
        .call(
            "PUT",
            "/v1/geofences/port",
            Some(&globex),
            Some(polygon_feature("port", 1.0, 1.0)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, v) = app.get("/v1/geofences/port", &acme).await;
    assert_eq!(
        v["geometry"]["coordinates"][0][0],
        json!([122.2 - 0.05, 40.6 - 0.05])
    );
    assert_eq!(
        app.get("/v1/geofences", &acme).await.1["geofences"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get("/v1/geofences", ADMIN).await.1["geofences"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        app.get("/v1/geofences?tenant=acme", ADMIN).await.1["geofences"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// A key of a fresh tenant with nothing in it.
async fn app_key_missing(app: &App) -> String {
    // A counter, not the clock: two calls within one millisecond must not collide.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    app.tenant(&format!("empty-{n}")).await
}

#[tokio::test]
async fn bad_geofences_are_refused_with_what_is_wrong() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let bowtie = json!({"type": "Feature", "id": "bowtie", "geometry": {"type": "Polygon",
        "coordinates": [[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]}});
    let (s, v) = app
        .call("POST", "/v1/geofences", Some(&acme), Some(bowtie))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_geometry"),
        "{v}"
    );
    let msg = v["error"]["message"].as_str().unwrap().to_lowercase();
    assert!(msg.contains("intersect"), "{msg}");

    let cases = [
        json!({"type": "Feature"}),
        json!({"type": "Feature", "geometry": {"type": "Circle", "coordinates": [0, 0]}}),
        json!({"type": "FeatureCollection", "geometry": {"type": "Point", "coordinates": [1, 1]}, "properties": {"radius_m": 5}}),
        json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}}),
        json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [1]}, "properties": {"radius_m": 5}}),
        json!({"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[1, 1], [2, 2]]}}),
        json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": "nope"}}),
        json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": []}}),
        json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}}),
        json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [200, 0], [1, 1], [0, 0]]]}}),
        json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}, "properties": {"radius_m": -5}}),
        json!({"type": "Feature", "id": true, "geometry": {"type": "Point", "coordinates": [1, 1]}, "properties": {"radius_m": 5}}),
        json!({"type": "Feature", "id": "a/b", "geometry": {"type": "Point", "coordinates": [1, 1]}, "properties": {"radius_m": 5}}),
        json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}, "properties": {"radius_m": 5, "colour": "red"}}),
        json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}, "properties": {"radius_m": 5}, "extra": 1}),
        json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square(0.0, 0.0, 1.0)}, "properties": {"radius_m": 5}}),
    ];
    for body in cases {
        let (s, v) = app
            .call("POST", "/v1/geofences", Some(&acme), Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        app.get("/v1/geofences", &acme).await.1["geofences"],
        json!([])
    );
}

#[tokio::test]
async fn positions_in_a_bbox_and_nearby_devices_come_from_the_tracker() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    for (id, lon, lat) in [
        ("a", 122.20, 40.60),
        ("b", 122.21, 40.60),
        ("far", 125.0, 43.0),
    ] {
        app.device(&acme, id).await;
        app.fix("acme", id, lon, lat).await;
    }
    app.device(&acme, "no-fix").await;
    app.device(&globex, "g").await;
    app.fix("globex", "g", 122.205, 40.60).await;

    let (s, v) = app.get("/v1/positions?bbox=122,40,123,41", &acme).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["type"], "FeatureCollection");
    let ids: Vec<&str> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(
        v["features"][0]["geometry"],
        json!({"type": "Point", "coordinates": [122.2, 40.6]})
    );
    let props = &v["features"][0]["properties"];
    assert_eq!(props["tenant"], "acme");
    assert_eq!(props["online"], true);
    assert_eq!(props["speed_kmh"], 50.0);
    assert!(
        props["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{props}"
    );
    assert_eq!(props["geofences"], json!([]));
    for absent in [
        "heading_deg",
        "accuracy_m",
        "temp_c",
        "weight_kg",
        "battery_pct",
    ] {
        assert!(
            props[absent].is_null(),
            "{absent} is null when not reported: {props}"
        );
        assert!(props.get(absent).is_some(), "{absent} is present: {props}");
    }
    let (_, v) = app.get("/v1/positions?bbox=122,40,123,41", &globex).await;
    assert_eq!(v["features"].as_array().unwrap().len(), 1);
    let (_, v) = app.get("/v1/positions?bbox=122,40,123,41", ADMIN).await;
    assert_eq!(v["features"].as_array().unwrap().len(), 3);

    for bad in [
        "",
        "?bbox=1,2,3",
        "?bbox=a,b,c,d",
        "?bbox=-200,0,0,1",
        "?bbox=0,-95,1,1",
        "?bbox=0,10,1,5",
    ] {
        let (s, v) = app.get(&format!("/v1/positions{bad}"), &acme).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{bad}"
        );
    }

    let (s, v) = app
        .get(
            "/v1/devices/nearby?lat=40.6&lon=122.2&radius_m=5000&limit=10",
            &acme,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let list = v["devices"].as_array().unwrap();
    let ids: Vec<&str> = list.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b"], "nearest first, own tenant only");
    assert!(list[0]["distance_m"].as_f64().unwrap() < 1.0);
    let d = list[1]["distance_m"].as_f64().unwrap();
    assert!((d - 845.0).abs() < 10.0, "{d}");
    assert_eq!(list[1]["name"], "Truck b");
    let (_, v) = app
        .get(
            "/v1/devices/nearby?lat=40.6&lon=122.2&radius_m=5000&limit=1",
            &acme,
        )
        .await;
    assert_eq!(v["devices"].as_array().unwrap().len(), 1);
    let (_, v) = app
        .get("/v1/devices/nearby?lat=40.6&lon=122.2&radius_m=5000", ADMIN)
        .await;
    assert_eq!(v["devices"].as_array().unwrap().len(), 3);
    for bad in [
        "",
        "?lat=40",
        "?lat=100&lon=0",
        "?lat=1&lon=1&radius_m=-1",
        "?lat=1&lon=1&limit=0",
        "?lat=1&lon=1&limit=abc",
        "?lat=x&lon=1",
    ] {
        let (s, v) = app.get(&format!("/v1/devices/nearby{bad}"), &acme).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{bad} {v}"
        );
    }
}

#[tokio::test]
async fn bad_bodies_get_json_errors_not_plain_text() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let (s, v) = app
        .call(
            "POST",
            "/v1/devices",
            Some(&acme),
            Some(json!({"id": "t", "colour": "red"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("colour"),
        "{v}"
    );
    let (s, v) = app
        .raw("POST", "/v1/devices", Some(&acme), Some("{not json".into()))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (s, v) = app
        .call("POST", "/v1/devices", Some(&acme), Some(json!({"id": 5})))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (s, v) = app
        .call(
            "PATCH",
            "/v1/devices/t",
            Some(&acme),
            Some(json!({"nmae": "x"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (s, v) = app
        .call(
            "POST",
            "/v1/tenants",
            Some(ADMIN),
            Some(json!({"id": "x", "name": "y", "plan": "gold"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));

    let big = json!({"id": "t", "name": "x".repeat(landport_api::MAX_BODY_BYTES + 10)});
    let (s, v) = app
        .call("POST", "/v1/devices", Some(&acme), Some(big))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // Geofences may be up to 4 MiB (SPEC 15): 2 MB is read, and over the vertex cap; 5 MB is not.
    let big_fence = json!({"type": "Feature", "geometry": {"type": "LineString",
        "coordinates": vec![[1.0, 1.0]; 200_000]}, "properties": {"corridor_m": 5}});
    let (s, v) = app
        .call("POST", "/v1/geofences", Some(&acme), Some(big_fence))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "limit_exceeded")
    );
    let huge_fence = json!({"type": "Feature", "geometry": {"type": "LineString",
        "coordinates": vec![[1.0, 1.0]; 500_000]}, "properties": {"corridor_m": 5}});
    let (s, _) = app
        .call("POST", "/v1/geofences", Some(&acme), Some(huge_fence))
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);

    // No Content-Type.
    let req = Request::post("/v1/devices")
        .header(header::AUTHORIZATION, format!("Bearer {acme}"))
        .body(Body::from(r#"{"id":"t"}"#))
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let (s, v) = app.get("/v1/devices/x/track?from=yesterday", &acme).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (s, v) = app.call("PUT", "/v1/devices", Some(&acme), None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    // The auth scheme is case-insensitive.
    let req = Request::get("/v1/devices")
        .header(header::AUTHORIZATION, format!("bearer {acme}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.router.clone().oneshot(req).await.unwrap().status(),
        StatusCode::OK
    );
    let (s, v) = app.get("/v1/nothing-here", &acme).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(app.get("/healthz", &acme).await.0, StatusCode::OK);
    assert_eq!(app.get("/devices", &acme).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_track_is_the_stored_history_of_the_tenants_device() {
    use landport_store::{Store, TelemetryRow};
    use landport_tracker::Reading;

    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.device(&acme, "truck-1").await;
    // The pipeline's writer stores readings; here a second connection plays it.
    let mut store = Store::open(app.api.dir.path()).unwrap();
    let t0 = 1_795_000_000_000; // 2026-11-18T11:06:40Z
    let row = |tenant: &str, ts: i64, r: Reading| TelemetryRow {
        tenant: tenant.into(),
        device: "truck-1".into(),
        shipment: None,
        reading: Reading { ts_ms: ts, ..r },
        received_ms: ts,
    };
    store
        .commit(
            &[
                row("acme", t0, Reading::at(0).with_position(122.0, 40.0)),
                row("acme", t0 + 1_000, Reading::at(0).with_temp(-18.0)),
                row(
                    "acme",
                    t0 + 2_000,
                    Reading::at(0).with_position(122.1, 40.1),
                ),
                row(
                    "acme",
                    t0 + 9_000_000,
                    Reading::at(0).with_position(123.0, 41.0),
                ),
                row("globex", t0 + 500, Reading::at(0).with_position(1.0, 1.0)),
            ],
            &[],
        )
        .unwrap();
    let path = format!("/v1/devices/truck-1/track?from={t0}&to={}", t0 + 60_000);
    let (s, v) = app.get(&path, &acme).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["id"], "truck-1");
    assert_eq!(v["geometry"]["type"], "LineString");
    assert_eq!(
        v["geometry"]["coordinates"],
        json!([[122.0, 40.0], [122.1, 40.1]])
    );
    let times = v["properties"]["times"].as_array().unwrap();
    assert_eq!(times.len(), 2);
    assert_eq!(times[0], "2026-11-18T11:06:40.000Z");
    // RFC 3339 bounds work too; the window excludes the late reading.
    let (_, v) = app
        .get(
            "/v1/devices/truck-1/track?from=2026-11-18T11:06:40Z&to=2026-11-18T11:07:40Z",
            &acme,
        )
        .await;
    assert_eq!(v["geometry"]["coordinates"].as_array().unwrap().len(), 2);
    let (_, v) = app.get(&format!("{path}&limit=1"), &acme).await;
    assert_eq!(v["properties"]["truncated"], true);

    // Another tenant: its own (unregistered) device of that id has history of its own only;
    // one with neither registry entry nor history is a 404 like a missing one.
    let (s, v) = app.get(&path, &globex).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["geometry"]["coordinates"], json!([[1.0, 1.0]]));
    let initech = app.tenant("initech").await;
    let (s, v) = app.get(&path, &initech).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, _) = app
        .get(
            &format!("/v1/devices/truck-1/track?from={}&to={t0}", t0 + 1),
            &acme,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn events_are_listed_per_tenant_by_cursor_and_filters() {
    use landport_store::Store;
    use landport_tracker::{Event, EventType};

    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let t0 = 1_795_000_000_000;
    let ev = |kind, tenant: &str, device: &str, i: i64| {
        Event::new(
            kind,
            tenant,
            device,
            None,
            Some("port"),
            t0 + i,
            0,
            json!({}),
        )
    };
    let mut store = Store::open(app.api.dir.path()).unwrap();
    store
        .commit(
            &[],
            &[
                ev(EventType::GeofenceEntered, "acme", "a", 1),
                ev(EventType::GeofenceEntered, "globex", "g", 2),
                ev(EventType::GeofenceExited, "acme", "a", 3),
                ev(EventType::GeofenceEntered, "acme", "b", 4),
            ],
        )
        .unwrap();
    let devices = |v: &Value| -> Vec<String> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["device"].as_str().unwrap(),
                    e["type"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (s, v) = app.get("/v1/events", &acme).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        devices(&v),
        [
            "a:geofence.entered",
            "a:geofence.exited",
            "b:geofence.entered"
        ]
    );
    assert_eq!(v["events"][0]["tenant"], "acme");
    assert_eq!(v["events"][0]["geofence"], "port");
    assert!(v["events"][0]["id"].as_str().unwrap().starts_with("evt_"));
    assert!(v["events"][0]["ts"].as_str().unwrap().ends_with('Z'));
    // Paging.
    let (_, p1) = app.get("/v1/events?limit=2", &acme).await;
    assert_eq!(devices(&p1).len(), 2);
    let next = p1["next"].as_str().unwrap();
    let (_, p2) = app
        .get(&format!("/v1/events?since={next}&limit=2"), &acme)
        .await;
    assert_eq!(devices(&p2), ["b:geofence.entered"]);
    let last = p2["next"].as_str().unwrap().to_owned();
    let (_, p3) = app.get(&format!("/v1/events?since={last}"), &acme).await;
    assert_eq!(p3["events"], json!([]));
    assert_eq!(p3["next"], last.as_str());
    // Filters.
    let (_, v) = app.get("/v1/events?type=geofence.exited", &acme).await;
    assert_eq!(devices(&v), ["a:geofence.exited"]);
    let (_, v) = app.get("/v1/events?device=b", &acme).await;
    assert_eq!(devices(&v), ["b:geofence.entered"]);
    // Isolation: another tenant's device filter finds nothing; admin sees all.
    assert_eq!(
        devices(&app.get("/v1/events", &globex).await.1),
        ["g:geofence.entered"]
    );
    assert_eq!(
        app.get("/v1/events?device=a", &globex).await.1["events"],
        json!([])
    );
    assert_eq!(devices(&app.get("/v1/events", ADMIN).await.1).len(), 4);
    assert_eq!(
        devices(&app.get("/v1/events?tenant=globex", ADMIN).await.1).len(),
        1
    );
    for bad in [
        "?type=geofence.teleported",
        "?since=abc",
        "?since=-1",
        "?limit=0",
        "?limit=5000",
    ] {
        let (s, v) = app.get(&format!("/v1/events{bad}"), &acme).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn shipments_are_stored_tracked_and_estimated() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let (s, _) = app
        .call(
            "POST",
            "/v1/geofences",
            Some(&acme),
            Some(polygon_feature("dalian", 121.6, 38.9)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    app.device(&acme, "truck-1").await;

    let body = json!({
        "id": "SHP-1", "device": "truck-1", "reference": "PO-77",
        "origin": {"lat": 41.1, "lon": 123.0}, "destination": "dalian",
        "route": {"type": "Feature", "properties": {},
            "geometry": {"type": "LineString", "coordinates": [[123.0, 41.1], [122.2, 40.6], [121.6, 38.9]]}},
        "deadline": "2030-01-01T00:00:00Z", "temp_range_c": [-25.0, -15.0], "max_speed_kmh": 90.0,
    });
    let (s, v) = app
        .call("POST", "/v1/shipments", Some(&acme), Some(body.clone()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["id"], "SHP-1");
    assert_eq!(v["status"], "planned");
    assert_eq!(v["destination"], "dalian");
    assert_eq!(v["origin"], json!({"lat": 41.1, "lon": 123.0}));
    assert_eq!(v["route"]["type"], "LineString");
    assert_eq!(v["deadline"], "2030-01-01T00:00:00.000Z");
    let (s, v) = app
        .call("POST", "/v1/shipments", Some(&acme), Some(body))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"));

    // A generated id; a GeoJSON Point destination.
    let (s, v) = app
        .call(
            "POST",
            "/v1/shipments",
            Some(&acme),
            Some(json!({"device": "truck-1",
            "destination": {"type": "Point", "coordinates": [121.6, 38.9]}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let generated = v["id"].as_str().unwrap().to_owned();
    assert!(generated.starts_with("shp_"));
    assert_eq!(v["destination"], json!({"lat": 38.9, "lon": 121.6}));

    // ETA: none before a fix, then one once the truck reports.
    let (s, v) = app.get("/v1/shipments/SHP-1/eta", &acme).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "planned");
    assert_eq!(v["eta"], Value::Null);
    app.fix("acme", "truck-1", 122.9, 41.0).await;
    let (_, v) = app.get("/v1/shipments/SHP-1/eta", &acme).await;
    assert!(v["eta"].as_str().unwrap().ends_with('Z'), "{v}");
    assert!(v["p10"].as_str().unwrap() <= v["eta"].as_str().unwrap());
    assert!(v["eta"].as_str().unwrap() <= v["p90"].as_str().unwrap());
    assert!(v["remaining_m"].as_f64().unwrap() > 100_000.0, "{v}");
    assert_eq!(v["method"], "route");
    assert_eq!(v["status"], "planned");
    assert_eq!(
        app.get("/v1/shipments/SHP-1", &acme).await.1["eta"]["method"],
        "route"
    );

    // A share token opens the public view of this shipment only, without a key.
    let (s, v) = app
        .call("POST", "/v1/shipments/SHP-1/share", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let public = v["public_url"].as_str().unwrap().to_owned();
    let (s, v) = app.call("GET", &public, None, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["shipment"], "SHP-1");
    assert_eq!(v["status"], "planned");
    // SPEC 15: position and ETA only while in transit (api/tests/shares.rs has the rest)
    assert_eq!(v["position"], Value::Null);
    assert_eq!(v["eta"], Value::Null);
    assert!(v.get("device").is_none());
    let (s, v) = app.call("GET", "/v1/public/st_0000", None, None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, _) = app
        .call("POST", "/v1/shipments/SHP-1/share", Some(&globex), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (_, v) = app.get("/v1/shipments", &acme).await;
    assert_eq!(v["shipments"].as_array().unwrap().len(), 2);
    let (s, v) = app
        .call(
            "PATCH",
            "/v1/shipments/SHP-1",
            Some(&acme),
            Some(json!({"status": "delivered", "reference": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "delivered");
    assert_eq!(v["reference"], Value::Null);
    assert_eq!(v["destination"], "dalian");
    assert_eq!(
        app.get("/v1/shipments/SHP-1", &acme).await.1["status"],
        "delivered"
    );

    // Refused: an unknown geofence (nothing stored), a bad route, bad places, unknown fields.
    let (s, v) = app
        .call(
            "POST",
            "/v1/shipments",
            Some(&acme),
            Some(json!({"id": "X", "device": "truck-1", "destination": "nowhere"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("nowhere"),
        "{v}"
    );
    assert_eq!(
        app.get("/v1/shipments/X", &acme).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, _) = app
        .call(
            "PATCH",
            "/v1/shipments/SHP-1",
            Some(&acme),
            Some(json!({"destination": "nowhere"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.get("/v1/shipments/SHP-1", &acme).await.1["destination"],
        "dalian",
        "rolled back"
    );
    for bad in [
        json!({"device": "truck-1", "destination": 5}),
        json!({"device": "truck-1", "destination": {"lat": 1}}),
        json!({"device": "truck-1", "destination": {"lat": 100, "lon": 1}}),
        json!({"device": "truck-1", "destination": "dalian", "route": {"type": "Point", "coordinates": [1, 1]}}),
        json!({"device": "truck-1", "destination": "dalian", "route": {"type": "LineString", "coordinates": [[1, 1]]}}),
        json!({"device": "truck-1", "destination": "dalian", "deadline": "tomorrow"}),
        json!({"device": "truck-1", "destination": "dalian", "status": "lost"}),
        json!({"device": "truck-1", "destination": "dalian", "temp_range_c": [5, -5]}),
        json!({"device": "truck-1", "destination": "dalian", "colour": "red"}),
        json!({"destination": "dalian"}),
    ] {
        let (s, v) = app
            .call("POST", "/v1/shipments", Some(&acme), Some(bad.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} -> {v}");
    }
    // Points and routes are read by the one GeoJSON reader (v1::geojson): a 400 that says why.
    for (bad, why) in [
        (
            json!({"device": "truck-1", "destination": {"type": "Point", "coordinates": [1]}}),
            "destination: a position is [lon, lat]",
        ),
        (
            json!({"device": "truck-1", "destination": {"type": "Polygon", "coordinates": []}}),
            "destination: expected a Point, got a Polygon",
        ),
        (
            json!({"device": "truck-1", "destination": "dalian",
                "route": {"type": "Point", "coordinates": [1, 1]}}),
            "route: expected a LineString",
        ),
        (
            json!({"device": "truck-1", "destination": "dalian",
                "route": {"type": "LineString", "coordinates": [[1, 1]]}}),
            "route: a LineString needs at least 2 positions",
        ),
        (
            json!({"device": "truck-1", "destination": "dalian", "route": {"type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[1, 1], [2]]}}}),
            "route: a position is [lon, lat]",
        ),
    ] {
        let (s, v) = app
            .call("POST", "/v1/shipments", Some(&acme), Some(bad.clone()))
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{bad} -> {v}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().starts_with(why),
            "{bad} -> {v}"
        );
    }

    // Isolation: another tenant's shipment is a missing one everywhere.
    for path in ["/v1/shipments/SHP-1", "/v1/shipments/SHP-1/eta"] {
        let theirs = app.get(path, &globex).await;
        assert_eq!(theirs.0, StatusCode::NOT_FOUND);
        assert_eq!(
            theirs,
            app.get(&path.replace("SHP-1", "SHP-404"), &globex)
                .await
                .clone()
                .pipe_replace("SHP-404", "SHP-1")
        );
    }
    let (s, _) = app
        .call(
            "PATCH",
            "/v1/shipments/SHP-1",
            Some(&globex),
            Some(json!({"status": "cancelled"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        app.call("DELETE", "/v1/shipments/SHP-1", Some(&globex), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v1/shipments", &globex).await.1["shipments"],
        json!([])
    );
    assert_eq!(
        app.get("/v1/shipments", ADMIN).await.1["shipments"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Another tenant cannot aim a shipment at acme's geofence.
    app.device(&globex, "van").await;
    let (s, _) = app
        .call(
            "POST",
            "/v1/shipments",
            Some(&globex),
            Some(json!({"device": "van", "destination": "dalian"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    assert_eq!(
        app.call("DELETE", "/v1/shipments/SHP-1", Some(&acme), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/v1/shipments/SHP-1", &acme).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v1/shipments/SHP-1/eta", &acme).await.0,
        StatusCode::NOT_FOUND
    );
}

/// Replaces a string inside a response's error message (comparing 404 bodies for two ids).
trait PipeReplace {
    fn pipe_replace(self, from: &str, to: &str) -> Self;
}

impl PipeReplace for (StatusCode, Value) {
    fn pipe_replace(self, from: &str, to: &str) -> Self {
        let text = self.1.to_string().replace(from, to);
        (self.0, serde_json::from_str(&text).unwrap())
    }
}

/// An event as the pipeline would broadcast it; `n` makes it distinct.
fn live_event(
    tenant: &str,
    device: &str,
    shipment: Option<&str>,
    n: i64,
) -> Arc<landport_tracker::Event> {
    Arc::new(landport_tracker::Event::new(
        landport_tracker::EventType::GeofenceEntered,
        tenant,
        device,
        shipment,
        Some("port"),
        1_795_000_000_000 + n,
        0,
        json!({}),
    ))
}

/// `tenant/device` of each feature of a `positions` item, sorted.
fn position_devices(item: &SseItem) -> Vec<String> {
    assert_eq!(item.event, "positions", "{item:?}");
    let v = item.json();
    assert_eq!(v["type"], "FeatureCollection", "{v}");
    let mut out: Vec<String> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}/{}",
                f["properties"]["tenant"].as_str().unwrap(),
                f["id"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

/// `tenant/device/shipment` of an `event` item (shipment `-` if none).
fn event_of(item: &SseItem) -> String {
    assert_eq!(item.event, "event", "{item:?}");
    let v = item.json();
    assert_eq!(
        item.id.as_deref(),
        v["id"].as_str(),
        "the SSE id is the event id"
    );
    format!(
        "{}/{}/{}",
        v["tenant"].as_str().unwrap(),
        v["device"].as_str().unwrap(),
        v["shipment"].as_str().unwrap_or("-")
    )
}

/// The next `n` items named `event`, as [`event_of`] shows them.
async fn next_events(stream: &mut SseStream, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        out.push(event_of(&stream.next_named("event").await));
    }
    out
}

#[tokio::test]
async fn the_stream_sends_the_tenants_events_and_positions_only() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.device(&acme, "truck-1").await;
    app.device(&globex, "van-1").await;

    let mut events = SseStream::open(&app.router, "/v1/stream?topics=events", &acme).await;
    // Another tenant's event first: the broadcast is in order, so had it passed the filter it
    // would be the first item.
    app.events
        .send(live_event("globex", "van-1", None, 1))
        .unwrap();
    app.events
        .send(live_event("acme", "truck-1", None, 2))
        .unwrap();
    let item = events.next().await;
    assert_eq!(event_of(&item), "acme/truck-1/-");
    assert!(item.id.as_deref().unwrap().starts_with("evt_"), "{item:?}");

    let mut positions = SseStream::open(&app.router, "/v1/stream?topics=positions", &acme).await;
    app.fix("globex", "van-1", 122.0, 40.0).await;
    app.fix("acme", "truck-1", 122.2, 40.6).await;
    assert_eq!(position_devices(&positions.next().await), ["acme/truck-1"]);
    // Later items carry only what changed since the one before.
    app.device(&acme, "truck-2").await;
    app.fix("acme", "truck-2", 122.3, 40.7).await;
    assert_eq!(position_devices(&positions.next().await), ["acme/truck-2"]);
    app.fix("acme", "truck-1", 122.21, 40.61).await;
    assert_eq!(position_devices(&positions.next().await), ["acme/truck-1"]);

    let (s, v) = app.get("/v1/stream?topics=weather", &acme).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (s, v) = app.get("/v1/stream?shipment=SHP-9", &acme).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn a_shipment_stream_sends_only_that_shipments_events_and_its_devices_positions() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    for d in ["truck-1", "truck-2"] {
        app.device(&acme, d).await;
    }
    app.device(&globex, "truck-1").await;
    let shipment = |id: &str, device: &str| json!({"id": id, "device": device, "destination": {"lat": 38.9, "lon": 121.6}});
    for (key, id, device) in [
        (&acme, "SHP-1", "truck-1"),
        (&acme, "SHP-2", "truck-2"),
        // The same shipment id in another tenant.
        (&globex, "SHP-1", "truck-1"),
    ] {
        let (s, v) = app
            .call(
                "POST",
                "/v1/shipments",
                Some(key),
                Some(shipment(id, device)),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    for (tenant, device) in [
        ("acme", "truck-1"),
        ("acme", "truck-2"),
        ("globex", "truck-1"),
    ] {
        app.fix(tenant, device, 122.0, 40.0).await;
    }

    let mut s = SseStream::open(
        &app.router,
        "/v1/stream?topics=positions,events&shipment=SHP-1",
        &acme,
    )
    .await;
    // The first positions item holds every device it may show: the shipment's one only.
    assert_eq!(
        position_devices(&s.next_named("positions").await),
        ["acme/truck-1"]
    );

    // Events of the other shipment, of none, and of another tenant's SHP-1 come first in the
    // broadcast; the stream's first event must still be acme's SHP-1.
    app.events
        .send(live_event("acme", "truck-2", Some("SHP-2"), 1))
        .unwrap();
    app.events
        .send(live_event("acme", "truck-2", None, 2))
        .unwrap();
    app.events
        .send(live_event("globex", "truck-1", Some("SHP-1"), 3))
        .unwrap();
    app.events
        .send(live_event("acme", "truck-1", Some("SHP-1"), 4))
        .unwrap();
    // Positions: the other devices move first (possibly in a tick of their own, which must
    // then send nothing), then the shipment's device.
    app.fix("acme", "truck-2", 122.1, 40.1).await;
    app.fix("globex", "truck-1", 122.1, 40.1).await;
    app.fix("acme", "truck-1", 122.1, 40.1).await;
    let (mut events, mut moved) = (Vec::new(), Vec::new());
    while events.is_empty() || moved.is_empty() {
        let item = s.next().await;
        match item.event.as_str() {
            "event" => events.push(event_of(&item)),
            "positions" => moved.push(position_devices(&item)),
            other => panic!("unexpected {other}: {item:?}"),
        }
    }
    assert_eq!(events, ["acme/truck-1/SHP-1"]);
    assert_eq!(moved, [["acme/truck-1"]]);

    // An admin key names the tenant the shipment belongs to.
    let mut s = SseStream::open(
        &app.router,
        "/v1/stream?topics=positions,events&shipment=SHP-1&tenant=globex",
        ADMIN,
    )
    .await;
    assert_eq!(
        position_devices(&s.next_named("positions").await),
        ["globex/truck-1"]
    );
    app.events
        .send(live_event("acme", "truck-1", Some("SHP-1"), 5))
        .unwrap();
    app.events
        .send(live_event("globex", "truck-1", Some("SHP-1"), 6))
        .unwrap();
    assert_eq!(next_events(&mut s, 1).await, ["globex/truck-1/SHP-1"]);
    let (st, v) = app.get("/v1/stream?shipment=SHP-1", ADMIN).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{v}"
    );
    let (st, _) = app.get("/v1/stream?shipment=SHP-2", &globex).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "another tenant's shipment");
}

#[tokio::test]
async fn an_admin_stream_covers_every_tenant_or_the_one_it_names_and_a_tenant_key_its_own() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.device(&acme, "truck-1").await;
    app.device(&globex, "van-1").await;
    app.fix("acme", "truck-1", 122.0, 40.0).await;
    app.fix("globex", "van-1", 122.5, 40.5).await;

    let path = "/v1/stream?topics=positions,events";
    let mut all = SseStream::open(&app.router, path, ADMIN).await;
    let mut only_acme = SseStream::open(&app.router, &format!("{path}&tenant=acme"), ADMIN).await;
    let mut own = SseStream::open(&app.router, path, &globex).await;
    // A tenant key's `?tenant=` is ignored.
    let mut own_named = SseStream::open(&app.router, &format!("{path}&tenant=acme"), &globex).await;

    assert_eq!(
        position_devices(&all.next_named("positions").await),
        ["acme/truck-1", "globex/van-1"]
    );
    assert_eq!(
        position_devices(&only_acme.next_named("positions").await),
        ["acme/truck-1"]
    );
    assert_eq!(
        position_devices(&own.next_named("positions").await),
        ["globex/van-1"]
    );
    assert_eq!(
        position_devices(&own_named.next_named("positions").await),
        ["globex/van-1"]
    );

    // Interleaved, so that each stream's missing items lie between ones it gets.
    for (n, (tenant, device)) in [
        ("globex", "van-1"),
        ("acme", "truck-1"),
        ("globex", "van-1"),
        ("acme", "truck-1"),
        ("globex", "van-1"),
    ]
    .into_iter()
    .enumerate()
    {
        app.events
            .send(live_event(tenant, device, None, n as i64))
            .unwrap();
    }
    assert_eq!(
        next_events(&mut all, 5).await,
        [
            "globex/van-1/-",
            "acme/truck-1/-",
            "globex/van-1/-",
            "acme/truck-1/-",
            "globex/van-1/-"
        ]
    );
    assert_eq!(
        next_events(&mut only_acme, 2).await,
        ["acme/truck-1/-", "acme/truck-1/-"]
    );
    for s in [&mut own, &mut own_named] {
        assert_eq!(
            next_events(s, 3).await,
            ["globex/van-1/-", "globex/van-1/-", "globex/van-1/-"]
        );
    }
}

/// A device time that only goes up, even for two readings in one millisecond (a repeated
/// time would be dropped as a duplicate).
fn next_ts() -> i64 {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = now_ms();
    let prev = LAST.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
    if prev >= now {
        LAST.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    } else {
        now
    }
}

/// PATCHing the route of a shipment on its way keeps it in transit and replans at once: the
/// ETA and remaining distance follow the new route before the next reading.
#[tokio::test]
async fn patching_the_route_of_a_shipment_in_transit_keeps_it_in_transit_and_replans() {
    let app = App::new().await;
    let acme = app.tenant("acme").await;
    let (s, _) = app
        .call(
            "POST",
            "/v1/geofences",
            Some(&acme),
            Some(polygon_feature("depot", 123.0, 41.0)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    app.device(&acme, "truck-1").await;
    let straight = json!({"type": "LineString", "coordinates": [[123.0, 41.0], [124.0, 41.0]]});
    let body = json!({"id": "S1", "device": "truck-1", "origin": "depot",
        "destination": {"lat": 41.0, "lon": 124.0}, "route": straight});
    let (s, v) = app
        .call("POST", "/v1/shipments", Some(&acme), Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    app.fix("acme", "truck-1", 123.0, 41.0).await; // in the depot
    app.fix("acme", "truck-1", 123.2, 41.0).await; // out of it, on the route: departed
    let (_, v) = app.get("/v1/shipments/S1", &acme).await;
    assert_eq!(v["status"], "in_transit", "{v}");
    let (_, eta) = app.get("/v1/shipments/S1/eta", &acme).await;
    assert_eq!(eta["method"], "route");
    let before_m = eta["remaining_m"].as_f64().unwrap();

    // A detour north: about 1.5x the distance left.
    let detour = json!({"type": "LineString",
        "coordinates": [[123.0, 41.0], [123.2, 41.0], [123.6, 41.5], [124.0, 41.0]]});
    let (s, v) = app
        .call(
            "PATCH",
            "/v1/shipments/S1",
            Some(&acme),
            Some(json!({"route": detour})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["status"], "in_transit",
        "a new route does not undo the departure"
    );
    let (_, eta) = app.get("/v1/shipments/S1/eta", &acme).await;
    assert_eq!(eta["status"], "in_transit");
    assert_eq!(eta["method"], "route");
    let after_m = eta["remaining_m"].as_f64().unwrap();
    assert!(
        after_m > before_m * 1.3,
        "replanned at once: {before_m} m -> {after_m} m"
    );
}
