//! End to end through the real binary: a tenant set up over HTTP, telemetry over MQTT, the
//! results read back over HTTP and server-sent events, and API changes surviving a restart.

mod support;
#[path = "../ingest/tests/support_mqtt/mod.rs"]
mod support_mqtt;

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::QoS;
use serde_json::{Value, json};
use support::{Landport, free_port, http, metric, sse, wait_for};
use support_mqtt::publish_as;

const ADMIN: &str = "e2e-admin-key-0123456789abcdefghijk";
const T0: i64 = 1_795_400_000_000;

fn native(ts_ms: i64, lon: f64, lat: f64) -> Vec<u8> {
    format!(r#"{{"ts":{ts_ms},"lat":{lat},"lon":{lon},"speed_kmh":50}}"#).into_bytes()
}

fn warehouse() -> Value {
    json!({"type": "Feature", "id": "wh",
           "geometry": {"type": "Polygon", "coordinates": [[[122.99, 40.99], [123.01, 40.99],
                        [123.01, 41.01], [122.99, 41.01], [122.99, 40.99]]]},
           "properties": {"name": "Warehouse", "kind": "warehouse", "confirm_seconds": 0}})
}

fn event_types(addr: SocketAddr, key: &str) -> Vec<String> {
    let (status, body) = http(addr, "GET", "/v1/events?device=truck-1", Some(key), None);
    assert_eq!(status, 200, "{body}");
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_set_up_over_http_sees_its_trucks_events_and_eta_and_it_all_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let http_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mqtt = free_port();
    let mut config = Landport::config(
        dir,
        http_addr,
        mqtt,
        true,
        &format!("[auth]\nadmin_key = \"{ADMIN}\"\n"),
    );
    config = config.replace("auto_register = true", "auto_register = false");
    let mut lp = Landport::start(dir, &config, http_addr, mqtt);

    // Tenant, key, device, geofence, shipment: all over HTTP.
    let (s, _) = http(
        http_addr,
        "POST",
        "/v1/tenants",
        Some(ADMIN),
        Some(&json!({"id": "acme", "name": "Acme"})),
    );
    assert_eq!(s, 201);
    let (s, key) = http(
        http_addr,
        "POST",
        "/v1/tenants/acme/keys",
        Some(ADMIN),
        None,
    );
    assert_eq!(s, 201);
    let key = key["key"].as_str().unwrap().to_owned();
    let k = Some(key.as_str());
    let (s, _) = http(
        http_addr,
        "POST",
        "/v1/devices",
        k,
        Some(&json!({"id": "truck-1", "name": "Truck 1", "kind": "truck"})),
    );
    assert_eq!(s, 201);
    let (s, body) = http(http_addr, "POST", "/v1/geofences", k, Some(&warehouse()));
    assert_eq!(s, 201, "{body}");
    let shipment = json!({"id": "S1", "device": "truck-1", "reference": "PO-1",
                          "destination": {"lat": 41.0, "lon": 124.0}});
    let (s, body) = http(http_addr, "POST", "/v1/shipments", k, Some(&shipment));
    assert_eq!(s, 201, "{body}");

    let events = sse(http_addr, "/v1/stream?topics=events", &key, "event");

    // Telemetry over MQTT: outside, inside, out again heading east. And a stranger's.
    let topic = "landport/acme/truck-1/telemetry";
    let readings = vec![
        native(T0, 123.05, 41.0),
        native(T0 + 60_000, 123.0, 41.0),
        native(T0 + 120_000, 123.1, 41.0),
    ];
    // The tenant's key is its MQTT password on Landport's endpoint.
    let login = Some(("acme", key.as_str()));
    publish_as(mqtt, topic, readings, QoS::AtLeastOnce, login).await;
    publish_as(
        mqtt,
        "landport/acme/stranger/telemetry",
        vec![native(T0, 123.0, 41.0)],
        QoS::AtLeastOnce,
        login,
    )
    .await;

    wait_for(
        "entered and exited in the event list",
        Duration::from_secs(20),
        || {
            let t = event_types(http_addr, &key);
            (t.contains(&"geofence.entered".to_owned())
                && t.contains(&"geofence.exited".to_owned()))
            .then_some(())
        },
    );
    let streamed: Value = serde_json::from_str(
        &events
            .recv_timeout(Duration::from_secs(20))
            .expect("an event over SSE"),
    )
    .unwrap();
    assert_eq!(streamed["type"], "geofence.entered");
    assert_eq!(streamed["device"], "truck-1");

    let (s, dev) = http(http_addr, "GET", "/v1/devices/truck-1", k, None);
    assert_eq!(s, 200);
    assert_eq!(dev["position"]["lon"], 123.1);
    assert_eq!(dev["geofences"], json!([]));
    let (s, eta) = http(http_addr, "GET", "/v1/shipments/S1/eta", k, None);
    assert_eq!(s, 200, "{eta}");
    assert_eq!(eta["method"], "direct");
    assert!(eta["remaining_m"].as_f64().unwrap() > 50_000.0, "{eta}");
    let (s, _) = http(http_addr, "GET", "/v1/devices/stranger", k, None);
    assert_eq!(s, 404, "telemetry of an unregistered device is refused");
    assert!(
        lp.metrics()
            .contains("landport_rejected_total{reason=\"unregistered_device\"} 1")
    );

    // A client that accepts gzip (every browser does; here curl, which decodes it) gets the
    // live stream gzip-encoded, and reads the same items from it.
    let (headers, lines) = curl_stream(http_addr, "/v1/stream?topics=positions", &key);
    assert!(
        headers.contains("content-encoding: gzip"),
        "not compressed:\n{headers}"
    );
    let mut got = Vec::new();
    let map = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no positions item over the gzip stream: {got:?}"));
        if let Some(data) = line.strip_prefix("data: ")
            && got.last().is_some_and(|l| l == "event: positions")
        {
            break serde_json::from_str::<Value>(data).unwrap();
        }
        got.push(line);
    };
    assert_eq!(got.first().map(String::as_str), Some(": ready"), "{got:?}");
    assert_eq!(map["features"][0]["id"], "truck-1", "{map}");
    assert_eq!(map["features"][0]["geometry"]["coordinates"][0], 123.1);

    // Another tenant's key sees none of it.
    http(
        http_addr,
        "POST",
        "/v1/tenants",
        Some(ADMIN),
        Some(&json!({"id": "other", "name": "Other"})),
    );
    let (_, other) = http(
        http_addr,
        "POST",
        "/v1/tenants/other/keys",
        Some(ADMIN),
        None,
    );
    let other = other["key"].as_str().unwrap().to_owned();
    assert_eq!(
        http(http_addr, "GET", "/v1/devices/truck-1", Some(&other), None).0,
        404
    );
    assert_eq!(
        http(http_addr, "GET", "/v1/shipments/S1/eta", Some(&other), None).0,
        404
    );

    // Restart: the geofence and the shipment are still there and still tracked.
    assert!(lp.terminate().success());
    lp.restart();
    assert_eq!(http(http_addr, "GET", "/v1/geofences/wh", k, None).0, 200);
    assert_eq!(http(http_addr, "GET", "/v1/shipments/S1", k, None).0, 200);
    publish_as(
        mqtt,
        topic,
        vec![native(T0 + 180_000, 123.0, 41.0)],
        QoS::AtLeastOnce,
        Some(("acme", key.as_str())),
    )
    .await;
    wait_for(
        "a second entry after the restart",
        Duration::from_secs(20),
        || {
            let entered = event_types(http_addr, &key)
                .iter()
                .filter(|t| *t == "geofence.entered")
                .count();
            (entered == 2).then_some(())
        },
    );
    assert_eq!(
        metric(&lp.metrics(), "landport_readings_accepted_total"),
        1.0,
        "one reading since the restart"
    );
}

