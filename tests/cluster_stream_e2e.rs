//! Cluster mode's live stream and map end to end: one NATS node (JetStream, the MQTT gateway,
//! the partition mapping), two `landport run` instances sharing its partitions. A client of
//! `GET /v1/stream` on instance A gets the events of every partition (those B owns too), with
//! their ids, of its own tenant only; the positions frames show a device moving; the limits
//! and errors are the single node's; both instances serve the live map and its scripts.

#[path = "../cluster/tests/support/nats.rs"]
mod nats;
mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use nats::NatsCluster;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use support::{Landport, http, http_get, metric, sse, wait_for};

const ADMIN: &str = "cluster-stream-admin-key-0123456789abcdef";
const PARTITIONS: u32 = 4;
const SSE_CONNECTIONS: u32 = 3;

fn start_instance(dir: &Path, i: usize, nats: &NatsCluster) -> Landport {
    let limits = format!("[limits]\nsse_connections = {SSE_CONNECTIONS}\n");
    Landport::start_cluster_instance(dir, i, &nats.client_urls(), PARTITIONS, ADMIN, &limits, "")
}

/// A warehouse around (123.0, 41.0) that confirms at once: readings alternately inside and
/// outside it make events.
fn warehouse() -> Value {
    json!({"type": "Feature", "id": "wh",
           "geometry": {"type": "Polygon", "coordinates": [[[122.99, 40.99], [123.01, 40.99],
                        [123.01, 41.01], [122.99, 41.01], [122.99, 40.99]]]},
           "properties": {"name": "Warehouse", "kind": "warehouse", "confirm_seconds": 0}})
}

