//! Timings of the geometry hot paths, to choose and check the data structures. Ignored by
//! default (a timing is not a pass/fail test; criterion benches in `tracker/benches` are the
//! contract). Run with:
//!
//! ```text
//! cargo test -p landport-tracker --release --test geometry_perf -- --ignored --nocapture --test-threads 1
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use geo_types::{Coord, LineString, MultiPolygon, Point, Polygon};
use landport_tracker::fence_index::FenceIndex;
use landport_tracker::geodesy;
use landport_tracker::geofence::{Geofence, GeofenceDef, Shape};
use landport_tracker::positions::PositionIndex;
use landport_tracker::route::Route;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Nanoseconds per call of `f` over `inputs`, best of five rounds.
fn ns_per<T>(inputs: &[T], mut f: impl FnMut(&T)) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for x in inputs {
            f(x);
        }
        best = best.min(t.elapsed());
    }
    best.as_nanos() as f64 / inputs.len() as f64
}

fn def(id: String, shape: Shape) -> GeofenceDef {
    GeofenceDef {
        id,
        name: String::new(),
        kind: "warehouse".into(),
        shape,
        confirm_seconds: None,
        dwell_seconds: None,
    }
}

/// A star-shaped ring of `n` vertices around `(lon, lat)`, `r_deg` across.
fn blob(rng: &mut SmallRng, lon: f64, lat: f64, r_deg: f64, n: usize) -> Polygon<f64> {
    let ring: LineString<f64> = (0..=n)
        .map(|i| {
            let a = (i % n) as f64 / n as f64 * std::f64::consts::TAU;
            let r = r_deg * rng.random_range(0.6..1.0);
            Coord {
                x: lon + r * a.cos() / lat.to_radians().cos(),
                y: lat + r * a.sin(),
            }
        })
        .collect();
    // Closing vertex must equal the first.
    let mut ring = ring;
    let first = ring.0[0];
    *ring.0.last_mut().unwrap() = first;
    Polygon::new(ring, vec![])
}

fn points_in(rng: &mut SmallRng, b: [f64; 4], n: usize) -> Vec<(f64, f64)> {
    (0..n)
        .map(|_| (rng.random_range(b[0]..=b[2]), rng.random_range(b[1]..=b[3])))
        .collect()
}

#[test]
#[ignore]
fn distances() {
    let mut rng = SmallRng::seed_from_u64(1);
    let pairs: Vec<_> = (0..20_000)
        .map(|_| {
            let a: (f64, f64) = (
                rng.random_range(-180.0..180.0),
                rng.random_range(-60.0..60.0),
            );
            (
                a,
                (
                    a.0 + rng.random_range(-0.05..0.05),
                    a.1 + rng.random_range(-0.05..0.05),
                ),
            )
        })
        .collect();
    let k = ns_per(&pairs, |&(a, b)| {
        black_box(geodesy::distance_m(black_box(a), black_box(b)));
    });
    let f = ns_per(&pairs, |&(a, b)| {
        black_box(geodesy::fast_distance_m(black_box(a), black_box(b)));
    });
    println!("distance_m (Karney, ~5 km): {k:.0} ns; fast_distance_m: {f:.1} ns");
}

