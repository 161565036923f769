//! Helpers shared by the pipeline's unit tests (the driver's and recover's): a store in a
//! temporary directory, messages as ingest decodes them, and one message applied and
//! committed as the pipeline does.

use bytes::Bytes;
use landport_store::Store;
use landport_tracker::{EventType, GeofenceDef, Reading, Shape, TimestampMs, TrackerSettings};

use crate::core::{Core, Output};
use crate::decoded::{Content, Decoded, Intake};
use crate::metrics::Metrics;
use crate::recover::recover;

pub(crate) const NOW: TimestampMs = 1_795_400_000_000;
pub(crate) const DAY_MS: i64 = 86_400_000;
pub(crate) const HOUR_MS: i64 = 3_600_000;

pub(crate) fn offline_after(seconds: u32) -> TrackerSettings {
    TrackerSettings {
        offline_after_seconds: seconds,
        ..TrackerSettings::default()
    }
}

pub(crate) fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    (tmp, store)
}

/// One message of `acme`'s `device` holding `reading`, as ingest decodes it (QoS 0).
pub(crate) fn message(device: &str, reading: Reading, received_ms: TimestampMs) -> Decoded<u32> {
    Decoded {
        topic: format!("landport/acme/{device}/telemetry"),
        payload: Bytes::new(),
        received_ms,
        content: Content::Device {
            tenant: "acme".into(),
            device: device.into(),
            readings: vec![reading],
            refusals: Vec::new(),
        },
        ack: None,
    }
}

/// What the pipeline does with one message: apply it, commit its rows and events.
pub(crate) fn ingest(
    store: &mut Store,
    ing: &mut Core,
    device: &str,
    reading: &Reading,
    now_ms: TimestampMs,
) -> Vec<EventType> {
    let mut out = Output::default();
    let mut intake = Intake::new(ing.metrics().clone());
    intake.apply(ing, &message(device, *reading, now_ms), &mut out);
    assert!(out.dead_letters.is_empty(), "{reading:?} refused");
    store.commit(&out.rows, &out.events).unwrap();
    out.events.iter().map(|e| e.kind).collect()
}

pub(crate) fn temp(ts_ms: TimestampMs, temp_c: f64) -> Reading {
    Reading::at(ts_ms).with_temp(temp_c)
}

pub(crate) fn tick(ing: &mut Core, now_ms: TimestampMs) -> Vec<EventType> {
    let mut out = Output::default();
    ing.tick(now_ms, &mut out);
    out.events.iter().map(|e| e.kind).collect()
}

/// Saves a snapshot of `ing` covering every reading stored so far, as the pipeline does.
pub(crate) fn save_snapshot(store: &mut Store, ing: &Core) {
    let bytes = serde_json::to_vec(&ing.tracker().snapshot()).unwrap();
    let rowid = store.telemetry_rowid_max().unwrap();
    store.save_snapshot(&bytes, rowid).unwrap();
}

pub(crate) fn restart(store: &mut Store, settings: TrackerSettings) -> Core {
    recover(store, settings, true, Metrics::new()).unwrap()
}

/// A fence around (123.0, 41.0) that confirms at once: a probe device's first reading there
/// fires `geofence.entered`.
pub(crate) fn yard() -> GeofenceDef {
    let ring = geo_types::LineString::from(vec![
        (122.99, 40.99),
        (123.01, 40.99),
        (123.01, 41.01),
        (122.99, 41.01),
        (122.99, 40.99),
    ]);
    GeofenceDef {
        id: "yard".into(),
        name: "Yard".into(),
        kind: "warehouse".into(),
        shape: Shape::Area(geo_types::MultiPolygon(vec![geo_types::Polygon::new(
            ring,
            vec![],
        )])),
        confirm_seconds: Some(0),
        dwell_seconds: None,
    }
}
