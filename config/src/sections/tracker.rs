//! `[tracker]` and `[tracker.eta]`: defaults of the event rules and the ETA model.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::validate::Problems;

/// The `[tracker]` section, for the tracker core. A geofence's or shipment's own setting, when
/// it has one, wins over these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    /// A geofence transition is confirmed once readings on the new side have held this long
    /// (0 = at once).
    pub confirm_seconds: u32,
    /// A device with no reading for this long goes offline (`device.offline`).
    pub offline_after_seconds: u32,
    /// Allowed distance from a planned route, metres, before `route.deviated`.
    pub route_corridor_m: f64,
    /// Overspeed limit, km/h, for shipments that set none; 0 = off. See
    /// [`TrackerConfig::overspeed_limit_kmh`].
    pub max_speed_kmh: f64,
    /// A temperature must stay out of range this long to be a `cargo.temperature_excursion`.
    pub temp_grace_seconds: u32,
    /// Smallest weight step, kg, reported as a load or unload (`cargo.weight_changed`).
    pub weight_change_kg: f64,
    /// Radius, metres, of a shipment origin or destination given as a point.
    pub place_radius_m: f64,
    /// The ETA model.
    pub eta: EtaConfig,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            confirm_seconds: 30,
            offline_after_seconds: 300,
            route_corridor_m: 500.0,
            max_speed_kmh: 0.0,
            temp_grace_seconds: 300,
            weight_change_kg: 200.0,
            place_radius_m: 300.0,
            eta: EtaConfig::default(),
        }
    }
}

impl TrackerConfig {
    /// `confirm_seconds` as a [`Duration`].
    pub fn confirm(&self) -> Duration {
        Duration::from_secs(self.confirm_seconds.into())
    }

    /// `offline_after_seconds` as a [`Duration`].
    pub fn offline_after(&self) -> Duration {
        Duration::from_secs(self.offline_after_seconds.into())
    }

    /// `temp_grace_seconds` as a [`Duration`].
    pub fn temp_grace(&self) -> Duration {
        Duration::from_secs(self.temp_grace_seconds.into())
    }

    /// The default overspeed limit in km/h, `None` when off (`max_speed_kmh = 0`).
    pub fn overspeed_limit_kmh(&self) -> Option<f64> {
        (self.max_speed_kmh > 0.0).then_some(self.max_speed_kmh)
    }

    pub(crate) fn validate(&self, p: &mut Problems) {
        p.check(
            self.offline_after_seconds >= 1,
            "tracker.offline_after_seconds",
            "must be at least 1",
        );
        p.positive(self.route_corridor_m, "tracker.route_corridor_m");
        p.check(
            self.max_speed_kmh.is_finite() && self.max_speed_kmh >= 0.0,
            "tracker.max_speed_kmh",
            "must be a number >= 0 (0 = off)",
        );
        p.positive(self.weight_change_kg, "tracker.weight_change_kg");
        p.positive(self.place_radius_m, "tracker.place_radius_m");
        self.eta.validate(p);
    }
}

/// The `[tracker.eta]` section: the ETA model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtaConfig {
    /// Road distance over straight-line distance, used for shipments without a planned route.
    pub detour_factor: f64,
    /// Speed, km/h, assumed until a device has moved enough to measure its own.
    pub default_speed_kmh: f64,
    /// Floor on the speed used, km/h, so a parked truck gets a long but finite ETA.
    pub min_speed_kmh: f64,
    /// `shipment.eta_changed` fires when the ETA moves by more than
    /// max(`change_min_seconds`, `change_fraction` x the time remaining).
    pub change_min_seconds: u32,
    /// See `change_min_seconds`; a fraction in [0, 1].
    pub change_fraction: f64,
}

impl Default for EtaConfig {
    fn default() -> Self {
        EtaConfig {
            detour_factor: 1.3,
            default_speed_kmh: 50.0,
            min_speed_kmh: 5.0,
            change_min_seconds: 300,
            change_fraction: 0.1,
        }
    }
}

impl EtaConfig {
    /// `change_min_seconds` as a [`Duration`].
    pub fn change_min(&self) -> Duration {
        Duration::from_secs(self.change_min_seconds.into())
    }

    pub(crate) fn validate(&self, p: &mut Problems) {
        p.check(
            self.detour_factor.is_finite() && self.detour_factor >= 1.0,
            "tracker.eta.detour_factor",
            "must be >= 1",
        );
        p.positive(self.default_speed_kmh, "tracker.eta.default_speed_kmh");
        p.positive(self.min_speed_kmh, "tracker.eta.min_speed_kmh");
        // Only worth saying when both are valid on their own.
        if self.default_speed_kmh.is_finite() && self.default_speed_kmh > 0.0 {
            p.check(
                !self.min_speed_kmh.is_finite() || self.min_speed_kmh <= self.default_speed_kmh,
                "tracker.eta.min_speed_kmh",
                "must not exceed tracker.eta.default_speed_kmh",
            );
        }
        p.check(
            (0.0..=1.0).contains(&self.change_fraction),
            "tracker.eta.change_fraction",
            "must be between 0 and 1",
        );
    }
}
