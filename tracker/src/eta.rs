//! The ETA model (see `docs/eta.md`): time to go from what the tenant has learned along the
//! planned route, the device's own pace, and a window calibrated on past errors.
//!
//! Raw time to go, `T = learned^w x plain^(1 - w)`, with `learned = k x known_s +
//! unknown_m / v`, `plain = remaining_m / v` and `w` the weight the tenant's own arrivals
//! favour ([`crate::eta_history::EtaHistory::learned_weight`]):
//! - `known_s`: along the rest of the planned route, the learned pace of each ~500 m cell
//!   (weighted by how much travel the cell has seen) plus the stop time expected on a visit
//!   ([`crate::eta_history`]); cached per shipment in [`RouteTimes`] as suffix sums per vertex.
//! - `unknown_m`: the rest of the distance (cells not learned, the off-route distance, or all
//!   of it without a route: the straight distance times the detour factor).
//! - `v`: before the trip (`planned`), the device's cruising speed, an exponentially weighted
//!   mean of its moving samples ([`SpeedStats`]; blended with the default speed until it has
//!   been seen moving for a couple of minutes). Under way, this trip's own mean speed since
//!   departure (the path travelled / time), stops included (a truck that keeps stopping
//!   arrives later), takes over from the cruising speed as the trip ages
//!   ([`EtaTrip::planning_mps`]): a truck that waited at the dock before leaving does not
//!   start its trip with a crawling ETA.
//! - `k`: how this trip's pace compares with the learned one over the part already covered
//!   ([`EtaTrip`]), shrunk towards 1.
//!
//! The estimate is `T`, the window `[T x exp(q_lo), T x exp(q_hi)]`, with the conformal
//! quantiles of ln(real / raw) of the tenant's past trips in the same progress bucket
//! ([`crate::eta_history::EtaHistory::calibration`]), a prior while there are few.

use serde::{Deserialize, Serialize};

use crate::eta_history::{BUCKETS, Calibration, EtaHistory, bucket, cell_key};
use crate::reading::TimestampMs;
use crate::route::Route;
use crate::settings::EtaSettings;
use crate::shipment::{Eta, EtaMethod};

/// Time constant of the speed averages: speeds older than this weigh e^-1 as much.
const SPEED_TAU_MS: f64 = 15.0 * 60_000.0;
/// Observation time after which the measured speed is trusted alone.
const WARMUP_MS: f64 = 120_000.0;
/// Speeds at or above this (m/s, 7.2 km/h) count as moving, for the pre-departure mean.
const MOVING_MPS: f64 = 2.0;

/// An exponentially weighted mean and mean square of speed, m/s, over `observed_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Ewma {
    mean_mps: f64,
    mean_sq: f64,
    observed_ms: f64,
}

impl Ewma {
    fn fold(&mut self, speed_mps: f64, dt: f64) {
        let alpha = if self.observed_ms == 0.0 {
            1.0
        } else {
            1.0 - (-dt / SPEED_TAU_MS).exp()
        };
        self.mean_mps += alpha * (speed_mps - self.mean_mps);
        self.mean_sq += alpha * (speed_mps * speed_mps - self.mean_sq);
        self.observed_ms = (self.observed_ms + dt).min(1e12);
    }

    /// The mean, blended with the default during warm-up, and floored.
    fn planning_mps(&self, s: &EtaSettings) -> f64 {
        let default = s.default_speed_kmh / 3.6;
        let w = (self.observed_ms / WARMUP_MS).min(1.0);
        let mean = w * self.mean_mps + (1.0 - w) * default;
        mean.max(s.min_speed_kmh / 3.6)
    }
}

/// Running statistics of a device's ground speed while it moves: its cruising speed.
/// (Snapshots of older builds also hold a mean over every sample, stops included; it is
/// ignored: under way, a trip's own mean since departure stands for it, see
/// [`EtaTrip::planning_mps`].)
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeedStats {
    /// Samples at or above [`MOVING_MPS`] only (absent from snapshots of older builds).
    #[serde(default)]
    moving: Ewma,
}

impl SpeedStats {
    /// Folds in a speed that held for `dt_ms`.
    pub fn update(&mut self, speed_mps: f64, dt_ms: i64) {
        if !(speed_mps.is_finite() && speed_mps >= 0.0) || dt_ms <= 0 {
            return;
        }
        if speed_mps >= MOVING_MPS {
            self.moving.fold(speed_mps, dt_ms as f64);
        }
    }

    /// Cruising speed to plan with (m/s): the mean of the moving samples, blended with the
    /// default during warm-up, and floored.
    pub fn planning_mps(&self, s: &EtaSettings) -> f64 {
        self.moving.planning_mps(s)
    }
}

