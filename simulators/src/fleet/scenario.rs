//! The story `landport demo` tells: six scripted trucks of the fleet carry shipments for
//! different customers, with an hour of history recorded before the demo goes live, so that
//! within a minute of starting it shows a reefer's temperature excursion, a shipment running
//! late after a breakdown, a delivered shipment with a complete cold-chain record, shipments
//! in transit with moving ETAs, one departing, and a replayable hour of every truck's track.
//!
//! Pure data: the demo turns [`DemoShipment`]s into shipment definitions and the
//! [`Scenario`] into the simulator's scripts. Times count from the moment the demo goes live
//! (`T0`); the simulation starts [`HISTORY`] before it.

use std::time::Duration;

use super::places::{PLACES, ROUTES};
use super::sim::Scenario;
use super::vehicle::{Failure, Script, Start};

/// How much history the demo's trucks record before it goes live.
pub const HISTORY: Duration = Duration::from_secs(60 * 60);
const H: u32 = 60 * 60;

/// One shipment of the demo, carried by a scripted truck.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoShipment {
    pub id: &'static str,
    /// Index of the device carrying it (`truck-{device}`).
    pub device: usize,
    /// The customer and what is carried, as the shipment's reference.
    pub reference: &'static str,
    /// The route it is planned on and the direction.
    pub route: usize,
    pub forward: bool,
    /// Deadline, seconds after the demo goes live (negative: already past).
    pub deadline_after_s: i64,
    /// Allowed cargo temperature, °C, for a reefer's cold chain.
    pub temp_range_c: Option<[f64; 2]>,
    /// Registered as already in transit (its truck is on the road when the history starts);
    /// otherwise planned, and it departs when the truck leaves the origin.
    pub in_transit: bool,
    /// The customer signs for it on arrival: the demo marks it `delivered` then.
    pub delivered_on_arrival: bool,
}

impl DemoShipment {
    /// Place id (a demo geofence) the shipment leaves from.
    pub fn origin(&self) -> &'static str {
        let r = ROUTES[self.route % ROUTES.len()];
        PLACES[if self.forward { r.from } else { r.to }].id
    }

    /// Place id (a demo geofence) the shipment goes to.
    pub fn destination(&self) -> &'static str {
        let r = ROUTES[self.route % ROUTES.len()];
        PLACES[if self.forward { r.to } else { r.from }].id
    }

    /// Device id of the truck carrying it.
    pub fn device_id(&self) -> String {
        format!("truck-{}", self.device)
    }
}

/// The allowed range of the demo's reefer shipments, °C (the fleet's reefers hold -18).
pub const COLD_CHAIN_C: [f64; 2] = [-25.0, -15.0];

/// The scripted trucks (device indices 0-5 of the fleet, all trucks), times from the start
/// of the history.
pub fn scenario() -> Scenario {
    let script = |route, forward, reefer, start, failure| Script {
        route,
        forward,
        reefer,
        start,
        failure,
        breakdown_s: None,
    };
    Scenario {
        scripts: vec![
            // Reefer, Anshan -> Yingkou: loads for 15 min, leaves 45 min before T0; its unit
            // fails 41 min later (T0 - 4 min) for 16 min: out of range from about T0 - 2 min,
            // an excursion once the 5-minute grace has passed, recovered around T0 + 20 min.
            (
                0,
                script(
                    0,
                    true,
                    true,
                    Start::Docked {
                        leaves_after_s: 15 * 60,
                    },
                    Failure::Once {
                        after_departure_s: 41 * 60,
                        lasting_s: 16 * 60,
                    },
                ),
            ),
            // Dry van, Anshan -> Dalian, a quarter of the way when the history starts; breaks
            // down on the G15 at T0 - 5 min for 50 min: its ETA slips past the deadline.
            (
                1,
                Script {
                    breakdown_s: Some((H - 5 * 60, 50 * 60)),
                    ..script(
                        5,
                        true,
                        false,
                        Start::Along { fraction: 0.25 },
                        Failure::Never,
                    )
                },
            ),
            // Reefer, Liaoyang -> Anshan: loads for 8 min, leaves 52 min before T0, arrives
            // about half an hour before it, cold chain kept all the way.
            (
                2,
                script(
                    2,
                    true,
                    true,
                    Start::Docked {
                        leaves_after_s: 8 * 60,
                    },
                    Failure::Never,
                ),
            ),
            // Dry van, Yingkou -> Dalian, in transit for hours yet.
            (
                3,
                script(
                    3,
                    true,
                    false,
                    Start::Along { fraction: 0.05 },
                    Failure::Never,
                ),
            ),
            // Reefer, Dalian -> Anshan, in transit, in range.
            (
                4,
                script(
                    5,
                    false,
                    true,
                    Start::Along { fraction: 0.1 },
                    Failure::Never,
                ),
            ),
            // Dry van loading at Shenyang, leaves for Anshan 2 min after T0.
            (
                5,
                script(
                    4,
                    true,
                    false,
                    Start::Docked {
                        leaves_after_s: H + 2 * 60,
                    },
                    Failure::Never,
                ),
            ),
        ],
        history: HISTORY,
        live_from_ms: None,
    }
}

