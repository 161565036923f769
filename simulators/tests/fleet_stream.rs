//! The fleet simulator's output, checked with Landport's own decoders and tracker: it is
//! reproducible, decodes (or, when meant to, is rejected), and fires the events a demo
//! shows. Pure: no broker, simulated time only.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use geo_types::Point;
use landport_ingest::decode::{Limits, decode};
use landport_ingest::topic::{OwnTracksTenants, TopicKind};
use landport_simulators::fleet::{
    Faults, FleetConfig, Kind, Message, REEFER_RANGE_C, Simulation, places, route_polyline,
};
use landport_tracker::{
    EventType, GeofenceDef, Place, Reading, Shape, ShipmentDef, Tracker, TrackerSettings,
};

/// 2026-11-24T06:00:00Z or so, epoch ms.
const START_MS: i64 = 1_795_500_000_000;

fn config(devices: usize, seed: u64, faults: Faults) -> FleetConfig {
    FleetConfig {
        devices,
        seed,
        faults,
        tenant: "acme".into(),
        ..FleetConfig::default()
    }
}

/// Every message of `ticks` ticks `step_s` simulated seconds apart, with its tick's time.
fn stream(config: &FleetConfig, ticks: i64, step_s: i64) -> Vec<(i64, Message)> {
    let mut sim = Simulation::new(config, START_MS);
    let mut out = Vec::new();
    for k in 1..=ticks {
        let now = START_MS + k * step_s * 1000;
        out.extend(sim.tick(now).into_iter().map(|m| (now, m)));
    }
    out
}

fn owntracks() -> OwnTracksTenants {
    OwnTracksTenants {
        default_tenant: "acme".into(),
        by_user: HashMap::new(),
    }
}

/// The readings of one message, or `None` when Landport refuses it.
fn readings(m: &Message, now_ms: i64) -> Option<Vec<Reading>> {
    let ot = owntracks();
    let topic = TopicKind::parse(&m.topic, &ot).expect("a telemetry topic");
    let out = decode(&topic, &m.payload, &Limits::default(), now_ms).ok()?;
    assert!(!out.ignored, "{}", m.topic);
    if out.readings.is_empty() {
        return None;
    }
    assert!(out.rejections.is_empty(), "{:?}", out.rejections);
    Some(out.readings)
}

#[test]
fn the_same_seed_gives_the_same_messages_and_another_seed_others() {
    let a = stream(&config(24, 7, Faults::all()), 600, 2);
    let b = stream(&config(24, 7, Faults::all()), 600, 2);
    let c = stream(&config(24, 8, Faults::all()), 600, 2);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn every_message_decodes_in_range_and_every_malformed_one_is_rejected() {
    let started = Instant::now();
    // Three simulated hours of 40 devices at a 5 s step, every fault on.
    let all = stream(&config(40, 3, Faults::all()), 3 * 720, 5);
    let mut kinds = BTreeSet::new();
    for (now, m) in &all {
        kinds.insert(format!("{:?}", m.kind));
        let got = readings(m, *now);
        if m.kind == Kind::Malformed {
            assert!(
                got.is_none(),
                "accepted malformed {}",
                String::from_utf8_lossy(&m.payload)
            );
            continue;
        }
        let got = got.unwrap_or_else(|| {
            panic!(
                "rejected {} {}",
                m.topic,
                String::from_utf8_lossy(&m.payload)
            )
        });
        // A batch (or a duplicate of one) carries the readings of a dropout.
        if m.payload.first() != Some(&b'[') || m.kind == Kind::Senml {
            assert_eq!(got.len(), 1);
        }
        for r in got {
            assert!((START_MS..=*now).contains(&r.ts_ms));
            if let Some(fix) = r.fix {
                assert!((121.5..123.6).contains(&fix.lon), "{fix:?}");
                assert!((38.8..41.9).contains(&fix.lat), "{fix:?}");
                let speed = fix.speed_kmh.unwrap_or(0.0);
                assert!((0.0..=95.0).contains(&speed), "{fix:?}");
            }
            if let Some(t) = r.temp_c {
                assert!((-30.0..15.0).contains(&t), "{t}");
            }
            if let Some(w) = r.weight_kg {
                assert!((0.0..=60_000.0).contains(&w), "{w}");
            }
        }
    }
    for kind in [
        "Native",
        "Senml",
        "OwnTracks",
        "Malformed",
        "Duplicate",
        "Batch",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
    eprintln!("{} messages in {:?}", all.len(), started.elapsed());
}

#[test]
fn a_reefer_from_anshan_to_yingkou_departs_arrives_changes_weight_and_breaks_its_range() {
    let mut tracker = Tracker::new(TrackerSettings::default());
    for p in places() {
        let def = GeofenceDef {
            id: p.id.into(),
            name: p.name.into(),
            kind: p.kind.into(),
            shape: Shape::Circle {
                center: Point::new(p.lon, p.lat),
                radius_m: 800.0,
            },
            confirm_seconds: None,
            dwell_seconds: None,
        };
        tracker.upsert_geofence("acme", def).unwrap();
    }
    let route = route_polyline(0);
    tracker
        .upsert_shipment(
            "acme",
            ShipmentDef {
                id: "SHP-1".into(),
                device: "truck-0".into(),
                reference: None,
                origin: Some(Place::Geofence("anshan-steel".into())),
                destination: Place::Geofence("yingkou-port".into()),
                route: Some(route.into_iter().collect()),
                route_corridor_m: Some(2_000.0),
                deadline_ms: None,
                temp_range_c: Some(REEFER_RANGE_C),
                max_speed_kmh: None,
            },
        )
        .unwrap();

    // Four simulated hours of the first 8 devices (truck-0 is the reefer) at a 10 s step.
    let mut sim = Simulation::new(&config(8, 11, Faults::default()), START_MS);
    let mut events = Vec::new();
    for k in 1..=4 * 360 {
        let now = START_MS + k * 10_000;
        for m in sim.tick(now) {
            let slot = tracker.device_slot("acme", &m.device);
            for r in readings(&m, now).expect("decodes") {
                tracker.apply(slot, &r, now, &mut events);
            }
        }
        while tracker.next_deadline().is_some_and(|t| t <= now) {
            tracker.on_timer(now, &mut events);
        }
    }
    let of_truck0: Vec<_> = events
        .iter()
        .filter(|e| e.device == "truck-0")
        .map(|e| e.kind)
        .collect();
    for kind in [
        EventType::ShipmentDeparted,
        EventType::ShipmentArrived,
        EventType::WeightChanged,
        EventType::TemperatureExcursion,
    ] {
        assert!(of_truck0.contains(&kind), "no {kind:?} in {of_truck0:?}");
    }
    let first = |kind| of_truck0.iter().position(|&k| k == kind).unwrap();
    assert!(first(EventType::ShipmentDeparted) < first(EventType::TemperatureExcursion));
    assert!(first(EventType::TemperatureExcursion) < first(EventType::ShipmentArrived));
}
