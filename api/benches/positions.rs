//! The province box of `GET /v1/positions` (10,000 devices, ~3 MB of GeoJSON): what the
//! handler does after authentication (query the read side, build and serialize the
//! FeatureCollection) against serializing the very same FeatureCollection once with
//! serde_json from a ready `serde_json::Value`, in the same run.
//!
//! `cargo bench -p landport-api --bench positions`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use landport_tracker::{LiveView, Reading, Tracker, TrackerSettings};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const DEVICES: usize = 10_000;
const BBOX: [f64; 4] = [122.0, 40.0, 124.0, 42.0];

fn view() -> LiveView {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut tracker = Tracker::new(TrackerSettings::default());
    let mut out = Vec::new();
    for i in 0..DEVICES {
        let slot = tracker.device_slot("bench", &format!("truck-{i}"));
        let r = Reading::at(1_795_400_000_000)
            .with_position(rng.random_range(122.0..124.0), rng.random_range(40.0..42.0))
            .with_speed(rng.random_range(0.0..90.0))
            .with_accuracy(5.0)
            .with_temp(-18.0);
        tracker.apply(slot, &r, r.ts_ms, &mut out);
    }
    tracker.view(&LiveView::default())
}

fn positions(c: &mut Criterion) {
    let live = std::sync::Arc::new(view());
    let body = landport_api::positions_json(&live, Some("bench"), BBOX);
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value["features"].as_array().unwrap().len(), DEVICES);
    let mut g = c.benchmark_group("positions_province");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.sample_size(30);
    g.bench_function("handler_body_10k", |b| {
        b.iter(|| black_box(landport_api::positions_json(&live, Some("bench"), BBOX).len()))
    });
    g.bench_function("serde_json_value_to_vec_10k", |b| {
        b.iter(|| black_box(serde_json::to_vec(&value).unwrap().len()))
    });
    g.finish();
}

criterion_group!(benches, positions);
criterion_main!(benches);
