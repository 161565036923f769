//! The InfluxDB sink's line protocol encoder, alone (no store, no server): lines per second
//! into a reused buffer, beside the same lines written with `write!` (std's float and integer
//! formatting) as the baseline it was measured against.
//!
//! `cargo bench -p landport-sinks --bench sink`. The sink against a real server, and against
//! posting pre-built lines, is `tests/sink_bench.rs` (ignored test).

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use landport_sinks::influx::line::{encode_event, encode_reading};
use landport_store::TelemetryRow;
use landport_tracker::{Event, EventType, Reading};

const ROWS: usize = 10_000;

/// Readings as a fleet sends them: position, speed, heading, accuracy, battery; a third with
/// cargo temperature, a third on a shipment.
fn rows() -> Vec<TelemetryRow> {
    (0..ROWS)
        .map(|i| {
            let mut reading = Reading::at(1_767_225_600_000 + i as i64 * 1_000)
                .with_position(4.0 + i as f64 * 1.37e-5, 52.0 - i as f64 * 0.91e-5)
                .with_speed(40.0 + (i % 80) as f64 * 0.5)
                .with_accuracy(3.0 + (i % 7) as f64);
            reading.fix.as_mut().unwrap().heading_deg = Some((i * 7 % 360) as f64);
            reading.battery_pct = Some(100.0 - (i % 100) as f64 * 0.25);
            if i % 3 == 0 {
                reading.temp_c = Some(-18.0 + (i % 10) as f64 * 0.1);
            }
            TelemetryRow {
                tenant: format!("tenant-{}", i % 10),
                device: format!("truck-{:05}", i % 1_000),
                shipment: (i % 3 == 1).then(|| format!("shp-{:06}", i % 5_000)),
                reading,
                received_ms: 0,
            }
        })
        .collect()
}

/// The baseline: the same lines through `write!` (assumes ids need no escaping).
fn encode_with_write_macro(out: &mut String, row: &TelemetryRow) {
    let r = &row.reading;
    let fix = r.fix.as_ref();
    let _ = write!(out, "telemetry,device={}", row.device);
    if let Some(s) = &row.shipment {
        let _ = write!(out, ",shipment={s}");
    }
    let _ = write!(out, ",tenant={}", row.tenant);
    let mut sep = ' ';
    for (key, value) in [
        ("lat", fix.map(|f| f.lat)),
        ("lon", fix.map(|f| f.lon)),
        ("speed_kmh", fix.and_then(|f| f.speed_kmh)),
        ("heading_deg", fix.and_then(|f| f.heading_deg)),
        ("accuracy_m", fix.and_then(|f| f.accuracy_m)),
        ("temp_c", r.temp_c),
        ("weight_kg", r.weight_kg),
        ("battery_pct", r.battery_pct),
    ] {
        if let Some(v) = value {
            let _ = write!(out, "{sep}{key}={v:?}");
            sep = ',';
        }
    }
    let _ = writeln!(out, " {}", r.ts_ms);
}

fn bench(c: &mut Criterion) {
    let rows = rows();
    let mut group = c.benchmark_group("sink_encode");
    group.throughput(Throughput::Elements(ROWS as u64));
    let mut buf = String::with_capacity(2 << 20);
    group.bench_function("readings_itoa_zmij", |b| {
        b.iter(|| {
            buf.clear();
            for row in &rows {
                encode_reading(&mut buf, black_box(row));
            }
            black_box(buf.len())
        })
    });
    group.bench_function("readings_write_macro_baseline", |b| {
        b.iter(|| {
            buf.clear();
            for row in &rows {
                encode_with_write_macro(&mut buf, black_box(row));
            }
            black_box(buf.len())
        })
    });
    let events: Vec<Event> = (0..ROWS)
        .map(|i| {
            Event::new(
                EventType::GeofenceEntered,
                "acme",
                &format!("truck-{i}"),
                Some("shp-1"),
                Some("depot-7"),
                1_767_225_600_000 + i as i64,
                0,
                serde_json::json!({"geofence_name": "Depot Nord", "dwell_s": i}),
            )
        })
        .collect();
    group.bench_function("events", |b| {
        b.iter(|| {
            buf.clear();
            for event in &events {
                encode_event(&mut buf, black_box(event));
            }
            black_box(buf.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
