//! Ingest's side of the pipeline.
//!
//! - [`Decoder`]: one MQTT message in, its topic read and its payload decoded and validated,
//!   out as a [`Decoded`] message for the pipeline (landport-pipeline), which applies it to
//!   the live state; [`Decoder::run`] is the decode stage between the MQTT source and the
//!   pipeline. Pure but for that loop: no clock (a message's arrival time is its `now`), no
//!   I/O.
//! - The MQTT client as the pipeline's [`Acknowledger`]: PUBACKs once a message is durable,
//!   dead letters to `landport/{tenant}/{device}/rejected`.
//!
//! ```text
//! MqttSource --Inbound--> [bounded] --> Decoder::run --Decoded<AckToken>--> [bounded] --> Pipeline
//! broker <--PUBACK, dead letters-- MqttClient (Acknowledger) <-- pipeline (after the commit)
//! ```
//!
//! What a refusal counts, logs and dead-letters is done by the pipeline ([`Intake`]), which
//! also refuses devices not registered to their tenant: the registry is the pipeline's.
//!
//! [`Intake`]: landport_pipeline::Intake

use landport_pipeline::{Acknowledger, Content, DeadLetter, Decoded, Refusal};
use tokio::sync::mpsc;

use crate::decode::{Limits, Rejection, decode};
use crate::mqtt::{AckToken, Inbound, MqttClient};
use crate::topic::{OwnTracksTenants, TopicKind};

/// Settings of the decode stage.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub limits: Limits,
    pub owntracks: OwnTracksTenants,
}

/// Reads topics and decodes payloads into [`Decoded`] messages.
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: Limits,
    owntracks: OwnTracksTenants,
}

impl Decoder {
    pub fn new(settings: IngestSettings) -> Self {
        Decoder {
            limits: settings.limits,
            owntracks: settings.owntracks,
        }
    }

    /// Decodes one message; its arrival time is the decoders' `now` (device times may be at
    /// most `limits.max_future_ms` ahead of it).
    pub fn decode(&self, msg: Inbound) -> Decoded<AckToken> {
        let Inbound {
            topic,
            payload,
            ack,
            received_ms,
            ..
        } = msg;
        self.decode_parts(topic, payload, received_ms, ack)
    }

    /// Decodes one message given by its parts, acknowledged by any `A`: Landport's own MQTT
    /// endpoint ([`crate::endpoint`]) hands its publishes in this way, the MQTT source's
    /// [`Inbound`] through [`Decoder::decode`].
    pub fn decode_parts<A>(
        &self,
        topic: String,
        payload: bytes::Bytes,
        received_ms: i64,
        ack: Option<A>,
    ) -> Decoded<A> {
        let content = match TopicKind::parse(&topic, &self.owntracks) {
            Err(rej) => Content::Unreadable(refusal(&rej)),
            Ok(kind) => match kind.device() {
                None => Content::Ignored,
                Some(dev) => {
                    let (readings, refusals) =
                        match decode(&kind, &payload, &self.limits, received_ms) {
                            Ok(o) => (o.readings, o.rejections.iter().map(refusal).collect()),
                            Err(rej) => (Vec::new(), vec![refusal(&rej)]),
                        };
                    Content::Device {
                        tenant: dev.tenant.to_string(),
                        device: dev.device.to_string(),
                        readings,
                        refusals,
                    }
                }
            },
        };
        Decoded {
            topic,
            payload,
            received_ms,
            content,
            ack,
        }
    }

    /// A message refused before its payload was read (Landport's MQTT endpoint: a PUBLISH
    /// above its packet limit, of which only `excerpt` was kept): the device its topic names
    /// gets `refusal` as its dead letter, as for a payload the decoders refused.
    pub fn refuse_parts<A>(
        &self,
        topic: String,
        excerpt: bytes::Bytes,
        received_ms: i64,
        refusal: Refusal,
        ack: Option<A>,
    ) -> Decoded<A> {
        let content = match TopicKind::parse(&topic, &self.owntracks) {
            Err(rej) => Content::Unreadable(self::refusal(&rej)),
            Ok(kind) => match kind.device() {
                None => Content::Ignored,
                Some(dev) => Content::Device {
                    tenant: dev.tenant.to_string(),
                    device: dev.device.to_string(),
                    readings: Vec::new(),
                    refusals: vec![refusal],
                },
            },
        };
        Decoded {
            topic,
            payload: excerpt,
            received_ms,
            content,
            ack,
        }
    }

