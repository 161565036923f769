//! Distances on the WGS 84 ellipsoid. Coordinates are `(lon, lat)` degrees; results are metres.
//!
//! The tools, from exact to fast:
//! - [`distance_m`]: the geodesic distance (Karney's algorithm through geo's `Geodesic`), exact
//!   to a few nanometres. Costs 0.5-2 µs; use it for answers, not in inner loops.
//! - [`fast_distance_m`]: the flat-earth formula with WGS 84 radii of curvature at the mean
//!   latitude, about 20 ns. Its error grows with the cube of the distance (see its docs);
//!   [`refined_distance_m`] uses it up to 50 km and Karney beyond.
//! - [`LocalFrame`]: an equirectangular projection around one point, for point-to-segment work.
//!   It is an affine map of `(lon, lat)`, so a segment that is straight in degrees (the GeoJSON
//!   reading of an edge, RFC 7946 §3.1.1) stays straight in the frame.
//! - [`NearestSegment`]: the nearest point among many segments, ranked in a `LocalFrame` and
//!   measured on the ellipsoid; polygons, corridors and routes all use it.
//! - [`bboxes_around`] / [`bboxes_around_inline`] / [`reach_deg`]: conservative degree boxes
//!   around a circle, for the R-trees (whose distances are in degrees and only narrow
//!   candidates).
//!
//! Edges of polygons, corridors and routes are straight lines in `(lon, lat)`; a point on an edge
//! counts as on the boundary when it is within [`BOUNDARY_EPS_DEG`] of it.

use geo::{Distance, Geodesic};

/// WGS 84 semi-major axis, metres.
pub const WGS84_A_M: f64 = 6_378_137.0;
/// WGS 84 flattening.
pub const WGS84_F: f64 = 1.0 / 298.257_223_563;
/// First eccentricity squared, `f (2 - f)`.
const WGS84_E2: f64 = WGS84_F * (2.0 - WGS84_F);
/// The smallest radius of curvature anywhere on WGS 84 (the meridian's, at the equator),
/// `a (1 - e²)`, metres, rounded down. A geodesic of length `s` changes latitude by at most
/// `s / MIN_RADIUS_M` radians, which makes bounding boxes built from it conservative.
pub const MIN_RADIUS_M: f64 = 6_335_439.0;

/// Tolerance of boundary tests, degrees (about 0.1 mm): a point this close to an edge is on it.
/// Without it, a point the user computed to lie on a slanted edge would fall inside or
/// outside depending on floating-point rounding.
pub const BOUNDARY_EPS_DEG: f64 = 1e-9;

/// Geodesic distance in metres between two `(lon, lat)` points (Karney's algorithm via geo).
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    Geodesic.distance(geo::Point::new(a.0, a.1), geo::Point::new(b.0, b.1))
}

/// Bounding boxes `(min_lon, min_lat, max_lon, max_lat)` that together cover every point within
/// `radius_m` of `(lon, lat)`; two boxes when the circle crosses the antimeridian.
pub fn bboxes_around(lon: f64, lat: f64, radius_m: f64) -> Vec<[f64; 4]> {
    bboxes_around_inline(lon, lat, radius_m).as_slice().to_vec()
}

/// One or two boxes `[min_lon, min_lat, max_lon, max_lat]`, without a heap allocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bboxes {
    boxes: [[f64; 4]; 2],
    len: usize,
}

impl Bboxes {
    fn one(b: [f64; 4]) -> Self {
        Bboxes {
            boxes: [b, b],
            len: 1,
        }
    }

    fn two(a: [f64; 4], b: [f64; 4]) -> Self {
        Bboxes {
            boxes: [a, b],
            len: 2,
        }
    }

    /// The boxes, one or two.
    pub fn as_slice(&self) -> &[[f64; 4]] {
        &self.boxes[..self.len]
    }
}

