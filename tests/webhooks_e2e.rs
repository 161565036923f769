//! End to end: webhooks (SPEC 13) of the real `landport run` binary, delivering to real HTTP
//! receivers on loopback (`webhooks.allow_private_targets = true`), with telemetry through a
//! Mosquitto of our own. Signatures are checked by the Standard Webhooks reference library
//! (PyPI `standardwebhooks`) and by the README's standard-library snippet.

mod support;
#[path = "../ingest/tests/support_mqtt/mod.rs"]
mod support_mqtt;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use landport_store::{EventFilter, Store};
use rumqttc::QoS;
use serde_json::{Value, json};
use support::webhook_receiver::{Got, Receiver};
use support::{Landport, free_port, http, http_get, seed_fence, wait_for};
use support_mqtt::{Mosquitto, publish};

const ADMIN: &str = "e2e-admin-key-0123456789abcdefghijk";
const T0: i64 = 1_795_400_000_000;

/// The reference implementation's verdict on a delivery signed with `secret`.
fn reference_verifies(secret: &str, g: &Got) -> bool {
    const PY: &str = "import sys, json\n\
        from standardwebhooks import Webhook\n\
        Webhook(sys.argv[1]).verify(open(sys.argv[2], 'rb').read(), json.loads(sys.argv[3]))\n";
    run_python(PY, secret, g)
}

/// Runs `code` with argv `secret body-file headers-json`; whether it exited 0.
fn run_python(code: &str, secret: &str, g: &Got) -> bool {
    let tmp = tempfile::tempdir().unwrap();
    let body = tmp.path().join("body");
    std::fs::write(&body, &g.body).unwrap();
    let headers = serde_json::to_string(&g.headers).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-c", code, secret])
        .arg(&body)
        .arg(&headers)
        .output()
        .expect("running python3 (scripts/test installs standardwebhooks)");
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

/// The README's standard-library verification snippet (the ```python block of its webhooks
/// section), run on a delivery.
fn readme_snippet_verifies(secret: &str, g: &Got) -> bool {
    let readme = include_str!("../README.md");
    let section = readme
        .split_once("\n### Webhooks\n")
        .expect("README has a ### Webhooks section")
        .1;
    let snippet = section
        .split_once("```python\n")
        .expect("a python block")
        .1
        .split_once("\n```")
        .unwrap()
        .0;
    let code = format!(
        "import sys, json\n{snippet}\n\
         h = json.loads(sys.argv[3])\n\
         body = open(sys.argv[2], 'rb').read()\n\
         sys.exit(0 if verify(sys.argv[1], h['webhook-id'], h['webhook-timestamp'], \
         h['webhook-signature'], body) else 1)\n"
    );
    run_python(&code, secret, g)
}

fn native(ts_ms: i64, lon: f64, lat: f64) -> Vec<u8> {
    format!(r#"{{"ts":{ts_ms},"lat":{lat},"lon":{lon},"speed_kmh":40}}"#).into_bytes()
}

/// `n` readings of a truck alternating outside and inside the warehouse (`support::warehouse`)
/// a minute apart from `start_ms`, starting outside: an entry or exit at each one after the
/// first.
fn shuttle(start_ms: i64, n: usize, lat: f64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let lon = if i % 2 == 0 { 123.05 } else { 123.0 };
            native(start_ms + i as i64 * 60_000, lon, lat)
        })
        .collect()
}

