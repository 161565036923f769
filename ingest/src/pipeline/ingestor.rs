//! The pipeline's synchronous core: one MQTT message in, readings to store, events and dead
//! letters out. Owns the tracker; no I/O, so it is tested without a broker or a runtime.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use landport_tracker::{Applied, Event, Reading, TimestampMs, Tracker};
use serde_json::json;

use crate::decode::{Limits, decode};
use crate::log_limit::KeyedLogLimiter;
use crate::metrics::Metrics;
use crate::topic::{OwnTracksTenants, TopicKind, rejected_topic};
use landport_store::TelemetryRow;

/// Bytes of a refused payload quoted in its dead letter.
const EXCERPT_BYTES: usize = 256;

/// What a batch of messages produced, to be made durable together.
#[derive(Debug, Default)]
pub struct Output {
    /// Accepted readings (current and late), in the order the tracker applied them.
    pub rows: Vec<TelemetryRow>,
    pub events: Vec<Event>,
    /// Rejections to publish to `landport/{tenant}/{device}/rejected`.
    pub dead_letters: Vec<DeadLetter>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.events.is_empty() && self.dead_letters.is_empty()
    }
}

/// A rejection notice for the dead-letter topic.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Settings of the ingest stage.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub limits: Limits,
    pub owntracks: OwnTracksTenants,
    /// Accept telemetry from devices not registered to the topic's tenant.
    pub auto_register: bool,
}

/// Decodes, validates and applies messages to the tracker.
pub struct Ingestor {
    tracker: Tracker,
    settings: IngestSettings,
    /// (tenant, device) pairs registered through the API.
    registered: HashSet<(String, String)>,
    metrics: Arc<Metrics>,
    log_limit: KeyedLogLimiter,
    scratch: Vec<Reading>,
}

impl Ingestor {
    pub fn new(tracker: Tracker, settings: IngestSettings, metrics: Arc<Metrics>) -> Self {
        Ingestor {
            tracker,
            settings,
            registered: HashSet::new(),
            metrics,
            log_limit: KeyedLogLimiter::new(Duration::from_secs(10)),
            scratch: Vec::new(),
        }
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn tracker_mut(&mut self) -> &mut Tracker {
        &mut self.tracker
    }

    /// Marks a device as registered to a tenant (or not), for `auto_register = false`.
    pub fn set_registered(&mut self, tenant: &str, device: &str, registered: bool) {
        let key = (tenant.to_owned(), device.to_owned());
        if registered {
            self.registered.insert(key);
        } else {
            self.registered.remove(&key);
        }
    }

    /// Handles one MQTT message received at server time `now_ms`.
    pub fn handle(&mut self, topic: &str, payload: &[u8], now_ms: TimestampMs, out: &mut Output) {
        self.metrics.messages_in.inc();
        let kind = match TopicKind::parse(topic, &self.settings.owntracks) {
            Ok(k) => k,
            Err(rej) => {
                reject(
                    &self.metrics,
                    &mut self.log_limit,
                    None,
                    topic,
                    payload,
                    rej.code(),
                    &rej.to_string(),
                    out,
                );
                return;
            }
        };
        let Some(dev) = kind.device() else {
            return;
        };
        let (tenant, device) = (dev.tenant.as_ref(), dev.device.as_ref());
        if !self.settings.auto_register
            && !self
                .registered
                .contains(&(tenant.to_owned(), device.to_owned()))
        {
            let msg = format!("device {device:?} is not registered to tenant {tenant:?}");
            reject(
                &self.metrics,
                &mut self.log_limit,
                Some((tenant, device)),
                topic,
                payload,
                "unregistered_device",
                &msg,
                out,
            );
            return;
        }
        let outcome = match decode(&kind, payload, &self.settings.limits, now_ms) {
            Ok(o) => o,
            Err(rej) => {
                reject(
                    &self.metrics,
                    &mut self.log_limit,
                    Some((tenant, device)),
                    topic,
                    payload,
                    rej.code(),
                    &rej.to_string(),
                    out,
                );
                return;
            }
        };
        for rej in &outcome.rejections {
            reject(
                &self.metrics,
                &mut self.log_limit,
                Some((tenant, device)),
                topic,
                payload,
                rej.code(),
                &rej.to_string(),
                out,
            );
        }
        if outcome.readings.is_empty() {
            return;
        }
        let slot = self.tracker.device_slot(tenant, device);
        self.scratch.clear();
        self.scratch.extend_from_slice(&outcome.readings);
        // A store-and-forward batch is applied in time order.
        self.scratch.sort_by_key(|r| r.ts_ms);
        let first_event = out.events.len();
        for r in &self.scratch {
            match self.tracker.apply(slot, r, now_ms, &mut out.events) {
                Applied::Duplicate => {
                    self.metrics.readings_duplicate.inc();
                    continue;
                }
                Applied::Late => {
                    self.metrics.readings_late.inc();
                }
                Applied::Current => {
                    self.metrics.readings_accepted.inc();
                }
            }
            out.rows.push(TelemetryRow {
                tenant: tenant.to_owned(),
                device: device.to_owned(),
                shipment: self.tracker.device_shipment(slot).map(str::to_owned),
                reading: *r,
                received_ms: now_ms,
            });
        }
        for e in &out.events[first_event..] {
            self.metrics.event(e.kind.as_str());
        }
    }

    /// Re-applies a stored reading after a restart (no decoding, no registry check). Events it
    /// re-derives carry the ids they had the first time.
    pub fn replay(&mut self, row: &TelemetryRow, out: &mut Vec<Event>) {
        let slot = self.tracker.device_slot(&row.tenant, &row.device);
        self.tracker.apply(slot, &row.reading, row.received_ms, out);
    }

    /// Fires what is due at `now_ms` (offline, dwell, excursions) and tidies the indexes.
    pub fn tick(&mut self, now_ms: TimestampMs, out: &mut Output) {
        self.fire_timers(now_ms, out);
        self.tracker.maintain();
    }

    /// Server time (epoch ms) at which [`Ingestor::fire_timers`] next has something to do.
    pub fn next_deadline(&self) -> Option<TimestampMs> {
        self.tracker.next_deadline()
    }

    /// Rebuilds the tracker's position indexes where that pays (call it every second or so).
    pub fn maintain(&mut self) {
        self.tracker.maintain();
    }

    /// Fires what is due at `now_ms`: offline, dwell, excursions.
    pub fn fire_timers(&mut self, now_ms: TimestampMs, out: &mut Output) {
        let first = out.events.len();
        let stalled_before = self.tracker.stalled_timers();
        self.tracker.on_timer(now_ms, &mut out.events);
        let stalled = self.tracker.stalled_timers() - stalled_before;
        if stalled > 0 {
            self.metrics.tracker_stalled_timers.inc_by(stalled);
            if let Some(suppressed) = self.log_limit.allow("stalled_timer") {
                tracing::error!(
                    stalled,
                    suppressed,
                    "tracker deadlines due that no rule could advance were skipped (a bug)"
                );
            }
        }
        for e in &out.events[first..] {
            self.metrics.event(e.kind.as_str());
        }
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
