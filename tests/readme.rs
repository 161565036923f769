//! The README's shell examples, run as written against the real binary: what a newcomer types
//! must work. Only what a test machine needs is rewritten: free ports for 8080 and 1883, a
//! temporary data directory, the key the README calls `<the key>`, a few seconds instead of 60
//! for the simulator, waits where a person would watch (see [`run_block`]), and an end to the
//! live stream.

mod support;
#[path = "../ingest/tests/support_mqtt/mod.rs"]
mod support_mqtt;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{free_port, http_get, wait_for};

const README: &str = include_str!("../README.md");

/// The first `n` ```sh blocks after the line `heading`, one after the other.
fn sh_blocks_after(heading: &str, n: usize) -> String {
    let mut rest = README
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no heading {heading:?}"))
        .1;
    let mut out = String::new();
    for _ in 0..n {
        let body = rest.split_once("```sh\n").expect("a sh block").1;
        let (block, after) = body.split_once("\n```").expect("the block ends");
        out.push_str(block);
        out.push('\n');
        rest = after;
    }
    out
}

/// A `landport run` started the way a README line says (its `VAR=value` prefixes), on free
/// ports and a temporary data directory.
struct Service {
    child: Child,
    http: SocketAddr,
    mqtt: u16,
}

impl Service {
    fn start(line: &str, dir: &Path) -> Service {
        let (http, mqtt) = (SocketAddr::from(([127, 0, 0, 1], free_port())), free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_landport"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let exe = words
            .iter()
            .position(|w| w.ends_with("/landport"))
            .unwrap_or_else(|| panic!("not a landport command: {line}"));
        for assignment in &words[..exe] {
            let (k, v) = assignment.split_once('=').expect("VAR=value");
            cmd.env(k, v);
        }
        cmd.args(&words[exe + 1..])
            .env("LANDPORT_HTTP__LISTEN", http.to_string())
            .env("LANDPORT_MQTT__LISTEN", format!("127.0.0.1:{mqtt}"))
            .env("LANDPORT_STORAGE__PATH", dir.join("data"))
            .env("LANDPORT_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("starting landport");
        wait_for("landport /readyz", Duration::from_secs(60), || {
            http_get(http, "/readyz").filter(|(s, _)| *s == 200)
        });
        Service { child, http, mqtt }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a README block with bash, after the rewrites the module docs list; the service lines
/// (`... landport run`) start `Service`s instead. Returns everything the commands printed, the
/// output of the background ones (`mosquitto_sub ... &`, the live stream) last.
///
/// No step waits a fixed time. A background subscriber is waited for until it receives a
/// probe published after it started; each `mosquitto_pub` until Landport has taken the message
/// in and committed its batch (`/metrics`); the live stream until it has sent its `: ready`;
/// and before the background commands are ended, until their output holds each of
/// `background_until` (each wait fails the script's output with `TIMEOUT ...` after 30 s).
fn run_block(block: &str, dir: &Path, background_until: &[&str]) -> (String, Vec<Service>) {
    let mut services = Vec::new();
    let mut script = String::new();
    let mut background = Vec::new();
    for line in block.lines() {
        if line.trim() == "cargo build --release" {
            continue;
        }
        if line.trim_end().ends_with("/landport run") {
            services.push(Service::start(line, dir));
            continue;
        }
        let out = dir.join(format!("background-{}.out", background.len()));
        if line.starts_with("mosquitto_sub ") && line.trim_end().ends_with(" &") {
            // Probe on a topic the subscription's first filter matches.
            let filter = line
                .split_whitespace()
                .skip_while(|w| *w != "-t")
                .nth(1)
                .expect("mosquitto_sub -t FILTER")
                .trim_matches('\'');
            // Landport's endpoint sends subscribers only its events and rejections: the probe
            // is a payload it refuses on the telemetry topic of the filter's device, explained
            // on `.../rejected` (which the README's subscriptions cover) with the payload.
            let probe = filter.replace(['+', '#'], "readme-probe");
            let probe = match probe.rsplit_once('/') {
                Some((device, _)) if probe.starts_with("landport/") => {
                    format!("{device}/telemetry")
                }
                _ => probe,
            };
            let command = line.trim_end().trim_end_matches('&');
            script.push_str(&format!(
                "{command} > {out} 2>&1 &\nwait_subscribed {out} '{probe}'\n",
                out = out.display()
            ));
            background.push(out);
            continue;
        }
        if line.contains("/v1/stream") {
            let command = line.split_once("  #").map_or(line, |(c, _)| c);
            script.push_str(&format!(
                "{command} -N > {out} 2>&1 &\nwait_until 'the live stream to open' grep -q '^: ready' {out}\n",
                out = out.display()
            ));
            background.push(out);
            continue;
        }
        script.push_str(line);
        script.push('\n');
    }
    let service = services.last().expect("the block starts a service");
    let (http, mqtt) = (service.http, service.mqtt);
    let key_file = dir.join("key.json");
    let script = script
        .replace("localhost:8080", &http.to_string())
        .replace("mosquitto_pub ", "pub_and_wait ")
        .replace("mosquitto_sub ", &format!("mosquitto_sub -p {mqtt} "))
        .replace(
            "/v1/tenants/acme/keys -H \"$A\"",
            &format!(
                "/v1/tenants/acme/keys -H \"$A\" | tee {}",
                key_file.display()
            ),
        )
        .replace(
            "'Authorization: Bearer <the key>'",
            "\"Authorization: Bearer $(the_key)\"",
        )
        // The tenant key as MQTT password (`mosquitto_pub -u acme -P '<the key>'`).
        .replace("'<the key>'", "\"$(the_key)\"");
    // `pub_and_wait`: the pipeline takes messages in one loop and commits each batch before
    // the next, and nothing else is going on here: the first commit after a publish that
    // counts it in `messages_in` is the commit of its batch.
    let preamble = format!(
        r#"wait_until() {{
  local what=$1 end=$((SECONDS + 30)); shift
  until "$@"; do
    if [ $SECONDS -ge $end ]; then echo "TIMEOUT waiting for $what"; return 1; fi
    sleep 0.05
  done
}}
metric() {{ curl -s --max-time 5 {http}/metrics | awk -v n="$1" '$1 == n {{ print $2 }}'; }}
at_least() {{ local v; v=$(metric "$1"); [ "${{v:-0}}" -ge "$2" ]; }}
PUBLISHED=0
pub_and_wait() {{
  local commits; commits=$(metric landport_store_commits_total)
  mosquitto_pub -p {mqtt} "$@" || return
  PUBLISHED=$((PUBLISHED + 1))
  wait_until "message $PUBLISHED to be taken in" at_least landport_messages_in_total $PUBLISHED &&
    wait_until "message $PUBLISHED to be committed" \
      at_least landport_store_commits_total $(( ${{commits:-0}} + 1 ))
}}
wait_subscribed() {{
  local n=0 end=$((SECONDS + 30))
  until grep -q readme-probe- "$1"; do
    if [ $SECONDS -ge $end ]; then echo "TIMEOUT waiting for the subscriber of $1"; return 1; fi
    n=$((n + 1)); mosquitto_pub -p {mqtt} -t "$2" -m "readme-probe-$n"
    sleep 0.05
  done
}}
the_key() {{ sed -E 's/.*"key":"([^"]+)".*/\1/' {key}; }}
"#,
        key = key_file.display()
    );
    let outputs: Vec<String> = background.iter().map(|p| p.display().to_string()).collect();
    let mut epilogue = String::new();
    for needle in background_until {
        epilogue.push_str(&format!(
            "wait_until '{needle:?} in the background output' grep -qF -- '{needle}' {}\n",
            outputs.join(" ")
        ));
    }
    epilogue.push_str("kill $(jobs -p) 2>/dev/null\nwait\n");
    for out in &outputs {
        epilogue.push_str(&format!("cat {out}\n"));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{preamble}{script}{epilogue}"))
        .output()
        .expect("bash");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("TIMEOUT"), "{text}");
    (text, services)
}

#[test]
fn quick_start_accepts_every_format_and_explains_a_refusal() {
    if !support_mqtt::require("mosquitto_pub") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (out, services) = run_block(
        &sh_blocks_after("## Quick start", 2),
        tmp.path(),
        &["landport/default/truck-17/rejected"],
    );
    assert!(
        out.contains("landport/default/truck-17/rejected"),
        "the refused reading is explained on the rejected topic:\n{out}"
    );
    let accepted: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("landport_readings_accepted_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("/metrics was printed:\n{out}"));
    assert!(
        accepted >= 3.0,
        "native, SenML and OwnTracks readings: {out}"
    );

    // The simulator example, against the same running service.
    let simulate = sh_blocks_after(
        "To drive your own broker or a running Landport with the simulator:",
        1,
    );
    let simulate = simulate
        .replace("\\\n", " ")
        .replace("landport simulate", env!("CARGO_BIN_EXE_landport"))
        .replace(
            "mqtt://127.0.0.1:1883",
            &format!("mqtt://127.0.0.1:{}", services[0].mqtt),
        )
        .replace("--duration-seconds 60", "--duration-seconds 3");
    let words: Vec<&str> = simulate.split_whitespace().collect();
    let status = Command::new(words[0])
        .arg("simulate")
        .args(&words[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{simulate}");
}

#[test]
fn the_http_api_tour_sets_up_a_tenant_and_shows_position_events_eta_and_a_share_link() {
    if !support_mqtt::require("mosquitto_pub") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (out, _services) = run_block(&sh_blocks_after("### The HTTP API", 1), tmp.path(), &[]);
    for (what, needle) in [
        ("the tenant's key", "\"key\":\"lp_"),
        ("the device inside the yard", "\"geofences\":[\"yard\"]"),
        ("the entered event", "geofence.entered"),
        ("an ETA window", "\"p10\":"),
        ("the ETA's method", "\"method\":\"direct\""),
        ("a share token", "\"token\":"),
        ("the live stream, open", ": ready"),
    ] {
        assert!(out.contains(needle), "{what} ({needle}) in:\n{out}");
    }
}