/// What lies ahead of a shipment, as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ahead {
    /// Distance to go, metres (reported with the ETA).
    pub remaining_m: f64,
    pub method: EtaMethod,
    /// Learned time to go over the learned part of the route, seconds (see [`RouteTimes`]).
    pub known_s: f64,
    /// Distance to go at the device's own speed, metres.
    pub unknown_m: f64,
}

impl Ahead {
    /// Everything at the device's own speed (no route, or nothing learned).
    pub fn unlearned(remaining_m: f64, method: EtaMethod) -> Ahead {
        Ahead {
            remaining_m,
            method,
            known_s: 0.0,
            unknown_m: remaining_m,
        }
    }
}

/// Raw time to go (seconds) before calibration: `k x known_s + unknown_m / v`, with `v` the
/// speed to plan with ([`SpeedStats::planning_mps`] before the trip,
/// [`EtaTrip::planning_mps`] under way).
pub fn raw_seconds(ahead: &Ahead, k: f64, v_mps: f64) -> f64 {
    (k * ahead.known_s.max(0.0) + ahead.unknown_m.max(0.0) / v_mps).max(0.0)
}

/// The two estimates of the raw time to go and the one shown, seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawParts {
    /// From the learned route times ([`raw_seconds`]).
    pub learned_s: f64,
    /// All the distance to go at the speed to plan with: `remaining_m / v`.
    pub plain_s: f64,
    /// Their blend, `learned^w x plain^(1 - w)`, `w` the tenant's learned weight
    /// ([`crate::eta_history::EtaHistory::learned_weight`]).
    pub raw_s: f64,
}

/// The raw time to go from what lies `ahead`: the learned estimate and the plain one,
/// blended geometrically with weight `w` on the learned one.
pub fn raw_parts(ahead: &Ahead, k: f64, v_mps: f64, w: f64) -> RawParts {
    let learned_s = raw_seconds(ahead, k, v_mps);
    let plain_s = (ahead.remaining_m.max(0.0) / v_mps).max(0.0);
    let w = if w.is_finite() {
        w.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let raw_s = if learned_s >= 1.0 && plain_s >= 1.0 {
        (w * learned_s.ln() + (1.0 - w) * plain_s.ln()).exp()
    } else {
        w * learned_s + (1.0 - w) * plain_s
    };
    RawParts {
        learned_s,
        plain_s,
        raw_s,
    }
}

/// Estimates arrival as of device time `at_ms` from a raw time to go and the calibration of
/// its progress bucket: the point estimate is `raw`, the window `[raw x exp(q10),
/// raw x exp(q90)]` widened to hold it; never before `at_ms`.
pub fn estimate(ahead: &Ahead, raw_s: f64, cal: Calibration, at_ms: TimestampMs) -> Eta {
    let raw_s = if raw_s.is_finite() {
        raw_s.max(0.0)
    } else {
        1e9
    };
    let scale = |q: f64| (raw_s * q.clamp(-3.0, 3.0).exp()).min(1e9);
    // The raw estimate itself, not shifted by the median residual: measured in
    // `scripts/eta-eval`, any shift (the median residual, half of it, or the factor that
    // minimised the median relative error on past residuals) made the held-out median error
    // worse on both data sets. The window is the calibrated one, widened to hold it.
    let remaining_s = scale(0.0);
    let to_ms = |s: f64| at_ms.saturating_add((s * 1000.0).round() as i64);
    Eta {
        eta_ms: to_ms(remaining_s),
        p10_ms: to_ms(scale(cal.q10.min(0.0))),
        p90_ms: to_ms(scale(cal.q90.max(0.0))),
        remaining_m: ahead.remaining_m.max(0.0),
        remaining_s,
        method: ahead.method,
        computed_at_ms: at_ms,
    }
}

/// Learned time and unlearned distance from each vertex of a planned route to its end,
/// computed from the tenant's [`EtaHistory`] (refreshed now and then, not at every fix).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteTimes {
    /// Per vertex: learned seconds from it to the end.
    known_s: Vec<f64>,
    /// Per vertex: metres from it to the end that nothing was learned about.
    unknown_m: Vec<f64>,
    /// Device time it was computed at.
    pub refreshed_ms: TimestampMs,
    /// Length of the route it was computed for, metres.
    route_m: f64,
}

/// Pieces a route is cut into to look up cells, metres at most.
const PIECE_M: f64 = 250.0;
/// Stops expected in the last stretch of a route are the arrival's, not the trip's (m).
const NO_STOP_NEAR_END_M: f64 = 600.0;

