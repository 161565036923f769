//! Cluster mode end to end: three `landport run` instances on a three-node NATS cluster
//! (JetStream, the MQTT gateway, the partition mapping), devices publishing through NATS's MQTT
//! gateway with rumqttc and mosquitto_pub. Any instance answers for any device; kill -9 of an
//! instance mid-stream: its partitions are taken over, every acknowledged reading is stored
//! once and no event id appears twice; kill of a NATS node: the service goes on.

#[path = "../cluster/tests/support/nats.rs"]
mod nats;
mod support;
#[path = "../sinks/tests/support_influx/mod.rs"]
mod support_influx;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use nats::NatsCluster;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use support::webhook_receiver::Receiver;
use support::{Landport, http, wait_for};

const ADMIN: &str = "cluster-e2e-admin-key-0123456789abcdef";
const PARTITIONS: u32 = 6;
const DEVICES: usize = 12;
/// Device time of the first reading: an hour ago, so every reading is in the past.
fn t0() -> i64 {
    landport_pipeline::now_ms() - 3_600_000
}

fn start_instance(dir: &Path, i: usize, nats: &NatsCluster, influx: Option<&str>) -> Landport {
    let influx = influx
        .map(|url| {
            format!(
                "[influxdb]\nurl = \"{url}\"\napi = \"v1\"\ndatabase = \"landport\"\n\
                 flush_interval_ms = 200\n"
            )
        })
        .unwrap_or_default();
    let sections = format!("[webhooks]\nallow_private_targets = true\n{influx}");
    let urls = nats.client_urls();
    Landport::start_cluster_instance(
        dir,
        i,
        &urls,
        PARTITIONS,
        ADMIN,
        &sections,
        "snapshot_seconds = 1\n",
    )
}

fn device(i: usize) -> String {
    format!("truck-{i:02}")
}

/// A reading alternately inside and outside the warehouse, so geofence events happen.
fn reading(ts: i64, n: usize) -> Vec<u8> {
    let lon = if n.is_multiple_of(2) { 123.0 } else { 123.05 };
    format!(r#"{{"ts":{ts},"lat":41.0,"lon":{lon},"speed_kmh":50}}"#).into_bytes()
}

fn warehouse() -> Value {
    json!({"type": "Feature", "id": "wh",
           "geometry": {"type": "Polygon", "coordinates": [[[122.99, 40.99], [123.01, 40.99],
                        [123.01, 41.01], [122.99, 41.01], [122.99, 40.99]]]},
           "properties": {"name": "Warehouse", "kind": "warehouse", "confirm_seconds": 0}})
}

/// Publishes `msgs` with QoS 1 through NATS's MQTT gateway on `port`, one connection; returns
/// how many were acknowledged (PUBACKs of one connection come in publish order, so they are
/// the first ones), and the connection's error if it broke.
async fn try_publish(
    port: u16,
    client_id: &str,
    msgs: &[(String, Vec<u8>)],
) -> (usize, Option<String>) {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(50);
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let to_send: Vec<(String, Vec<u8>)> = msgs.to_vec();
    let sender = tokio::spawn(async move {
        for (topic, payload) in to_send {
            if client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                break;
            }
        }
        client
    });
    let mut acked = 0;
    let mut error = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked < msgs.len() && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                error = Some(format!("{e}"));
                break;
            }
            Err(_) => break,
        }
    }
    drop(eventloop);
    let client = sender.await.unwrap();
    let _ = client.try_disconnect();
    (acked, error)
}

/// [`try_publish`], where a broken connection fails the test; returns the acknowledged count.
async fn publish(port: u16, client_id: &str, msgs: &[(String, Vec<u8>)]) -> usize {
    let (acked, error) = try_publish(port, client_id, msgs).await;
    if let Some(e) = error {
        panic!(
            "MQTT through NATS ({client_id}, {acked} of {} acked): {e}",
            msgs.len()
        );
    }
    acked
}

/// The device's stored readings as the cluster answers through `addr`.
fn track_len(addr: SocketAddr, key: &str, dev: &str) -> Option<usize> {
    let path = format!(
        "/v1/devices/{dev}/track?from={}&to={}",
        t0() - 86_400_000,
        landport_pipeline::now_ms() + 86_400_000
    );
    let (s, body) = http(addr, "GET", &path, Some(key), None);
    (s == 200).then(|| body["properties"]["times"].as_array().map_or(0, Vec::len))
}

