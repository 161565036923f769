//! Rule tests: one behaviour each, with small builders. Server time equals device time unless
//! a test says otherwise.

use super::*;
use crate::device::DeviceProfile;
use crate::error::TrackerError;
use crate::event::format_rfc3339;
use crate::geodesy;
use crate::geofence::{GeofenceDef, Shape};
use crate::route::Route;
use crate::settings::EtaSettings;
use crate::shipment::{EtaMethod, Place, ShipmentDef, ShipmentStatus};
use geo_types::{LineString, MultiPolygon, Point, Polygon};
use serde_json::json;

const T0: i64 = 1_795_400_000_000; // 2026-11-24 (ms)
const T: &str = "acme";

fn tracker() -> Tracker {
    Tracker::new(TrackerSettings::default())
}

fn square(id: &str, lon: f64, lat: f64, half_deg: f64) -> GeofenceDef {
    let ring = LineString::from(vec![
        (lon - half_deg, lat - half_deg),
        (lon + half_deg, lat - half_deg),
        (lon + half_deg, lat + half_deg),
        (lon - half_deg, lat + half_deg),
        (lon - half_deg, lat - half_deg),
    ]);
    GeofenceDef {
        id: id.into(),
        name: id.to_uppercase(),
        kind: "warehouse".into(),
        shape: Shape::Area(MultiPolygon(vec![Polygon::new(ring, vec![])])),
        confirm_seconds: None,
        dwell_seconds: None,
    }
}

/// A fix at `(lon, lat)`, `t` seconds after T0.
fn fix(lon: f64, lat: f64, t: i64) -> Reading {
    Reading::at(T0 + t * 1000).with_position(lon, lat)
}

fn apply(tr: &mut Tracker, dev: &str, r: Reading) -> Vec<Event> {
    let slot = tr.device_slot(T, dev);
    let mut out = Vec::new();
    tr.apply(slot, &r, r.ts_ms, &mut out);
    out
}

fn kinds(events: &[Event]) -> Vec<EventType> {
    events.iter().map(|e| e.kind).collect()
}

/// Fence "wh" around (123.0, 41.0), 0.01 degrees each side (~840 m x 1.1 km).
fn with_fence() -> Tracker {
    let mut tr = tracker();
    tr.upsert_geofence(T, square("wh", 123.0, 41.0, 0.01))
        .unwrap();
    tr
}

const OUT: (f64, f64) = (123.05, 41.0);
const IN: (f64, f64) = (123.0, 41.0);

#[test]
fn entry_fires_only_after_the_confirmation_window() {
    let mut tr = with_fence();
    assert!(apply(&mut tr, "t1", fix(OUT.0, OUT.1, 0)).is_empty());
    assert!(apply(&mut tr, "t1", fix(IN.0, IN.1, 10)).is_empty());
    assert!(
        apply(&mut tr, "t1", fix(IN.0, IN.1, 30)).is_empty(),
        "20 s < 30 s window"
    );
    assert!(
        tr.device(T, "t1").unwrap().geofences.is_empty(),
        "not inside before confirmation"
    );
    let ev = apply(&mut tr, "t1", fix(IN.0, IN.1, 40));
    assert_eq!(kinds(&ev), [EventType::GeofenceEntered]);
    assert_eq!(ev[0].geofence.as_deref(), Some("wh"));
    assert_eq!(tr.device(T, "t1").unwrap().geofences, ["wh"]);
    assert_eq!(tr.devices_in_geofence(T, "wh").unwrap(), ["t1"]);
}

#[test]
fn jitter_at_the_boundary_fires_nothing() {
    let mut tr = with_fence();
    let edge = 123.01;
    let mut all = apply(&mut tr, "t1", fix(edge + 0.001, 41.0, 0));
    for i in 1..40 {
        let lon = if i % 2 == 0 {
            edge + 0.0005
        } else {
            edge - 0.0005
        };
        all.extend(apply(&mut tr, "t1", fix(lon, 41.0, i * 10)));
    }
    assert!(all.is_empty(), "{:?}", kinds(&all));
}

#[test]
fn exit_fires_after_the_window_with_an_interpolated_crossing_time() {
    let mut tr = with_fence();
    apply(&mut tr, "t1", fix(123.05, 41.0, 0));
    apply(&mut tr, "t1", fix(123.0, 41.0, 10));
    apply(&mut tr, "t1", fix(123.0, 41.0, 60));
    // From 123.0 (0.01 deg = ~840 m inside) to 123.02 (~840 m outside): crossing halfway.
    assert!(apply(&mut tr, "t1", fix(123.02, 41.0, 100)).is_empty());
    let ev = apply(&mut tr, "t1", fix(123.03, 41.0, 130));
    assert_eq!(kinds(&ev), [EventType::GeofenceExited]);
    let crossing = ev[0].ts_ms;
    assert!(
        (crossing - (T0 + 80_000)).abs() <= 1_000,
        "crossing {}",
        crossing - T0
    );
    assert!(tr.device(T, "t1").unwrap().geofences.is_empty());
}

fn tracker_fence_zero_confirm() -> Tracker {
    let mut tr = tracker();
    let mut f = square("wh", 123.0, 41.0, 0.01);
    f.confirm_seconds = Some(0);
    tr.upsert_geofence(T, f).unwrap();
    tr
}

#[test]
fn entry_crossing_time_lies_between_the_last_outside_and_first_inside_reading() {
    let mut tr = tracker_fence_zero_confirm();
    apply(&mut tr, "t1", fix(123.03, 41.0, 0)); // ~1.7 km outside the east edge
    let ev = apply(&mut tr, "t1", fix(123.00, 41.0, 100)); // ~840 m inside
    assert_eq!(kinds(&ev), [EventType::GeofenceEntered]);
    let frac = (ev[0].ts_ms - T0) as f64 / 100_000.0;
    assert!(
        (frac - 2.0 / 3.0).abs() < 0.02,
        "crossing at {frac} of the interval"
    );
}

#[test]
fn zero_confirm_seconds_fires_at_once() {
    let mut tr = tracker_fence_zero_confirm();
    apply(&mut tr, "t1", fix(OUT.0, OUT.1, 0));
    assert_eq!(
        kinds(&apply(&mut tr, "t1", fix(IN.0, IN.1, 1))),
        [EventType::GeofenceEntered]
    );
    assert_eq!(
        kinds(&apply(&mut tr, "t1", fix(OUT.0, OUT.1, 2))),
        [EventType::GeofenceExited]
    );
}

#[test]
fn first_fix_inside_is_inside_at_once_and_announced_once_confirmed() {
    let mut tr = with_fence();
    assert!(apply(&mut tr, "t1", fix(IN.0, IN.1, 0)).is_empty());
    assert_eq!(tr.device(T, "t1").unwrap().geofences, ["wh"]);
    assert_eq!(tr.devices_in_geofence(T, "wh").unwrap(), ["t1"]);
    assert!(apply(&mut tr, "t1", fix(IN.0, IN.1, 20)).is_empty());
    let ev = apply(&mut tr, "t1", fix(IN.0, IN.1, 30));
    assert_eq!(kinds(&ev), [EventType::GeofenceEntered]);
    assert_eq!(ev[0].ts_ms, T0, "entered at the first fix");
    assert!(
        apply(&mut tr, "t1", fix(IN.0, IN.1, 90)).is_empty(),
        "announced once"
    );
}

#[test]
fn a_reading_less_accurate_than_its_distance_to_the_boundary_changes_nothing() {
    let mut tr = tracker_fence_zero_confirm();
    apply(&mut tr, "t1", fix(OUT.0, OUT.1, 0));
    // 50 m inside the east edge (0.01 deg of lon at 41N is ~840 m), accuracy 200 m.
    let near = 123.01 - 50.0 / 84_000.0 * 0.01 * 100.0;
    let ev = apply(&mut tr, "t1", fix(near, 41.0, 10).with_accuracy(200.0));
    assert!(ev.is_empty());
    assert!(tr.device(T, "t1").unwrap().geofences.is_empty());
    // The same point with 20 m accuracy decides.
    let ev = apply(&mut tr, "t1", fix(near, 41.0, 20).with_accuracy(20.0));
    assert_eq!(kinds(&ev), [EventType::GeofenceEntered]);
}

#[test]
fn an_inaccurate_reading_does_not_cancel_a_pending_exit() {
    let mut tr = with_fence();
    apply(&mut tr, "t1", fix(OUT.0, OUT.1, 0));
    apply(&mut tr, "t1", fix(IN.0, IN.1, 10));
    apply(&mut tr, "t1", fix(IN.0, IN.1, 50)); // entered
    apply(&mut tr, "t1", fix(OUT.0, OUT.1, 100)); // exit pending
    let near_inside = 123.0099;
    assert!(
        apply(
            &mut tr,
            "t1",
            fix(near_inside, 41.0, 110).with_accuracy(500.0)
        )
        .is_empty()
    );
    let ev = apply(&mut tr, "t1", fix(OUT.0, OUT.1, 130));
    assert_eq!(kinds(&ev), [EventType::GeofenceExited]);
}

#[test]
fn duplicates_are_dropped_but_a_repeated_seq_alone_is_not_a_duplicate() {
    let mut tr = with_fence();
    let slot = tr.device_slot(T, "t1");
    let mut out = Vec::new();
    let r = fix(OUT.0, OUT.1, 0).with_seq(7);
    assert_eq!(tr.apply(slot, &r, T0, &mut out), Applied::Current);
    assert_eq!(tr.apply(slot, &r, T0, &mut out), Applied::Duplicate);
    let same_ts_other_seq = fix(OUT.0, OUT.1, 0).with_seq(8);
    assert_eq!(
        tr.apply(slot, &same_ts_other_seq, T0, &mut out),
        Applied::Current
    );
    let rebooted = fix(OUT.0, OUT.1, 5).with_seq(7);
    assert_eq!(tr.apply(slot, &rebooted, T0, &mut out), Applied::Current);
    // A duplicate of an older reading (not the latest) is still recognised.
    assert_eq!(tr.apply(slot, &r, T0, &mut out), Applied::Duplicate);
}

#[test]
fn a_late_reading_is_reported_and_moves_nothing() {
    let mut tr = tracker_fence_zero_confirm();
    let slot = tr.device_slot(T, "t1");
    let mut out = Vec::new();
    tr.apply(slot, &fix(OUT.0, OUT.1, 100), T0, &mut out);
    assert_eq!(
        tr.apply(slot, &fix(IN.0, IN.1, 50), T0, &mut out),
        Applied::Late
    );
    assert!(out.is_empty());
    let d = tr.device(T, "t1").unwrap();
    assert_eq!(d.fix.unwrap().lon, OUT.0);
    assert_eq!(d.last_seen_ms, Some(T0 + 100_000));
}

#[test]
fn a_store_and_forward_batch_is_applied_in_time_order() {
    let mut tr = tracker_fence_zero_confirm();
    let slot = tr.device_slot(T, "t1");
    let mut out = Vec::new();
    let mut batch = vec![
        fix(OUT.0, OUT.1, 30),
        fix(IN.0, IN.1, 10),
        fix(OUT.0, OUT.1, 0),
        fix(IN.0, IN.1, 20),
    ];
    let applied = tr.apply_batch(slot, &mut batch, T0 + 60_000, &mut out);
    assert_eq!(applied, vec![Applied::Current; 4]);
    assert_eq!(
        kinds(&out),
        [EventType::GeofenceEntered, EventType::GeofenceExited]
    );
    assert!(out[0].ts_ms < out[1].ts_ms);
}

#[test]
fn dwell_fires_once_after_dwell_seconds_from_a_reading_or_a_timer() {
    let mut tr = tracker();
    let mut f = square("wh", 123.0, 41.0, 0.01);
    f.confirm_seconds = Some(0);
    f.dwell_seconds = Some(600);
    tr.upsert_geofence(T, f).unwrap();
    apply(&mut tr, "a", fix(OUT.0, OUT.1, 0));
    apply(&mut tr, "a", fix(IN.0, IN.1, 10));
    let ev = apply(&mut tr, "a", fix(IN.0, IN.1, 700));
    assert_eq!(kinds(&ev), [EventType::GeofenceDwell]);
    assert!(apply(&mut tr, "a", fix(IN.0, IN.1, 900)).is_empty());

    // Device "b" goes quiet inside: the timer fires the dwell.
    apply(&mut tr, "b", fix(OUT.0, OUT.1, 0));
    let entered = apply(&mut tr, "b", fix(IN.0, IN.1, 10));
    let crossing = entered[0].ts_ms;
    let mut out = Vec::new();
    tr.on_timer(crossing + 599_000, &mut out);
    assert!(out.iter().all(|e| e.kind != EventType::GeofenceDwell));
    tr.on_timer(crossing + 601_000, &mut out);
    let dwell: Vec<_> = out
        .iter()
        .filter(|e| e.kind == EventType::GeofenceDwell)
        .collect();
    assert_eq!(dwell.len(), 1);
    assert_eq!(dwell[0].kind, EventType::GeofenceDwell);
    assert_eq!(dwell[0].ts_ms, crossing + 600_000);
}

