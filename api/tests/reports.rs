//! SPEC 14 through the router: trips, stops, geofence visits and the shipment record, in
//! JSON, CSV (read back with the csv crate) and PDF (its text extracted with `pdftotext`);
//! range limits and tenant isolation. Readings go through the real tracker (the pipeline's
//! `Core`) and are committed to the store with the events they fire, as the pipeline does.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use landport_pipeline::Output;
use landport_store::Store;
use landport_tracker::Reading;
use serde_json::{Value, json};
use support::TestApi;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-key-for-the-report-tests";
/// 2026-11-24T08:00:00Z.
const T0: i64 = 1_795_507_200_000;
const MIN: i64 = 60_000;
/// Near Anshan; 0.001° of latitude is ~111 m.
const LON0: f64 = 122.99;
const LAT0: f64 = 41.10;

struct App {
    api: TestApi,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The CSV body read back: header row and records.
    fn csv(&self) -> (Vec<String>, Vec<Vec<String>>) {
        assert!(
            self.content_type.starts_with("text/csv"),
            "{}",
            self.content_type
        );
        let mut r = csv::Reader::from_reader(self.body.as_slice());
        let header = r.headers().unwrap().iter().map(str::to_owned).collect();
        let rows = r
            .records()
            .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
            .collect();
        (header, rows)
    }
}