/// The demo's shipments, one per scripted truck, each for a different customer.
pub fn shipments() -> Vec<DemoShipment> {
    vec![
        DemoShipment {
            id: "SHP-1",
            device: 0,
            reference: "Frozen seafood for Yingkou Cold Chain Co., PO 4471",
            route: 0,
            forward: true,
            deadline_after_s: 3 * 3600,
            temp_range_c: Some(COLD_CHAIN_C),
            in_transit: false,
            delivered_on_arrival: false,
        },
        DemoShipment {
            id: "SHP-2",
            device: 1,
            reference: "Steel coils for Dalian Shipyard, PO 8812",
            route: 5,
            forward: true,
            deadline_after_s: 2 * 3600,
            temp_range_c: None,
            in_transit: true,
            delivered_on_arrival: false,
        },
        DemoShipment {
            id: "SHP-3",
            device: 2,
            reference: "Vaccines for Anshan Central Hospital, PO 1207",
            route: 2,
            forward: true,
            deadline_after_s: -15 * 60,
            temp_range_c: Some(COLD_CHAIN_C),
            in_transit: false,
            delivered_on_arrival: true,
        },
        DemoShipment {
            id: "SHP-4",
            device: 3,
            reference: "Machine parts for Dalian Container Terminal, PO 5530",
            route: 3,
            forward: true,
            deadline_after_s: 5 * 3600,
            temp_range_c: None,
            in_transit: true,
            delivered_on_arrival: false,
        },
        DemoShipment {
            id: "SHP-5",
            device: 4,
            reference: "Ice cream for Anshan Wanda Plaza, PO 3391",
            route: 5,
            forward: false,
            deadline_after_s: 5 * 3600,
            temp_range_c: Some(COLD_CHAIN_C),
            in_transit: true,
            delivered_on_arrival: false,
        },
        DemoShipment {
            id: "SHP-6",
            device: 5,
            reference: "Wire rod for Anshan Heavy Machinery, PO 6120",
            route: 4,
            forward: true,
            deadline_after_s: 3 * 3600,
            temp_range_c: None,
            in_transit: false,
            delivered_on_arrival: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::places::distance_m;
    use crate::fleet::sim::{FleetConfig, Simulation};

    const T0: i64 = 1_795_500_000_000;
    const MIN: i64 = 60_000;

    /// One reading: `(ts, lon, lat, speed_kmh, temp_c)`.
    type Row = (i64, f64, f64, f64, f64);

    /// `(ts, lon, lat, speed_kmh, temp_c)` of every reading of each scripted truck from the
    /// start of the history to `T0 + 40 min`.
    fn story() -> Vec<Vec<Row>> {
        let config = FleetConfig::default();
        let start = T0 - HISTORY.as_millis() as i64;
        let mut sim = Simulation::with_scenario(&config, &scenario(), start);
        let mut out = vec![Vec::new(); 6];
        for m in sim.history(T0 + 40 * MIN) {
            let Some(i) = m
                .device
                .strip_prefix("truck-")
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            if i >= 6 {
                continue;
            }
            // Store-and-forward batches within ingest's payload limit (64 KiB).
            assert!(m.payload.len() < 64 * 1024, "{} bytes", m.payload.len());
            let batch: Vec<serde_json::Value> = serde_json::from_slice(&m.payload).unwrap();
            assert!(!batch.is_empty() && batch.len() <= 200);
            for r in batch {
                let f = |k: &str| r[k].as_f64().unwrap();
                out[i].push((
                    r["ts"].as_i64().unwrap(),
                    f("lon"),
                    f("lat"),
                    f("speed_kmh"),
                    f("temp_c"),
                ));
            }
        }
        out
    }

    fn at(track: &[Row], from: i64, to: i64) -> impl Iterator<Item = &Row> {
        track.iter().filter(move |r| (from..to).contains(&r.0))
    }

    fn place(id: &str) -> (f64, f64) {
        let p = PLACES.iter().find(|p| p.id == id).unwrap();
        (p.lon, p.lat)
    }

    #[test]
    fn the_demo_story_happens_when_the_demo_says() {
        let s = story();
        let start = T0 - 60 * MIN;
        // truck-0: cold while loading and on the road; warm past -15 °C from about T0 - 2 min
        // for well over the 5-minute grace.
        assert!(at(&s[0], start, T0 - 5 * MIN).all(|r| r.4 < -15.0));
        let warm: Vec<_> = at(&s[0], T0 - 5 * MIN, T0 + 30 * MIN)
            .filter(|r| r.4 > -15.0)
            .collect();
        let (first, last) = (warm.first().unwrap().0, warm.last().unwrap().0);
        assert!(
            (T0 - 4 * MIN..T0).contains(&first),
            "{}",
            (first - T0) / 1000
        );
        assert!(last - first > 8 * MIN, "{} s warm", (last - first) / 1000);
        // truck-1: on the road, then standing still from T0 on.
        assert!(at(&s[1], start, T0 - 10 * MIN).all(|r| r.3 > 30.0));
        assert!(at(&s[1], T0, T0 + 40 * MIN).all(|r| r.3 == 0.0));
        // truck-2: parked at Liaoyang for 8 min (a stop of its own), at Anshan by T0 - 20 min,
        // in range all the way.
        let liaoyang = place("liaoyang");
        let parked = at(&s[2], start, start + 8 * MIN)
            .filter(|r| r.3 == 0.0 && distance_m((r.1, r.2), liaoyang) < 500.0)
            .count();
        assert!(parked as i64 >= 7 * MIN / 5_000, "{parked} readings parked");
        let anshan = place("anshan-steel");
        assert!(
            at(&s[2], start, T0 - 20 * MIN).any(|r| distance_m((r.1, r.2), anshan) < 500.0),
            "truck-2 never reached Anshan before T0 - 20 min"
        );
        assert!(s[2].iter().all(|r| (-25.0..=-15.0).contains(&r.4)));
        // truck-3 and truck-4 drive the whole time.
        for i in [3, 4] {
            let moving = at(&s[i], start, T0 + 40 * MIN)
                .filter(|r| r.3 > 0.0)
                .count();
            assert_eq!(moving, at(&s[i], start, T0 + 40 * MIN).count(), "truck-{i}");
        }
        // truck-5: at Shenyang until T0 + 2 min, then away.
        let shenyang = place("shenyang");
        assert!(at(&s[5], start, T0).all(|r| distance_m((r.1, r.2), shenyang) < 800.0));
        assert!(
            at(&s[5], T0 + 10 * MIN, T0 + 40 * MIN)
                .all(|r| distance_m((r.1, r.2), shenyang) > 800.0)
        );
    }
}
