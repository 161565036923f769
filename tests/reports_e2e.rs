//! Reports end to end through the real binary (SPEC 14): a reefer's telemetry published over
//! MQTT to Landport's own endpoint, then its stops, trips, geofence visits and shipment record
//! read back over HTTP as JSON, CSV (read back with the csv crate) and PDF (its text by
//! `pdftotext`), with the `[reports]` section of the config file in force.

mod support;
#[path = "../ingest/tests/support_mqtt/mod.rs"]
mod support_mqtt;

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::QoS;
use serde_json::{Value, json};
use support::{Landport, free_port, http, wait_for};
use support_mqtt::publish;

const ADMIN: &str = "e2e-admin-key-for-the-reports-0123456789";
/// 2026-11-24T08:00:00Z.
const T0: i64 = 1_795_507_200_000;
const MIN: i64 = 60_000;
const LON0: f64 = 122.99;
const LAT0: f64 = 41.10;

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A reading a minute: 20 min parked at the depot, 20 min north at 36 km/h, 30 min parked
/// (the cargo warms to 11 °C in minutes 50-54), 10 min north to the customer.
fn readings() -> Value {
    let mut v = Vec::new();
    for m in 0..=80i64 {
        let north_m = match m {
            0..=20 => 0.0,
            21..=40 => (m - 20) as f64 * 600.0,
            41..=70 => 12_000.0,
            _ => 12_000.0 + (m - 70) as f64 * 600.0,
        };
        let temp = if (50..=54).contains(&m) { 11.0 } else { 4.0 };
        v.push(json!({"ts": T0 + m * MIN, "lat": LAT0 + north_m / 111_000.0, "lon": LON0,
                      "temp_c": temp, "speed_kmh": if matches!(m, 21..=40 | 71..=80) { 36.0 } else { 0.0 }}));
    }
    Value::Array(v)
}

async fn get(addr: SocketAddr, path: &str, key: &str) -> (u16, String, Vec<u8>) {
    let res = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, res.bytes().await.unwrap().to_vec())
}