#[test]
#[ignore]
fn geofence_point_tests() {
    use geo::Intersects;
    let mut rng = SmallRng::seed_from_u64(2);
    for n in [20, 200, 2_000] {
        let poly = blob(&mut rng, 10.0, 50.0, 0.01, n);
        let fence = Geofence::new(def(
            "p".into(),
            Shape::Area(MultiPolygon(vec![poly.clone()])),
        ))
        .unwrap();
        let pts = points_in(&mut rng, fence.envelopes()[0], 100_000);
        let ours = ns_per(&pts, |&(x, y)| {
            black_box(fence.contains(black_box(x), black_box(y)));
        });
        let geo = ns_per(&pts[..20_000], |&(x, y)| {
            black_box(poly.intersects(&Coord { x, y }));
        });
        let bd = ns_per(&pts[..20_000], |&(x, y)| {
            black_box(fence.boundary_distance_m(black_box(x), black_box(y)));
        });
        let t = Instant::now();
        let _ = black_box(Geofence::new(def(
            "p".into(),
            Shape::Area(MultiPolygon(vec![poly])),
        )));
        println!(
            "{n}-vertex polygon: contains {ours:.1} ns (geo Intersects {geo:.1} ns), \
             boundary_distance_m {bd:.0} ns, validate+prepare {:?}",
            t.elapsed()
        );
    }
    // A traced outline: many short edges, as a detailed port or yard boundary has.
    for n in [2_000, 10_000] {
        let ring: LineString<f64> = (0..=n)
            .map(|i| {
                let a = (i % n) as f64 / n as f64 * std::f64::consts::TAU;
                let r = 0.01 * (1.0 + 0.2 * (9.0 * a).sin() + 0.05 * (53.0 * a).cos());
                Coord {
                    x: 10.0 + r * a.cos() / 50f64.to_radians().cos(),
                    y: 50.0 + r * a.sin(),
                }
            })
            .collect();
        let t = Instant::now();
        let fence = Geofence::new(def(
            "s".into(),
            Shape::Area(MultiPolygon(vec![Polygon::new(ring, vec![])])),
        ))
        .unwrap();
        let prepare = t.elapsed();
        let pts = points_in(&mut rng, fence.envelopes()[0], 100_000);
        let ours = ns_per(&pts, |&(x, y)| {
            black_box(fence.contains(black_box(x), black_box(y)));
        });
        let bd = ns_per(&pts[..20_000], |&(x, y)| {
            black_box(fence.boundary_distance_m(black_box(x), black_box(y)));
        });
        println!(
            "{n}-vertex traced outline: contains {ours:.1} ns, boundary_distance_m {bd:.0} ns, validate+prepare {prepare:?}"
        );
    }
    let circle = Geofence::new(def(
        "c".into(),
        Shape::Circle {
            center: Point::new(10.0, 50.0),
            radius_m: 500.0,
        },
    ))
    .unwrap();
    let pts = points_in(&mut rng, circle.envelopes()[0], 100_000);
    let c = ns_per(&pts, |&(x, y)| {
        black_box(circle.contains(black_box(x), black_box(y)));
    });
    let line: LineString<f64> = (0..21)
        .map(|i| Coord {
            x: 10.0 + i as f64 * 0.01,
            y: 50.0 + (i % 2) as f64 * 0.005,
        })
        .collect();
    let corridor = Geofence::new(def(
        "k".into(),
        Shape::Corridor {
            line,
            corridor_m: 300.0,
        },
    ))
    .unwrap();
    let pts = points_in(&mut rng, corridor.envelopes()[0], 100_000);
    let k = ns_per(&pts, |&(x, y)| {
        black_box(corridor.contains(black_box(x), black_box(y)));
    });
    println!("circle contains {c:.1} ns; 20-segment corridor contains {k:.1} ns");
}

#[test]
#[ignore]
fn fence_index_at_10k_fences() {
    let mut rng = SmallRng::seed_from_u64(3);
    let region = [-10.0, 35.0, 30.0, 60.0];
    let defs: Vec<(u32, GeofenceDef)> = (0..10_000)
        .map(|i| {
            let (lon, lat) = (
                rng.random_range(region[0]..region[2]),
                rng.random_range(region[1]..region[3]),
            );
            let r = rng.random_range(0.002..0.05);
            (
                i,
                def(
                    format!("f{i}"),
                    Shape::Area(MultiPolygon(vec![blob(&mut rng, lon, lat, r, 20)])),
                ),
            )
        })
        .collect();
    let t = Instant::now();
    let mut index = FenceIndex::new();
    for (_, d) in defs.iter().cloned() {
        index.upsert(d).unwrap();
    }
    let upserts = t.elapsed();
    let t = Instant::now();
    let restored = FenceIndex::from_defs(defs).unwrap();
    let restore = t.elapsed();
    let pts = points_in(&mut rng, region, 200_000);
    let mut out = Vec::with_capacity(64);
    let cand = ns_per(&pts, |&(x, y)| {
        out.clear();
        restored.candidates_at(black_box(x), black_box(y), &mut out);
        black_box(&out);
    });
    let cand_inc = ns_per(&pts, |&(x, y)| {
        out.clear();
        index.candidates_at(black_box(x), black_box(y), &mut out);
        black_box(&out);
    });
    let full = ns_per(&pts, |&(x, y)| {
        out.clear();
        restored.fences_containing(black_box(x), black_box(y), &mut out);
        black_box(&out);
    });
    println!(
        "10k fences: candidates_at {cand:.0} ns (bulk-loaded tree), {cand_inc:.0} ns (inserted one by one), \
         fences_containing {full:.0} ns; 10k upserts {upserts:?}, from_defs {restore:?}"
    );
}

