//! Tenants apart over MQTT: the README's Mosquitto ACL, with Landport on its own account.
//! A tenant reads its own events and nobody else's, and cannot publish into another tenant's
//! topics.

mod support;
#[path = "../ingest/tests/support_mqtt/mod.rs"]
mod support_mqtt;

use std::net::SocketAddr;
use std::time::Duration;

use geo_types::{LineString, MultiPolygon, Polygon};
use landport_ingest::store::{GeofenceRecord, Store};
use landport_tracker::{GeofenceDef, Shape};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::{Landport, free_port, metric, wait_for};
use support_mqtt::Mosquitto;
use tokio::sync::mpsc;

const README: &str = include_str!("../README.md");
const T0: i64 = 1_795_400_000_000;

/// The ```text block after the README's "Tenants on a shared broker" heading.
fn readme_acl() -> String {
    let rest = README
        .split_once("### Tenants on a shared broker\n")
        .expect("the README section")
        .1;
    let body = rest.split_once("```text\n").expect("the ACL block").1;
    body.split_once("\n```")
        .expect("the block ends")
        .0
        .to_owned()
        + "\n"
}

/// A client logged in as `user`: what it receives on `filter`, and its handle to publish.
async fn client(
    port: u16,
    user: &str,
    filter: &str,
) -> (AsyncClient, mpsc::UnboundedReceiver<rumqttc::Publish>) {
    let mut o = MqttOptions::new(format!("{user}-{}", free_port()), "127.0.0.1", port);
    o.set_credentials(user, format!("{user}-secret"));
    let (c, mut el) = AsyncClient::new(o, 64);
    c.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        while let Ok(ev) = el.poll().await {
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(r) = ready_tx.take() {
                        let _ = r.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let test_gone = tx.send(p).is_err();
                    if test_gone {
                        break;
                    }
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .expect("no SUBACK")
        .expect("client stopped");
    (c, rx)
}

fn fence(dir: &std::path::Path, tenant: &str) {
    let ring = LineString::from(vec![
        (122.99, 40.99),
        (123.01, 40.99),
        (123.01, 41.01),
        (122.99, 41.01),
        (122.99, 40.99),
    ]);
    let mut store = Store::open(&dir.join("data")).unwrap();
    store
        .insert_geofence(&GeofenceRecord {
            tenant: tenant.into(),
            def: GeofenceDef {
                id: "wh".into(),
                name: "Warehouse".into(),
                kind: "warehouse".into(),
                shape: Shape::Area(MultiPolygon(vec![Polygon::new(ring, vec![])])),
                confirm_seconds: Some(0),
                dwell_seconds: None,
            },
            updated_ms: 0,
        })
        .unwrap();
}

fn reading(ts: i64, lon: f64) -> String {
    format!(r#"{{"ts":{ts},"lat":41.0,"lon":{lon}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_readme_acl_a_tenant_sees_only_its_own_events() {
    let users = [
        ("landport", "landport-secret"),
        ("acme", "acme-secret"),
        ("globex", "globex-secret"),
    ];
    let Some(broker) = Mosquitto::start_with_accounts(&users, &readme_acl()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fence(dir, "acme");
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = Landport::config(dir, http, broker.port, false, "").replace(
        "[mqtt]\n",
        "[mqtt]\nusername = \"landport\"\npassword = \"landport-secret\"\n",
    );
    let lp = Landport::start(dir, &config, http, broker.port);

    let (acme, mut acme_events) = client(broker.port, "acme", "landport/+/+/events").await;
    let (globex, mut globex_events) = client(broker.port, "globex", "landport/+/+/events").await;

    // globex tries to write into acme's topics: the broker drops it.
    globex
        .publish(
            "landport/acme/truck-9/telemetry",
            QoS::AtLeastOnce,
            false,
            reading(T0, 123.2),
        )
        .await
        .unwrap();
    // acme's truck drives into acme's warehouse.
    for (i, lon) in [123.2, 123.0].into_iter().enumerate() {
        acme.publish(
            "landport/acme/truck-1/telemetry",
            QoS::AtLeastOnce,
            false,
            reading(T0 + i as i64 * 10_000, lon),
        )
        .await
        .unwrap();
    }
    let event = tokio::time::timeout(Duration::from_secs(30), acme_events.recv())
        .await
        .expect("acme sees its event")
        .unwrap();
    assert_eq!(event.topic, "landport/acme/truck-1/events");
    assert!(
        String::from_utf8_lossy(&event.payload).contains("geofence.entered"),
        "{event:?}"
    );
    // Landport took acme's two readings and not globex's one.
    wait_for("acme's readings", Duration::from_secs(30), || {
        (metric(&lp.metrics(), "landport_readings_accepted_total") == 2.0).then_some(())
    });
    // Waiting for nothing to happen: a short pause is all there is.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        globex_events.try_recv().is_err(),
        "globex must not see acme's events"
    );
    assert_eq!(
        metric(&lp.metrics(), "landport_readings_accepted_total"),
        2.0,
        "globex's publish into acme's topics never reached Landport"
    );
}