#[test]
fn silent_device_goes_offline_on_the_timer_and_online_with_its_next_reading() {
    let mut tr = tracker();
    apply(&mut tr, "t1", fix(OUT.0, OUT.1, 0));
    assert_eq!(tr.next_deadline(), Some(T0 + 300_000));
    let mut out = Vec::new();
    tr.on_timer(T0 + 299_999, &mut out);
    assert!(out.is_empty());
    tr.on_timer(T0 + 300_000, &mut out);
    assert_eq!(kinds(&out), [EventType::DeviceOffline]);
    assert!(!tr.device(T, "t1").unwrap().online);
    let ev = apply(&mut tr, "t1", fix(OUT.0, OUT.1, 400));
    assert_eq!(kinds(&ev), [EventType::DeviceOnline]);
    assert!(tr.device(T, "t1").unwrap().online);
}

#[test]
fn changed_since_lists_only_devices_changed_after_the_mark() {
    let ids = |v: Vec<DeviceView>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let mut tr = tracker();
    apply(&mut tr, "a", fix(OUT.0, OUT.1, 0));
    apply(&mut tr, "b", fix(OUT.0, OUT.1, 0));
    assert_eq!(ids(tr.changed_since(T, 0)), ["a", "b"]);
    let mark = tr.change_seq();
    assert!(tr.changed_since(T, mark).is_empty());
    // A new reading marks its device; a late one and a duplicate do not.
    apply(&mut tr, "b", fix(IN.0, IN.1, 60));
    apply(&mut tr, "a", fix(IN.0, IN.1, 0));
    apply(&mut tr, "a", fix(IN.0, IN.1, -10));
    assert_eq!(ids(tr.changed_since(T, mark)), ["b"]);
    assert!(tr.changed_since("globex", 0).is_empty());
    // Going offline is a change too.
    let mark = tr.change_seq();
    let mut out = Vec::new();
    tr.on_timer(T0 + 300_000, &mut out);
    assert_eq!(kinds(&out), [EventType::DeviceOffline]);
    assert_eq!(ids(tr.changed_since(T, mark)), ["a"]);
}

#[test]
fn a_reporting_device_never_goes_offline() {
    let mut tr = tracker();
    let mut out = Vec::new();
    for i in 0..20 {
        apply(&mut tr, "t1", fix(OUT.0, OUT.1, i * 60));
        tr.on_timer(T0 + i * 60_000 + 30_000, &mut out);
    }
    assert!(out.is_empty());
}

fn shipment(id: &str, origin: Option<Place>, destination: Place) -> ShipmentDef {
    ShipmentDef {
        id: id.into(),
        device: "t1".into(),
        reference: Some("PO-1".into()),
        origin,
        destination,
        route: None,
        route_corridor_m: None,
        deadline_ms: None,
        temp_range_c: None,
        max_speed_kmh: None,
    }
}

#[test]
fn a_refused_shipment_changes_nothing_and_the_check_refuses_it_too() {
    let mut tr = tracker();
    let to_nowhere = shipment("s1", None, Place::Geofence("nowhere".into()));
    let err = tr.check_shipment(T, &to_nowhere).unwrap_err();
    assert!(matches!(err, TrackerError::InvalidShipment(_)), "{err}");
    assert_eq!(tr.upsert_shipment(T, to_nowhere), Err(err));
    let mut bad_route = shipment(
        "s1",
        None,
        Place::Point {
            lon: 123.0,
            lat: 41.0,
        },
    );
    bad_route.route = Some(LineString::from(vec![(123.0, 41.0)]));
    assert!(matches!(
        tr.check_shipment(T, &bad_route),
        Err(TrackerError::InvalidGeometry(_))
    ));
    assert!(tr.upsert_shipment(T, bad_route).is_err());
    assert_eq!(
        tr.tenants().count(),
        0,
        "no tenant, device or shipment was made"
    );
    let fine = shipment(
        "s1",
        None,
        Place::Point {
            lon: 123.0,
            lat: 41.0,
        },
    );
    tr.check_shipment(T, &fine).unwrap();
    assert_eq!(tr.tenants().count(), 0, "a check changes nothing");
    tr.upsert_shipment(T, fine).unwrap();
    assert!(tr.shipment(T, "s1").is_some());
}

#[test]
fn a_prepared_geofence_is_upserted_like_a_definition() {
    let mut tr = tracker();
    let fence = crate::geofence::Geofence::new(square("wh", 123.0, 41.0, 0.01)).unwrap();
    tr.upsert_prepared_geofence(T, fence).unwrap();
    apply(&mut tr, "t1", fix(123.0, 41.0, 0));
    apply(&mut tr, "t1", fix(123.0, 41.0, 120));
    assert_eq!(tr.devices_in_geofence(T, "wh"), Some(vec!["t1".to_owned()]));
}

#[test]
fn shipment_departs_its_origin_and_arrives_at_its_destination() {
    let mut tr = tracker();
    let mut a = square("origin", 123.0, 41.0, 0.01);
    a.confirm_seconds = Some(0);
    let mut b = square("dest", 123.5, 41.0, 0.01);
    b.confirm_seconds = Some(0);
    tr.upsert_geofence(T, a).unwrap();
    tr.upsert_geofence(T, b).unwrap();
    let def = shipment(
        "S1",
        Some(Place::Geofence("origin".into())),
        Place::Geofence("dest".into()),
    );
    tr.upsert_shipment(T, def).unwrap();
    assert_eq!(
        tr.shipment(T, "S1").unwrap().status,
        ShipmentStatus::Planned
    );
    apply(&mut tr, "t1", fix(123.0, 41.0, 0));
    let ev = apply(&mut tr, "t1", fix(123.1, 41.0, 600));
    assert_eq!(
        kinds(&ev),
        [EventType::GeofenceExited, EventType::ShipmentDeparted]
    );
    assert_eq!(ev[1].shipment.as_deref(), Some("S1"));
    assert_eq!(
        tr.shipment(T, "S1").unwrap().status,
        ShipmentStatus::InTransit
    );
    let eta = tr.shipment_eta(T, "S1").unwrap();
    assert_eq!(eta.method, EtaMethod::Direct);
    assert!(eta.p10_ms <= eta.eta_ms && eta.eta_ms <= eta.p90_ms);
    let ev = apply(&mut tr, "t1", fix(123.5, 41.0, 3000));
    assert_eq!(
        kinds(&ev),
        [EventType::GeofenceEntered, EventType::ShipmentArrived]
    );
    assert_eq!(
        tr.shipment(T, "S1").unwrap().status,
        ShipmentStatus::Arrived
    );
    assert!(tr.shipment_eta(T, "S1").is_none());
}

#[test]
fn point_places_use_the_place_radius() {
    let mut tr = tracker();
    let def = shipment(
        "S1",
        Some(Place::Point {
            lon: 123.0,
            lat: 41.0,
        }),
        Place::Point {
            lon: 123.2,
            lat: 41.0,
        },
    );
    tr.upsert_shipment(T, def).unwrap();
    assert!(apply(&mut tr, "t1", fix(123.0, 41.001, 0)).is_empty()); // ~110 m from origin
    let ev = apply(&mut tr, "t1", fix(123.01, 41.0, 60));
    assert_eq!(kinds(&ev), [EventType::ShipmentDeparted]);
    let ev = apply(&mut tr, "t1", fix(123.2, 41.002, 900));
    assert_eq!(kinds(&ev), [EventType::ShipmentArrived]);
}

/// A straight route east along 41N from 123.0 to 124.0 (~84 km).
fn east_route() -> LineString<f64> {
    LineString::from(vec![(123.0, 41.0), (123.5, 41.0), (124.0, 41.0)])
}

#[test]
fn eta_follows_the_route_and_eta_changed_fires_when_it_moves_enough() {
    let mut tr = tracker();
    let mut def = shipment(
        "S1",
        Some(Place::Point {
            lon: 123.0,
            lat: 41.0,
        }),
        Place::Point {
            lon: 124.0,
            lat: 41.0,
        },
    );
    def.route = Some(east_route());
    tr.upsert_shipment(T, def).unwrap();
    apply(&mut tr, "t1", fix(123.0, 41.0, 0).with_speed(0.0));
    let mut all = Vec::new();
    // 60 km/h for 10 minutes: 10 km, about 0.119 deg of longitude at 41N.
    for i in 1..=60 {
        let lon = 123.0 + 0.119 * i as f64 / 60.0;
        all.extend(apply(
            &mut tr,
            "t1",
            fix(lon, 41.0, i * 10).with_speed(60.0),
        ));
    }
    assert!(kinds(&all).contains(&EventType::ShipmentDeparted));
    let eta = tr.shipment_eta(T, "S1").unwrap();
    assert_eq!(eta.method, EtaMethod::Route);
    assert!((eta.remaining_m - 74_000.0).abs() < 1_500.0, "{eta:?}");
    let hours = eta.remaining_s / 3600.0;
    assert!((hours - 74.0 / 60.0).abs() < 0.1, "{hours} h");
    // The truck stops for half an hour: the ETA slips and eta_changed fires.
    let mut stopped = Vec::new();
    for i in 61..=240 {
        stopped.extend(apply(
            &mut tr,
            "t1",
            fix(123.119, 41.0, i * 10).with_speed(0.0),
        ));
    }
    let changed: Vec<_> = stopped
        .iter()
        .filter(|e| e.kind == EventType::ShipmentEtaChanged)
        .collect();
    assert!(!changed.is_empty());
    assert!(
        changed[0].data["eta"].as_str().unwrap() > changed[0].data["previous"].as_str().unwrap()
    );
}

