//! Schema-only types of the reports' JSON (never constructed: the handlers build their
//! bodies with `json!`), for the OpenAPI document.

#![allow(dead_code)]

use utoipa::ToSchema;

/// A stop: the device stayed within `reports.stop_radius_m` from `start` to `end`.
#[derive(ToSchema)]
pub(crate) struct ReportStop {
    /// RFC 3339 UTC, device time of its first reading.
    #[schema(format = DateTime)]
    start: String,
    /// RFC 3339 UTC, its last reading (cut at the range's end).
    #[schema(format = DateTime)]
    end: String,
    /// Mean position of its readings, degrees.
    lat: f64,
    lon: f64,
    /// Seconds.
    duration_s: f64,
    /// The geofence it is in (the first by id when several), if any.
    geofence: Option<String>,
}

/// `{"stops": [...]}`, oldest first.
#[derive(ToSchema)]
pub(crate) struct StopList {
    stops: Vec<ReportStop>,
}

/// One end of a trip.
#[derive(ToSchema)]
pub(crate) struct TripEnd {
    /// RFC 3339 UTC.
    #[schema(format = DateTime)]
    ts: String,
    lat: f64,
    lon: f64,
    geofence: Option<String>,
}

/// A trip: the movement between two stops (or the range's ends).
#[derive(ToSchema)]
pub(crate) struct ReportTrip {
    start: TripEnd,
    end: TripEnd,
    /// Along the readings, metres.
    distance_m: f64,
    /// Seconds.
    duration_s: f64,
    /// `distance_m / duration_s`, km/h; null for a trip of no duration.
    avg_speed_kmh: Option<f64>,
    /// The highest speed reported, else the highest over half a minute, km/h.
    max_speed_kmh: Option<f64>,
}

/// `{"trips": [...]}`, oldest first.
#[derive(ToSchema)]
pub(crate) struct TripList {
    trips: Vec<ReportTrip>,
}

/// A stay of a device in a geofence, from its `geofence.entered` / `geofence.exited` events.
#[derive(ToSchema)]
pub(crate) struct Visit {
    device: String,
    geofence: String,
    /// RFC 3339 UTC.
    #[schema(format = DateTime)]
    entered_at: String,
    /// RFC 3339 UTC; null while the device is still inside.
    #[schema(format = DateTime)]
    exited_at: Option<String>,
    /// Seconds inside: to the exit, or to now while still inside.
    dwell_s: f64,
}

/// `{"visits": [...]}`, in order of entry.
#[derive(ToSchema)]
pub(crate) struct VisitList {
    visits: Vec<Visit>,
}

/// One ETA as it was predicted.
#[derive(ToSchema)]
pub(crate) struct EtaPrediction {
    /// When it was predicted (the time of the reading it came from), RFC 3339 UTC.
    #[schema(format = DateTime)]
    predicted_at: String,
    #[schema(format = DateTime)]
    eta: String,
    #[schema(format = DateTime)]
    p10: Option<String>,
    #[schema(format = DateTime)]
    p90: Option<String>,
    /// `eta` minus the actual arrival, seconds (negative: predicted early); null before arrival.
    error_s: Option<f64>,
}

/// Temperature over the record's range.
#[derive(ToSchema)]
pub(crate) struct TemperatureSummary {
    readings: u64,
    min_c: f64,
    max_c: f64,
    mean_c: f64,
    /// Time covered by readings (each holds until the next, gaps excluded), seconds.
    covered_s: f64,
    /// Share of the covered time in `temp_range_c`, percent.
    time_in_range_pct: Option<f64>,
}

/// A temperature excursion: readings outside `temp_range_c`.
#[derive(ToSchema)]
pub(crate) struct ReportExcursion {
    /// The first reading outside, RFC 3339 UTC.
    #[schema(format = DateTime)]
    begin: String,
    /// The first reading back inside; null when still outside at the end of the range.
    #[schema(format = DateTime)]
    end: Option<String>,
    duration_s: f64,
    /// The reading farthest outside, °C.
    peak_c: f64,
}

/// Longer than `reports.gap_seconds` without a reading.
#[derive(ToSchema)]
pub(crate) struct ReportGap {
    #[schema(format = DateTime)]
    from: String,
    #[schema(format = DateTime)]
    to: String,
    duration_s: f64,
}

/// A shipment's record (SPEC 14).
#[derive(ToSchema)]
pub(crate) struct ShipmentReport {
    shipment: String,
    reference: Option<String>,
    device: String,
    status: String,
    /// A geofence id, or `{"lat", "lon"}`; null without an origin.
    origin: Option<serde_json::Value>,
    /// A geofence id, or `{"lat", "lon"}`.
    destination: serde_json::Value,
    #[schema(format = DateTime)]
    deadline: Option<String>,
    /// `[min, max]`, °C.
    temp_range_c: Option<Vec<f64>>,
    /// The range the record covers: departure (or `from`) to arrival (or `to`, or now).
    #[schema(format = DateTime)]
    from: Option<String>,
    #[schema(format = DateTime)]
    to: Option<String>,
    #[schema(format = DateTime)]
    departed_at: Option<String>,
    #[schema(format = DateTime)]
    arrived_at: Option<String>,
    /// Length of the planned route, metres; null without one.
    planned_distance_m: Option<f64>,
    /// Along the readings of the range, metres.
    driven_distance_m: f64,
    /// Every ETA announced, in the order predicted.
    eta_history: Vec<EtaPrediction>,
    #[schema(format = DateTime)]
    actual_arrival: Option<String>,
    /// Seconds late against the deadline (0 when on time); null without both.
    late_by_s: Option<f64>,
    temperature: Option<TemperatureSummary>,
    excursions: Vec<ReportExcursion>,
    gaps: Vec<ReportGap>,
    /// `compliant`, `excursion` or `incomplete`.
    verdict: String,
}