/// [`bboxes_around`] without allocating: the same boxes, by value.
///
/// The boxes are conservative (they may cover a little more than the circle): latitude uses
/// [`MIN_RADIUS_M`], longitude the spherical formula `asin(sin ρ / cos φ)` with that radius and
/// a 1 % margin. A circle that reaches a pole covers every longitude; a non-finite or negative
/// radius is treated as 0.
pub fn bboxes_around_inline(lon: f64, lat: f64, radius_m: f64) -> Bboxes {
    let lon = wrap_lon(lon);
    let lat = lat.clamp(-90.0, 90.0);
    let (dlon, dlat) = reach_deg(lat, radius_m);
    let min_lat = (lat - dlat).max(-90.0);
    let max_lat = (lat + dlat).min(90.0);
    if dlon >= 180.0 {
        return Bboxes::one([-180.0, min_lat, 180.0, max_lat]);
    }
    let (lo, hi) = (lon - dlon, lon + dlon);
    if lo < -180.0 {
        Bboxes::two(
            [lo + 360.0, min_lat, 180.0, max_lat],
            [-180.0, min_lat, hi, max_lat],
        )
    } else if hi > 180.0 {
        Bboxes::two(
            [lo, min_lat, 180.0, max_lat],
            [-180.0, min_lat, hi - 360.0, max_lat],
        )
    } else {
        Bboxes::one([lo, min_lat, hi, max_lat])
    }
}

/// How far, in degrees `(Δlon, Δlat)`, a point at latitude `lat` can be from every point
/// within `radius_m` of it (conservative, see [`bboxes_around_inline`]). `Δlon` is infinite
/// when the circle reaches a pole. A non-finite or negative radius is treated as 0.
#[inline]
pub fn reach_deg(lat: f64, radius_m: f64) -> (f64, f64) {
    let r = if radius_m.is_finite() && radius_m > 0.0 {
        radius_m
    } else {
        0.0
    };
    // Angular reach, degrees, with a small absolute margin for rounding.
    let rho = (r / MIN_RADIUS_M).to_degrees() * 1.01 + 1e-9;
    if lat.abs() + rho >= 90.0 || rho >= 90.0 {
        return (f64::INFINITY, rho);
    }
    let s = rho.to_radians().sin() / lat.to_radians().cos();
    if s >= 1.0 {
        return (f64::INFINITY, rho);
    }
    (s.asin().to_degrees() * 1.01 + 1e-9, rho)
}

/// Longitude wrapped into [-180, 180] degrees (180 stays 180, -180 stays -180).
#[inline]
pub fn wrap_lon(lon: f64) -> f64 {
    if (-180.0..=180.0).contains(&lon) {
        lon
    } else {
        let w = (lon + 180.0).rem_euclid(360.0) - 180.0;
        // rem_euclid can round up to exactly 360.
        if w >= 180.0 { w - 360.0 } else { w }
    }
}

/// Metres per degree of longitude and of latitude at geodetic latitude `lat` (degrees) on
/// WGS 84: `N cos φ · π/180` and `M · π/180` (prime-vertical and meridional radii).
#[inline]
pub fn metres_per_degree(lat: f64) -> (f64, f64) {
    let (s, c) = lat.to_radians().sin_cos();
    let w2 = 1.0 - WGS84_E2 * s * s;
    let w = w2.sqrt();
    let n = WGS84_A_M / w;
    let m = WGS84_A_M * (1.0 - WGS84_E2) / (w2 * w);
    let k = std::f64::consts::PI / 180.0;
    (n * c.abs() * k, m * k)
}

/// Flat-earth distance in metres: `hypot(Δλ · N cos φm, Δφ · M)` with the WGS 84 radii at the
/// mean latitude `φm` (Δλ wrapped into [-180, 180]).
///
/// Accuracy against [`distance_m`], for latitudes within ±80° (measured over 200,000 random
/// pairs, `tests/geometry_perf.rs`; checked by `fast_distance_is_within_its_documented_error`):
/// relative error below 1e-7 under 1 km, 1e-5 under 10 km, 1e-4 under 50 km and 1e-3 under
/// 100 km (measured 3.5e-8, 3.5e-6, 3.3e-4 at 100 km). It is unusable across a pole and for long distances; callers use
/// it with a margin and fall back to [`distance_m`] (0.5-2 µs, against about 20 ns).
#[inline]
pub fn fast_distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (kx, ky) = metres_per_degree(0.5 * (a.1 + b.1));
    let dx = wrap_lon(b.0 - a.0) * kx;
    let dy = (b.1 - a.1) * ky;
    (dx * dx + dy * dy).sqrt()
}

