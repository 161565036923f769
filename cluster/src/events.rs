//! A shard's events to the NATS cluster, where MQTT subscribers of its gateway read them on
//! `landport/{tenant}/{device}/events` (subject `landport.{tenant}.{device}.events`), as they
//! would from a single node's endpoint. The shard runs landport-sinks' event outbox with this
//! publisher: an event counts as delivered once the server has it (a flush's round trip after
//! the publish), so the outbox's cursor never passes an event NATS did not get.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use landport_sinks::outbox::EventPublisher;

use crate::source::subject_of;

/// The NATS client as the event outbox's publisher.
pub struct NatsEvents(pub async_nats::Client);

/// Why an event did not reach NATS (the outbox publishes it again).
#[derive(Debug, thiserror::Error)]
#[error("NATS: {0}")]
pub struct NatsEventError(String);

/// Resolves once the server has every message published before it.
pub type Flushed = Pin<Box<dyn Future<Output = Result<(), NatsEventError>> + Send>>;

impl EventPublisher for NatsEvents {
    type Error = NatsEventError;
    type Confirmation = Flushed;

    async fn publish_confirmed(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<Flushed, NatsEventError> {
        self.0
            .publish(subject_of(topic), Bytes::from(payload))
            .await
            .map_err(|e| NatsEventError(e.to_string()))?;
        let client = self.0.clone();
        Ok(Box::pin(async move {
            client
                .flush()
                .await
                .map_err(|e| NatsEventError(e.to_string()))
        }))
    }
}
