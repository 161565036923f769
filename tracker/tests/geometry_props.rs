//! Property tests for geometry invariants: boundaries are inside, circles are geodesic,
//! boxes cover circles, the position index always agrees with brute force, and a route's own
//! vertices project onto themselves.

use geo::{Destination, Distance, Geodesic};
use geo_types::{Coord, LineString, MultiPolygon, Point, Polygon};
use landport_tracker::fence_index::FenceIndex;
use landport_tracker::geodesy::{bboxes_around, wrap_lon};
use landport_tracker::geofence::{Geofence, GeofenceDef, Shape};
use landport_tracker::positions::PositionIndex;
use landport_tracker::route::Route;
use proptest::prelude::*;

fn def(id: &str, shape: Shape) -> GeofenceDef {
    GeofenceDef {
        id: id.into(),
        name: String::new(),
        kind: "port".into(),
        shape,
        confirm_seconds: Some(0),
        dwell_seconds: None,
    }
}

/// A star-shaped ring (never self-intersecting) around `(lon, lat)`, longitudes unwrapped:
/// one vertex per radius, at jittered, evenly spread angles.
fn star(lon: f64, lat: f64, radii: &[f64], jitter: &[f64]) -> Vec<Coord<f64>> {
    let n = radii.len();
    let squash = lat.to_radians().cos();
    let mut ring: Vec<Coord<f64>> = radii
        .iter()
        .zip(jitter)
        .enumerate()
        .map(|(i, (r, j))| {
            let a = (i as f64 + j) / n as f64 * std::f64::consts::TAU;
            Coord {
                x: lon + r * a.cos() / squash,
                y: lat + r * a.sin(),
            }
        })
        .collect();
    ring.push(ring[0]);
    ring
}

fn polygon_strategy() -> impl Strategy<Value = (f64, f64, Vec<f64>, Vec<f64>)> {
    (
        prop_oneof![-179.0..179.0f64, 179.5..180.5f64],
        -75.0..75.0f64,
        3usize..30,
    )
        .prop_flat_map(|(lon, lat, n)| {
            (
                Just(lon),
                Just(lat),
                prop::collection::vec(0.001..0.2f64, n),
                prop::collection::vec(-0.4..0.4f64, n),
            )
        })
}

#[derive(Debug, Clone)]
enum Op {
    Update(u32, f64, f64),
    Remove(u32),
    Maintain,
    Rebuild,
    Query(f64, f64, f64, f64),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let lon = prop_oneof![
        -180.0..=180.0f64,
        Just(180.0),
        Just(-180.0),
        179.0..=180.0f64
    ];
    let lat = prop_oneof![-90.0..=90.0f64, 89.0..=90.0f64];
    prop_oneof![
        6 => (0u32..60, lon.clone(), lat.clone()).prop_map(|(k, x, y)| Op::Update(k, x, y)),
        2 => (0u32..60).prop_map(Op::Remove),
        1 => Just(Op::Maintain),
        1 => Just(Op::Rebuild),
        3 => (lon, lat, 0.0..40.0f64, 0.0..20.0f64).prop_map(|(x, y, w, h)| Op::Query(x, y, w, h)),
    ]
}

