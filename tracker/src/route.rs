//! A planned route: projection of a position onto it, distance along and off it.
//!
//! Segments are straight in `(lon, lat)` like every line in Landport; their lengths are
//! geodesic. The nearest point is found in a local equirectangular frame around the query
//! point and its distance measured on the ellipsoid ([`geodesy::NearestSegment`]): for a
//! vehicle within tens of kilometres of its route the off-route distance is good to well under
//! a metre, and the along-route distance to the precision of the segment lengths.
//!
//! A route crossing the antimeridian is kept with unwrapped longitudes (each vertex within
//! 180° of the previous one), so its segments take the short way across the line.

use std::ops::ControlFlow;

use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

use crate::error::TrackerError;
use crate::geodesy::{self, NearestSegment, wrap_lon};

/// Where a point falls relative to a route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    /// Distance from the point to the nearest point of the route, metres.
    pub off_route_m: f64,
    /// Distance along the route from its start to that nearest point, metres.
    pub along_m: f64,
}

/// Routes with more segments than this search an R-tree of segment envelopes (measured: a
/// 50-segment route projects a nearby point in ~200 ns with the tree, ~770 ns by a scan).
const TREE_MIN_SEGMENTS: usize = 16;
/// First search radius for long routes, metres; doubled until a segment is found within it,
/// so the last search covers at most twice the distance to the route.
const FIRST_SEARCH_RADIUS_M: f64 = 1_000.0;
/// Beyond this search radius long routes are simply scanned, metres.
const MAX_SEARCH_RADIUS_M: f64 = 2_000_000.0;

/// A LineString with cumulative segment lengths.
///
/// Equality compares the line only (everything else is derived from it).
#[derive(Debug, Clone)]
pub struct Route {
    line: geo_types::LineString<f64>,
    /// Vertices `[lon, lat]` with unwrapped longitudes (each within 180° of the previous).
    pts: Vec<[f64; 2]>,
    /// `cum_m[i]`: geodesic length from the start to vertex `i`, metres.
    cum_m: Vec<f64>,
    /// Segment envelopes in the unwrapped frame, tagged with the segment's first vertex;
    /// `None` for short routes, which are scanned.
    tree: Option<RTree<GeomWithData<Rectangle<[f64; 2]>, u32>>>,
}

impl PartialEq for Route {
    fn eq(&self, other: &Route) -> bool {
        self.line == other.line
    }
}

impl Route {
    /// At least two distinct, finite, in-range points.
    pub fn new(line: geo_types::LineString<f64>) -> Result<Route, TrackerError> {
        let bad = |m: String| TrackerError::InvalidGeometry(format!("route: {m}"));
        if line.0.len() < 2 {
            return Err(bad("needs at least 2 positions".to_owned()));
        }
        for (i, c) in line.0.iter().enumerate() {
            if !(c.x.is_finite() && c.y.is_finite()) {
                return Err(bad(format!("position {i} is not a finite number")));
            }
            if !(-180.0..=180.0).contains(&c.x) || !(-90.0..=90.0).contains(&c.y) {
                return Err(bad(format!(
                    "position {i} ({}, {}) is out of range (lon in [-180, 180], lat in [-90, 90])",
                    c.x, c.y
                )));
            }
        }
        if line.0.iter().all(|c| *c == line.0[0]) {
            return Err(bad("needs at least 2 distinct positions".to_owned()));
        }
        let mut pts = Vec::with_capacity(line.0.len());
        let mut cum_m = Vec::with_capacity(line.0.len());
        pts.push([line.0[0].x, line.0[0].y]);
        cum_m.push(0.0);
        for w in line.0.windows(2) {
            let prev = *pts.last().expect("pts starts non-empty");
            pts.push([prev[0] + wrap_lon(w[1].x - w[0].x), w[1].y]);
            let seg = geodesy::distance_m((w[0].x, w[0].y), (w[1].x, w[1].y));
            cum_m.push(cum_m.last().expect("cum_m starts non-empty") + seg);
        }
        let tree = (pts.len() - 1 > TREE_MIN_SEGMENTS).then(|| {
            RTree::bulk_load(
                pts.windows(2)
                    .enumerate()
                    .map(|(i, w)| GeomWithData::new(Rectangle::from_corners(w[0], w[1]), i as u32))
                    .collect(),
            )
        });
        Ok(Route {
            line,
            pts,
            cum_m,
            tree,
        })
    }

