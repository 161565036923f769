//! Tunables of the event rules. The binary builds these from the `[tracker]` config section.

use serde::{Deserialize, Serialize};

/// Rule settings. Units are in the names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerSettings {
    /// Default geofence/route confirmation window (a fence's own `confirm_seconds` wins).
    pub confirm_seconds: u32,
    /// A device with no reading for this long (server time) goes offline.
    pub offline_after_seconds: u32,
    /// Default allowed distance from a planned route before `route.deviated`.
    pub route_corridor_m: f64,
    /// Default overspeed limit when neither shipment nor device sets one; 0 = off.
    pub max_speed_kmh: f64,
    /// A temperature must stay out of range this long to be an excursion.
    pub temp_grace_seconds: u32,
    /// Smallest weight step reported as a load or unload.
    pub weight_change_kg: f64,
    /// Radius of a shipment origin or destination given as a point.
    pub place_radius_m: f64,
    pub eta: EtaSettings,
}

/// ETA model settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtaSettings {
    /// Road distance over straight-line distance, used without a planned route.
    pub detour_factor: f64,
    /// Speed assumed until the device has moved long enough to measure its own.
    pub default_speed_kmh: f64,
    /// Floor on the speed used, so a parked truck gets a long but finite ETA.
    pub min_speed_kmh: f64,
    /// `shipment.eta_changed` fires when the ETA moves by more than
    /// max(`change_min_seconds`, `change_fraction` x time remaining).
    pub change_min_seconds: u32,
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
