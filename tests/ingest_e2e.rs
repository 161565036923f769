//! End to end: the real `landport run` binary against real brokers (its own MQTT endpoint and
//! a Mosquitto of our own), publishing with real clients, reading back from the store, the
//! dead-letter and event topics, and `/metrics`.

mod support;
#[path = "../sinks/tests/support_influx/mod.rs"]
mod support_influx;
#[path = "../ingest/tests/support_mqtt/mod.rs"]
mod support_mqtt;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use landport_store::{EventFilter, Store};
use landport_tracker::{Event, Reading, Tracker, TrackerSettings};
use rumqttc::QoS;
use support::{Landport, free_port, metric, seed_fence, wait_for, warehouse};
use support_mqtt::{Mosquitto, mosquitto_pub, publish, subscriber};

/// The service on Landport's own MQTT endpoint, where clients without credentials act as
/// tenant `acme` (and OwnTracks users belong to acme too): this file's tests are about
/// ingest, not about credentials (tests/mqtt_acl_e2e.rs).
fn acme_config(dir: &std::path::Path, http: SocketAddr, mqtt: u16, extra: &str) -> String {
    Landport::config(dir, http, mqtt, true, extra)
        .replace("[mqtt]\n", "[mqtt]\nanonymous_tenant = \"acme\"\n")
        .replace(
            "auto_register = true\n",
            "auto_register = true\nowntracks_default_tenant = \"acme\"\n",
        )
}

fn http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

