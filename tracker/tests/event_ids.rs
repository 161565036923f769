//! Event ids are part of the contract (SPEC section 5): a replay must give the same ids, also
//! across releases, so consumers that stored yesterday's ids can still de-duplicate. This test
//! pins the ids of one fixed journey that produces every event type; any change to how ids are
//! derived (hashed fields, their order, the discriminators the rules pass) fails it.

use geo_types::{LineString, MultiPolygon, Polygon};
use landport_tracker::device::DeviceProfile;
use landport_tracker::{
    Event, EventType, GeofenceDef, Place, Reading, Shape, ShipmentDef, Tracker, TrackerSettings,
};

const T0: i64 = 1_795_400_000_000; // 2026-11-24 (ms)
const T: &str = "acme";

fn square(id: &str, kind: &str, lon: f64, lat: f64, dwell_seconds: Option<u32>) -> GeofenceDef {
    let h = 0.01;
    let ring = LineString::from(vec![
        (lon - h, lat - h),
        (lon + h, lat - h),
        (lon + h, lat + h),
        (lon - h, lat + h),
        (lon - h, lat - h),
    ]);
    GeofenceDef {
        id: id.into(),
        name: id.to_uppercase(),
        kind: kind.into(),
        shape: Shape::Area(MultiPolygon(vec![Polygon::new(ring, vec![])])),
        confirm_seconds: None,
        dwell_seconds,
    }
}

/// A fixed journey: loads at the origin yard (dwell, weight), warms up (excursion, recovery),
/// drives too fast, leaves its corridor and rejoins it, stops long enough for the ETA to move
/// past the deadline, goes silent (offline, online) and arrives.
fn journey() -> Vec<Event> {
    let mut tr = Tracker::new(TrackerSettings::default());
    tr.upsert_geofence(T, square("origin", "warehouse", 123.0, 41.0, Some(60)))
        .unwrap();
    tr.upsert_geofence(T, square("dest", "port", 123.5, 41.0, None))
        .unwrap();
    tr.set_device_profile(
        T,
        "t1",
        DeviceProfile {
            temp_range_c: Some([0.0, 10.0]),
            max_speed_kmh: None,
        },
    );
    tr.upsert_shipment(
        T,
        ShipmentDef {
            id: "SHP-1".into(),
            device: "t1".into(),
            reference: Some("PO-7".into()),
            origin: Some(Place::Geofence("origin".into())),
            destination: Place::Geofence("dest".into()),
            route: Some(LineString::from(vec![(123.0, 41.0), (123.5, 41.0)])),
            route_corridor_m: None,
            deadline_ms: Some(T0 + 60 * 60_000),
            temp_range_c: Some([2.0, 8.0]),
            max_speed_kmh: Some(80.0),
        },
    )
    .unwrap();
    let slot = tr.device_slot(T, "t1");

    // (seconds after T0, reading builder)
    let mut readings: Vec<Reading> = Vec::new();
    let at = |s: i64| Reading::at(T0 + s * 1000);
    // In the yard: dwell, a load, a temperature excursion and its recovery.
    for i in 0..=40 {
        let s = i * 10;
        let temp = if (2..=35).contains(&i) { 12.0 } else { 5.0 };
        let weight = if i < 10 { 1_000.0 } else { 2_500.0 };
        readings.push(
            at(s)
                .with_position(123.0, 41.0)
                .with_accuracy(5.0)
                .with_temp(temp)
                .with_weight(weight),
        );
    }
    // On the road at 100 km/h (0.02 degrees a minute), off the corridor for a while.
    let mut s = 400;
    let mut lon = 123.0;
    for i in 0..12 {
        s += 60;
        lon += 0.02;
        let lat = if (4..8).contains(&i) { 41.03 } else { 41.0 };
        readings.push(at(s).with_position(lon, lat).with_speed(100.0));
    }
    // A long stop: the ETA slips past the deadline.
    for _ in 0..12 {
        s += 240;
        readings.push(at(s).with_position(lon, 41.0).with_speed(0.0));
    }
    // Silence (offline), then on again to the destination.
    s += 1_200;
    while lon < 123.5 {
        lon = (lon + 0.02).min(123.5);
        readings.push(at(s).with_position(lon, 41.0).with_speed(60.0));
        s += 72;
    }
    for _ in 0..3 {
        readings.push(at(s).with_position(123.5, 41.0).with_speed(0.0));
        s += 30;
    }

    let mut out = Vec::new();
    for r in &readings {
        tr.on_timer(r.ts_ms, &mut out);
        tr.apply(slot, r, r.ts_ms, &mut out);
    }
    out
}

