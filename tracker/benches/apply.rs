//! Throughput of `Tracker::apply` (no decoding): readings per second on one core.
//!
//! Fleets of 100,000 and 1,000,000 trucks drive around a 6 x 6 degree region (roughly
//! Liaoning) holding 10,000 polygon geofences (octagons of ~300-800 m radius, about the size of
//! a warehouse yard or a port terminal); each reading moves one truck ~17 m (60 km/h at 1 Hz)
//! with a 5 m accuracy. SPEC section 9 targets: >= 2M/s at 100k devices, >= 1M/s at 1M.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use geo_types::{LineString, MultiPolygon, Polygon};
use landport_tracker::{GeofenceDef, LiveView, Reading, Shape, Tracker, TrackerSettings};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use std::hint::black_box;

const REGION: [f64; 4] = [120.0, 38.0, 126.0, 44.0];
const FENCES: usize = 10_000;
const BATCH: u64 = 10_000;

fn octagon(lon: f64, lat: f64, radius_m: f64) -> Polygon<f64> {
    let dlat = radius_m / 111_320.0;
    let dlon = dlat / lat.to_radians().cos();
    let mut pts: Vec<(f64, f64)> = (0..8)
        .map(|i| {
            let a = i as f64 * std::f64::consts::TAU / 8.0;
            (lon + dlon * a.cos(), lat + dlat * a.sin())
        })
        .collect();
    pts.push(pts[0]);
    Polygon::new(LineString::from(pts), vec![])
}

struct Fleet {
    tracker: Tracker,
    slots: Vec<landport_tracker::DeviceSlot>,
    /// (lon, lat, dlon, dlat) per truck: position and per-reading step.
    state: Vec<[f64; 4]>,
    next: usize,
    ts_ms: i64,
}

fn fleet(devices: usize) -> Fleet {
    let mut rng = SmallRng::seed_from_u64(42);
    let mut tracker = Tracker::new(TrackerSettings::default());
    for i in 0..FENCES {
        let lon = rng.random_range(REGION[0]..REGION[2]);
        let lat = rng.random_range(REGION[1]..REGION[3]);
        let def = GeofenceDef {
            id: format!("fence-{i}"),
            name: format!("Fence {i}"),
            kind: "warehouse".into(),
            shape: Shape::Area(MultiPolygon(vec![octagon(
                lon,
                lat,
                rng.random_range(300.0..800.0),
            )])),
            confirm_seconds: None,
            dwell_seconds: None,
        };
        tracker.upsert_geofence("bench", def).unwrap();
    }
    let slots = (0..devices)
        .map(|i| tracker.device_slot("bench", &format!("truck-{i}")))
        .collect();
    let state = (0..devices)
        .map(|_| {
            let heading = rng.random_range(0.0..std::f64::consts::TAU);
            let step_deg = 17.0 / 111_320.0;
            [
                rng.random_range(REGION[0]..REGION[2]),
                rng.random_range(REGION[1]..REGION[3]),
                step_deg * heading.cos() * 1.3,
                step_deg * heading.sin(),
            ]
        })
        .collect();
    let mut f = Fleet {
        tracker,
        slots,
        state,
        next: 0,
        ts_ms: 1_795_400_000_000,
    };
    // One lap so every truck has a fix (first-fix handling is not the steady state).
    let mut out = Vec::new();
    f.run(devices as u64, &mut out);
    f
}

impl Fleet {
    fn run(&mut self, n: u64, out: &mut Vec<landport_tracker::Event>) {
        for _ in 0..n {
            let i = self.next;
            self.next = (i + 1) % self.slots.len();
            if self.next == 0 {
                self.ts_ms += 1_000;
            }
            let s = &mut self.state[i];
            s[0] += s[2];
            s[1] += s[3];
            if !(REGION[0]..REGION[2]).contains(&s[0]) {
                s[2] = -s[2];
            }
            if !(REGION[1]..REGION[3]).contains(&s[1]) {
                s[3] = -s[3];
            }
            let r = Reading::at(self.ts_ms)
                .with_position(s[0], s[1])
                .with_speed(60.0)
                .with_accuracy(5.0);
            self.tracker.apply(self.slots[i], &r, self.ts_ms, out);
            out.clear();
        }
    }
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    for devices in [100_000usize, 1_000_000] {
        let mut f = fleet(devices);
        let mut out = Vec::new();
        g.bench_function(BenchmarkId::new("devices_10k_fences", devices), |b| {
            b.iter(|| {
                f.run(BATCH, &mut out);
                black_box(&out);
            })
        });
    }
    g.finish();
}

