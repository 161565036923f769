//! Real brokers for the MQTT tests: a mosquitto of our own on a free loopback port, a plain
//! rumqttc publisher and subscriber, and waits that fail after [`WAIT`] instead of hanging.
//!
//! SPEC §8: a test that needs a server fails when `CI` is set and the server is missing;
//! elsewhere it prints a note and returns.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use landport_ingest::mqtt::{Inbound, MqttSourceConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// The longest any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A loopback port nobody listens on right now (bound, read, released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding port 0");
    l.local_addr().unwrap().port()
}

/// Whether `binary` is on the PATH. Missing: panics under `CI`, else prints a note.
pub fn require(binary: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/usr/local/sbin"]
            .iter()
            .any(|d| PathBuf::from(d).join(binary).is_file());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{binary} is required under CI (apt-get install -y mosquitto mosquitto-clients)"
            );
        }
        eprintln!("note: {binary} not installed; skipping this part of the test");
    }
    found
}

fn mosquitto_binary() -> PathBuf {
    for d in ["/usr/sbin", "/usr/local/sbin"] {
        let p = PathBuf::from(d).join("mosquitto");
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("mosquitto")
}

/// A mosquitto of our own: config, persistence and log in a temp dir; killed on drop.
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// With accounts and an ACL (`start_with_accounts`): anonymous clients are refused.
    accounts: bool,
}

impl Mosquitto {
    /// Starts one on a free port; `None` if mosquitto is missing and `CI` is not set.
    pub fn start() -> Option<Mosquitto> {
        if !require("mosquitto") {
            return None;
        }
        let mut m = Mosquitto {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            accounts: false,
        };
        m.spawn();
        Some(m)
    }

    /// Starts one that knows only `users` (name, password), with `acl` as its ACL file.
    pub fn start_with_accounts(users: &[(&str, &str)], acl: &str) -> Option<Mosquitto> {
        if !require("mosquitto") || !require("mosquitto_passwd") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "").expect("writing the password file");
        for (user, password) in users {
            let status = Command::new("mosquitto_passwd")
                .arg("-b")
                .arg(&passwd)
                .args([user, password])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("running mosquitto_passwd");
            assert!(status.success(), "mosquitto_passwd {user}: {status}");
        }
        std::fs::write(dir.path().join("acl"), acl).expect("writing the ACL file");
        let mut m = Mosquitto {
            port: free_port(),
            dir,
            child: None,
            accounts: true,
        };
        m.spawn();
        Some(m)
    }

    fn spawn(&mut self) {
        let dir = self.dir.path();
        let conf = dir.join("mosquitto.conf");
        // `user root`: run as root (as in containers), mosquitto would otherwise switch to the
        // `mosquitto` user, which can't write our temp dir. No effect when not root.
        let access = if self.accounts {
            format!(
                "allow_anonymous false\npassword_file {dir}/passwd\nacl_file {dir}/acl\n",
                dir = dir.display()
            )
        } else {
            "allow_anonymous true\n".to_owned()
        };
        let text = format!(
            "listener {port} 127.0.0.1\n\
             {access}\
             persistence true\n\
             persistence_location {dir}/\n\
             max_inflight_messages 1000\n\
             max_queued_messages 1000000\n\
             log_dest file {dir}/mosquitto.log\n\
             log_type all\n\
             user root\n",
            port = self.port,
            dir = dir.display()
        );
        std::fs::write(&conf, text).expect("writing mosquitto.conf");
        let mut child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("polling mosquitto") {
                panic!("mosquitto exited at start ({status}); log:\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto not accepting on {} after {WAIT:?}; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Stops it the polite way (SIGTERM): it saves its persistence file first.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let ok = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// Kills it (SIGKILL): whatever it had not saved is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same persistence directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts it again after [`Mosquitto::stop`] or [`Mosquitto::kill`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "mosquitto is still running");
        self.spawn();
    }

    /// Its log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A source config for tests: fast reconnects, short keep-alive and grace.
pub fn source_config(port: u16, client_id: &str) -> MqttSourceConfig {
    MqttSourceConfig {
        reconnect_initial: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        shutdown_grace: Duration::from_secs(2),
        ..MqttSourceConfig::new(
            "127.0.0.1",
            port,
            client_id,
            std::num::NonZeroU16::new(5).unwrap(),
        )
    }
}

/// The next inbound message, or a failure naming `what` after [`WAIT`].
pub async fn recv(rx: &mut mpsc::Receiver<Inbound>, what: &str) -> Inbound {
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(m)) => m,
        Ok(None) => panic!("{what}: the inbound channel closed"),
        Err(_) => panic!("{what}: nothing arrived within {WAIT:?}"),
    }
}

