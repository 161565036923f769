//! SPEC 9: the InfluxDB sink moves rows from the store into InfluxDB at no less than 90 % of
//! the rate of posting the same lines, pre-built, to the same server. A measurement, not a
//! timed test, so it is ignored by default:
//!
//! ```text
//! cargo test -p landport-sinks --release --test sink_bench -- --ignored --nocapture
//! ```
//!
//! Both sides write the same readings (`ROWS`, 1,000 devices, 7 fields each) into a database
//! of their own on one InfluxDB 1.x, one request of `BATCH_LINES` lines at a time, through the
//! same HTTP client ([`InfluxWriter`]). The raw side's bodies are encoded before its clock
//! starts; the sink's clock runs from its start until every line is accepted, so it includes
//! reading the store, encoding and moving the cursor. The rounds alternate the order, since
//! the server slows down as it fills, and each run starts once
//! the server is idle again (its compactions of the previous run done).

mod support_influx;

use std::time::{Duration, Instant};

use bytes::Bytes;
use landport_sinks::influx::line::encode_reading;
use landport_sinks::influx::{InfluxWriter, SinkConfig};
use landport_store::{Store, TelemetryRow};
use landport_tracker::Reading;
use support_influx::{RunningSink, Server, now_ms, v1};

const ROWS: usize = 200_000;
const DEVICES: usize = 1_000;
const BATCH_LINES: usize = 5_000;
const ROUNDS: usize = 4;

fn row(i: usize, base: i64) -> TelemetryRow {
    let mut reading = Reading::at(base + (i / DEVICES) as i64 * 1_000)
        .with_position(4.0 + i as f64 * 1.37e-6, 52.0 - i as f64 * 0.91e-6)
        .with_speed(40.0 + (i % 80) as f64 * 0.5)
        .with_accuracy(3.0 + (i % 7) as f64);
    reading.fix.as_mut().unwrap().heading_deg = Some((i * 7 % 360) as f64);
    reading.battery_pct = Some(100.0 - (i % 100) as f64 * 0.25);
    reading.temp_c = Some(-18.0 + (i % 10) as f64 * 0.1);
    TelemetryRow {
        tenant: format!("tenant-{}", i % 10),
        device: format!("truck-{:05}", i % DEVICES),
        shipment: None,
        reading,
        received_ms: now_ms(),
    }
}

/// Posts the bodies one after another; returns the elapsed time.
async fn post_raw(url: &str, database: &str, bodies: &[Bytes]) -> Duration {
    let writer = InfluxWriter::new(url, &v1(database), Duration::from_secs(60)).unwrap();
    writer.ensure_database().await.unwrap();
    let start = Instant::now();
    for body in bodies {
        writer.write(body.clone()).await.unwrap();
    }
    start.elapsed()
}

/// Runs a sink from an empty cursor until every row is in; returns the elapsed time.
async fn run_sink(url: &str, database: &str, store_dir: &std::path::Path) -> Duration {
    let batch = BATCH_LINES.try_into().unwrap();
    let mut config = SinkConfig::new(url, v1(database), batch, Duration::from_secs(1), 1 << 30);
    config.request_timeout = Duration::from_secs(60);
    let start = Instant::now();
    let sink = RunningSink::start(config, store_dir);
    // polled finely: the clock should stop when the last line is in, not up to a poll later
    let deadline = start + Duration::from_secs(600);
    while sink.metrics.sink_lines.get() < ROWS as u64 {
        assert!(Instant::now() < deadline, "the sink did not finish");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    assert_eq!(sink.metrics.sink_errors.get(), 0);
    sink.stop().await;
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
async fn sink_throughput_vs_raw_post() {
    let Some(server) = Server::influxdb() else {
        return;
    };
    let url = server.url();
    let base = now_ms() - 86_400_000;
    let rows: Vec<TelemetryRow> = (0..ROWS).map(|i| row(i, base)).collect();
    let mut bodies = Vec::new();
    for chunk in rows.chunks(BATCH_LINES) {
        let mut text = String::new();
        for r in chunk {
            assert!(encode_reading(&mut text, r));
        }
        bodies.push(Bytes::from(text));
    }
    let bytes: usize = bodies.iter().map(Bytes::len).sum();
    println!(
        "{ROWS} readings, {DEVICES} devices, {} requests of {BATCH_LINES} lines, {:.1} MB",
        bodies.len(),
        bytes as f64 / 1e6
    );

    let mut raw_total = Duration::ZERO;
    let mut sink_total = Duration::ZERO;
    for round in 0..ROUNDS {
        // a fresh store for each sink run: its cursor starts at 0
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        for chunk in rows.chunks(BATCH_LINES) {
            store.commit(chunk, &[]).unwrap();
        }
        drop(store);
        let raw_db = format!("raw_{round}");
        let sink_db = format!("sink_{round}");
        let settle = || server.settle(Duration::from_secs(60));
        settle();
        let (raw, sink) = if round % 2 == 0 {
            let raw = post_raw(&url, &raw_db, &bodies).await;
            settle();
            (raw, run_sink(&url, &sink_db, tmp.path()).await)
        } else {
            let sink = run_sink(&url, &sink_db, tmp.path()).await;
            settle();
            (post_raw(&url, &raw_db, &bodies).await, sink)
        };
        let rate = |d: Duration| ROWS as f64 / d.as_secs_f64();
        println!(
            "round {round}: raw post {:>9.0} lines/s ({raw:.2?}), sink {:>9.0} rows/s ({sink:.2?}), ratio {:.1} %",
            rate(raw),
            rate(sink),
            100.0 * raw.as_secs_f64() / sink.as_secs_f64()
        );
        raw_total += raw;
        sink_total += sink;
    }
    let ratio = raw_total.as_secs_f64() / sink_total.as_secs_f64();
    println!(
        "total: raw post {:.0} lines/s, sink {:.0} rows/s, sink/raw = {:.1} % (SPEC 9: >= 90 %)",
        (ROUNDS * ROWS) as f64 / raw_total.as_secs_f64(),
        (ROUNDS * ROWS) as f64 / sink_total.as_secs_f64(),
        100.0 * ratio
    );
}
