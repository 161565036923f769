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
        "shipment.late_risk evt_d363efa7b9cedc358739ab04d6152ea2",
        "shipment.eta_changed evt_3b5ffe9cb60e770d61e7c875761abf0d",
        "shipment.eta_changed evt_f2cdb0761739b74660a8399ceac02178",
        "shipment.eta_changed evt_9797ef1be1daa8c212baa26c704e21f3",
        "route.deviated evt_54fc2b0e3f6954942f0b92eb45557f4a",
        "shipment.eta_changed evt_099a2af8d885fdfe1d872c62d0d5ece3",
        "shipment.eta_changed evt_32f6be80f6476fecfbb4c09da047126f",
        "shipment.eta_changed evt_fb0c9cfa038f8d42ad853a52c290e973",
        "shipment.eta_changed evt_314806b4cbbe2f933041b5b01f6cecf5",
        "route.rejoined evt_c319e2b12a075bc17fac252af1309b78",
        "shipment.eta_changed evt_b22df97002eebb61dde694d9beb8e9e6",
        "shipment.eta_changed evt_8ee006f6896c88f9b0979b7f6dc4a757",
        "shipment.eta_changed evt_e5068e37ec8e0ff36e9456e39372933d",
        "shipment.late_risk evt_2c1928eade2af8a35d439c6afd174405",
        "shipment.eta_changed evt_34878b97cb8cba89a61ece15fa4562c8",
        "shipment.eta_changed evt_436de9c07342ec91860ef54c3080c98e",
        "shipment.eta_changed evt_fbbc277e4df4a9bf5901fb59adb6b5d2",
        "shipment.eta_changed evt_3f2ce8a6869636f005a1ff7a6bc517d0",
        "shipment.eta_changed evt_a440bf5e09d3212af26b7ae38eb07579",
        "shipment.eta_changed evt_03d9542f3adb2ecb1511ad42aa27cdd9",
        "shipment.eta_changed evt_e10db8fe879e5c536d10a5dada254305",
        "device.offline evt_d846be7c63c27bd2acd0995d1dcb5586",
        "device.online evt_da47f155cff046ba528b7d0e3ff64f00",
        "shipment.eta_changed evt_5dadd80234b190d5c04226918132b117",
        "shipment.eta_changed evt_e9d4f87fbf5bf9a47f8b692383468996",
        "shipment.eta_changed evt_6e339892126adf20379d29db28549eba",
        "shipment.eta_changed evt_07c775d90f519f2dbf4205ad2567384d",
        "shipment.eta_changed evt_dc15498724b9f04addc82d69cc500ac8",
        "shipment.eta_changed evt_13330660e48ac86a922b3891e39bc64c",
        "shipment.eta_changed evt_0a76527bc25c62eb6537bf1ef261cfa1",
        "geofence.entered evt_7b5286c47c29a008d1aa527b52975c78",
        "shipment.arrived evt_f8dd6042db19d71f98b0098247699f99",
    ];
    assert_eq!(
        got, want,
        "event ids changed: replays would not de-duplicate"
    );
}