    pub fn line(&self) -> &geo_types::LineString<f64> {
        &self.line
    }

    /// Total length, metres.
    pub fn length_m(&self) -> f64 {
        *self
            .cum_m
            .last()
            .expect("a route has at least two vertices")
    }

    /// Geodesic length from the start to each vertex, metres (first 0, last `length_m`).
    pub fn cumulative_m(&self) -> &[f64] {
        &self.cum_m
    }

    /// Nearest point of the route to `(lon, lat)`.
    ///
    /// When two parts of the route are exactly equally near (a route that doubles back over
    /// itself), the earlier one wins. Allocation-free. A non-finite coordinate gives NaN
    /// distances.
    pub fn project(&self, lon: f64, lat: f64) -> Projection {
        if !(lon.is_finite() && lat.is_finite()) {
            return Projection {
                off_route_m: f64::NAN,
                along_m: f64::NAN,
            };
        }
        let best = self
            .tree
            .as_ref()
            .and_then(|tree| self.search_tree(tree, lon, lat))
            .unwrap_or_else(|| self.scan(lon, lat));
        let i = best.segment;
        let seg_m = self.cum_m[i + 1] - self.cum_m[i];
        Projection {
            off_route_m: best.distance_m(),
            along_m: self.cum_m[i] + best.t * seg_m,
        }
    }

    /// Where a vehicle whose progress is known to lie in `[from_m, to_m]` along the route is:
    /// among the segments overlapping that window, the earliest point within `slack_m` of the
    /// nearest distance. A leg running beside (or back over) another part of the route, or a
    /// later pass through the same place, cannot capture it.
    pub fn project_between(
        &self,
        lon: f64,
        lat: f64,
        from_m: f64,
        to_m: f64,
        slack_m: f64,
    ) -> Projection {
        if !(lon.is_finite() && lat.is_finite()) {
            return Projection {
                off_route_m: f64::NAN,
                along_m: f64::NAN,
            };
        }
        let n = self.pts.len() - 1;
        // First segment ending after from_m, last one starting before to_m.
        let first = self
            .cum_m
            .partition_point(|&c| c <= from_m)
            .saturating_sub(1)
            .min(n - 1);
        let last = self
            .cum_m
            .partition_point(|&c| c < to_m)
            .clamp(first + 1, n);
        let mut best = NearestSegment::new(lon, lat);
        for i in first..last {
            let (a, z) = (self.pts[i], self.pts[i + 1]);
            best.consider(i, a[0], a[1], z[0], z[1]);
        }
        let limit = best.approx_m() + slack_m;
        for i in first..best.segment.min(last) {
            let (a, z) = (self.pts[i], self.pts[i + 1]);
            let mut one = NearestSegment::new(lon, lat);
            one.consider(i, a[0], a[1], z[0], z[1]);
            if one.approx_m() <= limit {
                return self.projection_of(&one);
            }
        }
        self.projection_of(&best)
    }

    /// The earliest part of the route within `slack_m` of the nearest distance: where a
    /// vehicle first seen near both ends of a round trip is taken to be (the start).
    pub fn project_earliest(&self, lon: f64, lat: f64, slack_m: f64) -> Projection {
        let nearest = self.project(lon, lat);
        if !nearest.off_route_m.is_finite() {
            return nearest;
        }
        let limit = nearest.off_route_m + slack_m;
        for (i, w) in self.pts.windows(2).enumerate() {
            let mut one = NearestSegment::new(lon, lat);
            one.consider(i, w[0][0], w[0][1], w[1][0], w[1][1]);
            if one.approx_m() <= limit * 1.01 + 1.0 {
                let p = self.projection_of(&one);
                if p.off_route_m <= limit {
                    return p;
                }
            }
        }
        nearest
    }