fn brute_in_bbox(idx: &PositionIndex, b: [f64; 4]) -> Vec<u32> {
    let lon_in = |x: f64| {
        if b[0] <= b[2] {
            b[0] <= x && x <= b[2]
        } else {
            x >= b[0] || x <= b[2]
        }
    };
    (0..60)
        .filter(|&k| {
            idx.get(k).is_some_and(|(x, y)| {
                b[1] <= y && y <= b[3] && (lon_in(x) || (x.abs() == 180.0 && lon_in(-x)))
            })
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_vertex_and_edge_point_of_a_valid_polygon_is_inside(
        (lon, lat, radii, jitter) in polygon_strategy(),
        t in 0.0..1.0f64,
    ) {
        let ring = star(lon, lat, &radii, &jitter);
        let wrapped: LineString<f64> = ring.iter().map(|c| Coord { x: wrap_lon(c.x), y: c.y }).collect();
        let fence = Geofence::new(def("p", Shape::Area(MultiPolygon(vec![Polygon::new(wrapped, vec![])]))))
            .expect("star polygons are valid");
        for w in ring.windows(2) {
            let (x, y) = (wrap_lon(w[0].x), w[0].y);
            prop_assert!(fence.contains(x, y), "vertex ({x}, {y})");
            prop_assert!(fence.boundary_distance_m(x, y) < 1e-3);
            let (x, y) = (wrap_lon(w[0].x + t * (w[1].x - w[0].x)), w[0].y + t * (w[1].y - w[0].y));
            prop_assert!(fence.contains(x, y), "edge point ({x}, {y})");
            prop_assert!(fence.boundary_distance_m(x, y) < 1e-3);
        }
        // The centre is inside when no angular gap reaches π (4+ vertices, jitter ±0.4), and
        // far away is outside.
        if radii.len() >= 4 {
            prop_assert!(fence.contains(wrap_lon(lon), lat));
        }
        prop_assert!(!fence.contains(wrap_lon(lon + 90.0), lat));
        // Envelopes are in range, and every vertex (inside, on the boundary) lies in one.
        let env = fence.envelopes();
        prop_assert!(env.iter().all(|b| -180.0 <= b[0] && b[2] <= 180.0 && b[0] <= b[2]));
        for c in &ring {
            let (x, y) = (wrap_lon(c.x), c.y);
            prop_assert!(env.iter().any(|b| b[0] <= x && x <= b[2] && b[1] <= y && y <= b[3]), "({}, {})", x, y);
        }
    }

    #[test]
    fn a_circle_contains_exactly_the_points_within_its_geodesic_radius(
        lon in -180.0..180.0f64,
        lat in -89.0..89.0f64,
        radius_m in prop_oneof![1.0..1_000.0f64, 1_000.0..2_000_000.0f64],
        bearing in 0.0..360.0f64,
        fraction in prop_oneof![0.0..0.999_999f64, 1.000_001..3.0f64],
    ) {
        let fence = Geofence::new(def("c", Shape::Circle { center: Point::new(lon, lat), radius_m })).unwrap();
        let p = Geodesic.destination(Point::new(lon, lat), bearing, fraction * radius_m);
        let (x, y) = (wrap_lon(p.x()), p.y());
        prop_assert_eq!(fence.contains(x, y), fraction < 1.0, "({}, {})", x, y);
        // Inside points are in an envelope (the index would otherwise never offer the fence).
        if fraction < 1.0 {
            let covered = fence.envelopes().iter().any(|b| {
                b[1] <= y && y <= b[3] && (b[0] <= x && x <= b[2] || (x.abs() == 180.0 && b[0] <= -x && -x <= b[2]))
            });
            prop_assert!(covered);
        }
    }

    #[test]
    fn boxes_around_a_point_cover_its_geodesic_circle(
        lon in -180.0..=180.0f64,
        lat in -90.0..=90.0f64,
        radius_m in 0.0..5_000_000.0f64,
        bearing in 0.0..360.0f64,
    ) {
        let p = Geodesic.destination(Point::new(lon, lat), bearing, radius_m);
        let (x, y) = (wrap_lon(p.x()), p.y());
        let boxes = bboxes_around(lon, lat, radius_m);
        prop_assert!(!boxes.is_empty() && boxes.len() <= 2);
        prop_assert!(boxes.iter().any(|b| {
            b[1] <= y && y <= b[3] && (b[0] <= x && x <= b[2] || (x.abs() == 180.0 && b[0] <= -x && -x <= b[2]))
        }), "({}, {}) not in {:?}", x, y, boxes);
    }

    #[test]
    fn position_index_agrees_with_brute_force_after_any_operations(
        ops in prop::collection::vec(op_strategy(), 1..120),
    ) {
        let mut idx = PositionIndex::new();
        for op in ops {
            match op {
                Op::Update(k, x, y) => idx.update(k, x, y),
                Op::Remove(k) => idx.remove(k),
                Op::Maintain => idx.maintain(),
                Op::Rebuild => idx.rebuild(),
                Op::Query(x, y, w, h) => {
                    let b = [wrap_lon(x - w), (y - h).max(-90.0), wrap_lon(x + w), (y + h).min(90.0)];
                    prop_assert_eq!(idx.in_bbox(b), brute_in_bbox(&idx, b));
                    prop_assert_eq!(idx.in_bbox([-180.0, -90.0, 180.0, 90.0]).len(), idx.len());
                }
            }
        }
    }

    #[test]
    fn a_routes_own_vertices_project_onto_themselves(
        start in (prop_oneof![-179.0..179.0f64, 179.8..180.0f64], -70.0..70.0f64),
        steps in prop::collection::vec((0.0001..0.05f64, -0.05..0.05f64), 1..90),
        pick in 0.0..1.0f64,
    ) {
        let mut pts = vec![start];
        for (dx, dy) in steps {
            let (x, y) = *pts.last().unwrap();
            pts.push((x + dx, y + dy));
        }
        let route = Route::new(pts.iter().map(|&(x, y)| Coord { x: wrap_lon(x), y }).collect()).unwrap();
        let i = ((pts.len() - 1) as f64 * pick).round() as usize;
        let p = route.project(wrap_lon(pts[i].0), pts[i].1);
        prop_assert!(p.off_route_m < 1e-6, "{:?}", p);
        // The route only moves east, so it never comes back to the same place: a vertex lies
        // the sum of the geodesic lengths of the segments before it down the route (measured
        // here with geo's Geodesic, not with the route's own cumulative lengths).
        let w = |(x, y): (f64, f64)| Point::new(wrap_lon(x), y);
        let to_vertex: f64 = pts[..=i].windows(2).map(|s| Geodesic.distance(w(s[0]), w(s[1]))).sum();
        prop_assert!((p.along_m - to_vertex).abs() < 1e-6, "{:?} vs {}", p, to_vertex);
        prop_assert!(route.project(wrap_lon(start.0), start.1).along_m == 0.0);
    }

    #[test]
    fn a_restored_fence_index_has_the_same_slots_and_answers(
        deletes in prop::collection::vec(any::<bool>(), 12),
        probes in prop::collection::vec((0.0..12.0f64, -0.5..1.5f64), 40),
    ) {
        let mut index = FenceIndex::new();
        for i in 0..12 {
            let x = i as f64;
            let ring = LineString::from(vec![(x, 0.0), (x + 1.5, 0.0), (x + 1.5, 1.0), (x, 1.0), (x, 0.0)]);
            index.upsert(def(&format!("f{i}"), Shape::Area(MultiPolygon(vec![Polygon::new(ring, vec![])])))).unwrap();
        }
        for (i, d) in deletes.iter().enumerate() {
            if *d {
                index.remove(&format!("f{i}"));
            }
        }
        let mut restored = FenceIndex::from_defs(index.iter().map(|(s, f)| (s, f.def().clone()))).unwrap();
        restored.reserve_slots(index.next_slot());
        prop_assert_eq!(restored.next_slot(), index.next_slot());
        for (x, y) in probes {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            index.fences_containing(x, y, &mut a);
            restored.fences_containing(x, y, &mut b);
            prop_assert_eq!(a, b);
        }
    }
}