fn native(ts_ms: i64, lon: f64, lat: f64) -> Vec<u8> {
    format!(r#"{{"ts":{ts_ms},"lat":{lat},"lon":{lon},"speed_kmh":40}}"#).into_bytes()
}

const T0: i64 = 1_795_400_000_000;

fn telemetry_count(dir: &std::path::Path) -> usize {
    let Ok(store) = Store::open_reader(&dir.join("data")) else {
        return 0;
    };
    store
        .readings_after(0, 1_000_000)
        .map(|r| r.len())
        .unwrap_or(0)
}

fn stored_events(dir: &std::path::Path) -> Vec<Event> {
    let store = Store::open_reader(&dir.join("data")).unwrap();
    store
        .events_after(&EventFilter::default(), 1_000_000)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_ingests_every_format_and_dead_letters_what_it_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    seed_fence(dir, "acme");
    let (http, mqtt) = (http_addr(), free_port());
    let lp = Landport::start(dir, &acme_config(dir, http, mqtt, ""), http, mqtt);

    let mut dead = subscriber(mqtt, "landport/acme/+/rejected").await;
    let mut events = subscriber(mqtt, "landport/acme/+/events").await;

    // Native, with a real client: outside, then inside the warehouse.
    let topic = "landport/acme/truck-1/telemetry";
    publish(
        mqtt,
        topic,
        vec![native(T0, 123.2, 41.0), native(T0 + 10_000, 123.0, 41.0)],
        QoS::AtLeastOnce,
    )
    .await;
    // A store-and-forward batch out of order, with mosquitto_pub; and its exact duplicate.
    let batch = format!(
        r#"[{{"ts":{},"lat":41.0,"lon":123.3}},{{"ts":{},"lat":41.0,"lon":123.25}}]"#,
        T0 + 30_000,
        T0 + 20_000
    );
    if support_mqtt::require("mosquitto_pub") {
        mosquitto_pub(mqtt, topic, &batch);
        mosquitto_pub(mqtt, topic, &batch);
    }
    // SenML from a cold-room sensor and an OwnTracks phone.
    let senml = format!(
        r#"[{{"bn":"cold-1:","bt":{},"n":"temp","u":"Cel","v":-18.5}}]"#,
        T0 / 1000
    );
    publish(
        mqtt,
        "landport/acme/cold-1/senml",
        vec![senml.into_bytes()],
        QoS::AtLeastOnce,
    )
    .await;
    let owntracks = format!(
        r#"{{"_type":"location","lat":41.2,"lon":123.1,"tst":{},"acc":12}}"#,
        T0 / 1000
    );
    publish(
        mqtt,
        "owntracks/alice/phone",
        vec![owntracks.into_bytes()],
        QoS::AtLeastOnce,
    )
    .await;
    // Refused: not JSON, out of range.
    publish(
        mqtt,
        topic,
        vec![
            b"{\"ts\": 17".to_vec(),
            br#"{"ts":1795400000000,"lat":95,"lon":1}"#.to_vec(),
        ],
        QoS::AtLeastOnce,
    )
    .await;

    let store_dir = dir.join("data");
    wait_for(
        "every accepted reading stored",
        Duration::from_secs(20),
        || (telemetry_count(dir) == 6).then_some(()),
    );
    let store = Store::open_reader(&store_dir).unwrap();
    let track = store.track("acme", "truck-1", 0, i64::MAX, 100).unwrap();
    let ts: Vec<i64> = track.iter().map(|r| r.ts_ms - T0).collect();
    assert_eq!(
        ts,
        [0, 10_000, 20_000, 30_000],
        "the duplicate batch is stored once"
    );
    let cold = store.track("acme", "cold-1", 0, i64::MAX, 10).unwrap();
    assert_eq!(cold[0].temp_c, Some(-18.5));
    let phone = store.track("acme", "alice-phone", 0, i64::MAX, 10).unwrap();
    assert_eq!(phone[0].fix.unwrap().accuracy_m, Some(12.0));

    // Both refusals reach the dead-letter topic with their reason.
    let mut reasons = BTreeSet::new();
    for _ in 0..2 {
        let p = tokio::time::timeout(Duration::from_secs(20), dead.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.topic, "landport/acme/truck-1/rejected");
        let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(v["topic"], topic);
        reasons.insert(v["code"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        reasons,
        BTreeSet::from(["invalid_json".to_owned(), "lat_out_of_range".to_owned()])
    );

    // The entry and the exit were published as events, the same ones that were stored.
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.topic, "landport/acme/truck-1/events");
        got.push(serde_json::from_slice::<Event>(&p.payload).unwrap());
    }
    assert_eq!(
        got.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["geofence.entered", "geofence.exited"]
    );
    assert_eq!(got, stored_events(dir));

    let m = lp.metrics();
    assert_eq!(metric(&m, "landport_readings_accepted_total"), 6.0, "{m}");
    assert!(
        m.contains("landport_rejected_total{reason=\"invalid_json\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("landport_events_total{type=\"geofence.entered\"} 1"),
        "{m}"
    );
    if support_mqtt::require("mosquitto_pub") {
        assert_eq!(metric(&m, "landport_readings_duplicate_total"), 2.0, "{m}");
    }
}

/// Readings for `devices` trucks, each shuttling in and out of the warehouse, in publish
/// order, as (device, reading).
fn stream(devices: usize, per_device: usize) -> Vec<(String, Reading)> {
    let mut out = Vec::new();
    for i in 0..per_device {
        for d in 0..devices {
            // Every 25 readings in, 25 out.
            let lon = if (i / 25) % 2 == 0 { 123.0 } else { 123.05 };
            let r = Reading::at(T0 + i as i64 * 1_000).with_position(lon, 41.0 + d as f64 * 1e-4);
            out.push((format!("truck-{d}"), r));
        }
    }
    out
}

/// The events a fresh tracker derives from the same readings in the same order: the oracle.
fn expected_event_ids(readings: &[(String, Reading)]) -> BTreeSet<String> {
    let mut tr = Tracker::new(TrackerSettings::default());
    tr.upsert_geofence("acme", warehouse()).unwrap();
    let mut out = Vec::new();
    for (dev, r) in readings {
        let slot = tr.device_slot("acme", dev);
        tr.apply(slot, r, r.ts_ms, &mut out);
    }
    out.into_iter().map(|e| e.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_qos1_stream_loses_no_reading_and_duplicates_no_event() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    seed_fence(dir, "acme");
    let http = http_addr();
    let config = Landport::config(dir, http, broker.port, false, "");
    let mut lp = Landport::start(dir, &config, http, broker.port);

    // 100,000 readings: at today's ingest rate (tens of thousands a second, even in a debug
    // build) a stream of 20,000 was all stored between the check below and the kill.
    let readings = stream(20, 5_000);
    let total = readings.len();
    let expected = expected_event_ids(&readings);
    assert!(expected.len() > 500, "the stream makes many events");
    // Publish per device in order; the broker keeps what Landport hasn't acknowledged.
    let port = broker.port;
    let mut by_device: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 20];
    for (dev, r) in &readings {
        let d: usize = dev.trim_start_matches("truck-").parse().unwrap();
        let f = r.fix.unwrap();
        by_device[d].push(native(r.ts_ms, f.lon, f.lat));
    }
    let publisher = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for (d, payloads) in by_device.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                publish(
                    port,
                    &format!("landport/acme/truck-{d}/telemetry"),
                    payloads,
                    QoS::AtLeastOnce,
                )
                .await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });

    // Kill it hard somewhere in the middle of the stream.
    wait_for(
        "the first readings stored",
        Duration::from_secs(120),
        || (metric(&lp.metrics(), "landport_readings_accepted_total") >= 2_000.0).then_some(()),
    );
    lp.kill9();
    let stored_at_kill = telemetry_count(dir);
    assert!(
        stored_at_kill < total,
        "killed mid-stream ({stored_at_kill} stored)"
    );
    lp.restart();
    publisher.await.unwrap();
    wait_for(
        "all 100,000 readings stored",
        Duration::from_secs(180),
        || (telemetry_count(dir) >= total).then_some(()),
    );
    // Let redeliveries (if any) settle, then check nothing was stored twice.
    lp.terminate();
    assert_eq!(
        telemetry_count(dir),
        total,
        "each reading stored exactly once"
    );
    let events = stored_events(dir);
    let ids: BTreeSet<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), events.len(), "no event stored twice");
    assert_eq!(
        ids, expected,
        "the same events, with the same ids, as an uninterrupted run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_is_reconnected_to_and_nothing_is_lost() {
    let Some(mut broker) = Mosquitto::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let http = http_addr();
    let config = Landport::config(dir, http, broker.port, false, "");
    let lp = Landport::start(dir, &config, http, broker.port);
    let topic = "landport/acme/truck-1/telemetry";
    publish(
        broker.port,
        topic,
        (0..10)
            .map(|i| native(T0 + i * 1000, 123.2, 41.0))
            .collect(),
        QoS::AtLeastOnce,
    )
    .await;
    wait_for("the first ten stored", Duration::from_secs(20), || {
        (telemetry_count(dir) == 10).then_some(())
    });

    broker.stop();
    wait_for(
        "/readyz to report the broker gone",
        Duration::from_secs(20),
        || support::http_get(http, "/readyz").filter(|(s, _)| *s == 503),
    );
    broker.start_again();
    wait_for("reconnected", Duration::from_secs(60), || {
        support::http_get(http, "/readyz").filter(|(s, _)| *s == 200)
    });
    publish(
        broker.port,
        topic,
        (10..20)
            .map(|i| native(T0 + i * 1000, 123.2, 41.0))
            .collect(),
        QoS::AtLeastOnce,
    )
    .await;
    wait_for("all twenty stored", Duration::from_secs(20), || {
        (telemetry_count(dir) == 20).then_some(())
    });
    assert!(metric(&lp.metrics(), "landport_mqtt_reconnects_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reading_reaches_influxdb_across_an_outage() {
    let Some(mut influx) = support_influx::Server::influxdb() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (http, mqtt) = (http_addr(), free_port());
    let extra = format!(
        "[influxdb]\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"landport\"\nflush_interval_ms = 200\n",
        influx.url()
    );
    let _lp = Landport::start(dir, &acme_config(dir, http, mqtt, &extra), http, mqtt);
    let topic = "landport/acme/truck-1/telemetry";
    let url = influx.url();
    let points = |n: u64| {
        let url = url.clone();
        async move {
            support_influx::wait_for("points in InfluxDB", Duration::from_secs(60), || {
                let url = url.clone();
                async move {
                    let c = support_influx::count(&url, "landport", "telemetry", "lat").await;
                    if c == n {
                        Ok(())
                    } else {
                        Err(format!("{c} of {n}"))
                    }
                }
            })
            .await
        }
    };
    publish(
        mqtt,
        topic,
        (0..100)
            .map(|i| native(T0 + i * 1000, 123.2, 41.0))
            .collect(),
        QoS::AtLeastOnce,
    )
    .await;
    points(100).await;

    // InfluxDB goes away; tracking and storing go on; the points arrive once it is back.
    influx.stop();
    publish(
        mqtt,
        topic,
        (100..300)
            .map(|i| native(T0 + i * 1000, 123.2, 41.0))
            .collect(),
        QoS::AtLeastOnce,
    )
    .await;
    wait_for(
        "readings stored during the outage",
        Duration::from_secs(20),
        || (telemetry_count(dir) == 300).then_some(()),
    );
    influx.start();
    points(300).await;
}

#[test]
fn a_bad_config_names_the_field_and_run_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, "[storage]\nretention_days = 0\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_landport"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("storage.retention_days"));
}

