//! Store throughput: readings committed per second, in batches of 1,000 readings with 10
//! events, into a store on disk (WAL, `synchronous=NORMAL`). Two fleets: 100 devices sending 10
//! readings each per batch, and 1,000 devices sending one each. The second is slower: each
//! device's readings extend its own run of the `(tenant, device, ts)` index, so a commit
//! writes about one page (2 KiB) per distinct device to the WAL.
//!
//! `cargo bench -p landport-store --bench store`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use landport_store::{Store, TelemetryRow};
use landport_tracker::{Event, EventType, Reading};

const BATCH_READINGS: usize = 1_000;
const BATCH_EVENTS: usize = 10;

/// Batch `b`: `devices` devices send `BATCH_READINGS / devices` readings each, one a second,
/// with a position, speed, accuracy and temperature; the timestamps never repeat across
/// batches.
fn batch(b: u64, devices: usize) -> (Vec<TelemetryRow>, Vec<Event>) {
    let base = 1_795_000_000_000 + b as i64 * 10_000;
    let rows = (0..BATCH_READINGS)
        .map(|i| {
            let device = i % devices;
            let step = (i / devices) as i64;
            TelemetryRow {
                tenant: "acme".into(),
                device: format!("truck-{device:04}"),
                shipment: device.is_multiple_of(2).then(|| format!("SHP-{device}")),
                reading: Reading::at(base + step * 1_000)
                    .with_seq(b * 10 + step as u64)
                    .with_position(122.0 + device as f64 * 1e-3, 41.0 + step as f64 * 1e-4)
                    .with_speed(60.0)
                    .with_accuracy(4.5)
                    .with_temp(-18.0),
                received_ms: base + 20_000,
            }
        })
        .collect();
    let events = (0..BATCH_EVENTS)
        .map(|i| {
            Event::new(
                EventType::GeofenceEntered,
                "acme",
                &format!("truck-{i:04}"),
                None,
                Some("yard"),
                base + i as i64,
                0,
                serde_json::json!({}),
            )
        })
        .collect();
    (rows, events)
}

fn commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(BATCH_READINGS as u64));
    for devices in [100, 1_000] {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let mut next = 0u64;
        let name = format!("commit_1000_readings_10_events/{devices}_devices");
        group.bench_function(name, |bench| {
            bench.iter_batched(
                || {
                    next += 1;
                    batch(next, devices)
                },
                |(rows, events)| {
                    let committed = store.commit(&rows, &events).unwrap();
                    assert_eq!(committed.readings, BATCH_READINGS);
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, commit);
criterion_main!(benches);
