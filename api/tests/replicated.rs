//! Cluster mode's replicated writes: an API built for a shard
//! (`ApiState::trust_replication_headers`) takes a registry-log entry's ids, keys, secrets and
//! times from its `x-landport-seed` and `x-landport-now`, so two shards applying the same
//! entry write the same rows; a normal server ignores those headers, so no client picks its
//! own key.

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use landport_api::router_with_api;
use serde_json::{Value, json};
use support::TestApi;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-key";
const SEED: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";
/// 2020-09-13T12:26:40Z: far from the clock of any test run.
const NOW_MS: i64 = 1_600_000_000_000;

async fn call(
    router: &Router,
    method: &str,
    path: &str,
    key: &str,
    replication: Option<(&str, &str)>,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some((seed, now)) = replication {
        req = req
            .header("x-landport-seed", seed)
            .header("x-landport-now", now);
    }
    let res = router
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn shard(t: &TestApi) -> Router {
    router_with_api(t.state.clone(), t.api.clone().trust_replication_headers())
}

/// Creates tenant `acme` and a key of it, both with the same replication headers.
async fn tenant_and_key(router: &Router, now: &str) -> (Value, Value) {
    let rep = Some((SEED, now));
    let (st, tenant) = call(
        router,
        "POST",
        "/v1/tenants",
        ADMIN,
        rep,
        json!({"id": "acme", "name": "Acme"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{tenant}");
    let (st, key) = call(
        router,
        "POST",
        "/v1/tenants/acme/keys",
        ADMIN,
        rep,
        json!({}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    (tenant, key)
}

#[tokio::test]
async fn a_plain_server_ignores_forged_replication_headers() {
    let t = TestApi::new(ADMIN);
    let router = t.router();
    let (tenant, key) = tenant_and_key(&router, &NOW_MS.to_string()).await;
    // The clock's time, not the forged one.
    let created = tenant["created_at"].as_str().unwrap();
    assert!(!created.starts_with("2020-09-13"), "{created}");
    // The same forged seed again: a different key id and key (the OS's randomness).
    let rep = Some((SEED, "1600000000000"));
    let (st, again) = call(
        &router,
        "POST",
        "/v1/tenants/acme/keys",
        ADMIN,
        rep,
        json!({}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_ne!(again["id"], key["id"]);
    assert_ne!(again["key"], key["key"]);
    // Nor does a forged seed make a webhook secret someone else can predict.
    let tenant_key = key["key"].as_str().unwrap();
    let hook = json!({"url": "https://example.com/hook"});
    let (_, w1) = call(
        &router,
        "POST",
        "/v1/webhooks",
        tenant_key,
        rep,
        hook.clone(),
    )
    .await;
    let (_, w2) = call(&router, "POST", "/v1/webhooks", tenant_key, rep, hook).await;
    assert_ne!(w1["id"], w2["id"], "{w1} {w2}");
    assert_ne!(w1["secret"], w2["secret"]);
    // Half a pair or a malformed one changes nothing either: no 400, the request just runs.
    let (st, _) = call(
        &router,
        "POST",
        "/v1/tenants/acme/keys",
        ADMIN,
        Some(("zz", "soon")),
        json!({}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
}

#[tokio::test]
async fn two_shards_applying_the_same_entries_write_the_same_ids_keys_secrets_and_times() {
    let (a, b) = (TestApi::new(ADMIN), TestApi::new(ADMIN));
    let (ra, rb) = (shard(&a), shard(&b));
    let now = NOW_MS.to_string();
    let (ta, ka) = tenant_and_key(&ra, &now).await;
    let (tb, kb) = tenant_and_key(&rb, &now).await;
    assert_eq!(ta, tb);
    assert_eq!(
        ta["created_at"], "2020-09-13T12:26:40.000Z",
        "the entry's time"
    );
    assert_eq!(ka, kb, "the same key id and key on both shards");
    // The key works on both (its hash is stored on both).
    let key = ka["key"].as_str().unwrap();
    for r in [&ra, &rb] {
        let (st, _) = call(r, "GET", "/v1/devices", key, None, json!(null)).await;
        assert_eq!(st, StatusCode::OK);
    }
    // Generated ids and secrets, entry by entry.
    let rep = Some((SEED, now.as_str()));
    let fence = json!({"type": "Feature",
        "geometry": {"type": "Point", "coordinates": [122.2, 40.6]},
        "properties": {"name": "port", "radius_m": 500}});
    let hook = json!({"url": "https://example.com/hook"});
    let mut answers = Vec::new();
    for r in [&ra, &rb] {
        let (st, g) = call(r, "POST", "/v1/geofences", key, rep, fence.clone()).await;
        assert_eq!(st, StatusCode::CREATED, "{g}");
        let (st, w) = call(r, "POST", "/v1/webhooks", key, rep, hook.clone()).await;
        assert_eq!(st, StatusCode::CREATED, "{w}");
        answers.push((g, w));
    }
    assert_eq!(answers[0], answers[1]);
    let (g, w) = &answers[0];
    assert!(g["id"].as_str().unwrap().starts_with("gf_"), "{g}");
    assert!(w["secret"].as_str().unwrap().starts_with("whsec_"), "{w}");
    assert_eq!(w["created_at"], "2020-09-13T12:26:40.000Z");
    // Another seed: other ids.
    let other = "0".repeat(64);
    let (_, w2) = call(&ra, "POST", "/v1/webhooks", key, Some((&other, &now)), hook).await;
    assert_ne!(w2["id"], w["id"]);
    assert_ne!(w2["secret"], w["secret"]);
}

#[tokio::test]
async fn a_shard_refuses_a_malformed_entry_and_runs_a_request_without_one_normally() {
    let t = TestApi::new(ADMIN);
    let router = shard(&t);
    let body = json!({"id": "acme", "name": "Acme"});
    for bad in [Some(("zz", "1")), Some((SEED, "soon"))] {
        let (st, e) = call(&router, "POST", "/v1/tenants", ADMIN, bad, body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("x-landport-"),
            "{e}"
        );
    }
    // Only one of the two headers.
    let req = Request::post("/v1/tenants")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-landport-seed", SEED)
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // No headers at all (a read or write the front forwards): the clock's time.
    let (st, tenant) = call(&router, "POST", "/v1/tenants", ADMIN, None, body).await;
    assert_eq!(st, StatusCode::CREATED);
    assert!(
        !tenant["created_at"]
            .as_str()
            .unwrap()
            .starts_with("2020-09-13")
    );
}