#[test]
#[ignore]
fn position_index() {
    let mut rng = SmallRng::seed_from_u64(4);
    for n in [100_000u32, 1_000_000] {
        let mut idx = PositionIndex::new();
        for k in 0..n {
            idx.update(
                k,
                rng.random_range(-10.0..30.0),
                rng.random_range(35.0..60.0),
            );
        }
        let t = Instant::now();
        idx.rebuild();
        let rebuild = t.elapsed();
        let moves: Vec<(u32, f64, f64)> = (0..1_000_000)
            .map(|_| {
                (
                    rng.random_range(0..n),
                    rng.random_range(-10.0..30.0),
                    rng.random_range(35.0..60.0),
                )
            })
            .collect();
        let mut moved = idx.clone();
        let upd = ns_per(&moves, |&(k, x, y)| moved.update(black_box(k), x, y));
        let centres = points_in(&mut rng, [-9.0, 36.0, 29.0, 59.0], 2_000);
        let bbox_clean = ns_per(&centres, |&(x, y)| {
            black_box(idx.in_bbox([x, y, x + 0.5, y + 0.5]));
        });
        let bbox_dirty = ns_per(&centres, |&(x, y)| {
            black_box(moved.in_bbox([x, y, x + 0.5, y + 0.5]));
        });
        let near = ns_per(&centres, |&(x, y)| {
            black_box(idx.nearest(x, y, 5_000.0, 10));
        });
        println!(
            "{n} positions: update {upd:.1} ns, rebuild {rebuild:?}, in_bbox(0.5°) {:.0} µs clean / {:.0} µs with {} dirty, \
             nearest(5 km) {:.0} µs",
            bbox_clean / 1e3,
            bbox_dirty / 1e3,
            moved.dirty_len(),
            near / 1e3
        );
    }
}

#[test]
#[ignore]
fn route_projection() {
    let mut rng = SmallRng::seed_from_u64(5);
    for n in [50usize, 10_000] {
        let line: LineString<f64> = (0..n)
            .map(|i| {
                let s = i as f64 * 5.0 / n as f64;
                Coord {
                    x: 5.0 + s,
                    y: 50.0 + (s * 2.0).sin() * 0.3,
                }
            })
            .collect();
        let near: Vec<(f64, f64)> = (0..20_000)
            .map(|_| {
                let c = line.0[rng.random_range(0..line.0.len())];
                (
                    c.x + rng.random_range(-0.004..0.004),
                    c.y + rng.random_range(-0.003..0.003),
                )
            })
            .collect();
        let route = Route::new(line).unwrap();
        let pts = points_in(&mut rng, [5.0, 49.7, 10.0, 50.3], 20_000);
        let p = ns_per(&pts, |&(x, y)| {
            black_box(route.project(black_box(x), black_box(y)));
        });
        let q = ns_per(&near, |&(x, y)| {
            black_box(route.project(black_box(x), black_box(y)));
        });
        println!(
            "{n}-vertex route: project {q:.0} ns within ~300 m of it, {p:.0} ns up to 33 km off"
        );
    }
}