    /// The decode stage: decodes what the MQTT source receives, in order, for the pipeline.
    /// Runs until the source closes `inbox` or the pipeline stops taking messages (then it
    /// drops `inbox` at once, as the pipeline did when it read the source's channel itself).
    /// Both channels are bounded, so a busy pipeline holds the source back, and the broker
    /// keeps the rest.
    pub async fn run(
        self,
        mut inbox: mpsc::Receiver<Inbound>,
        out: mpsc::Sender<Decoded<AckToken>>,
    ) {
        loop {
            let msg = tokio::select! {
                msg = inbox.recv() => match msg {
                    Some(msg) => msg,
                    None => break,
                },
                () = out.closed() => break,
            };
            if out.send(self.decode(msg)).await.is_err() {
                break;
            }
        }
    }
}

/// A rejection as the pipeline counts and reports it.
fn refusal(rej: &Rejection) -> Refusal {
    Refusal {
        code: rej.code(),
        message: rej.to_string(),
    }
}

/// The MQTT client acknowledges what the pipeline made durable, and publishes its dead letters.
impl Acknowledger for MqttClient {
    type Ack = AckToken;

    async fn ack(&self, ack: AckToken) {
        MqttClient::ack(self, ack).await;
    }

    fn dead_letter(&self, letter: DeadLetter) {
        if let Err(e) = self.try_publish(&letter.topic, letter.payload, true) {
            tracing::warn!(error = %e, "dead letter not published");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ops::{Deref, DerefMut};
    use std::sync::Arc;

    use bytes::Bytes;
    use landport_pipeline::metrics::Metrics;
    use landport_pipeline::{Core, Intake, Output};
    use landport_tracker::{EventType, GeofenceDef, Shape, Tracker, TrackerSettings};

    use super::*;

    const NOW: i64 = 1_795_400_000_000;

    /// What the service does with one message, without the channels between: the decoder
    /// here, then the pipeline's intake applying it to a core.
    struct Ingestor {
        decoder: Decoder,
        intake: Intake,
        core: Core,
        metrics: Arc<Metrics>,
    }

    impl Ingestor {
        /// Handles one MQTT message received at server time `now_ms` (QoS 0).
        fn handle(&mut self, topic: &str, payload: &[u8], now_ms: i64, out: &mut Output) {
            let msg = self.decoder.decode(Inbound {
                topic: topic.to_owned(),
                payload: Bytes::copy_from_slice(payload),
                qos: 0,
                ack: None,
                received_ms: now_ms,
            });
            self.intake.apply(&mut self.core, &msg, out);
        }
    }

    impl Deref for Ingestor {
        type Target = Core;

        fn deref(&self) -> &Core {
            &self.core
        }
    }

    impl DerefMut for Ingestor {
        fn deref_mut(&mut self) -> &mut Core {
            &mut self.core
        }
    }

    fn ingestor(auto_register: bool) -> Ingestor {
        let settings = IngestSettings {
            limits: Limits::default(),
            owntracks: OwnTracksTenants::default(),
        };
        let metrics = Metrics::new();
        let tracker = Tracker::new(TrackerSettings::default());
        Ingestor {
            decoder: Decoder::new(settings),
            intake: Intake::new(metrics.clone()),
            core: Core::new(tracker, auto_register, metrics.clone()),
            metrics,
        }
    }

    fn native(ts_ms: i64, lon: f64, lat: f64) -> Vec<u8> {
        format!(r#"{{"ts":{ts_ms},"lat":{lat},"lon":{lon}}}"#).into_bytes()
    }

    const TOPIC: &str = "landport/acme/t1/telemetry";

    #[test]
    fn a_good_reading_becomes_a_row_and_a_bad_one_a_dead_letter() {
        let mut ing = ingestor(true);
        let mut out = Output::default();
        ing.handle(TOPIC, &native(NOW, 123.0, 41.0), NOW, &mut out);
        ing.handle(TOPIC, b"{not json", NOW, &mut out);
        assert_eq!(out.rows.len(), 1);
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(out.dead_letters[0].topic, "landport/acme/t1/rejected");
        let notice: serde_json::Value =
            serde_json::from_slice(&out.dead_letters[0].payload).unwrap();
        assert_eq!(notice["code"], "invalid_json");
        assert_eq!(notice["topic"], TOPIC);
        assert_eq!(notice["payload_excerpt"], "{not json");
        assert_eq!(ing.metrics.rejected_count("invalid_json"), 1);
    }

    #[test]
    fn unregistered_devices_are_rejected_unless_auto_register() {
        let mut ing = ingestor(false);
        let mut out = Output::default();
        ing.handle(TOPIC, &native(NOW, 123.0, 41.0), NOW, &mut out);
        assert!(out.rows.is_empty());
        assert_eq!(ing.metrics.rejected_count("unregistered_device"), 1);
        ing.set_registered("acme", "t1", true);
        ing.handle(TOPIC, &native(NOW, 123.0, 41.0), NOW, &mut out);
        assert_eq!(out.rows.len(), 1);
        // Registered to another tenant is not registered.
        ing.handle(
            "landport/other/t1/telemetry",
            &native(NOW, 123.0, 41.0),
            NOW,
            &mut out,
        );
        assert_eq!(out.rows.len(), 1);
    }

    #[test]
    fn duplicates_are_not_stored_and_late_readings_are() {
        let mut ing = ingestor(true);
        let mut out = Output::default();
        ing.handle(TOPIC, &native(NOW, 123.0, 41.0), NOW, &mut out);
        ing.handle(TOPIC, &native(NOW, 123.0, 41.0), NOW, &mut out);
        ing.handle(TOPIC, &native(NOW - 5_000, 123.0, 41.0), NOW, &mut out);
        assert_eq!(out.rows.len(), 2);
        assert_eq!(ing.metrics.readings_duplicate.get(), 1);
        assert_eq!(ing.metrics.readings_late.get(), 1);
    }

    #[test]
    fn a_batch_is_applied_in_time_order_and_events_are_counted() {
        let mut ing = ingestor(true);
        let ring = geo_types::LineString::from(vec![
            (122.99, 40.99),
            (123.01, 40.99),
            (123.01, 41.01),
            (122.99, 41.01),
            (122.99, 40.99),
        ]);
        let fence = GeofenceDef {
            id: "wh".into(),
            name: "Warehouse".into(),
            kind: "warehouse".into(),
            shape: Shape::Area(geo_types::MultiPolygon(vec![geo_types::Polygon::new(
                ring,
                vec![],
            )])),
            confirm_seconds: Some(0),
            dwell_seconds: None,
        };
        ing.tracker_mut().upsert_geofence("acme", fence).unwrap();
        let batch = format!(
            r#"[{{"ts":{},"lat":41.0,"lon":123.0}},{{"ts":{},"lat":41.0,"lon":123.1}}]"#,
            NOW - 10_000,
            NOW - 20_000
        );
        let mut out = Output::default();
        ing.handle(TOPIC, batch.as_bytes(), NOW, &mut out);
        assert_eq!(out.rows.len(), 2);
        assert!(out.rows[0].reading.ts_ms < out.rows[1].reading.ts_ms);
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].kind, EventType::GeofenceEntered);
        let text = ing.metrics.render();
        assert!(text.contains("landport_events_total{type=\"geofence.entered\"} 1"));
    }

    #[test]
    fn an_unreadable_topic_is_counted_but_has_nowhere_to_dead_letter() {
        let mut ing = ingestor(true);
        let mut out = Output::default();
        ing.handle("something/else", b"{}", NOW, &mut out);
        assert!(out.dead_letters.is_empty());
        assert_eq!(ing.metrics.rejected_count("unknown_topic"), 1);
    }
}