fn reading(ts: i64, lon: f64) -> Vec<u8> {
    format!(r#"{{"ts":{ts},"lat":41.0,"lon":{lon},"speed_kmh":50}}"#).into_bytes()
}

/// Publishes `msgs` with QoS 1 through NATS's MQTT gateway; panics unless all are acknowledged.
async fn publish(port: u16, client_id: &str, msgs: &[(String, Vec<u8>)]) {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let to_send = msgs.to_vec();
    let sender = tokio::spawn(async move {
        for (topic, payload) in to_send {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    while acked < msgs.len() {
        match tokio::time::timeout(Duration::from_secs(20), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            other => panic!(
                "MQTT through NATS: {acked} of {} acked: {other:?}",
                msgs.len()
            ),
        }
    }
    let client = sender.await.unwrap();
    let _ = client.try_disconnect();
}

/// One item of an SSE stream: (event name, `id:`, data).
type Item = (String, Option<String>, String);

/// Opens `GET path` as SSE with `key`; after its `: ready` comment, every item arrives on the
/// returned channel (read by a task with reqwest, so the `id:` lines are kept too).
async fn sse_items(
    addr: SocketAddr,
    path: &str,
    key: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<Item> {
    let mut res = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "GET {path}");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut buf = String::new();
    let mut ready = false;
    while !ready {
        let (comments, item) = next_sse_item(&mut buf, &mut res)
            .await
            .expect("the stream ended before `: ready`");
        assert!(item.is_none(), "GET {path}: an item before `: ready`");
        ready = comments.iter().any(|c| c == "ready");
    }
    tokio::spawn(async move {
        while let Some((_, item)) = next_sse_item(&mut buf, &mut res).await {
            if let Some(item) = item
                && tx.send(item).is_err()
            {
                return;
            }
        }
    });
    rx
}

/// The next item of an SSE body (its comments, and the item if it has data), reading more
/// into `buf` as needed; `None` at the end of the stream.
async fn next_sse_item(
    buf: &mut String,
    res: &mut reqwest::Response,
) -> Option<(Vec<String>, Option<Item>)> {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let raw: String = buf.drain(..end + 2).collect();
            let (mut event, mut id, mut data, mut comments) =
                ("message".to_owned(), None, Vec::new(), Vec::new());
            for line in raw.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                match field {
                    "" => comments.push(value),
                    "event" => event = value,
                    "id" => id = Some(value),
                    "data" => data.push(value),
                    _ => {}
                }
            }
            let item = (!data.is_empty()).then(|| (event, id, data.join("\n")));
            return Some((comments, item));
        }
        let chunk = res.chunk().await.ok()??;
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Device ids of `tenant`, one per partition.
fn one_device_per_partition(tenant: &str) -> Vec<String> {
    let mut by_partition: HashMap<u32, String> = HashMap::new();
    for i in 0.. {
        let d = format!("truck-{i}");
        by_partition
            .entry(landport_cluster::partition::partition(
                tenant, &d, PARTITIONS,
            ))
            .or_insert(d);
        if by_partition.len() == PARTITIONS as usize {
            break;
        }
    }
    let mut ds: Vec<String> = by_partition.into_values().collect();
    ds.sort();
    ds
}

fn positions_of(frame: &str) -> HashMap<String, f64> {
    let fc: Value = serde_json::from_str(frame).unwrap();
    assert_eq!(fc["type"], "FeatureCollection", "{frame}");
    fc["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_owned(),
                f["geometry"]["coordinates"][0].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_any_instance_carries_every_partitions_events_and_positions_and_both_serve_the_map()
 {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let nats = NatsCluster::start(&dir.join("nats"), 1, PARTITIONS);
    let lps: Vec<Landport> = (0..2).map(|i| start_instance(dir, i, &nats)).collect();
    let (a, b) = (lps[0].http, lps[1].http);

    // Two tenants, a key each, the warehouse for both.
    let mut keys = HashMap::new();
    for tenant in ["acme", "globex"] {
        wait_for("a tenant created", Duration::from_secs(60), || {
            let (s, _) = http(
                a,
                "POST",
                "/v1/tenants",
                Some(ADMIN),
                Some(&json!({"id": tenant, "name": tenant})),
            );
            (s == 201 || s == 409).then_some(())
        });
        let (s, key) = http(
            b,
            "POST",
            &format!("/v1/tenants/{tenant}/keys"),
            Some(ADMIN),
            None,
        );
        assert_eq!(s, 201, "{key}");
        let key = key["key"].as_str().unwrap().to_owned();
        let (s, body) = http(a, "POST", "/v1/geofences", Some(&key), Some(&warehouse()));
        assert_eq!(s, 201, "{body}");
        keys.insert(tenant, key);
    }
    let (acme, globex) = (keys["acme"].clone(), keys["globex"].clone());
    // The partitions shared: two each (so two of every tenant's four devices are B's).
    wait_for(
        "the partitions shared by both instances",
        Duration::from_secs(60),
        || {
            let ms: Vec<f64> = lps
                .iter()
                .map(|l| metric(&l.metrics(), "landport_cluster_partitions_live"))
                .collect();
            (ms == [2.0, 2.0]).then_some(())
        },
    );
    for lp in &lps {
        wait_for("every partition answering", Duration::from_secs(60), || {
            let (s, _) = http(lp.http, "GET", "/v1/devices", Some(&acme), None);
            (s == 200).then_some(())
        });
    }

    // Errors as a single node's: no key, a bad key, a bad topic.
    let (s, body) = http(a, "GET", "/v1/stream", None, None);
    assert_eq!(s, 401, "{body}");
    let (s, body) = http(a, "GET", "/v1/stream", Some("not-a-key"), None);
    assert_eq!(s, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let (s, body) = http(a, "GET", "/v1/stream?topics=weather", Some(&acme), None);
    assert_eq!(s, 400, "{body}");
    let (s, body) = http(a, "GET", "/v1/stream?shipment=nope", Some(&acme), None);
    assert_eq!(s, 404, "{body}");

    // Streams on A: acme's events (ids kept) and positions; globex's events on B.
    let mut acme_events = sse_items(a, "/v1/stream?topics=events", &acme).await;
    let acme_positions = sse(a, "/v1/stream?topics=positions", &acme, "positions");
    let globex_events = sse(b, "/v1/stream?topics=events", &globex, "event");
    // The cap per tenant on this instance: three open, a fourth is a 429; another tenant's
    // streams are not counted.
    let (s, third) = open_raw(a, "/v1/stream?topics=events", &acme);
    assert_eq!(s, 200);
    let (s, body) = http(a, "GET", "/v1/stream", Some(&acme), None);
    assert_eq!(s, 429, "{body}");
    assert_eq!(body["error"]["limit"], "limits.sse_connections", "{body}");

    // Readings of a device in every partition, in and out of the warehouse, both tenants.
    let t0 = landport_pipeline::now_ms() - 600_000;
    let acme_devices = one_device_per_partition("acme");
    for (tenant, key) in [("acme", &acme), ("globex", &globex)] {
        for d in one_device_per_partition(tenant) {
            let dev = json!({"id": d, "name": d, "kind": "truck"});
            let (s, body) = http(b, "POST", "/v1/devices", Some(key), Some(&dev));
            assert_eq!(s, 201, "{body}");
        }
    }
    let mut msgs = Vec::new();
    for (tenant, devices) in [
        ("acme", &acme_devices),
        ("globex", &one_device_per_partition("globex")),
    ] {
        for d in devices {
            for (n, lon) in [123.0, 123.05, 123.0].into_iter().enumerate() {
                msgs.push((
                    format!("landport/{tenant}/{d}/telemetry"),
                    reading(t0 + n as i64 * 10_000, lon),
                ));
            }
        }
    }
    publish(nats.mqtt_port(0), "pub-1", &msgs).await;

    // A gets acme's events of every partition (B's two included), each with its id.
    let mut devices_seen = HashSet::new();
    let mut ids = HashSet::new();
    let mut last_event: Option<String> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while devices_seen.len() < acme_devices.len() {
        let (event, id, data) = tokio::time::timeout_at(deadline, acme_events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("events of every partition on A; got those of {devices_seen:?}")
            })
            .unwrap();
        assert_eq!(event, "event", "{data}");
        let e: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(e["tenant"], "acme", "only the key's tenant: {e}");
        assert_eq!(
            id.as_deref(),
            e["id"].as_str(),
            "the item's id is the event's"
        );
        last_event = Some(data.clone());
        assert!(
            ids.insert(e["id"].as_str().unwrap().to_owned()),
            "an id twice: {e}"
        );
        devices_seen.insert(e["device"].as_str().unwrap().to_owned());
    }
    // globex's events went to globex's stream (on B), none to acme's.
    let g = globex_events.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&g).unwrap()["tenant"],
        "globex"
    );
    // Everything acme's stream got is acme's, ids unique, and as many as the stored events.
    while let Ok(Some((_, _, data))) =
        tokio::time::timeout(Duration::from_secs(2), acme_events.recv()).await
    {
        let e: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(e["tenant"], "acme", "{e}");
        assert!(
            ids.insert(e["id"].as_str().unwrap().to_owned()),
            "an id twice: {e}"
        );
    }
    let what = format!("acme's stored events to be the {} streamed", ids.len());
    wait_for(&what, Duration::from_secs(30), || {
        let (s, body) = http(b, "GET", "/v1/events?limit=1000", Some(&acme), None);
        let stored: HashSet<String> = body["events"]
            .as_array()?
            .iter()
            .filter_map(|e| Some(e["id"].as_str()?.to_owned()))
            .collect();
        (s == 200 && stored == ids).then_some(())
    });

    // Published again (as after a takeover): dropped. Published on acme's subject with
    // globex's envelope: not acme's. A new id after them comes, and first.
    let nc = async_nats::connect(nats.client_url(0)).await.unwrap();
    let seen = last_event.unwrap();
    let seen_env: Value = serde_json::from_str(&seen).unwrap();
    let subject = format!(
        "landport.acme.{}.events",
        seen_env["device"].as_str().unwrap()
    );
    let mut foreign = seen_env.clone();
    foreign["tenant"] = json!("globex");
    foreign["id"] = json!("evt_00000000000000000000000000000001");
    let mut fresh = seen_env.clone();
    fresh["id"] = json!("evt_00000000000000000000000000000002");
    for payload in [seen.clone(), seen, foreign.to_string(), fresh.to_string()] {
        nc.publish(subject.clone(), payload.into()).await.unwrap();
    }
    nc.flush().await.unwrap();
    let (_, id, _) = tokio::time::timeout(Duration::from_secs(20), acme_events.recv())
        .await
        .expect("the new id")
        .unwrap();
    assert_eq!(
        id.as_deref(),
        fresh["id"].as_str(),
        "repeats and foreign events dropped"
    );

    // Positions: the frames (the first with every device that had a position, then what
    // changed), applied as the map applies them, put every device at 123.0; then a frame
    // with the one device that moved, alone.
    let moving = &acme_devices[0];
    let mut map: HashMap<String, f64> = HashMap::new();
    wait_for(
        "the frames put every device at 123.0",
        Duration::from_secs(30),
        || {
            let p = positions_of(&acme_positions.recv_timeout(Duration::from_secs(20)).ok()?);
            map.extend(p);
            (acme_devices.iter().all(|d| map.get(d) == Some(&123.0))).then_some(())
        },
    );
    assert_eq!(
        map.len(),
        acme_devices.len(),
        "only acme's devices: {map:?}"
    );
    publish(
        nats.mqtt_port(0),
        "pub-2",
        &[(
            format!("landport/acme/{moving}/telemetry"),
            reading(t0 + 60_000, 123.2),
        )],
    )
    .await;
    let moved = wait_for(
        "a positions frame with the device moved",
        Duration::from_secs(30),
        || {
            let p = positions_of(&acme_positions.recv_timeout(Duration::from_secs(20)).ok()?);
            (p.get(moving) == Some(&123.2)).then_some(p)
        },
    );
    assert_eq!(moved.len(), 1, "only what changed: {moved:?}");

    // A shipment's stream (on B): its device's positions only.
    let shp = json!({"id": "SHP-1", "device": moving, "destination": {"lat": 38.9, "lon": 121.6}});
    let (s, body) = http(a, "POST", "/v1/shipments", Some(&acme), Some(&shp));
    assert_eq!(s, 201, "{body}");
    let shp_positions = sse(
        b,
        "/v1/stream?topics=positions&shipment=SHP-1",
        &acme,
        "positions",
    );
    let p = positions_of(&shp_positions.recv_timeout(Duration::from_secs(20)).unwrap());
    assert_eq!(p.keys().collect::<Vec<_>>(), vec![moving], "{p:?}");
    // globex's key does not see acme's shipment.
    let (s, body) = http(b, "GET", "/v1/stream?shipment=SHP-1", Some(&globex), None);
    assert_eq!(s, 404, "{body}");

    // Its share link's page on both instances; an unknown token's is the "not found" page.
    let (s, share) = http(b, "POST", "/v1/shipments/SHP-1/share", Some(&acme), None);
    assert!(s == 200 || s == 201, "{share}");
    let token = share["token"].as_str().unwrap();
    for addr in [a, b] {
        let (s, page) = http_get(addr, &format!("/track/{token}")).unwrap();
        assert_eq!(s, 200, "{page}");
        assert!(page.contains("/assets/track.js"), "{page}");
        let (s, _) = http_get(addr, "/track/not-a-token").unwrap();
        assert_eq!(s, 404);
    }

    // Both instances serve the live map and its scripts.
    for addr in [a, b] {
        let (s, page) = http_get(addr, "/").unwrap();
        assert_eq!(s, 200);
        assert!(page.contains("/assets/map.js"), "{page}");
        let (s, js) = http_get(addr, "/assets/map.js").unwrap();
        assert_eq!(s, 200);
        assert!(js.contains("/v1/stream"), "the map reads the live stream");
    }

    // A client that goes gives its place back.
    assert_eq!(open_raw(a, "/v1/stream?topics=events", &acme).0, 429);
    drop(third);
    wait_for(
        "the closed stream's place given back",
        Duration::from_secs(60),
        || {
            let (s, conn) = open_raw(a, "/v1/stream?topics=events", &acme);
            (s == 200).then_some(conn)
        },
    );
}

/// `GET path` with `key` on a connection of its own: the status, and the connection (a live
/// stream stays open until it is dropped).
fn open_raw(addr: SocketAddr, path: &str, key: &str) -> (u16, std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    let status = String::from_utf8_lossy(&head[9..12]).parse().unwrap();
    (status, s)
}
