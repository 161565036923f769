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
    /// Every loaded trip of this reefer breaks its range (the demo's truck-0).
    always_fail: bool,
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
            always_fail: at_origin && reefer,
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
            self.failure = None;
            if self.reefer && (self.always_fail || self.rng.random_bool(0.3)) {
                let from = now + self.rng.random_range(15..35) * 60_000;
                self.failure = Some((from, from + self.rng.random_range(12..20) * 60_000));
            }
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