/// A local equirectangular projection centred on `(lon0, lat0)`: `x` metres east,
/// `y` metres north, with the WGS 84 scale at `lat0`.
///
/// Scale is exact at `lat0` only. For a point at distance `d` from the centre the relative
/// error grows linearly with distance, as `tan|φ| · d / 2R` does: measured worst cases up to
/// 80° latitude are 1.6e-4 at 1 km, 1.6e-3 at 10 km, 1.6e-2 at 100 km. The geometry code uses
/// the frame to *choose* the nearest point of a segment and then measures the distance to that
/// point ([`NearestSegment`]), so the scale error only shifts the chosen foot point, which
/// changes the distance by a second-order amount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalFrame {
    /// Centre longitude, degrees.
    pub lon0: f64,
    /// Centre latitude, degrees.
    pub lat0: f64,
    /// Metres per degree of longitude at `lat0`.
    pub kx: f64,
    /// Metres per degree of latitude at `lat0`.
    pub ky: f64,
}

impl LocalFrame {
    /// A frame centred on `(lon0, lat0)` degrees.
    #[inline]
    pub fn new(lon0: f64, lat0: f64) -> Self {
        let (kx, ky) = metres_per_degree(lat0);
        LocalFrame { lon0, lat0, kx, ky }
    }

    /// `(x, y)` metres of a `(lon, lat)` point; the longitude difference is wrapped into
    /// [-180, 180] so points across the antimeridian land beside the centre.
    #[inline]
    pub fn to_xy(&self, lon: f64, lat: f64) -> (f64, f64) {
        (
            wrap_lon(lon - self.lon0) * self.kx,
            (lat - self.lat0) * self.ky,
        )
    }

    /// The `(lon, lat)` of a frame point (inverse of [`to_xy`](Self::to_xy), longitude
    /// wrapped into [-180, 180]).
    #[inline]
    pub fn to_lon_lat(&self, x: f64, y: f64) -> (f64, f64) {
        let lon = if self.kx > 0.0 {
            self.lon0 + x / self.kx
        } else {
            self.lon0
        };
        (wrap_lon(lon), self.lat0 + y / self.ky)
    }
}

/// Where the nearest point of a segment lies, from [`nearest_on_segment`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentFoot {
    /// Squared distance from the origin to the foot, in the squared units of the input.
    pub dist2: f64,
    /// Position of the foot along the segment, 0 at `a`, 1 at `b`.
    pub t: f64,
}

/// Nearest point to the origin on the planar segment `a`–`b` (any planar unit).
#[inline]
pub fn nearest_on_segment(ax: f64, ay: f64, bx: f64, by: f64) -> SegmentFoot {
    let dx = bx - ax;
    let dy = by - ay;
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let px = ax + t * dx;
    let py = ay + t * dy;
    SegmentFoot {
        dist2: px * px + py * py,
        t,
    }
}

/// Distance in metres from `p` to `q`: [`fast_distance_m`] when it is under 50 km and both
/// points are within ±80° latitude, the exact [`distance_m`] (0.5-2 µs) otherwise. Relative
/// error below 1e-4 (under 5 m at 50 km, 4 cm at 10 km, 0.1 mm within 1 km): distances this
/// far from a boundary or a route are compared with GPS accuracy or corridor widths, never
/// more precisely.
#[inline]
pub fn refined_distance_m(p: (f64, f64), q: (f64, f64)) -> f64 {
    let d = fast_distance_m(p, q);
    if d < 50_000.0 && p.1.abs() < 80.0 && q.1.abs() < 80.0 {
        d
    } else {
        distance_m(p, q)
    }
}

