//! Geofence validation is O(n log n) in the vertex count (a sweep line): big valid rings are
//! accepted and big invalid ones refused quickly, and a stored fence is prepared without
//! being validated again. Times are printed, not asserted tightly (SPEC 9: benchmarks, not
//! timed tests); the bounds below only catch a return to quadratic time, which took ~1 s at
//! 10,000 vertices. Measure with
//! `cargo test --release -p landport-tracker --test geofence_validation -- --nocapture`.

use std::time::{Duration, Instant};

use geo_types::{Coord, LineString, MultiPolygon, Polygon, coord};
use landport_tracker::geofence::Geofence;
use landport_tracker::{GeofenceDef, Shape};

fn def(poly: Polygon<f64>) -> GeofenceDef {
    GeofenceDef {
        id: "big".into(),
        name: "big".into(),
        kind: String::new(),
        shape: Shape::Area(MultiPolygon(vec![poly])),
        confirm_seconds: None,
        dwell_seconds: None,
    }
}

/// A star-shaped ring of `n` vertices around (10, 50), radius 0.05 to 0.1 degrees (simple).
fn star(n: usize) -> Vec<Coord<f64>> {
    let mut v: Vec<Coord<f64>> = (0..n)
        .map(|i| {
            let a = i as f64 / n as f64 * std::f64::consts::TAU;
            let r = 0.05 + 0.05 * ((i * 7919) % 1000) as f64 / 1000.0;
            coord! { x: 10.0 + r * a.cos(), y: 50.0 + r * a.sin() }
        })
        .collect();
    v.push(v[0]);
    v
}

/// A comb: `teeth` long thin horizontal teeth one above the other, so that the sweep line
/// (vertical, moving along x) crosses nearly every edge at once, and every edge's box meets
/// every other's (the worst case of grid or R-tree based tests).
fn comb(teeth: usize) -> Vec<Coord<f64>> {
    let w = 1.0 / teeth as f64;
    let mut v = vec![coord! { x: 0.0, y: 0.0 }];
    for t in 0..teeth {
        let y = t as f64 * w;
        v.push(coord! { x: 1.0, y: y });
        v.push(coord! { x: 1.0, y: y + w * 0.5 });
        v.push(coord! { x: 0.1, y: y + w * 0.5 });
        v.push(coord! { x: 0.1, y: y + w });
    }
    v.push(coord! { x: 0.0, y: 1.0 });
    v.push(v[0]);
    v
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let out = f();
    let took = started.elapsed();
    println!("{what}: {took:?}");
    (out, took)
}

/// Generous: debug builds on a loaded two-core machine are some 20x slower than release.
const BOUND: Duration = Duration::from_secs(20);

#[test]
fn big_simple_rings_are_accepted_in_n_log_n_time() {
    for n in [10_000, 100_000] {
        let ring = Polygon::new(LineString(star(n)), vec![]);
        let (fence, took) = timed(&format!("star of {n} vertices"), || {
            Geofence::new(def(ring))
        });
        assert!(fence.is_ok(), "{:?}", fence.err());
        assert!(took < BOUND);
    }
    let ring = Polygon::new(LineString(comb(2_500)), vec![]);
    let (fence, took) = timed("comb of 10,002 vertices", || Geofence::new(def(ring)));
    assert!(fence.is_ok(), "{:?}", fence.err());
    assert!(took < BOUND);
}

#[test]
fn big_self_intersecting_rings_are_refused_quickly() {
    for n in [10_000, 50_000] {
        let mut v = star(n);
        // Swap two vertices far apart: their edges now cross the ring.
        v.swap(10, n / 2);
        let ring = Polygon::new(LineString(v), vec![]);
        let (fence, took) = timed(&format!("crossed star of {n} vertices"), || {
            Geofence::new(def(ring))
        });
        let e = fence.expect_err("refused").to_string();
        assert!(e.contains("self-intersection"), "{e}");
        assert!(took < BOUND);
    }
}

#[test]
fn holes_are_checked_against_the_shell_and_each_other() {
    let square = |x: f64, y: f64, w: f64| {
        LineString::from(vec![(x, y), (x + w, y), (x + w, y + w), (x, y + w), (x, y)])
    };
    // 2,000 small holes in a big shell: valid.
    let holes: Vec<_> = (0..2_000)
        .map(|i| {
            square(
                0.01 + (i % 45) as f64 * 0.02,
                0.01 + (i / 45) as f64 * 0.02,
                0.01,
            )
        })
        .collect();
    let poly = Polygon::new(square(0.0, 0.0, 1.0), holes.clone());
    let (fence, _) = timed("shell with 2,000 holes", || Geofence::new(def(poly)));
    assert!(fence.is_ok(), "{:?}", fence.err());
    // A hole inside another hole.
    let poly = Polygon::new(
        square(0.0, 0.0, 1.0),
        vec![square(0.1, 0.1, 0.5), square(0.2, 0.2, 0.1)],
    );
    let e = Geofence::new(def(poly)).err().unwrap().to_string();
    assert!(e.contains("hole 1 is inside hole 0"), "{e}");
    // A hole touching the shell at a point: refused (stricter than OGC, see the docs).
    let poly = Polygon::new(
        square(0.0, 0.0, 1.0),
        vec![LineString::from(vec![
            (0.0, 0.0),
            (0.5, 0.2),
            (0.2, 0.5),
            (0.0, 0.0),
        ])],
    );
    assert!(Geofence::new(def(poly)).is_err());
}

#[test]
fn a_stored_fence_is_prepared_without_validating_it_again() {
    let ring = Polygon::new(LineString(star(100_000)), vec![]);
    let d = def(ring);
    let (checked, full) = timed("validate + prepare 100,000", || Geofence::new(d.clone()));
    let (trusted, prep) = timed("prepare only 100,000", || Geofence::trusted(d));
    let (checked, trusted) = (checked.unwrap(), trusted.unwrap());
    assert!(prep < full, "{prep:?} vs {full:?}");
    for (x, y) in [(10.0, 50.0), (10.2, 50.0), (10.049, 50.0)] {
        assert_eq!(checked.contains(x, y), trusted.contains(x, y));
    }
}