/// `GET path` with `curl --compressed` (it asks for gzip and decodes it): the response head,
/// lowercased, and the body's lines as they come.
fn curl_stream(
    addr: SocketAddr,
    path: &str,
    key: &str,
) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let head = tempfile::NamedTempFile::new().unwrap();
    let mut curl = Command::new("curl")
        .args(["--compressed", "-sN", "-D"])
        .arg(head.path())
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .arg(format!("http://{addr}{path}"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl (Debian package curl)");
    let out = curl.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
        let _ = curl.kill();
        let _ = curl.wait();
    });
    let headers = wait_for("curl's response head", Duration::from_secs(20), || {
        let h = std::fs::read_to_string(head.path()).ok()?;
        h.contains("\r\n\r\n").then(|| h.to_ascii_lowercase())
    });
    (headers, rx)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The freeze of issue 15: a reefer's range removed while an excursion was open left a
/// deadline no rule could fire, and the pipeline spun on it; every live read and every reading
/// of every tenant then hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_reefers_range_during_an_excursion_freezes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let http_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mqtt = free_port();
    let config = Landport::config(
        dir,
        http_addr,
        mqtt,
        true,
        &format!(
            "[auth]\nadmin_key = \"{ADMIN}\"\n\
             [tracker]\ntemp_grace_seconds = 1\noffline_after_seconds = 3\n"
        ),
    );
    let lp = Landport::start(dir, &config, http_addr, mqtt);
    let admin = Some(ADMIN);
    // Each tenant publishes over MQTT with one of its keys as the password.
    let mut keys = std::collections::HashMap::new();
    for tenant in ["acme", "other"] {
        let body = json!({"id": tenant, "name": tenant});
        let (s, body) = http(http_addr, "POST", "/v1/tenants", admin, Some(&body));
        assert_eq!(s, 201, "{body}");
        let (s, key) = http(
            http_addr,
            "POST",
            &format!("/v1/tenants/{tenant}/keys"),
            admin,
            None,
        );
        assert_eq!(s, 201, "{key}");
        keys.insert(tenant, key["key"].as_str().unwrap().to_owned());
    }
    let reefer = json!({"id": "reefer-1", "kind": "truck",
                        "profile": {"temp_range_c": [2, 8]}});
    let (s, body) = http(
        http_addr,
        "POST",
        "/v1/devices?tenant=acme",
        admin,
        Some(&reefer),
    );
    assert_eq!(s, 201, "{body}");

    let t0 = now_ms();
    let topic = "landport/acme/reefer-1/telemetry";
    let temp = |ts: i64, c: f64| format!(r#"{{"ts":{ts},"temp_c":{c}}}"#).into_bytes();
    publish_as(
        mqtt,
        topic,
        vec![temp(t0, 5.0), temp(t0 + 100, 12.0)],
        QoS::AtLeastOnce,
        Some(("acme", keys["acme"].as_str())),
    )
    .await;
    wait_for("the excursion to open", Duration::from_secs(20), || {
        let (_, d) = http(
            http_addr,
            "GET",
            "/v1/devices/reefer-1?tenant=acme",
            admin,
            None,
        );
        (d["temp_c"] == 12.0).then_some(())
    });
    let (s, body) = http(
        http_addr,
        "PATCH",
        "/v1/devices/reefer-1?tenant=acme",
        admin,
        Some(&json!({"profile": {}})),
    );
    assert_eq!(s, 200, "{body}");

    // The offline timer (3 s) comes after the old excursion's deadline (1 s): once the reefer
    // shows offline, the timers have run past the moment that froze the pipeline.
    wait_for("the reefer to go offline", Duration::from_secs(30), || {
        let (s, d) = http(
            http_addr,
            "GET",
            "/v1/devices/reefer-1?tenant=acme",
            admin,
            None,
        );
        (s == 200 && d["online"] == false).then_some(())
    });
    // Another tenant's device answers, and its readings are applied.
    publish_as(
        mqtt,
        "landport/other/truck-2/telemetry",
        vec![native(now_ms(), 123.0, 41.0)],
        QoS::AtLeastOnce,
        Some(("other", keys["other"].as_str())),
    )
    .await;
    wait_for(
        "truck-2's reading to be applied",
        Duration::from_secs(20),
        || {
            let (s, d) = http(
                http_addr,
                "GET",
                "/v1/devices/truck-2?tenant=other",
                admin,
                None,
            );
            (s == 200 && d["position"]["lon"] == 123.0).then_some(())
        },
    );
    // The view shows a change before its batch is stored: wait for the stored event.
    let types = wait_for("the offline event stored", Duration::from_secs(20), || {
        let (s, body) = http(
            http_addr,
            "GET",
            "/v1/events?device=reefer-1&tenant=acme",
            admin,
            None,
        );
        let types: Vec<String> = body["events"]
            .as_array()?
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect();
        (s == 200 && !types.is_empty()).then_some(types)
    });
    assert_eq!(
        types,
        ["device.offline"],
        "no excursion against a removed range"
    );
    assert_eq!(
        metric(&lp.metrics(), "landport_tracker_stalled_timers_total"),
        0.0
    );
}
