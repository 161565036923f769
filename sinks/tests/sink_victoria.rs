//! The InfluxDB sink's v2 path (`/api/v2/write`, posted with reqwest) against a real
//! VictoriaMetrics, which accepts that API and names each series `{measurement}_{field}` with
//! the tags as labels.
//!
//! Needs `victoria-metrics` (Debian package `victoria-metrics`); skipped without it unless `CI`
//! is set.

mod support_influx;

use std::time::Duration;

use landport_sinks::influx::WriteApi;
use landport_store::{Store, TelemetryRow};
use landport_tracker::{Event, EventType, Reading};
use serde_json::{Value, json};
use support_influx::{
    RunningSink, Server, commit, now_ms, readings, test_config, vm_export, wait_caught_up, wait_for,
};

/// The samples of every series matching `selector`, once there are `expected` of them.
async fn samples(url: &str, selector: &str, expected: usize) -> Vec<Value> {
    wait_for(
        &format!("{expected} samples of {selector}"),
        Duration::from_secs(30),
        || async {
            let series = vm_export(url, selector).await;
            let n: usize = series
                .iter()
                .map(|s| s["values"].as_array().map_or(0, Vec::len))
                .sum();
            if n == expected {
                Ok(series)
            } else {
                Err(format!("{n} samples"))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v2_api_delivers_readings_and_events_to_victoria_metrics() {
    let Some(server) = Server::victoria_metrics() else {
        return;
    };
    let url = server.url();
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    let base = now_ms() - 3_600_000;

    let mut full = Reading::at(base)
        .with_position(4.895168, 52.370216)
        .with_speed(81.5)
        .with_temp(-18.5);
    full.battery_pct = Some(87.5);
    let special = [
        TelemetryRow {
            tenant: "acme".into(),
            device: "truck-1".into(),
            shipment: Some("shp-1".into()),
            reading: full,
            received_ms: now_ms(),
        },
        TelemetryRow {
            tenant: "globex".into(),
            device: "truck-1".into(),
            shipment: None,
            reading: Reading::at(base + 1).with_weight(900.0),
            received_ms: now_ms(),
        },
    ];
    store.commit(&special, &[]).unwrap();
    commit(&mut store, &readings("bulk", 30, 1_200, base + 10_000));
    let event = Event::new(
        EventType::GeofenceExited,
        "acme",
        "truck-1",
        Some("shp-1"),
        Some("depot-7"),
        base + 5,
        0,
        json!({"dwell_s": 42}),
    );
    store.commit(&[], &[event]).unwrap();

    let api = WriteApi::V2 {
        org: "landport".into(),
        bucket: "telemetry".into(),
        token: "test-token".into(),
    };
    let mut config = test_config(&url, api);
    config.batch_max_lines = 500.try_into().unwrap();
    let sink = RunningSink::start(config, tmp.path());
    wait_caught_up(&store, Duration::from_secs(60)).await;
    assert_eq!(sink.metrics.sink_errors.get(), 0);
    assert_eq!(sink.metrics.sink_lines.get(), 1_203);

    // every reading with a position, as telemetry_lat samples
    samples(&url, "telemetry_lat", 1_201).await;

    // one point, exactly: labels from the tags, the value, the time in ms
    let acme = samples(&url, r#"{__name__=~"telemetry_.*",tenant="acme"}"#, 5).await;
    let mut got: Vec<(String, f64, i64)> = acme
        .iter()
        .map(|s| {
            let labels = &s["metric"];
            assert_eq!(labels["device"], "truck-1", "{s}");
            assert_eq!(labels["shipment"], "shp-1", "{s}");
            (
                labels["__name__"].as_str().unwrap().to_owned(),
                s["values"][0].as_f64().unwrap(),
                s["timestamps"][0].as_i64().unwrap(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("telemetry_battery_pct".to_owned(), 87.5, base),
            ("telemetry_lat".to_owned(), 52.370216, base),
            ("telemetry_lon".to_owned(), 4.895168, base),
            ("telemetry_speed_kmh".to_owned(), 81.5, base),
            ("telemetry_temp_c".to_owned(), -18.5, base),
        ]
    );
    let globex = samples(&url, r#"{__name__=~"telemetry_.*",tenant="globex"}"#, 1).await;
    assert_eq!(globex[0]["metric"]["__name__"], "telemetry_weight_kg");
    assert!(globex[0]["metric"].get("shipment").is_none());

    // events: VictoriaMetrics keeps the series of the string fields (as 0) with their labels
    let events = samples(&url, "events_id", 1).await;
    let labels = &events[0]["metric"];
    assert_eq!(labels["type"], "geofence.exited");
    assert_eq!(labels["tenant"], "acme");
    assert_eq!(labels["geofence"], "depot-7");
    assert_eq!(labels["shipment"], "shp-1");
    assert_eq!(events[0]["timestamps"][0].as_i64(), Some(base + 5));
    sink.stop().await;
}
