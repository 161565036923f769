//! The MQTT client side of ingest: the source that subscribes to an external broker and hands
//! each publish to the pipeline (through the decode stage, [`crate::decoder`]). Landport's own
//! endpoint, which devices connect to directly, is [`crate::endpoint`].
//!
//! Layout:
//! - [`crate::backoff`]: reconnect delays, exponential with full jitter; pure (the caller seeds it).
//! - [`source`]: [`MqttSource`] (the driver) and [`MqttClient`] (the cheap handle), in
//!   rumqttc's own handle-plus-event-loop shape.
//! - [`stats`]: [`MqttStats`], the source's counters for `/metrics` and `/readyz`.
//! - `ack_order` (private, pure): PUBACKs in arrival order, whatever order the pipeline acks in.
//! - `publish_acks` (private, pure): which of *our* publishes the broker has acknowledged, so
//!   that [`MqttClient::publish_confirmed`] can say when a PUBACK arrived.
//!
//! Data flow and acknowledgement:
//!
//! ```text
//! broker --PUBLISH--> MqttSource::run --Inbound{ack: AckToken}--> [bounded mpsc] --> decode stage --> pipeline
//! broker <--PUBACK--- MqttSource::run <--AckToken-- MqttClient::ack <-- (reading durable)
//! broker <--PUBLISH-- publisher connection <-- MqttClient::publish <-- events, dead letters
//! broker ---PUBACK--> publisher connection --> Confirmation (publish_confirmed) --> outbox
//! ```
//!
//! The subscription is a persistent session (`clean_session = false`) with manual acks, so a
//! QoS 1 message the pipeline has not acknowledged stays with the broker and is delivered again
//! after a crash or a reconnect: at least once, never lost. The pipeline must therefore accept
//! duplicates (SPEC §4 drops them by device and `ts`). A full inbound channel stops the event
//! loop from reading the socket, which is the backpressure to the broker.
//!
//! Events and dead letters go out on a second connection (`{client_id}-pub`), so that a
//! stalled subscription (backpressure) can never block the pipeline's publishes, and a busy
//! publisher can never delay acknowledgements. See [`source`] for why that matters.

mod ack_order;
mod publish_acks;
pub mod source;
pub mod stats;

pub use crate::backoff::Backoff;
pub use source::{AckToken, Confirmation, Inbound, MqttClient, MqttSource, MqttSourceConfig};
pub use stats::MqttStats;

/// Errors of the MQTT module. Connection trouble is not an error here: the source reconnects
/// by itself and counts it in [`MqttStats`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MqttError {
    /// A config value out of range; `field` is its path (`mqtt.source.channel_capacity`).
    #[error("{field}: {reason}")]
    InvalidConfig { field: String, reason: String },
    /// The topic can't be published to (empty, too long, or holds `+`, `#` or NUL).
    #[error("cannot publish to {topic:?}: not a valid topic name")]
    InvalidTopic { topic: String },
    /// The publisher's queue is full (broker down or slow); from [`MqttClient::try_publish`].
    #[error("the MQTT publish queue is full")]
    QueueFull,
    /// The source's driver has stopped; nothing more can be published.
    #[error("the MQTT source has stopped")]
    Closed,
    /// A publish the broker will never acknowledge: the connection was lost (or the source
    /// stopped) before its PUBACK came. It may or may not have reached the broker; publish it
    /// again. From a [`Confirmation`].
    #[error("the MQTT publish was not acknowledged (connection lost); publish it again")]
    NotAcknowledged,
}

impl MqttError {
    fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        MqttError::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
