//! One vehicle's motion and cargo, advanced in whole simulated seconds. Pure and
//! deterministic: the same seed and the same times give the same states, however often
//! the caller samples them.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::places::{PLACES, Path, ROUTES, distance_m};

/// Acceleration and braking, m/s² (a loaded truck).
const ACCEL_MS2: f64 = 0.6;
const BRAKE_MS2: f64 = 1.0;
/// Speed limit near the ends of a route (city streets, port gates), km/h.
const URBAN_KMH: f64 = 40.0;
/// How far from either end the urban limit holds, metres.
const URBAN_M: f64 = 3_000.0;
/// Cruise speed on the expressway, km/h; a new one is drawn every few km.
const CRUISE_KMH: (f64, f64) = (60.0, 90.0);
/// A reefer's set point and the demo shipment's allowed range, °C.
pub const REEFER_SET_C: f64 = -18.0;
pub const REEFER_RANGE_C: [f64; 2] = [-25.0, -15.0];

/// How a vehicle starts a scripted run (see [`Script`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// Loading at the dock of its path's start; leaves after this many seconds.
    Docked { leaves_after_s: u32 },
    /// On the road, loaded, this fraction (0..1) of the way along its path.
    Along { fraction: f64 },
}

/// When a reefer's refrigeration unit fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Failure {
    /// On about 30 % of loaded trips, 15-35 min after leaving, for 12-20 min.
    Random,
    /// On every trip, at random times as above (the default fleet's truck-0).
    EveryTrip,
    /// Never (a shipment whose record stays compliant).
    Never,
    /// On the first trip only, this long after leaving the dock, for this long; then never.
    Once {
        after_departure_s: u32,
        lasting_s: u32,
    },
}

/// A scripted vehicle: which road, which way, how it starts, what goes wrong. Used to make a
/// demo tell a known story (a reefer excursion at a given time, a breakdown making a
/// shipment late) while everything else stays simulated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Script {
    /// Index into [`ROUTES`].
    pub route: usize,
    /// Driven from the route's `from` place to its `to` place (else backwards).
    pub forward: bool,
    /// Has a refrigeration unit.
    pub reefer: bool,
    pub start: Start,
    pub failure: Failure,
    /// A breakdown on the road: `(from, lasting)` seconds after the simulation's start, the
    /// truck stands still (braking as usual first).
    pub breakdown_s: Option<(u32, u32)>,
}

/// What a vehicle is doing.
#[derive(Debug, Clone)]
enum Phase {
    /// At a warehouse dock: weight steps at given times, leaves at `until_ms`.
    Stopped {
        until_ms: i64,
        /// `(at_ms, weight_kg)`, in time order; applied as time passes.
        steps: Vec<(i64, f64)>,
    },
    /// On the road, `s_m` metres along `path`, at `v_ms` m/s.
    Driving {
        s_m: f64,
        v_ms: f64,
        cruise_ms: f64,
        next_cruise_m: f64,
    },
}

/// A truck (or a driver's phone riding in one): route, phase, cargo.
#[derive(Debug, Clone)]
pub struct Vehicle {
    rng: SmallRng,
    route: usize,
    path: Path,
    phase: Phase,
    /// Simulated time the state is at, epoch ms, a whole number of seconds from the start.
    t_ms: i64,
    /// Load on board, kg.
    pub weight_kg: f64,
    /// Cargo temperature, °C (reefer: around the set point; dry van: near ambient).
    pub temp_c: f64,
    /// Has a refrigeration unit.
    pub reefer: bool,
    /// When the reefer unit fails on this trip: `(from_ms, to_ms)`.
    failure: Option<(i64, i64)>,
    /// When the reefer unit fails.
    failure_plan: Failure,
    /// A breakdown: the truck stands still in `[from_ms, to_ms)`.
    breakdown: Option<(i64, i64)>,
    /// Battery of the telematics unit, percent.
    pub battery_pct: f64,
}

/// Where a vehicle is at a moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// `(lon, lat)` degrees.
    pub lon_lat: (f64, f64),
    pub speed_kmh: f64,
    pub heading_deg: f64,
}

