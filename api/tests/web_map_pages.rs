//! The live map of a tenant with more devices than one page holds: headless Chromium against
//! a real server shows a marker for every one of 1,100 devices, so the page follows `next`
//! through `/v1/devices` (pages of at most 1,000, SPEC 15), while its device list shows the
//! first 200 and says how many more a search would reach.
//!
//! Needs `/usr/bin/chromium` (Debian `chromium`): without it the test is skipped with a note,
//! or fails when `CI` is set (SPEC 8).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use landport_api::web::MapSettings;
use landport_pipeline::{Output, now_ms};
use landport_store::{DeviceRecord, Store, Tenant};
use landport_tracker::Reading;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use landport_api::{ApiState, AppState};
use landport_pipeline::metrics::Metrics;
use landport_pipeline::{Core, TrackerHandle};
use landport_tracker::{Tracker, TrackerSettings};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "admin-secret-key-for-the-map-paging-test";
const CHROMIUM: &str = "/usr/bin/chromium";
const DEVICES: usize = 1_100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_shows_every_device_of_a_tenant_bigger_than_a_page() {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{CHROMIUM} is missing (apt-get install -y chromium); CI is set, so this fails"
        );
        eprintln!("note: skipped, {CHROMIUM} is missing (apt-get install -y chromium)");
        return;
    }
    // As TestApi, but devices known from telemetry are taken (auto_register), so that the
    // devices written straight to the store below get live positions.
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let core = Core::new(
        Tracker::new(TrackerSettings::default()),
        true,
        metrics.clone(),
    );
    let tracker = TrackerHandle::standalone(core);
    let (events, _) = tokio::sync::broadcast::channel(16);
    let api = ApiState::new(dir.path(), tracker.clone(), events, Some(ADMIN)).unwrap();
    let state = AppState {
        metrics,
        ready: Arc::new(AtomicBool::new(true)),
    };
    let map = MapSettings {
        tile_url: "/tiles/{z}/{x}/{y}.png".into(),
        tile_attribution: "test tiles".into(),
    };
    let router = landport_api::router_with_api(state, api.clone())
        .merge(landport_api::web::router(map, api));
    // Registered straight in the store, each with a live position.
    let mut store = Store::open(dir.path()).unwrap();
    store
        .create_tenant(&Tenant {
            id: "acme".into(),
            name: "Acme".into(),
            created_ms: 0,
        })
        .expect("creating the tenant");
    for i in 0..DEVICES {
        store
            .insert_device(&DeviceRecord {
                tenant: "acme".into(),
                id: format!("t{i:04}"),
                name: format!("t{i:04}"),
                kind: "truck".into(),
                profile: serde_json::Value::Null,
                created_ms: 0,
            })
            .unwrap();
    }
    drop(store);
    let ts = now_ms();
    tracker
        .call(move |core| {
            for i in 0..DEVICES {
                let lon = 121.0 + (i % 40) as f64 * 0.01;
                let lat = 38.5 + (i / 40) as f64 * 0.01;
                let reading = Reading::at(ts).with_position(lon, lat);
                let mut out = Output::default();
                let _ = core.apply("acme", &format!("t{i:04}"), &[reading], ts, &mut out);
            }
        })
        .await
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(landport_api::serve(
        listener,
        router,
        shutdown.clone(),
        Default::default(),
    ));

    let url = format!("http://{addr}/#key={ADMIN}");
    let dom = tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
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
                "--virtual-time-budget=8000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromium");
        // The DOM is larger than a pipe holds: read it while Chromium writes it.
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut dom = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut dom);
            dom
        });
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("chromium took over 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        reader.join().unwrap()
    })
    .await
    .unwrap();
    shutdown.cancel();
    let _ = server.await;

    let markers = dom.matches("data-device-id=\"t").count();
    assert_eq!(
        markers,
        DEVICES,
        "markers in the DOM (of {} bytes)",
        dom.len()
    );
    for id in ["t0000", "t0999", "t1000", "t1099"] {
        assert!(
            dom.contains(&format!("data-device-id=\"{id}\"")),
            "{id} has no marker"
        );
    }
    // The list is for searching, not scrolling through the fleet: 200 rows and a note.
    assert_eq!(dom.matches("data-device=\"t").count(), 200);
    assert!(
        dom.contains("900 more: refine the search."),
        "no note on the rest"
    );
    assert!(dom.contains("<span id=\"device-count\" class=\"muted\">1100</span>"));
}