impl RouteTimes {
    /// Computes the table of `route` from `history` at device time `at_ms`.
    pub fn build(route: &Route, history: &EtaHistory, at_ms: TimestampMs) -> RouteTimes {
        let cum = route.cumulative_m();
        let n = cum.len();
        let length = route.length_m();
        // Per segment: learned seconds and unlearned metres.
        let mut seg_known = vec![0.0; n - 1];
        let mut seg_unknown = vec![0.0; n - 1];
        let mut prev_cell = None;
        for i in 0..n - 1 {
            let len = cum[i + 1] - cum[i];
            let pieces = (len / PIECE_M).ceil().max(1.0) as usize;
            let piece = len / pieces as f64;
            for j in 0..pieces {
                let mid = cum[i] + (j as f64 + 0.5) * piece;
                let (lon, lat) = route.point_at(mid);
                let cell = cell_key(lon, lat);
                match history.cell(lon, lat) {
                    Some(c) => {
                        seg_known[i] += c.weight * c.pace_s_per_m * piece;
                        seg_unknown[i] += (1.0 - c.weight) * piece;
                        if prev_cell != Some(cell) && mid < length - NO_STOP_NEAR_END_M {
                            seg_known[i] += c.stop_s;
                        }
                    }
                    None => seg_unknown[i] += piece,
                }
                prev_cell = Some(cell);
            }
        }
        let mut known_s = vec![0.0; n];
        let mut unknown_m = vec![0.0; n];
        for i in (0..n - 1).rev() {
            known_s[i] = known_s[i + 1] + seg_known[i];
            unknown_m[i] = unknown_m[i + 1] + seg_unknown[i];
        }
        RouteTimes {
            known_s,
            unknown_m,
            refreshed_ms: at_ms,
            route_m: length,
        }
    }

    /// Learned seconds and unlearned metres from `along_m` to the end of `route` (the route
    /// the table was built for).
    pub fn at(&self, route: &Route, along_m: f64) -> (f64, f64) {
        let cum = route.cumulative_m();
        let n = cum.len();
        if self.known_s.len() != n || self.route_m != route.length_m() {
            return (0.0, (route.length_m() - along_m).max(0.0));
        }
        let i = cum
            .partition_point(|&c| c <= along_m)
            .saturating_sub(1)
            .min(n - 2);
        let seg = cum[i + 1] - cum[i];
        let left = if seg > 0.0 {
            ((cum[i + 1] - along_m) / seg).clamp(0.0, 1.0)
        } else {
            0.0
        };
        (
            self.known_s[i + 1] + left * (self.known_s[i] - self.known_s[i + 1]),
            self.unknown_m[i + 1] + left * (self.unknown_m[i] - self.unknown_m[i + 1]),
        )
    }
}

/// Weight, in learned seconds, of the prior belief that a trip goes at the learned pace.
const K_PRIOR_S: f64 = 900.0;
/// A fix adds to the trip's odometer once it is this far from where it last counted, metres
/// (GPS jitter of a standing device stays below it).
const ODOMETER_STEP_M: f64 = 50.0;
/// Weight, in seconds under way, of the cruising speed known before departure against the
/// trip's own mean speed since departure.
const TRIP_MEAN_PRIOR_S: f64 = 60.0;

/// What the model keeps about one shipment's trip (part of its state, so of the snapshot).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EtaTrip {
    /// Progress along the planned route, metres: where the last fix was projected, searched
    /// only near the previous progress so parallel or returning legs cannot capture it.
    pub progress_m: Option<f64>,
    /// Length of the route `progress_m` and `times` were measured on, metres (a new route
    /// starts over).
    pub route_m: Option<f64>,
    /// Distance to go when the trip got under way (progress buckets are fractions of it).
    pub start_remaining_m: Option<f64>,
    /// Device time of the first fix under way (absent from snapshots of older builds: the
    /// trip's mean speed then counts from the next fix).
    #[serde(default)]
    pub departed_ms: Option<TimestampMs>,
    /// Distance to go at the first fix on the current route, and at the last fix, metres.
    #[serde(default)]
    leg_start_m: Option<f64>,
    #[serde(default)]
    last_remaining_m: Option<f64>,
    /// Distance covered under way on earlier routes of this trip (a new route starts a new
    /// leg), metres.
    #[serde(default)]
    covered_before_m: f64,
    /// Distance travelled under way, metres: the path from fix to fix, counted only once the
    /// device is [`ODOMETER_STEP_M`] from where it was last counted, so GPS jitter while
    /// standing adds nothing (absent from snapshots of older builds: the net progress along
    /// the route stands for it).
    #[serde(default)]
    odometer_m: f64,
    /// Where the odometer last counted from, (lon, lat).
    #[serde(default)]
    odometer_at: Option<(f64, f64)>,
    /// Learned time to go and unlearned distance at the previous fix, and its time.
    last: Option<(TimestampMs, f64, f64)>,
    /// Time actually taken over learned stretches, and the learned time for them, seconds.
    actual_s: f64,
    model_s: f64,
    /// Per progress bucket: when the first ETA in it was asked, and its raw seconds to go.
    pub samples: [Option<(TimestampMs, f64)>; BUCKETS],
    /// Per progress bucket, for the same ETA: the learned and the plain estimate, seconds
    /// (what the tenant's blending weight is fitted on; absent from older snapshots).
    #[serde(default)]
    pub parts: [Option<(f64, f64)>; BUCKETS],
    /// The route's learned times (rebuilt every [`ROUTE_TIMES_REFRESH_MS`]).
    pub times: Option<RouteTimes>,
}

