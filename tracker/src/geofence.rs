//! Geofence shapes and exact point tests.
// CONTRACT (filled in by the geometry work): see the docs.

use serde::{Deserialize, Serialize};

use crate::error::TrackerError;

/// The geometry of a geofence. Coordinates `(lon, lat)` degrees; distances metres.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Shape {
    /// A Polygon or MultiPolygon, holes allowed. May cross the antimeridian.
    Area(geo_types::MultiPolygon<f64>),
    /// Every point within `radius_m` (geodesic) of `center`.
    Circle { center: geo_types::Point<f64>, radius_m: f64 },
    /// Every point within `corridor_m` of the line.
    Corridor { line: geo_types::LineString<f64>, corridor_m: f64 },
}

/// A geofence as the user defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeofenceDef {
    pub id: String,
    pub name: String,
    /// warehouse, customer, port, depot, restricted, or anything else the user chose.
    pub kind: String,
    pub shape: Shape,
    /// Seconds readings on the new side must hold before a transition is confirmed;
    /// `None` = the tracker's default.
    pub confirm_seconds: Option<u32>,
    /// Seconds inside before `geofence.dwell` fires; `None` = no dwell event.
    pub dwell_seconds: Option<u32>,
}

/// A validated geofence, prepared for fast point tests.
#[derive(Debug, Clone)]
pub struct Geofence {
    def: GeofenceDef,
}

impl Geofence {
    /// Validates the definition (finite, in-range coordinates; closed rings of >= 4 points; no
    /// self-intersection; positive radius/width) and prepares it.
    pub fn new(def: GeofenceDef) -> Result<Geofence, TrackerError> {
        let _ = def;
        todo!()
    }

    pub fn def(&self) -> &GeofenceDef {
        &self.def
    }

    /// Envelopes `[min_lon, min_lat, max_lon, max_lat]` in [-180, 180] longitude; two when the
    /// shape crosses the antimeridian.
    pub fn envelopes(&self) -> Vec<[f64; 4]> {
        todo!()
    }

    /// Whether the point is inside; a point on the boundary is inside.
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        let _ = (lon, lat);
        todo!()
    }

    /// Distance in metres from the point to the nearest boundary (0 on it), inside or outside.
    pub fn boundary_distance_m(&self, lon: f64, lat: f64) -> f64 {
        let _ = (lon, lat);
        todo!()
    }
}
