//! End to end: the MQTT event outbox of the real `landport run` binary is at least once
//! across `kill -9` (SPEC §5, §10). Landport talks to a Mosquitto of our own through a proxy
//! that holds its event publishes on the way, so that they are in flight (sent, not
//! acknowledged) when the process dies; after the restart every stored event must reach a
//! subscriber.

mod support;
#[path = "../ingest/tests/support_mqtt/mod.rs"]
mod support_mqtt;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use landport_store::{EventFilter, Store};
use rumqttc::QoS;
use support::{Landport, free_port, seed_fence, wait_for};
use support_mqtt::{Mosquitto, PublishHold, publish, subscriber};

const T0: i64 = 1_795_400_000_000;
const DEVICES: usize = 60;
const READINGS: usize = 100;

fn native(ts_ms: i64, lon: f64, lat: f64) -> Vec<u8> {
    format!(r#"{{"ts":{ts_ms},"lat":{lat},"lon":{lon},"speed_kmh":40}}"#).into_bytes()
}

/// Readings of one truck shuttling in and out of the warehouse (see `support::warehouse`):
/// ten readings in, ten out.
fn shuttle(d: usize) -> Vec<Vec<u8>> {
    (0..READINGS)
        .map(|i| {
            let lon = if (i / 10) % 2 == 0 { 123.0 } else { 123.05 };
            native(T0 + i as i64 * 1_000, lon, 41.0 + d as f64 * 1e-4)
        })
        .collect()
}

fn store(dir: &std::path::Path) -> Option<Store> {
    Store::open_reader(&dir.join("data")).ok()
}

fn telemetry_count(dir: &std::path::Path) -> usize {
    store(dir)
        .and_then(|s| s.readings_after(0, 1_000_000).ok())
        .map_or(0, |r| r.len())
}

fn stored_event_ids(dir: &std::path::Path) -> BTreeSet<String> {
    store(dir)
        .unwrap()
        .events_after(&EventFilter::default(), 1_000_000)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_events_in_flight_loses_none_for_mqtt_subscribers() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    // Landport's connections go through the proxy; publishers and the subscriber don't.
    let proxy = PublishHold::start(broker.port, true).await;
    let mut events = subscriber(broker.port, "landport/+/+/events").await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    seed_fence(dir, "acme");
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = Landport::config(dir, http, proxy.port, false, "");
    let mut lp = Landport::start(dir, &config, http, proxy.port);

    let publishers: Vec<_> = (0..DEVICES)
        .map(|d| {
            let port = broker.port;
            tokio::spawn(async move {
                let topic = format!("landport/acme/truck-{d}/telemetry");
                publish(port, &topic, shuttle(d), QoS::AtLeastOnce).await;
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let total = DEVICES * READINGS;
    wait_for("every reading stored", Duration::from_secs(120), || {
        (telemetry_count(dir) >= total).then_some(())
    });
    let stored = stored_event_ids(dir);
    assert!(
        stored.len() >= DEVICES * 8,
        "the stream makes many events ({})",
        stored.len()
    );
    // The outbox has filled the MQTT client's in-flight window (100): its publishes are on the
    // wire, none acknowledged.
    let in_flight = stored.len().min(100) as u64;
    wait_for(
        "the outbox's publishes in flight",
        Duration::from_secs(60),
        || (proxy.held_publishes() >= in_flight).then_some(()),
    );
    let saved_at_kill = store(dir).unwrap().cursor("mqtt_events").unwrap();
    lp.kill9();
    assert!(
        events.try_recv().is_err(),
        "no event reached the broker before the kill"
    );

    // The broker is reachable again; what the dead process had in flight is gone.
    proxy.hold(false);
    lp.restart();
    let mut got = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !stored.is_subset(&got) {
        let missing = stored.difference(&got).count();
        let p = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{missing} of {} stored events never reached the subscriber \
                     (outbox cursor at the kill: {saved_at_kill})",
                    stored.len()
                )
            })
            .expect("the subscriber's connection");
        let e: landport_tracker::Event = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(
            p.topic,
            format!("landport/{}/{}/events", e.tenant, e.device)
        );
        got.insert(e.id);
    }
    lp.terminate();
}
