//! SPEC 15 through the router: share links expire, can be read and revoked, and show the
//! position only while the shipment is in transit; the shipments list pages; a tenant's event
//! cursor counts its own events only.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use landport_pipeline::{Output, now_ms};
use landport_store::Store;
use landport_tracker::{Event, EventType, Reading};
use serde_json::{Value, json};
use support::TestApi;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-key-for-the-share-tests";

struct App {
    api: TestApi,
}

impl App {
    fn new() -> App {
        App {
            api: TestApi::new(ADMIN),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let res = self.api.router().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v)
    }

    async fn tenant(&self, id: &str) -> String {
        let body = json!({"id": id, "name": id});
        let (s, v) = self
            .call("POST", "/v1/tenants", Some(ADMIN), Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let path = format!("/v1/tenants/{id}/keys");
        let (s, v) = self.call("POST", &path, Some(ADMIN), None).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["key"].as_str().unwrap().to_owned()
    }

    async fn shipment(&self, key: &str, body: Value) {
        let (s, v) = self
            .call("POST", "/v1/shipments", Some(key), Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    async fn status(&self, key: &str, id: &str, status: &str) {
        let path = format!("/v1/shipments/{id}");
        let body = json!({ "status": status });
        let (s, v) = self.call("PATCH", &path, Some(key), Some(body)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["status"], status);
    }

    /// One reading of `device` at `(lon, lat)` applied to the live tracker.
    async fn fix(&self, tenant: &str, device: &str, lon: f64, lat: f64) {
        let (tenant, device) = (tenant.to_owned(), device.to_owned());
        let reading = Reading::at(now_ms()).with_position(lon, lat);
        self.api
            .tracker
            .call(move |core| {
                let mut out = Output::default();
                let _ = core.apply(&tenant, &device, &[reading], now_ms(), &mut out);
            })
            .await
            .unwrap();
    }

    async fn public(&self, token: &str) -> (StatusCode, Value) {
        self.call("GET", &format!("/v1/public/{token}"), None, None)
            .await
    }
}

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

const DAY_MS: i64 = 86_400_000;

#[tokio::test]
async fn the_public_view_shows_the_position_only_in_transit_and_the_link_expires_after_arrival() {
    let app = App::new();
    let acme = app.tenant("acme").await;
    let (s, _) = app
        .call(
            "POST",
            "/v1/devices",
            Some(&acme),
            Some(json!({"id": "truck-1", "name": "T1", "kind": "truck"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let deadline = now_ms() + 2 * DAY_MS;
    app.shipment(
        &acme,
        json!({"id": "SHP-1", "device": "truck-1", "destination": {"lat": 38.9, "lon": 121.6},
               "deadline": rfc3339_ms(deadline)}),
    )
    .await;
    app.fix("acme", "truck-1", 122.9, 41.0).await;

    let (s, v) = app
        .call("POST", "/v1/shipments/SHP-1/share", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    assert_eq!(v["public_url"], format!("/v1/public/{token}"));
    // default: 7 days after the deadline while it has not arrived
    assert_eq!(v["expires_at"], rfc3339_ms(deadline + 7 * DAY_MS));
    assert_eq!(v["expired"], false);

    // planned: the truck may still be on its previous job
    let (s, v) = app.public(&token).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "planned");
    assert_eq!(v["position"], Value::Null);
    assert_eq!(v["eta"], Value::Null);

    app.status(&acme, "SHP-1", "in_transit").await;
    let (_, v) = app.public(&token).await;
    assert_eq!(v["status"], "in_transit");
    assert_eq!(v["position"]["lat"], 41.0, "{v}");
    assert!(v.get("device").is_none());

    // delivered: the truck goes on to other jobs; the link shows the status, not where it is
    app.status(&acme, "SHP-1", "delivered").await;
    app.fix("acme", "truck-1", 123.5, 41.8).await;
    let (s, v) = app.public(&token).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "delivered");
    assert_eq!(v["position"], Value::Null);
    assert_eq!(v["eta"], Value::Null);
    // ... and expires 7 days after it ended
    let (s, v) = app
        .call("GET", "/v1/shipments/SHP-1/share", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("token").is_none(), "the token is never shown again");
    let expires = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(
        (expires - (now_ms() + 7 * DAY_MS)).abs() < 60_000,
        "{v}: 7 days from delivery"
    );
}

#[tokio::test]
async fn share_links_expire_rotate_and_are_revoked() {
    let app = App::new();
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    // a deadline more than 7 days ago: the default expiry has passed
    let old_deadline = now_ms() - 8 * DAY_MS;
    app.shipment(
        &acme,
        json!({"id": "OLD", "device": "t", "destination": {"lat": 1.0, "lon": 2.0},
               "deadline": rfc3339_ms(old_deadline)}),
    )
    .await;
    let (_, v) = app
        .call("POST", "/v1/shipments/OLD/share", Some(&acme), None)
        .await;
    assert_eq!(v["expired"], true);
    let (s, v) = app.public(v["token"].as_str().unwrap()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    app.shipment(
        &acme,
        json!({"id": "SHP", "device": "t", "destination": {"lat": 1.0, "lon": 2.0}}),
    )
    .await;
    // no share yet
    let (s, _) = app
        .call("GET", "/v1/shipments/SHP/share", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // an explicit expiry must be a future RFC 3339 time
    for bad in ["yesterday", "2001-01-01T00:00:00Z"] {
        let (s, v) = app
            .call(
                "POST",
                &format!("/v1/shipments/SHP/share?expires_at={bad}"),
                Some(&acme),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("expires_at")
        );
    }
    let at = now_ms() + 3 * DAY_MS;
    let (s, v) = app
        .call(
            "POST",
            &format!("/v1/shipments/SHP/share?expires_at={}", rfc3339_ms(at)),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["expires_at"], rfc3339_ms(at));
    let first = v["token"].as_str().unwrap().to_owned();
    assert_eq!(app.public(&first).await.0, StatusCode::OK);

    // another tenant sees no shipment, so no share, and cannot revoke it
    for method in ["GET", "DELETE", "POST"] {
        let (s, _) = app
            .call(method, "/v1/shipments/SHP/share", Some(&globex), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method}");
    }
    assert_eq!(app.public(&first).await.0, StatusCode::OK);

    // a new link replaces the old one
    let (_, v) = app
        .call("POST", "/v1/shipments/SHP/share", Some(&acme), None)
        .await;
    let second = v["token"].as_str().unwrap().to_owned();
    assert_eq!(
        v["expires_at"],
        Value::Null,
        "no deadline, not arrived: not known yet"
    );
    assert_eq!(app.public(&first).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.public(&second).await.0, StatusCode::OK);

    // revoked: gone at once, and idempotent
    for _ in 0..2 {
        let (s, _) = app
            .call("DELETE", "/v1/shipments/SHP/share", Some(&acme), None)
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    assert_eq!(app.public(&second).await.0, StatusCode::NOT_FOUND);
    let (s, _) = app
        .call("GET", "/v1/shipments/SHP/share", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // a missing shipment
    let (s, _) = app
        .call("DELETE", "/v1/shipments/NOPE/share", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_shipments_list_pages_by_next() {
    let app = App::new();
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    for id in ["a", "b", "c"] {
        let body = json!({"id": id, "device": "t", "destination": {"lat": 1.0, "lon": 2.0}});
        app.shipment(&acme, body.clone()).await;
        app.shipment(&globex, body).await;
    }
    let ids = |v: &Value| -> Vec<String> {
        v["shipments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s["tenant"].as_str().unwrap(),
                    s["id"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (s, p1) = app
        .call("GET", "/v1/shipments?limit=2", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{p1}");
    assert_eq!(ids(&p1), ["acme/a", "acme/b"]);
    let next = p1["next"].as_str().unwrap();
    let (_, p2) = app
        .call(
            "GET",
            &format!("/v1/shipments?limit=2&next={next}"),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(ids(&p2), ["acme/c"]);
    assert_eq!(p2["next"], Value::Null);
    let (_, all) = app.call("GET", "/v1/shipments", Some(ADMIN), None).await;
    assert_eq!(ids(&all).len(), 6);
    assert_eq!(all["next"], Value::Null);
    let (_, p) = app
        .call("GET", "/v1/shipments?limit=4", Some(ADMIN), None)
        .await;
    let next = p["next"].as_str().unwrap();
    let (_, rest) = app
        .call(
            "GET",
            &format!("/v1/shipments?next={next}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(ids(&rest), ["globex/b", "globex/c"]);
    for bad in ["?limit=0", "?limit=1001", "?next=zz"] {
        let (s, _) = app
            .call("GET", &format!("/v1/shipments{bad}"), Some(&acme), None)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// SPEC 15: a tenant's cursor counts its own events only, so paging through them tells it
/// nothing about how many events another tenant had in between.
#[tokio::test]
async fn a_tenants_event_cursor_does_not_show_other_tenants_volume() {
    let app = App::new();
    let acme = app.tenant("acme").await;
    let mut store = Store::open(app.api.dir.path()).unwrap();
    let ev = |tenant: &str, i: i64| {
        Event::new(
            EventType::DeviceOnline,
            tenant,
            "d",
            None,
            None,
            1_795_000_000_000 + i,
            0,
            json!({}),
        )
    };
    store.commit(&[], &[ev("acme", 0)]).unwrap();
    let busy: Vec<Event> = (1..=500).map(|i| ev("globex", i)).collect();
    store.commit(&[], &busy).unwrap();
    store.commit(&[], &[ev("acme", 501)]).unwrap();

    let (s, p1) = app
        .call("GET", "/v1/events?limit=1", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{p1}");
    assert_eq!(p1["next"], "1");
    let (_, p2) = app
        .call("GET", "/v1/events?limit=1&since=1", Some(&acme), None)
        .await;
    assert_eq!(p2["events"][0]["tenant"], "acme");
    assert_eq!(p2["next"], "2", "no gap of 500");
    // `next=` works as `since=`
    let (_, p3) = app
        .call("GET", "/v1/events?next=2", Some(&acme), None)
        .await;
    assert_eq!(p3["events"], json!([]));
    assert_eq!(p3["next"], "2");
    // an admin key over every tenant pages by the global sequence
    let (_, all) = app
        .call("GET", "/v1/events?limit=1000", Some(ADMIN), None)
        .await;
    assert_eq!(all["events"].as_array().unwrap().len(), 502);
    assert_eq!(all["next"], "502");
    // an admin naming the tenant gets that tenant's numbers
    let (_, named) = app
        .call("GET", "/v1/events?tenant=acme", Some(ADMIN), None)
        .await;
    assert_eq!(named["next"], "2");
}
