//! The live map in a real browser: headless Chromium against a real server on a free port,
//! with a temp store and a standalone tracker holding two devices. Checks that both device
//! markers reach the DOM and saves a screenshot to `target/artifacts/web_live_map.png`.
//!
//! Needs `/usr/bin/chromium` (Debian `chromium`): without it the test is skipped with a note,
//! or fails when `CI` is set (SPEC 8).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use landport_api::web::MapSettings;
use landport_pipeline::{Output, TrackerHandle, now_ms};
use landport_tracker::Reading;
use serde_json::{Value, json};
use support::TestApi;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-key";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Longest one browser run may take before it is killed.
const BROWSER_LIMIT: Duration = Duration::from_secs(20);

async fn post(router: &Router, path: &str, key: &str, body: Value) -> Value {
    let req = Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{path}: {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap()
}

/// Applies one reading to the live core, as the pipeline does with a decoded message.
async fn fix(tracker: &TrackerHandle, device: &str, lon: f64, lat: f64, heading_deg: f64) {
    let device = device.to_owned();
    let reading = Reading::at(next_ts())
        .with_position(lon, lat)
        .with_speed(62.0)
        .with_heading(heading_deg);
    tracker
        .call(move |core| {
            let mut out = Output::default();
            let _ = core.apply("acme", &device, &[reading], now_ms(), &mut out);
        })
        .await
        .unwrap();
}

/// Runs Chromium headless on `url` with `args`; returns its stdout. Killed after
/// [`BROWSER_LIMIT`].
fn chromium(url: &str, profile: &Path, args: &[&str]) -> String {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let started = Instant::now();
    // Polls the child: std has no wait with a timeout.
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > BROWSER_LIMIT {
            let _ = child.kill();
            panic!("chromium took over {BROWSER_LIMIT:?} on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Dumps the DOM of `url` and saves its screenshot as `target/artifacts/{png}`, both at
/// once (each with its own browser profile); returns the DOM and the screenshot's path.
async fn browse(url: String, png: &str) -> (String, PathBuf) {
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join(png);
    let _ = std::fs::remove_file(&shot);
    let (u1, u2, s) = (url.clone(), url, shot.clone());
    let dom = tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        chromium(&u1, profile.path(), &["--dump-dom"])
    });
    let png = tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        let arg = format!("--screenshot={}", s.display());
        chromium(&u2, profile.path(), &[&arg, "--window-size=1280,800"])
    });
    let dom = dom.await.unwrap();
    png.await.unwrap();
    (dom, shot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_map_shows_both_devices_in_a_real_browser() {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{CHROMIUM} is missing (apt-get install -y chromium); CI is set, so this fails"
        );
        eprintln!("note: skipped, {CHROMIUM} is missing (apt-get install -y chromium)");
        return;
    }
    let t = TestApi::new(ADMIN);
    let tracker = t.tracker.clone();
    // Tiles from this server (they 404): the page must work without them, and the test
    // never touches the network.
    let router = t.router_with_pages(MapSettings {
        tile_url: "/tiles/{z}/{x}/{y}.png".into(),
        tile_attribution: "test tiles".into(),
    });

    post(
        &router,
        "/v1/tenants",
        ADMIN,
        json!({"id": "acme", "name": "Acme"}),
    )
    .await;
    let key = post(&router, "/v1/tenants/acme/keys", ADMIN, json!({})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in ["truck-7", "truck-9"] {
        let body = json!({"id": id, "name": format!("Truck {id}"), "kind": "truck"});
        post(&router, "/v1/devices", &key, body).await;
    }
    let depot = json!({"type": "Feature", "id": "depot",
        "geometry": {"type": "Point", "coordinates": [121.62, 38.92]},
        "properties": {"name": "Dalian depot", "kind": "depot", "radius_m": 1500.0}});
    post(&router, "/v1/geofences", &key, depot).await;
    let road = json!({"type": "Feature", "id": "g15",
        "geometry": {"type": "LineString",
            "coordinates": [[121.45, 38.80], [121.55, 38.86], [121.70, 38.88]]},
        "properties": {"name": "G15 corridor", "kind": "restricted", "corridor_m": 800.0}});
    post(&router, "/v1/geofences", &key, road).await;
    // In transit: the customer's page shows the position only then (SPEC 15).
    let shipment = json!({"id": "SHP-1", "device": "truck-7", "reference": "PO-77",
        "destination": "depot", "status": "in_transit"});
    post(&router, "/v1/shipments", &key, shipment).await;
    fix(&tracker, "truck-7", 121.50, 38.83, 45.0).await;
    fix(&tracker, "truck-9", 121.66, 38.95, 200.0).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(landport_api::serve(
        listener,
        router.clone(),
        shutdown.clone(),
        Default::default(),
    ));

    let share = post(&router, "/v1/shipments/SHP-1/share", &key, json!({})).await;
    let token = share["token"].as_str().unwrap();

    let (dom, map_png) = browse(format!("http://{addr}/#key={key}"), "web_live_map.png").await;
    let (track_dom, track_png) =
        browse(format!("http://{addr}/track/{token}"), "web_track.png").await;
    // A refused key opens the key dialog with the reason.
    let refused = tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        let url = format!("http://{addr}/#key=not-a-key");
        chromium(&url, profile.path(), &["--dump-dom"])
    })
    .await
    .unwrap();
    shutdown.cancel();
    server.await.unwrap().unwrap();

    assert!(
        refused.contains("<dialog id=\"key-dialog\" open=\"\">")
            && refused.contains("That key was refused"),
        "{refused}"
    );

    for id in ["truck-7", "truck-9"] {
        assert!(
            dom.contains(&format!("data-device-id=\"{id}\"")),
            "no marker for {id} in the DOM:\n{dom}"
        );
    }
    assert!(
        dom.contains("PO-77"),
        "the shipment is not in the panel:\n{dom}"
    );
    assert!(map_png.exists(), "no screenshot at {}", map_png.display());
    // The customer's page: the shipment's reference and status, a position marker.
    assert!(track_dom.contains("(PO-77)"), "{track_dom}");
    assert!(track_dom.contains(">On its way<"), "{track_dom}");
    assert!(
        track_dom.contains("leaflet-interactive"),
        "no position marker:\n{track_dom}"
    );
    assert!(
        track_png.exists(),
        "no screenshot at {}",
        track_png.display()
    );
}

/// A device time that only goes up, even for two readings in one millisecond (a repeated
/// time would be dropped as a duplicate).
fn next_ts() -> i64 {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = now_ms();
    let prev = LAST.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
    if prev >= now {
        LAST.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    } else {
        now
    }
}
