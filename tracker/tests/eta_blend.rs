//! The ETA's learned route times are trusted only as far as the tenant's own arrivals bear
//! them out (`docs/eta.md`, "w, learned from the tenant's own arrivals").
//!
//! A bus (no shipment) stops ten minutes at a halt half-way along a road; the tenant's trucks
//! drive the same road without stopping. The cells learn the bus's stop as an expected stop
//! for everyone passing, so for a truck the learned route times are five minutes too slow.
//! After a few trucks have arrived, the tenant plans with the plain estimate and the truck's
//! ETA is right.

use landport_tracker::{Fix, Place, Reading, ShipmentDef, TimestampMs, Tracker, TrackerSettings};

const T: &str = "acme";
const LAT: f64 = 50.0;
const FROM_LON: f64 = 10.0;
const TO_LON: f64 = 10.3;
/// Degrees of longitude per fix at 20 m/s, a fix every 10 s (200 m at 50 deg N).
const STEP_DEG: f64 = 0.0028;
const FIX_MS: i64 = 10_000;

fn fix_at(tr: &mut Tracker, device: &str, lon: f64, ts: TimestampMs) {
    let slot = tr.device_slot(T, device);
    let reading = Reading {
        fix: Some(Fix {
            lat: LAT,
            lon,
            speed_kmh: None,
            heading_deg: None,
            accuracy_m: None,
        }),
        ..Reading::at(ts)
    };
    tr.apply(slot, &reading, ts, &mut Vec::new());
}

/// Drives `device` along the road from `t0`, standing `stop_ms` at the half-way halt;
/// returns the time of the last fix.
fn drive(tr: &mut Tracker, device: &str, t0: TimestampMs, stop_ms: i64) -> TimestampMs {
    let mut ts = t0;
    let steps = ((TO_LON - FROM_LON) / STEP_DEG).ceil() as i64;
    for i in 0..=steps {
        let lon = (FROM_LON + i as f64 * STEP_DEG).min(TO_LON);
        fix_at(tr, device, lon, ts);
        if i == steps / 2 {
            let until = ts + stop_ms;
            while ts + FIX_MS <= until {
                ts += FIX_MS;
                fix_at(tr, device, lon, ts);
            }
        }
        ts += FIX_MS;
    }
    // A few more minutes at the destination.
    for _ in 0..12 {
        fix_at(tr, device, TO_LON, ts);
        ts += FIX_MS;
    }
    ts - FIX_MS
}

/// A truck trip as a shipment; returns (estimated arrival asked a fifth of the way, real
/// arrival).
fn truck_trip(tr: &mut Tracker, n: i64, t0: TimestampMs) -> (TimestampMs, TimestampMs) {
    let id = format!("S{n}");
    tr.upsert_shipment(
        T,
        ShipmentDef {
            id: id.clone(),
            device: "truck".into(),
            reference: None,
            origin: Some(Place::Point {
                lon: FROM_LON,
                lat: LAT,
            }),
            destination: Place::Point {
                lon: TO_LON,
                lat: LAT,
            },
            route: Some(geo_types::LineString::from(vec![
                (FROM_LON, LAT),
                (TO_LON, LAT),
            ])),
            route_corridor_m: None,
            deadline_ms: None,
            temp_range_c: None,
            max_speed_kmh: None,
        },
    )
    .unwrap();
    let steps = ((TO_LON - FROM_LON) / STEP_DEG).ceil() as i64;
    let mut ts = t0;
    let mut asked = None;
    for i in 0..=steps {
        let lon = (FROM_LON + i as f64 * STEP_DEG).min(TO_LON);
        fix_at(tr, "truck", lon, ts);
        if i == steps / 5 {
            asked = tr.shipment_eta(T, &id).map(|e| e.eta_ms);
        }
        ts += FIX_MS;
    }
    for _ in 0..12 {
        fix_at(tr, "truck", TO_LON, ts);
        ts += FIX_MS;
    }
    let sh = tr.shipment(T, &id).unwrap();
    let arrived = sh.arrived_ms.expect("the truck arrived");
    tr.remove_shipment(T, &id);
    (asked.expect("an ETA under way"), arrived)
}

#[test]
fn learned_stops_that_keep_misleading_the_tenants_trucks_stop_counting() {
    let mut tr = Tracker::new(TrackerSettings::default());
    let hour = 3_600_000;
    // The bus teaches the road and its halt.
    for round in 0..3 {
        drive(&mut tr, "bus", round * 4 * hour, 10 * 60_000);
    }
    let mut errors_s = Vec::new();
    for round in 3..10 {
        let t0 = round * 4 * hour;
        drive(&mut tr, "bus", t0, 10 * 60_000);
        let (eta, real) = truck_trip(&mut tr, round, t0 + 2 * hour);
        errors_s.push((eta - real) as f64 / 1000.0);
    }
    // The learned route times expect minutes of stop at the halt, which the trucks never
    // make: with no arrivals yet, half-trusted, they make the first truck's ETA minutes late.
    assert!(errors_s[0] > 120.0, "{errors_s:?}");
    // A few arrivals later the tenant plans with the plain estimate: right to the minute.
    let last = *errors_s.last().unwrap();
    assert!(last.abs() < 60.0, "{errors_s:?}");
}