/// Every event of the tenant, following `next` through the pages.
fn all_events(addr: SocketAddr, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/v1/events?limit=1000".to_owned();
    loop {
        let (s, body) = http(addr, "GET", &path, Some(key), None);
        assert_eq!(s, 200, "{body}");
        let page = body["events"].as_array().cloned().unwrap_or_default();
        let empty = page.is_empty();
        out.extend(page);
        match body["next"].as_str() {
            Some(next) if !empty => path = format!("/v1/events?limit=1000&since={next}"),
            _ => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_three_nats_nodes_answer_for_every_device_and_lose_nothing_when_one_dies()
 {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut nats = NatsCluster::start(&dir.join("nats"), 3, PARTITIONS);
    // Each partition's InfluxDB sink writes its readings (where InfluxDB is installed).
    let influx = support_influx::Server::influxdb();
    let influx_url = influx.as_ref().map(|i| i.url());
    let mut lps: Vec<Landport> = (0..3)
        .map(|i| start_instance(dir, i, &nats, influx_url.as_deref()))
        .collect();
    let addrs: Vec<SocketAddr> = lps.iter().map(|l| l.http).collect();

    // The registry, written through different instances: every shard gets it.
    let (s, body) = wait_for("the first registry write", Duration::from_secs(60), || {
        let r = http(
            addrs[0],
            "POST",
            "/v1/tenants",
            Some(ADMIN),
            Some(&json!({"id": "acme", "name": "Acme"})),
        );
        (r.0 == 201 || r.0 == 409).then_some(r)
    });
    assert!(s == 201 || s == 409, "{body}");
    let (s, key) = http(addrs[1], "POST", "/v1/tenants/acme/keys", Some(ADMIN), None);
    assert_eq!(s, 201, "{key}");
    let key = key["key"].as_str().unwrap().to_owned();
    let k = Some(key.as_str());
    for i in 0..DEVICES {
        let (s, body) = http(
            addrs[i % 3],
            "POST",
            "/v1/devices",
            k,
            Some(&json!({"id": device(i), "name": format!("Truck {i}"), "kind": "truck"})),
        );
        assert_eq!(s, 201, "{body}");
    }
    let (s, body) = http(addrs[2], "POST", "/v1/geofences", k, Some(&warehouse()));
    assert_eq!(s, 201, "{body}");
    // A webhook for every geofence event: each partition's owner delivers its own.
    let receiver = Receiver::start();
    let (s, body) = http(
        addrs[0],
        "POST",
        "/v1/webhooks",
        k,
        Some(&json!({"url": receiver.url("/hook"), "events": ["geofence.*"]})),
    );
    assert_eq!(s, 201, "{body}");
    // Every partition owned and answering: a list from each instance is whole.
    for &a in &addrs {
        wait_for("every partition answering", Duration::from_secs(60), || {
            let (s, body) = http(a, "GET", "/v1/devices?limit=1000", k, None);
            (s == 200 && body["devices"].as_array().map(Vec::len) == Some(DEVICES)).then_some(())
        });
    }

    // Phase 1: readings through each NATS node's MQTT gateway, rumqttc and mosquitto_pub.
    let t0 = t0();
    let mut msgs = Vec::new();
    for i in 0..DEVICES - 2 {
        for n in 0..4 {
            let topic = format!("landport/acme/{}/telemetry", device(i));
            msgs.push((topic, reading(t0 + n as i64 * 10_000, n)));
        }
    }
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for node in 0..3 {
        let part: Vec<(String, Vec<u8>)> = msgs.iter().skip(node).step_by(3).cloned().collect();
        let acked = publish(nats.mqtt_port(node), &format!("pub-{node}"), &part).await;
        assert_eq!(acked, part.len(), "every publish acknowledged by NATS");
        for (topic, _) in &part {
            *expected
                .entry(topic.split('/').nth(2).unwrap().to_owned())
                .or_default() += 1;
        }
    }
    for i in DEVICES - 2..DEVICES {
        for n in 0..4 {
            let status = std::process::Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &nats.mqtt_port(i % 3).to_string()])
                .args(["-q", "1", "-i", &format!("mosq-{i}-{n}")])
                .args(["-t", &format!("landport/acme/{}/telemetry", device(i))])
                .arg("-m")
                .arg(String::from_utf8(reading(t0 + n as i64 * 10_000, n)).unwrap())
                .status()
                .expect("mosquitto_pub");
            assert!(status.success());
            *expected.entry(device(i)).or_default() += 1;
        }
    }
    // Any instance answers for any device, with all of its readings.
    for &a in &addrs {
        for (dev, n) in &expected {
            let got = wait_for("a device's readings", Duration::from_secs(30), || {
                track_len(a, &key, dev).filter(|got| got == n)
            });
            assert_eq!(got, *n, "{dev} through {a}");
            let (s, body) = http(a, "GET", &format!("/v1/devices/{dev}"), k, None);
            assert_eq!(s, 200, "{body}");
        }
    }
    let (s, body) = http(
        addrs[1],
        "GET",
        "/v1/positions?bbox=122,40,124,42&limit=1000",
        k,
        None,
    );
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["features"].as_array().map(Vec::len), Some(DEVICES));
    // The readings spread over more than one partition, and over more than one instance.
    let partitions: HashSet<u32> = (0..DEVICES)
        .map(|i| landport_cluster::partition::partition("acme", &device(i), PARTITIONS))
        .collect();
    assert!(partitions.len() > 2, "{partitions:?}");

    // Phase 2: a stream through one connection while instance 1 is killed mid-way. The
    // owners have saved their partitions' snapshots by now: the takeover starts from them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut stream = Vec::new();
    for n in 4..40 {
        for i in 0..DEVICES {
            let topic = format!("landport/acme/{}/telemetry", device(i));
            stream.push((topic, reading(t0 + n as i64 * 10_000, n)));
        }
    }
    // Killed while the stream is being published and committed: the worst moment.
    let port = nats.mqtt_port(0);
    let publishing = {
        let stream = stream.clone();
        tokio::spawn(async move { publish(port, "stream", &stream).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    lps[1].kill9();
    let acked = publishing.await.unwrap();
    assert_eq!(acked, stream.len(), "NATS acknowledged the whole stream");
    for (topic, _) in &stream {
        *expected
            .entry(topic.split('/').nth(2).unwrap().to_owned())
            .or_default() += 1;
    }
    for &a in [addrs[0], addrs[2]].iter() {
        for (dev, n) in &expected {
            let got = wait_for(
                "the readings after a takeover",
                Duration::from_secs(90),
                || track_len(a, &key, dev).filter(|got| got >= n),
            );
            assert_eq!(got, *n, "{dev}: every acknowledged reading stored once");
        }
    }
    let restored: usize = [0, 2]
        .iter()
        .map(|i| {
            std::fs::read_to_string(&lps[*i].log)
                .unwrap()
                .matches("partition snapshot restored")
                .count()
        })
        .sum();
    assert!(
        restored > 0,
        "the takeover started from the dead owner's snapshots"
    );
    // InfluxDB has each acknowledged reading once: the new owners' sinks sent the rebuilt
    // partitions' rows again, and a point written twice is one point.
    if let Some(url) = &influx_url {
        let want: u64 = expected.values().map(|n| *n as u64).sum();
        support_influx::wait_for("every reading in InfluxDB", Duration::from_secs(60), || {
            let url = url.clone();
            async move {
                let c = support_influx::count(&url, "landport", "telemetry", "lat").await;
                if c == want {
                    Ok(())
                } else {
                    Err(format!("{c} of {want}"))
                }
            }
        })
        .await;
    }
    let events = all_events(addrs[0], &key);
    assert!(
        events.len() > DEVICES,
        "geofence events happened: {}",
        events.len()
    );
    let mut ids = HashSet::new();
    for e in &events {
        let id = e["id"].as_str().unwrap();
        assert!(ids.insert(id.to_owned()), "event {id} appears twice");
    }
    // Every geofence event reached the webhook, the dead owner's partitions' too (at least
    // once: a delivery made again after the takeover has the same webhook-id).
    let geofence_ids: std::collections::BTreeSet<String> = events
        .iter()
        .filter(|e| {
            e["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("geofence."))
        })
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!geofence_ids.is_empty());
    wait_for(
        "every geofence event delivered",
        Duration::from_secs(60),
        || {
            receiver
                .delivered_ids()
                .is_superset(&geofence_ids)
                .then_some(())
        },
    );

    // Phase 3: one NATS node dies; the service goes on. NATS's MQTT gateway acknowledges a
    // QoS 1 publish once NATS has it, not once the stream stored it, so a publish in the
    // seconds while the stream elects a new leader can be lost there (docs/scaling.md): the
    // device keeps reporting, and every device's new readings arrive and are answered.
    nats.kill(2);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    for round in 0.. {
        let n = 50 + round;
        let more: Vec<(String, Vec<u8>)> = (0..DEVICES)
            .map(|i| {
                let topic = format!("landport/acme/{}/telemetry", device(i));
                (topic, reading(t0 + n as i64 * 10_000, n))
            })
            .collect();
        // A connection to a surviving node may be dropped while the cluster notices: the
        // device reconnects and sends what was not acknowledged, as a device does.
        let mut sent = 0;
        while sent < more.len() && std::time::Instant::now() < deadline {
            let (acked, error) = try_publish(
                nats.mqtt_port(1),
                &format!("after-node-loss-{round}"),
                &more[sent..],
            )
            .await;
            sent += acked;
            if error.is_some() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let behind: Vec<&String> = expected
            .iter()
            .filter(|(dev, n)| track_len(addrs[0], &key, dev).is_none_or(|got| got <= **n))
            .map(|(dev, _)| dev)
            .collect();
        if behind.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            for i in [0, 2] {
                let log = std::fs::read_to_string(&lps[i].log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("=== lp{i}, last lines first\n{}", tail.join("\n"));
            }
            panic!("no new reading of {behind:?} stored 120 s after a NATS node died");
        }
    }
    // Any surviving instance answers for every device.
    for &a in [addrs[0], addrs[2]].iter() {
        let (s, body) = http(a, "GET", "/v1/devices?limit=1000", k, None);
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["devices"].as_array().map(Vec::len), Some(DEVICES));
    }
}
