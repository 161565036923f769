//! Oracle tests for the geometry modules, with fixed seeds: geodesic distances against
//! published GeographicLib values, point-in-polygon against geo's boundary-inclusive
//! `Intersects`, and every index and distance query against brute force.

use geo::Intersects;
use geo_types::{Coord, LineString, MultiPolygon, Point, Polygon};
use landport_tracker::fence_index::FenceIndex;
use landport_tracker::geodesy::{MIN_RADIUS_M, distance_m, wrap_lon};
use landport_tracker::geofence::{Geofence, GeofenceDef, Shape};
use landport_tracker::positions::PositionIndex;
use landport_tracker::route::Route;
// SmallRng: seeded and deterministic (the workspace does not enable rand's StdRng).
use rand::rngs::SmallRng as StdRng;
use rand::{Rng, SeedableRng};

// ----- builders ---------------------------------------------------------------------------

fn def(id: String, shape: Shape) -> GeofenceDef {
    GeofenceDef {
        id,
        name: String::new(),
        kind: "depot".into(),
        shape,
        confirm_seconds: None,
        dwell_seconds: None,
    }
}

/// A ring star-shaped around `(lon, lat)` (so never self-intersecting): `n` vertices at
/// jittered, evenly spread angles (no gap wider than 1.8 × 2π/n), radii in `[r_min, r_max]`
/// degrees of latitude, longitudes unwrapped.
fn star_ring(
    rng: &mut StdRng,
    lon: f64,
    lat: f64,
    r_min: f64,
    r_max: f64,
    n: usize,
) -> LineString<f64> {
    let squash = lat.to_radians().cos();
    let mut ring: Vec<Coord<f64>> = (0..n)
        .map(|i| {
            let a = (i as f64 + rng.random_range(-0.4..0.4)) / n as f64 * std::f64::consts::TAU;
            let r = rng.random_range(r_min..=r_max);
            Coord {
                x: lon + r * a.cos() / squash,
                y: lat + r * a.sin(),
            }
        })
        .collect();
    ring.push(ring[0]);
    LineString(ring)
}

/// A polygon around `(lon, lat)`, sometimes with a hole, in unwrapped longitudes. With at
/// least 6 vertices at radius >= 0.6 size and gaps under 0.6π, the shell's edges stay beyond
/// 0.35 size of the centre, so a hole within 0.25 size is inside it.
fn star_polygon(rng: &mut StdRng, lon: f64, lat: f64, size: f64) -> Polygon<f64> {
    if rng.random_bool(0.4) {
        let n = rng.random_range(6..24);
        let exterior = star_ring(rng, lon, lat, size * 0.6, size, n);
        let n = rng.random_range(3..10);
        let hole = star_ring(rng, lon, lat, size * 0.05, size * 0.25, n);
        Polygon::new(exterior, vec![hole])
    } else {
        let n = rng.random_range(3..24);
        Polygon::new(star_ring(rng, lon, lat, size * 0.3, size, n), vec![])
    }
}

/// The same polygon with longitudes wrapped into [-180, 180] (how a user would send it).
fn wrapped(p: &Polygon<f64>) -> Polygon<f64> {
    let w = |r: &LineString<f64>| {
        r.0.iter()
            .map(|c| Coord {
                x: wrap_lon(c.x),
                y: c.y,
            })
            .collect()
    };
    Polygon::new(w(p.exterior()), p.interiors().iter().map(w).collect())
}

/// Random fences around `(lon, lat)` centres in `region`, of every kind, with some across the
/// antimeridian.
fn random_fence(rng: &mut StdRng, id: String, region: [f64; 4]) -> GeofenceDef {
    let antimeridian = rng.random_bool(0.1);
    let lon = if antimeridian {
        rng.random_range(179.7..180.3)
    } else {
        rng.random_range(region[0]..region[2])
    };
    let lat = rng.random_range(region[1]..region[3]);
    let size = rng.random_range(0.005..0.3);
    let shape = match rng.random_range(0..10) {
        0..=4 => Shape::Area(MultiPolygon(vec![wrapped(&star_polygon(
            rng, lon, lat, size,
        ))])),
        5 => {
            // Two members far enough apart not to overlap.
            let a = star_polygon(rng, lon, lat, size);
            let b = star_polygon(rng, lon + 3.0 * size / lat.to_radians().cos(), lat, size);
            Shape::Area(MultiPolygon(vec![wrapped(&a), wrapped(&b)]))
        }
        6 | 7 => Shape::Circle {
            center: Point::new(wrap_lon(lon), lat),
            radius_m: size * 100_000.0,
        },
        _ => {
            let n = rng.random_range(2..60);
            let line: LineString<f64> = (0..n)
                .map(|i| Coord {
                    x: wrap_lon(lon + i as f64 * size / 10.0),
                    y: lat + rng.random_range(-size..size) / 5.0,
                })
                .collect();
            Shape::Corridor {
                line,
                corridor_m: size * 20_000.0,
            }
        }
    };
    def(id, shape)
}

