//! The InfluxDB sink against a real InfluxDB 1.x (the v1 write API): what arrives, exactly;
//! an outage; a restart of the sink; a line the server refuses; the spool bound.
//!
//! Needs `influxd` (Debian package `influxdb`); skipped without it unless `CI` is set.

mod support_influx;

use std::time::Duration;

use landport_sinks::influx::TELEMETRY_CURSOR;
use landport_store::{Store, TelemetryRow};
use landport_tracker::{Event, EventType, Reading};
use serde_json::json;
use support_influx::{
    RunningSink, Server, commit, count, expected_points, influxql, now_ms, points_written, post_v1,
    readings, telemetry_points, test_config, v1, wait_caught_up, wait_for,
};

const CATCH_UP: Duration = Duration::from_secs(60);

fn row(tenant: &str, device: &str, shipment: Option<&str>, reading: Reading) -> TelemetryRow {
    TelemetryRow {
        tenant: tenant.into(),
        device: device.into(),
        shipment: shipment.map(Into::into),
        reading,
        received_ms: now_ms(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_and_events_arrive_with_their_tags_fields_and_time() {
    let Some(server) = Server::influxdb() else {
        return;
    };
    let url = server.url();
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    let base = now_ms() - 3_600_000;

    let mut full = Reading::at(base)
        .with_position(4.895168, 52.370216)
        .with_speed(81.5)
        .with_accuracy(3.25)
        .with_temp(-18.5)
        .with_weight(1250.0);
    full.fix.as_mut().unwrap().heading_deg = Some(271.0);
    full.battery_pct = Some(87.5);
    let mut battery_only = Reading::at(base + 3);
    battery_only.battery_pct = Some(12.0);
    let special = [
        row("acme", "truck-1", Some("shp 1,a=b"), full),
        row(
            "acme",
            "truck-2",
            None,
            Reading::at(base + 1).with_position(5.0, 51.0),
        ),
        // same device id, another tenant: another series
        row(
            "globex",
            "truck-1",
            None,
            Reading::at(base + 2).with_temp(4.0),
        ),
        row("globex", "sensor-9", None, battery_only),
        // no field at all: no point
        row("globex", "quiet", None, Reading::at(base + 4).with_seq(7)),
    ];
    store.commit(&special, &[]).unwrap();
    let mut bulk = readings("acme", 40, 1_000, base + 10_000);
    bulk.extend(readings("globex", 25, 1_000, base + 10_000));
    commit(&mut store, &bulk);
    let entered = Event::new(
        EventType::GeofenceEntered,
        "acme",
        "truck-1",
        Some("shp 1,a=b"),
        Some("depot-7"),
        base + 5,
        0,
        json!({"name": "Depot \"Nord\"", "radius_m": 150.0}),
    );
    let offline = Event::new(
        EventType::DeviceOffline,
        "globex",
        "sensor-9",
        None,
        None,
        base + 6,
        0,
        json!({}),
    );
    store
        .commit(&[], &[entered.clone(), offline.clone()])
        .unwrap();

    let mut config = test_config(&url, v1("landport_test"));
    config.batch_max_lines = 300.try_into().unwrap();
    let sink = RunningSink::start(config, tmp.path());
    wait_caught_up(&store, CATCH_UP).await;

    let db = "landport_test";
    // Every point, with its tags and fields, and nothing else; each line written once (a
    // second write of a point would leave the points as they are, not the server's count).
    let sent: Vec<TelemetryRow> = special.iter().chain(&bulk).cloned().collect();
    assert_eq!(telemetry_points(&url, db, "").await, expected_points(&sent));
    assert_eq!(count(&url, db, "events", "id").await, 2);
    assert_eq!(points_written(&url).await, 2_004 + 2);

    // one point, exactly: tags (escaped on the way), every field, the time in ms
    let answer = influxql(
        &url,
        db,
        &format!("SELECT * FROM telemetry WHERE tenant = 'acme' AND device = 'truck-1' AND time = {base}ms"),
    )
    .await;
    let series = &answer["results"][0]["series"][0];
    let columns: Vec<&str> = series["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let values = series["values"].as_array().unwrap();
    assert_eq!(values.len(), 1, "{answer}");
    let point: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .map(|c| c.to_string())
        .zip(values[0].as_array().unwrap().iter().cloned())
        .collect();
    // (InfluxDB's JSON writes 271.0 as 271)
    let expected = json!({
        "time": base, "tenant": "acme", "device": "truck-1", "shipment": "shp 1,a=b",
        "lat": 52.370216, "lon": 4.895168, "speed_kmh": 81.5, "heading_deg": 271,
        "accuracy_m": 3.25, "temp_c": -18.5, "weight_kg": 1250, "battery_pct": 87.5,
    });
    assert_eq!(serde_json::Value::Object(point), expected);

    // the reading without fields made no point
    let quiet = influxql(&url, db, "SELECT * FROM telemetry WHERE device = 'quiet'").await;
    assert!(quiet["results"][0]["series"].is_null(), "{quiet}");

    // events: tags, the id and the data as JSON
    let answer = influxql(
        &url,
        db,
        "SELECT id, data, device, geofence, shipment, tenant, type FROM events WHERE type = 'geofence.entered'",
    )
    .await;
    let values = &answer["results"][0]["series"][0]["values"][0];
    assert_eq!(values[0], json!(base + 5), "{answer}");
    assert_eq!(values[1], json!(entered.id));
    let data: serde_json::Value = serde_json::from_str(values[2].as_str().unwrap()).unwrap();
    assert_eq!(data, entered.data);
    assert_eq!(
        &values.as_array().unwrap()[3..],
        &[
            json!("truck-1"),
            json!("depot-7"),
            json!("shp 1,a=b"),
            json!("acme"),
            json!("geofence.entered")
        ]
    );

    assert_eq!(sink.metrics.sink_lines.get(), 2_004 + 2);
    assert_eq!(sink.metrics.sink_errors.get(), 0);
    assert_eq!(sink.metrics.sink_queue_depth.get(), 0);
    assert_eq!(sink.stats.refused_lines(), 0);
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_every_point_arrives_once() {
    let Some(mut server) = Server::influxdb() else {
        return;
    };
    let url = server.url();
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    let base = now_ms() - 3_600_000;
    let mut rows = readings("acme", 50, 1_000, base);
    commit(&mut store, &rows);
    let sink = RunningSink::start(test_config(&url, v1("outage")), tmp.path());
    wait_caught_up(&store, CATCH_UP).await;
    assert_eq!(
        telemetry_points(&url, "outage", "").await,
        expected_points(&rows)
    );
    assert_eq!(points_written(&url).await, 1_000);

    server.stop();
    let during = readings("acme", 50, 5_000, base + 100_000);
    commit(&mut store, &during);
    rows.extend(during);
    wait_for("failed writes", Duration::from_secs(30), || {
        let errors = sink.metrics.sink_errors.get();
        std::future::ready(if errors > 0 {
            Ok(())
        } else {
            Err("no error yet".to_owned())
        })
    })
    .await;
    wait_for("the queue depth", Duration::from_secs(30), || {
        let depth = sink.metrics.sink_queue_depth.get();
        std::future::ready(if depth == 5_000 {
            Ok(())
        } else {
            Err(format!("depth {depth}"))
        })
    })
    .await;
    let cursor = store.cursor(TELEMETRY_CURSOR).unwrap();
    assert_eq!(cursor, 1_000, "the cursor waits for InfluxDB");

    server.start();
    wait_caught_up(&store, CATCH_UP).await;
    assert_eq!(
        telemetry_points(&url, "outage", "").await,
        expected_points(&rows)
    );
    assert_eq!(
        points_written(&url).await,
        5_000,
        "since the restart: the backlog, each line once"
    );
    assert_eq!(sink.metrics.sink_lines.get(), 6_000);
    assert_eq!(sink.stats.dropped_rows(), 0);
    assert_eq!(sink.metrics.sink_queue_depth.get(), 0);
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sink_resumes_from_its_cursor_without_sending_again() {
    let Some(server) = Server::influxdb() else {
        return;
    };
    let url = server.url();
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    let base = now_ms() - 3_600_000;
    let mut rows = readings("acme", 20, 2_000, base);
    commit(&mut store, &rows);

    let first = RunningSink::start(test_config(&url, v1("restart")), tmp.path());
    wait_caught_up(&store, CATCH_UP).await;
    let sent_first = first.metrics.sink_lines.get();
    first.stop().await;
    assert_eq!(sent_first, 2_000);

    let more = readings("acme", 20, 1_000, base + 100_000);
    commit(&mut store, &more);
    rows.extend(more);
    let second = RunningSink::start(test_config(&url, v1("restart")), tmp.path());
    wait_caught_up(&store, CATCH_UP).await;
    assert_eq!(
        second.metrics.sink_lines.get(),
        1_000,
        "only the new rows are sent"
    );
    assert_eq!(
        telemetry_points(&url, "restart", "").await,
        expected_points(&rows)
    );
    assert_eq!(points_written(&url).await, 3_000, "no line sent twice");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_influxdb_refuses_is_skipped_and_the_rest_delivered() {
    let Some(server) = Server::influxdb() else {
        return;
    };
    let url = server.url();
    let base = now_ms() - 3_600_000;
    // Someone else wrote `temp_c` as an integer into the same shard: from now on InfluxDB
    // refuses every float `temp_c` there with 400 "field type conflict".
    post_v1(
        &url,
        "poison",
        &format!("telemetry,device=legacy,tenant=old temp_c=5i {base}\n"),
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    let mut rows = readings("acme", 10, 1_000, base + 1);
    for i in [17, 480, 481, 999] {
        rows[i].reading.temp_c = Some(3.5);
    }
    commit(&mut store, &rows);

    let mut config = test_config(&url, v1("poison"));
    config.batch_max_lines = 250.try_into().unwrap();
    let sink = RunningSink::start(config, tmp.path());
    wait_caught_up(&store, CATCH_UP).await;
    assert_eq!(sink.stats.refused_lines(), 4);
    let poisoned = [17, 480, 481, 999];
    let delivered: Vec<TelemetryRow> = (rows.iter().enumerate())
        .filter(|(i, _)| !poisoned.contains(i))
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(
        telemetry_points(&url, "poison", "WHERE tenant = 'acme'").await,
        expected_points(&delivered)
    );
    // Each good line counted once as sent, though InfluxDB saw some twice: it writes the good
    // lines of a body it refuses ("partial write"), and the sink sends them again while
    // splitting the body to find the bad ones (the same values: nothing changes).
    assert_eq!(sink.metrics.sink_lines.get(), 996);
    assert!(sink.metrics.sink_errors.get() >= 4);
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_bound_gives_up_the_oldest_rows_while_influxdb_is_down() {
    let Some(mut server) = Server::influxdb() else {
        return;
    };
    let url = server.url();
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    let base = now_ms() - 3_600_000;
    server.stop();
    // about 1,000 readings' worth
    let mut config = test_config(&url, v1("spool"));
    config.spool_max_bytes = 100_000;
    let sink = RunningSink::start(config, tmp.path());
    let rows = readings("acme", 10, 3_000, base);
    commit(&mut store, &rows);
    wait_for("rows given up", Duration::from_secs(30), || {
        let dropped = sink.stats.dropped_rows();
        std::future::ready(if dropped > 0 {
            Ok(())
        } else {
            Err("none yet".to_owned())
        })
    })
    .await;
    assert!(sink.metrics.sink_queue_depth.get() <= 1_000);

    server.start();
    wait_caught_up(&store, CATCH_UP).await;
    let dropped = sink.stats.dropped_rows();
    assert!((2_000..3_000).contains(&dropped), "{dropped}");
    // the newest rows made it, the oldest did not, and none was sent twice
    assert_eq!(
        telemetry_points(&url, "spool", "").await,
        expected_points(&rows[dropped as usize..])
    );
    assert_eq!(points_written(&url).await, 3_000 - dropped);
    sink.stop().await;
}

/// SPEC 11 keeps readings with the same `ts` and different `seq` apart; so does InfluxDB, with
/// `seq` as a tag (one series each): neither overwrites the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_with_one_time_and_different_seqs_are_two_points() {
    let Some(server) = Server::influxdb() else {
        return;
    };
    let url = server.url();
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    let ts = now_ms() - 60_000;
    let rows = [
        row(
            "acme",
            "truck-1",
            None,
            Reading::at(ts).with_temp(4.0).with_seq(1),
        ),
        row(
            "acme",
            "truck-1",
            None,
            Reading::at(ts).with_temp(5.0).with_seq(2),
        ),
        // no seq, another time: no seq tag
        row("acme", "truck-1", None, Reading::at(ts + 1).with_temp(6.0)),
    ];
    assert_eq!(store.commit(&rows, &[]).unwrap().readings, 3);
    let sink = RunningSink::start(test_config(&url, v1("landport_seq")), tmp.path());
    wait_caught_up(&store, CATCH_UP).await;

    let answer = influxql(
        &url,
        "landport_seq",
        "SELECT time, seq, temp_c FROM telemetry WHERE device = 'truck-1' ORDER BY time",
    )
    .await;
    let values = answer["results"][0]["series"][0]["values"].clone();
    let mut got: Vec<serde_json::Value> = values.as_array().cloned().unwrap_or_default();
    got.sort_by_key(|v| v.to_string());
    assert_eq!(
        got,
        [
            json!([ts, "1", 4]),
            json!([ts, "2", 5]),
            json!([ts + 1, null, 6])
        ],
        "{answer}"
    );
    assert_eq!(sink.stats.refused_lines(), 0);
    sink.stop().await;
}
