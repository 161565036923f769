//! Property tests of the tracker's invariants over random walks through random fences.

use std::collections::HashMap;

use geo_types::{LineString, MultiPolygon, Polygon};
use landport_tracker::geofence::Geofence;
use landport_tracker::{
    Event, EventType, GeofenceDef, Place, Reading, Shape, ShipmentDef, Tracker, TrackerSettings,
};
use proptest::prelude::*;

const T0: i64 = 1_795_400_000_000;

fn square(id: &str, lon: f64, lat: f64, half: f64, confirm: u32) -> GeofenceDef {
    let ring = LineString::from(vec![
        (lon - half, lat - half),
        (lon + half, lat - half),
        (lon + half, lat + half),
        (lon - half, lat + half),
        (lon - half, lat - half),
    ]);
    GeofenceDef {
        id: id.into(),
        name: id.into(),
        kind: "warehouse".into(),
        shape: Shape::Area(MultiPolygon(vec![Polygon::new(ring, vec![])])),
        confirm_seconds: Some(confirm),
        dwell_seconds: Some(120),
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    fences: Vec<GeofenceDef>,
    /// (device index, reading), in arrival order.
    readings: Vec<(usize, Reading)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let fence = (
        0.0..0.02f64,
        0.0..0.02f64,
        0.001..0.006f64,
        prop_oneof![Just(0u32), Just(20), Just(60)],
    );
    let step = (
        -0.0015..0.0015f64,
        -0.0015..0.0015f64,
        1i64..40,
        prop::option::of(0.0..150.0f64),
        prop::option::of(-30.0..0.0f64),
        prop::option::weighted(0.1, 0.0..30_000.0f64),
    );
    (
        prop::collection::vec(fence, 1..5),
        prop::collection::vec((0usize..3, step), 1..150),
    )
        .prop_map(|(fences, steps)| {
            let fences = fences
                .into_iter()
                .enumerate()
                .map(|(i, (x, y, h, c))| square(&format!("f{i}"), 123.0 + x, 41.0 + y, h, c))
                .collect();
            let mut pos = [(123.01, 41.01); 3];
            let mut ts = [T0; 3];
            let readings = steps
                .into_iter()
                .map(|(dev, (dx, dy, dt, acc, temp, weight))| {
                    pos[dev].0 += dx;
                    pos[dev].1 += dy;
                    ts[dev] += dt * 1000;
                    let mut r = Reading::at(ts[dev]).with_position(pos[dev].0, pos[dev].1);
                    if let Some(a) = acc {
                        r = r.with_accuracy(a);
                    }
                    r.temp_c = temp;
                    r.weight_kg = weight;
                    (dev, r)
                })
                .collect();
            Scenario { fences, readings }
        })
}

fn setup(s: &Scenario) -> Tracker {
    let mut tr = Tracker::new(TrackerSettings {
        temp_grace_seconds: 60,
        ..TrackerSettings::default()
    });
    for f in &s.fences {
        tr.upsert_geofence("t", f.clone()).unwrap();
    }
    let ship = ShipmentDef {
        id: "S".into(),
        device: "d0".into(),
        reference: None,
        origin: Some(Place::Geofence("f0".into())),
        destination: Place::Point {
            lon: 123.02,
            lat: 41.02,
        },
        route: None,
        route_corridor_m: None,
        deadline_ms: Some(T0 + 600_000),
        temp_range_c: Some([-25.0, -15.0]),
        max_speed_kmh: Some(60.0),
    };
    tr.upsert_shipment("t", ship).unwrap();
    tr
}

fn run(tr: &mut Tracker, readings: &[(usize, Reading)]) -> Vec<Event> {
    let mut out = Vec::new();
    for (dev, r) in readings {
        let slot = tr.device_slot("t", &format!("d{dev}"));
        // Server time runs 2 s behind device time, with timers polled as readings arrive.
        let now = r.ts_ms + 2_000;
        tr.on_timer(now, &mut out);
        tr.apply(slot, r, now, &mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn replaying_the_same_readings_yields_the_same_events(s in scenario()) {
        let a = run(&mut setup(&s), &s.readings);
        let b = run(&mut setup(&s), &s.readings);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn every_transition_follows_a_change_of_side(s in scenario()) {
        let events = run(&mut setup(&s), &s.readings);
        let fences: HashMap<String, Geofence> = s
            .fences
            .iter()
            .map(|f| (f.id.clone(), Geofence::new(f.clone()).unwrap()))
            .collect();
        // Per (device, fence): entered and exited alternate, starting with entered; each is
        // backed by a reading on its new side at or after the crossing time.
        let mut inside: HashMap<(String, String), bool> = HashMap::new();
        for e in events.iter().filter(|e| matches!(e.kind, EventType::GeofenceEntered | EventType::GeofenceExited)) {
            let fence_id = e.geofence.clone().unwrap();
            let key = (e.device.clone(), fence_id.clone());
            let entered = e.kind == EventType::GeofenceEntered;
            let was = inside.insert(key, entered).unwrap_or(false);
            prop_assert_ne!(was, entered, "{:?} twice in a row", e.kind);
            let fence = &fences[&fence_id];
            let backed = s.readings.iter().any(|(dev, r)| {
                format!("d{dev}") == e.device
                    && r.ts_ms >= e.ts_ms
                    && r.fix.is_some_and(|f| fence.contains(f.lon, f.lat) == entered)
            });
            prop_assert!(backed, "{:?} at {} with no reading on the new side", e.kind, e.ts_ms - T0);
        }
    }

    #[test]
    fn snapshot_then_restore_gives_the_same_future_events(s in scenario(), split in 0.0..1.0f64) {
        let cut = (s.readings.len() as f64 * split) as usize;
        let (head, tail) = s.readings.split_at(cut);
        let mut live = setup(&s);
        run(&mut live, head);
        let json = serde_json::to_vec(&live.snapshot()).unwrap();
        let mut restored = Tracker::restore(serde_json::from_slice(&json).unwrap()).unwrap();
        prop_assert_eq!(run(&mut live, tail), run(&mut restored, tail));
    }
}
