//! End to end: Landport's own MQTT endpoint (`mqtt.embedded = true`), the real binary with
//! real clients (rumqttc 3.1.1 and 5, mosquitto_pub / mosquitto_sub).
//!
//! A PUBACK means durable: `kill -9` right after the last PUBACK of a stream loses nothing.
//! A burst far above what the pipeline sustains is slowed, never dropped, and memory stays
//! bounded. An oversize publish is refused with a dead letter and ingest goes on. Persistent
//! subscribers get what they missed; keep-alive, wills and the 5 receive maximum behave.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use landport_store::Store;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::{Landport, free_port, metric, wait_for};

const T0: i64 = 1_795_400_000_000;

fn http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A native reading of device `dev` at `T0 + i` seconds, somewhere in Liaoning.
fn reading(i: usize) -> Vec<u8> {
    let lon = 122.0 + (i % 1000) as f64 * 0.001;
    format!(
        r#"{{"ts":{},"lat":41.0,"lon":{lon:.3},"speed_kmh":50}}"#,
        T0 + i as i64 * 1000
    )
    .into_bytes()
}

fn stored(dir: &std::path::Path) -> usize {
    let Ok(store) = Store::open_reader(&dir.join("data")) else {
        return 0;
    };
    store
        .readings_after(0, 10_000_000)
        .map(|r| r.len())
        .unwrap_or(0)
}

/// `landport run` with the endpoint on a free port; `mqtt` is added to its `[mqtt]` section.
fn start(dir: &std::path::Path, mqtt: &str) -> Landport {
    let (http, port) = (http_addr(), free_port());
    let config = Landport::config(dir, http, port, true, "")
        .replace("[mqtt]\n", &format!("[mqtt]\n{mqtt}\n"));
    Landport::start(dir, &config, http, port)
}

fn options(port: u16, client_id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000)
        .set_max_packet_size(4 << 20, 4 << 20);
    o
}

/// Publishes `count` QoS 1 readings on one connection as fast as the window allows, device
/// `{prefix}-{i % 20}`; returns once `count` PUBACKs came (the moment the last one was
/// read), or panics after 120 s.
async fn publish_all(port: u16, prefix: String, count: usize) -> Instant {
    let (client, mut el) = AsyncClient::new(options(port, &prefix), 2_000);
    let publisher = tokio::spawn(async move {
        for i in 0..count {
            let topic = format!("landport/default/{prefix}-{}/telemetry", i % 20);
            if client
                .publish(topic, QoS::AtLeastOnce, false, reading(i))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acked = 0;
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), el.poll())
            .await
            .expect("every PUBACK within 120 s")
            .expect("the connection holds");
        if let Event::Incoming(Packet::PubAck(_)) = ev {
            acked += 1;
            if acked == count {
                publisher.abort();
                return Instant::now();
            }
        }
    }
}

