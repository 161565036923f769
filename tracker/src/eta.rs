//! The ETA model: remaining distance over a measured speed, with a p10/p90 window.
//!
//! Speed is an exponentially weighted mean of the device's recent ground speed (reported, or
//! derived from consecutive fixes). Once a shipment is under way, stops are included: a truck
//! that keeps stopping arrives later, and the estimate should say so. Before it has left
//! (status `planned`), the time it has stood at the dock says nothing about the trip, so the
//! mean over moving samples only is used: the arrival if it set off now. The spread of the
//! speeds used widens the window. Until a device has been observed for a couple of minutes
//! (moving, for the second mean) its mean is blended with the configured default speed.

use serde::{Deserialize, Serialize};

use crate::reading::TimestampMs;
use crate::settings::EtaSettings;
use crate::shipment::{Eta, EtaMethod};

/// Time constant of the speed averages: speeds older than this weigh e^-1 as much.
const SPEED_TAU_MS: f64 = 15.0 * 60_000.0;
/// Observation time after which the measured speed is trusted alone.
const WARMUP_MS: f64 = 120_000.0;
/// z-score of the 10th/90th percentile of a normal distribution.
const Z90: f64 = 1.2816;
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

    /// The coefficient of variation, halved because the mean over the rest of a trip varies
    /// less than single samples, and kept within [5 %, 50 %]; wide during warm-up.
    fn spread(&self) -> f64 {
        if self.observed_ms < WARMUP_MS || self.mean_mps <= 0.0 {
            return 0.5;
        }
        let var = (self.mean_sq - self.mean_mps * self.mean_mps).max(0.0);
        (0.5 * var.sqrt() / self.mean_mps).clamp(0.05, 0.5)
    }
}

/// Running statistics of a device's ground speed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeedStats {
    /// Every sample, stops included.
    #[serde(flatten)]
    all: Ewma,
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
        let dt = dt_ms as f64;
        self.all.fold(speed_mps, dt);
        if speed_mps >= MOVING_MPS {
            self.moving.fold(speed_mps, dt);
        }
    }

    fn pick(&self, under_way: bool) -> &Ewma {
        if under_way { &self.all } else { &self.moving }
    }

    /// Mean speed to plan with (m/s): stops included once `under_way`, moving samples only
    /// before; blended with the default during warm-up and floored.
    pub fn planning_mps(&self, s: &EtaSettings, under_way: bool) -> f64 {
        self.pick(under_way).planning_mps(s)
    }

    /// Relative spread of the planning speed (see [`SpeedStats::planning_mps`]).
    pub fn spread(&self, under_way: bool) -> f64 {
        self.pick(under_way).spread()
    }
}