/// Points near `fences` (on and around boundaries) and uniform in `region`.
fn probe_points(
    rng: &mut StdRng,
    index: &FenceIndex,
    region: [f64; 4],
    n: usize,
) -> Vec<(f64, f64)> {
    let fences: Vec<&Geofence> = index.iter().map(|(_, f)| f).collect();
    (0..n)
        .map(|i| {
            if i % 3 == 0 || fences.is_empty() {
                return (
                    rng.random_range(region[0]..region[2]),
                    rng.random_range(region[1]..region[3]),
                );
            }
            let f = fences[rng.random_range(0..fences.len())];
            let env = f.envelopes();
            let b = env[rng.random_range(0..env.len())];
            // Around the envelope, and on the polygon's own vertices and edges now and then.
            if let (Shape::Area(mp), 1) = (&f.def().shape, i % 3) {
                let ring = mp.0[0].exterior();
                let k = rng.random_range(0..ring.0.len() - 1);
                let (a, z) = (ring.0[k], ring.0[k + 1]);
                let t = if rng.random_bool(0.3) {
                    0.0
                } else {
                    rng.random::<f64>()
                };
                if (z.x - a.x).abs() <= 180.0 {
                    return (a.x + t * (z.x - a.x), a.y + t * (z.y - a.y));
                }
            }
            let pad = 0.01;
            (
                rng.random_range(b[0] - pad..=b[2] + pad)
                    .clamp(-180.0, 180.0),
                rng.random_range(b[1] - pad..=b[3] + pad).clamp(-90.0, 90.0),
            )
        })
        .collect()
}

// ----- geodesic distances -------------------------------------------------------------------

/// `(lat1, lon1, lat2, lon2, s12)`: the inverse-problem test cases of GeographicLib's own test
/// suite (`testcases` in `tests/geodtest.c`, taken from the GeodTest.dat data set), metres.
/// The digits are kept as published, more than an f64 holds.
#[allow(clippy::excessive_precision)]
const GEODTEST_CASES: &[(f64, f64, f64, f64, f64)] = &[
    (
        35.60777,
        -139.44815,
        -11.17491,
        -69.95921,
        8_935_244.560_481_830_5,
    ),
    (
        55.52454,
        106.05087,
        77.03196,
        197.18234,
        4_105_086.171_392_440_6,
    ),
    (
        -21.97856,
        142.59065,
        41.84138,
        98.56635,
        8_394_328.894_657_671,
    ),
    (
        -66.99028,
        112.2363,
        -12.70631,
        285.90344,
        11_150_344.231_208_024_1,
    ),
    (
        -17.42761,
        173.34268,
        -15.84784,
        5.93557,
        16_076_603.163_118_067_3,
    ),
    (
        32.84994,
        48.28919,
        -56.28556,
        202.29132,
        16_727_068.943_816_446_1,
    ),
    (
        6.96833,
        52.74123,
        -7.39675,
        206.17291,
        17_102_477.249_695_838_8,
    ),
    (
        -50.56724,
        -16.30485,
        -33.56571,
        -94.97412,
        6_455_670.511_866_869_6,
    ),
];

#[test]
fn geodesic_distance_matches_geographiclib_reference_values_to_a_millimetre() {
    for &(lat1, lon1, lat2, lon2, s12) in GEODTEST_CASES {
        let d = distance_m((lon1, lat1), (lon2, lat2));
        assert!(
            (d - s12).abs() < 1e-3,
            "({lat1}, {lon1}) -> ({lat2}, {lon2}): {d} vs {s12}"
        );
        let back = distance_m((lon2, lat2), (lon1, lat1));
        assert!((back - s12).abs() < 1e-3, "reverse: {back} vs {s12}");
    }
}