/// How often a shipment's [`RouteTimes`] are rebuilt from the history, device time.
pub const ROUTE_TIMES_REFRESH_MS: i64 = 15 * 60_000;

impl EtaTrip {
    /// Starts over on a new route of `route_m` metres: progress, pace and route times are
    /// measured afresh; the calibration samples and the trip's start stay.
    pub fn start_over(&mut self, route_m: f64) {
        *self = EtaTrip {
            route_m: Some(route_m),
            start_remaining_m: self.start_remaining_m,
            departed_ms: self.departed_ms,
            covered_before_m: self.covered_m(),
            odometer_m: self.odometer_m,
            odometer_at: self.odometer_at,
            samples: self.samples,
            parts: self.parts,
            ..EtaTrip::default()
        };
    }

    /// Notes a fix under way at `ts`, at `(lon, lat)`, with `remaining_m` to go: the trip's
    /// start (its first fix under way) and the distance covered since.
    pub fn note_progress(&mut self, ts: TimestampMs, remaining_m: f64, lon_lat: (f64, f64)) {
        if self.departed_ms.is_none() {
            self.departed_ms = Some(ts);
            self.start_remaining_m = Some(remaining_m);
        }
        self.leg_start_m.get_or_insert(remaining_m);
        self.last_remaining_m = Some(remaining_m);
        if lon_lat.0.is_finite() && lon_lat.1.is_finite() {
            match self.odometer_at {
                None => self.odometer_at = Some(lon_lat),
                Some(from) => {
                    let step = short_distance_m(from, lon_lat);
                    if step >= ODOMETER_STEP_M {
                        self.odometer_m += step;
                        self.odometer_at = Some(lon_lat);
                    }
                }
            }
        }
    }

    /// Distance travelled under way, metres: the odometer's path, or the net progress along
    /// the route if that is more (a snapshot of an older build, or a fix missed).
    fn travelled_m(&self) -> f64 {
        self.odometer_m.max(self.covered_m())
    }

    /// Distance covered under way, metres: on each route, how much nearer the end the last
    /// fix is than the first (net, so GPS jitter does not add up).
    fn covered_m(&self) -> f64 {
        let leg = match (self.leg_start_m, self.last_remaining_m) {
            (Some(start), Some(last)) => (start - last).max(0.0),
            _ => 0.0,
        };
        self.covered_before_m + leg
    }

    /// Speed to plan the unlearned rest of the trip with as of device time `ts` (m/s): this
    /// trip's mean since departure, stops included, weighted `t / (t + 1 min)` after `t`
    /// under way against the device's cruising speed from before (`speed`); floored at
    /// `min_speed_kmh`. A truck that waited at the dock starts at its cruising speed, one that
    /// keeps stopping on the way slows its ETA as the trip shows it.
    pub fn planning_mps(&self, speed: &SpeedStats, s: &EtaSettings, ts: TimestampMs) -> f64 {
        let cruising = speed.planning_mps(s);
        let floor = s.min_speed_kmh / 3.6;
        let Some(t0) = self.departed_ms else {
            return cruising;
        };
        let under_way_s = (ts - t0) as f64 / 1000.0;
        if !(under_way_s > 0.0) {
            return cruising;
        }
        let mean = self.travelled_m() / under_way_s;
        let w = under_way_s / (under_way_s + TRIP_MEAN_PRIOR_S);
        (w * mean + (1.0 - w) * cruising).max(floor)
    }

    /// Device time of the last fix folded in.
    pub fn last_ts_ms(&self) -> Option<TimestampMs> {
        self.last.map(|l| l.0)
    }

    /// This trip's pace relative to the learned one, shrunk towards 1.
    pub fn k(&self) -> f64 {
        ((self.actual_s + K_PRIOR_S) / (self.model_s + K_PRIOR_S)).clamp(0.25, 4.0)
    }