#[test]
fn late_risk_fires_once_when_the_eta_passes_the_deadline() {
    let mut tr = tracker();
    let mut def = shipment(
        "S1",
        Some(Place::Point {
            lon: 123.0,
            lat: 41.0,
        }),
        Place::Point {
            lon: 124.0,
            lat: 41.0,
        },
    );
    def.route = Some(east_route());
    def.deadline_ms = Some(T0 + 3_600_000); // 84 km in an hour needs 84 km/h
    tr.upsert_shipment(T, def).unwrap();
    let mut all = apply(&mut tr, "t1", fix(123.0, 41.0, 0));
    for i in 1..=30 {
        let lon = 123.0 + 0.0119 * i as f64 / 6.0; // 60 km/h
        all.extend(apply(
            &mut tr,
            "t1",
            fix(lon, 41.0, i * 10).with_speed(60.0),
        ));
    }
    let late: Vec<_> = all
        .iter()
        .filter(|e| e.kind == EventType::ShipmentLateRisk)
        .collect();
    assert_eq!(late.len(), 1, "{:?}", kinds(&all));
    assert!(late[0].data["late_by_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn leaving_the_route_corridor_fires_deviated_then_rejoined() {
    let mut tr = tracker();
    let mut def = shipment(
        "S1",
        Some(Place::Point {
            lon: 123.0,
            lat: 41.0,
        }),
        Place::Point {
            lon: 124.0,
            lat: 41.0,
        },
    );
    def.route = Some(east_route());
    def.route_corridor_m = Some(500.0);
    tr.upsert_shipment(T, def).unwrap();
    apply(&mut tr, "t1", fix(123.0, 41.0, 0));
    apply(&mut tr, "t1", fix(123.1, 41.0, 300));
    // 0.02 deg north = 2.2 km off the route.
    assert!(
        apply(&mut tr, "t1", fix(123.2, 41.02, 600))
            .iter()
            .all(|e| e.kind != EventType::RouteDeviated)
    );
    let ev = apply(&mut tr, "t1", fix(123.21, 41.02, 640));
    assert!(
        kinds(&ev).contains(&EventType::RouteDeviated),
        "{:?}",
        kinds(&ev)
    );
    let dev = ev
        .iter()
        .find(|e| e.kind == EventType::RouteDeviated)
        .unwrap();
    assert_eq!(dev.ts_ms, T0 + 600_000);
    assert!(dev.data["off_route_m"].as_f64().unwrap() > 2_000.0);
    apply(&mut tr, "t1", fix(123.3, 41.001, 900));
    let ev = apply(&mut tr, "t1", fix(123.31, 41.0, 940));
    assert!(
        kinds(&ev).contains(&EventType::RouteRejoined),
        "{:?}",
        kinds(&ev)
    );
}

#[test]
fn overspeed_fires_once_per_episode() {
    let mut tr = tracker();
    let mut def = shipment(
        "S1",
        None,
        Place::Point {
            lon: 124.0,
            lat: 41.0,
        },
    );
    def.max_speed_kmh = Some(80.0);
    tr.upsert_shipment(T, def).unwrap();
    let speeds = [70.0, 85.0, 90.0, 79.0, 85.0, 70.0, 95.0];
    let mut fired = Vec::new();
    for (i, v) in speeds.iter().enumerate() {
        let ev = apply(
            &mut tr,
            "t1",
            fix(123.0 + i as f64 * 0.01, 41.0, i as i64 * 10).with_speed(*v),
        );
        fired.extend(
            ev.into_iter()
                .filter(|e| e.kind == EventType::DeviceOverspeed),
        );
    }
    // 85 starts an episode; 79 is within the hysteresis band, 70 ends it; 95 starts another.
    assert_eq!(fired.len(), 2);
    assert_eq!(fired[0].data["limit_kmh"], 80.0);
    assert_eq!(fired[0].shipment.as_deref(), Some("S1"));
}

fn reefer() -> Tracker {
    let mut tr = tracker();
    let mut def = shipment(
        "S1",
        None,
        Place::Point {
            lon: 124.0,
            lat: 41.0,
        },
    );
    def.temp_range_c = Some([-25.0, -15.0]);
    tr.upsert_shipment(T, def).unwrap();
    tr
}

fn temp(t: i64, c: f64) -> Reading {
    Reading::at(T0 + t * 1000).with_temp(c)
}

#[test]
fn a_short_temperature_blip_is_not_an_excursion() {
    let mut tr = reefer();
    let mut all = Vec::new();
    for (t, c) in [
        (0, -18.0),
        (60, -12.0),
        (200, -10.0),
        (250, -18.0),
        (900, -18.0),
    ] {
        all.extend(apply(&mut tr, "t1", temp(t, c)));
    }
    assert!(all.is_empty(), "{:?}", kinds(&all));
}

#[test]
fn excursion_fires_after_the_grace_period_and_recovery_reports_begin_end_duration_peak() {
    let mut tr = reefer();
    let mut all = Vec::new();
    for (t, c) in [
        (0, -18.0),
        (60, -12.0),
        (200, -9.5),
        (300, -11.0),
        (400, -13.0),
        (700, -17.0),
    ] {
        all.extend(apply(&mut tr, "t1", temp(t, c)));
    }
    assert_eq!(
        kinds(&all),
        [
            EventType::TemperatureExcursion,
            EventType::TemperatureRecovered
        ]
    );
    let exc = &all[0];
    assert_eq!(exc.ts_ms, T0 + 360_000, "begin + 300 s grace");
    assert_eq!(exc.data["begin"], format_rfc3339(T0 + 60_000));
    let rec = &all[1];
    assert_eq!(rec.data["end"], format_rfc3339(T0 + 700_000));
    assert_eq!(rec.data["duration_s"], 640.0);
    assert_eq!(rec.data["peak_c"], -9.5);
    assert_eq!(rec.shipment.as_deref(), Some("S1"));
}

#[test]
fn an_excursion_is_confirmed_by_the_timer_when_readings_stop() {
    let mut tr = reefer();
    apply(&mut tr, "t1", temp(0, -18.0));
    apply(&mut tr, "t1", temp(60, -5.0));
    let mut out = Vec::new();
    tr.on_timer(T0 + 359_000, &mut out);
    out.retain(|e| e.kind != EventType::DeviceOffline);
    assert!(out.is_empty());
    tr.on_timer(T0 + 360_000, &mut out);
    out.retain(|e| e.kind != EventType::DeviceOffline);
    assert_eq!(kinds(&out), [EventType::TemperatureExcursion]);
    // The same episode seen by a reading gets the same id.
    let mut tr2 = reefer();
    apply(&mut tr2, "t1", temp(0, -18.0));
    apply(&mut tr2, "t1", temp(60, -5.0));
    let ev = apply(&mut tr2, "t1", temp(400, -5.0));
    assert_eq!(ev[0].id, out[0].id);
}

#[test]
fn a_device_profile_range_watches_a_cold_room_without_a_shipment() {
    let mut tr = tracker();
    tr.set_device_profile(
        T,
        "coldroom",
        DeviceProfile {
            temp_range_c: Some([0.0, 4.0]),
            max_speed_kmh: None,
        },
    );
    let mut all = Vec::new();
    for (t, c) in [(0, 3.0), (10, 6.0), (400, 6.5), (500, 3.0)] {
        all.extend(apply(&mut tr, "coldroom", temp(t, c)));
    }
    assert_eq!(
        kinds(&all),
        [
            EventType::TemperatureExcursion,
            EventType::TemperatureRecovered
        ]
    );
    assert_eq!(all[0].shipment, None);
}

/// A cold room with range [2, 8] that reads 12 degrees at `t` = 10 s: an excursion opens.
fn coldroom_out_of_range() -> Tracker {
    let mut tr = tracker();
    let profile = DeviceProfile {
        temp_range_c: Some([2.0, 8.0]),
        max_speed_kmh: None,
    };
    tr.set_device_profile(T, "coldroom", profile);
    apply(&mut tr, "coldroom", temp(0, 5.0));
    apply(&mut tr, "coldroom", temp(10, 12.0));
    tr
}

#[test]
fn removing_the_range_during_an_open_excursion_settles_it_and_timers_go_on() {
    let mut tr = coldroom_out_of_range();
    tr.set_device_profile(T, "coldroom", DeviceProfile::default());
    // Past the grace period (300 s from t = 10 s): before the fix this call never returned.
    let mut out = Vec::new();
    tr.on_timer(T0 + 309_000, &mut out);
    assert!(out.is_empty(), "{:?}", kinds(&out));
    assert_eq!(tr.stalled_timers(), 0);
    // The device still goes offline when it falls silent (300 s), and nothing else is due.
    tr.on_timer(T0 + 400_000, &mut out);
    assert_eq!(kinds(&out), [EventType::DeviceOffline]);
    assert_eq!(
        tr.stalled_timers(),
        0,
        "no deadline left that no rule can fire"
    );
    assert_eq!(tr.next_deadline(), None);
}

#[test]
fn changing_the_range_during_an_open_excursion_starts_over_against_the_new_range() {
    let mut tr = coldroom_out_of_range();
    let wider = DeviceProfile {
        temp_range_c: Some([2.0, 10.0]),
        max_speed_kmh: None,
    };
    tr.set_device_profile(T, "coldroom", wider);
    let mut out = Vec::new();
    tr.on_timer(T0 + 309_000, &mut out);
    assert!(out.is_empty(), "the old episode is gone: {:?}", kinds(&out));
    // Still out of the new range from t = 320 s: a new episode, fired 300 s later.
    assert!(apply(&mut tr, "coldroom", temp(320, 11.0)).is_empty());
    tr.on_timer(T0 + 619_000, &mut out);
    assert!(out.is_empty(), "{:?}", kinds(&out));
    tr.on_timer(T0 + 620_000, &mut out);
    out.retain(|e| e.kind != EventType::DeviceOffline);
    assert_eq!(kinds(&out), [EventType::TemperatureExcursion]);
    assert_eq!(out[0].data["begin"], format_rfc3339(T0 + 320_000));
}

#[test]
fn keeping_the_range_keeps_the_open_excursion() {
    let mut tr = coldroom_out_of_range();
    let same_range = DeviceProfile {
        temp_range_c: Some([2.0, 8.0]),
        max_speed_kmh: Some(90.0),
    };
    tr.set_device_profile(T, "coldroom", same_range);
    let mut out = Vec::new();
    tr.on_timer(T0 + 309_000, &mut out);
    assert!(out.is_empty(), "{:?}", kinds(&out));
    tr.on_timer(T0 + 310_000, &mut out);
    out.retain(|e| e.kind != EventType::DeviceOffline);
    assert_eq!(kinds(&out), [EventType::TemperatureExcursion]);
    assert_eq!(out[0].data["begin"], format_rfc3339(T0 + 10_000));
}

#[test]
fn a_deadline_no_rule_can_advance_is_counted_and_skipped_not_spun_on() {
    let mut tr = tracker();
    apply(&mut tr, "t1", fix(IN.0, IN.1, 0));
    let slot = tr.find_device(T, "t1").unwrap().0 as usize;
    // A due deadline that device_timers can never move: the shape of the freeze bug.
    tr.stuck_deadline = Some((slot, T0 + 5_000));
    tr.arm_timer(slot);
    let mut out = Vec::new();
    tr.on_timer(T0 + 6_000, &mut out);
    assert!(out.is_empty());
    assert_eq!(tr.stalled_timers(), 1);
    // Not re-armed: the next call has nothing to do for it.
    tr.on_timer(T0 + 7_000, &mut out);
    assert_eq!(tr.stalled_timers(), 1);
    // Once the cause is gone, the device's next reading arms its real deadlines again.
    tr.stuck_deadline = None;
    apply(&mut tr, "t1", fix(IN.0, IN.1, 8));
    tr.on_timer(T0 + 8_000 + 3_600_000, &mut out);
    assert_eq!(kinds(&out), [EventType::DeviceOffline]);
}

#[test]
fn weight_steps_report_load_and_unload_with_the_geofence() {
    let mut tr = tracker_fence_zero_confirm();
    let w = |t: i64, lon: f64, kg: f64| fix(lon, 41.0, t).with_weight(kg);
    assert!(apply(&mut tr, "t1", w(0, 123.05, 8_000.0)).is_empty());
    apply(&mut tr, "t1", w(10, 123.0, 8_050.0)); // noise, and entering the warehouse
    let ev = apply(&mut tr, "t1", w(600, 123.0, 26_000.0));
    assert_eq!(kinds(&ev), [EventType::WeightChanged]);
    assert_eq!(ev[0].geofence.as_deref(), Some("wh"));
    assert_eq!(ev[0].data["direction"], "load");
    assert_eq!(ev[0].data["delta_kg"], 18_000.0);
    let ev = apply(&mut tr, "t1", w(3_000, 123.05, 8_100.0));
    let wc: Vec<_> = ev
        .iter()
        .filter(|e| e.kind == EventType::WeightChanged)
        .collect();
    assert_eq!(wc[0].data["direction"], "unload");
    assert_eq!(wc[0].geofence, None, "unloaded outside any fence");
}

#[test]
fn fences_crossing_the_antimeridian_work() {
    let mut tr = tracker();
    let ring = LineString::from(vec![
        (179.5, -17.0),
        (-179.5, -17.0),
        (-179.5, -16.0),
        (179.5, -16.0),
        (179.5, -17.0),
    ]);
    let def = GeofenceDef {
        id: "fiji".into(),
        name: "Fiji".into(),
        kind: "port".into(),
        shape: Shape::Area(MultiPolygon(vec![Polygon::new(ring, vec![])])),
        confirm_seconds: Some(0),
        dwell_seconds: None,
    };
    tr.upsert_geofence(T, def).unwrap();
    apply(&mut tr, "ship", fix(178.0, -16.5, 0));
    assert_eq!(
        kinds(&apply(&mut tr, "ship", fix(179.9, -16.5, 60))),
        [EventType::GeofenceEntered]
    );
    assert!(
        apply(&mut tr, "ship", fix(-179.9, -16.5, 120)).is_empty(),
        "still inside across the line"
    );
    assert_eq!(
        kinds(&apply(&mut tr, "ship", fix(-178.0, -16.5, 180))),
        [EventType::GeofenceExited]
    );
}

#[test]
fn circle_and_corridor_fences_fire_like_polygons() {
    let mut tr = tracker();
    tr.upsert_geofence(
        T,
        GeofenceDef {
            id: "yard".into(),
            name: "Yard".into(),
            kind: "depot".into(),
            shape: Shape::Circle {
                center: Point::new(123.0, 41.0),
                radius_m: 500.0,
            },
            confirm_seconds: Some(0),
            dwell_seconds: None,
        },
    )
    .unwrap();
    tr.upsert_geofence(
        T,
        GeofenceDef {
            id: "g15".into(),
            name: "Expressway".into(),
            kind: "corridor".into(),
            shape: Shape::Corridor {
                line: LineString::from(vec![(123.1, 41.0), (123.1, 41.5)]),
                corridor_m: 200.0,
            },
            confirm_seconds: Some(0),
            dwell_seconds: None,
        },
    )
    .unwrap();
    apply(&mut tr, "t1", fix(123.0, 41.01, 0)); // 1.1 km north of the yard centre
    let ev = apply(&mut tr, "t1", fix(123.0, 41.004, 10)); // 444 m
    assert_eq!(kinds(&ev), [EventType::GeofenceEntered]);
    let ev = apply(&mut tr, "t1", fix(123.1 + 0.002, 41.2, 600)); // ~170 m from the road
    assert_eq!(
        kinds(&ev),
        [EventType::GeofenceExited, EventType::GeofenceEntered]
    );
    assert_eq!(ev[1].geofence.as_deref(), Some("g15"));
}

#[test]
fn tenants_do_not_see_each_others_fences_or_devices() {
    let mut tr = tracker_fence_zero_confirm();
    let slot = tr.device_slot("other", "t1");
    let mut out = Vec::new();
    tr.apply(slot, &fix(OUT.0, OUT.1, 0), T0, &mut out);
    tr.apply(slot, &fix(IN.0, IN.1, 10), T0 + 10_000, &mut out);
    assert!(out.is_empty());
    assert!(tr.device(T, "t1").is_none());
    assert!(tr.in_bbox(T, [122.0, 40.0, 124.0, 42.0]).is_empty());
    assert_eq!(tr.in_bbox("other", [122.0, 40.0, 124.0, 42.0]).len(), 1);
    assert!(tr.geofence("other", "wh").is_none());
}

#[test]
fn deleting_a_geofence_drops_its_members_silently() {
    let mut tr = tracker_fence_zero_confirm();
    apply(&mut tr, "t1", fix(OUT.0, OUT.1, 0));
    apply(&mut tr, "t1", fix(IN.0, IN.1, 10));
    assert!(tr.remove_geofence(T, "wh"));
    assert!(tr.device(T, "t1").unwrap().geofences.is_empty());
    assert!(apply(&mut tr, "t1", fix(OUT.0, OUT.1, 20)).is_empty());
    assert!(tr.devices_in_geofence(T, "wh").is_none());
}

#[test]
fn spatial_queries_return_the_tenants_live_positions() {
    let mut tr = tracker();
    apply(&mut tr, "a", fix(123.0, 41.0, 0));
    apply(&mut tr, "b", fix(123.01, 41.0, 0));
    apply(&mut tr, "c", fix(125.0, 41.0, 0));
    apply(&mut tr, "a", fix(123.002, 41.0, 10)); // moved
    let ids: Vec<_> = tr
        .in_bbox(T, [122.9, 40.9, 123.1, 41.1])
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
    let near = tr.nearby(T, 123.0, 41.0, 2_000.0, 10);
    assert_eq!(
        near.iter().map(|(d, _)| d.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!((near[0].1 - 168.3).abs() < 1.0, "{}", near[0].1);
}

fn scripted(tr: &mut Tracker) -> Vec<Event> {
    let mut all = Vec::new();
    for i in 0..200i64 {
        let lon = 122.95 + 0.001 * i as f64;
        let r = fix(lon, 41.0, i * 15).with_temp(if (80..120).contains(&i) { -5.0 } else { -20.0 });
        all.extend(apply(tr, "t1", r));
    }
    all
}

#[test]
fn replaying_the_same_readings_gives_the_same_events_and_ids() {
    let mut a = with_fence();
    let mut b = with_fence();
    a.upsert_shipment(T, {
        let mut s = shipment(
            "S1",
            None,
            Place::Point {
                lon: 124.0,
                lat: 41.0,
            },
        );
        s.temp_range_c = Some([-25.0, -15.0]);
        s
    })
    .unwrap();
    b.upsert_shipment(T, a.shipment(T, "S1").unwrap().def.clone())
        .unwrap();
    let ea = scripted(&mut a);
    let eb = scripted(&mut b);
    assert!(ea.len() >= 4, "{:?}", kinds(&ea));
    assert_eq!(ea, eb);
}

#[test]
fn a_restored_snapshot_continues_without_refiring() {
    let mut tr = with_fence();
    apply(&mut tr, "t1", fix(OUT.0, OUT.1, 0));
    apply(&mut tr, "t1", fix(IN.0, IN.1, 10));
    let entered = apply(&mut tr, "t1", fix(IN.0, IN.1, 50));
    assert_eq!(kinds(&entered), [EventType::GeofenceEntered]);
    let json = serde_json::to_string(&tr.snapshot()).unwrap();
    let mut restored = Tracker::restore(serde_json::from_str(&json).unwrap()).unwrap();
    for t in [60, 70] {
        assert_eq!(
            apply(&mut tr, "t1", fix(IN.0, IN.1, t)),
            apply(&mut restored, "t1", fix(IN.0, IN.1, t))
        );
    }
    let a = apply(&mut tr, "t1", fix(OUT.0, OUT.1, 100));
    let b = apply(&mut restored, "t1", fix(OUT.0, OUT.1, 100));
    assert_eq!(a, b);
    let a = apply(&mut tr, "t1", fix(OUT.0, OUT.1, 200));
    let b = apply(&mut restored, "t1", fix(OUT.0, OUT.1, 200));
    assert_eq!(kinds(&a), [EventType::GeofenceExited]);
    assert_eq!(a, b);
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    tr.on_timer(T0 + 10_000_000, &mut ta);
    restored.on_timer(T0 + 10_000_000, &mut tb);
    assert_eq!(kinds(&ta), [EventType::DeviceOffline]);
    assert_eq!(ta, tb);
}

#[test]
fn a_device_with_no_readings_has_no_position() {
    let mut tr = tracker();
    tr.device_slot(T, "idle");
    let d = tr.device(T, "idle").unwrap();
    assert!(d.fix.is_none() && !d.online && d.last_seen_ms.is_none());
}

#[test]
fn a_snapshot_restores_shipments_whose_device_was_removed() {
    let mut tr = tracker();
    tr.upsert_shipment(
        T,
        shipment(
            "S1",
            None,
            Place::Point {
                lon: 124.0,
                lat: 41.0,
            },
        ),
    )
    .unwrap();
    apply(&mut tr, "t1", fix(123.0, 41.0, 0));
    assert!(tr.remove_device(T, "t1"));
    let restored = Tracker::restore(tr.snapshot()).unwrap();
    assert_eq!(restored.shipment(T, "S1").unwrap().def.device, "t1");
    assert!(restored.device(T, "t1").is_none());
}

// ----- ETA hysteresis -----------------------------------------------------------------------
// A truck that reports speed 0 and stands still has a constant distance to go and plans with
// the floor speed (5 km/h, once warmed up): its ETA is "now + a constant", so it moves exactly
// as fast as device time passes. That makes the threshold testable to the millisecond.

/// A fix `ms` milliseconds after T0, reporting speed 0.
fn parked(lon: f64, lat: f64, ms: i64) -> Reading {
    Reading::at(T0 + ms).with_position(lon, lat).with_speed(0.0)
}

fn eta_changes(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.kind == EventType::ShipmentEtaChanged)
        .collect()
}

/// A shipment from (123.0, 41.0) to `destination`, whose truck stood at the origin for three
/// minutes (speed 0) and then moved to `park` (~555 m north, reporting speed 0) and parked
/// there: in transit from `DEPARTED_MS` on, with its first ETA announced. The default speed
/// is the 5 km/h floor, so the truck plans at 5 km/h from its departure on (never seen moving,
/// and standing still since): its ETA moves exactly as fast as time passes.
fn parked_in_transit(destination: (f64, f64)) -> Tracker {
    parked_in_transit_due(destination, None)
}

/// [`parked_in_transit`] with a delivery deadline.
fn parked_in_transit_due(destination: (f64, f64), deadline_ms: Option<TimestampMs>) -> Tracker {
    let mut tr = Tracker::new(TrackerSettings {
        eta: EtaSettings {
            default_speed_kmh: 5.0,
            ..EtaSettings::default()
        },
        ..TrackerSettings::default()
    });
    let mut def = shipment(
        "S1",
        Some(Place::Point {
            lon: 123.0,
            lat: 41.0,
        }),
        Place::Point {
            lon: destination.0,
            lat: destination.1,
        },
    );
    def.deadline_ms = deadline_ms;
    tr.upsert_shipment(T, def).unwrap();
    for t in [0, 60, 120, 180] {
        assert!(apply(&mut tr, "t1", parked(123.0, 41.0, t * 1000)).is_empty());
    }
    let ev = apply(&mut tr, "t1", parked(PARK.0, PARK.1, DEPARTED_MS));
    assert_eq!(kinds(&ev), [EventType::ShipmentDeparted]);
    let sh = tr.shipment(T, "S1").unwrap();
    assert_eq!(sh.status, ShipmentStatus::InTransit);
    assert_eq!(sh.announced_eta_ms, sh.eta.map(|e| e.eta_ms));
    tr
}

const PARK: (f64, f64) = (123.0, 41.005);
const DEPARTED_MS: i64 = 240_000;

#[test]
fn a_parked_trucks_eta_moves_exactly_as_fast_as_time_passes() {
    // The premise of the threshold tests below.
    let mut tr = parked_in_transit((123.0, 41.02));
    let first = tr.shipment_eta(T, "S1").unwrap();
    apply(&mut tr, "t1", parked(PARK.0, PARK.1, DEPARTED_MS + 123_457));
    let later = tr.shipment_eta(T, "S1").unwrap();
    assert_eq!(later.eta_ms - first.eta_ms, 123_457);
    assert_eq!(later.remaining_s, first.remaining_s);
    // No route: the straight distance times the detour factor, at the 5 km/h floor.
    let straight = geodesy::distance_m(PARK, (123.0, 41.02));
    assert!(
        (later.remaining_m - straight * 1.3).abs() < 1e-6,
        "{later:?}"
    );
    assert!((later.remaining_s - later.remaining_m / (5.0 / 3.6)).abs() < 1e-6);
    // ~1.67 km straight x 1.3 detour at 5 km/h: about 26 minutes to go, so 10 % is under the
    // 5-minute floor and the threshold is 300 s.
    assert!(later.remaining_s > 1_000.0 && later.remaining_s < 3_000.0);
}

#[test]
fn eta_changed_fires_only_when_the_eta_moved_by_more_than_five_minutes() {
    let mut tr = parked_in_transit((123.0, 41.02));
    let announced = tr.shipment(T, "S1").unwrap().announced_eta_ms.unwrap();
    for ms in [60_000, 299_999, 300_000] {
        let ev = apply(&mut tr, "t1", parked(PARK.0, PARK.1, DEPARTED_MS + ms));
        assert!(ev.is_empty(), "moved {ms} ms: {:?}", kinds(&ev));
    }
    let ev = apply(&mut tr, "t1", parked(PARK.0, PARK.1, DEPARTED_MS + 300_001));
    assert_eq!(kinds(&ev), [EventType::ShipmentEtaChanged]);
    assert_eq!(ev[0].data["previous"], format_rfc3339(announced));
    assert_eq!(ev[0].data["eta"], format_rfc3339(announced + 300_001));
    assert_eq!(ev[0].ts_ms, T0 + DEPARTED_MS + 300_001);
}

#[test]
fn after_eta_changed_the_next_change_is_measured_from_the_announced_eta() {
    let mut tr = parked_in_transit((123.0, 41.02));
    let first = tr.shipment(T, "S1").unwrap().announced_eta_ms.unwrap();
    let ev = apply(&mut tr, "t1", parked(PARK.0, PARK.1, DEPARTED_MS + 300_001));
    assert_eq!(eta_changes(&ev).len(), 1);
    let second = first + 300_001;
    assert_eq!(tr.shipment(T, "S1").unwrap().announced_eta_ms, Some(second));
    // 600 s after the first announcement but exactly 300 s after the second: nothing.
    let ev = apply(&mut tr, "t1", parked(PARK.0, PARK.1, DEPARTED_MS + 600_001));
    assert!(ev.is_empty(), "{:?}", kinds(&ev));
    let ev = apply(&mut tr, "t1", parked(PARK.0, PARK.1, DEPARTED_MS + 600_002));
    let changed = eta_changes(&ev);
    assert_eq!(changed.len(), 1, "{:?}", kinds(&ev));
    assert_eq!(changed[0].data["previous"], format_rfc3339(second));
    assert_eq!(changed[0].data["eta"], format_rfc3339(second + 300_001));
}

#[test]
fn with_hours_to_go_eta_changed_waits_for_ten_percent_of_the_time_remaining() {
    // ~10 km straight x 1.3 at 5 km/h: about 2.6 h to go, so 10 % (~15.6 min) is the threshold.
    let mut tr = parked_in_transit((123.0, 41.095));
    let remaining_s = tr.shipment_eta(T, "S1").unwrap().remaining_s;
    let threshold_ms = (0.1 * remaining_s * 1000.0).floor() as i64;
    assert!(threshold_ms > 600_000, "{threshold_ms}");
    for ms in [300_001, 600_000, threshold_ms] {
        let ev = apply(&mut tr, "t1", parked(PARK.0, PARK.1, DEPARTED_MS + ms));
        assert!(ev.is_empty(), "moved {ms} ms: {:?}", kinds(&ev));
    }
    let ev = apply(
        &mut tr,
        "t1",
        parked(PARK.0, PARK.1, DEPARTED_MS + threshold_ms + 1),
    );
    assert_eq!(kinds(&ev), [EventType::ShipmentEtaChanged]);
}

#[test]
fn small_eta_drift_over_many_readings_fires_nothing() {
    // The truck reports 60 km/h (the default speed too, so warm-up changes nothing) but makes
    // 57 km/h along its route, with some GPS noise: as its own mean speed takes over, its ETA
    // slips slowly towards the truth, by under 5 minutes in half an hour (all 84 km at 57
    // instead of 60 km/h are 4.4 minutes more).
    let mut tr = Tracker::new(TrackerSettings {
        eta: EtaSettings {
            default_speed_kmh: 60.0,
            ..EtaSettings::default()
        },
        ..TrackerSettings::default()
    });
    let mut def = shipment(
        "S1",
        None,
        Place::Point {
            lon: 124.0,
            lat: 41.0,
        },
    );
    def.route = Some(east_route());
    tr.upsert_shipment(T, def).unwrap();
    let deg_per_m = 1.0 / geodesy::metres_per_degree(41.0).0;
    let mut all = Vec::new();
    let (mut lowest, mut highest) = (i64::MAX, i64::MIN);
    for i in 0..=180i64 {
        let travelled_m = 57.0 / 3.6 * (i * 10) as f64;
        let noise_m = 25.0 * (i as f64 * 1.7).sin();
        let lon = 123.0 + (travelled_m + noise_m) * deg_per_m;
        all.extend(apply(
            &mut tr,
            "t1",
            fix(lon, 41.0, i * 10).with_speed(60.0),
        ));
        let sh = tr.shipment(T, "S1").unwrap();
        if let (Some(announced), Some(eta)) = (sh.announced_eta_ms, sh.eta) {
            lowest = lowest.min(eta.eta_ms - announced);
            highest = highest.max(eta.eta_ms - announced);
        }
    }
    assert_eq!(
        kinds(&all),
        [EventType::ShipmentDeparted],
        "departed, and nothing else: {:?}",
        all.iter()
            .map(|e| (e.kind, e.ts_ms - T0, e.data.clone()))
            .collect::<Vec<_>>()
    );
    // The drift is real (the test is not vacuous) and stays under the threshold.
    assert!(highest - lowest > 100_000, "{lowest}..{highest} ms");
    assert!(
        lowest > -300_000 && highest < 300_000,
        "{lowest}..{highest} ms"
    );
}

// ----- fences changed under devices that have reported ------------------------------------

#[test]
fn a_fence_created_around_a_parked_truck_is_entered_once_confirmed() {
    let mut tr = tracker();
    for t in [0, 60] {
        assert!(apply(&mut tr, "t1", fix(IN.0, IN.1, t)).is_empty());
    }
    let mut f = square("wh", 123.0, 41.0, 0.01);
    f.confirm_seconds = Some(45);
    tr.upsert_geofence(T, f).unwrap();
    assert!(apply(&mut tr, "t1", fix(IN.0, IN.1, 120)).is_empty());
    assert!(
        apply(&mut tr, "t1", fix(IN.0, IN.1, 164)).is_empty(),
        "44 s < the fence's 45 s"
    );
    let ev = apply(&mut tr, "t1", fix(IN.0, IN.1, 165));
    assert_eq!(kinds(&ev), [EventType::GeofenceEntered]);
    assert_eq!(ev[0].geofence.as_deref(), Some("wh"));
    // Between the last reading before the fence existed and the first one after.
    assert!(
        (T0 + 60_000..=T0 + 120_000).contains(&ev[0].ts_ms),
        "{}",
        ev[0].ts_ms - T0
    );
    assert_eq!(tr.device(T, "t1").unwrap().geofences, ["wh"]);
    assert_eq!(tr.devices_in_geofence(T, "wh").unwrap(), ["t1"]);
    assert!(
        apply(&mut tr, "t1", fix(IN.0, IN.1, 300)).is_empty(),
        "once"
    );
}

#[test]
fn a_fence_created_around_a_parked_truck_with_zero_confirm_is_entered_at_its_next_reading() {
    let mut tr = tracker();
    apply(&mut tr, "t1", fix(IN.0, IN.1, 0));
    let mut f = square("wh", 123.0, 41.0, 0.01);
    f.confirm_seconds = Some(0);
    tr.upsert_geofence(T, f).unwrap();
    assert_eq!(
        kinds(&apply(&mut tr, "t1", fix(IN.0, IN.1, 60))),
        [EventType::GeofenceEntered]
    );
}

#[test]
fn a_fence_shrunk_away_from_a_parked_truck_is_exited_once_confirmed() {
    let mut tr = with_fence();
    // Parked 0.005 deg east of the centre: inside the 0.01 fence, outside a 0.002 one.
    let spot = (123.005, 41.0);
    apply(&mut tr, "t1", fix(spot.0, spot.1, 0));
    let ev = apply(&mut tr, "t1", fix(spot.0, spot.1, 30));
    assert_eq!(kinds(&ev), [EventType::GeofenceEntered]);
    apply(&mut tr, "t1", fix(spot.0, spot.1, 90));
    tr.upsert_geofence(T, square("wh", 123.0, 41.0, 0.002))
        .unwrap();
    assert!(apply(&mut tr, "t1", fix(spot.0, spot.1, 120)).is_empty());
    assert!(
        apply(&mut tr, "t1", fix(spot.0, spot.1, 149)).is_empty(),
        "29 s < 30 s"
    );
    let ev = apply(&mut tr, "t1", fix(spot.0, spot.1, 150));
    assert_eq!(kinds(&ev), [EventType::GeofenceExited]);
    assert_eq!(ev[0].geofence.as_deref(), Some("wh"));
    assert!(
        (T0 + 90_000..=T0 + 120_000).contains(&ev[0].ts_ms),
        "{}",
        ev[0].ts_ms - T0
    );
    assert!(tr.device(T, "t1").unwrap().geofences.is_empty());
    assert_eq!(
        tr.devices_in_geofence(T, "wh").unwrap(),
        Vec::<String>::new()
    );
    assert!(
        apply(&mut tr, "t1", fix(spot.0, spot.1, 300)).is_empty(),
        "once"
    );
}

#[test]
fn a_fence_reshaped_but_still_around_a_parked_truck_changes_nothing() {
    let mut tr = with_fence();
    let spot = (123.005, 41.0);
    apply(&mut tr, "t1", fix(spot.0, spot.1, 0));
    apply(&mut tr, "t1", fix(spot.0, spot.1, 30));
    tr.upsert_geofence(T, square("wh", 123.001, 41.0, 0.008))
        .unwrap();
    for t in [60, 120, 600] {
        assert!(apply(&mut tr, "t1", fix(spot.0, spot.1, t)).is_empty());
    }
    assert_eq!(tr.device(T, "t1").unwrap().geofences, ["wh"]);
}

// ----- a route changed in transit -----------------------------------------------------------

/// The length in metres of the polyline through `pts`, segment by segment.
fn polyline_m(pts: &[(f64, f64)]) -> f64 {
    pts.windows(2)
        .map(|w| geodesy::distance_m(w[0], w[1]))
        .sum()
}

/// S1 on `east_route`, departed from (123.0, 41.0) and now at (123.2, 41.0) at 60 km/h.
fn in_transit_on_the_east_route() -> (Tracker, Vec<Event>) {
    let mut tr = tracker();
    let mut def = shipment(
        "S1",
        Some(Place::Point {
            lon: 123.0,
            lat: 41.0,
        }),
        Place::Point {
            lon: 124.0,
            lat: 41.0,
        },
    );
    def.route = Some(east_route());
    tr.upsert_shipment(T, def).unwrap();
    let mut all = Vec::new();
    for i in 0..=20 {
        let lon = 123.0 + 0.01 * i as f64;
        all.extend(apply(
            &mut tr,
            "t1",
            fix(lon, 41.0, i * 50).with_speed(60.0),
        ));
    }
    (tr, all)
}

#[test]
fn moving_the_destination_fence_replans_the_direct_eta_at_once() {
    let mut tr = tracker();
    tr.upsert_geofence(T, square("dest", 123.5, 41.0, 0.01))
        .unwrap();
    tr.upsert_shipment(T, shipment("S1", None, Place::Geofence("dest".into())))
        .unwrap();
    apply(&mut tr, "t1", fix(123.0, 41.0, 0));
    let old = tr.shipment_eta(T, "S1").unwrap();
    assert_eq!(old.method, EtaMethod::Direct);
    let detour = TrackerSettings::default().eta.detour_factor;
    let to_old = geodesy::distance_m((123.0, 41.0), (123.5, 41.0)) * detour;
    assert!((old.remaining_m - to_old).abs() < 1.0, "{old:?}");

    // The fence is redrawn 0.5 degrees further east: the ETA aims at its new centre before
    // the next reading, not at where it used to be.
    tr.upsert_geofence(T, square("dest", 124.0, 41.0, 0.01))
        .unwrap();
    let now = tr.shipment_eta(T, "S1").unwrap();
    let to_new = geodesy::distance_m((123.0, 41.0), (124.0, 41.0)) * detour;
    assert!(
        (now.remaining_m - to_new).abs() < 1.0,
        "{now:?} vs {to_new}"
    );
}

#[test]
fn a_new_route_in_transit_replans_the_eta_without_departing_again() {
    let (mut tr, before) = in_transit_on_the_east_route();
    let departed = |ev: &[Event]| {
        ev.iter()
            .filter(|e| e.kind == EventType::ShipmentDeparted)
            .count()
    };
    assert_eq!(departed(&before), 1, "{:?}", kinds(&before));
    let old = tr.shipment_eta(T, "S1").unwrap();
    let to_go_on_old = polyline_m(&[(123.2, 41.0), (123.5, 41.0), (124.0, 41.0)]);
    assert!((old.remaining_m - to_go_on_old).abs() < 1.0, "{old:?}");

    // A detour north from where the truck is: up to 41.1, east, and back down.
    let detour = [(123.2, 41.1), (124.0, 41.1), (124.0, 41.0)];
    let mut def = tr.shipment(T, "S1").unwrap().def.clone();
    def.route = Some(LineString::from(
        [(123.0, 41.0), (123.2, 41.0)]
            .into_iter()
            .chain(detour)
            .collect::<Vec<_>>(),
    ));
    tr.upsert_shipment(T, def).unwrap();
    let to_go_on_new = polyline_m(&[(123.2, 41.0), detour[0], detour[1], detour[2]]);
    assert!(to_go_on_new > to_go_on_old + 20_000.0);

    // Replanned at once, from the last fix: the API must not show the old route's ETA.
    let sh = tr.shipment(T, "S1").unwrap();
    assert_eq!(sh.status, ShipmentStatus::InTransit);
    let now = tr.shipment_eta(T, "S1").unwrap();
    assert_eq!(now.method, EtaMethod::Route);
    assert!(
        (now.remaining_m - to_go_on_new).abs() < 1.0,
        "{now:?} vs {to_go_on_new}"
    );
    assert!(now.eta_ms > old.eta_ms + 20 * 60_000, "{now:?} vs {old:?}");

    // And with the next reading: still in transit, no second departure, the new ETA
    // announced (it moved by far more than 10 % of the time remaining).
    let ev = apply(&mut tr, "t1", fix(123.2, 41.01, 1_060).with_speed(60.0));
    assert_eq!(kinds(&ev), [EventType::ShipmentEtaChanged]);
    let sh = tr.shipment(T, "S1").unwrap();
    assert_eq!(sh.status, ShipmentStatus::InTransit);
    assert_eq!(sh.departed_ms, Some(T0 + 50_000));
    let next = tr.shipment_eta(T, "S1").unwrap();
    let to_go = polyline_m(&[(123.2, 41.01), detour[0], detour[1], detour[2]]);
    assert!(
        (next.remaining_m - to_go).abs() < 1.0,
        "{next:?} vs {to_go}"
    );
    // On the new route, not off the old one: no deviation.
    for i in 1..=10 {
        let ev = apply(
            &mut tr,
            "t1",
            fix(123.2, 41.01 + 0.009 * i as f64, 1_060 + 60 * i).with_speed(60.0),
        );
        assert!(
            ev.iter().all(|e| !matches!(
                e.kind,
                EventType::RouteDeviated | EventType::ShipmentDeparted
            )),
            "{:?}",
            kinds(&ev)
        );
    }
    assert_eq!(
        tr.shipment(T, "S1").unwrap().status,
        ShipmentStatus::InTransit
    );
}

// ----- duplicates when only one reading carries a seq ---------------------------------------

/// Applies `r` to device "t1" and says what the tracker did with it.
fn applied(tr: &mut Tracker, r: Reading) -> Applied {
    let slot = tr.device_slot(T, "t1");
    tr.apply(slot, &r, r.ts_ms, &mut Vec::new())
}

#[test]
fn same_ts_is_a_duplicate_when_only_the_accepted_reading_carries_a_seq() {
    let mut tr = tracker();
    assert_eq!(
        applied(&mut tr, fix(OUT.0, OUT.1, 0).with_seq(7)),
        Applied::Current
    );
    assert_eq!(applied(&mut tr, fix(OUT.0, OUT.1, 0)), Applied::Duplicate);
}

#[test]
fn same_ts_is_a_duplicate_when_only_the_new_reading_carries_a_seq() {
    let mut tr = tracker();
    assert_eq!(applied(&mut tr, fix(OUT.0, OUT.1, 0)), Applied::Current);
    assert_eq!(
        applied(&mut tr, fix(OUT.0, OUT.1, 0).with_seq(7)),
        Applied::Duplicate
    );
}

#[test]
fn one_sided_seq_duplicates_of_older_readings_are_recognised_too() {
    let mut tr = tracker();
    assert_eq!(
        applied(&mut tr, fix(OUT.0, OUT.1, 0).with_seq(1)),
        Applied::Current
    );
    assert_eq!(applied(&mut tr, fix(OUT.0, OUT.1, 10)), Applied::Current);
    assert_eq!(
        applied(&mut tr, fix(OUT.0, OUT.1, 20).with_seq(3)),
        Applied::Current
    );
    // Neither is the latest: they are found among the remembered keys, not by "older than".
    assert_eq!(applied(&mut tr, fix(OUT.0, OUT.1, 0)), Applied::Duplicate);
    assert_eq!(
        applied(&mut tr, fix(OUT.0, OUT.1, 10).with_seq(2)),
        Applied::Duplicate
    );
    // With both seqs present they must match: a different seq at an old ts is a late reading.
    assert_eq!(
        applied(&mut tr, fix(OUT.0, OUT.1, 0).with_seq(9)),
        Applied::Late
    );
    // And an old ts never seen is late, whatever its seq.
    assert_eq!(
        applied(&mut tr, fix(OUT.0, OUT.1, 5).with_seq(1)),
        Applied::Late
    );
}

#[test]
fn a_seq_repeated_at_a_new_ts_is_never_a_duplicate_with_or_without_seqs_around_it() {
    let mut tr = tracker();
    assert_eq!(
        applied(&mut tr, fix(OUT.0, OUT.1, 0).with_seq(5)),
        Applied::Current
    );
    assert_eq!(applied(&mut tr, fix(OUT.0, OUT.1, 10)), Applied::Current);
    assert_eq!(
        applied(&mut tr, fix(OUT.0, OUT.1, 20).with_seq(5)),
        Applied::Current
    );
    assert_eq!(
        applied(&mut tr, fix(OUT.0, OUT.1, 30).with_seq(5)),
        Applied::Current
    );
}

// ----- speed derived from fixes ---------------------------------------------------------------

/// A shipment S1 on device t1 with an 80 km/h limit.
fn limited_to_80() -> Tracker {
    let mut tr = tracker();
    let mut def = shipment(
        "S1",
        None,
        Place::Point {
            lon: 124.0,
            lat: 41.0,
        },
    );
    def.max_speed_kmh = Some(80.0);
    tr.upsert_shipment(T, def).unwrap();
    tr
}

/// Degrees of longitude for `m` metres east at 41N.
fn east_deg(m: f64) -> f64 {
    m / geodesy::metres_per_degree(41.0).0
}

#[test]
fn a_truck_that_reports_no_speed_is_timed_between_its_fixes() {
    let mut tr = limited_to_80();
    assert!(apply(&mut tr, "t1", fix(123.0, 41.0, 0)).is_empty());
    // 1 km in 30 s: 120 km/h.
    let ev = apply(&mut tr, "t1", fix(123.0 + east_deg(1_000.0), 41.0, 30));
    let over: Vec<_> = ev
        .iter()
        .filter(|e| e.kind == EventType::DeviceOverspeed)
        .collect();
    assert_eq!(over.len(), 1, "{:?}", kinds(&ev));
    let kmh = over[0].data["speed_kmh"].as_f64().unwrap();
    assert!((kmh - 120.0).abs() < 1.0, "{kmh} km/h");
}

#[test]
fn fixes_under_five_seconds_apart_give_no_speed_but_five_seconds_do() {
    let mut tr = limited_to_80();
    apply(&mut tr, "t1", fix(123.0, 41.0, 0));
    // GPS jitter: 200 m in 4 s would be 180 km/h.
    let ev = apply(&mut tr, "t1", fix(123.0 + east_deg(200.0), 41.0, 4));
    assert!(
        ev.iter().all(|e| e.kind != EventType::DeviceOverspeed),
        "{:?}",
        kinds(&ev)
    );
    // 150 m in exactly 5 s: 108 km/h.
    let ev = apply(&mut tr, "t1", fix(123.0 + east_deg(350.0), 41.0, 9));
    let over: Vec<_> = ev
        .iter()
        .filter(|e| e.kind == EventType::DeviceOverspeed)
        .collect();
    assert_eq!(over.len(), 1, "{:?}", kinds(&ev));
    let kmh = over[0].data["speed_kmh"].as_f64().unwrap();
    assert!((kmh - 108.0).abs() < 1.0, "{kmh} km/h");
}

#[test]
fn for_its_first_two_minutes_a_trucks_speed_is_blended_with_the_default() {
    let mut tr = tracker();
    tr.upsert_shipment(
        T,
        shipment(
            "S1",
            None,
            Place::Point {
                lon: 124.0,
                lat: 41.0,
            },
        ),
    )
    .unwrap();
    // 100 km/h reported for 50 s (5 intervals of 10 s): weight 50/120 on the measured speed,
    // the rest on the 50 km/h default.
    let mut departed = None;
    for i in 0..=5 {
        let lon = 123.0 + east_deg(100.0 / 3.6 * (i * 10) as f64);
        let ev = apply(&mut tr, "t1", fix(lon, 41.0, i * 10).with_speed(100.0));
        if let Some(e) = ev.iter().find(|e| e.kind == EventType::ShipmentDeparted) {
            departed = Some((e.ts_ms, e.data["remaining_m"].as_f64().unwrap()));
        }
    }
    let eta = tr.shipment_eta(T, "S1").unwrap();
    let planned_kmh = eta.remaining_m / eta.remaining_s * 3.6;
    let w = 50.0 / 120.0;
    let cruising = w * 100.0 + (1.0 - w) * 50.0;
    // Under way, the trip's own mean since departure is blended in, weighted t / (t + 60 s).
    let (dep_ms, dep_remaining_m) = departed.expect("departed");
    let t = (T0 + 50_000 - dep_ms) as f64 / 1000.0;
    let own_kmh = (dep_remaining_m - eta.remaining_m) / t * 3.6;
    let wt = t / (t + 60.0);
    let expected = wt * own_kmh + (1.0 - wt) * cruising;
    assert!(
        wt > 0.0 && own_kmh > 100.0,
        "{t} s under way at {own_kmh} km/h"
    );
    assert!(
        (planned_kmh - expected).abs() < 0.01,
        "{planned_kmh} vs {expected}"
    );
}

#[test]
fn an_excursion_deadline_comes_before_offline_and_goes_once_it_fired() {
    let mut tr = reefer();
    apply(&mut tr, "t1", temp(0, -18.0));
    apply(&mut tr, "t1", temp(60, -5.0));
    apply(&mut tr, "t1", temp(120, -6.0));
    // The excursion is due at 60 + 300 s, the silence at 120 + 300 s (deadlines register
    // lazily: the first reading's offline deadline is still in the heap until it passes).
    let mut out = Vec::new();
    tr.on_timer(T0 + 359_999, &mut out);
    assert!(out.is_empty(), "{:?}", kinds(&out));
    assert_eq!(tr.next_deadline(), Some(T0 + 360_000));
    tr.on_timer(T0 + 360_000, &mut out);
    assert_eq!(kinds(&out), [EventType::TemperatureExcursion]);
    assert_eq!(out[0].ts_ms, T0 + 360_000);
    // Fired: only the offline deadline is left.
    assert_eq!(tr.next_deadline(), Some(T0 + 420_000));
    out.clear();
    tr.on_timer(T0 + 420_000, &mut out);
    assert_eq!(kinds(&out), [EventType::DeviceOffline]);
    assert_eq!(out[0].ts_ms, T0 + 420_000, "last reading + offline_after");
    assert_eq!(out[0].data["last_seen"], format_rfc3339(T0 + 120_000));
    assert_eq!(tr.stalled_timers(), 0);
    assert_eq!(tr.next_deadline(), None);
}

// ----- boundaries of the geofence and place rules ---------------------------------------------

#[test]
fn exit_reports_how_long_the_visit_lasted() {
    let mut tr = tracker_fence_zero_confirm();
    // First fix inside: entered at once, at T0.
    assert_eq!(
        kinds(&apply(&mut tr, "t1", fix(IN.0, IN.1, 0))),
        [EventType::GeofenceEntered]
    );
    apply(&mut tr, "t1", fix(IN.0, IN.1, 100));
    // 123.0 and 123.02 lie 0.01 degrees either side of the east edge: crossing halfway.
    let ev = apply(&mut tr, "t1", fix(123.02, 41.0, 200));
    assert_eq!(kinds(&ev), [EventType::GeofenceExited]);
    assert!(
        (ev[0].ts_ms - (T0 + 150_000)).abs() <= 100,
        "{}",
        ev[0].ts_ms - T0
    );
    assert_eq!(ev[0].data["entered_at"], format_rfc3339(T0));
    let duration_s = ev[0].data["duration_s"].as_f64().unwrap();
    assert!(
        (duration_s - (ev[0].ts_ms - T0) as f64 / 1000.0).abs() < 1e-9,
        "{duration_s}"
    );
    assert!((duration_s - 150.0).abs() <= 0.1, "{duration_s}");
}

#[test]
fn crossing_time_leans_towards_the_reading_nearer_the_boundary() {
    // 0.002 degrees (~170 m) outside, then 0.01 (~840 m) inside: the crossing is about 1/6 of
    // the way, whichever reading is nearer the edge.
    let mut tr = tracker_fence_zero_confirm();
    apply(&mut tr, "t1", fix(123.012, 41.0, 0));
    let ev = apply(&mut tr, "t1", fix(123.0, 41.0, 120));
    assert_eq!(kinds(&ev), [EventType::GeofenceEntered]);
    let frac = (ev[0].ts_ms - T0) as f64 / 120_000.0;
    assert!((frac - 1.0 / 6.0).abs() < 0.01, "crossing at {frac}");
    // And on the way out: 0.01 inside, then 0.002 outside: about 5/6 of the way.
    let ev = apply(&mut tr, "t1", fix(123.012, 41.0, 240));
    assert_eq!(kinds(&ev), [EventType::GeofenceExited]);
    let frac = (ev[0].ts_ms - T0 - 120_000) as f64 / 120_000.0;
    assert!((frac - 5.0 / 6.0).abs() < 0.01, "crossing at {frac}");
}

#[test]
fn an_accuracy_equal_to_the_distance_to_the_boundary_still_decides() {
    // SPEC: only an accuracy that *exceeds* the distance to the boundary changes nothing.
    let mut tr = tracker_fence_zero_confirm();
    let fence = crate::geofence::Geofence::new(square("wh", 123.0, 41.0, 0.01)).unwrap();
    apply(&mut tr, "t1", fix(OUT.0, OUT.1, 0));
    let near = (123.0095, 41.0);
    let d = fence.boundary_distance_m(near.0, near.1);
    assert!(d > 10.0 && d < 100.0, "{d}");
    let blurred = fix(near.0, near.1, 10).with_accuracy(d.next_up());
    assert!(apply(&mut tr, "t1", blurred).is_empty());
    let ev = apply(&mut tr, "t1", fix(near.0, near.1, 20).with_accuracy(d));
    assert_eq!(kinds(&ev), [EventType::GeofenceEntered]);
}

#[test]
fn no_dwell_before_the_visit_is_announced() {
    // First fix inside (inside at once, announced once confirmed), then readings too blurred
    // to confirm it, for longer than the dwell.
    let mut tr = tracker();
    let mut f = square("wh", 123.0, 41.0, 0.01);
    f.dwell_seconds = Some(600);
    tr.upsert_geofence(T, f).unwrap();
    let mut all = apply(&mut tr, "t1", fix(IN.0, IN.1, 0));
    for t in [300, 700, 800] {
        all.extend(apply(
            &mut tr,
            "t1",
            fix(IN.0, IN.1, t).with_accuracy(2_000.0),
        ));
    }
    let mut out = Vec::new();
    tr.on_timer(T0 + 900_000, &mut out);
    all.extend(
        out.into_iter()
            .filter(|e| e.kind != EventType::DeviceOffline),
    );
    assert!(all.is_empty(), "{:?}", kinds(&all));
    // A sharp reading announces the visit (from the first fix), and the dwell that is due.
    let ev = apply(&mut tr, "t1", fix(IN.0, IN.1, 810));
    assert_eq!(
        kinds(&ev),
        [EventType::GeofenceEntered, EventType::GeofenceDwell]
    );
    assert_eq!(ev[0].ts_ms, T0);
    assert_eq!(ev[1].ts_ms, T0 + 600_000);
}

#[test]
fn a_point_origin_is_left_only_after_being_there() {
    let mut tr = tracker();
    let def = shipment(
        "S1",
        Some(Place::Point {
            lon: 123.0,
            lat: 41.0,
        }),
        Place::Point {
            lon: 123.2,
            lat: 41.0,
        },
    );
    tr.upsert_shipment(T, def).unwrap();
    // First seen 2 km from the origin, driving towards it: not a departure.
    assert!(apply(&mut tr, "t1", fix(123.0, 41.018, 0)).is_empty());
    assert!(apply(&mut tr, "t1", fix(123.0, 41.009, 60)).is_empty());
    // At the dock for a while: still planned.
    for t in [120, 180, 240] {
        assert!(apply(&mut tr, "t1", fix(123.0, 41.001, t)).is_empty());
    }
    assert_eq!(
        tr.shipment(T, "S1").unwrap().status,
        ShipmentStatus::Planned
    );
    let ev = apply(&mut tr, "t1", fix(123.01, 41.0, 300));
    assert_eq!(kinds(&ev), [EventType::ShipmentDeparted]);
    assert_eq!(ev[0].ts_ms, T0 + 300_000);
}

#[test]
fn without_an_origin_moving_the_place_radius_away_from_where_it_was_first_seen_departs() {
    // The radius set to exactly the distance of the second fix: "farther than" the radius.
    let (start, edge) = ((123.0, 41.0), (123.0, 41.0027));
    let mut tr = Tracker::new(TrackerSettings {
        place_radius_m: geodesy::distance_m(start, edge),
        ..TrackerSettings::default()
    });
    let def = shipment(
        "S1",
        None,
        Place::Point {
            lon: 124.0,
            lat: 41.0,
        },
    );
    tr.upsert_shipment(T, def).unwrap();
    assert!(apply(&mut tr, "t1", fix(start.0, start.1, 0)).is_empty());
    assert!(apply(&mut tr, "t1", fix(123.0, 41.001, 60)).is_empty());
    assert!(
        apply(&mut tr, "t1", fix(edge.0, edge.1, 120)).is_empty(),
        "exactly on the radius is not away"
    );
    assert_eq!(
        tr.shipment(T, "S1").unwrap().status,
        ShipmentStatus::Planned
    );
    let ev = apply(&mut tr, "t1", fix(123.0, 41.0028, 180));
    assert_eq!(kinds(&ev), [EventType::ShipmentDeparted]);
}

#[test]
fn a_point_place_includes_its_radius() {
    let (origin, edge) = ((123.0, 41.0), (123.0, 41.0027));
    let mut tr = Tracker::new(TrackerSettings {
        place_radius_m: geodesy::distance_m(origin, edge),
        ..TrackerSettings::default()
    });
    let def = shipment(
        "S1",
        Some(Place::Point {
            lon: origin.0,
            lat: origin.1,
        }),
        Place::Point {
            lon: 124.0,
            lat: 41.0,
        },
    );
    tr.upsert_shipment(T, def).unwrap();
    apply(&mut tr, "t1", fix(origin.0, origin.1, 0));
    assert!(
        apply(&mut tr, "t1", fix(edge.0, edge.1, 60)).is_empty(),
        "on the radius: still at the origin"
    );
    let ev = apply(&mut tr, "t1", fix(123.0, 41.0028, 120));
    assert_eq!(kinds(&ev), [EventType::ShipmentDeparted]);
}

#[test]
fn a_shipment_without_an_origin_arrives_and_says_how_late() {
    let mut tr = tracker();
    for (id, deadline) in [("LATE", T0 + 1_000_000), ("EARLY", T0 + 5_000_000)] {
        let mut def = shipment(
            id,
            None,
            Place::Point {
                lon: 123.2,
                lat: 41.0,
            },
        );
        def.deadline_ms = Some(deadline);
        tr.upsert_shipment(T, def).unwrap();
    }
    apply(&mut tr, "t1", fix(123.0, 41.0, 0));
    apply(&mut tr, "t1", fix(123.1, 41.0, 600));
    // Far from where it was first seen, at the destination.
    let ev = apply(&mut tr, "t1", fix(123.2, 41.001, 1_234));
    let arrived: Vec<_> = ev
        .iter()
        .filter(|e| e.kind == EventType::ShipmentArrived)
        .map(|e| (e.shipment.clone().unwrap(), e.data["late_by_s"].clone()))
        .collect();
    assert_eq!(
        arrived,
        [
            ("LATE".to_owned(), json!(234.0)),
            ("EARLY".to_owned(), json!(0.0))
        ]
    );
    assert_eq!(
        tr.shipment(T, "LATE").unwrap().status,
        ShipmentStatus::Arrived
    );
}

#[test]
fn route_deviation_waits_for_the_confirmation_window() {
    let mut tr = tracker();
    let mut def = shipment(
        "S1",
        Some(Place::Point {
            lon: 123.0,
            lat: 41.0,
        }),
        Place::Point {
            lon: 124.0,
            lat: 41.0,
        },
    );
    def.route = Some(east_route());
    tr.upsert_shipment(T, def).unwrap();
    apply(&mut tr, "t1", fix(123.0, 41.0, 0));
    apply(&mut tr, "t1", fix(123.1, 41.0, 300));
    let deviated = |ev: &[Event]| {
        ev.iter()
            .filter(|e| e.kind == EventType::RouteDeviated)
            .map(|e| e.ts_ms - T0)
            .collect::<Vec<_>>()
    };
    // 2.2 km off the route (the default corridor is 500 m) from t = 600 s.
    assert!(deviated(&apply(&mut tr, "t1", fix(123.2, 41.02, 600))).is_empty());
    assert!(
        deviated(&apply(&mut tr, "t1", fix(123.2, 41.02, 629))).is_empty(),
        "29 s < 30 s"
    );
    assert_eq!(
        deviated(&apply(&mut tr, "t1", fix(123.2, 41.02, 630))),
        [600_000]
    );
}

/// S1 on `east_route` with a corridor of `corridor_m`, in transit at (123.1, 41.0) at 300 s.
fn on_the_east_route(corridor_m: f64) -> Tracker {
    let mut tr = tracker();
    let mut def = shipment(
        "S1",
        Some(Place::Point {
            lon: 123.0,
            lat: 41.0,
        }),
        Place::Point {
            lon: 124.0,
            lat: 41.0,
        },
    );
    def.route = Some(east_route());
    def.route_corridor_m = Some(corridor_m);
    tr.upsert_shipment(T, def).unwrap();
    apply(&mut tr, "t1", fix(123.0, 41.0, 0));
    apply(&mut tr, "t1", fix(123.1, 41.0, 300));
    tr
}

fn route_events(ev: &[Event]) -> Vec<EventType> {
    ev.iter()
        .map(|e| e.kind)
        .filter(|k| matches!(k, EventType::RouteDeviated | EventType::RouteRejoined))
        .collect()
}

#[test]
fn a_truck_exactly_on_the_corridor_edge_has_not_deviated() {
    let spot = (123.2, 41.0054);
    let edge_m = Route::new(east_route())
        .unwrap()
        .project(spot.0, spot.1)
        .off_route_m;
    let mut tr = on_the_east_route(edge_m);
    for t in [600, 630, 700] {
        let ev = apply(&mut tr, "t1", fix(spot.0, spot.1, t));
        assert!(route_events(&ev).is_empty(), "{:?}", kinds(&ev));
    }
}

#[test]
fn a_reading_less_accurate_than_its_distance_to_the_corridor_edge_changes_nothing() {
    // ~600 m off a 500 m corridor: 100 m beyond its edge.
    let spot = (123.2, 41.0054);
    let mut tr = on_the_east_route(500.0);
    for t in [600, 630, 700] {
        let ev = apply(&mut tr, "t1", fix(spot.0, spot.1, t).with_accuracy(150.0));
        assert!(route_events(&ev).is_empty(), "{:?}", kinds(&ev));
    }
    apply(&mut tr, "t1", fix(spot.0, spot.1, 710).with_accuracy(50.0));
    let ev = apply(&mut tr, "t1", fix(spot.0, spot.1, 740).with_accuracy(50.0));
    assert_eq!(route_events(&ev), [EventType::RouteDeviated]);
}

#[test]
fn a_brief_exit_from_the_corridor_is_forgotten_once_back_inside() {
    let mut tr = on_the_east_route(500.0);
    let mut all = Vec::new();
    // Off at 600 s, back on the road at 610 s, off again from 640 s.
    for (t, lat) in [(600, 41.02), (610, 41.0), (640, 41.02), (660, 41.02)] {
        all.extend(apply(&mut tr, "t1", fix(123.2, lat, t)));
    }
    assert!(route_events(&all).is_empty(), "{:?}", kinds(&all));
    let ev = apply(&mut tr, "t1", fix(123.2, 41.02, 670));
    assert_eq!(route_events(&ev), [EventType::RouteDeviated]);
    let deviated = ev.iter().find(|e| e.kind == EventType::RouteDeviated);
    assert_eq!(deviated.unwrap().ts_ms, T0 + 640_000);
}

#[test]
fn late_risk_fires_once_the_eta_is_past_the_deadline_not_on_it() {
    // A twin tells the ETA announced at departure; make that the deadline.
    let twin = parked_in_transit((123.0, 41.02));
    let deadline = twin.shipment_eta(T, "S1").unwrap().eta_ms;
    let mut tr = parked_in_transit_due((123.0, 41.02), Some(deadline));
    assert!(!tr.shipment(T, "S1").unwrap().late_risk, "on the deadline");
    let ev = apply(&mut tr, "t1", parked(PARK.0, PARK.1, DEPARTED_MS + 1));
    assert_eq!(kinds(&ev), [EventType::ShipmentLateRisk]);
    assert_eq!(ev[0].data["late_by_s"], 0.001);
}

#[test]
fn off_the_route_the_distance_back_to_it_counts_towards_the_eta() {
    let mut tr = on_the_east_route(500.0);
    let spot = (123.2, 41.02);
    apply(&mut tr, "t1", fix(spot.0, spot.1, 600));
    let eta = tr.shipment_eta(T, "S1").unwrap();
    let back_m = geodesy::distance_m(spot, (123.2, 41.0));
    let to_end_m = polyline_m(&[(123.2, 41.0), (123.5, 41.0), (124.0, 41.0)]);
    assert_eq!(eta.method, EtaMethod::Route);
    assert!(
        (eta.remaining_m - (to_end_m + back_m)).abs() < 5.0,
        "{eta:?} vs {to_end_m} + {back_m}"
    );
}

#[test]
fn overspeed_is_judged_against_the_tightest_limit_of_the_active_shipments() {
    let mut tr = tracker();
    for (id, limit) in [("LOOSE", 90.0), ("TIGHT", 70.0), ("MIDDLE", 80.0)] {
        let mut def = shipment(
            id,
            None,
            Place::Point {
                lon: 124.0,
                lat: 41.0,
            },
        );
        def.max_speed_kmh = Some(limit);
        tr.upsert_shipment(T, def).unwrap();
    }
    apply(&mut tr, "t1", fix(123.0, 41.0, 0).with_speed(60.0));
    let ev = apply(&mut tr, "t1", fix(123.01, 41.0, 30).with_speed(75.0));
    let over: Vec<_> = ev
        .iter()
        .filter(|e| e.kind == EventType::DeviceOverspeed)
        .collect();
    assert_eq!(over.len(), 1, "{:?}", kinds(&ev));
    assert_eq!(over[0].shipment.as_deref(), Some("TIGHT"));
    assert_eq!(over[0].data["limit_kmh"], 70.0);
}

#[test]
fn without_shipment_or_device_limits_the_tracker_default_applies() {
    let mut tr = Tracker::new(TrackerSettings {
        max_speed_kmh: 100.0,
        ..TrackerSettings::default()
    });
    apply(&mut tr, "t1", fix(123.0, 41.0, 0).with_speed(95.0));
    let ev = apply(&mut tr, "t1", fix(123.01, 41.0, 30).with_speed(105.0));
    assert_eq!(kinds(&ev), [EventType::DeviceOverspeed]);
    assert_eq!(ev[0].data["limit_kmh"], 100.0);
    assert_eq!(ev[0].shipment, None);
}

#[test]
fn an_overspeed_episode_lasts_until_the_speed_drops_below_the_band_under_the_limit() {
    // Limit 80: the episode starts above 80 and ends at or under 76 (5 %, at least 2 km/h).
    let mut tr = limited_to_80();
    let mut fired = Vec::new();
    for (i, v) in [80.0, 85.0, 90.0, 85.0, 88.0, 76.1, 81.0, 76.0, 80.5]
        .into_iter()
        .enumerate()
    {
        let i = i as i64;
        let ev = apply(
            &mut tr,
            "t1",
            fix(123.0 + i as f64 * 0.01, 41.0, i * 10).with_speed(v),
        );
        fired.extend(
            ev.iter()
                .filter(|e| e.kind == EventType::DeviceOverspeed)
                .map(|e| e.data["speed_kmh"].as_f64().unwrap()),
        );
    }
    // 80 is not over 80; 85 starts the episode, which 76.1 does not end and 76 does.
    assert_eq!(fired, [85.0, 80.5]);
}

// ----- weight ----------------------------------------------------------------------------------

fn weighed(t: i64, lon: f64, kg: f64) -> Reading {
    fix(lon, 41.0, t).with_weight(kg)
}

#[test]
fn a_weight_step_of_exactly_the_threshold_is_reported() {
    let mut tr = tracker();
    apply(&mut tr, "t1", weighed(0, OUT.0, 8_000.0));
    assert!(apply(&mut tr, "t1", weighed(60, OUT.0, 8_199.9)).is_empty());
    let ev = apply(&mut tr, "t1", weighed(120, OUT.0, 8_200.0));
    assert_eq!(kinds(&ev), [EventType::WeightChanged]);
    assert_eq!(ev[0].data["delta_kg"], 200.0);
}

#[test]
fn a_weight_step_names_the_fence_where_goods_change_hands() {
    let mut tr = tracker();
    for (id, kind) in [
        ("a-zone", "zone"),
        ("b-restricted", "restricted"),
        ("c-dock", "depot"),
    ] {
        let mut f = square(id, 123.0, 41.0, 0.01);
        f.kind = kind.into();
        f.confirm_seconds = Some(0);
        tr.upsert_geofence(T, f).unwrap();
    }
    let mut f = square("0-customs", 123.3, 41.0, 0.01);
    f.kind = "restricted".into();
    f.confirm_seconds = Some(0);
    tr.upsert_geofence(T, f).unwrap();
    let mut f = square("1-lot", 123.3, 41.0, 0.01);
    f.kind = "parking".into();
    f.confirm_seconds = Some(0);
    tr.upsert_geofence(T, f).unwrap();

    apply(&mut tr, "t1", weighed(0, 123.0, 8_000.0));
    let ev = apply(&mut tr, "t1", weighed(60, 123.0, 20_000.0));
    assert_eq!(kinds(&ev), [EventType::WeightChanged]);
    assert_eq!(ev[0].geofence.as_deref(), Some("c-dock"), "a depot first");
    // Inside a restricted area and a parking lot: the lot, though its id sorts later.
    apply(&mut tr, "t1", weighed(600, 123.3, 20_000.0));
    let ev = apply(&mut tr, "t1", weighed(660, 123.3, 12_000.0));
    let wc: Vec<_> = ev
        .iter()
        .filter(|e| e.kind == EventType::WeightChanged)
        .collect();
    assert_eq!(wc[0].geofence.as_deref(), Some("1-lot"));
}

#[test]
fn unloading_after_arrival_is_reported_with_the_arrived_shipment() {
    let mut tr = tracker();
    tr.upsert_shipment(
        T,
        shipment(
            "S1",
            Some(Place::Point {
                lon: 123.0,
                lat: 41.0,
            }),
            Place::Point {
                lon: 123.2,
                lat: 41.0,
            },
        ),
    )
    .unwrap();
    apply(&mut tr, "t1", weighed(0, 123.0, 20_000.0));
    apply(&mut tr, "t1", weighed(60, 123.1, 20_000.0));
    let ev = apply(&mut tr, "t1", weighed(600, 123.2, 20_000.0));
    assert!(kinds(&ev).contains(&EventType::ShipmentArrived));
    let ev = apply(&mut tr, "t1", weighed(900, 123.2, 2_000.0));
    assert_eq!(kinds(&ev), [EventType::WeightChanged]);
    assert_eq!(ev[0].shipment.as_deref(), Some("S1"));
    assert_eq!(ev[0].data["direction"], "unload");
}

#[test]
fn a_truck_that_left_from_exactly_the_boundary_crossed_it_at_that_reading() {
    // The boundary counts as inside; a reading exactly on it (a corner of the square) is the
    // last one inside, and the crossing is right there.
    let mut tr = tracker_fence_zero_confirm();
    apply(&mut tr, "t1", fix(IN.0, IN.1, 0));
    assert!(apply(&mut tr, "t1", fix(123.01, 40.99, 60)).is_empty());
    let ev = apply(&mut tr, "t1", fix(123.03, 40.98, 120));
    assert_eq!(kinds(&ev), [EventType::GeofenceExited]);
    assert_eq!(ev[0].ts_ms, T0 + 60_000);
}

// ----- route-aware arrival and the learned ETA (issue 13) ----------------------------------

/// Drives `t1` along `pts` (lon, lat), one fix a minute from `t0_s`, returning the events.
fn drive(tr: &mut Tracker, pts: &[(f64, f64)], t0_s: i64) -> Vec<Event> {
    let mut all = Vec::new();
    for (i, &(lon, lat)) in pts.iter().enumerate() {
        all.extend(apply(tr, "t1", fix(lon, lat, t0_s + 60 * i as i64)));
    }
    all
}

/// Points every ~0.01 deg along straight lines through `corners`.
fn along(corners: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut v = vec![corners[0]];
    for w in corners.windows(2) {
        let n = (((w[1].0 - w[0].0).abs() + (w[1].1 - w[0].1).abs()) / 0.01).ceil() as usize;
        for i in 1..=n {
            let f = i as f64 / n as f64;
            v.push((
                w[0].0 + f * (w[1].0 - w[0].0),
                w[0].1 + f * (w[1].1 - w[0].1),
            ));
        }
    }
    v
}

#[test]
fn a_route_through_its_destination_arrives_only_at_its_end() {
    // East through the destination (123.2, 41.0), on to 123.4, north, and back west to
    // end at the destination from the north side.
    let corners = [
        (123.0, 41.0),
        (123.4, 41.0),
        (123.4, 41.05),
        (123.2, 41.05),
        (123.2, 41.0),
    ];
    let mut tr = tracker();
    let mut def = shipment(
        "S1",
        Some(Place::Point {
            lon: 123.0,
            lat: 41.0,
        }),
        Place::Point {
            lon: 123.2,
            lat: 41.0,
        },
    );
    def.route = Some(LineString::from(corners.to_vec()));
    tr.upsert_shipment(T, def).unwrap();
    let path = along(&corners);
    let first_pass = path
        .iter()
        .position(|p| (p.0 - 123.2).abs() < 0.006 && (p.1 - 41.0).abs() < 1e-9)
        .unwrap();
    let ev = drive(&mut tr, &path[..=first_pass + 2], 0);
    assert!(
        !kinds(&ev).contains(&EventType::ShipmentArrived),
        "{:?}",
        kinds(&ev)
    );
    assert_eq!(
        tr.shipment(T, "S1").unwrap().status,
        ShipmentStatus::InTransit
    );
    let eta = tr.shipment_eta(T, "S1").unwrap();
    assert!(eta.remaining_m > 40_000.0, "{eta:?}");
    let ev = drive(
        &mut tr,
        &path[first_pass + 3..],
        60 * (first_pass as i64 + 3),
    );
    assert_eq!(
        ev.iter()
            .filter(|e| e.kind == EventType::ShipmentArrived)
            .count(),
        1
    );
    assert_eq!(
        tr.shipment(T, "S1").unwrap().status,
        ShipmentStatus::Arrived
    );
}

#[test]
fn a_round_trip_to_its_origin_departs_and_arrives_once_it_is_back() {
    let corners = [(123.0, 41.0), (123.3, 41.0), (123.3, 41.05), (123.0, 41.0)];
    let mut tr = tracker();
    let home = Place::Point {
        lon: 123.0,
        lat: 41.0,
    };
    let mut def = shipment("S1", Some(home.clone()), home);
    def.route = Some(LineString::from(corners.to_vec()));
    tr.upsert_shipment(T, def).unwrap();
    let path = along(&corners);
    let ev = drive(&mut tr, &path[..path.len() / 2], 0);
    assert_eq!(kinds(&ev), [EventType::ShipmentDeparted]);
    let ev = drive(
        &mut tr,
        &path[path.len() / 2..],
        60 * (path.len() / 2) as i64,
    );
    assert!(
        kinds(&ev).contains(&EventType::ShipmentArrived),
        "{:?}",
        kinds(&ev)
    );
    assert_eq!(
        tr.shipment(T, "S1").unwrap().status,
        ShipmentStatus::Arrived
    );
}

#[test]
fn a_restored_snapshot_gives_the_same_etas_with_what_it_learned() {
    let corners = [(123.0, 41.0), (123.4, 41.0)];
    let path = along(&corners);
    let mut tr = tracker();
    // Three earlier trips teach the tenant the road and calibrate the window.
    for trip in 0..3 {
        let id = format!("S{trip}");
        let mut def = shipment(
            &id,
            Some(Place::Point {
                lon: 123.0,
                lat: 41.0,
            }),
            Place::Point {
                lon: 123.4,
                lat: 41.0,
            },
        );
        def.route = Some(LineString::from(corners.to_vec()));
        tr.upsert_shipment(T, def).unwrap();
        drive(&mut tr, &path, trip * 100_000);
        assert_eq!(tr.shipment(T, &id).unwrap().status, ShipmentStatus::Arrived);
        tr.remove_shipment(T, &id);
    }
    let mut def = shipment(
        "S9",
        Some(Place::Point {
            lon: 123.0,
            lat: 41.0,
        }),
        Place::Point {
            lon: 123.4,
            lat: 41.0,
        },
    );
    def.route = Some(LineString::from(corners.to_vec()));
    tr.upsert_shipment(T, def).unwrap();
    let half = path.len() / 2;
    drive(&mut tr, &path[..half], 1_000_000);
    let json = serde_json::to_string(&tr.snapshot()).unwrap();
    let mut back = Tracker::restore(serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(back.shipment_eta(T, "S9"), tr.shipment_eta(T, "S9"));
    // Learned: the route times know the road.
    let sh = tr.shipment(T, "S9").unwrap();
    assert!(sh.eta_trip.times.is_some());
    for (i, &(lon, lat)) in path[half..path.len() - 3].iter().enumerate() {
        let r = fix(lon, lat, 1_000_000 + 60 * (half + i) as i64);
        let (a, b) = (apply(&mut tr, "t1", r), apply(&mut back, "t1", r));
        assert_eq!(a, b);
        assert_eq!(back.shipment_eta(T, "S9"), tr.shipment_eta(T, "S9"));
    }
    let eta = tr.shipment_eta(T, "S9").unwrap();
    assert!(eta.p10_ms <= eta.eta_ms && eta.eta_ms <= eta.p90_ms);
    assert!(eta.eta_ms >= eta.computed_at_ms);
}
