//! One id rule for the API and ingest: an id `POST /v1/devices` accepts is one whose readings
//! ingest accepts, and an id it refuses gets a 400 saying why (before, `lkw-müller` was
//! registered and then every one of its readings was refused as `bad_id`).

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use landport_ingest::topic::{OwnTracksTenants, TopicKind};
use landport_pipeline::{Output, now_ms};
use landport_tracker::Reading;
use serde_json::{Value, json};
use support::TestApi;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-key";

async fn call(t: &TestApi, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = t.router().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Whether ingest takes in a reading of `device` (of tenant `acme`): its topic passes ingest's
/// parser, and the live core then applies it (registered through the API, or refused).
async fn ingest_accepts(t: &TestApi, device: &str) -> bool {
    let topic = format!("landport/acme/{device}/telemetry");
    if TopicKind::parse(&topic, &OwnTracksTenants::default()).is_err() {
        return false;
    }
    let device = device.to_owned();
    let reading = Reading::at(now_ms()).with_position(123.0, 41.0);
    t.tracker
        .call(move |core| {
            let mut out = Output::default();
            core.apply("acme", &device, &[reading], now_ms(), &mut out)
                .is_ok()
                && core
                    .tracker()
                    .device("acme", &device)
                    .is_some_and(|d| d.fix.is_some())
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn the_api_accepts_exactly_the_device_ids_ingest_accepts() {
    let t = TestApi::new(ADMIN);
    let (s, v) = call(
        &t,
        "POST",
        "/v1/tenants",
        json!({"id": "acme", "name": "Acme"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let long = "x".repeat(65);
    let ids = [
        "truck-17",
        "cold_room.2",
        "lkw-müller",
        "a b",
        "a+b",
        "..",
        long.as_str(),
        "日本",
    ];
    for id in ids {
        let (s, v) = call(&t, "POST", "/v1/devices?tenant=acme", json!({"id": id})).await;
        let api_ok = s == StatusCode::CREATED;
        if !api_ok {
            assert_eq!(s, StatusCode::BAD_REQUEST, "{id:?}: {v}");
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(msg.contains("A-Z a-z 0-9 . _ -"), "{id:?}: {msg}");
        }
        // A topic cannot carry every refused id (a space is fine, `+` is not): ingest is asked
        // only where the id can stand in a topic at all.
        if !id.contains(['+', '#', '/']) {
            assert_eq!(
                api_ok,
                ingest_accepts(&t, id).await,
                "{id:?}: API vs ingest"
            );
        }
    }
    let (s, v) = call(
        &t,
        "POST",
        "/v1/devices?tenant=acme",
        json!({"id": "lkw-müller"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("non-ASCII"),
        "{v}"
    );
}