impl App {
    fn new() -> App {
        App {
            api: TestApi::new(ADMIN),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
        accept: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"));
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let res = self.api.router().oneshot(req).await.unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply {
            status,
            content_type,
            body,
        }
    }

    async fn get(&self, path: &str, key: &str) -> Reply {
        self.call("GET", path, key, None, None).await
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> Value {
        let r = self.call("POST", path, key, Some(body), None).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    async fn tenant(&self, id: &str) -> String {
        self.post("/v1/tenants", ADMIN, json!({"id": id, "name": id}))
            .await;
        let v = self
            .post(&format!("/v1/tenants/{id}/keys"), ADMIN, json!({}))
            .await;
        v["key"].as_str().unwrap().to_owned()
    }

    async fn device(&self, key: &str, id: &str) {
        self.post(
            "/v1/devices",
            key,
            json!({"id": id, "name": id, "kind": "truck"}),
        )
        .await;
    }

    /// Applies `readings` of `device` to the live tracker and commits them with their
    /// events, as the pipeline does.
    async fn feed(&self, tenant: &str, device: &str, readings: Vec<Reading>) {
        let (t, d) = (tenant.to_owned(), device.to_owned());
        let out = self
            .api
            .tracker
            .call(move |core| {
                let mut out = Output::default();
                let now = readings.last().map(|r| r.ts_ms).unwrap_or(T0);
                for chunk in readings.chunks(50) {
                    let _ = core.apply(&t, &d, chunk, now, &mut out);
                }
                out
            })
            .await
            .unwrap();
        let mut store = Store::open(self.api.dir.path()).unwrap();
        store.commit(&out.rows, &out.events).unwrap();
    }
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A reading at minute `m` after `T0`, `north_m` metres north of the origin.
fn at(m: f64, north_m: f64) -> Reading {
    Reading::at(T0 + (m * MIN as f64) as i64).with_position(LON0, LAT0 + north_m / 111_000.0)
}

/// 20 minutes parked at the depot, 20 minutes north at 36 km/h (12 km), 30 minutes parked,
/// 10 minutes north again (6 km): a fix a minute.
fn day_of_truck() -> Vec<Reading> {
    let mut v = Vec::new();
    for m in 0..=20 {
        v.push(at(m as f64, 0.0));
    }
    for m in 21..=40 {
        v.push(at(m as f64, (m - 20) as f64 * 600.0).with_speed(36.0));
    }
    for m in 41..=70 {
        v.push(at(m as f64, 12_000.0 + 5.0 * ((m % 3) as f64)));
    }
    for m in 71..=80 {
        v.push(at(m as f64, 12_000.0 + (m - 70) as f64 * 600.0).with_speed(40.0));
    }
    v
}

#[tokio::test]
async fn stops_and_trips_of_a_day_in_json_and_csv() {
    let app = App::new();
    let acme = app.tenant("acme").await;
    app.device(&acme, "truck-1").await;
    // a depot around the start
    app.post(
        "/v1/geofences",
        &acme,
        json!({"type": "Feature", "id": "depot",
               "geometry": {"type": "Point", "coordinates": [LON0, LAT0]},
               "properties": {"name": "Depot", "radius_m": 300}}),
    )
    .await;
    app.feed("acme", "truck-1", day_of_truck()).await;
    let range = format!("from={}&to={}", iso(T0), iso(T0 + 90 * MIN));

    let r = app
        .get(&format!("/v1/devices/truck-1/stops?{range}"), &acme)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let stops = r.json()["stops"].as_array().unwrap().clone();
    assert_eq!(stops.len(), 2, "{stops:?}");
    assert_eq!(stops[0]["start"], iso(T0));
    assert_eq!(stops[0]["end"], iso(T0 + 20 * MIN));
    assert_eq!(stops[0]["duration_s"], 1200.0);
    assert_eq!(stops[0]["geofence"], "depot");
    assert_eq!(stops[1]["start"], iso(T0 + 40 * MIN));
    assert_eq!(stops[1]["end"], iso(T0 + 70 * MIN));
    assert_eq!(stops[1]["geofence"], Value::Null);
    // a longer min_duration_s leaves the 20-minute stop out
    let r = app
        .get(
            &format!("/v1/devices/truck-1/stops?{range}&min_duration_s=1500"),
            &acme,
        )
        .await;
    assert_eq!(r.json()["stops"].as_array().unwrap().len(), 1);

    let r = app
        .get(&format!("/v1/devices/truck-1/trips?{range}"), &acme)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let trips = r.json()["trips"].as_array().unwrap().clone();
    assert_eq!(trips.len(), 2, "{trips:?}");
    let t = &trips[0];
    assert_eq!(t["start"]["ts"], iso(T0 + 20 * MIN));
    assert_eq!(t["start"]["geofence"], "depot");
    assert_eq!(t["end"]["ts"], iso(T0 + 40 * MIN));
    let d = t["distance_m"].as_f64().unwrap();
    assert!((d - 12_000.0).abs() < 100.0, "{d}");
    assert_eq!(t["duration_s"], 1200.0);
    let avg = t["avg_speed_kmh"].as_f64().unwrap();
    assert!((avg - 36.0).abs() < 0.5, "{avg}");
    assert_eq!(t["max_speed_kmh"], 36.0);
    assert_eq!(trips[1]["end"]["ts"], iso(T0 + 80 * MIN));
    assert_eq!(trips[1]["max_speed_kmh"], 40.0);

    // CSV: a header row, then the same rows as the JSON
    let r = app
        .get(
            &format!("/v1/devices/truck-1/stops?{range}&format=csv"),
            &acme,
        )
        .await;
    let (header, rows) = r.csv();
    assert_eq!(
        header,
        ["start", "end", "lat", "lon", "duration_s", "geofence"]
    );
    assert_eq!(rows.len(), stops.len());
    for (row, stop) in rows.iter().zip(&stops) {
        assert_eq!(row[0], stop["start"].as_str().unwrap());
        assert_eq!(row[1], stop["end"].as_str().unwrap());
        assert_eq!(
            row[2].parse::<f64>().unwrap(),
            stop["lat"].as_f64().unwrap()
        );
        assert_eq!(
            row[4].parse::<f64>().unwrap(),
            stop["duration_s"].as_f64().unwrap()
        );
        assert_eq!(row[5], stop["geofence"].as_str().unwrap_or(""));
    }
    let r = app
        .call(
            "GET",
            &format!("/v1/devices/truck-1/trips?{range}"),
            &acme,
            None,
            Some("text/csv"),
        )
        .await;
    let (header, rows) = r.csv();
    assert_eq!(header.len(), 12);
    assert_eq!(header[0], "start_ts");
    assert_eq!(header[8], "distance_m");
    assert_eq!(rows.len(), trips.len());
    for (row, trip) in rows.iter().zip(&trips) {
        assert_eq!(row[0], trip["start"]["ts"].as_str().unwrap());
        assert_eq!(row[3], trip["start"]["geofence"].as_str().unwrap_or(""));
        assert_eq!(
            row[8].parse::<f64>().unwrap(),
            trip["distance_m"].as_f64().unwrap()
        );
    }
}

#[tokio::test]
async fn ranges_are_required_bounded_and_tenants_isolated() {
    let app = App::new();
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.device(&acme, "truck-1").await;
    app.feed("acme", "truck-1", day_of_truck()).await;
    let ok = format!("from={}&to={}", iso(T0), iso(T0 + 90 * MIN));
    for report in ["trips", "stops"] {
        let path = format!("/v1/devices/truck-1/{report}");
        // from and to are required
        let r = app.get(&format!("{path}?to={}", iso(T0)), &acme).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("from")
        );
        let r = app
            .get(&format!("{path}?from=yesterday&to={}", iso(T0)), &acme)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        // epoch milliseconds work as on the track endpoint
        let r = app
            .get(&format!("{path}?from={}&to={}", T0, T0 + 90 * MIN), &acme)
            .await;
        assert_eq!(r.status, StatusCode::OK);
        // at most reports.max_days (31) apart: 422 naming the limit
        let r = app
            .get(
                &format!("{path}?from={}&to={}", iso(T0), iso(T0 + 32 * 86_400_000)),
                &acme,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains("reports.max_days"), "{msg}");
        // another tenant's device: 404 as if it did not exist
        let r = app.get(&format!("{path}?{ok}"), &globex).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = app
            .get(&format!("/v1/devices/nobody/{report}?{ok}"), &acme)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = app.get(&format!("{path}?{ok}&format=xml"), &acme).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
    // globex's own truck-1 with no history has no stops, and never sees acme's
    app.device(&globex, "truck-1").await;
    let r = app
        .get(&format!("/v1/devices/truck-1/stops?{ok}"), &globex)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"stops": []}));
}

/// `day_of_truck` with a temperature on every reading: 4 °C, and `temp(m)` where it says.
fn reefer_day(temp: impl Fn(i64) -> Option<f64>) -> Vec<Reading> {
    day_of_truck()
        .into_iter()
        .enumerate()
        .map(|(m, r)| match temp(m as i64) {
            Some(t) => r.with_temp(t),
            // no temperature: the sensor is silent (the position still comes)
            None => r,
        })
        .collect()
}

async fn reefer_shipment(app: &App, key: &str, id: &str, device: &str) {
    app.device(key, device).await;
    app.post(
        "/v1/shipments",
        key,
        json!({"id": id, "device": device, "reference": format!("PO-{id}"),
               "origin": {"lat": LAT0, "lon": LON0},
               "destination": {"lat": LAT0 + 18_000.0 / 111_000.0, "lon": LON0},
               "deadline": iso(T0 + 75 * MIN), "temp_range_c": [2.0, 8.0]}),
    )
    .await;
}

/// The text of a PDF, by `pdftotext` (poppler-utils; scripts/test installs it).
fn pdf_text(bytes: &[u8]) -> String {
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    // to look at it: REPORTS_PDF_OUT=/tmp/record.pdf, then pdftoppm -png
    if let Ok(out) = std::env::var("REPORTS_PDF_OUT") {
        std::fs::write(out, bytes).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("record.pdf");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("pdftotext")
        .arg("-layout")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (Debian's poppler-utils) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_reefer_with_an_excursion_has_the_verdict_excursion_in_json_csv_and_pdf() {
    let app = App::new();
    let acme = app.tenant("acme").await;
    reefer_shipment(&app, &acme, "SHP-1", "reefer-1").await;
    // out of range from minute 50 to 55 while parked, 12 °C at worst
    let temps = |m: i64| match m {
        50 => Some(9.0),
        51..=54 => Some(10.0 + (m - 50) as f64 * 0.5),
        55 => Some(8.5),
        _ => Some(4.0),
    };
    app.feed("acme", "reefer-1", reefer_day(temps)).await;

    let r = app.get("/v1/shipments/SHP-1/report", &acme).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert_eq!(v["verdict"], "excursion", "{v:#}");
    assert_eq!(v["shipment"], "SHP-1");
    assert_eq!(v["reference"], "PO-SHP-1");
    assert_eq!(v["status"], "arrived");
    let departed = v["departed_at"].as_str().unwrap().to_owned();
    let arrived = v["arrived_at"].as_str().unwrap().to_owned();
    assert!(
        departed > iso(T0 + 20 * MIN) && departed < iso(T0 + 23 * MIN),
        "{departed}"
    );
    assert!(
        arrived > iso(T0 + 77 * MIN) && arrived <= iso(T0 + 80 * MIN),
        "{arrived}"
    );
    assert_eq!(v["from"], departed.as_str());
    assert_eq!(v["to"], arrived.as_str());
    assert_eq!(v["actual_arrival"], arrived.as_str());
    assert!(
        v["late_by_s"].as_f64().unwrap() > 0.0,
        "deadline at minute 75"
    );
    let excursions = v["excursions"].as_array().unwrap();
    assert_eq!(excursions.len(), 1, "{v:#}");
    assert_eq!(excursions[0]["begin"], iso(T0 + 50 * MIN));
    assert_eq!(excursions[0]["end"], iso(T0 + 56 * MIN));
    assert_eq!(excursions[0]["duration_s"], 360.0);
    assert_eq!(excursions[0]["peak_c"], 12.0);
    let t = &v["temperature"];
    assert_eq!(t["max_c"], 12.0);
    assert_eq!(t["min_c"], 4.0);
    let pct = t["time_in_range_pct"].as_f64().unwrap();
    assert!(pct > 80.0 && pct < 100.0, "{pct}");
    assert_eq!(v["gaps"], json!([]));
    // the ETA history starts with the first ETA, announced at departure
    let etas = v["eta_history"].as_array().unwrap();
    assert!(!etas.is_empty(), "{v:#}");
    // (the first one is in shipment.departed's data, predicted from the departure's reading)
    assert_eq!(etas[0]["predicted_at"], departed.as_str(), "{v:#}");
    assert!(etas[0]["error_s"].is_number());
    let driven = v["driven_distance_m"].as_f64().unwrap();
    assert!(driven > 15_000.0 && driven < 19_000.0, "{driven}");

    // CSV: the readings of the record, with a header row
    let r = app
        .get("/v1/shipments/SHP-1/report?format=csv", &acme)
        .await;
    let (header, rows) = r.csv();
    assert_eq!(
        header,
        ["ts", "lat", "lon", "speed_kmh", "temp_c", "in_range"]
    );
    assert!(rows.len() > 50);
    let out: Vec<&Vec<String>> = rows.iter().filter(|r| r[5] == "false").collect();
    assert_eq!(out.len(), 6, "minutes 50-55");
    assert_eq!(out[0][0], iso(T0 + 50 * MIN));
    assert!(rows.iter().all(|r| r[0].as_str() >= departed.as_str()));

    // PDF: the verdict, the excursion's times and the summary figures are in its text
    let r = app
        .get("/v1/shipments/SHP-1/report?format=pdf", &acme)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type, "application/pdf");
    let text = pdf_text(&r.body);
    for needle in [
        "Shipment record SHP-1",
        "Verdict: EXCURSION",
        &iso(T0 + 50 * MIN),
        &iso(T0 + 56 * MIN),
        "6m 00s",
        "12.0",
        "max 12.0",
        "min 4.0",
        "PO-SHP-1",
        "ETA history",
        "Route driven",
    ] {
        assert!(text.contains(needle), "{needle:?} not in the PDF:\n{text}");
    }

    // another tenant: 404
    let globex = app.tenant("globex").await;
    let r = app.get("/v1/shipments/SHP-1/report", &globex).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .get("/v1/shipments/SHP-1/report?format=pdf", &globex)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // a range too long
    let r = app
        .get(
            &format!(
                "/v1/shipments/SHP-1/report?from={}&to={}",
                iso(T0),
                iso(T0 + 40 * 86_400_000)
            ),
            &acme,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_reefer_with_a_silent_sensor_is_incomplete_and_an_intact_one_compliant() {
    let app = App::new();
    let acme = app.tenant("acme").await;
    reefer_shipment(&app, &acme, "SHP-GAP", "reefer-2").await;
    reefer_shipment(&app, &acme, "SHP-OK", "reefer-3").await;
    // no temperature from minute 30 to 59: 30 minutes, over reports.gap_seconds (900)
    app.feed(
        "acme",
        "reefer-2",
        reefer_day(|m| (!(30..60).contains(&m)).then_some(5.0)),
    )
    .await;
    app.feed("acme", "reefer-3", reefer_day(|_| Some(5.0)))
        .await;

    let v = app.get("/v1/shipments/SHP-GAP/report", &acme).await.json();
    assert_eq!(v["verdict"], "incomplete", "{v:#}");
    let gaps = v["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0]["from"], iso(T0 + 29 * MIN));
    assert_eq!(gaps[0]["to"], iso(T0 + 60 * MIN));
    assert_eq!(gaps[0]["duration_s"], 1860.0);
    let text = pdf_text(
        &app.get("/v1/shipments/SHP-GAP/report?format=pdf", &acme)
            .await
            .body,
    );
    assert!(text.contains("Verdict: INCOMPLETE"), "{text}");
    assert!(text.contains(&iso(T0 + 29 * MIN)), "{text}");

    let v = app.get("/v1/shipments/SHP-OK/report", &acme).await.json();
    assert_eq!(v["verdict"], "compliant", "{v:#}");
    assert_eq!(v["temperature"]["time_in_range_pct"], 100.0);
    assert_eq!(v["excursions"], json!([]));
}

#[tokio::test]
async fn geofence_visits_come_from_the_stored_events() {
    let app = App::new();
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.device(&acme, "truck-1").await;
    // the parking place of minutes 40-70, 12 km north of the depot
    app.post(
        "/v1/geofences",
        &acme,
        json!({"type": "Feature", "id": "yard",
               "geometry": {"type": "Point", "coordinates": [LON0, LAT0 + 12_000.0 / 111_000.0]},
               "properties": {"name": "Yard", "radius_m": 400, "confirm_seconds": 0}}),
    )
    .await;
    app.feed("acme", "truck-1", day_of_truck()).await;
    let range = format!("from={}&to={}", iso(T0), iso(T0 + 90 * MIN));
    let r = app
        .get(&format!("/v1/reports/geofence-visits?{range}"), &acme)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let visits = v["visits"].as_array().unwrap();
    assert_eq!(visits.len(), 1, "{v:#}");
    assert_eq!(visits[0]["device"], "truck-1");
    assert_eq!(visits[0]["geofence"], "yard");
    let entered = visits[0]["entered_at"].as_str().unwrap();
    let exited = visits[0]["exited_at"].as_str().unwrap();
    assert!(entered > iso(T0 + 39 * MIN).as_str() && entered < iso(T0 + 40 * MIN).as_str());
    assert!(exited > iso(T0 + 70 * MIN).as_str() && exited < iso(T0 + 71 * MIN).as_str());
    let dwell = visits[0]["dwell_s"].as_f64().unwrap();
    let ms = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    };
    assert_eq!(dwell, (ms(exited) - ms(entered)) as f64 / 1000.0);
    // CSV has the same rows
    let r = app
        .get(
            &format!("/v1/reports/geofence-visits?{range}&format=csv"),
            &acme,
        )
        .await;
    let (header, rows) = r.csv();
    assert_eq!(
        header,
        ["device", "geofence", "entered_at", "exited_at", "dwell_s"]
    );
    assert_eq!(
        rows,
        [vec![
            "truck-1".to_owned(),
            "yard".to_owned(),
            entered.to_owned(),
            exited.to_owned(),
            dwell.to_string()
        ]]
    );
    // filters, and tenants see only their own
    let r = app
        .get(
            &format!("/v1/reports/geofence-visits?{range}&geofence=depot"),
            &acme,
        )
        .await;
    assert_eq!(r.json(), json!({"visits": []}));
    let r = app
        .get(&format!("/v1/reports/geofence-visits?{range}"), &globex)
        .await;
    assert_eq!(r.json(), json!({"visits": []}));
    let r = app.get("/v1/reports/geofence-visits?from=0", &acme).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_long_records_csv_streams_every_reading_in_order() {
    let app = App::new();
    let acme = app.tenant("acme").await;
    reefer_shipment(&app, &acme, "SHP-LONG", "reefer-4").await;
    // 3,000 readings a second apart, parked at the origin: about 145 KB of CSV, three chunks
    let readings: Vec<Reading> = (0..3000)
        .map(|s| {
            Reading::at(T0 + s * 1000)
                .with_position(LON0, LAT0)
                .with_temp(3.0 + (s % 50) as f64 * 0.1)
        })
        .collect();
    app.feed("acme", "reefer-4", readings).await;
    let range = format!("from={}&to={}", iso(T0), iso(T0 + 3_600_000));
    let r = app
        .get(
            &format!("/v1/shipments/SHP-LONG/report?{range}&format=csv"),
            &acme,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.len() > 2 * 64 * 1024, "{} bytes", r.body.len());
    let (header, rows) = r.csv();
    assert_eq!(header[0], "ts");
    assert_eq!(rows.len(), 3000);
    for (s, row) in rows.iter().enumerate() {
        assert_eq!(row[0], iso(T0 + s as i64 * 1000));
        assert_eq!(row[5], "true");
    }
    // not departed: the JSON record of the same range is still there
    let v = app
        .get(&format!("/v1/shipments/SHP-LONG/report?{range}"), &acme)
        .await
        .json();
    assert_eq!(v["temperature"]["readings"], 3000);
    assert_eq!(v["departed_at"], Value::Null);
    // without a range, a shipment that has not departed has recorded nothing yet
    let v = app.get("/v1/shipments/SHP-LONG/report", &acme).await.json();
    assert_eq!(v["verdict"], "incomplete");
    assert_eq!(v["from"], Value::Null);
}

/// Peak resident memory of this process so far, KiB (Linux `VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A figure, not a check (run by hand): a week of 1 Hz readings (604,800 rows) through the
/// stops, trips and record endpoints, with the time each took and how much the process's
/// peak memory grew. `cargo test -p landport-api --test reports -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn measure_a_week_at_one_hertz() {
    let app = App::new();
    let acme = app.tenant("acme").await;
    reefer_shipment(&app, &acme, "SHP-WEEK", "reefer-w").await;
    let mut store = Store::open(app.api.dir.path()).unwrap();
    let n: i64 = 7 * 86_400;
    let started = std::time::Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(20_000) {
        let rows: Vec<landport_store::TelemetryRow> = chunk
            .iter()
            .map(|s| {
                // an hour's drive north, an hour parked, over and over
                let hour = s / 3600;
                let north_m = (hour / 2) as f64 * 36_000.0
                    + if hour % 2 == 0 {
                        (s % 3600) as f64 * 10.0
                    } else {
                        36_000.0
                    };
                landport_store::TelemetryRow {
                    tenant: "acme".into(),
                    device: "reefer-w".into(),
                    shipment: None,
                    reading: at(*s as f64 / 60.0, north_m % 5_000_000.0)
                        .with_temp(4.0 + (s % 600) as f64 / 600.0),
                    received_ms: T0,
                }
            })
            .collect();
        store.commit(&rows, &[]).unwrap();
    }
    eprintln!("stored {n} readings in {:?}", started.elapsed());
    let range = format!("from={}&to={}", iso(T0), iso(T0 + n * 1000));
    for path in [
        format!("/v1/devices/reefer-w/stops?{range}"),
        format!("/v1/devices/reefer-w/trips?{range}"),
        format!("/v1/shipments/SHP-WEEK/report?{range}"),
        format!("/v1/shipments/SHP-WEEK/report?{range}&format=pdf"),
        format!("/v1/shipments/SHP-WEEK/report?{range}&format=csv"),
    ] {
        let before = peak_rss_kib();
        let t = std::time::Instant::now();
        let r = app.get(&path, &acme).await;
        assert_eq!(r.status, StatusCode::OK);
        eprintln!(
            "{path}: {:?}, {} bytes, peak RSS {} -> {} KiB",
            t.elapsed(),
            r.body.len(),
            before,
            peak_rss_kib()
        );
    }
}

#[tokio::test]
async fn a_long_excursion_table_runs_over_pages_and_says_how_many_more() {
    let app = App::new();
    let acme = app.tenant("acme").await;
    reefer_shipment(&app, &acme, "SHP-OSC", "reefer-5").await;
    // a faulty door: out of range every other minute, 250 times
    let readings: Vec<Reading> = (0..500)
        .map(|m| {
            Reading::at(T0 + m * MIN)
                .with_position(LON0, LAT0)
                .with_temp(if m % 2 == 0 { 4.0 } else { 9.5 })
        })
        .collect();
    app.feed("acme", "reefer-5", readings).await;
    let range = format!("from={}&to={}", iso(T0), iso(T0 + 500 * MIN));
    let v = app
        .get(&format!("/v1/shipments/SHP-OSC/report?{range}"), &acme)
        .await
        .json();
    assert_eq!(v["excursions"].as_array().unwrap().len(), 250);
    // asked for with Accept, as a browser's download would
    let r = app
        .call(
            "GET",
            &format!("/v1/shipments/SHP-OSC/report?{range}"),
            &acme,
            None,
            Some("application/pdf"),
        )
        .await;
    assert_eq!(r.content_type, "application/pdf");
    let text = pdf_text(&r.body);
    assert!(text.contains("Excursions: 250"), "{text}");
    assert!(text.contains("... and 50 more"), "{text}");
    // the last listed row (the 200th excursion) made it, on a later page
    assert!(text.contains(&iso(T0 + 399 * MIN)), "{text}");
    assert!(text.matches('\u{c}').count() >= 3, "several pages");
}
