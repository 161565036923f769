//! The shipment rule that feeds a record's ETA history (SPEC 14): the first ETA is announced,
//! in `shipment.departed`'s data, or as a `shipment.eta_changed` without `previous` when the
//! shipment was under way before an ETA could be computed.

use crate::event::{EventType, format_rfc3339};
use crate::reading::Reading;
use crate::shipment::{Place, ShipmentDef, ShipmentStatus};
use crate::{Event, Tracker, TrackerSettings};

const T: &str = "acme";
const T0: i64 = 1_795_400_000_000;

fn shipment() -> ShipmentDef {
    ShipmentDef {
        id: "S1".into(),
        device: "t1".into(),
        reference: None,
        origin: Some(Place::Point {
            lon: 123.0,
            lat: 41.0,
        }),
        destination: Place::Point {
            lon: 123.0,
            lat: 41.5,
        },
        route: None,
        route_corridor_m: None,
        deadline_ms: None,
        temp_range_c: None,
        max_speed_kmh: None,
    }
}

fn apply(tr: &mut Tracker, r: Reading) -> Vec<Event> {
    let slot = tr.device_slot(T, "t1");
    let mut out = Vec::new();
    tr.apply(slot, &r, r.ts_ms, &mut out);
    out
}

#[test]
fn the_first_eta_rides_on_shipment_departed() {
    let mut tr = Tracker::new(TrackerSettings::default());
    tr.upsert_shipment(T, shipment()).unwrap();
    apply(
        &mut tr,
        Reading::at(T0).with_position(123.0, 41.0).with_speed(0.0),
    );
    let at = T0 + 60_000;
    let ev = apply(
        &mut tr,
        Reading::at(at).with_position(123.0, 41.01).with_speed(50.0),
    );
    let departed = ev
        .iter()
        .find(|e| e.kind == EventType::ShipmentDeparted)
        .expect("departed");
    let announced = tr.shipment(T, "S1").unwrap().announced_eta_ms.unwrap();
    assert_eq!(departed.data["eta"], format_rfc3339(announced));
    assert_eq!(departed.data["computed_at"], format_rfc3339(at));
    assert!(departed.data["p10"].is_string() && departed.data["p90"].is_string());
    assert_eq!(departed.data["method"], "direct");
    // and no eta_changed for it: the first ETA is the baseline
    assert!(!ev.iter().any(|e| e.kind == EventType::ShipmentEtaChanged));
}

#[test]
fn a_shipment_under_way_before_any_eta_announces_it_with_no_previous() {
    let mut tr = Tracker::new(TrackerSettings::default());
    tr.upsert_shipment(T, shipment()).unwrap();
    tr.set_shipment_status(T, "S1", ShipmentStatus::InTransit)
        .unwrap();
    let at = T0 + 60_000;
    let ev = apply(
        &mut tr,
        Reading::at(at).with_position(123.0, 41.2).with_speed(50.0),
    );
    let first: Vec<&Event> = ev
        .iter()
        .filter(|e| e.kind == EventType::ShipmentEtaChanged)
        .collect();
    assert_eq!(first.len(), 1, "{ev:?}");
    assert_eq!(first[0].data["previous"], serde_json::Value::Null);
    let announced = tr.shipment(T, "S1").unwrap().announced_eta_ms.unwrap();
    assert_eq!(first[0].data["eta"], format_rfc3339(announced));
    assert_eq!(first[0].ts_ms, at);
}
