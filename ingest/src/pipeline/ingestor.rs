//! The pipeline's front: one MQTT message in, decoded and validated, then applied to the
//! [`Core`] (tracker and registry, landport-pipeline); refusals become dead letters. No I/O,
//! so it is tested without a broker or a runtime.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use landport_pipeline::log_limit::KeyedLogLimiter;
use landport_pipeline::metrics::Metrics;
pub use landport_pipeline::{Core, DeadLetter, Output, Refused};
use landport_tracker::{TimestampMs, Tracker};
use serde_json::json;

use crate::decode::{Limits, decode};
use crate::topic::{OwnTracksTenants, TopicKind, rejected_topic};

/// Bytes of a refused payload quoted in its dead letter.
const EXCERPT_BYTES: usize = 256;

/// Settings of the ingest stage.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub limits: Limits,
    pub owntracks: OwnTracksTenants,
    /// Accept telemetry from devices not registered to the topic's tenant.
    pub auto_register: bool,
}

/// Decodes and validates messages and applies them to the core it owns.
pub struct Ingestor {
    core: Core,
    limits: Limits,
    owntracks: OwnTracksTenants,
    metrics: Arc<Metrics>,
    log_limit: KeyedLogLimiter,
}

impl Ingestor {
    pub fn new(tracker: Tracker, settings: IngestSettings, metrics: Arc<Metrics>) -> Self {
        Ingestor {
            core: Core::new(tracker, settings.auto_register, metrics.clone()),
            limits: settings.limits,
            owntracks: settings.owntracks,
            metrics,
            log_limit: KeyedLogLimiter::new(Duration::from_secs(10)),
        }
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    pub fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    /// Handles one MQTT message received at server time `now_ms`.
    pub fn handle(&mut self, topic: &str, payload: &[u8], now_ms: TimestampMs, out: &mut Output) {
        self.metrics.messages_in.inc();
        let mut refuse =
            |device: Option<(&str, &str)>, code: &str, message: &str, out: &mut Output| {
                reject(
                    &self.metrics,
                    &mut self.log_limit,
                    device,
                    topic,
                    payload,
                    code,
                    message,
                    out,
                )
            };
        let kind = match TopicKind::parse(topic, &self.owntracks) {
            Ok(k) => k,
            Err(rej) => return refuse(None, rej.code(), &rej.to_string(), out),
        };
        let Some(dev) = kind.device() else {
            return;
        };
        let (tenant, device) = (dev.tenant.as_ref(), dev.device.as_ref());
        let dev = Some((tenant, device));
        // Refused before decoding: an unregistered device's payload is not worth reading.
        if !self.core.accepts(tenant, device) {
            let msg = format!("device {device:?} is not registered to tenant {tenant:?}");
            return refuse(dev, "unregistered_device", &msg, out);
        }
        let outcome = match decode(&kind, payload, &self.limits, now_ms) {
            Ok(o) => o,
            Err(rej) => return refuse(dev, rej.code(), &rej.to_string(), out),
        };
        for rej in &outcome.rejections {
            refuse(dev, rej.code(), &rej.to_string(), out);
        }
        // Registration was checked above, on this same task: apply cannot refuse.
        let _ = self
            .core
            .apply(tenant, device, &outcome.readings, now_ms, out);
    }
}

// An Ingestor is its core with the decoders in front: everything else (timers, replay, the
// tracker, the registry) is the core's, reached through it.
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

/// Counts, logs (rate-limited) and dead-letters one rejection.
#[allow(clippy::too_many_arguments)]
fn reject(
    metrics: &Metrics,
    log_limit: &mut KeyedLogLimiter,
    device: Option<(&str, &str)>,
    topic: &str,
    payload: &[u8],
    code: &str,
    message: &str,
    out: &mut Output,
) {
    metrics.reject(code);
    if let Some(suppressed) = log_limit.allow(code) {
        tracing::warn!(reason = code, topic, suppressed, "rejected: {message}");
    }
    // A topic we could not read has no device to answer on: counted and logged only.
    let Some((tenant, device)) = device else {
        return;
    };
    let end = payload.len().min(EXCERPT_BYTES);
    let notice = json!({
        "reason": message,
        "code": code,
        "topic": topic,
        "payload_excerpt": String::from_utf8_lossy(&payload[..end]),
    });
    out.dead_letters.push(DeadLetter {
        topic: rejected_topic(tenant, device),
        payload: serde_json::to_vec(&notice).unwrap_or_default(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use landport_tracker::{EventType, GeofenceDef, Shape, TrackerSettings};

    const NOW: i64 = 1_795_400_000_000;

    fn ingestor(auto_register: bool) -> Ingestor {
        let settings = IngestSettings {
            limits: Limits::default(),
            owntracks: OwnTracksTenants::default(),
            auto_register,
        };
        Ingestor::new(
            Tracker::new(TrackerSettings::default()),
            settings,
            Metrics::new(),
        )
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
