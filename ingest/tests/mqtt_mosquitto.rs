//! The MQTT source against mosquitto as an external broker (SPEC §8): delivery and acks,
//! persistent sessions, broker restarts, backpressure.

mod support_mqtt;

use rumqttc::QoS;
use support_mqtt::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_delivers_to_the_source_and_takes_acks() {
    let Some(m) = Mosquitto::start() else { return };
    round_trip(m.port, "ingest-mosq-rt", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_are_redelivered_to_the_same_client_id_and_acked_ones_are_not() {
    let Some(m) = Mosquitto::start() else { return };
    // Mosquitto logs each PUBACK it receives.
    let acks_arrived = || {
        m.log()
            .contains("Received PUBACK from ingest-mosq-ps (Mid: 5,")
    };
    let got = redelivered_after_source_restart(m.port, "ingest-mosq-ps", acks_arrived).await;
    assert_eq!(got, [5, 6, 7, 8, 9], "mosquitto log:\n{}", m.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_gets_acks_in_order_and_resends_dropped_messages() {
    let Some(m) = Mosquitto::start() else { return };
    ordered_acks_and_dropped_tokens(m.port, "ingest-mosq-order").await;
}

/// SIGTERM: mosquitto saves its sessions, so the source resumes its session (no resubscribe)
/// and gets both the message it had not acked and those published after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_reconnects_after_a_broker_restart_and_resumes_its_session() {
    let Some(mut m) = Mosquitto::start() else {
        return;
    };
    let topic = "landport/acme/truck-3/telemetry";
    let mut s = run_source(source_config(m.port, "ingest-mosq-restart")).await;
    publish(m.port, topic, vec![b"before".to_vec()], QoS::AtLeastOnce).await;
    let before = recv(&mut s.rx, "the message before the restart").await;
    assert_eq!(&before.payload[..], b"before");
    // Not acked: the broker must keep it across its restart.
    drop(before);

    m.restart();
    wait_until("a reconnect counted", || s.stats.reconnects() > 0).await;
    wait_until("subscribed again", || s.stats.ready()).await;
    publish(m.port, topic, vec![b"after".to_vec()], QoS::AtLeastOnce).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let msg = recv(&mut s.rx, "messages after the restart").await;
        got.push(String::from_utf8(msg.payload.to_vec()).unwrap());
        s.client.ack(msg.ack.unwrap()).await;
    }
    assert_eq!(got, ["before", "after"], "mosquitto log:\n{}", m.log());
    assert!(s.stats.connection_errors() > 0);
    s.stop().await;
}

/// SIGKILL before mosquitto ever saved: the session is gone, so the source must subscribe
/// again on its own to get what is published after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_subscribes_again_when_the_broker_lost_its_session() {
    let Some(mut m) = Mosquitto::start() else {
        return;
    };
    let topic = "landport/acme/truck-4/telemetry";
    let mut s = run_source(source_config(m.port, "ingest-mosq-lost")).await;
    m.kill();
    wait_until("the loss noticed", || !s.stats.connected()).await;
    m.start_again();
    wait_until("a reconnect counted", || s.stats.reconnects() > 0).await;
    wait_until("subscribed again", || s.stats.ready()).await;
    publish(m.port, topic, vec![b"after".to_vec()], QoS::AtLeastOnce).await;
    let msg = recv(&mut s.rx, "the message after the restart").await;
    assert_eq!(&msg.payload[..], b"after");
    s.client.ack(msg.ack.unwrap()).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_channel_stops_the_source_reading_and_nothing_is_lost() {
    let Some(m) = Mosquitto::start() else { return };
    backpressure(m.port, "ingest-mosq-bp").await;
}

/// A confirmation from `publish_confirmed` resolves only once the broker's PUBACK arrives:
/// not while the publishes are held on their way, then once they get there (and subscribers
/// have them). A connection lost before the PUBACK fails the confirmation, so that the
/// publisher sends again (rumqttc alone would drop them on a new session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_waits_for_the_brokers_puback_and_fails_if_the_connection_is_lost() {
    let Some(m) = Mosquitto::start() else { return };
    let proxy = PublishHold::start(m.port, true).await;
    let mut events = subscriber(m.port, "landport/+/+/events").await;
    let s = run_source(source_config(proxy.port, "ingest-mosq-confirm")).await;
    let topic = "landport/acme/truck-1/events";

    let mut confirmations = Vec::new();
    for i in 0..5u8 {
        confirmations.push(s.client.publish_confirmed(topic, vec![i]).await.unwrap());
    }
    wait_until("five publishes held on their way", || {
        proxy.held_publishes() >= 5
    })
    .await;
    for c in &mut confirmations {
        assert!(
            c.try_result().is_none(),
            "confirmed before the broker had it"
        );
    }
    proxy.hold(false);
    for c in confirmations {
        tokio::time::timeout(WAIT, c)
            .await
            .expect("the PUBACK to arrive")
            .expect("acknowledged");
    }
    for i in 0..5u8 {
        let p = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("the event to reach the subscriber")
            .unwrap();
        assert_eq!(&p.payload[..], [i]);
    }

    // Lost on the way: the connection ends before the broker has them.
    proxy.hold(true);
    let mut lost = Vec::new();
    for i in 5..8u8 {
        lost.push(s.client.publish_confirmed(topic, vec![i]).await.unwrap());
    }
    wait_until("three more held", || proxy.held_publishes() >= 8).await;
    proxy.cut();
    for c in lost {
        let r = tokio::time::timeout(WAIT, c)
            .await
            .expect("the loss to be noticed");
        assert!(
            matches!(r, Err(landport_ingest::mqtt::MqttError::NotAcknowledged)),
            "{r:?}"
        );
    }
    // The source goes on: after the reconnect, a new publish is confirmed.
    proxy.hold(false);
    let c = s.client.publish_confirmed(topic, vec![9]).await.unwrap();
    tokio::time::timeout(WAIT, c)
        .await
        .expect("the PUBACK to arrive")
        .expect("acknowledged");
    s.stop().await;
}
