//! The live map in a real browser: headless Chromium against a real server on a free port,
//! with a temp store and a standalone tracker holding two devices. Checks that both device
//! markers reach the DOM and saves a screenshot to `target/artifacts/web_live_map.png`.
//!
//! Needs `/usr/bin/chromium` (Debian `chromium`): without it the test is skipped with a note,
//! or fails when `CI` is set (SPEC 8).

mod support;

use std::net::SocketAddr;
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

/// The router served on a free loopback port until [`Served::stop`].
struct Served {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    async fn start(router: &Router) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(landport_api::serve(
            listener,
            router.clone(),
            shutdown.clone(),
            Default::default(),
        ));
        Served {
            addr,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// `true` if Chromium is missing: the test is then skipped, or fails when CI is set.
fn no_chromium() -> bool {
    if Path::new(CHROMIUM).exists() {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{CHROMIUM} is missing (apt-get install -y chromium); CI is set, so this fails"
    );
    eprintln!("note: skipped, {CHROMIUM} is missing (apt-get install -y chromium)");
    true
}

/// A fresh API, its router with the pages, and a key of the tenant `acme` it now has; `None`
/// when Chromium is missing (see [`no_chromium`]). Tiles come from this server (they 404): the
/// page must work without them, and no test touches the network.
async fn map_with_acme() -> Option<(TestApi, Router, String)> {
    if no_chromium() {
        return None;
    }
    let t = TestApi::new(ADMIN);
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
    Some((t, router, key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_map_shows_both_devices_in_a_real_browser() {
    let Some((t, router, key)) = map_with_acme().await else {
        return;
    };
    let tracker = t.tracker.clone();
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

    let server = Served::start(&router).await;
    let addr = server.addr;

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
    server.stop().await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_reads_the_live_stream_gzip_encoded() {
    let Some((t, router, key)) = map_with_acme().await else {
        return;
    };
    let tracker = t.tracker.clone();
    // Enough devices that the first item is larger than a deflate window (32 KiB), within
    // the key's request burst.
    for i in 0..150 {
        let id = format!("truck-{i:04}");
        post(&router, "/v1/devices", &key, json!({"id": id})).await;
        fix(&tracker, &id, 121.0 + f64::from(i) * 1e-4, 38.9, 90.0).await;
    }
    let server = Served::start(&router).await;
    let addr = server.addr;
    // One truck keeps moving: whenever the stream opens, its second item carries it alone.
    let moving = tokio::spawn({
        let tracker = tracker.clone();
        async move {
            for i in 0.. {
                tokio::time::sleep(Duration::from_millis(300)).await;
                fix(
                    &tracker,
                    "truck-0007",
                    122.5,
                    39.0 + f64::from(i) * 1e-3,
                    90.0,
                )
                .await;
            }
        }
    });
    // The page's own fetch (as the live map reads the stream): Chromium asks for gzip itself
    // and decodes it; the script reads two positions items.
    let js = format!(
        r#"(async () => {{
          const res = await fetch('/v1/stream?topics=positions',
            {{ headers: {{ Authorization: 'Bearer {key}' }} }});
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let text = '';
          // Gives up after 15 s with what it has, so that a failure shows it.
          const stop = new Promise(r => setTimeout(() => r({{ done: true }}), 15000));
          while ((text.match(/event: positions\ndata: [^\n]*\n\n/g) || []).length < 2) {{
            const c = await Promise.race([reader.read(), stop]);
            if (c.done) break;
            text += c.value;
          }}
          reader.cancel();
          return {{ encoding: res.headers.get('content-encoding'), text }};
        }})()"#
    );
    let page = format!("http://{addr}/#key={key}");
    let got = tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        let mut b = cdp::Browser::open(CHROMIUM, profile.path(), &page, 800, 600);
        b.eval(&js)
    })
    .await
    .unwrap();
    moving.abort();
    server.stop().await;

    assert_eq!(got["encoding"], "gzip", "{got}");
    let text = got["text"].as_str().unwrap();
    let items: Vec<Value> = text
        .split("\n\n")
        .filter_map(|block| block.strip_prefix("event: positions\ndata: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert_eq!(items.len(), 2, "{}", &text[..text.len().min(2000)]);
    assert_eq!(items[0]["features"].as_array().unwrap().len(), 150);
    let second = items[1]["features"].as_array().unwrap();
    assert_eq!(second.len(), 1, "{}", items[1]);
    assert_eq!(second[0]["id"], "truck-0007");
    assert_eq!(second[0]["geometry"]["coordinates"][0], 122.5);
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

// ---- track replay, driven through the DevTools protocol ------------------------------------

/// A headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
/// JSON messages ending in a NUL byte, commands on its fd 3, answers on its fd 4, here two
/// FIFOs a shell hands it), so a test can act as a user (move a slider, type a search) and
/// read the page back.
mod cdp {
    use std::fs::{File, OpenOptions};
    use std::io::{BufRead, BufReader, Write};
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    pub struct Browser {
        child: Child,
        to_browser: File,
        from_browser: Receiver<Value>,
        next_id: u64,
        /// The page's session (flat mode: every page command carries it).
        session: String,
    }

    impl Browser {
        /// Starts Chromium with a `width` x `height` page showing `url`.
        pub fn open(chromium: &str, profile: &Path, url: &str, width: u32, height: u32) -> Self {
            let (cmd_fifo, out_fifo) = (profile.join("cdp-in"), profile.join("cdp-out"));
            for f in [&cmd_fifo, &out_fifo] {
                let ok = Command::new("mkfifo").arg(f).status().expect("mkfifo");
                assert!(ok.success(), "mkfifo {}", f.display());
            }
            let child = Command::new("sh")
                .arg("-c")
                .arg(r#"in="$1"; out="$2"; shift 2; exec "$@" 3<"$in" 4>"$out""#)
                .arg("sh")
                .arg(&cmd_fifo)
                .arg(&out_fifo)
                .arg(chromium)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--remote-debugging-pipe",
                ])
                .arg(format!("--user-data-dir={}", profile.join("p").display()))
                .arg("about:blank")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting chromium");
            // The shell opens fd 3 (the command FIFO) first, then fd 4: open them in that order.
            let to_browser = OpenOptions::new().write(true).open(&cmd_fifo).unwrap();
            let from = File::open(&out_fifo).unwrap();
            let (tx, rx) = channel();
            std::thread::spawn(move || {
                let mut r = BufReader::new(from);
                let mut buf = Vec::new();
                while r.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                    if buf.last() == Some(&0) {
                        buf.pop();
                    }
                    if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                        && tx.send(v).is_err()
                    {
                        return;
                    }
                    buf.clear();
                }
            });
            let mut b = Browser {
                child,
                to_browser,
                from_browser: rx,
                next_id: 0,
                session: String::new(),
            };
            let target = b.call("Target.createTarget", json!({"url": "about:blank"}), false);
            let target = target["targetId"].as_str().unwrap().to_owned();
            let attached = b.call(
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
                false,
            );
            b.session = attached["sessionId"].as_str().unwrap().to_owned();
            b.call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
                true,
            );
            b.call("Page.navigate", json!({"url": url}), true);
            b
        }

        /// Sends one command (to the page's session when `page`) and waits for its answer.
        pub fn call(&mut self, method: &str, params: Value, page: bool) -> Value {
            self.next_id += 1;
            let id = self.next_id;
            let mut msg = json!({"id": id, "method": method, "params": params});
            if page {
                msg["sessionId"] = json!(self.session);
            }
            let mut bytes = msg.to_string().into_bytes();
            bytes.push(0);
            self.to_browser.write_all(&bytes).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.from_browser.recv_timeout(left) {
                    Ok(v) if v["id"] == id => {
                        assert!(v.get("error").is_none(), "{method}: {v}");
                        return v["result"].clone();
                    }
                    Ok(_) => {} // an event, or another answer
                    Err(RecvTimeoutError::Timeout) => panic!("{method}: no answer in 20 s"),
                    Err(RecvTimeoutError::Disconnected) => panic!("{method}: chromium is gone"),
                }
            }
        }

        /// The value of a JavaScript expression in the page (promises awaited).
        pub fn eval(&mut self, js: &str) -> Value {
            let r = self.call(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
                true,
            );
            assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
            r["result"]["value"].clone()
        }

        /// Waits until `js` is truthy in the page; panics with `what` after `limit`.
        pub fn wait(&mut self, what: &str, js: &str, limit: Duration) {
            let deadline = Instant::now() + limit;
            loop {
                let v = self.eval(js);
                if v.as_bool() == Some(true) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out after {limit:?} waiting for {what} ({js} = {v})"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        /// A PNG of the page as it is now.
        pub fn screenshot(&mut self) -> Vec<u8> {
            let r = self.call("Page.captureScreenshot", json!({"format": "png"}), true);
            base64_decode(r["data"].as_str().unwrap())
        }
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Standard base64 (with padding), as the protocol sends binary data.
    fn base64_decode(s: &str) -> Vec<u8> {
        let val = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
        let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
        for chunk in bytes.chunks(4) {
            let mut n = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                n |= u32::from(val(c)) << (18 - 6 * i);
            }
            let k = chunk.len() - 1;
            out.extend_from_slice(&n.to_be_bytes()[1..1 + k]);
        }
        out
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("aGVsbG8="), b"hello");
        assert_eq!(base64_decode("aGk="), b"hi");
        assert_eq!(base64_decode("YWJj"), b"abc");
    }
}

async fn get_json(router: &Router, path: &str, key: &str) -> Value {
    let req = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        status,
        StatusCode::OK,
        "{path}: {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap()
}

/// truck-7's recorded hour, every 10 s from `t0` (epoch ms): 15 min east at 60 km/h, parked
/// 12 min (a few metres of GPS jitter), 10 min on, parked 8 min, 10 min on.
fn recorded_trip(t0: i64) -> Vec<Reading> {
    let km_per_deg_lon = 111.32 * 38.85_f64.to_radians().cos();
    let mut out = Vec::new();
    let (mut lon, lat) = (121.30, 38.85);
    let mut t = t0;
    let legs: [(i64, f64); 5] = [(15, 60.0), (12, 0.0), (10, 60.0), (8, 0.0), (10, 60.0)];
    for (minutes, kmh) in legs {
        for k in 0..minutes * 6 {
            let (jlon, jlat) = if kmh == 0.0 {
                // A few metres either way, as a parked GPS drifts.
                let a = k as f64 * 2.1;
                (a.sin() * 4e-5, a.cos() * 3e-5)
            } else {
                (0.0, 0.0)
            };
            out.push(
                Reading::at(t)
                    .with_position(lon + jlon, lat + jlat)
                    .with_speed(kmh)
                    .with_heading(90.0),
            );
            lon += kmh / 360.0 / km_per_deg_lon;
            t += 10_000;
        }
    }
    out
}

/// Index of the first vertex at or after `ts_ms` of a track recorded every 10 s from `t0`.
fn rows_before(coords: &[Value], ts_ms: i64, t0: i64) -> usize {
    (((ts_ms - t0) + 9_999) / 10_000).clamp(0, coords.len() as i64 - 1) as usize
}

/// The label the page gives a stop of `s` seconds.
fn duration_label(s: f64) -> String {
    let s = s.round() as i64;
    match s {
        s if s < 60 => format!("{s} s"),
        s if s >= 3600 => format!(
            "{} h {:02} min",
            s / 3600,
            ((s % 3600) as f64 / 60.0).round()
        ),
        s => format!("{} min", (s as f64 / 60.0).round()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_replays_a_track_with_its_stops_in_a_real_browser() {
    let Some((t, router, key)) = map_with_acme().await else {
        return;
    };
    for (id, name) in [
        ("truck-7", "Reefer seven"),
        ("truck-9", "Flatbed nine"),
        ("van-3", "City van"),
    ] {
        let body = json!({"id": id, "name": name, "kind": "truck"});
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
    let shipment = json!({"id": "SHP-1", "device": "truck-7", "reference": "PO-77",
        "destination": "depot", "status": "in_transit",
        "route": {"type": "LineString", "coordinates": [[121.30, 38.85], [121.62, 38.92]]}});
    post(&router, "/v1/shipments", &key, shipment).await;
    fix(&t.tracker, "truck-9", 121.66, 38.95, 200.0).await;

    // An hour of truck-7's history, two hours ago, stored as the pipeline stores it.
    let t0 = (now_ms() - 2 * 3_600_000) / 60_000 * 60_000;
    let rows: Vec<_> = recorded_trip(t0)
        .into_iter()
        .map(|reading| landport_store::TelemetryRow {
            tenant: "acme".into(),
            device: "truck-7".into(),
            shipment: None,
            received_ms: reading.ts_ms,
            reading,
        })
        .collect();
    // And an alert while it was parked the first time, 17 min in (vertex 102).
    let alert_ms = t0 + 17 * 60_000;
    let alert = landport_tracker::Event {
        id: "evt_0123456789abcdef0123456789abcdef".into(),
        kind: landport_tracker::EventType::TemperatureExcursion,
        tenant: "acme".into(),
        device: "truck-7".into(),
        shipment: Some("SHP-1".into()),
        geofence: None,
        ts_ms: alert_ms,
        data: json!({"peak_c": -9.5}),
    };
    let mut store = landport_store::Store::open(t.dir.path()).unwrap();
    store.commit(&rows, &[alert]).unwrap();
    drop(store);

    // What the API says about the range the page is asked for: the page must draw exactly it.
    let (from_ms, to_ms) = (t0 - 5 * 60_000, t0 + 65 * 60_000);
    let rfc = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let range = format!("from={}&to={}", rfc(from_ms), rfc(to_ms));
    let track = get_json(&router, &format!("/v1/devices/truck-7/track?{range}"), &key).await;
    let coords = track["geometry"]["coordinates"].as_array().unwrap().clone();
    assert_eq!(coords.len(), rows.len());
    let stops = get_json(&router, &format!("/v1/devices/truck-7/stops?{range}"), &key).await;
    let stops = stops["stops"].as_array().unwrap().clone();
    assert_eq!(stops.len(), 2, "the two parked stretches: {stops:?}");
    let trips = get_json(&router, &format!("/v1/devices/truck-7/trips?{range}"), &key).await;
    let trips = trips["trips"].as_array().unwrap().clone();
    assert_eq!(trips.len(), 3, "the three drives: {trips:?}");
    // The panel lists stops and trips in time order.
    let mut timeline: Vec<(String, &str)> = stops
        .iter()
        .map(|s| (s["start"].as_str().unwrap().to_owned(), "stop-row"))
        .chain(
            trips
                .iter()
                .map(|t| (t["start"]["ts"].as_str().unwrap().to_owned(), "trip-row")),
        )
        .collect();
    timeline.sort();
    let timeline: Vec<&str> = timeline.into_iter().map(|(_, kind)| kind).collect();
    let mut labels: Vec<String> = stops
        .iter()
        .map(|s| duration_label(s["duration_s"].as_f64().unwrap()))
        .collect();
    labels.sort();

    let server = Served::start(&router).await;
    let addr = server.addr;
    // `from` as epoch ms, `to` as RFC 3339: the fragment takes both.
    let url = format!(
        "http://{addr}/#key={key}&device=truck-7&from={from_ms}&to={}",
        rfc(to_ms)
    );
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
    std::fs::create_dir_all(&shot).unwrap();
    let shot = shot.join("web_replay.png");
    let _ = std::fs::remove_file(&shot);
    let n = coords.len();
    let shot_path = shot.clone();
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        let mut b = cdp::Browser::open(CHROMIUM, profile.path(), &url, 1280, 800);
        let limit = Duration::from_secs(20);
        b.wait(
            "the track and its stops",
            "document.querySelectorAll('path.lp-track').length === 1 \
             && /stops?\\./.test(document.getElementById('replay-status').textContent)",
            limit,
        );
        // The stops the API found, each a marker labelled with its duration.
        let drawn = b.eval("document.querySelectorAll('path.lp-stop').length");
        assert_eq!(drawn.as_u64(), Some(stops.len() as u64));
        let mut shown: Vec<String> = serde_json::from_value(
            b.eval("[...document.querySelectorAll('.lp-stop-label')].map(e => e.textContent)"),
        )
        .unwrap();
        shown.sort();
        assert_eq!(shown, labels);
        let rows =
            b.eval("[...document.querySelectorAll('#replay-stops li')].map(e => e.className)");
        assert_eq!(rows, json!(timeline));
        let status = b.eval("document.getElementById('replay-status').textContent");
        assert!(status.as_str().unwrap().contains("3 trips"), "{status}");
        assert_eq!(
            b.eval("document.getElementById('replay-slider').max"),
            json!((n - 1).to_string())
        );
        // The key left the address bar; the replay stays in it.
        let hash = b.eval("location.hash");
        let hash = hash.as_str().unwrap();
        assert!(
            hash.contains("device=truck-7") && !hash.contains("key="),
            "{hash}"
        );

        // Moving the slider moves the marker to that vertex of the track.
        let marker = "(() => { const m = document.querySelector('.lp-replay'); \
            const r = m.getBoundingClientRect(); return {i: m.dataset.index, \
            lat: Number(m.dataset.lat), lon: Number(m.dataset.lon), x: r.x, y: r.y}; })()";
        let before = b.eval(marker);
        assert_eq!(before["i"], "0");
        let mid = n / 2;
        b.eval(&format!(
            "(() => {{ const s = document.getElementById('replay-slider'); s.value = '{mid}'; \
             s.dispatchEvent(new Event('input', {{bubbles: true}})); }})()"
        ));
        let after = b.eval(marker);
        assert_eq!(after["i"], mid.to_string());
        assert_eq!(after["lon"].as_f64(), coords[mid][0].as_f64());
        assert_eq!(after["lat"].as_f64(), coords[mid][1].as_f64());
        let moved_px = (after["x"].as_f64().unwrap() - before["x"].as_f64().unwrap()).abs()
            + (after["y"].as_f64().unwrap() - before["y"].as_f64().unwrap()).abs();
        assert!(moved_px > 20.0, "the marker moved {moved_px} px on screen");
        let label = b.eval("document.getElementById('replay-time').textContent");
        assert!(
            label
                .as_str()
                .unwrap()
                .contains(&format!("({} / {n})", mid + 1)),
            "{label}"
        );
        // The page as a user sees it now, for a look.
        std::fs::write(&shot_path, b.screenshot()).unwrap();

        // Play moves it on by itself; pressing again pauses.
        b.eval("document.getElementById('replay-play').click()");
        b.wait(
            "the replay to move on",
            &format!("Number(document.querySelector('.lp-replay').dataset.index) > {mid}"),
            limit,
        );
        b.eval("document.getElementById('replay-play').click()");

        // Planned routes and geofence names are on the map.
        let route =
            b.eval("document.querySelectorAll('path.lp-route[data-shipment-id=\"SHP-1\"]').length");
        assert_eq!(route, json!(1));
        let fences: Vec<String> = serde_json::from_value(
            b.eval("[...document.querySelectorAll('.lp-fence-label')].map(e => e.textContent)"),
        )
        .unwrap();
        assert!(
            fences.contains(&"Dalian depot".to_owned())
                && fences.contains(&"G15 corridor".to_owned()),
            "{fences:?}"
        );

        // A shipment's record comes as a PDF file from its button.
        b.eval(
            "document.querySelector('li[data-shipment-id=\"SHP-1\"] button[data-format=\"pdf\"]')\
             .click()",
        );
        b.wait(
            "the record's PDF",
            "(document.querySelector('li[data-shipment-id=\"SHP-1\"] button[data-format=\"pdf\"]')\
             .getAttribute('data-got') || '').startsWith('application/pdf ')",
            limit,
        );

        // The device list: every device, then what the search matches (by name or id).
        let rows =
            "[...document.querySelectorAll('#devices li[data-device]')].map(e => e.dataset.device)";
        assert_eq!(b.eval(rows), json!(["truck-7", "truck-9", "van-3"]));
        let search = |b: &mut cdp::Browser, text: &str| {
            b.eval(&format!(
                "(() => {{ const s = document.getElementById('device-search'); s.value = '{text}'; \
                 s.dispatchEvent(new Event('input', {{bubbles: true}})); }})()"
            ));
        };
        search(&mut b, "VAN");
        b.wait(
            "the search to filter",
            &format!("JSON.stringify({rows}) === '[\"van-3\"]'"),
            limit,
        );
        search(&mut b, "reefer");
        b.wait(
            "a search by name",
            &format!("JSON.stringify({rows}) === '[\"truck-7\"]'"),
            limit,
        );
        // An alert in the events panel opens its device's replay at that moment.
        b.eval("document.querySelector('#events li[data-event-id] ').click()");
        let at = rows_before(&coords, alert_ms, t0);
        b.wait(
            "the replay at the alert",
            &format!(
                "document.querySelectorAll('path.lp-track').length === 1 \
                 && document.querySelector('.lp-replay').dataset.index === '{at}'"
            ),
            limit,
        );

        // Picking a device in the list opens its replay.
        search(&mut b, "");
        b.eval("document.querySelector('#devices li[data-device=\"van-3\"]').click()");
        b.wait(
            "van-3's (empty) replay",
            "document.getElementById('replay-device').textContent === 'van-3' \
             && document.getElementById('replay-status').textContent.startsWith('No positions')",
            limit,
        );
        assert_eq!(
            b.eval("document.querySelectorAll('path.lp-track').length"),
            json!(0)
        );
    })
    .await
    .unwrap();
    server.stop().await;
    assert!(shot.exists(), "no screenshot at {}", shot.display());
}
