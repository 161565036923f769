//! The replicated registry log against a real nats-server (JetStream): writes submitted
//! through a `Replicator` reach every shard's store as the same rows (ids, keys, secrets,
//! tokens and times included), the submitter gets a shard's answer, a shard started later
//! catches up to the same state, and entries applied a second time (a crash between applying
//! and recording) change nothing.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_nats::jetstream;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use landport_api::{ApiState, AppState, router_with_api};
use landport_cluster::partition::partition;
use landport_cluster::registry::{self, Replicator, ShardApplier};
use landport_cluster::wire::{WireRequest, WriteLog};
use landport_pipeline::metrics::Metrics;
use landport_pipeline::{Core, Output, TrackerHandle, now_ms};
use landport_store::{KeyHash, Store};
use landport_tracker::{Reading, Tracker, TrackerSettings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const ADMIN: &str = "registry-test-admin-key";

#[path = "support/nats.rs"]
mod nats;

/// A NATS server (or cluster) with JetStream on loopback (tests/support/nats.rs); killed
/// when dropped.
struct Nats {
    cluster: nats::NatsCluster,
    _dir: tempfile::TempDir,
}

impl Nats {
    fn start() -> Nats {
        Nats::cluster(1)
    }

    fn cluster(nodes: usize) -> Nats {
        let dir = tempfile::tempdir().unwrap();
        let cluster = nats::NatsCluster::start(dir.path(), nodes, 4);
        Nats { cluster, _dir: dir }
    }

    /// A client (to every node) and JetStream context; the registry stream created with one
    /// replica per node, up to three.
    async fn connect(&self) -> (async_nats::Client, jetstream::Context) {
        let urls = self.cluster.client_urls();
        for _ in 0..200 {
            if let Ok(client) = async_nats::connect(urls.split(',').collect::<Vec<_>>()).await {
                let js = jetstream::new(client.clone());
                if registry::ensure_stream(&js, self.cluster.node_count())
                    .await
                    .is_ok()
                {
                    return (client, js);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("NATS at {urls} did not come up");
    }
}

/// A shard as cluster mode builds one, minus the pipeline's ingest: a store, a standalone
/// tracker, an `ApiState` that trusts the replication headers, the normal router.
struct Shard {
    dir: tempfile::TempDir,
    tracker: TrackerHandle,
    router: Router,
    stop: CancellationToken,
    applier: Option<ShardApplier>,
}

impl Shard {
    fn new(auto_register: bool) -> Shard {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let core = Core::new(
            Tracker::new(TrackerSettings::default()),
            auto_register,
            metrics.clone(),
        );
        let tracker = TrackerHandle::standalone(core);
        let (events, _) = tokio::sync::broadcast::channel(16);
        let api = ApiState::new(dir.path(), tracker.clone(), events, Some(ADMIN))
            .unwrap()
            .trust_replication_headers();
        let state = AppState {
            metrics,
            ready: Arc::new(AtomicBool::new(true)),
        };
        Shard {
            dir,
            tracker,
            router: router_with_api(state, api),
            stop: CancellationToken::new(),
            applier: None,
        }
    }

    /// Starts applying the registry log as partition `p`; waits until caught up.
    async fn apply(
        &mut self,
        client: &async_nats::Client,
        js: &jetstream::Context,
        p: u32,
    ) -> &mut Shard {
        self.stop = CancellationToken::new();
        let applier = ShardApplier::start(
            client.clone(),
            js.clone(),
            p,
            self.dir.path(),
            self.router.clone(),
            self.stop.clone(),
        );
        tokio::time::timeout(Duration::from_secs(30), applier.caught_up())
            .await
            .expect("caught up in time")
            .expect("caught up");
        self.applier = Some(applier);
        self
    }

    /// Stops the applier and waits for its task.
    async fn stop_applying(&mut self) {
        self.stop.cancel();
        if let Some(a) = self.applier.take() {
            a.into_task().await.unwrap();
        }
    }

    fn applied(&self) -> u64 {
        self.applier.as_ref().map_or(0, ShardApplier::applied)
    }

    fn store(&self) -> Store {
        Store::open_reader(self.dir.path()).unwrap()
    }

    /// A GET on this shard's own router.
    async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let req = Request::get(path)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

async fn submit(
    log: &Replicator,
    method: Method,
    path: &str,
    key: &str,
    body: Value,
) -> (StatusCode, Value) {
    let req = WireRequest {
        method,
        path: path.to_owned(),
        headers: vec![
            ("authorization".into(), format!("Bearer {key}")),
            ("content-type".into(), "application/json".into()),
        ],
        body: if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        },
    };
    let res = log.submit(req).await;
    (
        res.status,
        serde_json::from_slice(&res.body).unwrap_or(Value::Null),
    )
}

/// Waits until every shard has applied the whole stream (two minutes at most: a NATS node may
/// just have died).
async fn settle(js: &jetstream::Context, shards: &[&Shard]) {
    let mut last = None;
    for _ in 0..2400 {
        if let Ok(mut stream) = js.get_stream(registry::STREAM).await
            && let Ok(info) = stream.info().await
        {
            last = Some(info.state.last_sequence);
        }
        if let Some(last) = last
            && shards.iter().all(|s| s.applied() >= last)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the shards did not apply the registry log up to {last:?}");
}

/// What the registry writes of [`write_registry`] made.
#[derive(Debug, Clone)]
struct Made {
    key: String,
    geofence: String,
    webhook: String,
    secret: String,
    shipment: String,
    token: String,
    password: String,
}

/// Two shards (partitions 0 and 1) applying the log, and the log's submitting side.
async fn two_shards(
    client: &async_nats::Client,
    js: &jetstream::Context,
    auto_register: bool,
) -> ([Shard; 2], Replicator) {
    let mut shards = [Shard::new(auto_register), Shard::new(auto_register)];
    for (p, s) in shards.iter_mut().enumerate() {
        s.apply(client, js, p as u32).await;
    }
    let log = Replicator::start(client.clone(), js.clone(), "instance-1", 2)
        .await
        .unwrap();
    (shards, log)
}

/// Creates tenant `acme` and a key of it through the log; returns the key.
async fn tenant_with_key(log: &Replicator) -> String {
    let (st, t) = submit(
        log,
        Method::POST,
        "/v1/tenants",
        ADMIN,
        json!({"id": "acme", "name": "Acme"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let (st, k) = submit(
        log,
        Method::POST,
        "/v1/tenants/acme/keys",
        ADMIN,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    k["key"].as_str().unwrap().to_owned()
}

/// Writes a tenant, a key, a device, a geofence, a webhook, a shipment, a share link and a
/// device credential through the log; each answer is the submitter's.
async fn write_registry(log: &Replicator) -> Made {
    let key = tenant_with_key(log).await;
    let (st, d) = submit(
        log,
        Method::POST,
        "/v1/devices",
        &key,
        json!({"id": "truck-1", "name": "Truck 1", "kind": "truck"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    let fence = json!({"type": "Feature",
        "geometry": {"type": "Point", "coordinates": [122.2, 40.6]},
        "properties": {"name": "Yingkou port", "kind": "port", "radius_m": 800}});
    let (st, g) = submit(log, Method::POST, "/v1/geofences", &key, fence).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let geofence = g["id"].as_str().unwrap().to_owned();
    assert!(geofence.starts_with("gf_"), "a generated id: {geofence}");
    let (st, w) = submit(
        log,
        Method::POST,
        "/v1/webhooks",
        &key,
        json!({"url": "https://example.com/hooks", "events": ["geofence.*"]}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{w}");
    let (st, s) = submit(
        log,
        Method::POST,
        "/v1/shipments",
        &key,
        json!({"device": "truck-1", "destination": geofence, "reference": "PO-1"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{s}");
    let shipment = s["id"].as_str().unwrap().to_owned();
    let (st, sh) = submit(
        log,
        Method::POST,
        &format!("/v1/shipments/{shipment}/share"),
        &key,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{sh}");
    let (st, c) = submit(
        log,
        Method::POST,
        "/v1/devices/truck-1/credentials",
        &key,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    Made {
        key,
        geofence,
        webhook: w["id"].as_str().unwrap().to_owned(),
        secret: w["secret"].as_str().unwrap().to_owned(),
        shipment,
        token: sh["token"].as_str().unwrap().to_owned(),
        password: c["password"].as_str().unwrap().to_owned(),
    }
}

/// Everything a shard answers about what [`write_registry`] made, and the stored rows behind
/// what no GET shows (key, secrets, token, password: each checked against the one the
/// submitter was given).
async fn state_of(shard: &Shard, m: &Made) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/v1/devices".to_owned(),
        "/v1/devices/truck-1".to_owned(),
        "/v1/geofences".to_owned(),
        format!("/v1/geofences/{}", m.geofence),
        "/v1/webhooks".to_owned(),
        format!("/v1/webhooks/{}", m.webhook),
        "/v1/shipments".to_owned(),
        format!("/v1/shipments/{}", m.shipment),
        format!("/v1/shipments/{}/share", m.shipment),
    ] {
        let (st, body) = shard.get(&path, &m.key).await;
        assert_eq!(st, StatusCode::OK, "{path}: {body}");
        out.push(json!({"path": path, "body": body}));
    }
    // The share token opens the shipment (no key).
    let (st, public) = shard.get(&format!("/v1/public/{}", m.token), "").await;
    assert_eq!(st, StatusCode::OK, "{public}");
    out.push(public);
    let store = shard.store();
    let tenant = store.get_tenant("acme").unwrap().unwrap();
    out.push(json!({"tenant_created_ms": tenant.created_ms}));
    let keys = store.list_api_keys("acme").unwrap();
    out.push(json!(
        keys.iter()
            .map(|k| json!([k.id, k.created_ms]))
            .collect::<Vec<_>>()
    ));
    assert!(
        store
            .lookup_key_hash(&KeyHash::of(&m.key))
            .unwrap()
            .is_some()
    );
    let w = store.webhook(Some("acme"), &m.webhook).unwrap().unwrap();
    out.push(json!({"secret": w.secret, "previous": w.previous_secret,
        "until": w.previous_until_ms, "created": w.created_ms, "updated": w.updated_ms}));
    assert!(
        store
            .check_device_credential("acme", "truck-1", m.password.as_bytes())
            .unwrap(),
        "the submitter's password works on this shard"
    );
    out.push(json!({"credential_ms":
        store.device_credential_created_ms("acme", "truck-1").unwrap()}));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_the_log_make_the_same_rows_on_every_shard_and_a_later_shard_catches_up() {
    let nats = Nats::start();
    let (client, js) = nats.connect().await;
    let ([a, b], log) = two_shards(&client, &js, false).await;

    let made = write_registry(&log).await;
    settle(&js, &[&a, &b]).await;
    let on_a = state_of(&a, &made).await;
    assert_eq!(on_a, state_of(&b, &made).await);
    // The secret the submitter got is the one stored (on both, as just compared).
    let stored = a.store().webhook(Some("acme"), &made.webhook).unwrap();
    assert_eq!(stored.unwrap().secret, made.secret);

    // The log holds no key a reader could call the API with: each entry names its caller by
    // the key's hash.
    let mut entries = js
        .get_stream(landport_cluster::registry::STREAM)
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap()
        .messages()
        .await
        .unwrap();
    let mut seen = 0;
    use futures_util::StreamExt as _;
    while let Ok(Some(Ok(entry))) =
        tokio::time::timeout(std::time::Duration::from_secs(2), entries.next()).await
    {
        let headers = entry.headers.as_ref().unwrap();
        assert!(
            headers.get("authorization").is_none(),
            "an entry kept the key"
        );
        assert!(headers.get(landport_cluster::registry::KEY_HASH).is_some());
        assert!(!String::from_utf8_lossy(&entry.payload).contains(made.key.as_str()));
        seen += 1;
    }
    assert!(seen >= 6, "{seen} entries read");

    // A third shard, started once all that is in the log, reads it from the start.
    let mut c = Shard::new(false);
    c.apply(&client, &js, 2).await;
    assert_eq!(on_a, state_of(&c, &made).await);

    // Later writes reach all three, in order: a change, then a delete.
    let (st, d) = submit(
        &log,
        Method::PATCH,
        "/v1/devices/truck-1",
        &made.key,
        json!({"name": "Truck one"}),
    )
    .await;
    assert_eq!(
        (st, d["name"].as_str()),
        (StatusCode::OK, Some("Truck one"))
    );
    // The answer names the key's tenant, as a read's does (the front learns it).
    let res = log
        .submit(WireRequest {
            method: Method::POST,
            path: "/v1/geofences".into(),
            headers: vec![
                ("authorization".into(), format!("Bearer {}", made.key)),
                ("content-type".into(), "application/json".into()),
            ],
            body: Bytes::from(
                json!({"type": "Feature", "id": "depot",
                    "geometry": {"type": "Point", "coordinates": [121.6, 38.9]},
                    "properties": {"radius_m": 300}})
                .to_string(),
            ),
        })
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.header("x-landport-tenant"), Some("acme"));
    let (st, _) = submit(
        &log,
        Method::DELETE,
        &format!("/v1/webhooks/{}", made.webhook),
        &made.key,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    settle(&js, &[&a, &b, &c]).await;
    for s in [&a, &b, &c] {
        let (_, d) = s.get("/v1/devices/truck-1", &made.key).await;
        assert_eq!(d["name"], "Truck one");
        let (st, _) = s
            .get(&format!("/v1/webhooks/{}", made.webhook), &made.key)
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    // A refusal is every shard's answer, and the submitter's.
    let (st, e) = submit(
        &log,
        Method::POST,
        "/v1/tenants",
        ADMIN,
        json!({"id": "acme", "name": "again"}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_applied_a_second_time_change_nothing() {
    let nats = Nats::start();
    let (client, js) = nats.connect().await;
    let mut a = Shard::new(false);
    a.apply(&client, &js, 0).await;
    let log = Replicator::start(client.clone(), js.clone(), "instance-1", 1)
        .await
        .unwrap();
    let made = write_registry(&log).await;
    // A rotation: the old secret keeps signing for a day.
    let (st, r) = submit(
        &log,
        Method::POST,
        &format!("/v1/webhooks/{}/rotate-secret", made.webhook),
        &made.key,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (st, _) = submit(
        &log,
        Method::PATCH,
        &format!("/v1/shipments/{}", made.shipment),
        &made.key,
        json!({"reference": "PO-2"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    settle(&js, &[&a]).await;
    let before = state_of(&a, &made).await;
    let w = a
        .store()
        .webhook(Some("acme"), &made.webhook)
        .unwrap()
        .unwrap();
    assert_eq!(w.previous_secret.as_deref(), Some(made.secret.as_str()));

    // As if the shard had crashed after applying every entry but before recording any: the
    // whole log is applied again.
    a.stop_applying().await;
    let applied = Store::open(a.dir.path())
        .unwrap()
        .registry_applied_seq()
        .unwrap();
    assert_eq!(applied, 10, "eight writes, a rotation, a change");
    Store::open(a.dir.path())
        .unwrap()
        .set_registry_applied_seq(0, now_ms())
        .unwrap();
    a.apply(&client, &js, 0).await;
    assert_eq!(a.applied(), applied);
    assert_eq!(before, state_of(&a, &made).await);
    let (_, devices) = a.get("/v1/devices", &made.key).await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1, "{devices}");
}

/// A reading of `device` (of `acme`) into `shard`'s tracker, as its partition's telemetry.
async fn reading(shard: &Shard, device: &'static str) {
    shard
        .tracker
        .call(move |core| {
            let reading = Reading::at(now_ms()).with_position(122.2, 40.6);
            core.apply("acme", device, &[reading], now_ms(), &mut Output::default())
                .unwrap();
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_write_is_answered_by_the_shard_of_the_devices_partition() {
    let nats = Nats::start();
    let (client, js) = nats.connect().await;
    // Devices known from telemetry alone too (auto-registration), as a shard may have them.
    let (shards, log) = two_shards(&client, &js, true).await;
    let key = tenant_with_key(&log).await;
    let (st, _) = submit(
        &log,
        Method::POST,
        "/v1/devices",
        &key,
        json!({"id": "truck-7", "name": "Truck 7", "kind": "truck"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);

    // The device reports to its own partition's shard, which is slow to apply the next
    // write: the other shard answers first, without the device's position.
    let owner = partition("acme", "truck-7", 2) as usize;
    reading(&shards[owner], "truck-7").await;
    let busy = shards[owner].tracker.clone();
    let stall = tokio::spawn(async move {
        busy.call(|_| std::thread::sleep(Duration::from_millis(500)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (st, d) = submit(
        &log,
        Method::PATCH,
        "/v1/devices/truck-7",
        &key,
        json!({"name": "Seven"}),
    )
    .await;
    stall.await.unwrap();
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["name"], "Seven");
    assert!(d["position"].is_object(), "the owner's answer: {d}");

    // A device known from its telemetry alone: a 204 from its shard, a 404 from the other;
    // the write happened, and the client is told so.
    let ghost = partition("acme", "ghost", 2) as usize;
    reading(&shards[ghost], "ghost").await;
    let (st, body) = submit(&log, Method::DELETE, "/v1/devices/ghost", &key, Value::Null).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    // A device no shard knows: the 404.
    let (st, body) = submit(
        &log,
        Method::DELETE,
        "/v1/devices/nobody?tenant=acme",
        ADMIN,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_shard_the_submitter_gets_a_503_saying_the_write_is_logged() {
    let nats = Nats::start();
    let (client, js) = nats.connect().await;
    let log = Replicator::start(client.clone(), js.clone(), "lonely", 1)
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(1));
    let (st, body) = submit(
        &log,
        Method::POST,
        "/v1/tenants",
        ADMIN,
        json!({"id": "acme", "name": "Acme"}),
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "registry_timeout", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("will be applied"),
        "{body}"
    );
    // A shard started now applies it.
    let mut a = Shard::new(false);
    a.apply(&client, &js, 0).await;
    assert!(a.store().get_tenant("acme").unwrap().is_some());
    // A body over the server's max_payload is refused before the log.
    let big = json!({"id": "big", "name": "x".repeat(9 << 20)});
    let (st, body) = submit(&log, Method::POST, "/v1/tenants", ADMIN, big).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_payload"),
        "{body}"
    );
    // No registry log at all (JetStream does not take the entry): a 503 saying so.
    js.delete_stream(registry::STREAM).await.unwrap();
    let (st, body) = submit(
        &log,
        Method::POST,
        "/v1/tenants",
        ADMIN,
        json!({"id": "initech", "name": "Initech"}),
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "registry_unavailable", "{body}");
    // And an instance id that cannot be a subject token is refused.
    assert!(
        Replicator::start(client, js, "a.b", 1).await.is_err(),
        "a dot would split the response subject"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_three_node_cluster_the_log_has_three_replicas_and_survives_a_node() {
    let mut nats = Nats::cluster(3);
    let (client, js) = nats.connect().await;
    let mut stream = js.get_stream(registry::STREAM).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    assert!(matches!(
        info.config.storage,
        jetstream::stream::StorageType::File
    ));
    let ([a, b], log) = two_shards(&client, &js, false).await;
    let (st, _) = submit(
        &log,
        Method::POST,
        "/v1/tenants",
        ADMIN,
        json!({"id": "acme", "name": "Acme"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    // One node down (not necessarily the one the client is on): writes go on, R3 keeps a quorum.
    let connected = client.server_info().server_name;
    let node = (0..3)
        .find(|&i| nats.cluster.config(i).server_name == connected)
        .unwrap();
    nats.cluster.kill(node);
    for attempt in 0.. {
        let (st, k) = submit(
            &log,
            Method::POST,
            "/v1/tenants/acme/keys",
            ADMIN,
            Value::Null,
        )
        .await;
        if st == StatusCode::CREATED {
            assert!(k["key"].is_string());
            break;
        }
        // While the client reconnects or the stream elects a leader: a 503, never another
        // answer. Repeated only when the log did not take it (a timed-out write is logged).
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{k}");
        if k["error"]["code"] == "registry_timeout" {
            break;
        }
        assert!(
            attempt < 30,
            "no write was taken with one node of three down: {k}"
        );
    }
    settle(&js, &[&a, &b]).await;
    for s in [&a, &b] {
        assert_eq!(s.store().list_api_keys("acme").unwrap().len(), 1);
    }
    // And the next write is answered as usual.
    let (st, k) = submit(
        &log,
        Method::POST,
        "/v1/tenants/acme/keys",
        ADMIN,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
}

/// Not a test: prints how long registry writes take end to end on this machine (one
/// nats-server, two shards). `cargo test -p landport-cluster --test registry -- --ignored
/// --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn measure_write_latency() {
    let nats = Nats::start();
    let (client, js) = nats.connect().await;
    let (_shards, log) = two_shards(&client, &js, false).await;
    let key = tenant_with_key(&log).await;
    let mut took = Vec::new();
    let t0 = std::time::Instant::now();
    for i in 0..300 {
        let t = std::time::Instant::now();
        let (st, b) = submit(
            &log,
            Method::POST,
            "/v1/devices",
            &key,
            json!({"id": format!("d-{i}"), "name": "d", "kind": "truck"}),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
        took.push(t.elapsed());
    }
    let total = t0.elapsed();
    took.sort();
    eprintln!(
        "300 device creates, one after another, 2 shards: p50 {:?}, p99 {:?}, {:.0} writes/s",
        took[150],
        took[297],
        300.0 / total.as_secs_f64()
    );
}
