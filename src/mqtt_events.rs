//! The event outbox's way to the broker. landport-sinks says what the outbox needs
//! ([`EventPublisher`]: publish, then learn of the PUBACK); landport-ingest has the MQTT client
//! that does it. Neither crate depends on the other, so the binary joins them here.

use landport_ingest::mqtt::{Confirmation, MqttClient, MqttError};
use landport_sinks::outbox::EventPublisher;

/// The MQTT client as the outbox's publisher: events go out on its publisher connection,
/// QoS 1, and count as delivered once their PUBACK arrives.
pub struct MqttEvents(pub MqttClient);

impl EventPublisher for MqttEvents {
    type Error = MqttError;
    type Confirmation = Confirmation;

    async fn publish_confirmed(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<Confirmation, MqttError> {
        self.0.publish_confirmed(topic, payload).await
    }
}