/// A SIGTERM right after a burst through Landport's own endpoint: every publish it
/// acknowledged is stored (an acknowledgement comes only after the commit). A burst beyond
/// what the pipeline takes at once is slowed, not dropped: tests/endpoint_e2e.rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_a_burst_through_the_embedded_broker_stores_every_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (http, mqtt) = (http_addr(), free_port());
    let mut lp = Landport::start(dir, &acme_config(dir, http, mqtt, ""), http, mqtt);
    const PUBLISHERS: usize = 4;
    const EACH: usize = 5_000;
    burst(mqtt, "burst", PUBLISHERS, EACH).await;
    // Every publish is acknowledged by the broker; Landport may well be behind.
    let status = lp.terminate();
    assert!(status.success(), "{status}");
    let store = Store::open_reader(&dir.join("data")).unwrap();
    assert_eq!(
        store.telemetry_rowid_max().unwrap(),
        (PUBLISHERS * EACH) as i64,
        "every acknowledged reading is stored"
    );
}

/// `publishers` concurrent QoS 1 publishers, each sending `each` readings of its own device
/// `{prefix}-{n}` as fast as the broker acknowledges them; returns when all are acknowledged.
async fn burst(mqtt: u16, prefix: &str, publishers: usize, each: usize) {
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let topic = format!("landport/acme/{prefix}-{p}/telemetry");
            tokio::spawn(async move {
                let payloads = (0..each)
                    .map(|i| native(T0 + i as i64 * 1_000, 123.0 + p as f64 * 0.01, 41.0))
                    .collect();
                publish(mqtt, &topic, payloads, QoS::AtLeastOnce).await;
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}