/// Search state for the nearest point to a query among segments that are straight in
/// `(lon, lat)`. Feed it segments with [`consider`](Self::consider), then read
/// [`distance_m`](Self::distance_m). Allocation-free.
///
/// Three tiers, cheapest first: every segment is measured in a [`LocalFrame`] around the
/// query; those within the frame's error bound of the best frame distance get their foot point
/// measured with the frame corrected to first order for the change of scale with latitude
/// (as accurate as [`fast_distance_m`], which ranks them); only the winner is measured with
/// [`refined_distance_m`]. The frame's relative error is about `tan|φ| · d / 2R` (measured:
/// 1.6e-3 at 10 km, 1.6e-2 at 100 km up to 80° latitude), the slack used here is twice that
/// plus a margin, so the frame never discards the true nearest segment.
#[derive(Debug, Clone, Copy)]
pub struct NearestSegment {
    /// The frame around the query point.
    frame: LocalFrame,
    /// `|tan φ|` of the query latitude, plus a margin for the meridian's varying curvature.
    slope: f64,
    /// First-order change of the frame's x and y scales per degree of latitude away from the
    /// query, halved (the scale at the mid-latitude is what a short distance sees): since
    /// `d(N cos φ)/dφ = -M sin φ`, x shrinks by `ky sin φ · π/180 / 2 kx` per degree.
    x_scale_slope: f64,
    y_scale_slope: f64,
    /// Squared ranking distance of the best candidate, m² (see [`approx_m`](Self::approx_m)).
    rank2: f64,
    /// Smallest squared frame distance seen, m².
    frame_best2: f64,
    /// Candidates with a squared frame distance above this are skipped.
    consider_below2: f64,
    /// The nearest point found, `(lon, lat)` in the segments' own longitude frame (it may be
    /// outside [-180, 180] when they are).
    pub foot: (f64, f64),
    /// The caller's number for the segment holding `foot`.
    pub segment: usize,
    /// Position of `foot` along that segment, 0 at its start, 1 at its end (linear in degrees).
    pub t: f64,
}

impl NearestSegment {
    /// Nothing found yet, for the query point `(lon, lat)` degrees.
    #[inline]
    pub fn new(lon: f64, lat: f64) -> Self {
        let frame = LocalFrame::new(lon, lat);
        let (sin, cos) = lat.to_radians().sin_cos();
        let k = std::f64::consts::PI / 180.0 / 2.0;
        let x_scale_slope = if frame.kx > 1e-3 {
            frame.ky * sin * k / frame.kx
        } else {
            0.0
        };
        let y_scale_slope = 3.0 * WGS84_E2 * sin * cos / (1.0 - WGS84_E2 * sin * sin) * k;
        NearestSegment {
            frame,
            slope: (sin / cos).abs().min(1e3) + 0.1,
            x_scale_slope,
            y_scale_slope,
            rank2: f64::INFINITY,
            frame_best2: f64::INFINITY,
            consider_below2: f64::INFINITY,
            foot: (f64::NAN, f64::NAN),
            segment: usize::MAX,
            t: f64::NAN,
        }
    }

    /// Considers the segment `(x0, y0)`–`(x1, y1)` (degrees; longitudes in any frame, the
    /// segment's own difference `x1 - x0` is taken as is), numbered `segment` by the caller.
    #[inline]
    pub fn consider(&mut self, segment: usize, x0: f64, y0: f64, x1: f64, y1: f64) {
        let f = &self.frame;
        let ax = wrap_lon(x0 - f.lon0) * f.kx;
        let bx = ax + (x1 - x0) * f.kx;
        let ay = (y0 - f.lat0) * f.ky;
        let by = (y1 - f.lat0) * f.ky;
        let s = nearest_on_segment(ax, ay, bx, by);
        if s.dist2 > self.consider_below2 {
            return;
        }
        // Rank by the frame distance corrected to first order for the scale at the
        // mid-latitude: as accurate as `fast_distance_m` here, without its trigonometry.
        let (fx, fy) = (ax + s.t * (bx - ax), ay + s.t * (by - ay));
        let dlat = fy / f.ky;
        let rx = fx * (1.0 - self.x_scale_slope * dlat);
        let ry = fy * (1.0 + self.y_scale_slope * dlat);
        let rank2 = rx * rx + ry * ry;
        // Exact ties (a route doubling back over itself) go to the lower segment number,
        // whatever order the caller visits segments in.
        if rank2 < self.rank2 || (rank2 == self.rank2 && segment < self.segment) {
            self.rank2 = rank2;
            self.foot = (x0 + s.t * (x1 - x0), y0 + s.t * (y1 - y0));
            self.segment = segment;
            self.t = s.t;
        }
        if s.dist2 < self.frame_best2 {
            self.frame_best2 = s.dist2;
            let best = s.dist2.sqrt();
            let eps = (self.slope * best / MIN_RADIUS_M).min(0.5);
            let r = best * (1.0 + 2.0 * eps) / (1.0 - eps) + 0.01;
            self.consider_below2 = r * r;
        }
    }