#[test]
fn the_journey_produces_every_event_type() {
    let events = journey();
    for kind in EventType::ALL {
        assert!(
            events.iter().any(|e| e.kind == kind),
            "no {kind} in {:?}",
            events.iter().map(|e| e.kind).collect::<Vec<_>>()
        );
    }
}

#[test]
fn event_ids_are_pinned() {
    let got: Vec<String> = journey()
        .iter()
        .map(|e| format!("{} {}", e.kind, e.id))
        .collect();
    let want: &[&str] = &[
        "geofence.entered evt_6734384160601b1554b9cae9c29c16ad",
        "geofence.dwell evt_b64f06d5284f84be982cc87e6c083b58",
        "cargo.weight_changed evt_85226e1acba113100d5cc902abe79bb5",
        "cargo.temperature_excursion evt_9801f4ac59d26efef501b43cd7f68e8b",
        "cargo.temperature_excursion evt_56091d27fe087f7e829098bbb3013fea",
        "cargo.temperature_recovered evt_09bd2187ec1fc082ee597641fe2a1eaf",
        "cargo.temperature_recovered evt_450d4f9f3fc09dc0c3c9d4a53deca220",
        "device.overspeed evt_6788872d7c467def716923f1c3fbe333",
        "geofence.exited evt_7b727abff2c33d1c4f10245a82e67248",
        "shipment.departed evt_d1ab69087ab1505d2f3336e0c61581e9",
        "route.deviated evt_54fc2b0e3f6954942f0b92eb45557f4a",
        "route.rejoined evt_c319e2b12a075bc17fac252af1309b78",
        "shipment.eta_changed evt_da5ffad2623578b40b9df8d9de515d5e",
        "shipment.eta_changed evt_7bae9fd38867efd44d127b187ffc5be4",
        "shipment.eta_changed evt_3ca6ec349cc8c9b8d542abd06d15b6b0",
        "shipment.eta_changed evt_afafa16e7e659129be32d9e5adde8ae9",
        "shipment.late_risk evt_63248599acc88641117891841bfa06c3",
        "shipment.eta_changed evt_ce0c1f6e942efa498f36f5c82d3f32df",
        "shipment.eta_changed evt_34a363af9bc12032f2f31af18822591d",
        "shipment.eta_changed evt_fffb350bab6599e207419f6e9275c361",
        "shipment.eta_changed evt_eee9843a7702084529c63fd38ea8c2db",
        "shipment.eta_changed evt_4a85c41d4b337eb974eb38b4983ad431",
        "shipment.eta_changed evt_7aec3db52f783c638d6a159c9e90053b",
        "shipment.eta_changed evt_93a1ddc1e153af6f3ef3cd5bd1dcea5f",
        "shipment.eta_changed evt_cca1bca95444cae6b12313a5c670fcad",
        "device.offline evt_d846be7c63c27bd2acd0995d1dcb5586",
        "device.online evt_da47f155cff046ba528b7d0e3ff64f00",
        "shipment.eta_changed evt_b1f32655b83b4a6c7f3383827c652886",
        "shipment.eta_changed evt_5f6aa0a1049439db8c32ab6687506a0b",
        "shipment.eta_changed evt_701991e8014fa575719fb1ff37d7e847",
        "shipment.eta_changed evt_bbe9f305a90b618b96d78834212b450f",
        "shipment.eta_changed evt_f00473f1cf4520253bc953285b93037e",
        "shipment.eta_changed evt_68e240c219ac99a016d03665e491e860",
        "shipment.eta_changed evt_ece3b6fb73df263b440cd903ab8117cd",
        "shipment.eta_changed evt_a243528f119427f2f51cc080c26c6d27",
        "geofence.entered evt_7b5286c47c29a008d1aa527b52975c78",
        "shipment.arrived evt_f8dd6042db19d71f98b0098247699f99",
    ];
    assert_eq!(
        got, want,
        "event ids changed: replays would not de-duplicate"
    );
}
