//! `landport_cluster::partition::partition` against the real thing: a nats-server with the
//! documented mapping (tests/support/nats.rs) partitions readings published over its MQTT
//! gateway (`mosquitto_pub`, QoS 1) and natively (async-nats); every one must arrive on the
//! partition `partition()` computed. Also: the launcher's 3-node cluster elects a JetStream meta
//! leader and keeps taking R3 writes with a node SIGKILLed, and the operator example in
//! docs/nats/ is the launcher's own template.

#[path = "support/nats.rs"]
mod nats;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use futures_util::StreamExt;
use landport_cluster::partition::{id_from_token, partition, subject_token};
use nats::{NatsCluster, documented_example, render_config};

/// Deterministic generator (xorshift64*) so a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An id as Landport allows them (1..=64 of `A-Z a-z 0-9 - _`, and `.` when `dots`).
    fn id(&mut self, dots: bool) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let len = match self.below(10) {
            0 => 64,
            1 => 1 + self.below(64),
            _ => 1 + self.below(16),
        } as usize;
        let mut id: String = (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize] as char)
            .collect();
        if dots && len >= 3 {
            let at = 1 + self.below(len as u64 - 2) as usize;
            id.replace_range(at..=at, ".");
        }
        id
    }
}

/// A reading to publish: tenant, device, format (`telemetry` or `senml`), and how.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Sent {
    tenant: String,
    device: String,
    format: &'static str,
    via_mqtt: bool,
}

/// Several hundred (tenant, device) pairs: a few tenants with many devices, edge lengths
/// (1 and 64 characters), and ids with dots (native publishes only: nats-server 2.9 refuses a
/// `.` in an MQTT topic).
fn readings(seed: u64) -> Vec<Sent> {
    let mut rng = Rng(seed);
    let tenants: Vec<String> = (0..12).map(|_| rng.id(false)).collect();
    let mut out = Vec::new();
    for i in 0..360 {
        let dots = i % 9 == 0;
        let tenant = match i % 60 {
            0 => "a".repeat(64),
            1 => "-".to_owned(),
            _ if dots && i % 2 == 0 => rng.id(true),
            _ => tenants[rng.below(tenants.len() as u64) as usize].clone(),
        };
        let device = match i % 45 {
            0 => "_".repeat(64),
            1 => "7".to_owned(),
            _ => rng.id(dots && i % 2 == 1),
        };
        let format = if i % 5 == 0 { "senml" } else { "telemetry" };
        for via_mqtt in [false, true] {
            if via_mqtt && (tenant.contains('.') || device.contains('.')) {
                continue;
            }
            out.push(Sent {
                tenant: tenant.clone(),
                device: device.clone(),
                format,
                via_mqtt,
            });
        }
    }
    out
}