fn pdf_text(bytes: &[u8], dir: &std::path::Path) -> String {
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    let path = dir.join("record.pdf");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("pdftotext")
        .args(["-layout"])
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (Debian's poppler-utils) must be installed");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reefers_day_over_mqtt_reads_back_as_stops_trips_visits_and_a_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mqtt = free_port();
    let config = Landport::config(
        dir,
        addr,
        mqtt,
        true,
        &format!("[auth]\nadmin_key = \"{ADMIN}\"\n[reports]\nmax_days = 2\ngap_seconds = 600\n"),
    );
    let _lp = Landport::start(dir, &config, addr, mqtt);
    // Anonymous MQTT clients publish as the tenant `default` (mqtt.anonymous_tenant).
    let (s, _) = http(
        addr,
        "POST",
        "/v1/tenants",
        Some(ADMIN),
        Some(&json!({"id": "default", "name": "Default"})),
    );
    assert_eq!(s, 201);
    let (_, key) = http(addr, "POST", "/v1/tenants/default/keys", Some(ADMIN), None);
    let key = key["key"].as_str().unwrap().to_owned();
    let k = Some(key.as_str());
    let (s, b) = http(
        addr,
        "POST",
        "/v1/devices",
        k,
        Some(&json!({"id": "reefer-1", "name": "Reefer 1", "kind": "truck"})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = http(
        addr,
        "POST",
        "/v1/geofences",
        k,
        Some(&json!({"type": "Feature", "id": "yard",
        "geometry": {"type": "Point", "coordinates": [LON0, LAT0 + 12_000.0 / 111_000.0]},
        "properties": {"name": "Yard", "radius_m": 400, "confirm_seconds": 0}})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = http(
        addr,
        "POST",
        "/v1/shipments",
        k,
        Some(&json!({"id": "SHP-9",
        "device": "reefer-1", "reference": "PO 9", "origin": {"lat": LAT0, "lon": LON0},
        "destination": {"lat": LAT0 + 18_000.0 / 111_000.0, "lon": LON0},
        "temp_range_c": [2.0, 8.0]})),
    );
    assert_eq!(s, 201, "{b}");

    // the day as one store-and-forward batch
    publish(
        mqtt,
        "landport/default/reefer-1/telemetry",
        vec![readings().to_string().into_bytes()],
        QoS::AtLeastOnce,
    )
    .await;
    let record = wait_for("the shipment to arrive", Duration::from_secs(30), || {
        let (s, v) = http(addr, "GET", "/v1/shipments/SHP-9/report", k, None);
        (s == 200 && v["arrived_at"].is_string()).then_some(v)
    });
    assert_eq!(record["verdict"], "excursion", "{record:#}");
    assert_eq!(record["excursions"][0]["begin"], iso(T0 + 50 * MIN));
    assert_eq!(record["excursions"][0]["end"], iso(T0 + 55 * MIN));
    assert_eq!(record["excursions"][0]["peak_c"], 11.0);
    assert_eq!(
        record["eta_history"][0]["predicted_at"],
        record["departed_at"]
    );

    let range = format!("from={}&to={}", iso(T0), iso(T0 + 90 * MIN));
    let (s, v) = http(
        addr,
        "GET",
        &format!("/v1/devices/reefer-1/stops?{range}"),
        k,
        None,
    );
    assert_eq!(s, 200, "{v}");
    let stops = v["stops"].as_array().unwrap();
    assert_eq!(stops.len(), 2, "{v}");
    assert_eq!(stops[1]["geofence"], "yard");
    assert_eq!(stops[1]["duration_s"], 1800.0);
    let (_, v) = http(
        addr,
        "GET",
        &format!("/v1/devices/reefer-1/trips?{range}"),
        k,
        None,
    );
    let trips = v["trips"].as_array().unwrap();
    assert_eq!(trips.len(), 2, "{v}");
    assert_eq!(trips[0]["max_speed_kmh"], 36.0);
    let (_, v) = http(
        addr,
        "GET",
        &format!("/v1/reports/geofence-visits?{range}"),
        k,
        None,
    );
    assert_eq!(v["visits"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["visits"][0]["geofence"], "yard");

    // CSV: the stops again, and the record's readings
    let (s, ct, body) = get(
        addr,
        &format!("/v1/devices/reefer-1/stops?{range}&format=csv"),
        &key,
    )
    .await;
    assert_eq!((s, ct.as_str()), (200, "text/csv; charset=utf-8"));
    let mut r = csv::Reader::from_reader(body.as_slice());
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        ["start", "end", "lat", "lon", "duration_s", "geofence"]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), stops.len());
    assert_eq!(&rows[1][0], stops[1]["start"].as_str().unwrap());
    let (s, _, body) = get(addr, "/v1/shipments/SHP-9/report?format=csv", &key).await;
    assert_eq!(s, 200);
    let mut r = csv::Reader::from_reader(body.as_slice());
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.iter().filter(|r| &r[5] == "false").count(), 5);

    // PDF
    let (s, ct, body) = get(addr, "/v1/shipments/SHP-9/report?format=pdf", &key).await;
    assert_eq!((s, ct.as_str()), (200, "application/pdf"));
    let text = pdf_text(&body, dir);
    for needle in [
        "Shipment record SHP-9",
        "Verdict: EXCURSION",
        &iso(T0 + 50 * MIN),
        &iso(T0 + 55 * MIN),
        "max 11.0",
        "PO 9",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }

    // the config's [reports] max_days = 2 is in force
    let (s, v) = http(
        addr,
        "GET",
        &format!(
            "/v1/devices/reefer-1/trips?from={}&to={}",
            iso(T0),
            iso(T0 + 3 * 86_400_000)
        ),
        k,
        None,
    );
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2 days"),
        "{v}"
    );
}
