//! Shipments: what the user defines, and the runtime state the rules keep for each.

use serde::{Deserialize, Serialize};

use crate::eta::EtaTrip;
use crate::reading::TimestampMs;

/// An origin or destination: a geofence of the same tenant, or a point with the tracker's
/// `place_radius_m` around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    Geofence(String),
    Point { lon: f64, lat: f64 },
}

/// Lifecycle of a shipment. `delivered` and `cancelled` are set by the user; the others by the
/// tracker (or the user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    Planned,
    InTransit,
    Arrived,
    Delivered,
    Cancelled,
}

impl ShipmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentStatus::Planned => "planned",
            ShipmentStatus::InTransit => "in_transit",
            ShipmentStatus::Arrived => "arrived",
            ShipmentStatus::Delivered => "delivered",
            ShipmentStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the tracker still watches the goods (ETA, route, speed, temperature).
    pub fn is_active(self) -> bool {
        matches!(self, ShipmentStatus::Planned | ShipmentStatus::InTransit)
    }
}

/// A shipment as the user defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShipmentDef {
    pub id: String,
    /// The device (truck) carrying the goods, in the same tenant.
    pub device: String,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub origin: Option<Place>,
    pub destination: Place,
    /// Planned route, `(lon, lat)` degrees.
    #[serde(default)]
    pub route: Option<geo_types::LineString<f64>>,
    /// Allowed distance from the route; `None` = the tracker's default.
    #[serde(default)]
    pub route_corridor_m: Option<f64>,
    #[serde(default)]
    pub deadline_ms: Option<TimestampMs>,
    /// Allowed cargo temperature `[min, max]`, degrees Celsius.
    #[serde(default)]
    pub temp_range_c: Option<[f64; 2]>,
    #[serde(default)]
    pub max_speed_kmh: Option<f64>,
}

/// An ETA estimate. Times are device-clock epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eta {
    /// Median estimate of arrival.
    pub eta_ms: TimestampMs,
    /// Early bound: 10 % of arrivals are expected before it.
    pub p10_ms: TimestampMs,
    /// Late bound: 90 % of arrivals are expected before it.
    pub p90_ms: TimestampMs,
    pub remaining_m: f64,
    pub remaining_s: f64,
    pub method: EtaMethod,
    /// Time of the reading the estimate was computed from.
    pub computed_at_ms: TimestampMs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EtaMethod {
    /// Along the planned route, from the projection of the position onto it.
    Route,
    /// Straight-line distance times the detour factor.
    Direct,
}

impl EtaMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            EtaMethod::Route => "route",
            EtaMethod::Direct => "direct",
        }
    }
}

/// An out-of-range temperature episode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Excursion {
    /// Device time of the first out-of-range reading.
    pub begin_ms: TimestampMs,
    /// The reading farthest outside the range so far.
    pub peak_c: f64,
    /// Whether `cargo.temperature_excursion` has fired (the grace period passed).
    pub fired: bool,
}

/// What the rules remember about one shipment between readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShipmentState {
    pub def: ShipmentDef,
    pub status: ShipmentStatus,
    pub departed_ms: Option<TimestampMs>,
    pub arrived_ms: Option<TimestampMs>,
    /// Latest ETA computed.
    pub eta: Option<Eta>,
    /// ETA last announced with `shipment.eta_changed` (or the first computed).
    pub announced_eta_ms: Option<TimestampMs>,
    /// Whether `shipment.late_risk` fired and the ETA is still past the deadline.
    pub late_risk: bool,
    /// Confirmed off the route.
    pub deviated: bool,
    /// First reading on the other side of the corridor, not yet confirmed.
    pub route_pending_since_ms: Option<TimestampMs>,
    /// For point places: whether the last fix was inside the origin / destination radius.
    pub at_origin: bool,
    pub at_destination: bool,
    pub excursion: Option<Excursion>,
    /// Without an origin: where the device was when the shipment was first seen with a fix;
    /// moving `place_radius_m` away from it counts as departure.
    pub anchor: Option<[f64; 2]>,
    /// The ETA model's state of this trip: progress along the route, pace, calibration
    /// samples (absent from snapshots of older builds).
    #[serde(default)]
    pub eta_trip: EtaTrip,
}

impl ShipmentState {
    pub fn new(def: ShipmentDef) -> Self {
        ShipmentState {
            def,
            status: ShipmentStatus::Planned,
            departed_ms: None,
            arrived_ms: None,
            eta: None,
            announced_eta_ms: None,
            late_risk: false,
            deviated: false,
            route_pending_since_ms: None,
            at_origin: false,
            at_destination: false,
            excursion: None,
            anchor: None,
            eta_trip: EtaTrip::default(),
        }
    }
}
