//! The MQTT source's counters. Plain atomics, written by the driver and read by `/metrics` and
//! `/readyz` from any thread; `Relaxed` is enough, each value stands alone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Counters and flags of one [`MqttSource`](super::MqttSource). Shared as `Arc<MqttStats>`.
#[derive(Debug, Default)]
pub struct MqttStats {
    /// Publishes received and handed to the inbound channel (redeliveries included).
    received: AtomicU64,
    /// PUBACKs written to the broker.
    acked: AtomicU64,
    /// Acks dropped because their message came on an earlier connection: the broker resends
    /// such a message, and its new copy carries a new token.
    acks_stale: AtomicU64,
    /// Tokens dropped without an ack (the message comes again after a reconnect).
    acks_abandoned: AtomicU64,
    /// Reconnects made to get dropped messages sent again.
    forced_reconnects: AtomicU64,
    /// Successful connects after the first one, on either connection.
    reconnects: AtomicU64,
    /// Failed connects and dropped connections, on either connection.
    connection_errors: AtomicU64,
    /// Publishes (events, dead letters) handed to the publisher connection.
    published: AtomicU64,
    /// Subscriptions the broker refused (SUBACK failure codes).
    subscribe_failures: AtomicU64,
    /// The subscribing connection is up.
    connected: AtomicBool,
    /// The subscriptions are in place on the current session.
    subscribed: AtomicBool,
    /// The publishing connection is up.
    publisher_connected: AtomicBool,
}

impl MqttStats {
    pub fn received(&self) -> u64 {
        self.received.load(Relaxed)
    }
    pub fn acked(&self) -> u64 {
        self.acked.load(Relaxed)
    }
    pub fn acks_stale(&self) -> u64 {
        self.acks_stale.load(Relaxed)
    }
    pub fn acks_abandoned(&self) -> u64 {
        self.acks_abandoned.load(Relaxed)
    }
    pub fn forced_reconnects(&self) -> u64 {
        self.forced_reconnects.load(Relaxed)
    }
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Relaxed)
    }
    pub fn connection_errors(&self) -> u64 {
        self.connection_errors.load(Relaxed)
    }
    pub fn published(&self) -> u64 {
        self.published.load(Relaxed)
    }
    pub fn subscribe_failures(&self) -> u64 {
        self.subscribe_failures.load(Relaxed)
    }
    /// The subscribing connection is up (it may still be waiting for its SUBACK).
    pub fn connected(&self) -> bool {
        self.connected.load(Relaxed)
    }
    /// Connected with the subscriptions in place: messages can flow. What `/readyz` wants.
    pub fn ready(&self) -> bool {
        self.connected() && self.subscribed.load(Relaxed)
    }
    pub fn publisher_connected(&self) -> bool {
        self.publisher_connected.load(Relaxed)
    }

    pub(crate) fn add_received(&self) {
        self.received.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_acked(&self) {
        self.acked.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_ack_stale(&self) {
        self.acks_stale.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_ack_abandoned(&self) {
        self.acks_abandoned.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_forced_reconnect(&self) {
        self.forced_reconnects.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_reconnect(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_connection_error(&self) {
        self.connection_errors.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_published(&self) {
        self.published.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_subscribe_failure(&self) {
        self.subscribe_failures.fetch_add(1, Relaxed);
    }
    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(up, Relaxed);
        if !up {
            self.subscribed.store(false, Relaxed);
        }
    }
    pub(crate) fn set_subscribed(&self, yes: bool) {
        self.subscribed.store(yes, Relaxed);
    }
    pub(crate) fn set_publisher_connected(&self, up: bool) {
        self.publisher_connected.store(up, Relaxed);
    }
}
