//! A planned route: projection of a position onto it, distance along and off it.
// CONTRACT (filled in by the geometry work): see the docs.

use crate::error::TrackerError;

/// Where a point falls relative to a route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    /// Distance from the point to the nearest point of the route, metres.
    pub off_route_m: f64,
    /// Distance along the route from its start to that nearest point, metres.
    pub along_m: f64,
}

/// A LineString with cumulative segment lengths.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    line: geo_types::LineString<f64>,
}

impl Route {
    /// At least two distinct, finite, in-range points.
    pub fn new(line: geo_types::LineString<f64>) -> Result<Route, TrackerError> {
        let _ = line;
        todo!()
    }

    pub fn line(&self) -> &geo_types::LineString<f64> {
        &self.line
    }

    /// Total length, metres.
    pub fn length_m(&self) -> f64 {
        todo!()
    }

    /// Nearest point of the route to `(lon, lat)`.
    pub fn project(&self, lon: f64, lat: f64) -> Projection {
        let _ = (lon, lat);
        todo!()
    }
}