/// A tenant and a key for it, over HTTP with the admin key.
fn tenant_key(addr: SocketAddr, tenant: &str) -> String {
    let (s, b) = http(
        addr,
        "POST",
        "/v1/tenants",
        Some(ADMIN),
        Some(&json!({"id": tenant, "name": tenant})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = http(
        addr,
        "POST",
        &format!("/v1/tenants/{tenant}/keys"),
        Some(ADMIN),
        None,
    );
    assert_eq!(s, 201, "{b}");
    b["key"].as_str().unwrap().to_owned()
}

/// Creates a webhook; returns (id, secret).
fn webhook(addr: SocketAddr, key: &str, url: &str, events: &[&str]) -> (String, String) {
    let (s, b) = http(
        addr,
        "POST",
        "/v1/webhooks",
        Some(key),
        Some(&json!({"url": url, "events": events, "description": "e2e"})),
    );
    assert_eq!(s, 201, "{b}");
    assert!(b["secret"].as_str().unwrap().starts_with("whsec_"), "{b}");
    (
        b["id"].as_str().unwrap().to_owned(),
        b["secret"].as_str().unwrap().to_owned(),
    )
}

/// The ids of the stored events of `tenant` whose type is one of `types` (all for `&[]`).
fn stored_ids(dir: &std::path::Path, tenant: &str, types: &[&str]) -> BTreeSet<String> {
    let Ok(store) = Store::open_reader(&dir.join("data")) else {
        return BTreeSet::new();
    };
    store
        .events_after(
            &EventFilter {
                tenant: Some(tenant.to_owned()),
                ..EventFilter::default()
            },
            100_000,
        )
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, e)| types.is_empty() || types.contains(&e.kind.as_str()))
        .map(|(_, e)| e.id)
        .collect()
}

fn config(dir: &std::path::Path, http_addr: SocketAddr, broker: u16, extra: &str) -> String {
    Landport::config(
        dir,
        http_addr,
        broker,
        false,
        &format!("[auth]\nadmin_key = \"{ADMIN}\"\n{extra}"),
    )
}

