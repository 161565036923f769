//! The ETA model: remaining distance over a measured speed, with a p10/p90 window.
//!
//! Speed is an exponentially weighted mean of the device's recent ground speed (reported, or
//! derived from consecutive fixes), stops included: a truck that keeps stopping arrives later,
//! and the estimate should say so. The spread of recent speeds widens the window. Until a
//! device has been observed for a couple of minutes its mean is blended with the configured
//! default speed.

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

/// Running statistics of a device's ground speed, metres per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeedStats {
    mean_mps: f64,
    mean_sq: f64,
    observed_ms: f64,
}

impl SpeedStats {
    /// Folds in a speed that held for `dt_ms`.
    pub fn update(&mut self, speed_mps: f64, dt_ms: i64) {
        if !(speed_mps.is_finite() && speed_mps >= 0.0) || dt_ms <= 0 {
            return;
        }
        let dt = dt_ms as f64;
        let alpha = if self.observed_ms == 0.0 {
            1.0
        } else {
            1.0 - (-dt / SPEED_TAU_MS).exp()
        };
        self.mean_mps += alpha * (speed_mps - self.mean_mps);
        self.mean_sq += alpha * (speed_mps * speed_mps - self.mean_sq);
        self.observed_ms = (self.observed_ms + dt).min(1e12);
    }

    /// Mean speed to plan with (m/s), blended with the default during warm-up and floored.
    pub fn planning_mps(&self, s: &EtaSettings) -> f64 {
        let default = s.default_speed_kmh / 3.6;
        let w = (self.observed_ms / WARMUP_MS).min(1.0);
        let mean = w * self.mean_mps + (1.0 - w) * default;
        mean.max(s.min_speed_kmh / 3.6)
    }

    /// Relative spread of the planning speed: the coefficient of variation of recent speeds,
    /// halved because the mean over the rest of a trip varies less than single samples, and kept
    /// within [5 %, 50 %]. During warm-up the spread is wide.
    pub fn spread(&self) -> f64 {
        if self.observed_ms < WARMUP_MS || self.mean_mps <= 0.0 {
            return 0.5;
        }
        let var = (self.mean_sq - self.mean_mps * self.mean_mps).max(0.0);
        (0.5 * var.sqrt() / self.mean_mps).clamp(0.05, 0.5)
    }
}

/// Estimates arrival from `remaining_m` at the device's speed, as of device time `at_ms`.
pub fn estimate(
    remaining_m: f64,
    method: EtaMethod,
    speed: &SpeedStats,
    settings: &EtaSettings,
    at_ms: TimestampMs,
) -> Eta {
    let remaining_m = remaining_m.max(0.0);
    let v = speed.planning_mps(settings);
    let spread = speed.spread();
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
        let e = estimate(72_000.0, EtaMethod::Direct, &settled(72.0), &s, 0);
        assert!((e.remaining_s - 3600.0).abs() < 1.0, "{e:?}");
        assert_eq!(e.eta_ms, 3_600_000);
    }

    #[test]
    fn window_brackets_the_median_and_widens_with_erratic_speed() {
        let s = EtaSettings::default();
        let steady = estimate(50_000.0, EtaMethod::Direct, &settled(60.0), &s, 0);
        let mut erratic = SpeedStats::default();
        for i in 0..100 {
            erratic.update(if i % 2 == 0 { 0.0 } else { 120.0 / 3.6 }, 10_000);
        }
        let bumpy = estimate(50_000.0, EtaMethod::Direct, &erratic, &s, 0);
        assert!(steady.p10_ms < steady.eta_ms && steady.eta_ms < steady.p90_ms);
        let width = |e: &Eta| (e.p90_ms - e.p10_ms) as f64 / e.remaining_s;
        assert!(width(&bumpy) > 2.0 * width(&steady));
    }

    #[test]
    fn new_device_uses_default_speed_and_parked_truck_keeps_a_finite_eta() {
        let s = EtaSettings::default();
        let fresh = estimate(50_000.0, EtaMethod::Direct, &SpeedStats::default(), &s, 0);
        assert!((fresh.remaining_s - 3600.0).abs() < 1.0);
        let parked = estimate(50_000.0, EtaMethod::Direct, &settled(0.0), &s, 0);
        assert!((parked.remaining_s - 50_000.0 / (5.0 / 3.6)).abs() < 1.0);
    }

    #[test]
    fn change_threshold_is_five_minutes_or_ten_percent() {
        let s = EtaSettings::default();
        let mut e = estimate(10_000.0, EtaMethod::Direct, &settled(36.0), &s, 0);
        // 1000 s remaining: threshold is 300 s.
        assert!(!changed_enough(e.eta_ms - 299_000, &e, &s));
        assert!(changed_enough(e.eta_ms - 301_000, &e, &s));
        // 10 h remaining: threshold is 3600 s.
        e.remaining_s = 36_000.0;
        assert!(!changed_enough(e.eta_ms + 3_500_000, &e, &s));
        assert!(changed_enough(e.eta_ms + 3_700_000, &e, &s));
    }
}