    /// Folds in a fix under way at `ts` with what lies `ahead`; `v_mps` is the device speed
    /// used for the unlearned part. Time passes on learned stretches in proportion to their
    /// share of the raw time just covered.
    pub fn observe(&mut self, ts: TimestampMs, ahead: &Ahead, v_mps: f64) {
        if let Some((t0, known0, unknown0)) = self.last {
            let dt = (ts - t0) as f64 / 1000.0;
            let dk = (known0 - ahead.known_s).max(0.0);
            let du = (unknown0 - ahead.unknown_m).max(0.0) / v_mps.max(0.1);
            if dt > 0.0 && dk > 0.0 {
                let k = self.k();
                let share = k * dk / (k * dk + du);
                self.actual_s += dt * share;
                self.model_s += dk;
            }
        }
        self.last = Some((ts, ahead.known_s, ahead.unknown_m));
    }

    /// The progress bucket of a trip with `remaining_m` to go.
    pub fn bucket(&self, remaining_m: f64) -> usize {
        match self.start_remaining_m {
            Some(start) if start > 0.0 => bucket(1.0 - remaining_m / start),
            _ => 0,
        }
    }

    /// Whether the route times are missing, stale or of another route.
    pub fn needs_times(&self, route: &Route, ts: TimestampMs) -> bool {
        self.times.as_ref().is_none_or(|t| {
            t.route_m != route.length_m() || ts - t.refreshed_ms >= ROUTE_TIMES_REFRESH_MS
        })
    }

    /// Remembers, for calibration on arrival, the first raw estimate asked past the middle of
    /// each progress bucket, `remaining_m` to go: the estimate a bucket is calibrated with is
    /// one typical of the bucket (at departure the trip's own speed is not known yet, a
    /// quarter in it mostly is).
    pub fn sample(&mut self, remaining_m: f64, at_ms: TimestampMs, raw: RawParts) {
        let Some(start) = self.start_remaining_m.filter(|&m| m > 0.0) else {
            return;
        };
        let fraction = (1.0 - remaining_m / start).clamp(0.0, 1.0);
        let b = bucket(fraction);
        if fraction >= (b as f64 + 0.5) / BUCKETS as f64 && self.samples[b].is_none() {
            self.samples[b] = Some((at_ms, raw.raw_s));
            self.parts[b] = Some((raw.learned_s, raw.plain_s));
        }
    }
}

/// Distance in metres between two nearby `(lon, lat)` points, on a local flat projection:
/// within 0.1 % of the geodesic over the odometer's steps, and a few flops on the ingest
/// path instead of Karney's iteration.
fn short_distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    const EARTH_RADIUS_M: f64 = 6_371_008.8;
    let mut dlon = (b.0 - a.0).abs();
    if dlon > 180.0 {
        dlon = 360.0 - dlon;
    }
    let mid_lat = ((a.1 + b.1) / 2.0).to_radians();
    let dx = dlon.to_radians() * mid_lat.cos();
    let dy = (b.1 - a.1).to_radians();
    EARTH_RADIUS_M * (dx * dx + dy * dy).sqrt()
}