/// A labelled sample of the Prometheus text (`name{labels}` exactly), 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == series).then(|| v.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_retried_filtered_replayed_and_kept_to_their_tenant() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    seed_fence(dir, "acme");
    seed_fence(dir, "beta");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg = config(
        dir,
        addr,
        broker.port,
        "[webhooks]\nallow_private_targets = true\n[limits]\nwebhooks = 3\n",
    );
    let lp = Landport::start(dir, &cfg, addr, broker.port);
    let acme = tenant_key(addr, "acme");
    let beta = tenant_key(addr, "beta");

    // acme: entries only, to a receiver that fails twice first; shipment events to another.
    let a = Receiver::start();
    a.script.lock().unwrap().extend([500, 503]);
    let (a_id, a_secret) = webhook(addr, &acme, &a.url("/a"), &["geofence.entered"]);
    let c = Receiver::start();
    let (_c_id, _) = webhook(addr, &acme, &c.url("/c"), &["shipment.*"]);
    // beta: everything; and one that answers 410 Gone.
    let b = Receiver::start();
    let (b_id, b_secret) = webhook(addr, &beta, &b.url("/b"), &["*"]);
    let gone = Receiver::start();
    gone.status.store(410, Ordering::Relaxed);
    let (gone_id, _) = webhook(addr, &beta, &gone.url("/gone"), &["geofence.*"]);

    // Bad input: an unknown type, a third... fourth webhook of acme past limits.webhooks = 3.
    let (s, e) = http(
        addr,
        "POST",
        "/v1/webhooks",
        Some(&acme),
        Some(&json!({"url": a.url("/x"), "events": ["geofense.*"]})),
    );
    assert_eq!(s, 400, "{e}");
    assert!(e.to_string().contains("geofense.*"), "{e}");
    webhook(addr, &acme, &a.url("/third"), &["device.offline"]);
    let (s, e) = http(
        addr,
        "POST",
        "/v1/webhooks",
        Some(&acme),
        Some(&json!({"url": a.url("/x")})),
    );
    assert_eq!(s, 422, "{e}");
    assert_eq!(e["error"]["limit"], "limits.webhooks", "{e}");

    // Tenant isolation over HTTP: another tenant's webhook is not there.
    for (method, path) in [
        ("GET", format!("/v1/webhooks/{a_id}")),
        ("PATCH", format!("/v1/webhooks/{a_id}")),
        ("DELETE", format!("/v1/webhooks/{a_id}")),
        ("POST", format!("/v1/webhooks/{a_id}/rotate-secret")),
        ("GET", format!("/v1/webhooks/{a_id}/deliveries")),
        ("POST", format!("/v1/webhooks/{a_id}/replay")),
    ] {
        let body = match method {
            "PATCH" => Some(json!({"description": "mine now"})),
            "POST" if path.ends_with("replay") => Some(json!({
                "from": "2020-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"})),
            _ => None,
        };
        let (s, e) = http(addr, method, &path, Some(&beta), body.as_ref());
        assert_eq!(s, 404, "{method} {path}: {e}");
    }
    let (_, list) = http(addr, "GET", "/v1/webhooks", Some(&beta), None);
    let ids: Vec<&str> = list["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(ids.contains(&b_id.as_str()) && ids.contains(&gone_id.as_str()));
    assert!(list["webhooks"][0].get("secret").is_none(), "{list}");

    // Telemetry: acme's truck in and out three times, beta's once.
    publish(
        broker.port,
        "landport/acme/truck-1/telemetry",
        shuttle(T0, 7, 41.0),
        QoS::AtLeastOnce,
    )
    .await;
    publish(
        broker.port,
        "landport/beta/van-1/telemetry",
        shuttle(T0, 3, 41.001),
        QoS::AtLeastOnce,
    )
    .await;
    let entered = wait_for("acme's entries stored", Duration::from_secs(60), || {
        let ids = stored_ids(dir, "acme", &["geofence.entered"]);
        (ids.len() == 3).then_some(ids)
    });
    let beta_events = wait_for("beta's events stored", Duration::from_secs(60), || {
        let ids = stored_ids(dir, "beta", &[]);
        (ids.len() >= 2).then_some(ids)
    });

    // acme's entries arrive, each at least once, after two failed tries (retried with the
    // same webhook-id).
    wait_for("acme's entries delivered", Duration::from_secs(90), || {
        (a.delivered_ids() == entered).then_some(())
    });
    let got = a.got();
    let failed: Vec<&Got> = got.iter().filter(|g| g.status >= 500).collect();
    assert_eq!(failed.len(), 2);
    for f in &failed {
        assert!(
            entered.contains(f.header("webhook-id")),
            "a retry keeps the id"
        );
    }
    for g in &got {
        let e = g.event();
        assert_eq!(e["tenant"], "acme", "no other tenant's event: {e}");
        assert_eq!(e["type"], "geofence.entered", "the filter holds: {e}");
        assert_eq!(e["id"].as_str().unwrap(), g.header("webhook-id"));
        assert_eq!(g.header("content-type"), "application/json");
        let ts: i64 = g.header("webhook-timestamp").parse().unwrap();
        assert!(
            (ts - T0 / 1000).abs() > 1000,
            "the attempt's time, not the event's"
        );
    }
    // Signatures, by the reference implementation and by the README's snippet; a body
    // changed in transit, or another secret, fails both.
    let ok = a.delivered()[0].clone();
    assert!(reference_verifies(&a_secret, &ok), "reference verifies");
    assert!(readme_snippet_verifies(&a_secret, &ok), "README verifies");
    let mut tampered = ok.clone();
    tampered.body = String::from_utf8(ok.body.clone())
        .unwrap()
        .replace("acme", "acmf")
        .into_bytes();
    assert!(!reference_verifies(&a_secret, &tampered));
    assert!(!readme_snippet_verifies(&a_secret, &tampered));
    assert!(!reference_verifies(&b_secret, &ok));
    // Nothing for the shipment-events webhook.
    assert!(c.got().is_empty());

    // The deliveries list shows the retried ones.
    let (s, d) = http(
        addr,
        "GET",
        &format!("/v1/webhooks/{a_id}/deliveries?status=delivered"),
        Some(&acme),
        None,
    );
    assert_eq!(s, 200, "{d}");
    let ds = d["deliveries"].as_array().unwrap();
    assert_eq!(ds.len(), 3, "{d}");
    let attempts: u64 = ds.iter().map(|d| d["attempts"].as_u64().unwrap()).sum();
    assert_eq!(attempts, 5, "{d}");
    assert!(ds.iter().all(|d| d["last_status"] == 200));

    // beta: its events to b, none of acme's; the 410 disables its webhook.
    wait_for("beta's events delivered", Duration::from_secs(60), || {
        (b.delivered_ids() == beta_events).then_some(())
    });
    assert!(b.got().iter().all(|g| g.event()["tenant"] == "beta"));
    assert!(reference_verifies(&b_secret, &b.delivered()[0]));
    let disabled = wait_for("the 410 webhook disabled", Duration::from_secs(30), || {
        let (_, w) = http(
            addr,
            "GET",
            &format!("/v1/webhooks/{gone_id}"),
            Some(&beta),
            None,
        );
        (w["enabled"] == false).then_some(w)
    });
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410"),
        "{disabled}"
    );
    let (_, d) = http(
        addr,
        "GET",
        &format!("/v1/webhooks/{gone_id}/deliveries?status=failed"),
        Some(&beta),
        None,
    );
    assert!(
        d["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["last_status"] == 410),
        "{d}"
    );
    let gone_calls = gone.got().len();
    assert!(gone_calls >= 1);

    // A replay of the range sends acme's entries again (and only those).
    let (s, r) = http(
        addr,
        "POST",
        &format!("/v1/webhooks/{a_id}/replay"),
        Some(&acme),
        Some(&json!({"from": "2026-11-23T00:00:00Z", "to": "2026-11-23T23:59:59Z"})),
    );
    assert_eq!(s, 202, "{r}");
    assert_eq!(r["queued"], 3, "{r}");
    wait_for("the replay delivered", Duration::from_secs(60), || {
        (a.delivered().len() == 6).then_some(())
    });
    assert_eq!(a.delivered_ids(), entered, "the same ids again");

    // Rotation: both secrets sign for a day.
    let (s, rot) = http(
        addr,
        "POST",
        &format!("/v1/webhooks/{a_id}/rotate-secret"),
        Some(&acme),
        None,
    );
    assert_eq!(s, 200, "{rot}");
    let new_secret = rot["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, a_secret);
    assert!(rot["previous_secret_expires_at"].is_string(), "{rot}");
    // One delivery retried by hand, under the new secret.
    let one = ds[0]["id"].as_str().unwrap();
    let (s, d) = http(
        addr,
        "POST",
        &format!("/v1/webhooks/{a_id}/deliveries/{one}/retry"),
        Some(&acme),
        None,
    );
    assert_eq!(s, 202, "{d}");
    assert_eq!(d["status"], "pending");
    let after = wait_for("the retried delivery", Duration::from_secs(60), || {
        let got = a.delivered();
        (got.len() == 7).then(|| got[6].clone())
    });
    assert_eq!(
        after.header("webhook-id"),
        ds[0]["event_id"].as_str().unwrap()
    );
    assert_eq!(after.header("webhook-signature").split(' ').count(), 2);
    assert!(reference_verifies(&new_secret, &after), "the new secret");
    assert!(
        reference_verifies(&a_secret, &after),
        "the old secret, for 24 h"
    );
    assert!(readme_snippet_verifies(&new_secret, &after));

    // More beta events: the disabled webhook gets none of them.
    publish(
        broker.port,
        "landport/beta/van-1/telemetry",
        shuttle(T0 + 3_600_000, 3, 41.001),
        QoS::AtLeastOnce,
    )
    .await;
    let more = wait_for(
        "beta's next events delivered",
        Duration::from_secs(60),
        || {
            let stored = stored_ids(dir, "beta", &[]);
            (stored.len() > beta_events.len() && b.delivered_ids() == stored).then_some(stored)
        },
    );
    assert!(more.len() > beta_events.len());
    assert_eq!(
        gone.got().len(),
        gone_calls,
        "a disabled webhook is not called"
    );

    // /metrics counts outcomes and latencies; the health page is served.
    let m = lp.metrics();
    assert!(
        sample(
            &m,
            "landport_webhook_deliveries_total{outcome=\"delivered\"}"
        ) >= 7.0,
        "{m}"
    );
    assert!(sample(&m, "landport_webhook_deliveries_total{outcome=\"retried\"}") >= 2.0);
    assert!(sample(&m, "landport_webhook_deliveries_total{outcome=\"failed\"}") >= 1.0);
    assert!(sample(&m, "landport_webhook_delivery_latency_seconds_count") >= 7.0);
    let (s, page) = http_get(addr, "/webhooks").unwrap();
    assert_eq!(s, 200);
    assert!(page.contains("/webhooks/app.js"), "{page}");
    let (s, script) = http_get(addr, "/webhooks/app.js").unwrap();
    assert_eq!(s, 200);
    assert!(script.contains("/v1/webhooks"), "the page reads the API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_deliveries_pending_and_a_receiver_down_loses_no_event() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    seed_fence(dir, "acme");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg = config(
        dir,
        addr,
        broker.port,
        "[webhooks]\nallow_private_targets = true\n",
    );
    let mut lp = Landport::start(dir, &cfg, addr, broker.port);
    let key = tenant_key(addr, "acme");
    // The receiver is down: its port is free, nothing listens.
    let port = free_port();
    let (id, secret) = webhook(addr, &key, &format!("http://127.0.0.1:{port}/hook"), &["*"]);
    publish(
        broker.port,
        "landport/acme/truck-1/telemetry",
        shuttle(T0, 20, 41.0),
        QoS::AtLeastOnce,
    )
    .await;
    let first = wait_for("events stored", Duration::from_secs(60), || {
        let ids = stored_ids(dir, "acme", &[]);
        (ids.len() >= 19).then_some(ids)
    });
    // Tried and failed: pending, with the refusal recorded.
    let w = wait_for("a failed attempt", Duration::from_secs(60), || {
        let (_, w) = http(addr, "GET", &format!("/v1/webhooks/{id}"), Some(&key), None);
        (w["health"]["failures"].as_u64().unwrap_or(0) >= 1).then_some(w)
    });
    assert!(w["health"]["pending"].as_u64().unwrap() >= 19, "{w}");
    assert!(w["health"]["last_error"].is_string(), "{w}");
    wait_for("the pending gauges", Duration::from_secs(30), || {
        let m = lp.metrics();
        let pending = format!("landport_webhook_pending{{webhook=\"{id}\",tenant=\"acme\"}}");
        (m.contains(&pending) && m.contains("landport_webhook_oldest_pending_seconds{"))
            .then_some(())
    });

    lp.kill9();
    // While it is down, more telemetry waits in the broker.
    publish(
        broker.port,
        "landport/acme/truck-1/telemetry",
        shuttle(T0 + 3_600_000, 10, 41.0),
        QoS::AtLeastOnce,
    )
    .await;
    lp.restart();
    let all = wait_for("every event stored", Duration::from_secs(60), || {
        let ids = stored_ids(dir, "acme", &[]);
        (ids.len() >= first.len() + 9).then_some(ids)
    });
    // The receiver comes up a few seconds later.
    std::thread::sleep(Duration::from_secs(3));
    let r = Receiver::start_on(port);
    wait_for(
        "every stored event delivered at least once",
        Duration::from_secs(180),
        || r.delivered_ids().is_superset(&all).then_some(()),
    );
    assert!(
        r.delivered()
            .iter()
            .all(|g| g.event()["tenant"] == "acme" && reference_verifies(&secret, g)),
        "signed, one tenant"
    );
    let w = wait_for("nothing pending", Duration::from_secs(30), || {
        let (_, w) = http(addr, "GET", &format!("/v1/webhooks/{id}"), Some(&key), None);
        (w["health"]["pending"] == 0).then_some(w)
    });
    assert!(w["health"]["last_success"].is_string(), "{w}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_at_creation_and_after_dns() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    seed_fence(dir, "acme");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // A webhook to a loopback address stored while private targets were allowed (a lab
    // config, or a write from before): the engine refuses it at connection time too.
    let seeded = TcpListener::bind("127.0.0.1:0").unwrap();
    seeded.set_nonblocking(true).unwrap();
    let seeded_port = seeded.local_addr().unwrap().port();
    Store::open(&dir.join("data"))
        .unwrap()
        .insert_webhook(&landport_store::WebhookRecord {
            tenant: "acme".into(),
            id: "wh_seeded".into(),
            url: format!("https://127.0.0.1:{seeded_port}/hook"),
            events: vec!["*".into()],
            description: String::new(),
            enabled: true,
            disabled_reason: None,
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            previous_secret: None,
            previous_until_ms: None,
            start_seq: 0,
            created_ms: 0,
            updated_ms: 0,
            health: Default::default(),
        })
        .unwrap();
    // allow_private_targets is off (the default).
    let cfg = config(dir, addr, broker.port, "");
    let _lp = Landport::start(dir, &cfg, addr, broker.port);
    let key = tenant_key(addr, "acme");
    for (url, says) in [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("https://[::1]:8443/hook", "loopback"),
        ("https://[::ffff:192.168.0.1]/hook", "private"),
        ("http://hooks.example.com/hook", "https"),
    ] {
        let (s, e) = http(
            addr,
            "POST",
            "/v1/webhooks",
            Some(&key),
            Some(&json!({"url": url})),
        );
        assert_eq!(s, 422, "{url}: {e}");
        assert_eq!(e["error"]["code"], "target_refused", "{e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{url}: {msg}");
    }
    let (s, e) = http(
        addr,
        "POST",
        "/v1/webhooks",
        Some(&key),
        Some(&json!({"url": "not a url"})),
    );
    assert_eq!(s, 400, "{e}");

    // A name is accepted, and refused after DNS: `localhost` resolves to loopback. Something
    // listens there, and must see no connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (connections, stop) = (connections.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if listener.accept().is_ok() {
                    connections.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    }
    let (id, _) = webhook(
        addr,
        &key,
        &format!("https://localhost:{port}/hook"),
        &["*"],
    );
    publish(
        broker.port,
        "landport/acme/truck-1/telemetry",
        shuttle(T0, 3, 41.0),
        QoS::AtLeastOnce,
    )
    .await;
    let w = wait_for("the attempt refused", Duration::from_secs(60), || {
        let (_, w) = http(addr, "GET", &format!("/v1/webhooks/{id}"), Some(&key), None);
        w["health"]["last_error"].is_string().then_some(w)
    });
    let why = w["health"]["last_error"].as_str().unwrap();
    assert!(why.contains("loopback"), "{why}");
    assert_eq!(w["health"]["last_status"], Value::Null);
    assert_eq!(connections.load(Ordering::Relaxed), 0, "no connection made");
    let w = wait_for(
        "the seeded webhook refused",
        Duration::from_secs(60),
        || {
            let (_, w) = http(addr, "GET", "/v1/webhooks/wh_seeded", Some(&key), None);
            w["health"]["last_error"].is_string().then_some(w)
        },
    );
    let why = w["health"]["last_error"].as_str().unwrap();
    assert!(why.contains("loopback"), "{why}");
    assert!(
        seeded.accept().is_err(),
        "no connection to the seeded target"
    );
    stop.store(true, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_holds_only_its_own_slots() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    seed_fence(dir, "acme");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg = config(
        dir,
        addr,
        broker.port,
        "[webhooks]\nallow_private_targets = true\nmax_concurrency_per_webhook = 4\n",
    );
    let _lp = Landport::start(dir, &cfg, addr, broker.port);
    let key = tenant_key(addr, "acme");
    // 5 s per request, well under the 10 s timeout: every attempt succeeds, slowly.
    let slow = Receiver::start();
    slow.delay_ms.store(5_000, Ordering::Relaxed);
    webhook(addr, &key, &slow.url("/slow"), &["*"]);
    let fast = Receiver::start();
    webhook(addr, &key, &fast.url("/fast"), &["*"]);
    publish(
        broker.port,
        "landport/acme/truck-1/telemetry",
        shuttle(T0, 21, 41.0),
        QoS::AtLeastOnce,
    )
    .await;
    let all = wait_for("the events stored", Duration::from_secs(60), || {
        let ids = stored_ids(dir, "acme", &[]);
        (ids.len() >= 20).then_some(ids)
    });
    // The fast receiver gets everything while the slow one is still on its first requests.
    wait_for("the fast receiver served", Duration::from_secs(60), || {
        (fast.delivered_ids() == all).then_some(())
    });
    let slow_done = slow.got().len();
    assert!(
        slow_done < all.len(),
        "the slow receiver answered {slow_done} of {} meanwhile: the fast one did not wait",
        all.len()
    );
    // It holds its own slots only: at most max_concurrency_per_webhook requests at once.
    wait_for("the slow receiver busy", Duration::from_secs(30), || {
        (slow.busy.1.load(Ordering::SeqCst) >= 4).then_some(())
    });
    assert_eq!(slow.busy.1.load(Ordering::SeqCst), 4, "per-webhook slots");
}