    /// Approximate distance from the query to `foot` (the ranking distance, about as
    /// accurate as [`fast_distance_m`]), metres; infinite until a segment has been considered.
    #[inline]
    pub fn approx_m(&self) -> f64 {
        self.rank2.sqrt()
    }

    /// Whether any segment has been considered.
    pub fn found(&self) -> bool {
        self.segment != usize::MAX
    }

    /// Distance from the query to the nearest point found, measured on the ellipsoid with
    /// [`refined_distance_m`], metres; infinite if nothing was considered.
    pub fn distance_m(&self) -> f64 {
        if !self.found() {
            return f64::INFINITY;
        }
        refined_distance_m(
            (self.frame.lon0, self.frame.lat0),
            (wrap_lon(self.foot.0), self.foot.1),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random pairs `(a, b)` at most `max_d` apart, both within ±80° latitude.
    fn random_pairs(seed: u64, max_d: f64, n: usize) -> Vec<((f64, f64), (f64, f64))> {
        use geo::Destination;
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let a = (
                rng.random_range(-180.0..180.0),
                rng.random_range(-80.0..80.0),
            );
            let b = Geodesic.destination(
                geo::Point::new(a.0, a.1),
                rng.random_range(0.0..360.0),
                rng.random_range(1.0..max_d),
            );
            if b.y().abs() < 80.0 {
                out.push((a, (b.x(), b.y())));
            }
        }
        out
    }

    #[test]
    fn fast_distance_is_within_its_documented_error() {
        for (seed, max_d, bound) in [
            (1, 1_000.0, 1e-7),
            (2, 10_000.0, 1e-5),
            (8, 50_000.0, 1e-4),
            (3, 100_000.0, 1e-3),
        ] {
            for (a, b) in random_pairs(seed, max_d, 20_000) {
                let exact = distance_m(a, b);
                let err = (fast_distance_m(a, b) - exact).abs() / exact;
                assert!(err < bound, "{a:?} {b:?}: {err:e} >= {bound:e}");
            }
        }
    }

    #[test]
    fn local_frame_error_is_within_the_documented_bound() {
        for (seed, max_d, bound) in [
            (4, 1_000.0, 2e-4),
            (5, 10_000.0, 2e-3),
            (6, 100_000.0, 2e-2),
        ] {
            for (a, b) in random_pairs(seed, max_d, 20_000) {
                let exact = distance_m(a, b);
                let (x, y) = LocalFrame::new(a.0, a.1).to_xy(b.0, b.1);
                let err = ((x * x + y * y).sqrt() - exact).abs() / exact;
                assert!(err < bound, "{a:?} {b:?}: {err:e} >= {bound:e}");
            }
        }
    }

    #[test]
    fn bboxes_around_cover_the_whole_geodesic_circle() {
        use geo::Destination;
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..5_000 {
            let (lon, lat) = (
                rng.random_range(-180.0..=180.0),
                rng.random_range(-90.0..=90.0),
            );
            let r = 10f64.powf(rng.random_range(0.0..7.0));
            let boxes = bboxes_around(lon, lat, r);
            for i in 0..16 {
                let p = Geodesic.destination(geo::Point::new(lon, lat), i as f64 * 22.5, r);
                let (x, y) = (wrap_lon(p.x()), p.y());
                let covered = boxes.iter().any(|b| {
                    b[1] <= y
                        && y <= b[3]
                        && (b[0] <= x && x <= b[2]
                            || (x.abs() == 180.0 && b[0] <= -x && -x <= b[2]))
                });
                assert!(covered, "({lon}, {lat}) r {r}: ({x}, {y}) not in {boxes:?}");
            }
        }
    }

    #[test]
    fn nearest_segment_prefers_the_truly_nearer_of_two_frame_ties() {
        // Edges half a degree north and south of the query are equally far in the frame, but
        // the meridian is curved more sharply toward the equator: the north edge is nearer.
        let mut n = NearestSegment::new(-179.9, -16.5);
        n.consider(0, 179.0, -17.0, 181.0, -17.0);
        n.consider(1, 179.0, -16.0, 181.0, -16.0);
        assert_eq!(n.segment, 1);
        let expected = distance_m((-179.9, -16.5), (-179.9, -16.0));
        assert!(
            (n.distance_m() - expected).abs() < 1e-3,
            "{}",
            n.distance_m()
        );
        assert!(!NearestSegment::new(0.0, 0.0).found());
    }

    #[test]
    fn distance_between_identical_points_is_zero() {
        assert_eq!(distance_m((12.5, 41.9), (12.5, 41.9)), 0.0);
    }

    #[test]
    fn one_degree_of_latitude_at_the_equator_is_about_110_574_m() {
        let d = distance_m((0.0, 0.0), (0.0, 1.0));
        assert!((d - 110_574.4).abs() < 0.5, "{d}");
        let (_, ky) = metres_per_degree(0.0);
        assert!((ky - 110_574.3).abs() < 1.0, "{ky}");
    }

    #[test]
    fn wrap_lon_keeps_the_range_and_folds_the_rest() {
        assert_eq!(wrap_lon(180.0), 180.0);
        assert_eq!(wrap_lon(-180.0), -180.0);
        assert_eq!(wrap_lon(190.0), -170.0);
        assert_eq!(wrap_lon(-190.0), 170.0);
        assert_eq!(wrap_lon(540.0), -180.0);
        assert!((wrap_lon(359.5) - -0.5).abs() < 1e-12);
    }

    #[test]
    fn bbox_around_a_point_near_the_antimeridian_splits_in_two() {
        let b = bboxes_around(179.99, 10.0, 5_000.0);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0][2], 180.0);
        assert_eq!(b[1][0], -180.0);
        assert!(b[1][2] > -180.0 && b[1][2] < -179.9);
        let b = bboxes_around(-179.99, 10.0, 5_000.0);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn bbox_around_a_point_near_a_pole_covers_every_longitude() {
        let b = bboxes_around(33.0, 89.99, 5_000.0);
        assert_eq!(b, vec![[-180.0, b[0][1], 180.0, 90.0]]);
        assert!(b[0][1] < 89.99 - 0.04);
    }