/// What one live-map viewer's positions tick costs the pipeline's task with 100,000 devices
/// of which 1,000 moved since the last tick: `changed_since` against the copy of every device
/// (`devices`) it replaced (session 2).
fn positions_tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("positions_tick");
    g.sample_size(20);
    let mut f = fleet(100_000);
    let mut out = Vec::new();
    let mark = f.tracker.change_seq();
    f.run(1_000, &mut out);
    g.bench_function("devices_all_100k", |b| {
        b.iter(|| black_box(f.tracker.devices("bench").len()))
    });
    g.bench_function("changed_since_1k_of_100k", |b| {
        b.iter(|| black_box(f.tracker.changed_since("bench", mark).len()))
    });
    g.finish();
}

/// What publishing the read side costs the pipeline's task with 100,000 devices: a view built
/// from the previous one after 2,500 readings (a tenth of a second at 25,000 readings/s), beside
/// a view built from nothing (every device copied) and the 2,500 readings' own `apply` cost.
fn read_side(c: &mut Criterion) {
    let mut g = c.benchmark_group("read_side");
    g.sample_size(20);
    let mut f = fleet(100_000);
    let mut out = Vec::new();
    let mut view = f.tracker.view(&LiveView::default());
    g.bench_function("view_after_2500_readings_of_100k", |b| {
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            for _ in 0..iters {
                f.run(2_500, &mut out);
                let start = std::time::Instant::now();
                view = f.tracker.view(&view);
                spent += start.elapsed();
                black_box(view.seq());
            }
            spent
        })
    });
    g.bench_function("apply_2500_readings_of_100k", |b| {
        b.iter(|| f.run(2_500, &mut out))
    });
    g.bench_function("view_from_nothing_100k", |b| {
        b.iter(|| black_box(f.tracker.view(&LiveView::default()).seq()))
    });
    g.finish();
}

/// Baseline measured in the same run: the bare cost of what a naive tracker does per reading,
/// one R-tree point query over the 10,000 fence envelopes plus the exact tests, with nothing
/// else. `apply` should cost about this or less, with every rule running.
fn baseline(c: &mut Criterion) {
    let mut rng = SmallRng::seed_from_u64(42);
    let mut index = landport_tracker::fence_index::FenceIndex::new();
    for i in 0..FENCES {
        let lon = rng.random_range(REGION[0]..REGION[2]);
        let lat = rng.random_range(REGION[1]..REGION[3]);
        let def = GeofenceDef {
            id: format!("fence-{i}"),
            name: format!("Fence {i}"),
            kind: "warehouse".into(),
            shape: Shape::Area(MultiPolygon(vec![octagon(
                lon,
                lat,
                rng.random_range(300.0..800.0),
            )])),
            confirm_seconds: None,
            dwell_seconds: None,
        };
        index.upsert(def).unwrap();
    }
    let points: Vec<(f64, f64)> = (0..BATCH)
        .map(|_| {
            (
                rng.random_range(REGION[0]..REGION[2]),
                rng.random_range(REGION[1]..REGION[3]),
            )
        })
        .collect();
    let mut out = Vec::new();
    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    g.bench_function("rtree_point_query_10k_fences", |b| {
        b.iter(|| {
            for &(lon, lat) in &points {
                out.clear();
                index.fences_containing(lon, lat, &mut out);
                black_box(&out);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, baseline, apply, positions_tick, read_side);
criterion_main!(benches);
