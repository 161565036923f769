//! One telemetry reading, already decoded and validated by the ingestor.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC. Device clock for readings and events; server clock
/// for the `now` the caller passes in.
pub type TimestampMs = i64;

/// A position fix. Coordinates are WGS 84 degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// Latitude, degrees, in [-90, 90].
    pub lat: f64,
    /// Longitude, degrees, in [-180, 180].
    pub lon: f64,
    /// Ground speed reported by the device, km/h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_kmh: Option<f64>,
    /// Course over ground, degrees clockwise from true north.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
    /// Horizontal accuracy radius, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
}

/// One reading from one device. Only `ts_ms` is required: a warehouse sensor may send a
/// temperature alone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Device time of the measurement.
    pub ts_ms: TimestampMs,
    /// Device sequence number; devices reset it on reboot, so it never decides duplicates alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
    /// Cargo temperature, degrees Celsius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_c: Option<f64>,
    /// Load weight, kilograms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_kg: Option<f64>,
    /// Battery charge, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<f64>,
}

impl Reading {
    /// A reading with a time and nothing else; fill in with the builder methods.
    pub fn at(ts_ms: TimestampMs) -> Self {
        Reading {
            ts_ms,
            seq: None,
            fix: None,
            temp_c: None,
            weight_kg: None,
            battery_pct: None,
        }
    }

    /// Sets a position fix with no speed, heading or accuracy.
    pub fn with_position(mut self, lon: f64, lat: f64) -> Self {
        self.fix = Some(Fix {
            lat,
            lon,
            speed_kmh: None,
            heading_deg: None,
            accuracy_m: None,
        });
        self
    }

    pub fn with_speed(mut self, speed_kmh: f64) -> Self {
        if let Some(f) = self.fix.as_mut() {
            f.speed_kmh = Some(speed_kmh);
        }
        self
    }

    /// Heading, degrees clockwise from north.
    pub fn with_heading(mut self, heading_deg: f64) -> Self {
        if let Some(f) = self.fix.as_mut() {
            f.heading_deg = Some(heading_deg);
        }
        self
    }

    pub fn with_accuracy(mut self, accuracy_m: f64) -> Self {
        if let Some(f) = self.fix.as_mut() {
            f.accuracy_m = Some(accuracy_m);
        }
        self
    }

    pub fn with_temp(mut self, temp_c: f64) -> Self {
        self.temp_c = Some(temp_c);
        self
    }

    pub fn with_weight(mut self, weight_kg: f64) -> Self {
        self.weight_kg = Some(weight_kg);
        self
    }

    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }
}