impl Vehicle {
    /// A vehicle on route `route` starting at `start_ms`. `at_origin`: starts loading at the
    /// route's origin (the demo's truck-0); otherwise somewhere along the route, loaded.
    pub fn new(seed: u64, route: usize, reefer: bool, at_origin: bool, start_ms: i64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let forward = at_origin || rng.random_bool(0.5);
        let path = Path::of(route, forward);
        let mut v = Vehicle {
            route,
            phase: Phase::Stopped {
                until_ms: start_ms,
                steps: Vec::new(),
            },
            t_ms: start_ms,
            weight_kg: 0.0,
            temp_c: if reefer { REEFER_SET_C } else { 8.0 },
            reefer,
            failure: None,
            failure_plan: if at_origin && reefer {
                Failure::EveryTrip
            } else {
                Failure::Random
            },
            breakdown: None,
            battery_pct: rng.random_range(60.0..100.0),
            path,
            rng,
        };
        if at_origin {
            v.phase = v.dock(start_ms, false);
        } else {
            let s_m = v.rng.random_range(0.1..0.9) * v.path.length_m();
            let cruise_ms = v.draw_cruise();
            v.weight_kg = v.rng.random_range(8.0..24.0_f64).round() * 1000.0;
            v.phase = Phase::Driving {
                s_m,
                v_ms: cruise_ms,
                cruise_ms,
                next_cruise_m: s_m + 4_000.0,
            };
        }
        v
    }

    /// A vehicle following `script`, its simulated clock at `start_ms`.
    pub fn scripted(seed: u64, script: &Script, start_ms: i64) -> Self {
        let mut v = Vehicle::new(seed, script.route, script.reefer, true, start_ms);
        v.path = Path::of(script.route, script.forward);
        v.failure_plan = script.failure;
        v.breakdown = script.breakdown_s.map(|(from, lasting)| {
            let from = start_ms + i64::from(from) * 1000;
            (from, from + i64::from(lasting) * 1000)
        });
        match script.start {
            Start::Docked { leaves_after_s } => {
                v.weight_kg = 0.0;
                let until = start_ms + i64::from(leaves_after_s.max(1)) * 1000;
                let target = v.rng.random_range(12.0..26.0_f64).round() * 1000.0;
                // Loaded in even steps of a few tonnes over the stay.
                let n = (target / 6_000.0).ceil().max(1.0) as i64;
                let steps = (1..=n)
                    .map(|k| {
                        let at = start_ms + (until - start_ms) * k / (n + 1);
                        (at, (target * k as f64 / n as f64).round())
                    })
                    .collect();
                v.phase = Phase::Stopped {
                    until_ms: until,
                    steps,
                };
            }
            Start::Along { fraction } => {
                let s_m = fraction.clamp(0.0, 1.0) * v.path.length_m();
                let cruise_ms = v.draw_cruise();
                v.weight_kg = v.rng.random_range(8.0..24.0_f64).round() * 1000.0;
                v.phase = Phase::Driving {
                    s_m,
                    v_ms: cruise_ms,
                    cruise_ms,
                    next_cruise_m: s_m + 4_000.0,
                };
                // Under way already: a failure planned for this trip counts from now.
                v.failure = v.plan_failure(start_ms);
            }
        }
        v
    }

    /// When the unit fails on a trip that leaves at `now`: `(from_ms, to_ms)`, or none.
    fn plan_failure(&mut self, now: i64) -> Option<(i64, i64)> {
        if !self.reefer {
            return None;
        }
        let random = match self.failure_plan {
            Failure::Never => return None,
            Failure::Once {
                after_departure_s,
                lasting_s,
            } => {
                self.failure_plan = Failure::Never;
                let from = now + i64::from(after_departure_s) * 1000;
                return Some((from, from + i64::from(lasting_s) * 1000));
            }
            Failure::EveryTrip => true,
            Failure::Random => self.rng.random_bool(0.3),
        };
        random.then(|| {
            let from = now + self.rng.random_range(15..35) * 60_000;
            (from, from + self.rng.random_range(12..20) * 60_000)
        })
    }

    fn draw_cruise(&mut self) -> f64 {
        self.rng.random_range(CRUISE_KMH.0..CRUISE_KMH.1) / 3.6
    }

    /// A stop at the dock of the current path's start (`arrived` = false) or end: unload
    /// what is on board in steps of several tonnes, then load new cargo.
    fn dock(&mut self, now_ms: i64, arrived: bool) -> Phase {
        let mut t = now_ms + self.rng.random_range(60_000..180_000);
        let mut steps = Vec::new();
        let mut w = self.weight_kg;
        if arrived {
            while w > 0.0 {
                w = (w - self.rng.random_range(4.0..8.0_f64).round() * 1000.0).max(0.0);
                steps.push((t, w));
                t += self.rng.random_range(120_000..300_000);
            }
        }
        let target = self.rng.random_range(12.0..26.0_f64).round() * 1000.0;
        while w < target {
            w = (w + self.rng.random_range(4.0..8.0_f64).round() * 1000.0).min(target);
            steps.push((t, w));
            t += self.rng.random_range(120_000..300_000);
        }
        Phase::Stopped { until_ms: t, steps }
    }

