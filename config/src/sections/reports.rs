//! `[reports]`: trips, stops, geofence visits and shipment records (SPEC 14).

use serde::{Deserialize, Serialize};

use crate::validate::Problems;

/// The `[reports]` section: how far a report may reach and what makes a stop, a trip and a
/// gap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsConfig {
    /// A report's `from` and `to` may be at most this many days apart: it bounds the history
    /// one request reads.
    pub max_days: u32,
    /// A stop: the device stays within this distance of where it stopped, metres.
    pub stop_radius_m: f64,
    /// A trip: at least this distance along the readings between two stops, metres.
    pub min_trip_m: f64,
    /// A shipment record's gap: longer than this without a reading, seconds.
    pub gap_seconds: u64,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            max_days: 31,
            stop_radius_m: 100.0,
            min_trip_m: 500.0,
            gap_seconds: 900,
        }
    }
}

impl ReportsConfig {
    /// The most `max_days` may be (ten years: past that a range is surely a mistake, and
    /// milliseconds of it still fit any clock).
    pub const MAX_DAYS: u32 = 3650;

    pub(crate) fn validate(&self, p: &mut Problems) {
        p.check(
            (1..=Self::MAX_DAYS).contains(&self.max_days),
            "reports.max_days",
            format!("must be 1..={}", Self::MAX_DAYS),
        );
        p.positive(self.stop_radius_m, "reports.stop_radius_m");
        p.check(
            self.min_trip_m.is_finite() && self.min_trip_m >= 0.0,
            "reports.min_trip_m",
            "must be a number >= 0",
        );
        p.check(
            self.gap_seconds >= 1,
            "reports.gap_seconds",
            "must be at least 1",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, ConfigError};

    fn load(toml: &str) -> Result<Config, ConfigError> {
        let c = Config::from_toml_str(toml, Vec::new())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_are_those_of_the_spec() {
        let r = load("").unwrap().reports;
        assert_eq!(
            (r.max_days, r.stop_radius_m, r.min_trip_m, r.gap_seconds),
            (31, 100.0, 500.0, 900)
        );
    }

    #[test]
    fn each_bad_value_is_named() {
        let err = load(
            "[reports]\nmax_days = 0\nstop_radius_m = -1.0\nmin_trip_m = -5.0\ngap_seconds = 0",
        )
        .unwrap_err()
        .to_string();
        for field in [
            "reports.max_days",
            "reports.stop_radius_m",
            "reports.min_trip_m",
            "reports.gap_seconds",
        ] {
            assert!(err.contains(field), "{field} missing from {err}");
        }
    }

    #[test]
    fn environment_overrides_reach_the_section() {
        let env = [("LANDPORT_REPORTS__MAX_DAYS".to_string(), "7".to_string())];
        let c = Config::from_toml_str("[reports]\nstop_radius_m = 50.0", env).unwrap();
        assert_eq!((c.reports.max_days, c.reports.stop_radius_m), (7, 50.0));
        let err = load("[reports]\nstop_radus_m = 5.0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("reports.stop_radus_m"), "{err}");
    }
}