    /// The point `along_m` metres from the start, `(lon, lat)` (clamped to the route).
    pub fn point_at(&self, along_m: f64) -> (f64, f64) {
        let n = self.pts.len() - 1;
        let i = self
            .cum_m
            .partition_point(|&c| c <= along_m)
            .saturating_sub(1)
            .min(n - 1);
        let seg = self.cum_m[i + 1] - self.cum_m[i];
        let t = if seg > 0.0 {
            ((along_m - self.cum_m[i]) / seg).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (a, z) = (self.pts[i], self.pts[i + 1]);
        (wrap_lon(a[0] + t * (z[0] - a[0])), a[1] + t * (z[1] - a[1]))
    }

    fn projection_of(&self, best: &NearestSegment) -> Projection {
        let i = best.segment;
        let seg_m = self.cum_m[i + 1] - self.cum_m[i];
        Projection {
            off_route_m: best.distance_m(),
            along_m: self.cum_m[i] + best.t * seg_m,
        }
    }

    fn scan(&self, lon: f64, lat: f64) -> NearestSegment {
        let mut best = NearestSegment::new(lon, lat);
        for (i, w) in self.pts.windows(2).enumerate() {
            best.consider(i, w[0][0], w[0][1], w[1][0], w[1][1]);
        }
        best
    }

    /// Searches segments near the point with growing radius; `None` when none is within
    /// [`MAX_SEARCH_RADIUS_M`].
    ///
    /// Every segment within `r` of the point has an envelope meeting the boxes around it (they
    /// are conservative), so once the nearest candidate is within `r` it is the nearest of all.
    fn search_tree(
        &self,
        tree: &RTree<GeomWithData<Rectangle<[f64; 2]>, u32>>,
        lon: f64,
        lat: f64,
    ) -> Option<NearestSegment> {
        let all = tree.root().envelope();
        let mut r = FIRST_SEARCH_RADIUS_M;
        while r <= MAX_SEARCH_RADIUS_M {
            let mut best = NearestSegment::new(lon, lat);
            for b in geodesy::bboxes_around_inline(lon, lat, r * 1.05).as_slice() {
                // The tree is in unwrapped longitudes: look at every copy of the box that
                // overlaps it.
                let k_lo = ((all.lower()[0] - b[2]) / 360.0).ceil() as i64;
                let k_hi = ((all.upper()[0] - b[0]) / 360.0).floor() as i64;
                for k in k_lo..=k_hi {
                    let shift = k as f64 * 360.0;
                    let env = AABB::from_corners([b[0] + shift, b[1]], [b[2] + shift, b[3]]);
                    let _ = tree.locate_in_envelope_intersecting_int(&env, |seg| {
                        let i = seg.data as usize;
                        let (a, z) = (self.pts[i], self.pts[i + 1]);
                        best.consider(i, a[0], a[1], z[0], z[1]);
                        ControlFlow::<()>::Continue(())
                    });
                }
            }
            if best.approx_m() <= r {
                return Some(best);
            }
            r *= 2.0;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::{LineString, coord, line_string};

    #[test]
    fn length_is_the_sum_of_geodesic_segment_lengths() {
        let r =
            Route::new(line_string![(x: 0.0, y: 0.0), (x: 1.0, y: 0.0), (x: 1.0, y: 1.0)]).unwrap();
        let expected = geodesy::distance_m((0.0, 0.0), (1.0, 0.0))
            + geodesy::distance_m((1.0, 0.0), (1.0, 1.0));
        assert!((r.length_m() - expected).abs() < 1e-6);
        assert_eq!(r.cumulative_m().len(), 3);
    }

    #[test]
    fn projection_of_a_point_beside_the_route_is_perpendicular() {
        let r =
            Route::new(line_string![(x: 0.0, y: 0.0), (x: 1.0, y: 0.0), (x: 1.0, y: 1.0)]).unwrap();
        let p = r.project(0.5, 0.001);
        assert!((p.off_route_m - geodesy::distance_m((0.5, 0.001), (0.5, 0.0))).abs() < 0.01);
        let half_first = geodesy::distance_m((0.0, 0.0), (0.5, 0.0));
        assert!((p.along_m - half_first).abs() < 0.01, "{p:?}");
        let start = r.project(-0.1, 0.0);
        assert_eq!(start.along_m, 0.0);
        let end = r.project(1.0, 1.2);
        assert!((end.along_m - r.length_m()).abs() < 1e-6);
    }

    #[test]
    fn invalid_routes_are_rejected() {
        for line in [
            line_string![(x: 0.0, y: 0.0)],
            line_string![(x: 1.0, y: 1.0), (x: 1.0, y: 1.0)],
            line_string![(x: 0.0, y: 0.0), (x: f64::NAN, y: 1.0)],
            line_string![(x: 0.0, y: 0.0), (x: 181.0, y: 1.0)],
        ] {
            assert!(matches!(
                Route::new(line),
                Err(TrackerError::InvalidGeometry(_))
            ));
        }
    }

    #[test]
    fn a_route_across_the_antimeridian_takes_the_short_way() {
        let r = Route::new(line_string![(x: 179.5, y: 0.0), (x: -179.5, y: 0.0)]).unwrap();
        assert!((r.length_m() - 111_319.5).abs() < 1.0, "{}", r.length_m());
        let p = r.project(180.0, 0.001);
        assert!((p.along_m - r.length_m() / 2.0).abs() < 1.0, "{p:?}");
        assert!(p.off_route_m < 111.0 && p.off_route_m > 110.0, "{p:?}");
        let p = r.project(-179.9, 0.0);
        assert!((p.along_m - 0.6 * r.length_m()).abs() < 1.0, "{p:?}");
        assert!(p.off_route_m < 1e-6);
        assert!(r.project(0.0, 0.0).off_route_m > 19_000_000.0);
    }

    #[test]
    fn long_routes_search_their_tree_and_agree_with_a_scan() {
        let line: LineString<f64> = (0..2_000)
            .map(|i| {
                let s = i as f64 * 0.002;
                coord! { x: wrap_lon(178.0 + s), y: -30.0 + (s * 3.0).sin() * 0.2 }
            })
            .collect();
        let r = Route::new(line).unwrap();
        assert!(r.tree.is_some());
        for i in 0..300 {
            let lon = wrap_lon(177.5 + i as f64 * 0.02);
            for lat in [-31.0, -30.1, -30.0, -29.9, -25.0] {
                let fast = r.project(lon, lat);
                let scan = r.scan(lon, lat);
                let along = r.cum_m[scan.segment]
                    + scan.t * (r.cum_m[scan.segment + 1] - r.cum_m[scan.segment]);
                assert!(
                    (fast.off_route_m - scan.distance_m()).abs() < 1e-9,
                    "({lon}, {lat})"
                );
                assert!((fast.along_m - along).abs() < 1e-6, "({lon}, {lat})");
            }
        }
    }

    #[test]
    fn a_window_keeps_the_projection_on_its_own_leg_of_an_out_and_back_route() {
        // Out along y = 0 and back along y = 0.002 (~220 m apart).
        let r = Route::new(
            line_string![(x: 0.0, y: 0.0), (x: 0.1, y: 0.0), (x: 0.1, y: 0.002), (x: 0.0, y: 0.002)],
        )
        .unwrap();
        let out_leg = geodesy::distance_m((0.0, 0.0), (0.1, 0.0));
        // Nearer the return leg, but the vehicle is known to be on the way out.
        let p = r.project_between(0.05, 0.0015, 0.0, out_leg, 0.0);
        assert!(p.along_m < out_leg, "{p:?}");
        let g = r.project(0.05, 0.0015);
        assert!(g.along_m > out_leg, "{g:?}");
        // The start of a round trip is its start, not its end.
        let rt = Route::new(line_string![(x: 0.0, y: 0.0), (x: 0.1, y: 0.0), (x: 0.0, y: 0.0001)])
            .unwrap();
        assert!(rt.project_earliest(0.0, 0.00006, 50.0).along_m < 10.0);
        let (lon, lat) = r.point_at(out_leg / 2.0);
        assert!((lon - 0.05).abs() < 1e-9 && lat.abs() < 1e-12);
    }

    #[test]
    fn equality_compares_the_line() {
        let a = Route::new(line_string![(x: 0.0, y: 0.0), (x: 1.0, y: 0.0)]).unwrap();
        let b = Route::new(line_string![(x: 0.0, y: 0.0), (x: 1.0, y: 0.0)]).unwrap();
        assert_eq!(a, b);
        let c = Route::new(line_string![(x: 0.0, y: 0.0), (x: 2.0, y: 0.0)]).unwrap();
        assert_ne!(a, c);
    }
}