/// Whether a new ETA differs from the announced one enough for `shipment.eta_changed`:
/// by more than max(`change_min_seconds`, `change_fraction` x time remaining).
pub fn changed_enough(announced_ms: TimestampMs, new: &Eta, s: &EtaSettings) -> bool {
    let moved_s = (new.eta_ms - announced_ms).abs() as f64 / 1000.0;
    let threshold_s = (s.change_min_seconds as f64).max(s.change_fraction * new.remaining_s);
    moved_s > threshold_s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eta_history::PRIOR;
    use proptest::prelude::*;

    fn settled(speed_kmh: f64) -> SpeedStats {
        let mut s = SpeedStats::default();
        for _ in 0..100 {
            s.update(speed_kmh / 3.6, 10_000);
        }
        s
    }

    /// A point on the equator `m` metres east of (0, 0).
    fn east_of(m: f64) -> (f64, f64) {
        ((m / crate::geodesy::WGS84_A_M).to_degrees(), 0.0)
    }

    /// The estimate with nothing learned: remaining distance at the device's cruising speed,
    /// the prior window.
    fn estimate_plain(
        remaining_m: f64,
        method: EtaMethod,
        speed: &SpeedStats,
        s: &EtaSettings,
        at_ms: TimestampMs,
    ) -> Eta {
        let a = Ahead::unlearned(remaining_m, method);
        estimate(
            &a,
            raw_seconds(&a, 1.0, speed.planning_mps(s)),
            PRIOR,
            at_ms,
        )
    }

    #[test]
    fn eta_is_distance_over_measured_speed() {
        let s = EtaSettings::default();
        let e = estimate_plain(72_000.0, EtaMethod::Direct, &settled(72.0), &s, 0);
        assert!((e.remaining_s - 3600.0).abs() < 1.0, "{e:?}");
        assert_eq!(e.eta_ms, 3_600_000);
    }

    #[test]
    fn with_no_history_the_window_is_the_prior() {
        let s = EtaSettings::default();
        let e = estimate_plain(50_000.0, EtaMethod::Direct, &settled(60.0), &s, 0);
        assert!(e.p10_ms < e.eta_ms && e.eta_ms < e.p90_ms);
        let ratio = |t: TimestampMs| t as f64 / e.eta_ms as f64;
        assert!((ratio(e.p10_ms) - PRIOR.q10.exp()).abs() < 1e-3, "{e:?}");
        assert!((ratio(e.p90_ms) - PRIOR.q90.exp()).abs() < 1e-3, "{e:?}");
    }

    #[test]
    fn new_device_uses_default_speed_and_parked_truck_keeps_a_finite_eta() {
        let s = EtaSettings::default();
        let fresh = estimate_plain(50_000.0, EtaMethod::Direct, &SpeedStats::default(), &s, 0);
        assert!((fresh.remaining_s - 3600.0).abs() < 1.0);
        // Never seen moving (parked, or crawling below 7.2 km/h): the default too. (Under way
        // a stopped truck's ETA is kept finite by the floor: see the trip's own mean below.)
        for kmh in [0.0, 5.0] {
            let parked = estimate_plain(50_000.0, EtaMethod::Direct, &settled(kmh), &s, 0);
            assert!((parked.remaining_s - 3600.0).abs() < 1.0);
        }
    }

    #[test]
    fn the_time_parked_at_the_dock_does_not_slow_the_eta_before_or_at_departure() {
        let s = EtaSettings::default();
        // Half an hour on the road at 60 km/h, then 45 minutes parked at the dock.
        let mut speed = SpeedStats::default();
        for _ in 0..180 {
            speed.update(60.0 / 3.6, 10_000);
        }
        for _ in 0..270 {
            speed.update(0.0, 10_000);
        }
        let planned = estimate_plain(60_000.0, EtaMethod::Route, &speed, &s, 0);
        assert!((planned.remaining_s - 3600.0).abs() < 1.0, "{planned:?}");
        assert!(planned.p10_ms < planned.eta_ms && planned.eta_ms < planned.p90_ms);
        // At departure the trip plans with the same cruising speed.
        let mut trip = EtaTrip::default();
        trip.note_progress(1_000, 60_000.0, east_of(0.0));
        assert_eq!(trip.planning_mps(&speed, &s, 1_000), speed.planning_mps(&s));
        assert!((speed.planning_mps(&s) - 60.0 / 3.6).abs() < 1e-9);
    }

    #[test]
    fn under_way_the_trips_own_mean_speed_takes_over_stops_included() {
        let s = EtaSettings::default();
        let cruising = settled(60.0);
        let mut trip = EtaTrip::default();
        // 20 km in the first hour (stop-and-go), then a 30-minute stop.
        trip.note_progress(0, 100_000.0, east_of(0.0));
        trip.note_progress(3_600_000, 80_000.0, east_of(20_000.0));
        let after_hour = trip.planning_mps(&cruising, &s, 3_600_000);
        // 20 km/h own mean weighted 60/61 against 60 km/h cruising.
        let want = (60.0 / 61.0 * 20_000.0 / 3600.0 + 1.0 / 61.0 * 60.0 / 3.6) * 3.6;
        assert!(
            (after_hour * 3.6 - want).abs() < 1e-6,
            "{}",
            after_hour * 3.6
        );
        trip.note_progress(5_400_000, 80_000.0, east_of(20_000.0));
        let after_stop = trip.planning_mps(&cruising, &s, 5_400_000);
        assert!(after_stop < after_hour, "a stop on the way slows the plan");
        // GPS jitter back and forth adds nothing, along the route or across it.
        trip.note_progress(5_410_000, 80_030.0, east_of(19_970.0));
        trip.note_progress(5_420_000, 79_970.0, east_of(20_030.0));
        trip.note_progress(5_425_000, 80_000.0, (east_of(20_000.0).0, 0.0003)); // ~33 m north
        trip.note_progress(5_430_000, 80_000.0, east_of(20_000.0));
        let jittered = trip.planning_mps(&cruising, &s, 5_430_000);
        let expected = {
            let t = 5_430.0;
            let w = t / (t + 60.0);
            w * 20_000.0 / t + (1.0 - w) * 60.0 / 3.6
        };
        assert!(
            (jittered - expected).abs() < 1e-9,
            "{jittered} vs {expected}"
        );
        // A new route keeps what was covered on the old one.
        trip.start_over(50_000.0);
        trip.note_progress(5_440_000, 50_000.0, east_of(20_000.0));
        trip.note_progress(5_800_000, 45_000.0, east_of(25_000.0));
        let t = 5_800.0;
        let w = t / (t + 60.0);
        let want = w * 25_000.0 / t + (1.0 - w) * 60.0 / 3.6;
        assert!((trip.planning_mps(&cruising, &s, 5_800_000) - want).abs() < 1e-9);
        // Never below the floor.
        let mut stuck = EtaTrip::default();
        stuck.note_progress(0, 10_000.0, east_of(0.0));
        assert_eq!(stuck.planning_mps(&settled(0.0), &s, 86_400_000), 5.0 / 3.6);
    }

    #[test]
    fn the_odometers_short_distance_agrees_with_the_geodesic() {
        for (a, b) in [
            ((10.0, 50.0), (10.001, 50.0005)),
            ((-73.95, 40.7), (-73.94, 40.71)),
            ((179.9995, -33.0), (-179.9995, -33.0)),
            ((0.0, 0.0), (0.0, 0.0)),
        ] {
            let flat = short_distance_m(a, b);
            let geodesic = crate::geodesy::distance_m(a, b);
            assert!(
                (flat - geodesic).abs() <= 0.005 * geodesic + 0.01,
                "{a:?} {b:?}: {flat} vs {geodesic}"
            );
        }
    }

    #[test]
    fn the_trips_speed_counts_the_winding_path_it_travelled() {
        let s = EtaSettings::default();
        let cruising = settled(60.0);
        // A vessel tacking across a straight route: 100 m east per fix along it, 300 m to
        // one side and back across it, a fix a minute for an hour.
        let mut trip = EtaTrip::default();
        for i in 0..=60 {
            let side = if i % 2 == 0 { 0.0 } else { 0.0027 }; // ~300 m north
            let (lon, _) = east_of(100.0 * i as f64);
            trip.note_progress(i * 60_000, 10_000.0 - 100.0 * i as f64, (lon, side));
        }
        let leg = crate::geodesy::distance_m(east_of(0.0), (east_of(100.0).0, 0.0027));
        let t = 3_600.0;
        let w = t / (t + 60.0);
        let want = w * 60.0 * leg / t + (1.0 - w) * 60.0 / 3.6;
        let got = trip.planning_mps(&cruising, &s, 3_600_000);
        assert!((got - want).abs() < 0.01 * want, "{got} vs {want}");
        // Net progress alone would have said 6 km in the hour.
        assert!(got > 3.0 * 6_000.0 / t);
    }

    #[test]
    fn the_raw_estimate_blends_the_learned_and_the_plain_one_by_the_tenants_weight() {
        let a = Ahead {
            remaining_m: 10_000.0,
            method: EtaMethod::Route,
            known_s: 4_000.0,
            unknown_m: 0.0,
        };
        // Learned: 4,000 s; plain: 10 km at 10 m/s = 1,000 s.
        let only_learned = raw_parts(&a, 1.0, 10.0, 1.0);
        assert_eq!(only_learned.learned_s, 4_000.0);
        assert_eq!(only_learned.plain_s, 1_000.0);
        assert!((only_learned.raw_s - 4_000.0).abs() < 1e-6);
        assert!((raw_parts(&a, 1.0, 10.0, 0.0).raw_s - 1_000.0).abs() < 1e-6);
        // Half and half: the geometric mean.
        assert!((raw_parts(&a, 1.0, 10.0, 0.5).raw_s - 2_000.0).abs() < 1e-6);
        // Nothing to go: nothing, whatever the weight.
        let there = Ahead::unlearned(0.0, EtaMethod::Route);
        assert_eq!(raw_parts(&there, 1.0, 10.0, 0.5).raw_s, 0.0);
    }

    #[test]
    fn snapshots_of_older_builds_restore_without_the_moving_mean() {
        let old = r#"{"mean_mps": 10.0, "mean_sq": 100.0, "observed_ms": 600000.0}"#;
        let s: SpeedStats = serde_json::from_str(old).unwrap();
        // Nothing known of its cruising speed: the default.
        assert_eq!(s.planning_mps(&EtaSettings::default()), 50.0 / 3.6);
        assert_eq!(s.moving, Ewma::default());
        let again: SpeedStats = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn change_threshold_is_five_minutes_or_ten_percent() {
        let s = EtaSettings::default();
        let mut e = estimate_plain(10_000.0, EtaMethod::Direct, &settled(36.0), &s, 0);
        // 1000 s remaining: threshold is 300 s.
        assert!(!changed_enough(e.eta_ms - 299_000, &e, &s));
        assert!(changed_enough(e.eta_ms - 301_000, &e, &s));
        // 10 h remaining: threshold is 3600 s.
        e.remaining_s = 36_000.0;
        assert!(!changed_enough(e.eta_ms + 3_500_000, &e, &s));
        assert!(changed_enough(e.eta_ms + 3_700_000, &e, &s));
    }

    #[test]
    fn learned_route_times_follow_the_cells_and_a_slow_trip_scales_them() {
        use crate::reading::Fix;
        // A straight route east, learned at 10 m/s by a dozen earlier trips.
        let line = geo_types::LineString::from(vec![(10.0, 50.0), (10.3, 50.0)]);
        let route = Route::new(line).unwrap();
        let mut h = EtaHistory::default();
        for trip in 0..12 {
            let mut prev = None;
            for i in 0..230i64 {
                let ts = trip * 10_000_000 + i * 10_000;
                let f = Fix {
                    lat: 50.0,
                    lon: 10.0 + i as f64 * 0.0014,
                    speed_kmh: None,
                    heading_deg: None,
                    accuracy_m: None,
                };
                h.learn(7, prev, &f, ts);
                prev = Some((f, ts));
            }
        }
        let times = RouteTimes::build(&route, &h, 0);
        let (known, unknown) = times.at(&route, 0.0);
        let learned_m = route.length_m() - unknown;
        assert!(learned_m > 0.75 * route.length_m(), "{learned_m}");
        assert!(
            (known / learned_m - 0.1).abs() < 0.01,
            "{known} s for {learned_m} m"
        );
        let (half, _) = times.at(&route, route.length_m() / 2.0);
        assert!(half < known && half > 0.3 * known);
        // A trip going at half the learned speed: k tends to 2.
        let mut trip = EtaTrip::default();
        let total = known;
        for i in 0..=20 {
            let left = total * (1.0 - i as f64 / 20.0);
            let a = Ahead {
                remaining_m: 0.0,
                method: EtaMethod::Route,
                known_s: left,
                unknown_m: 0.0,
            };
            trip.observe((2.0 * (total - left) * 1000.0) as i64, &a, 10.0);
        }
        assert!(trip.k() > 1.6 && trip.k() < 2.0, "{}", trip.k());
    }

    fn residual_history(residuals: &[f64], b: usize) -> EtaHistory {
        let mut h = EtaHistory::default();
        for r in residuals {
            let mut s = [None; BUCKETS];
            s[b] = Some((0, 1000.0));
            h.record_arrival(&s, &[None; BUCKETS], (1000.0 * r.exp() * 1000.0) as i64);
        }
        h
    }

    proptest! {
        #[test]
        fn eta_is_monotone_in_remaining_distance_at_constant_speed(
            kmh in 5.0f64..130.0,
            a in 0.0f64..1e6,
            b in 0.0f64..1e6,
            known in 0.0f64..1e5,
            k in 0.25f64..4.0,
            residuals in proptest::collection::vec(-2.0f64..2.0, 0..50),
            bucket in 0usize..BUCKETS,
        ) {
            let s = EtaSettings::default();
            let speed = settled(kmh);
            let cal = residual_history(&residuals, bucket).calibration(bucket);
            let eta = |m: f64| {
                let ahead = Ahead { remaining_m: m, method: EtaMethod::Route, known_s: known, unknown_m: m };
                estimate(&ahead, raw_seconds(&ahead, k, speed.planning_mps(&s)), cal, 1_000)
            };
            let (near, far) = (eta(a.min(b)), eta(a.max(b)));
            prop_assert!(near.eta_ms <= far.eta_ms);
            prop_assert!(near.p10_ms <= far.p10_ms && near.p90_ms <= far.p90_ms);
        }

        #[test]
        fn no_eta_in_the_past_and_the_window_holds_the_estimate(
            kmh in 0.0f64..200.0,
            m in 0.0f64..1e7,
            known in 0.0f64..1e6,
            k in 0.25f64..4.0,
            at in 0i64..4_000_000_000_000,
            residuals in proptest::collection::vec(-5.0f64..5.0, 0..200),
            bucket in 0usize..BUCKETS,
        ) {
            let s = EtaSettings::default();
            let speed = settled(kmh);
            let cal = residual_history(&residuals, bucket).calibration(bucket);
            let ahead = Ahead { remaining_m: m, method: EtaMethod::Route, known_s: known, unknown_m: m };
            let e = estimate(&ahead, raw_seconds(&ahead, k, speed.planning_mps(&s)), cal, at);
            prop_assert!(e.p10_ms >= at);
            prop_assert!(e.p10_ms <= e.eta_ms && e.eta_ms <= e.p90_ms, "{:?}", e);
            prop_assert!(e.remaining_s >= 0.0);
        }
    }
}