async fn kill_after_last_puback(connections: usize) {
    const TOTAL: usize = 20_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut lp = start(dir, "");
    let port = lp.mqtt_port;
    let per = TOTAL / connections;
    let tasks: Vec<_> = (0..connections)
        .map(|c| tokio::spawn(publish_all(port, format!("k{c}"), per)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Right after the last PUBACK: no flush, no goodbye.
    lp.kill9();
    assert_eq!(
        stored(dir),
        TOTAL,
        "every acknowledged reading is in the store the moment it was acknowledged"
    );
    lp.restart();
    assert_eq!(stored(dir), TOTAL, "and after the restart");
    assert_eq!(
        metric(&lp.metrics(), "landport_readings_accepted_total"),
        0.0,
        "the restarted process has nothing to take in again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_the_last_puback_of_one_connection_loses_nothing() {
    kill_after_last_puback(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_the_last_puback_of_four_connections_loses_nothing() {
    kill_after_last_puback(4).await;
}

/// Whether `binary` is installed; under `CI` it must be (SPEC §8).
fn have(binary: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{binary} is required under CI (apt-get install mosquitto-clients)"
        );
        eprintln!("note: {binary} not installed; skipping that part");
    }
    found
}

/// The peak resident memory of process `pid`, KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A reading padded to `bytes` with a field the decoder ignores.
fn padded(i: usize, bytes: usize) -> Vec<u8> {
    let pad = "x".repeat(bytes.saturating_sub(120));
    format!(
        r#"{{"ts":{},"lat":41.0,"lon":122.5,"note":"{pad}"}}"#,
        T0 + i as i64 * 1000
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_far_above_the_sustainable_rate_is_slowed_never_dropped_and_memory_stays_bounded() {
    // Four connections at full speed, 320 MiB of 32 KiB publishes: far more than the
    // pipeline takes at once. The endpoint holds at most receive_maximum (32) publishes per
    // connection and its channel to the pipeline (1,024): it stops reading instead of
    // buffering the rest.
    const CONNECTIONS: usize = 4;
    const EACH: usize = 2_500;
    const SIZE: usize = 32 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut lp = start(dir, "receive_maximum = 32");
    let port = lp.mqtt_port;
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            tokio::spawn(async move {
                let id = format!("burst{c}");
                // The client would have every publish in flight at once: only the endpoint
                // holds it back.
                let mut o = options(port, &id);
                o.set_inflight(u16::MAX);
                let (client, mut el) = AsyncClient::new(o, 100);
                let publisher = tokio::spawn(async move {
                    for i in 0..EACH {
                        let topic = format!("landport/default/{id}/telemetry");
                        if client
                            .publish(topic, QoS::AtLeastOnce, false, padded(i, SIZE))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
                let mut acked = 0;
                while acked < EACH {
                    let ev = tokio::time::timeout(Duration::from_secs(120), el.poll())
                        .await
                        .expect("PUBACKs keep coming")
                        .expect("the connection holds");
                    if let Event::Incoming(Packet::PubAck(_)) = ev {
                        acked += 1;
                    }
                }
                publisher.abort();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let peak_mib = peak_rss_kib(lp.child.id()) / 1024;
    eprintln!("peak RSS {peak_mib} MiB");
    lp.kill9();
    assert_eq!(
        stored(dir),
        CONNECTIONS * EACH,
        "every acknowledged reading is stored"
    );
    let offered_mib = (CONNECTIONS * EACH * SIZE) >> 20;
    assert!(
        peak_mib < 160,
        "peak RSS {peak_mib} MiB for {offered_mib} MiB offered: the endpoint must not buffer the burst"
    );
}

/// A rumqttc 3.1.1 client of its own, polled in the background: what it receives comes out of
/// the returned channel (CONNACKs, PUBLISHes, PUBACKs, SUBACKs).
fn client(
    port: u16,
    id: &str,
    clean: bool,
) -> (AsyncClient, tokio::sync::mpsc::UnboundedReceiver<Packet>) {
    let mut o = options(port, id);
    o.set_clean_session(clean);
    let (client, mut el) = AsyncClient::new(o, 100);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(p)) => {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    (client, rx)
}

/// Subscribes `c` to `filter` at QoS 1 and waits for the SUBACK on its packets `rx`.
async fn subscribe(
    c: &AsyncClient,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Packet>,
    filter: &str,
) {
    c.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    next(rx, "the SUBACK", |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await;
}

/// The CONNACK's session-present flag.
async fn session_present(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Packet>) -> bool {
    next(rx, "the CONNACK", |p| match p {
        Packet::ConnAck(a) => Some(a.session_present),
        _ => None,
    })
    .await
}

/// The next packet matching `f`, within 30 s.
async fn next<T>(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Packet>,
    what: &str,
    mut f: impl FnMut(Packet) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = tokio::time::timeout_at(deadline.into(), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("connection ended waiting for {what}"));
        if let Some(v) = f(p) {
            return v;
        }
    }
}

/// Publishes each (topic, payload) at QoS 1 on a connection of its own and waits for all
/// PUBACKs.
async fn publish_acked(port: u16, id: &str, msgs: Vec<(String, Vec<u8>)>) {
    let (c, mut rx) = client(port, id, true);
    let n = msgs.len();
    for (t, p) in msgs {
        c.publish(t, QoS::AtLeastOnce, false, p).await.unwrap();
    }
    for _ in 0..n {
        next(&mut rx, "a PUBACK", |p| {
            matches!(p, Packet::PubAck(_)).then_some(())
        })
        .await;
    }
    let _ = c.disconnect().await;
}

/// A reading inside the warehouse of `support::seed_fence` (confirms at once).
fn inside(i: usize) -> Vec<u8> {
    format!(
        r#"{{"ts":{},"lat":41.0,"lon":123.0}}"#,
        T0 + i as i64 * 1000
    )
    .into_bytes()
}

fn event_count(dir: &std::path::Path) -> usize {
    Store::open_reader(&dir.join("data"))
        .and_then(|s| s.events_after(&landport_store::EventFilter::default(), 100_000))
        .map_or(0, |e| e.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_mib_publish_is_refused_with_a_dead_letter_acknowledged_and_ingest_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let lp = start(dir, "");
    let port = lp.mqtt_port;
    let (sub, mut dead) = client(port, "rejections", true);
    subscribe(&sub, &mut dead, "landport/default/+/rejected").await;

    let (c, mut rx) = client(port, "big-sender", true);
    let big = format!(
        r#"{{"ts":{T0},"lat":41.0,"lon":122.5,"note":"{}"}}"#,
        "y".repeat(2 << 20)
    );
    c.publish(
        "landport/default/big/telemetry",
        QoS::AtLeastOnce,
        false,
        big,
    )
    .await
    .unwrap();
    c.publish(
        "landport/default/small/telemetry",
        QoS::AtLeastOnce,
        false,
        reading(1),
    )
    .await
    .unwrap();
    let mut connacks = 0;
    let mut pubacks = 0;
    while pubacks < 2 {
        match next(&mut rx, "two PUBACKs", Some).await {
            Packet::ConnAck(_) => connacks += 1,
            Packet::PubAck(_) => pubacks += 1,
            _ => {}
        }
    }
    assert_eq!(
        connacks, 1,
        "acknowledged on the same connection: no reconnect loop"
    );
    let letter = next(&mut dead, "the dead letter", |p| match p {
        Packet::Publish(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(letter.topic, "landport/default/big/rejected");
    let notice: serde_json::Value = serde_json::from_slice(&letter.payload).unwrap();
    assert_eq!(notice["code"], "packet_too_large", "{notice}");
    assert!(
        notice["reason"]
            .as_str()
            .unwrap()
            .contains("mqtt.max_packet_bytes"),
        "{notice}"
    );
    assert_eq!(notice["topic"], "landport/default/big/telemetry");
    assert_eq!(stored(dir), 1, "the reading after it is taken in");
    let m = lp.metrics();
    assert_eq!(metric(&m, "landport_mqtt_oversize_total"), 1.0);

    // mosquitto_pub (3.1.1) with a 2 MiB file: acknowledged, so it exits at once and well.
    if have("mosquitto_pub") {
        let file = dir.join("big.json");
        std::fs::write(&file, vec![b'z'; 2 << 20]).unwrap();
        let out = std::process::Command::new("mosquitto_pub")
            .args(["-V", "311", "-q", "1", "-h", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .args(["-t", "landport/default/big2/telemetry", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let letter = next(&mut dead, "mosquitto_pub's dead letter", |p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .await;
        assert_eq!(letter.topic, "landport/default/big2/rejected");
    }
}

/// Bytes of one MQTT 5 packet, encoded by rumqttc's codec.
fn v5_bytes(p: rumqttc::v5::mqttbytes::v5::Packet) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    p.write(&mut b, None).unwrap();
    b.to_vec()
}

/// Reads one MQTT 5 packet from a blocking socket.
fn read_v5(s: &mut std::net::TcpStream) -> Option<rumqttc::v5::mqttbytes::v5::Packet> {
    use std::io::Read;
    let mut buf = bytes::BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(p) = rumqttc::v5::mqttbytes::v5::Packet::read(&mut buf, None) {
            return Some(p);
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v5_client_is_told_the_limits_and_an_oversize_packet_ends_with_disconnect_0x95() {
    use rumqttc::v5::mqttbytes::v5::{Connect, DisconnectReasonCode, Packet as P5};
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let lp = start(tmp.path(), "");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", lp.mqtt_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let connect = Connect {
        keep_alive: 30,
        client_id: "v5-raw".into(),
        clean_start: true,
        properties: None,
    };
    s.write_all(&v5_bytes(P5::Connect(connect, None, None)))
        .unwrap();
    let Some(P5::ConnAck(ack)) = read_v5(&mut s) else {
        panic!("a CONNACK")
    };
    let props = ack.properties.expect("CONNACK properties");
    assert_eq!(props.max_packet_size, Some(1024 * 1024));
    assert_eq!(props.max_qos, Some(1));
    assert_eq!(props.receive_max, Some(1024));
    assert_eq!(props.retain_available, Some(0));
    // A PUBLISH announcing 2 MiB: refused from its header, before its body.
    let len: usize = (2 << 20) + 64;
    let mut header = vec![0x30u8];
    let mut n = len;
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        header.push(b);
        if n == 0 {
            break;
        }
    }
    header.extend_from_slice(&[0, 3, b'a', b'/', b'b']);
    s.write_all(&header).unwrap();
    let Some(P5::Disconnect(d)) = read_v5(&mut s) else {
        panic!("a DISCONNECT")
    };
    assert_eq!(d.reason_code, DisconnectReasonCode::PacketTooLarge);
    assert!(read_v5(&mut s).is_none(), "then the connection closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_subscriber_gets_the_events_it_missed_even_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    support::seed_fence(dir, "default");
    let mut lp = start(dir, "");
    let port = lp.mqtt_port;
    let (app, mut rx) = client(port, "dispatch-app", false);
    let present = session_present(&mut rx).await;
    assert!(!present);
    subscribe(&app, &mut rx, "landport/default/+/events").await;
    app.disconnect().await.unwrap();
    // While it is away: two trucks arrive, and Landport restarts.
    publish_acked(
        port,
        "trucks",
        vec![
            ("landport/default/p1/telemetry".into(), inside(1)),
            ("landport/default/p2/telemetry".into(), inside(2)),
        ],
    )
    .await;
    wait_for("two events stored", Duration::from_secs(20), || {
        (event_count(dir) == 2).then_some(())
    });
    lp.kill9();
    lp.restart();
    let port = lp.mqtt_port;
    // Back, same client id, no SUBSCRIBE: the session has it.
    let (_app, mut rx) = client(port, "dispatch-app", false);
    let present = session_present(&mut rx).await;
    assert!(
        present,
        "the session survived the disconnect and the restart"
    );
    let mut devices = Vec::new();
    while devices.len() < 2 {
        let p = next(&mut rx, "a missed event", |p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .await;
        let e: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(e["type"], "geofence.entered");
        assert_eq!(p.qos, QoS::AtLeastOnce);
        devices.push(e["device"].as_str().unwrap().to_owned());
    }
    devices.sort();
    assert_eq!(devices, ["p1", "p2"]);
}

#[tokio::test]
async fn a_subscription_acknowledged_just_before_a_crash_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    support::seed_fence(dir, "default");
    let mut lp = start(dir, "");
    let (app, mut rx) = client(lp.mqtt_port, "dispatch-app", false);
    session_present(&mut rx).await;
    subscribe(&app, &mut rx, "landport/default/+/events").await;
    // The worst moment: at once after the SUBACK.
    lp.kill9();
    drop(app);
    lp.restart();
    let port = lp.mqtt_port;
    let (_app, mut rx) = client(port, "dispatch-app", false);
    let present = session_present(&mut rx).await;
    assert!(present);
    // No SUBSCRIBE this time: the acknowledged one must still be there.
    publish_acked(
        port,
        "trucks",
        vec![("landport/default/p1/telemetry".into(), inside(1))],
    )
    .await;
    let p = next(&mut rx, "the event of the subscription", |p| match p {
        Packet::Publish(p) => Some(p),
        _ => None,
    })
    .await;
    let e: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(
        (e["type"].as_str(), e["device"].as_str()),
        (Some("geofence.entered"), Some("p1"))
    );
}

/// Runs `mosquitto_sub` with `args` until it has its SUBACK; returns the child.
fn mosquitto_sub(port: u16, args: &[&str]) -> std::process::Child {
    use std::io::BufRead;
    // Line-buffered: its debug lines (the SUBACK) must come out as they happen.
    let mut child = std::process::Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub"])
        .args(["-d", "-h", "127.0.0.1", "-p", &port.to_string(), "-W", "30"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "mosquitto_sub ended before SUBACK"
        );
        if line.contains("SUBACK") {
            break;
        }
    }
    // The rest of its output, for the caller to read after it exits.
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    REST.with(|r| r.borrow_mut().push((child.id(), rest)));
    child
}

thread_local! {
    static REST: std::cell::RefCell<Vec<(u32, std::thread::JoinHandle<String>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Waits for a `mosquitto_sub` to exit and returns what it printed after its SUBACK.
fn output_of(mut child: std::process::Child) -> String {
    let status = child.wait().unwrap();
    assert!(status.success(), "mosquitto_sub: {status}");
    let id = child.id();
    let h = REST.with(|r| {
        let mut r = r.borrow_mut();
        let i = r.iter().position(|(p, _)| *p == id).unwrap();
        r.remove(i).1
    });
    h.join().unwrap()
}

#[test]
fn mosquitto_subscribers_get_events_at_qos_0_and_1_and_dead_letters() {
    if !have("mosquitto_sub") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    support::seed_fence(dir, "default");
    let lp = start(dir, "");
    let port = lp.mqtt_port;
    let q0 = mosquitto_sub(
        port,
        &[
            "-V",
            "5",
            "-q",
            "0",
            "-C",
            "1",
            "-t",
            "landport/default/+/events",
        ],
    );
    let q1 = mosquitto_sub(
        port,
        &[
            "-V",
            "311",
            "-q",
            "1",
            "-C",
            "1",
            "-t",
            "landport/default/+/events",
        ],
    );
    let dead = mosquitto_sub(
        port,
        &[
            "-V",
            "311",
            "-q",
            "1",
            "-C",
            "1",
            "-t",
            "landport/default/+/rejected",
        ],
    );
    // Refused: a filter outside Landport's topics, and another tenant's.
    let denied_before = lp.metrics();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (c, mut rx) = client(port, "nosy", true);
        c.subscribe("#", QoS::AtLeastOnce).await.unwrap();
        c.subscribe("landport/globex/+/events", QoS::AtLeastOnce)
            .await
            .unwrap();
        for _ in 0..2 {
            let codes = next(&mut rx, "a SUBACK", |p| match p {
                Packet::SubAck(s) => Some(s.return_codes),
                _ => None,
            })
            .await;
            assert_eq!(codes, [rumqttc::SubscribeReasonCode::Failure]);
        }
        publish_acked(
            port,
            "truck",
            vec![
                ("landport/default/t1/telemetry".into(), inside(1)),
                (
                    "landport/default/t1/telemetry".into(),
                    b"{not json".to_vec(),
                ),
            ],
        )
        .await;
    });
    let q0 = output_of(q0);
    let q1 = output_of(q1);
    let dead = output_of(dead);
    assert!(q0.contains("q0") && q0.contains("geofence.entered"), "{q0}");
    assert!(q1.contains("q1") && q1.contains("geofence.entered"), "{q1}");
    assert!(dead.contains("invalid_json"), "{dead}");
    let denied = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("landport_mqtt_denied_total{action=\"subscribe\"}"))
            .and_then(|l| l.split(' ').nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(denied(&lp.metrics()) - denied(&denied_before), 2.0);
}

/// MQTT 3.1.1 CONNECT bytes with this keep-alive, by rumqttc's codec.
fn v4_connect(id: &str, keep_alive: u16) -> Vec<u8> {
    let mut c = rumqttc::Connect::new(id);
    c.keep_alive = keep_alive;
    let mut b = bytes::BytesMut::new();
    rumqttc::Packet::Connect(c)
        .write(&mut b, usize::MAX)
        .unwrap();
    b.to_vec()
}

#[test]
fn a_silent_client_is_dropped_after_one_and_a_half_keep_alives_and_a_pinging_one_is_not() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let lp = start(tmp.path(), "");
    let connect = |id: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", lp.mqtt_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&v4_connect(id, 1)).unwrap();
        let mut ack = [0u8; 4];
        s.read_exact(&mut ack).unwrap();
        assert_eq!(ack, [0x20, 2, 0, 0], "CONNACK accepted");
        s
    };
    let mut silent = connect("silent");
    let mut pinging = connect("pinging");
    let t0 = Instant::now();
    // The pinging client sends PINGREQ every half second for 3 s and gets each PINGRESP.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        pinging.write_all(&[0xC0, 0]).unwrap();
        let mut resp = [0u8; 2];
        pinging.read_exact(&mut resp).unwrap();
        assert_eq!(resp, [0xD0, 0]);
    }
    // The silent one was closed meanwhile (after 1.5 s of silence).
    let mut rest = Vec::new();
    let n = silent.read_to_end(&mut rest).unwrap();
    assert_eq!(n, 0, "closed without a word (3.1.1)");
    assert!(t0.elapsed() >= Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_on_the_telemetry_topic_is_a_reading_when_the_connection_breaks_not_on_disconnect() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let lp = start(dir, "");
    let port = lp.mqtt_port;
    let with_will = |id: &str, device: &str| {
        let mut o = options(port, id);
        o.set_last_will(rumqttc::LastWill::new(
            format!("landport/default/{device}/telemetry"),
            reading(7),
            QoS::AtLeastOnce,
            false,
        ));
        AsyncClient::new(o, 10)
    };
    // A clean DISCONNECT: no will.
    let (polite, mut el) = with_will("polite", "polite-dev");
    while !matches!(
        el.poll().await.unwrap(),
        Event::Incoming(Packet::ConnAck(_))
    ) {}
    polite.disconnect().await.unwrap();
    while !matches!(
        el.poll().await,
        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))
    ) {}
    drop(el);
    // A broken connection: the will is published for it.
    let (_rude, mut el) = with_will("rude", "rude-dev");
    while !matches!(
        el.poll().await.unwrap(),
        Event::Incoming(Packet::ConnAck(_))
    ) {}
    drop(el);
    let track = |device: &str| {
        Store::open_reader(&dir.join("data"))
            .and_then(|s| s.track("default", device, 0, i64::MAX, 10))
            .map_or(0, |t| t.len())
    };
    wait_for(
        "the will stored as a reading",
        Duration::from_secs(20),
        || (track("rude-dev") == 1).then_some(()),
    );
    assert_eq!(track("polite-dev"), 0, "a clean DISCONNECT drops the will");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v5_subscriber_never_has_more_unacknowledged_events_than_its_receive_maximum() {
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    support::seed_fence(dir, "default");
    let lp = start(dir, "");
    let port = lp.mqtt_port;
    let mut o = Options5::new("slow-app", "127.0.0.1", port);
    o.set_receive_maximum(Some(2)).set_manual_acks(true);
    let (c, mut el) = Client5::new(o, 100);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(ev) = el.poll().await {
            if let Event5::Incoming(p) = ev
                && tx.send(p).is_err()
            {
                return;
            }
        }
    });
    c.subscribe("landport/default/+/events", Q5::AtLeastOnce)
        .await
        .unwrap();
    // Wait for the SUBACK by publishing only once subscribed.
    loop {
        match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
            Ok(Some(P5::SubAck(_))) => break,
            Ok(Some(_)) => {}
            other => panic!("no SUBACK: {other:?}"),
        }
    }
    publish_acked(
        port,
        "fleet",
        (1..=5)
            .map(|i| (format!("landport/default/r{i}/telemetry"), inside(i)))
            .collect(),
    )
    .await;
    wait_for("five events stored", Duration::from_secs(20), || {
        (event_count(dir) == 5).then_some(())
    });
    let mut got = 0;
    while got < 5 {
        // Take what comes while nothing is acknowledged: never more than two.
        let mut held = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(1500);
        loop {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(P5::Publish(p))) => held.push(p),
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        assert!(
            !held.is_empty() && held.len() <= 2,
            "{} unacknowledged at once, receive maximum 2",
            held.len()
        );
        got += held.len();
        for p in &held {
            c.ack(p).await.unwrap();
        }
    }
    assert_eq!(got, 5);
}

#[test]
fn a_311_qos_2_publish_completes_and_is_stored_once_and_a_v5_one_is_refused() {
    if !have("mosquitto_pub") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let lp = start(dir, "");
    let pub_qos2 = |version: &str, device: &str| {
        std::process::Command::new("mosquitto_pub")
            .args(["-V", version, "-q", "2", "-h", "127.0.0.1", "-p"])
            .arg(lp.mqtt_port.to_string())
            .args(["-t", &format!("landport/default/{device}/telemetry"), "-m"])
            .arg(String::from_utf8(reading(3)).unwrap())
            .output()
            .unwrap()
    };
    // 3.1.1: PUBREC once durable, PUBCOMP on PUBREL: mosquitto_pub finishes and exits 0.
    let out = pub_qos2("311", "q2");
    assert!(out.status.success(), "{out:?}");
    let track = |device: &str| {
        Store::open_reader(&dir.join("data"))
            .and_then(|s| s.track("default", device, 0, i64::MAX, 10))
            .map_or(0, |t| t.len())
    };
    assert_eq!(track("q2"), 1, "durable before the PUBREC");
    // 5: the CONNACK said Maximum QoS 1, and mosquitto_pub heeds it: it sends nothing.
    let out = pub_qos2("5", "q2-v5");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("QoS not supported"),
        "{out:?}"
    );
    assert_eq!(track("q2-v5"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v5_client_may_publish_by_topic_alias() {
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::mqttbytes::v5::{Packet as P5, PublishProperties};
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let lp = start(dir, "");
    let (c, mut el) = Client5::new(Options5::new("aliaser", "127.0.0.1", lp.mqtt_port), 10);
    let alias = |a: u16| PublishProperties {
        topic_alias: Some(a),
        ..Default::default()
    };
    // The first sets alias 1; the second names its topic by the alias alone.
    c.publish_with_properties(
        "landport/default/alias-dev/telemetry",
        Q5::AtLeastOnce,
        false,
        reading(1),
        alias(1),
    )
    .await
    .unwrap();
    c.publish_with_properties("", Q5::AtLeastOnce, false, reading(2), alias(1))
        .await
        .unwrap();
    let mut acked = 0;
    while acked < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(20), el.poll())
            .await
            .expect("PUBACKs")
            .expect("the connection holds");
        if let Event5::Incoming(P5::PubAck(ack)) = ev {
            assert_eq!(
                ack.reason,
                rumqttc::v5::mqttbytes::v5::PubAckReason::Success
            );
            acked += 1;
        }
    }
    let stored = Store::open_reader(&dir.join("data"))
        .and_then(|s| s.track("default", "alias-dev", 0, i64::MAX, 10))
        .unwrap();
    assert_eq!(stored.len(), 2, "both readings, the second by its alias");
}

#[test]
fn connections_over_max_connections_are_closed_and_counted_and_a_freed_slot_is_reused() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let lp = start(tmp.path(), "max_connections = 2");
    let port = lp.mqtt_port;
    let connect = |id: &str| -> Option<std::net::TcpStream> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&v4_connect(id, 30)).ok()?;
        let mut ack = [0u8; 4];
        s.read_exact(&mut ack).ok()?;
        assert_eq!(ack, [0x20, 2, 0, 0], "CONNACK accepted");
        Some(s)
    };
    let denied = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("landport_mqtt_denied_total{action=\"connection_limit\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let first = connect("one").expect("the first connection is served");
    let _second = connect("two").expect("the second connection is served");
    // The third is closed before its CONNACK, and counted.
    assert!(connect("three").is_none(), "a third connection was served");
    wait_for("the refusal counted", Duration::from_secs(10), || {
        (denied(&lp.metrics()) == 1.0).then_some(())
    });
    // The first goes away: its slot serves the next client.
    drop(first);
    let again = wait_for("a freed slot", Duration::from_secs(10), || connect("four"));
    drop(again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_over_max_subscribers_are_refused_their_subscriptions_until_a_slot_is_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let lp = start(tmp.path(), "max_subscribers = 1");
    let port = lp.mqtt_port;
    let denied = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("landport_mqtt_denied_total{action=\"subscriber_limit\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let filter = "landport/default/+/events";
    let (first, mut first_rx) = client(port, "dashboard-1", true);
    first.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    assert_eq!(
        suback(&mut first_rx).await,
        [rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    // The one slot is taken: the second session's subscription is refused, and counted.
    let (second, mut second_rx) = client(port, "dashboard-2", true);
    second.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    assert_eq!(
        suback(&mut second_rx).await,
        [rumqttc::SubscribeReasonCode::Failure]
    );
    assert_eq!(denied(&lp.metrics()), 1.0);
    // The first goes away: the second's next SUBSCRIBE gets the slot.
    first.disconnect().await.unwrap();
    let mut granted = false;
    for _ in 0..50 {
        second.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        if suback(&mut second_rx).await == [rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
        {
            granted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        granted,
        "the freed slot was never given to the waiting session"
    );
}

/// The return codes of the next SUBACK.
async fn suback(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Packet>,
) -> Vec<rumqttc::SubscribeReasonCode> {
    next(rx, "a SUBACK", |p| match p {
        Packet::SubAck(s) => Some(s.return_codes),
        _ => None,
    })
    .await
}