    /// Advances the state to `now_ms` in one-second steps (never backwards).
    pub fn advance_to(&mut self, now_ms: i64) {
        while self.t_ms + 1000 <= now_ms {
            self.t_ms += 1000;
            self.second();
        }
    }

    fn second(&mut self) {
        let now = self.t_ms;
        let mut arrived = false;
        let mut leave = false;
        match &mut self.phase {
            Phase::Stopped { until_ms, steps } => {
                while let Some(&(at, w)) = steps.first() {
                    if at > now {
                        break;
                    }
                    self.weight_kg = w;
                    steps.remove(0);
                }
                leave = now >= *until_ms;
            }
            Phase::Driving {
                s_m,
                v_ms,
                cruise_ms,
                next_cruise_m,
            } => {
                let length = self.path.length_m();
                let left = length - *s_m;
                let urban = URBAN_KMH / 3.6;
                let mut target = *cruise_ms;
                if *s_m < URBAN_M || left < URBAN_M {
                    target = target.min(urban);
                }
                if self.breakdown.is_some_and(|(a, b)| (a..b).contains(&now)) {
                    target = 0.0;
                }
                target = target.min((2.0 * BRAKE_MS2 * (left - 10.0).max(0.0)).sqrt());
                if *v_ms < target {
                    *v_ms = (*v_ms + ACCEL_MS2).min(target);
                } else {
                    *v_ms = (*v_ms - BRAKE_MS2).max(target);
                }
                *s_m += *v_ms;
                if left <= 15.0 || (*v_ms < 0.5 && left < 50.0) {
                    arrived = true;
                } else if *s_m >= *next_cruise_m {
                    *next_cruise_m += self.rng.random_range(2_000.0..8_000.0);
                    *cruise_ms = self.rng.random_range(CRUISE_KMH.0..CRUISE_KMH.1) / 3.6;
                }
            }
        }
        if arrived {
            let forward = self.path.to == ROUTES[self.route % ROUTES.len()].to;
            self.path = Path::of(self.route, !forward);
            self.phase = self.dock(now, true);
        } else if leave {
            let cruise_ms = self.draw_cruise();
            self.phase = Phase::Driving {
                s_m: 0.0,
                v_ms: 0.0,
                cruise_ms,
                next_cruise_m: 3_000.0,
            };
            // Some reefer trips see the unit fail for long enough to break the range.
            self.failure = self.plan_failure(now);
        }
        self.cargo_climate();
        self.battery_pct = (self.battery_pct - 0.0005).max(5.0);
    }

    /// First-order drift of the cargo temperature towards where it is pulled, one second.
    fn cargo_climate(&mut self) {
        let now = self.t_ms;
        let (target, tau_s): (f64, f64) = if !self.reefer {
            (8.0, 1_800.0)
        } else if self.failure.is_some_and(|(a, b)| (a..b).contains(&now)) {
            (2.0, 600.0)
        } else if matches!(self.phase, Phase::Stopped { .. }) {
            // Doors open at the dock: a slow drift up, still inside the range.
            (-16.5, 1_200.0)
        } else {
            (REEFER_SET_C, 300.0)
        };
        self.temp_c += (target - self.temp_c) * (1.0 - (-1.0 / tau_s).exp());
    }

    /// Where the vehicle is at `now_ms` (at or after the state's time), interpolated.
    pub fn pose(&self, now_ms: i64) -> Pose {
        match &self.phase {
            Phase::Stopped { .. } => {
                // At the dock, a hundred metres or so from the place's centre.
                let (q, heading) = self.path.at(120.0);
                Pose {
                    lon_lat: q,
                    speed_kmh: 0.0,
                    heading_deg: heading,
                }
            }
            Phase::Driving { s_m, v_ms, .. } => {
                let dt = (now_ms - self.t_ms).max(0) as f64 / 1000.0;
                let (p, heading) = self.path.at(s_m + v_ms * dt);
                Pose {
                    lon_lat: p,
                    speed_kmh: v_ms * 3.6,
                    heading_deg: heading,
                }
            }
        }
    }

    /// Distance to the nearest place, metres (GPS jitter is injected near fences).
    pub fn nearest_place_m(&self, lon_lat: (f64, f64)) -> f64 {
        PLACES
            .iter()
            .map(|p| distance_m(lon_lat, (p.lon, p.lat)))
            .fold(f64::INFINITY, f64::min)
    }
}