/// Waits until `cond` holds, checking every 10 ms (for counters, which have nothing to
/// await); fails after [`WAIT`].
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes `payloads` to `topic` with a fresh rumqttc client and waits for every PUBACK.
pub async fn publish(port: u16, topic: &str, payloads: Vec<Vec<u8>>, qos: QoS) {
    publish_as(port, topic, payloads, qos, None).await;
}

/// [`publish`] with a login: `(username, password)` (Landport's endpoint: a tenant's id and one
/// of its API keys, or `{tenant}/{device}` and a device credential).
pub async fn publish_as(
    port: u16,
    topic: &str,
    payloads: Vec<Vec<u8>>,
    qos: QoS,
    login: Option<(&str, &str)>,
) {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = format!(
        "test-pub-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_max_packet_size(2 << 20, 2 << 20);
    if let Some((user, password)) = login {
        o.set_credentials(user, password);
    }
    let (client, mut el) = AsyncClient::new(o, 64);
    let n = payloads.len();
    let sender = {
        let client = client.clone();
        let topic = topic.to_owned();
        tokio::spawn(async move {
            for p in payloads {
                client
                    .publish(&topic, qos, false, p)
                    .await
                    .expect("queueing a publish");
            }
        })
    };
    let drive = async {
        let mut acked = 0;
        let mut sent = 0;
        let mut resets = 0;
        loop {
            let event = match el.poll().await {
                Ok(event) => event,
                // A connection reset by the broker (seen once in a loaded CI run, against the
                // embedded broker): rumqttc reconnects on the next poll and sends again what
                // was not acknowledged. A broker that keeps refusing still fails the test.
                Err(e) if resets < 3 => {
                    resets += 1;
                    eprintln!("test publisher: {e}; reconnecting");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => panic!("test publisher connection: {e:?}"),
            };
            match event {
                Event::Incoming(Packet::PubAck(_)) => acked += 1,
                Event::Outgoing(rumqttc::Outgoing::Publish(_)) => sent += 1,
                _ => {}
            }
            let done = if qos == QoS::AtMostOnce {
                sent == n
            } else {
                acked == n
            };
            if done {
                break;
            }
        }
        client.disconnect().await.unwrap();
        // Flush the DISCONNECT.
        while let Ok(ev) = el.poll().await {
            if ev == Event::Outgoing(rumqttc::Outgoing::Disconnect) {
                break;
            }
        }
    };
    tokio::time::timeout(WAIT, drive).await.unwrap_or_else(|_| {
        panic!("publishing {n} messages to {topic}: not acked within {WAIT:?}")
    });
    sender.await.unwrap();
}

/// Publishes one message with the `mosquitto_pub` command (QoS 1).
pub fn mosquitto_pub(port: u16, topic: &str, payload: &str) {
    let out = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ])
        .output()
        .expect("running mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A plain rumqttc subscriber to `filter` (QoS 1); returns once subscribed. Its publishes
/// come on the receiver.
pub async fn subscriber(port: u16, filter: &str) -> mpsc::UnboundedReceiver<rumqttc::Publish> {
    subscriber_as(port, filter, None).await.1
}

/// [`subscriber`] logged in as `(user, password)`; also returns the client, to publish with.
pub async fn subscriber_as(
    port: u16,
    filter: &str,
    credentials: Option<(&str, &str)>,
) -> (AsyncClient, mpsc::UnboundedReceiver<rumqttc::Publish>) {
    let id = format!("test-sub-{}-{}", std::process::id(), free_port());
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    if let Some((user, password)) = credentials {
        options.set_credentials(user, password);
    }
    let (client, mut el) = AsyncClient::new(options, 64);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let handle = client.clone();
    tokio::spawn(async move {
        let _client = handle;
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(ev) = el.poll().await {
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(s) = subscribed_tx.take() {
                        let _ = s.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let test_gone = tx.send(p).is_err();
                    if test_gone {
                        break;
                    }
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(WAIT, subscribed)
        .await
        .expect("test subscriber: no SUBACK")
        .expect("test subscriber stopped");
    (client, rx)
}

/// A source running on its own task, with what the tests look at.
pub struct Running {
    pub client: landport_ingest::mqtt::MqttClient,
    pub rx: mpsc::Receiver<Inbound>,
    pub stats: std::sync::Arc<landport_ingest::mqtt::MqttStats>,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub driver: tokio::task::JoinHandle<()>,
}

/// Starts a source with `cfg` and waits until it has subscribed.
pub async fn run_source(cfg: MqttSourceConfig) -> Running {
    let (source, client, rx) = landport_ingest::mqtt::MqttSource::new(cfg).expect("valid config");
    let stats = source.stats();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let driver = tokio::spawn(source.run(shutdown.clone()));
    wait_until("the source to connect and subscribe", || stats.ready()).await;
    Running {
        client,
        rx,
        stats,
        shutdown,
        driver,
    }
}

impl Running {
    /// Cancels, drops the handle, and waits for the driver to finish its clean shutdown.
    pub async fn stop(self) {
        let Running {
            client,
            shutdown,
            driver,
            stats,
            ..
        } = self;
        shutdown.cancel();
        drop(client);
        tokio::time::timeout(WAIT, driver)
            .await
            .expect("the driver to stop after shutdown")
            .expect("the driver not to panic");
        assert!(!stats.connected());
    }
}

/// The basic contract on any broker: QoS 1 from rumqttc and from `mosquitto_pub` arrives with
/// its topic and payload and can be acked; QoS 0 carries no token; a payload above Landport's
/// own 64 KiB limit still arrives whole (for the decoder to reject); events go out.
///
/// `qos0_arrives_as`: 0 per MQTT; rumqttd delivers at the subscription's QoS (1) instead.
pub async fn round_trip(port: u16, client_id: &str, qos0_arrives_as: u8) {
    use landport_ingest::mqtt::MqttError;

    let mut s = run_source(source_config(port, client_id)).await;
    let topic = "landport/acme/truck-1/telemetry";
    let body = br#"{"ts":"2026-11-24T08:15:30.250Z","lat":41.1087,"lon":122.9946}"#.to_vec();
    publish(port, topic, vec![body.clone()], QoS::AtLeastOnce).await;
    let m = recv(&mut s.rx, "a rumqttc QoS 1 publish").await;
    assert_eq!(m.topic, topic);
    assert_eq!(&m.payload[..], &body[..]);
    assert_eq!(m.qos, 1);
    assert!(
        m.received_ms > 1_700_000_000_000,
        "received_ms {}",
        m.received_ms
    );
    s.client
        .ack(m.ack.expect("QoS 1 carries an ack token"))
        .await;
    wait_until("the PUBACK to be written", || s.stats.acked() == 1).await;

    let mut acked = 1;
    if require("mosquitto_pub") {
        let body = r#"{"ts":1764000000000,"temp_c":-18.4}"#;
        mosquitto_pub(port, topic, body);
        let m = recv(&mut s.rx, "a mosquitto_pub QoS 1 publish").await;
        assert_eq!(m.topic, topic);
        assert_eq!(&m.payload[..], body.as_bytes());
        assert_eq!(m.qos, 1);
        s.client
            .ack(m.ack.expect("QoS 1 carries an ack token"))
            .await;
        acked += 1;
        wait_until("the second PUBACK", || s.stats.acked() == acked).await;
    }

    publish(
        port,
        "owntracks/alice/phone",
        vec![b"{}".to_vec()],
        QoS::AtMostOnce,
    )
    .await;
    let m = recv(&mut s.rx, "a QoS 0 publish").await;
    assert_eq!(
        (m.topic.as_str(), m.qos),
        ("owntracks/alice/phone", qos0_arrives_as)
    );
    assert_eq!(m.ack.is_some(), qos0_arrives_as > 0);
    if let Some(ack) = m.ack {
        s.client.ack(ack).await;
        acked += 1;
    }

    let big = vec![b'x'; 200 * 1024];
    let acked_before = acked;
    publish(
        port,
        "landport/acme/truck-1/senml",
        vec![big.clone()],
        QoS::AtLeastOnce,
    )
    .await;
    let m = recv(&mut s.rx, "a 200 KiB payload").await;
    assert_eq!(m.payload.len(), big.len());
    s.client.ack(m.ack.unwrap()).await;
    acked += 1;
    assert!(acked > acked_before);
    wait_until("the PUBACK of the big one", || s.stats.acked() == acked).await;

    // Events (QoS 1, waiting) and dead letters (best effort, never waiting) go out.
    let mut out = subscriber(port, "landport/acme/truck-1/+").await;
    let event = br#"{"id":"evt_1","type":"device.online"}"#.to_vec();
    s.client
        .publish("landport/acme/truck-1/events", event.clone(), true)
        .await
        .expect("publishing an event");
    let dead = br#"{"reason":"payload_too_large"}"#.to_vec();
    s.client
        .try_publish("landport/acme/truck-1/rejected", dead.clone(), true)
        .expect("queueing a dead letter");
    for (topic, body) in [("events", &event), ("rejected", &dead)] {
        let got = tokio::time::timeout(WAIT, out.recv())
            .await
            .unwrap_or_else(|_| panic!("the {topic} message within WAIT"))
            .expect("subscriber alive");
        assert_eq!(got.topic, format!("landport/acme/truck-1/{topic}"));
        assert_eq!(&got.payload[..], &body[..]);
    }
    assert!(matches!(
        s.client.publish("landport/+/x/events", vec![], true).await,
        Err(MqttError::InvalidTopic { .. })
    ));
    assert!(matches!(
        s.client.try_publish("", vec![], false),
        Err(MqttError::InvalidTopic { .. })
    ));
    assert_eq!(s.stats.published(), 2);
    assert_eq!(s.stats.received(), 3 + u64::from(require("mosquitto_pub")));
    s.stop().await;
}

/// A first source receives ten QoS 1 messages and acks the first five, then dies (its task
/// is aborted, nothing flushed; the other five tokens are still held, not dropped); a second
/// source with the same client id starts. Returns the indices the second one receives
/// before a marker published after it subscribed.
///
/// `acks_arrived` tells whether the broker has received the five PUBACKs: the source counts an
/// ack when it hands it to its client, and an abort may still lose what is not on the wire.
pub async fn redelivered_after_source_restart(
    port: u16,
    client_id: &str,
    acks_arrived: impl Fn() -> bool,
) -> Vec<usize> {
    let topic = "landport/acme/truck-9/telemetry";
    let mut first = run_source(source_config(port, client_id)).await;
    publish(
        port,
        topic,
        (0..10).map(|i| format!("m{i}").into_bytes()).collect(),
        QoS::AtLeastOnce,
    )
    .await;
    let mut unacked = Vec::new();
    for i in 0..10 {
        let m = recv(&mut first.rx, "the first source's messages").await;
        assert_eq!(&m.payload[..], format!("m{i}").as_bytes(), "in order");
        if i < 5 {
            first.client.ack(m.ack.unwrap()).await;
        } else {
            unacked.push(m.ack.unwrap());
        }
    }
    wait_until("five PUBACKs written", || first.stats.acked() == 5).await;
    wait_until("the broker to have the five PUBACKs", &acks_arrived).await;
    first.driver.abort();
    let _ = first.driver.await;
    drop(unacked);
    drop(first.rx);

    let mut second = run_source(source_config(port, client_id)).await;
    publish(port, topic, vec![b"marker".to_vec()], QoS::AtLeastOnce).await;
    let mut got = Vec::new();
    loop {
        let m = recv(&mut second.rx, "redelivered messages, then the marker").await;
        if let Some(ack) = m.ack {
            second.client.ack(ack).await;
        }
        if &m.payload[..] == b"marker" {
            break;
        }
        let text = std::str::from_utf8(&m.payload).unwrap();
        got.push(text.trim_start_matches('m').parse().unwrap());
    }
    second.stop().await;
    got
}

/// PUBACKs go out in arrival order whatever order the acks come in; a token dropped without
/// an ack makes the source reconnect once a later ack waits on it, and the broker sends the
/// dropped message (and the one after it) again.
pub async fn ordered_acks_and_dropped_tokens(port: u16, client_id: &str) {
    let topic = "landport/acme/truck-5/telemetry";
    let mut s = run_source(source_config(port, client_id)).await;
    publish(
        port,
        topic,
        (0..4).map(|i| format!("m{i}").into_bytes()).collect(),
        QoS::AtLeastOnce,
    )
    .await;
    let mut tokens = Vec::new();
    for i in 0..4 {
        let m = recv(&mut s.rx, "four messages").await;
        assert_eq!(&m.payload[..], format!("m{i}").as_bytes());
        tokens.push(Some(m.ack.unwrap()));
    }
    s.client.ack(tokens[1].take().unwrap()).await;
    // Waiting for nothing to happen: a short pause is all there is.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.stats.acked(), 0, "m1's PUBACK must wait for m0's");
    s.client.ack(tokens[0].take().unwrap()).await;
    wait_until("m0 and m1 acked", || s.stats.acked() == 2).await;

    drop(tokens[2].take());
    s.client.ack(tokens[3].take().unwrap()).await;
    wait_until("a forced reconnect", || {
        s.stats.forced_reconnects() == 1 && s.stats.reconnects() == 1 && s.stats.ready()
    })
    .await;
    assert_eq!(s.stats.acks_abandoned(), 1);
    for i in [2, 3] {
        let m = recv(&mut s.rx, "the dropped message and the one after it").await;
        assert_eq!(&m.payload[..], format!("m{i}").as_bytes());
        s.client.ack(m.ack.unwrap()).await;
    }
    wait_until("m2 and m3 acked", || s.stats.acked() == 4).await;
    publish(port, topic, vec![b"m4".to_vec()], QoS::AtLeastOnce).await;
    let m = recv(&mut s.rx, "a message after the reconnect").await;
    assert_eq!(&m.payload[..], b"m4");
    s.client.ack(m.ack.unwrap()).await;
    wait_until("m4 acked", || s.stats.acked() == 5).await;
    assert_eq!(s.stats.received(), 7);
    s.stop().await;
}

/// With room for 4 messages and nobody reading, 1,000 QoS 1 messages don't pile up in the
/// source: it stops reading after the channel is full. Once drained (and acked), all arrive.
pub async fn backpressure(port: u16, client_id: &str) {
    let topic = "landport/acme/truck-2/telemetry";
    let cfg = MqttSourceConfig {
        channel_capacity: 4,
        ..source_config(port, client_id)
    };
    let mut s = run_source(cfg).await;
    publish(
        port,
        topic,
        (0..1000).map(|i| format!("{i}").into_bytes()).collect(),
        QoS::AtLeastOnce,
    )
    .await;
    // Let the source take in all it would; it must stop at the channel's 4 plus the one
    // waiting to be sent. (Waiting for nothing to happen: a fixed pause is all there is.)
    wait_until("the channel to fill", || s.rx.len() == 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.rx.len(), 4);
    assert!(
        s.stats.received() <= 5,
        "the source took {} messages in with room for 4",
        s.stats.received()
    );
    let mut seen = vec![false; 1000];
    let mut count = 0;
    while count < 1000 {
        let m = recv(&mut s.rx, "the backlog").await;
        let i: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        if !seen[i] {
            seen[i] = true;
            count += 1;
        }
        s.client.ack(m.ack.unwrap()).await;
    }
    wait_until("all PUBACKs written", || s.stats.acked() >= 1000).await;
    s.stop().await;
}

/// A TCP proxy in front of a broker that counts the PUBACKs clients send through it. A PUBACK
/// it has counted is on the broker's socket, ahead of whatever the client sends after it (its
/// disconnect included): for brokers that cannot be asked whether they have an ack (rumqttd).
pub struct PubackCounter {
    /// Where clients connect instead of the broker.
    pub port: u16,
    pubacks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PubackCounter {
    /// Listens on a free loopback port and forwards each connection to `broker_port`.
    pub async fn start(broker_port: u16) -> PubackCounter {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let port = listener.local_addr().unwrap().port();
        let pubacks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = pubacks.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = tokio::net::TcpStream::connect(("127.0.0.1", broker_port)).await
                else {
                    continue;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_broker, mut to_broker) = broker.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_broker, &mut to_client).await;
                    let _ = to_client.shutdown().await;
                });
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut packets = PacketSplitter::default();
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = from_client.read(&mut buf).await {
                        if n == 0 || to_broker.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let forwarded = packets.complete(&buf[..n], PUBACK);
                        counter.fetch_add(forwarded, std::sync::atomic::Ordering::SeqCst);
                    }
                    let _ = to_broker.shutdown().await;
                });
            }
        });
        PubackCounter {
            port,
            pubacks,
            task,
        }
    }

    /// PUBACKs forwarded to the broker so far.
    pub fn pubacks(&self) -> u64 {
        self.pubacks.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for PubackCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// MQTT's packet type of PUBACK (the fixed header's high nibble).
const PUBACK: u8 = 4;

/// Splits a byte stream into MQTT packets by their fixed headers (type, remaining length).
#[derive(Default)]
struct PacketSplitter {
    /// Type of the packet under way; `None` between packets.
    kind: Option<u8>,
    /// Remaining length read so far, and the shift of its next 7 bits; `None` once complete.
    length: Option<(usize, u32)>,
    /// Body bytes still to come.
    left: usize,
}

impl PacketSplitter {
    /// Takes the next `bytes` of the stream; returns how many packets of type `kind` ended in
    /// them.
    fn complete(&mut self, bytes: &[u8], kind: u8) -> u64 {
        let mut ended = 0;
        let mut i = 0;
        while i < bytes.len() {
            match (self.kind, self.length) {
                (None, _) => {
                    self.kind = Some(bytes[i] >> 4);
                    self.length = Some((0, 0));
                    i += 1;
                }
                (Some(_), Some((value, shift))) => {
                    let b = bytes[i];
                    i += 1;
                    let value = value | (usize::from(b & 0x7f) << shift);
                    if b & 0x80 != 0 {
                        self.length = Some((value, shift + 7));
                    } else {
                        self.length = None;
                        self.left = value;
                    }
                }
                (Some(_), None) => {
                    let take = self.left.min(bytes.len() - i);
                    i += take;
                    self.left -= take;
                }
            }
            if self.kind.is_some() && self.length.is_none() && self.left == 0 {
                ended += u64::from(self.kind == Some(kind));
                self.kind = None;
            }
        }
        ended
    }
}

/// MQTT's packet type of PUBLISH (the fixed header's high nibble).
const PUBLISH: u8 = 3;

/// A TCP proxy in front of a broker that, while holding, keeps back what a client sends from
/// its first PUBLISH on (so the broker neither gets those publishes nor acknowledges them) and
/// throws it away if the client's connection ends meanwhile: publishes in flight when a client
/// dies, or a broker that stalls. Connections that never publish (a subscriber) pass freely.
pub struct PublishHold {
    /// Where clients connect instead of the broker.
    pub port: u16,
    holding: tokio::sync::watch::Sender<bool>,
    /// Bumped to cut every connection.
    cut: tokio::sync::watch::Sender<u64>,
    held: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PublishHold {
    /// Listens on a free loopback port and forwards each connection to `broker_port`,
    /// holding from the start if `holding`.
    pub async fn start(broker_port: u16, holding: bool) -> PublishHold {
        use tokio::io::AsyncWriteExt;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let port = listener.local_addr().unwrap().port();
        let (hold_tx, hold_rx) = tokio::sync::watch::channel(holding);
        let (cut_tx, cut_rx) = tokio::sync::watch::channel(0u64);
        let held = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = held.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = tokio::net::TcpStream::connect(("127.0.0.1", broker_port)).await
                else {
                    continue;
                };
                let (from_client, mut to_client) = client.into_split();
                let (mut from_broker, to_broker) = broker.into_split();
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                let down = tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::io::copy(&mut from_broker, &mut to_client) => {}
                        _ = cut.changed() => {}
                    }
                    let _ = to_client.shutdown().await;
                });
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                let up = hold_forward(from_client, to_broker, hold_rx.clone(), counter.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = up => {}
                        _ = cut.changed() => {}
                    }
                    // Dropping the halves closes both sockets; the client sees the end.
                    down.abort();
                });
            }
        });
        PublishHold {
            port,
            holding: hold_tx,
            cut: cut_tx,
            held,
            task,
        }
    }

    /// Starts or stops holding; stopping forwards what is held, in order.
    pub fn hold(&self, yes: bool) {
        self.holding.send_replace(yes);
    }

    /// Closes every connection through it now (what it held is gone).
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// PUBLISH packets held back so far, in all.
    pub fn held_publishes(&self) -> u64 {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for PublishHold {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// The client-to-broker half of [`PublishHold`]: forwards whole packets, or keeps them back
/// while holding (from the first PUBLISH on); what is held when the client ends is dropped.
async fn hold_forward(
    mut from_client: tokio::net::tcp::OwnedReadHalf,
    mut to_broker: tokio::net::tcp::OwnedWriteHalf,
    mut holding: tokio::sync::watch::Receiver<bool>,
    counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = Vec::new();
    let mut held: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = from_client.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                stream.extend_from_slice(&buf[..n]);
                let mut out = Vec::new();
                while let Some(packet) = next_packet(&mut stream) {
                    let publish = packet[0] >> 4 == PUBLISH;
                    if *holding.borrow() && (publish || !held.is_empty()) {
                        counter.fetch_add(u64::from(publish), std::sync::atomic::Ordering::SeqCst);
                        held.extend_from_slice(&packet);
                    } else {
                        out.extend_from_slice(&packet);
                    }
                }
                if !out.is_empty() && to_broker.write_all(&out).await.is_err() {
                    break;
                }
            }
            changed = holding.changed() => {
                if changed.is_err() {
                    break;
                }
                if !*holding.borrow_and_update()
                    && !held.is_empty()
                    && to_broker.write_all(&std::mem::take(&mut held)).await.is_err()
                {
                    break;
                }
            }
        }
    }
    let _ = to_broker.shutdown().await;
}

/// Takes the first whole MQTT packet off the front of `stream`, if it is all there.
fn next_packet(stream: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut len = 0usize;
    let mut i = 1;
    loop {
        let b = *stream.get(i)?;
        len |= usize::from(b & 0x7f) << (7 * (i - 1));
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let end = i + len;
    (stream.len() >= end).then(|| stream.drain(..end).collect())
}