/// Estimates arrival from `remaining_m` at the device's speed, as of device time `at_ms`.
/// `under_way`: the shipment has left its origin (see the module docs).
pub fn estimate(
    remaining_m: f64,
    method: EtaMethod,
    speed: &SpeedStats,
    settings: &EtaSettings,
    at_ms: TimestampMs,
    under_way: bool,
) -> Eta {
    let remaining_m = remaining_m.max(0.0);
    let v = speed.planning_mps(settings, under_way);
    let spread = speed.spread(under_way);
    let remaining_s = remaining_m / v;
    let fast = v * (1.0 + Z90 * spread);
    let slow = (v * (1.0 - Z90 * spread)).max(settings.min_speed_kmh / 3.6 * 0.5);
    let to_ms = |s: f64| at_ms.saturating_add((s * 1000.0).round() as i64);
    Eta {
        eta_ms: to_ms(remaining_s),
        p10_ms: to_ms(remaining_m / fast),
        p90_ms: to_ms(remaining_m / slow),
        remaining_m,
        remaining_s,
        method,
        computed_at_ms: at_ms,
    }
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

    fn settled(speed_kmh: f64) -> SpeedStats {
        let mut s = SpeedStats::default();
        for _ in 0..100 {
            s.update(speed_kmh / 3.6, 10_000);
        }
        s
    }

    #[test]
    fn eta_is_distance_over_measured_speed() {
        let s = EtaSettings::default();
        let e = estimate(72_000.0, EtaMethod::Direct, &settled(72.0), &s, 0, true);
        assert!((e.remaining_s - 3600.0).abs() < 1.0, "{e:?}");
        assert_eq!(e.eta_ms, 3_600_000);
    }

    #[test]
    fn window_brackets_the_median_and_widens_with_erratic_speed() {
        let s = EtaSettings::default();
        let steady = estimate(50_000.0, EtaMethod::Direct, &settled(60.0), &s, 0, true);
        let mut erratic = SpeedStats::default();
        for i in 0..100 {
            erratic.update(if i % 2 == 0 { 0.0 } else { 120.0 / 3.6 }, 10_000);
        }
        let bumpy = estimate(50_000.0, EtaMethod::Direct, &erratic, &s, 0, true);
        assert!(steady.p10_ms < steady.eta_ms && steady.eta_ms < steady.p90_ms);
        let width = |e: &Eta| (e.p90_ms - e.p10_ms) as f64 / e.remaining_s;
        assert!(width(&bumpy) > 2.0 * width(&steady));
    }

    #[test]
    fn new_device_uses_default_speed_and_parked_truck_keeps_a_finite_eta() {
        let s = EtaSettings::default();
        let fresh = estimate(
            50_000.0,
            EtaMethod::Direct,
            &SpeedStats::default(),
            &s,
            0,
            true,
        );
        assert!((fresh.remaining_s - 3600.0).abs() < 1.0);
        let parked = estimate(50_000.0, EtaMethod::Direct, &settled(0.0), &s, 0, true);
        assert!((parked.remaining_s - 50_000.0 / (5.0 / 3.6)).abs() < 1.0);
    }

    #[test]
    fn before_departure_the_time_parked_at_the_dock_does_not_slow_the_eta() {
        let s = EtaSettings::default();
        // Half an hour on the road at 60 km/h, then 45 minutes parked at the dock.
        let mut speed = SpeedStats::default();
        for _ in 0..180 {
            speed.update(60.0 / 3.6, 10_000);
        }
        for _ in 0..270 {
            speed.update(0.0, 10_000);
        }
        let planned = estimate(60_000.0, EtaMethod::Route, &speed, &s, 0, false);
        assert!((planned.remaining_s - 3600.0).abs() < 1.0, "{planned:?}");
        assert!(planned.p10_ms < planned.eta_ms && planned.eta_ms < planned.p90_ms);
        // Under way, the same stops count: the truck is late, and the ETA says so.
        let moving = estimate(60_000.0, EtaMethod::Route, &speed, &s, 0, true);
        assert!(moving.remaining_s > 2.0 * planned.remaining_s, "{moving:?}");
        // A truck never seen moving plans with the default speed before it leaves.
        let fresh = estimate(50_000.0, EtaMethod::Direct, &settled(0.0), &s, 0, false);
        assert!((fresh.remaining_s - 3600.0).abs() < 1.0, "{fresh:?}");
    }

    #[test]
    fn snapshots_of_older_builds_restore_without_the_moving_mean() {
        let old = r#"{"mean_mps": 10.0, "mean_sq": 100.0, "observed_ms": 600000.0}"#;
        let s: SpeedStats = serde_json::from_str(old).unwrap();
        assert_eq!(s.planning_mps(&EtaSettings::default(), true), 10.0);
        assert_eq!(s.moving, Ewma::default());
        let again: SpeedStats = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn change_threshold_is_five_minutes_or_ten_percent() {
        let s = EtaSettings::default();
        let mut e = estimate(10_000.0, EtaMethod::Direct, &settled(36.0), &s, 0, true);
        // 1000 s remaining: threshold is 300 s.
        assert!(!changed_enough(e.eta_ms - 299_000, &e, &s));
        assert!(changed_enough(e.eta_ms - 301_000, &e, &s));
        // 10 h remaining: threshold is 3600 s.
        e.remaining_s = 36_000.0;
        assert!(!changed_enough(e.eta_ms + 3_500_000, &e, &s));
        assert!(changed_enough(e.eta_ms + 3_700_000, &e, &s));
    }
}
