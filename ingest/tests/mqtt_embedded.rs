//! The MQTT source against the embedded broker (rumqttd in-process).

mod support_mqtt;

use landport_ingest::mqtt::{EmbeddedBroker, EmbeddedBrokerConfig};
use support_mqtt::*;

async fn broker() -> EmbeddedBroker {
    let cfg = EmbeddedBrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    EmbeddedBroker::start(cfg).await.expect("embedded broker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_delivers_to_the_source_and_takes_acks() {
    let b = broker().await;
    assert!(b.is_running());
    round_trip(b.addr().port(), "ingest-embedded-rt", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_redelivers_unacked_messages_to_the_same_client_id() {
    let b = broker().await;
    // rumqttd cannot be asked whether it has the PUBACKs: the sources connect through a proxy
    // that counts those it has put on the broker's socket, ahead of the abort's disconnect. So
    // exactly the five unacknowledged ones come again, in order, and none of the acked ones.
    let proxy = PubackCounter::start(b.addr().port()).await;
    let got =
        redelivered_after_source_restart(proxy.port, "ingest-embedded-ps", || proxy.pubacks() >= 5)
            .await;
    assert_eq!(got, [5, 6, 7, 8, 9]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_gets_acks_in_order_and_resends_dropped_messages() {
    let b = broker().await;
    ordered_acks_and_dropped_tokens(b.addr().port(), "ingest-embedded-order").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_backpressure_bounds_what_the_source_takes_in() {
    let b = broker().await;
    backpressure(b.addr().port(), "ingest-embedded-bp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_refuses_an_address_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = EmbeddedBrokerConfig {
        listen: taken.local_addr().unwrap(),
        ..Default::default()
    };
    let e = EmbeddedBroker::start(cfg).await.unwrap_err().to_string();
    assert!(e.contains("cannot listen"), "{e}");
}