#[test]
fn geodesic_distance_wellington_to_salamanca_matches_the_geographiclib_docs() {
    // GeographicLib's JavaScript documentation: "The distance is 19959679.267 m."
    let d = distance_m((174.81, -41.32), (-5.50, 40.96));
    assert!((d - 19_959_679.267).abs() < 1e-3, "{d}");
}

#[test]
fn geodesic_distance_agrees_with_vincenty_at_logistics_scales() {
    use geo::VincentyDistance;
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..2_000 {
        let a = Point::new(
            rng.random_range(-180.0..180.0),
            rng.random_range(-85.0..85.0),
        );
        let dy: f64 = rng.random_range(-0.5..0.5);
        let b = Point::new(
            a.x() + rng.random_range(-0.5..0.5),
            (a.y() + dy).clamp(-89.0, 89.0),
        );
        let v = a
            .vincenty_distance(&b)
            .expect("Vincenty converges for short lines");
        let d = distance_m((a.x(), a.y()), (b.x(), b.y()));
        assert!((d - v).abs() < 1e-3, "{a:?} {b:?}: {d} vs {v}");
    }
}

// ----- point in polygon ---------------------------------------------------------------------

/// Distance in degrees from `(x, y)` to the polygon's boundary (planar, in the polygon's frame).
fn boundary_gap_deg(p: &Polygon<f64>, x: f64, y: f64) -> f64 {
    std::iter::once(p.exterior())
        .chain(p.interiors())
        .flat_map(|r| r.0.windows(2).map(|w| (w[0], w[1])).collect::<Vec<_>>())
        .map(|(a, b)| {
            let (dx, dy) = (b.x - a.x, b.y - a.y);
            let t = (((x - a.x) * dx + (y - a.y) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
            ((a.x + t * dx - x).powi(2) + (a.y + t * dy - y).powi(2)).sqrt()
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn point_in_polygon_agrees_with_geo_intersects_including_across_the_antimeridian() {
    let mut rng = StdRng::seed_from_u64(12);
    let mut checked = 0;
    let mut boundary_hits = 0;
    for case in 0..300 {
        let crosses = case % 4 == 0;
        let lon = if crosses {
            rng.random_range(179.8..180.2)
        } else {
            rng.random_range(-170.0..170.0)
        };
        let lat = rng.random_range(-70.0..70.0);
        let size = rng.random_range(0.01..0.5);
        // The reference polygon is in unwrapped longitudes; the fence gets the wrapped one.
        let reference = star_polygon(&mut rng, lon, lat, size);
        let fence = Geofence::new(def(
            "p".into(),
            Shape::Area(MultiPolygon(vec![wrapped(&reference)])),
        ))
        .expect("star polygons are valid");
        let r = reference.exterior().0.iter().fold(
            [
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ],
            |b, c| [b[0].min(c.x), b[1].min(c.y), b[2].max(c.x), b[3].max(c.y)],
        );
        for i in 0..200 {
            let (x, y) = if i % 5 == 0 {
                // Exactly on a vertex or on an edge.
                let ring = reference.exterior();
                let k = rng.random_range(0..ring.0.len() - 1);
                let t = if i % 10 == 0 {
                    0.0
                } else {
                    rng.random::<f64>()
                };
                let (a, b) = (ring.0[k], ring.0[k + 1]);
                (a.x + t * (b.x - a.x), a.y + t * (b.y - a.y))
            } else {
                (
                    rng.random_range(r[0] - 0.01..r[2] + 0.01),
                    rng.random_range(r[1] - 0.01..r[3] + 0.01),
                )
            };
            let expected = reference.intersects(&Coord { x, y });
            let got = fence.contains(wrap_lon(x), y);
            if boundary_gap_deg(&reference, x, y) <= 1e-9 {
                // Within the boundary tolerance: ours says inside, whatever rounding says.
                assert!(got, "case {case}: boundary point ({x}, {y}) not inside");
                boundary_hits += 1;
                continue;
            }
            assert_eq!(got, expected, "case {case}: ({x}, {y}) in {reference:?}");
            checked += 1;
        }
    }
    assert!(
        checked > 40_000 && boundary_hits > 5_000,
        "{checked} {boundary_hits}"
    );
}

// ----- fence index --------------------------------------------------------------------------

fn brute_containing(index: &FenceIndex, lon: f64, lat: f64) -> Vec<u32> {
    index
        .iter()
        .filter(|(_, f)| f.contains(lon, lat))
        .map(|(s, _)| s)
        .collect()
}

fn check_index_against_brute_force(index: &FenceIndex, points: &[(f64, f64)]) -> usize {
    let mut hits = 0;
    let (mut cands, mut found, mut near) = (Vec::new(), Vec::new(), Vec::new());
    for &(lon, lat) in points {
        let expected = brute_containing(index, lon, lat);
        cands.clear();
        index.candidates_at(lon, lat, &mut cands);
        let mut sorted = cands.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            cands.len(),
            "({lon}, {lat}): duplicate candidates {cands:?}"
        );
        for s in &expected {
            assert!(
                cands.contains(s),
                "({lon}, {lat}): fence {s} contains it but is no candidate"
            );
        }
        found.clear();
        index.fences_containing(lon, lat, &mut found);
        assert_eq!(found, expected, "({lon}, {lat})");
        near.clear();
        let h = 0.002;
        index.candidates_in_box(
            [
                (lon - h).max(-180.0),
                (lat - h).max(-90.0),
                (lon + h).min(180.0),
                (lat + h).min(90.0),
            ],
            &mut near,
        );
        for s in &expected {
            assert!(
                near.contains(s),
                "({lon}, {lat}): fence {s} missing from the box candidates"
            );
        }
        hits += expected.len();
    }
    hits
}

#[test]
fn fence_index_answers_match_brute_force_through_upserts_and_deletes() {
    let mut rng = StdRng::seed_from_u64(13);
    let region = [-10.0, -60.0, 10.0, 70.0];
    let mut index = FenceIndex::new();
    let mut rejected = 0;
    for i in 0..600 {
        match index.upsert(random_fence(&mut rng, format!("f{i}"), region)) {
            Ok(_) => {}
            Err(e) => {
                eprintln!("rejected: {e}");
                rejected += 1
            }
        }
    }
    assert_eq!(rejected, 0, "random fences are valid by construction");
    let points = probe_points(&mut rng, &index, region, 6_000);
    let hits = check_index_against_brute_force(&index, &points);
    assert!(
        hits > 2_000,
        "only {hits} hits: the test would prove little"
    );

    // Replace some fences (same id, new shape), delete others, add more.
    for i in (0..600).step_by(7) {
        let _ = index.upsert(random_fence(&mut rng, format!("f{i}"), region));
    }
    for i in (3..600).step_by(5) {
        index.remove(&format!("f{i}"));
    }
    for i in 600..700 {
        let _ = index.upsert(random_fence(&mut rng, format!("f{i}"), region));
    }
    let points = probe_points(&mut rng, &index, region, 6_000);
    check_index_against_brute_force(&index, &points);

    // A restored copy answers identically, slot for slot.
    let restored = FenceIndex::from_defs(index.iter().map(|(s, f)| (s, f.def().clone()))).unwrap();
    for &(lon, lat) in &points {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        index.fences_containing(lon, lat, &mut a);
        restored.fences_containing(lon, lat, &mut b);
        assert_eq!(a, b);
    }
}

#[test]
fn circle_contains_is_exactly_the_geodesic_distance_test() {
    let mut rng = StdRng::seed_from_u64(14);
    for _ in 0..200 {
        let (lon, lat) = (
            rng.random_range(-180.0..180.0),
            rng.random_range(-89.0..89.0),
        );
        let r = 10f64.powf(rng.random_range(0.0..6.5));
        let f = Geofence::new(def(
            "c".into(),
            Shape::Circle {
                center: Point::new(lon, lat),
                radius_m: r,
            },
        ))
        .unwrap();
        let env = f.envelopes();
        for _ in 0..100 {
            let b = env[rng.random_range(0..env.len())];
            let (x, y) = (rng.random_range(b[0]..=b[2]), rng.random_range(b[1]..=b[3]));
            let d = distance_m((lon, lat), (x, y));
            assert_eq!(
                f.contains(x, y),
                d <= r,
                "centre ({lon}, {lat}) r {r}: ({x}, {y}) at {d}"
            );
            assert!((f.boundary_distance_m(x, y) - (d - r).abs()).abs() < 1e-9);
        }
    }
}

// ----- positions ----------------------------------------------------------------------------

fn lon_in(min: f64, max: f64, x: f64) -> bool {
    if min <= max {
        min <= x && x <= max
    } else {
        x >= min || x <= max
    }
}

fn brute_in_bbox(idx: &PositionIndex, keys: u32, b: [f64; 4]) -> Vec<u32> {
    (0..keys)
        .filter(|&k| {
            idx.get(k).is_some_and(|(x, y)| {
                b[1] <= y
                    && y <= b[3]
                    && (lon_in(b[0], b[2], x) || (x.abs() == 180.0 && lon_in(b[0], b[2], -x)))
            })
        })
        .collect()
}

/// A lower bound on the geodesic distance between points at latitudes `a` and `b`, metres.
fn lat_gap_m(a: f64, b: f64) -> f64 {
    (a - b).abs().to_radians() * MIN_RADIUS_M
}

fn brute_nearest(
    idx: &PositionIndex,
    keys: u32,
    lon: f64,
    lat: f64,
    r: f64,
    limit: usize,
) -> Vec<(u32, f64)> {
    let mut all: Vec<(u32, f64)> = (0..keys)
        .filter_map(|k| idx.get(k).map(|p| (k, p)))
        .filter(|(_, p)| lat_gap_m(p.1, lat) <= r)
        .map(|(k, p)| (k, distance_m((lon, lat), p)))
        .filter(|e| e.1 <= r)
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    all.truncate(limit);
    all
}

/// A position in one of the awkward places (antimeridian, poles, exactly ±180) or anywhere.
fn random_position(rng: &mut StdRng) -> (f64, f64) {
    match rng.random_range(0..6) {
        0 => (
            rng.random_range(179.0..=180.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 },
            rng.random_range(-60.0..60.0),
        ),
        1 => (
            rng.random_range(-180.0..=180.0),
            rng.random_range(88.0..=90.0),
        ),
        2 => (
            if rng.random_bool(0.5) { 180.0 } else { -180.0 },
            rng.random_range(-10.0..10.0),
        ),
        _ => (
            rng.random_range(-180.0..=180.0),
            rng.random_range(-90.0..=90.0),
        ),
    }
}

fn check_positions_against_brute_force(rng: &mut StdRng, idx: &PositionIndex, keys: u32) {
    for q in 0..150 {
        let (lon, lat) = random_position(rng);
        let w = 10f64.powf(rng.random_range(-2.0..1.5));
        let h = 10f64.powf(rng.random_range(-2.0..1.0));
        let mut b = [
            wrap_lon(lon - w),
            (lat - h).max(-90.0),
            wrap_lon(lon + w),
            (lat + h).min(90.0),
        ];
        if q % 10 == 0 {
            b[0] = -180.0;
        }
        assert_eq!(idx.in_bbox(b), brute_in_bbox(idx, keys, b), "bbox {b:?}");
        let r = 10f64.powf(rng.random_range(2.0..6.0));
        let limit = rng.random_range(1..40);
        let got = idx.nearest(lon, lat, r, limit);
        let expected = brute_nearest(idx, keys, lon, lat, r, limit);
        assert_eq!(
            got, expected,
            "nearest to ({lon}, {lat}) within {r} m, limit {limit}"
        );
    }
}

#[test]
fn position_index_queries_match_brute_force_before_and_after_rebuilds() {
    let mut rng = StdRng::seed_from_u64(15);
    let keys = 4_000;
    let mut idx = PositionIndex::new();
    for k in 0..keys {
        let (lon, lat) = random_position(&mut rng);
        idx.update(k, lon, lat);
    }
    // Everything dirty, no tree yet.
    check_positions_against_brute_force(&mut rng, &idx, keys);
    idx.rebuild();
    check_positions_against_brute_force(&mut rng, &idx, keys);
    for round in 0..4 {
        // Many moves (most keys dirty), some removals, then maintain in half of the rounds.
        for _ in 0..3_000 {
            let k = rng.random_range(0..keys);
            if rng.random_bool(0.1) {
                idx.remove(k);
            } else {
                let (lon, lat) = random_position(&mut rng);
                idx.update(k, lon, lat);
            }
        }
        check_positions_against_brute_force(&mut rng, &idx, keys);
        if round % 2 == 0 {
            idx.maintain();
            check_positions_against_brute_force(&mut rng, &idx, keys);
        }
        // A few moves after the rebuild (few keys dirty: the dirty list is scanned).
        for _ in 0..50 {
            let k = rng.random_range(0..keys);
            let (lon, lat) = random_position(&mut rng);
            idx.update(k, lon, lat);
        }
        check_positions_against_brute_force(&mut rng, &idx, keys);
    }
    assert_eq!(
        idx.len(),
        (0..keys).filter(|&k| idx.get(k).is_some()).count()
    );
}

// ----- distances to boundaries and routes ---------------------------------------------------

/// The smallest geodesic distance from `p` to the segment `a`–`b` (straight in degrees,
/// longitudes unwrapped): 32 samples, then a ternary search around the best one.
fn brute_segment_distance(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    let at = |t: f64| distance_m(p, (wrap_lon(a.0 + t * (b.0 - a.0)), a.1 + t * (b.1 - a.1)));
    let n = 32;
    let best = (0..=n)
        .min_by(|&i, &j| at(i as f64 / n as f64).total_cmp(&at(j as f64 / n as f64)))
        .unwrap();
    let (mut lo, mut hi) = (
        ((best as f64 - 1.0) / n as f64).max(0.0),
        ((best as f64 + 1.0) / n as f64).min(1.0),
    );
    // (2/3)^45 of 1/16 of the segment: far below a millimetre.
    for _ in 0..45 {
        let (m1, m2) = (lo + (hi - lo) / 3.0, hi - (hi - lo) / 3.0);
        if at(m1) <= at(m2) { hi = m2 } else { lo = m1 }
    }
    let t = (lo + hi) / 2.0;
    (at(t), t)
}

/// A segment `((lon, lat), (lon, lat))`, longitudes unwrapped.
type Segment = ((f64, f64), (f64, f64));

/// `(distance, segment, t)` of the nearest point among segments, by [`brute_segment_distance`],
/// skipping segments whose latitude range alone puts them beyond the nearest vertex.
fn brute_nearest_on(p: (f64, f64), segments: &[Segment]) -> (f64, usize, f64) {
    let vertex_bound = segments
        .iter()
        .map(|(a, _)| distance_m(p, (wrap_lon(a.0), a.1)))
        .chain(
            segments
                .last()
                .map(|(_, b)| distance_m(p, (wrap_lon(b.0), b.1))),
        )
        .fold(f64::INFINITY, f64::min);
    let mut best = (f64::INFINITY, usize::MAX, 0.0);
    for (i, (a, b)) in segments.iter().enumerate() {
        let gap = if p.1 < a.1.min(b.1) {
            a.1.min(b.1) - p.1
        } else {
            (p.1 - a.1.max(b.1)).max(0.0)
        };
        if gap.to_radians() * MIN_RADIUS_M > vertex_bound {
            continue;
        }
        let (d, t) = brute_segment_distance(p, *a, *b);
        if d < best.0 {
            best = (d, i, t);
        }
    }
    best
}

#[test]
fn polygon_boundary_distance_matches_a_dense_search_of_every_edge() {
    let mut rng = StdRng::seed_from_u64(16);
    for case in 0..30 {
        let lon = if case % 5 == 0 {
            179.99
        } else {
            rng.random_range(-170.0..170.0)
        };
        let lat = rng.random_range(-70.0..70.0);
        let size = rng.random_range(0.002..0.05);
        let reference = star_polygon(&mut rng, lon, lat, size);
        let fence = Geofence::new(def(
            "p".into(),
            Shape::Area(MultiPolygon(vec![wrapped(&reference)])),
        ))
        .unwrap();
        for _ in 0..12 {
            let (x, y) = (
                lon + rng.random_range(-2.0..2.0) * size,
                lat + rng.random_range(-2.0..2.0) * size,
            );
            let p = (wrap_lon(x), y);
            let expected = std::iter::once(reference.exterior())
                .chain(reference.interiors())
                .map(|r| {
                    let segs: Vec<_> =
                        r.0.windows(2)
                            .map(|w| ((w[0].x, w[0].y), (w[1].x, w[1].y)))
                            .collect();
                    brute_nearest_on(p, &segs).0
                })
                .fold(f64::INFINITY, f64::min);
            let got = fence.boundary_distance_m(p.0, p.1);
            assert!(
                (got - expected).abs() <= 1e-4 * expected + 1e-3,
                "case {case} {p:?}: {got} vs {expected}"
            );
        }
    }
}

#[test]
fn corridor_contains_and_boundary_distance_match_a_dense_search() {
    let mut rng = StdRng::seed_from_u64(17);
    for case in 0..16 {
        let lon = if case % 4 == 0 {
            179.95
        } else {
            rng.random_range(-170.0..170.0)
        };
        let lat = rng.random_range(-70.0..70.0);
        let n = rng.random_range(2..40);
        let pts: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                (
                    lon + i as f64 * 0.004,
                    lat + rng.random_range(-0.003..0.003),
                )
            })
            .collect();
        let width = rng.random_range(50.0..800.0);
        let line: LineString<f64> = pts
            .iter()
            .map(|&(x, y)| Coord { x: wrap_lon(x), y })
            .collect();
        let fence = Geofence::new(def(
            "k".into(),
            Shape::Corridor {
                line,
                corridor_m: width,
            },
        ))
        .unwrap();
        let env = fence.envelopes();
        for _ in 0..16 {
            let b = env[rng.random_range(0..env.len())];
            let p = (rng.random_range(b[0]..=b[2]), rng.random_range(b[1]..=b[3]));
            let segs: Vec<_> = pts.windows(2).map(|w| (w[0], w[1])).collect();
            let d = brute_nearest_on(p, &segs).0;
            let got = fence.boundary_distance_m(p.0, p.1);
            assert!(
                (got - (d - width).abs()).abs() <= 1e-4 * d + 1e-3,
                "case {case} {p:?}: {got} vs |{d} - {width}|"
            );
            if (d - width).abs() > 1e-4 * d + 1e-3 {
                assert_eq!(
                    fence.contains(p.0, p.1),
                    d <= width,
                    "case {case} {p:?}: d {d}, width {width}"
                );
            }
        }
    }
}

/// A route walked in small steps, with the distance travelled to each step measured piece by
/// piece: an oracle for "how far along the route is this point" that shares nothing with
/// `Route`'s own cumulative lengths. Segments are straight in unwrapped `(lon, lat)`, like the
/// route's; pieces are at most `step_m` long.
struct DenseWalk {
    /// `(lon, lat)`, longitudes unwrapped.
    pts: Vec<(f64, f64)>,
    /// Metres from the start to each point.
    along_m: Vec<f64>,
}

impl DenseWalk {
    fn new(vertices: &[(f64, f64)], step_m: f64) -> DenseWalk {
        let w = |p: (f64, f64)| (wrap_lon(p.0), p.1);
        let mut pts = vec![vertices[0]];
        let mut along_m = vec![0.0];
        for seg in vertices.windows(2) {
            let (a, b) = (seg[0], seg[1]);
            let n = (distance_m(w(a), w(b)) / step_m).ceil().max(1.0) as usize;
            for k in 1..=n {
                let t = k as f64 / n as f64;
                let p = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
                let last = *pts.last().unwrap();
                along_m.push(along_m.last().unwrap() + distance_m(w(last), w(p)));
                pts.push(p);
            }
        }
        DenseWalk { pts, along_m }
    }

    /// `(distance, along)` of the walk's point nearest to `q`: every point ranked by a flat
    /// metric, the few nearly nearest measured on the ellipsoid.
    fn nearest(&self, q: (f64, f64)) -> (f64, f64) {
        let k = q.1.to_radians().cos();
        let flat = |p: (f64, f64)| {
            let dx = wrap_lon(p.0 - q.0) * k;
            let dy = p.1 - q.1;
            (dx * dx + dy * dy).sqrt() * 111_195.0
        };
        let flats: Vec<f64> = self.pts.iter().map(|&p| flat(p)).collect();
        let best_flat = flats.iter().copied().fold(f64::INFINITY, f64::min);
        let mut best = (f64::INFINITY, 0.0);
        for (i, &f) in flats.iter().enumerate() {
            if f <= best_flat * 1.01 + 10.0 {
                let d = distance_m(q, (wrap_lon(self.pts[i].0), self.pts[i].1));
                if d < best.0 {
                    best = (d, self.along_m[i]);
                }
            }
        }
        best
    }

    /// Distance from `q` to the walk's point `along` metres from the start (interpolated).
    fn distance_at(&self, q: (f64, f64), along: f64) -> f64 {
        let i = self
            .along_m
            .partition_point(|&a| a <= along)
            .clamp(1, self.pts.len() - 1);
        let (a0, a1) = (self.along_m[i - 1], self.along_m[i]);
        let t = if a1 > a0 {
            ((along - a0) / (a1 - a0)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (p, r) = (self.pts[i - 1], self.pts[i]);
        distance_m(q, (wrap_lon(p.0 + t * (r.0 - p.0)), p.1 + t * (r.1 - p.1)))
    }
}

#[test]
fn route_projection_matches_a_dense_search_of_the_line() {
    // Off-route distance against a dense search of every segment; along-route distance against
    // a walk along the route in steps of at most 2 m. Tolerance for `along_m`: half a step, plus
    // 1e-3 of the distance off the route (the projection's local frame is not the ellipsoid),
    // plus 5 cm. Where two parts of the route are equally near (within 5 cm + 1e-4 of the
    // distance), either answer is right: the point `along_m` names must then be that near.
    const STEP_M: f64 = 2.0;
    let mut rng = StdRng::seed_from_u64(18);
    let (mut checked, mut ties) = (0, 0);
    for case in 0..24 {
        let crosses = case % 4 == 0;
        let (mut x, mut y) = (
            if crosses {
                179.8
            } else {
                rng.random_range(-170.0..170.0)
            },
            rng.random_range(-60.0..60.0),
        );
        // Routes of more than 16 segments use the tree search, shorter ones a scan.
        let n = if case % 2 == 0 {
            rng.random_range(2..17)
        } else {
            rng.random_range(18..60)
        };
        let mut pts = vec![(x, y)];
        for _ in 1..n {
            x += rng.random_range(0.0..0.004);
            y += rng.random_range(-0.003..0.003);
            pts.push((x, y));
        }
        let route = Route::new(
            pts.iter()
                .map(|&(x, y)| Coord { x: wrap_lon(x), y })
                .collect(),
        )
        .unwrap();
        let walk = DenseWalk::new(&pts, STEP_M);
        assert!(
            (walk.along_m.last().unwrap() - route.length_m()).abs()
                <= 1e-6 * route.length_m() + 1e-3,
            "case {case}: length {} vs walked {}",
            route.length_m(),
            walk.along_m.last().unwrap()
        );
        let segs: Vec<_> = pts.windows(2).map(|w| (w[0], w[1])).collect();
        for _ in 0..10 {
            let i = rng.random_range(0..pts.len());
            let q = (
                wrap_lon(pts[i].0 + rng.random_range(-0.01..0.01)),
                pts[i].1 + rng.random_range(-0.01..0.01),
            );
            let got = route.project(q.0, q.1);
            let (d, _, _) = brute_nearest_on(q, &segs);
            assert!(
                (got.off_route_m - d).abs() <= 2e-4 * d + 1e-3,
                "case {case} {q:?}: {got:?} vs {d}"
            );
            let (d_walk, along_walk) = walk.nearest(q);
            assert!(
                d_walk >= d - 1e-3 && d_walk <= d + STEP_M,
                "case {case} {q:?}: walk {d_walk} vs {d}"
            );
            checked += 1;
            let tol = STEP_M / 2.0 + 1e-3 * d + 0.05;
            if (got.along_m - along_walk).abs() <= tol {
                continue;
            }
            let d_at = walk.distance_at(q, got.along_m);
            assert!(
                (d_at - got.off_route_m).abs() <= 1e-4 * d + 0.05,
                "case {case} {q:?}: along {} but the walk's nearest is at {along_walk} \
                 ({d_walk} m off), and the route {d_at} m away there",
                got.along_m
            );
            ties += 1;
        }
    }
    assert_eq!(checked, 240);
    assert!(
        ties <= 12,
        "{ties} ties of {checked}: the oracle checks too little"
    );
}