/// Publishes `sent[i]` with `mosquitto_pub` to the MQTT gateway at `port`, QoS 1, payload
/// `mqtt {i}`, a few processes at a time; panics on a failed publish.
fn publish_mqtt(port: u16, sent: &[(usize, Sent)]) {
    for chunk in sent.chunks(8) {
        let children: Vec<_> = chunk
            .iter()
            .map(|(i, s)| {
                let topic = format!("landport/{}/{}/{}", s.tenant, s.device, s.format);
                let child = Command::new("mosquitto_pub")
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
                    .args(["-t", &topic, "-m", &format!("mqtt {i}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("mosquitto_pub (mosquitto-clients, installed by scripts/test)");
                (topic, child)
            })
            .collect();
        for (topic, child) in children {
            let out = child.wait_with_output().expect("mosquitto_pub runs");
            assert!(
                out.status.success(),
                "mosquitto_pub to {topic}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Every reading published natively and over MQTT to a server mapping `partitions` partitions
/// arrives once, on `lp.{partition(tenant, device, partitions)}.{tenant}.{device}.{format}`.
async fn nats_partitions_as_partition_computes(partitions: u32, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsCluster::start(dir.path(), 1, partitions);
    let client = async_nats::connect(server.client_url(0)).await.unwrap();
    let mut sub = client.subscribe("lp.>").await.unwrap();
    client.flush().await.unwrap();

    let sent = readings(seed);
    for (i, s) in sent.iter().enumerate().filter(|(_, s)| !s.via_mqtt) {
        let subject = format!(
            "landport.{}.{}.{}",
            subject_token(&s.tenant),
            subject_token(&s.device),
            s.format
        );
        client
            .publish(subject, format!("native {i}").into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let mqtt: Vec<(usize, Sent)> = sent
        .iter()
        .cloned()
        .enumerate()
        .filter(|(_, s)| s.via_mqtt)
        .collect();
    assert!(mqtt.len() > 250, "several hundred MQTT publishes");
    let port = server.mqtt_port(0);
    let publisher = tokio::task::spawn_blocking(move || publish_mqtt(port, &mqtt));

    // Every message: which reading it is (its payload) and where NATS put it.
    let mut arrived: BTreeMap<usize, String> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrived.len() < sent.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(msg)) = tokio::time::timeout(left, sub.next()).await else {
            panic!("{} of {} readings arrived", arrived.len(), sent.len());
        };
        let payload = String::from_utf8(msg.payload.to_vec()).unwrap();
        let (how, i) = payload.split_once(' ').unwrap();
        let i: usize = i.parse().unwrap();
        assert_eq!(how == "mqtt", sent[i].via_mqtt, "{payload}");
        let earlier = arrived.insert(i, msg.subject.to_string());
        assert!(earlier.is_none(), "reading {i} arrived twice");
    }
    publisher.await.unwrap();

    let mut used = BTreeSet::new();
    for (i, subject) in &arrived {
        let s = &sent[*i];
        let tokens: Vec<&str> = subject.split('.').collect();
        let [lp, p, tenant, device, format] = tokens[..] else {
            panic!("unexpected subject {subject}");
        };
        assert_eq!((lp, format), ("lp", s.format), "{subject}");
        assert_eq!(
            (id_from_token(tenant), id_from_token(device)),
            (s.tenant.as_str().into(), s.device.as_str().into()),
            "{subject}"
        );
        let expected = partition(&s.tenant, &s.device, partitions);
        assert_eq!(
            p,
            expected.to_string(),
            "{s:?}: NATS chose {subject}, partition() says {expected}"
        );
        used.insert(expected);
    }
    assert_eq!(used.len(), partitions as usize, "every partition used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_puts_every_reading_on_the_partition_partition_computes_of_4() {
    nats_partitions_as_partition_computes(4, 0x5eed_0004).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_puts_every_reading_on_the_partition_partition_computes_of_16() {
    nats_partitions_as_partition_computes(16, 0x5eed_0016).await;
}

/// Publishes `payload` to `subject` through JetStream until the stream acknowledges it (a
/// cluster that just lost a node may need an election first), with `payload` as the message
/// id so a retry of a write that was stored is not stored twice; returns the stream sequence.
async fn publish_acked(js: &jetstream::Context, subject: &str, payload: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let message = PublishMessage::build()
                .payload(payload.to_owned().into())
                .message_id(payload);
            js.send_publish(subject.to_owned(), message)
                .await?
                .await
                .map_err(async_nats::Error::from)
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(ack)) => {
                assert_eq!(ack.stream, "LANDPORT");
                return ack.sequence;
            }
            outcome => assert!(
                Instant::now() < deadline,
                "no ack for {subject} within 60 s: {outcome:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the stream LANDPORT holds `n` messages (an MQTT publish is acknowledged by
/// the gateway before JetStream stores it); panics on more, or after 60 s.
async fn wait_for_stream_messages(js: &jetstream::Context, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(5), js.get_stream("LANDPORT")).await
            && let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(5), stream.info()).await
        {
            let messages = info.state.messages;
            assert!(
                messages <= n,
                "{messages} messages in LANDPORT, expected {n}"
            );
            if messages == n {
                return;
            }
            last = Some(messages);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("LANDPORT holds {last:?} messages after 60 s, expected {n}");
}

/// A QoS 1 MQTT publish of an empty reading of `acme/{device}` to a node's gateway.
fn publish_mqtt_reading(port: u16, device: &str) {
    let reading = Sent {
        tenant: "acme".into(),
        device: device.into(),
        format: "telemetry",
        via_mqtt: true,
    };
    publish_mqtt(port, &[(0, reading)]);
}

/// Like [`publish_mqtt_reading`], retried as a device reconnects: right after a node dies the
/// gateway drops connections until JetStream has moved its MQTT session streams' leaders.
async fn publish_mqtt_reading_retried(port: u16, device: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let device = device.to_owned();
        match tokio::task::spawn_blocking(move || publish_mqtt_reading(port, &device)).await {
            Ok(()) => return,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no MQTT publish within 60 s: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The stream sequence of the last message on `subject`, waiting up to 60 s for one.
async fn wait_for_subject(js: &jetstream::Context, subject: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(5), js.get_stream("LANDPORT")).await
            && let Ok(Ok(message)) = tokio::time::timeout(
                Duration::from_secs(5),
                stream.get_last_raw_message_by_subject(subject),
            )
            .await
        {
            return message.sequence;
        }
        assert!(Instant::now() < deadline, "nothing on {subject} after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_elects_a_meta_leader_and_takes_writes_with_one_node_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = NatsCluster::start(dir.path(), 3, 16);
    let leaders: BTreeSet<String> = (0..3).filter_map(|i| cluster.meta_leader(i)).collect();
    assert_eq!(leaders.len(), 1, "every node names the same meta leader");
    let leader = leaders.into_iter().next().unwrap();
    let urls = cluster.client_urls();
    assert_eq!(urls.split(',').count(), 3, "{urls}");

    let client = async_nats::connect(urls.split(',').collect::<Vec<_>>())
        .await
        .unwrap();
    let js = jetstream::new(client);
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: "LANDPORT".to_owned(),
            subjects: vec!["lp.>".to_owned()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stream.cached_info().config.num_replicas, 3);

    // The mapping feeds the stream: a native publish to landport.{t}.{d}.telemetry is stored
    // on lp.{P}..., and so is an MQTT QoS 1 publish to any node's gateway.
    assert_eq!(
        publish_acked(&js, "landport.acme.truck-1.telemetry", "r1").await,
        1
    );
    publish_mqtt_reading(cluster.mqtt_port(2), "truck-2");
    wait_for_stream_messages(&js, 2).await;

    // SIGKILL the meta leader: the two others elect a new one and the R3 stream keeps quorum.
    let victim = (0..3)
        .find(|&i| cluster.config(i).server_name == leader)
        .unwrap();
    cluster.kill(victim);
    let survivor = (victim + 1) % 3;
    assert!(!cluster.is_running(victim) && cluster.is_running(survivor));
    assert_eq!(
        publish_acked(&js, "landport.acme.truck-3.telemetry", "r3").await,
        3
    );
    let new_leader = wait_for_new_meta_leader(&cluster, survivor, &leader).await;
    assert!(
        (0..3).any(|i| i != victim && cluster.config(i).server_name == new_leader),
        "{new_leader} leads"
    );
    publish_mqtt_reading_retried(cluster.mqtt_port(survivor), "truck-4").await;
    let subject = format!(
        "lp.{}.acme.truck-4.telemetry",
        partition("acme", "truck-4", 16)
    );
    assert!(wait_for_subject(&js, &subject).await > 3);

    // The killed node comes back on the same ports and store and rejoins.
    cluster.restart(victim);
    assert!(cluster.meta_leader(victim).is_some());
    assert!(publish_acked(&js, "landport.acme.truck-5.telemetry", "r5").await > 4);
}

/// The meta leader as node `node` sees it once it is not `old` (the killed leader), waiting
/// for the election.
async fn wait_for_new_meta_leader(cluster: &NatsCluster, node: usize, old: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match cluster.meta_leader(node) {
            Some(leader) if leader != old => return leader,
            seen => assert!(
                Instant::now() < deadline,
                "no new meta leader after 60 s (n{} sees {seen:?})",
                node + 1
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `docs/nats/landport-nats.conf` is what the launcher's template renders for the documented
/// settings, so the example operators copy is the config these tests run. With
/// `LANDPORT_BLESS=1` the file is rewritten from the template.
#[test]
fn documented_nats_config_is_the_tested_template() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/nats/landport-nats.conf");
    let rendered = render_config(&documented_example());
    if std::env::var_os("LANDPORT_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        committed, rendered,
        "docs/nats/landport-nats.conf differs from render_config(&documented_example()); \
         rerun with LANDPORT_BLESS=1 to regenerate it"
    );
    for line in [
        "server_name: n1",
        "max_payload: 8MB",
        r#""landport.*.*.telemetry": "lp.{{partition(16,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.telemetry""#,
        r#""landport.*.*.senml": "lp.{{partition(16,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.senml""#,
        "    nats://nats3:6222",
    ] {
        assert!(committed.lines().any(|l| l.trim() == line.trim()), "{line}");
    }
}
