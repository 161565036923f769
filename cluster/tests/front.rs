//! The cluster front against a real nats-server: two shards (each a complete API on its own
//! store, filtered to its partition) answer over NATS through `serve_shard`, and the front's
//! merged answers equal those of one single-node API holding the same data.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use landport_api::{ApiState, AppState, router_with_api};
use landport_cluster::front::{self, FrontSettings};
use landport_cluster::serve::serve_shard;
use landport_cluster::wire::{WireRequest, WireResponse, WriteLog};
use landport_pipeline::metrics::Metrics;
use landport_pipeline::{Core, Output, TrackerHandle};
use landport_store::{KeyHash, Store, Tenant};
use landport_tracker::{Event, EventType, Reading, Tracker, TrackerSettings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-key-of-the-front-test-0123456789";
const KEY: &str = "acme-key-of-the-front-test";
const T0: i64 = 1_795_000_000_000;

/// A nats-server on a free loopback port, killed on drop.
struct Nats {
    child: Child,
    url: String,
}

impl Nats {
    /// With the server's `max_payload` when given (default 1 MiB).
    fn start(dir: &std::path::Path, max_payload: Option<usize>) -> Nats {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("nats.conf");
        let limit = max_payload.map_or(String::new(), |m| format!("max_payload: {m}\n"));
        std::fs::write(&conf, format!("host: 127.0.0.1\nport: {port}\n{limit}")).unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian's package) must be installed: scripts/test installs it");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One API (a shard's when `owns` is given, else the single-node reference) on a temp store.
struct Api {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    tracker: TrackerHandle,
    router: Router,
}

impl Api {
    fn new(owns: Option<landport_api::Owns>) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let core = Core::new(
            Tracker::new(TrackerSettings::default()),
            false,
            metrics.clone(),
        );
        let tracker = TrackerHandle::standalone(core);
        let (events, _) = tokio::sync::broadcast::channel(16);
        let mut api = ApiState::new(dir.path(), tracker.clone(), events, Some(ADMIN)).unwrap();
        if let Some(owns) = owns {
            api = api.with_owns(owns);
        }
        // The tenant and its key straight in the store: the same key on every shard, as the
        // replicated registry log leaves it.
        let mut store = Store::open(dir.path()).unwrap();
        store
            .create_tenant(&Tenant {
                id: "acme".into(),
                name: "Acme".into(),
                created_ms: T0,
            })
            .unwrap();
        assert!(
            store
                .create_api_key("acme", "k1", &KeyHash::of(KEY), T0)
                .unwrap()
        );
        let state = AppState {
            metrics,
            ready: Arc::new(AtomicBool::new(true)),
        };
        Api {
            dir: dir.path().to_owned(),
            _dir: dir,
            tracker,
            router: router_with_api(state, api),
        }
    }

    /// Applies a reading to the live core and stores what it produced, as the pipeline does.
    async fn fix(&self, device: &str, lon: f64, lat: f64, ts: i64) {
        let device = device.to_owned();
        let reading = Reading::at(ts).with_position(lon, lat).with_speed(40.0);
        let out = self
            .tracker
            .call(move |core| {
                let mut out = Output::default();
                core.apply("acme", &device, &[reading], ts + 500, &mut out)
                    .unwrap();
                out
            })
            .await
            .unwrap();
        let mut store = Store::open(&self.dir).unwrap();
        store.commit(&out.rows, &[]).unwrap();
    }

    fn events(&self, events: &[Event]) {
        let mut store = Store::open(&self.dir).unwrap();
        store.commit(&[], events).unwrap();
    }
}

/// The test's partition of a device among 2 (any fixed function will do for the front).
fn part(tenant: &str, device: &str) -> u32 {
    let h = format!("{tenant}/{device}")
        .bytes()
        .fold(2_166_136_261u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(16_777_619)
        });
    h % 2
}

/// The registry log of the test: every write applied by every API in turn (the single-node
/// reference included), answered with the first shard's response.
struct AllApply(Vec<Router>);

impl WriteLog for AllApply {
    fn submit(
        &self,
        req: WireRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = WireResponse> + Send + '_>> {
        Box::pin(async move {
            let mut first = None;
            for r in &self.0 {
                let res = r.clone().oneshot(req.to_http().unwrap()).await.unwrap();
                let res = WireResponse::from_http(res).await.unwrap();
                first.get_or_insert(res);
            }
            first.unwrap()
        })
    }
}