    #[test]
    fn bbox_around_with_zero_radius_is_the_point_itself_give_or_take_rounding() {
        let b = bboxes_around(5.0, 45.0, 0.0);
        assert_eq!(b.len(), 1);
        assert!(b[0][0] <= 5.0 && b[0][2] >= 5.0 && b[0][2] - b[0][0] < 1e-6);
        assert_eq!(bboxes_around(5.0, 45.0, f64::NAN), b);
    }

    #[test]
    fn local_frame_round_trips_and_wraps_across_the_antimeridian() {
        let f = LocalFrame::new(179.9, -16.0);
        let (x, y) = f.to_xy(-179.9, -16.0);
        assert!(x > 0.0 && (x - 0.2 * f.kx).abs() < 1e-6 && y == 0.0);
        let (lon, lat) = f.to_lon_lat(x, y);
        assert!((lon - -179.9).abs() < 1e-9 && (lat - -16.0).abs() < 1e-12);
    }

    #[test]
    fn nearest_on_segment_handles_ends_middle_and_degenerate_segments() {
        let f = nearest_on_segment(-1.0, 1.0, 1.0, 1.0);
        assert_eq!((f.dist2, f.t), (1.0, 0.5));
        let f = nearest_on_segment(1.0, 0.0, 2.0, 0.0);
        assert_eq!((f.dist2, f.t), (1.0, 0.0));
        let f = nearest_on_segment(3.0, 4.0, 3.0, 4.0);
        assert_eq!((f.dist2, f.t), (25.0, 0.0));
    }
}
