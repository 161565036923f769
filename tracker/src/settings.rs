//! Tunables of the event rules and the ETA model: the `[tracker]` and `[tracker.eta]` sections
//! of the config file, which `landport-config` composes and validates. Units are in the names;
//! the defaults live here and nowhere else.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Rule settings (`[tracker]`). A geofence's or shipment's own setting, when it has one, wins
/// over these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerSettings {
    /// A geofence transition is confirmed once readings on the new side have held this long
    /// (0 = at once).
    pub confirm_seconds: u32,
    /// A device with no reading for this long (server time) goes offline (`device.offline`).
    pub offline_after_seconds: u32,
    /// Allowed distance from a planned route, metres, before `route.deviated`.
    pub route_corridor_m: f64,
    /// Overspeed limit, km/h, when neither shipment nor device sets one; 0 = off.
    pub max_speed_kmh: f64,
    /// A temperature must stay out of range this long to be a `cargo.temperature_excursion`.
    pub temp_grace_seconds: u32,
    /// Smallest weight step, kg, reported as a load or unload (`cargo.weight_changed`).
    pub weight_change_kg: f64,
    /// Radius, metres, of a shipment origin or destination given as a point.
    pub place_radius_m: f64,
    /// The ETA model (`[tracker.eta]`).
    pub eta: EtaSettings,
}

/// ETA model settings (`[tracker.eta]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtaSettings {
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

impl Default for TrackerSettings {
    fn default() -> Self {
        TrackerSettings {
            confirm_seconds: 30,
            offline_after_seconds: 300,
            route_corridor_m: 500.0,
            max_speed_kmh: 0.0,
            temp_grace_seconds: 300,
            weight_change_kg: 200.0,
            place_radius_m: 300.0,
            eta: EtaSettings::default(),
        }
    }
}

impl Default for EtaSettings {
    fn default() -> Self {
        EtaSettings {
            detour_factor: 1.3,
            default_speed_kmh: 50.0,
            min_speed_kmh: 5.0,
            change_min_seconds: 300,
            change_fraction: 0.1,
        }
    }
}

impl TrackerSettings {
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
}

impl EtaSettings {
    /// `change_min_seconds` as a [`Duration`].
    pub fn change_min(&self) -> Duration {
        Duration::from_secs(self.change_min_seconds.into())
    }
}
