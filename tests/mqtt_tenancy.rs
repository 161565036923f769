//! Tenants apart over MQTT: the README's Mosquitto ACL, with Landport on its own account.
//! A tenant reads its own events and nobody else's, and cannot publish into another tenant's
//! topics.

mod support;
#[path = "../ingest/tests/support_mqtt/mod.rs"]
mod support_mqtt;

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::QoS;
use support::{Landport, free_port, metric, seed_fence, wait_for};
use support_mqtt::{Mosquitto, subscriber_as};

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
    seed_fence(dir, "acme");
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = Landport::config(dir, http, broker.port, false, "").replace(
        "[mqtt]\n",
        "[mqtt]\nusername = \"landport\"\npassword = \"landport-secret\"\n",
    );
    let lp = Landport::start(dir, &config, http, broker.port);

    let events = "landport/+/+/events";
    let (acme, mut acme_events) =
        subscriber_as(broker.port, events, Some(("acme", "acme-secret"))).await;
    let (globex, mut globex_events) =
        subscriber_as(broker.port, events, Some(("globex", "globex-secret"))).await;

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
