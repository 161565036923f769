//! `landport demo` on free ports: within a bounded time the newcomer sees moving trucks, an
//! ETA and events over HTTP, with the key the demo prints.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{free_port, http, wait_for};

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `landport demo` on free ports with its data in `tmp`; returns the HTTP address.
fn start_demo(tmp: &std::path::Path) -> (SocketAddr, std::process::Child) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mqtt = free_port();
    let config = tmp.join("demo.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"{addr}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n\
             [storage]\npath = \"{}\"\n[log]\nlevel = \"warn\"\n",
            tmp.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_landport"))
        .args(["demo", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (addr, child)
}

#[test]
fn the_demo_shows_moving_trucks_an_eta_and_events_within_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let (addr, mut child) = start_demo(tmp.path());
    let stdout = child.stdout.take().unwrap();
    let _guard = Kill(child);
    // Keep reading stdout to the end, as a terminal would, and hand over the key.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(k) = line.split("#key=").nth(1) {
                let _ = tx.send(k.trim().to_owned());
            }
        }
    });
    let key = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the demo prints the map URL with its key");
    let k = Some(key.as_str());
    wait_for("the service to be ready", Duration::from_secs(30), || {
        support::http_get(addr, "/readyz").filter(|(s, _)| *s == 200)
    });

    // Trucks with positions, and two looks apart show that they move.
    let positions = || -> Option<Vec<(String, f64, f64)>> {
        let (s, body) = http(addr, "GET", "/v1/devices", k, None);
        (s == 200).then_some(())?;
        let v: Vec<_> = body["devices"]
            .as_array()?
            .iter()
            .filter(|d| d["id"].as_str().is_some_and(|id| id.starts_with("truck-")))
            .filter_map(|d| {
                let p = &d["position"];
                Some((
                    d["id"].as_str()?.to_owned(),
                    p["lon"].as_f64()?,
                    p["lat"].as_f64()?,
                ))
            })
            .collect();
        (v.len() >= 3).then_some(v)
    };
    let first = wait_for("trucks on the map", Duration::from_secs(30), positions);
    wait_for("a truck to move", Duration::from_secs(30), || {
        let now = positions()?;
        now.iter()
            .any(|(id, lon, lat)| {
                first
                    .iter()
                    .any(|(i, l0, a0)| i == id && (l0 != lon || a0 != lat))
            })
            .then_some(())
    });
    wait_for("an ETA for SHP-1", Duration::from_secs(30), || {
        let (s, eta) = http(addr, "GET", "/v1/shipments/SHP-1/eta", k, None);
        (s == 200 && eta["remaining_m"].as_f64().is_some()).then_some(())
    });
    wait_for("events", Duration::from_secs(60), || {
        let (s, body) = http(addr, "GET", "/v1/events", k, None);
        (s == 200 && !body["events"].as_array()?.is_empty()).then_some(())
    });
    // The map page itself is served.
    let (s, _) = http(addr, "GET", "/", None, None);
    assert_eq!(s, 200);
}

/// `landport demo | head -3`: the reader goes away; the service stays up.
#[test]
fn the_demo_keeps_running_when_its_stdout_is_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let (addr, mut child) = start_demo(tmp.path());
    // Closed before the banner is written, like a reader that has already gone away.
    drop(child.stdout.take());
    let guard = Kill(child);
    wait_for("the service to be ready", Duration::from_secs(30), || {
        support::http_get(addr, "/readyz").filter(|(s, _)| *s == 200)
    });
    let mut guard = guard;
    assert!(
        guard.0.try_wait().unwrap().is_none(),
        "the demo exited when its stdout closed"
    );
}
