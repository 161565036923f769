//! Distances on the WGS 84 ellipsoid. Coordinates are `(lon, lat)` degrees; results are metres.
// CONTRACT (filled in by the geometry work): see the function docs.

/// Geodesic distance in metres between two `(lon, lat)` points (Karney's algorithm via geo).
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let _ = (a, b);
    todo!()
}

/// Bounding boxes `(min_lon, min_lat, max_lon, max_lat)` that together cover every point within
/// `radius_m` of `(lon, lat)`; two boxes when the circle crosses the antimeridian.
pub fn bboxes_around(lon: f64, lat: f64, radius_m: f64) -> Vec<[f64; 4]> {
    let _ = (lon, lat, radius_m);
    todo!()
}