async fn call(
    router: &Router,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
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
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("{path}: not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    (status, v, headers)
}

/// The body of `GET path`, as bytes.
async fn raw(router: &Router, path: &str) -> axum::body::Bytes {
    let req = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    res.into_body().collect().await.unwrap().to_bytes()
}

async fn get(router: &Router, path: &str) -> (StatusCode, Value) {
    let (s, v, _) = call(router, "GET", path, KEY, None).await;
    (s, v)
}

/// Every item of a paged list, following `next` (under `cursor_param`) until the last page.
async fn all_pages(router: &Router, path: &str, list: &str, cursor_param: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..100 {
        let sep = if path.contains('?') { '&' } else { '?' };
        let p = match &next {
            Some(c) => format!("{path}{sep}{cursor_param}={c}"),
            None => path.to_owned(),
        };
        let (s, v) = get(router, &p).await;
        assert_eq!(s, StatusCode::OK, "{p}: {v}");
        let items = v[list].as_array().unwrap().clone();
        let empty = items.is_empty();
        out.extend(items);
        match v["next"].as_str() {
            Some(c) if !empty && Some(c) != next.as_deref() => next = Some(c.to_owned()),
            _ => return out,
        }
    }
    panic!("{path}: more than 100 pages");
}

struct Cluster {
    _nats: Nats,
    _nats_dir: tempfile::TempDir,
    client: async_nats::Client,
    single: Api,
    shards: Vec<Api>,
    front: Router,
    stop: CancellationToken,
}

/// NATS, two shards serving partitions 0 and 1, the single-node reference, a front over the
/// two partitions; 12 devices registered through the front, positions and events in the
/// shards of their partitions (and all in the reference).
async fn cluster() -> Cluster {
    cluster_with(None).await
}

/// [`cluster`] with the NATS server's `max_payload`.
async fn cluster_with(max_payload: Option<usize>) -> Cluster {
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(nats_dir.path(), max_payload);
    let client = async_nats::connect(&nats.url).await.unwrap();
    let single = Api::new(None);
    let shards: Vec<Api> = (0..2u32)
        .map(|p| {
            let owns: landport_api::Owns = Arc::new(move |t: &str, d: &str| part(t, d) == p);
            Api::new(Some(owns))
        })
        .collect();
    let stop = CancellationToken::new();
    for (p, shard) in shards.iter().enumerate() {
        let (c, r, s) = (client.clone(), shard.router.clone(), stop.clone());
        tokio::spawn(async move { serve_shard(c, p as u32, r, s).await.unwrap() });
    }
    client.flush().await.unwrap();
    let mut all: Vec<Router> = shards.iter().map(|s| s.router.clone()).collect();
    all.push(single.router.clone());
    let settings = FrontSettings {
        timeout: Duration::from_secs(5),
        partition_of: Some(Arc::new(part) as front::PartitionOf),
        ..FrontSettings::default()
    };
    let front = front::router(client.clone(), 2, Arc::new(AllApply(all)), settings);
    let c = Cluster {
        _nats: nats,
        _nats_dir: nats_dir,
        client,
        single,
        shards,
        front,
        stop,
    };
    // Wait until both shards answer (their subscriptions are registered).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _) = get(&c.front, "/v1/devices").await;
        if s == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the shards never answered: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut events = Vec::new();
    for i in 0..12 {
        let id = format!("truck-{i:02}");
        let (s, v, _) = call(
            &c.front,
            "POST",
            "/v1/devices",
            KEY,
            Some(json!({"id": id, "name": format!("Truck {i}"), "kind": "truck"})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        // Ten with a position, near (121.5, 31.2); two never seen.
        if i < 10 {
            let (lon, lat) = (121.5 + 0.001 * i as f64, 31.2 + 0.0007 * i as f64);
            let ts = T0 + 1000 * i;
            c.single.fix(&id, lon, lat, ts).await;
            c.shards[part("acme", &id) as usize]
                .fix(&id, lon, lat, ts)
                .await;
            for k in 0..2 {
                events.push(Event::new(
                    EventType::GeofenceEntered,
                    "acme",
                    &id,
                    None,
                    Some("port"),
                    ts + k * 10_000 + i,
                    k,
                    json!({}),
                ));
            }
        }
    }
    // Stored in time order in the reference; each in its device's shard.
    events.sort_by_key(|e| e.ts_ms);
    c.single.events(&events);
    for (p, shard) in c.shards.iter().enumerate() {
        let mine: Vec<Event> = events
            .iter()
            .filter(|e| part(&e.tenant, &e.device) == p as u32)
            .cloned()
            .collect();
        assert!(!mine.is_empty(), "the test data must span both partitions");
        shard.events(&mine);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_lists_positions_and_events_equal_the_single_node_answers() {
    let c = cluster().await;
    let single = &c.single.router;

    // The device list, page by page (3 a page), equals the reference's: each device once.
    let merged = all_pages(&c.front, "/v1/devices?limit=3", "devices", "next").await;
    let alone = all_pages(single, "/v1/devices?limit=3", "devices", "next").await;
    assert_eq!(merged.len(), 12);
    assert_eq!(merged, alone);
    // And in one page.
    assert_eq!(
        get(&c.front, "/v1/devices").await,
        get(single, "/v1/devices").await
    );
    // A shard alone lists its own partition's devices only.
    let (_, mine) = get(&c.shards[0].router, "/v1/devices").await;
    let mine = mine["devices"].as_array().unwrap();
    assert!(!mine.is_empty() && mine.len() < 12);
    assert!(
        mine.iter()
            .all(|d| part("acme", d["id"].as_str().unwrap()) == 0)
    );

    // The bbox: one FeatureCollection, equal to the reference's.
    let bbox = "/v1/positions?bbox=121.49,31.19,121.52,31.22";
    let (s, merged) = get(&c.front, bbox).await;
    assert_eq!(s, StatusCode::OK, "{merged}");
    assert_eq!(merged["features"].as_array().unwrap().len(), 10);
    assert_eq!(merged, get(single, bbox).await.1);
    // Byte for byte: the Features are copied, not re-encoded.
    assert_eq!(raw(&c.front, bbox).await, raw(single, bbox).await);
    // A smaller box, devices of both partitions in it.
    let small = "/v1/positions?bbox=121.5025,31.2,121.5065,31.21";
    let (_, m) = get(&c.front, small).await;
    assert_eq!(m["features"].as_array().unwrap().len(), 4);
    assert_eq!(m, get(single, small).await.1);

    // Nearby: nearest first, cut to the limit over both partitions.
    let near = "/v1/devices/nearby?lat=31.2035&lon=121.505&radius_m=5000&limit=4";
    let (s, m) = get(&c.front, near).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["devices"].as_array().unwrap().len(), 4);
    assert_eq!(m, get(single, near).await.1);

    // Events, 3 a page through the composite cursor: every event once, in time order.
    let merged = all_pages(&c.front, "/v1/events?limit=3", "events", "since").await;
    let alone = all_pages(single, "/v1/events?limit=3", "events", "since").await;
    assert_eq!(merged.len(), 20);
    assert_eq!(merged, alone);
    // No shard-internal member leaks.
    let (_, page) = get(&c.front, "/v1/events?limit=3").await;
    assert!(page.get("cursors").is_none(), "{page}");
    let (s, v) = get(&c.front, "/v1/events?since=42").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    c.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_is_answered_by_its_partition_and_an_unknown_one_is_a_404() {
    let c = cluster().await;
    let (s, v) = get(&c.front, "/v1/devices/no-such-truck").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"]["code"], "not_found");
    for i in 0..12 {
        let id = format!("truck-{i:02}");
        let (s, v) = get(&c.front, &format!("/v1/devices/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{id}: {v}");
        assert_eq!(
            v,
            get(&c.single.router, &format!("/v1/devices/{id}")).await.1
        );
        // The other partition's shard says 404 for it.
        let other = &c.shards[1 - part("acme", &id) as usize].router;
        assert_eq!(
            get(other, &format!("/v1/devices/{id}")).await.0,
            StatusCode::NOT_FOUND
        );
    }
    // The track of a device comes from its partition.
    let track = "/v1/devices/truck-03/track?from=2026-11-18T00:00:00Z&to=2026-11-20T00:00:00Z";
    let (s, v) = get(&c.front, track).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, get(&c.single.router, track).await.1);
    assert_eq!(v["geometry"]["coordinates"].as_array().unwrap().len(), 1);
    // The shard's tenant header stays inside.
    let (_, _, h) = call(&c.front, "GET", "/v1/devices/truck-03", KEY, None).await;
    assert!(h.get("x-landport-tenant").is_none());

    // The key's tenant is known now: a device's read goes to its partition alone. With
    // partition 0 stopped, partition 1's devices are still answered, partition 0's are 503s.
    let p0 = (0..12)
        .map(|i| format!("truck-{i:02}"))
        .find(|d| part("acme", d) == 0)
        .unwrap();
    let p1 = (0..12)
        .map(|i| format!("truck-{i:02}"))
        .find(|d| part("acme", d) == 1)
        .unwrap();
    let client = c.client.clone();
    let stop0 = CancellationToken::new();
    // Partition 1 served a second time, apart, so it survives stopping the first servers.
    let r1 = c.shards[1].router.clone();
    let (cl, s1) = (client.clone(), stop0.clone());
    tokio::spawn(async move { serve_shard(cl, 1, r1, s1).await.unwrap() });
    client.flush().await.unwrap();
    c.stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, v) = get(&c.front, &format!("/v1/devices/{p1}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = get(&c.front, &format!("/v1/devices/{p0}")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["partitions"], json!([0]));
    // A list needs every partition.
    let (s, v) = get(&c.front, "/v1/devices").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["partitions"], json!([0]));
    stop0.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_nobody_serves_is_named_in_a_503() {
    let c = cluster().await;
    // A front that believes in 3 partitions: nobody serves partition 2.
    let front3 = front::router(
        c.client.clone(),
        3,
        Arc::new(AllApply(vec![])),
        FrontSettings {
            timeout: Duration::from_secs(2),
            ..FrontSettings::default()
        },
    );
    // A device found in a partition that answered is answered; one that is nowhere found may
    // be in partition 2: a 503 too.
    let (s, v, _) = call(&front3, "GET", "/v1/devices/truck-01", KEY, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for path in [
        "/v1/devices",
        "/v1/positions?bbox=121,31,122,32",
        "/v1/events",
        "/v1/devices/no-such-truck",
    ] {
        let (s, v, h) = call(&front3, "GET", path, KEY, None).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{path}: {v}");
        assert_eq!(v["partitions"], json!([2]), "{path}");
        assert_eq!(v["error"]["code"], "partitions_unavailable");
        assert_eq!(h[header::RETRY_AFTER], "1");
    }
    // The live stream has the key checked by a partition: a bad key is the shards' 401, a bad
    // topic the single node's 400 (the stream itself: tests/cluster_stream_e2e.rs).
    let (s, v, _) = call(&c.front, "GET", "/v1/stream", "wrong-key", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, v, _) = call(&c.front, "GET", "/v1/stream?topics=weather", KEY, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _, _) = call(&c.front, "GET", "/v1/devices", "wrong-key", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Outside /v1 with no local router: a JSON 404.
    let (s, _, _) = call(&c.front, "GET", "/healthz", KEY, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    c.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipments_and_a_geofences_devices_come_from_their_devices_partitions() {
    let c = cluster().await;
    let single = &c.single.router;
    // A geofence around the first five trucks, through the front (every shard stores it).
    let fence = json!({"type": "Feature", "id": "yard", "properties": {"name": "Yard", "kind": "depot", "confirm_seconds": 0},
        "geometry": {"type": "Polygon", "coordinates": [[[121.499, 31.199], [121.5045, 31.199],
            [121.5045, 31.2032], [121.499, 31.2032], [121.499, 31.199]]]}});
    let (s, v, _) = call(&c.front, "POST", "/v1/geofences", KEY, Some(fence)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // Every shard has it: a read of it is answered by any one.
    let (s, v) = get(&c.front, "/v1/geofences/yard").await;
    assert_eq!((s, &v["id"]), (StatusCode::OK, &json!("yard")));
    // Positions reach the fence on the next reading.
    for i in 0..5 {
        let id = format!("truck-{i:02}");
        let (lon, lat) = (121.5 + 0.001 * i as f64, 31.2 + 0.0007 * i as f64);
        let ts = T0 + 100_000 + i;
        c.single.fix(&id, lon, lat, ts).await;
        c.shards[part("acme", &id) as usize]
            .fix(&id, lon, lat, ts)
            .await;
    }
    let inside = "/v1/geofences/yard/devices?limit=2";
    let merged = all_pages(&c.front, inside, "devices", "next").await;
    assert_eq!(merged.len(), 5, "{merged:?}");
    assert_eq!(merged, all_pages(single, inside, "devices", "next").await);

    // Shipments, one per truck, through the front.
    for i in 0..12 {
        let body = json!({"id": format!("SHP-{i:02}"), "device": format!("truck-{i:02}"),
            "destination": {"lat": 31.3, "lon": 121.6}});
        let (s, v, _) = call(&c.front, "POST", "/v1/shipments", KEY, Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    // `updated_at` is each API's own clock at the write (the replicated log gives the shards
    // one time; this test's stand-in does not).
    let timeless = |mut v: Value| {
        if let Some(m) = v.as_object_mut() {
            m.remove("updated_at");
        }
        v
    };
    let merged = all_pages(&c.front, "/v1/shipments?limit=5", "shipments", "next").await;
    assert_eq!(merged.len(), 12);
    let alone = all_pages(single, "/v1/shipments?limit=5", "shipments", "next").await;
    assert_eq!(
        merged.into_iter().map(timeless).collect::<Vec<_>>(),
        alone.into_iter().map(timeless).collect::<Vec<_>>()
    );
    for i in [0, 5, 11] {
        for path in [
            format!("/v1/shipments/SHP-{i:02}"),
            format!("/v1/shipments/SHP-{i:02}/eta"),
        ] {
            let (s, v) = get(&c.front, &path).await;
            assert_eq!(s, StatusCode::OK, "{path}: {v}");
            assert_eq!(timeless(v), timeless(get(single, &path).await.1), "{path}");
        }
        // Only the shard of the shipment's device answers it.
        let other = &c.shards[1 - part("acme", &format!("truck-{i:02}")) as usize].router;
        let (s, _) = get(other, &format!("/v1/shipments/SHP-{i:02}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        get(&c.front, "/v1/shipments/SHP-99").await.0,
        StatusCode::NOT_FOUND
    );
    c.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_larger_than_one_nats_message_arrive_whole() {
    // Each shard's list and collection here is larger than 1 KiB: it crosses NATS in pieces.
    let c = cluster_with(Some(1024)).await;
    let single = &c.single.router;
    let bbox = "/v1/positions?bbox=121.49,31.19,121.52,31.22";
    let whole = raw(single, bbox).await;
    assert!(whole.len() > 2 * 1024, "{} bytes", whole.len());
    assert_eq!(raw(&c.front, bbox).await, whole);
    let (s, merged) = get(&c.front, "/v1/devices").await;
    assert_eq!(s, StatusCode::OK, "{merged}");
    assert!(merged.to_string().len() > 2 * 1024);
    assert_eq!(merged, get(single, "/v1/devices").await.1);
    c.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_key_head_requests_and_the_instances_own_routes() {
    let c = cluster().await;
    let single = &c.single.router;
    // The admin key names the tenant: its device reads are routed with it, its lists merged.
    for path in [
        "/v1/devices/truck-03?tenant=acme",
        "/v1/devices/truck-08?tenant=acme",
        "/v1/devices?limit=4",
        "/v1/devices?tenant=acme",
    ] {
        let (s, v, _) = call(&c.front, "GET", path, ADMIN, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        assert_eq!(v, call(single, "GET", path, ADMIN, None).await.1, "{path}");
    }
    let (s, v, _) = call(&c.front, "GET", "/v1/devices/truck-03", ADMIN, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // HEAD: the status and headers of GET, no body.
    let req = Request::head("/v1/devices")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    let res = c.front.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
    // Outside /v1: the instance's own router.
    let local = Router::new().route("/healthz", axum::routing::get(|| async { "local ok" }));
    let with_local = front::router(
        c.client.clone(),
        2,
        Arc::new(AllApply(vec![])),
        FrontSettings {
            local: Some(local),
            ..FrontSettings::default()
        },
    );
    assert_eq!(raw(&with_local, "/healthz").await, "local ok");
    c.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geofence_visits_of_every_partition_are_one_report() {
    let c = cluster().await;
    let single = &c.single.router;
    let path = "/v1/reports/geofence-visits?from=2026-11-18T00:00:00Z&to=2026-11-20T00:00:00Z";
    // `dwell_s` of a visit still open counts to each API's own now.
    let visits = |v: Value| -> Vec<Value> {
        let mut list = v["visits"].as_array().cloned().unwrap_or_default();
        for x in &mut list {
            x.as_object_mut().unwrap().remove("dwell_s");
        }
        list
    };
    let (s, merged) = get(&c.front, path).await;
    assert_eq!(s, StatusCode::OK, "{merged}");
    let merged = visits(merged);
    assert!(merged.len() >= 10, "{merged:?}");
    assert_eq!(merged, visits(get(single, path).await.1));
    // CSV: one header, every row, by entry time.
    let csv = |b: axum::body::Bytes| -> Vec<String> {
        String::from_utf8(b.to_vec())
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').map_or(l, |(rest, _)| rest).to_owned())
            .collect()
    };
    let csv_path = format!("{path}&format=csv");
    let merged = csv(raw(&c.front, &csv_path).await);
    assert_eq!(merged[0], "device,geofence,entered_at,exited_at");
    assert_eq!(merged.len(), 1 + visits(get(single, path).await.1).len());
    assert_eq!(merged, csv(raw(single, &csv_path).await));
    c.stop.cancel();
}
