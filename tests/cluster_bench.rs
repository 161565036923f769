//! Cluster-mode bench (BENCHMARKS.md, "Cluster mode (NATS)"; docs/scaling.md): the real
//! `landport run` binary, single-node and with `[cluster]` on a NATS cluster started here
//! (cluster/tests/support/nats.rs: JetStream, the MQTT gateway, the partition mapping). Ignored
//! by default; `scripts/bench-cluster` builds release, runs it and prints the report:
//!
//! ```sh
//! cargo test --release --test cluster_bench -- --ignored --nocapture
//! ```
//!
//! In one run:
//! 1. **Baseline**: a single-node Landport (its own MQTT endpoint, no `[cluster]`) takes N
//!    readings over MQTT QoS 1 (4 connections, 1,000 in flight each), published as fast as it
//!    takes them; timed until `landport_readings_accepted_total` has grown by N.
//! 2. **Cluster, 1 instance and then 2 instances** (each on a fresh NATS cluster): the same N
//!    readings published natively to `landport.bench.{device}.telemetry` with JetStream
//!    acknowledged publishes (a window of 4,096 unacknowledged), so each is durable in the
//!    stream `LANDPORT` before it counts as sent; NATS maps it to its partition. Timed until
//!    the instances' accepted readings (summed) have grown by N.
//!
//!    Then once more with 1 instance, the readings sent the way devices send them: MQTT QoS 1
//!    through NATS's MQTT gateway (4 connections over the NATS nodes; `BENCH_CLUSTER_MQTT=0`
//!    skips it). A gateway's PUBACK is NATS's, before the stream has the message.
//!
//!    For all of them: readings/s, and the CPU time (utime + stime, /proc/{pid}/stat) each
//!    Landport and nats-server process spent over that window, per stored reading.
//! 3. **Handover**, with 2 instances under a steady load (a native publisher at
//!    `BENCH_CLUSTER_STEADY_RATE` readings/s): `kill -9` of instance `lp-1`, then
//!    (a) the time until the survivor has every partition live (`landport_cluster_partitions_live`),
//!    split into the wait for the dead instance's leases to lapse (the survivor holds every
//!    lease in `LANDPORT_LEASES`) and the rebuild (`landport_cluster_takeover_seconds`: registry
//!    applied, the partition's stream replayed); and (b) the time until a reading of a device
//!    of a moved partition, published right after the kill, is answered by
//!    `GET /v1/devices/{id}` through the survivor. Measured with the N readings of step 2
//!    retained in the stream and again on a fresh deployment with `BENCH_CLUSTER_SMALL`, both
//!    without a snapshot (the throughput runs and these set `cluster.snapshot_seconds` to a
//!    day), and, on a fresh deployment, with N readings and a partition snapshot saved
//!    (`snapshot_seconds` = `BENCH_CLUSTER_SNAPSHOT_SECONDS`, killed after two of them).
//!
//! Knobs (environment): BENCH_CLUSTER_READINGS (200000), BENCH_CLUSTER_DEVICES (4000),
//! BENCH_CLUSTER_PARTITIONS (8), BENCH_CLUSTER_NATS_NODES (3), BENCH_CLUSTER_LEASE_SECONDS (10),
//! BENCH_CLUSTER_SMALL (10000), BENCH_CLUSTER_STEADY_RATE (500), BENCH_CLUSTER_SNAPSHOT_SECONDS
//! (5), BENCH_CLUSTER_R1 and BENCH_CLUSTER_MQTT (1; 0 skips that run), BENCH_CLUSTER_REPORT (a
//! file the markdown report is also written to).

#[path = "../cluster/tests/support/nats.rs"]
mod nats;
mod support;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nats::NatsCluster;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use support::{Landport, free_port, http, metric, wait_for};

const ADMIN: &str = "cluster-bench-admin-key-0123456789abcdef";
const TENANT: &str = "bench";
/// Unacknowledged JetStream publishes in flight at once.
const WINDOW: usize = 4096;
/// The probe reading's latitude: no other reading has it.
const PROBE_LAT: f64 = 12.345678;
/// The name of this process in the CPU figures: the publishers and the polling.
const BENCH_PROCESS: &str = "bench process (publisher)";

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone)]
struct Settings {
    readings: usize,
    devices: usize,
    partitions: u32,
    nats_nodes: usize,
    lease_seconds: u64,
    small: usize,
    steady_rate: u64,
    /// Whether this build has `cluster.snapshot_seconds` (partition snapshots in NATS).
    snapshots: bool,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            readings: env("BENCH_CLUSTER_READINGS", 200_000),
            devices: env("BENCH_CLUSTER_DEVICES", 4_000),
            partitions: env("BENCH_CLUSTER_PARTITIONS", 8),
            nats_nodes: env("BENCH_CLUSTER_NATS_NODES", 3),
            lease_seconds: env("BENCH_CLUSTER_LEASE_SECONDS", 10),
            small: env("BENCH_CLUSTER_SMALL", 10_000),
            steady_rate: env("BENCH_CLUSTER_STEADY_RATE", 500),
            snapshots: false,
        }
    }
}

// ----- CPU time from /proc ------------------------------------------------------------------

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // Fields after the command (which may hold spaces) start with field 3, `state`.
    let rest = &stat[stat.rfind(')').expect("a /proc stat line") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / clock_ticks()
}

/// The pid of the process whose command line holds `needle` (a nats-server's config path).
fn pid_with_arg(needle: &str) -> u32 {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
        {
            return pid;
        }
    }
    panic!("no process running with {needle}")
}

/// The processes whose CPU a run counts: (name, pid).
type Procs = Vec<(String, u32)>;

fn cpu_snapshot(procs: &Procs) -> Vec<f64> {
    procs.iter().map(|(_, pid)| cpu_seconds(*pid)).collect()
}

// ----- readings -----------------------------------------------------------------------------

fn device(d: usize) -> String {
    format!("truck-{d}")
}

/// Reading `i` of a batch: device `i % devices`, its `i / devices`-th reading (a second
/// apart, from `base_ms`), each device moving north on its own line.
fn reading(i: usize, devices: usize, base_ms: i64) -> (usize, Vec<u8>) {
    let (d, k) = (i % devices, i / devices);
    let lat = 41.0 + (d % 100) as f64 * 0.001 + k as f64 * 1e-4;
    let lon = 123.0 + (d / 100) as f64 * 0.001;
    let ts = base_ms + k as i64 * 1_000;
    let payload = format!(r#"{{"ts":{ts},"lat":{lat:.6},"lon":{lon:.6},"speed_kmh":40}}"#);
    (d, payload.into_bytes())
}

/// How many of the first `n` readings [`reading`] gives device `d`.
fn readings_of(d: usize, n: usize, devices: usize) -> usize {
    n / devices + usize::from(d < n % devices)
}

/// Publishes readings `0..n` with QoS 1 over `connections` MQTT connections (device `d` on
/// connection `d % connections`, so each device's readings stay in order; connection `c` to
/// `ports[c % ports.len()]`) and waits for every PUBACK.
async fn publish_mqtt(ports: &[u16], n: usize, devices: usize, base_ms: i64, connections: usize) {
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mine: Vec<(String, Vec<u8>)> = (0..n)
            .filter(|i| (i % devices) % connections == c)
            .map(|i| {
                let (d, p) = reading(i, devices, base_ms);
                (format!("landport/{TENANT}/{}/telemetry", device(d)), p)
            })
            .collect();
        let port = ports[c % ports.len()];
        tasks.push(tokio::spawn(async move {
            let mut opts = MqttOptions::new(format!("bench-pub-{c}"), "127.0.0.1", port);
            opts.set_keep_alive(Duration::from_secs(60));
            opts.set_inflight(1_000);
            let (client, mut eventloop) = AsyncClient::new(opts, 1_000);
            let total = mine.len();
            let sender = tokio::spawn(async move {
                for (topic, payload) in mine {
                    client
                        .publish(topic, QoS::AtLeastOnce, false, payload)
                        .await
                        .expect("queueing a publish");
                }
                client
            });
            let (mut acked, mut resets) = (0, 0);
            while acked < total {
                match tokio::time::timeout(Duration::from_secs(60), eventloop.poll()).await {
                    Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                    Ok(Ok(_)) => {}
                    // rumqttc connects again on the next poll and sends again what was not
                    // acknowledged (a broker may drop a connection while it sets up).
                    Ok(Err(e)) if resets < 10 => {
                        resets += 1;
                        eprintln!("MQTT publisher {c}: {e}; connecting again");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Ok(Err(e)) => panic!("MQTT publisher {c}: {e} ({acked} of {total} acked)"),
                    Err(_) => panic!("MQTT publisher {c}: no PUBACK for 60 s"),
                }
            }
            let client = sender.await.unwrap();
            let _ = client.try_disconnect();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Waits until an MQTT client can connect to `port` (CONNACK), then disconnects.
async fn wait_mqtt_connect(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut opts = MqttOptions::new(format!("bench-warmup-{port}"), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(opts, 10);
        let connected = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        let _ = client.try_disconnect();
        if connected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "NATS's MQTT gateway on {port} takes no connection"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Publishes readings `from..to` natively to JetStream, [`WINDOW`] unacknowledged at most; a
/// publish whose acknowledgement fails is sent again (a duplicate reading would be counted as
/// such, never accepted twice).
async fn publish_js(
    js: &async_nats::jetstream::Context,
    from: usize,
    to: usize,
    devices: usize,
    base_ms: i64,
) {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut retries = 0;
    for i in from..to {
        let (d, payload) = reading(i, devices, base_ms);
        let subject = format!("landport.{TENANT}.{}.telemetry", device(d));
        let payload = Bytes::from(payload);
        let ack = js
            .publish(subject.clone(), payload.clone())
            .await
            .expect("a JetStream publish");
        pending.push_back((subject, payload, ack));
        if pending.len() >= WINDOW {
            settle(js, pending.pop_front().unwrap(), &mut retries).await;
        }
    }
    while let Some(p) = pending.pop_front() {
        settle(js, p, &mut retries).await;
    }
}

/// A publish waiting for its acknowledgement: (subject, payload, the ack to come).
type Pending = (
    String,
    Bytes,
    async_nats::jetstream::context::PublishAckFuture,
);

/// Waits for a publish's acknowledgement; publishes it again until one comes.
async fn settle(js: &async_nats::jetstream::Context, p: Pending, retries: &mut usize) {
    let (subject, payload, ack) = p;
    let mut result = ack.await.map(|_| ());
    while let Err(e) = result {
        *retries += 1;
        assert!(*retries < 1_000, "JetStream publishes keep failing: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        result = match js.publish(subject.clone(), payload.clone()).await {
            Ok(ack) => ack.await.map(|_| ()),
            Err(e) => Err(e),
        };
    }
}

async fn nats_client(nats: &NatsCluster) -> async_nats::Client {
    let urls: Vec<async_nats::ServerAddr> = nats
        .client_urls()
        .split(',')
        .map(|u| u.parse().unwrap())
        .collect();
    async_nats::ConnectOptions::new()
        .name("cluster-bench")
        .connect(urls)
        .await
        .expect("connecting to NATS")
}

// ----- Landport -----------------------------------------------------------------------------

fn metric_of(addr: SocketAddr, name: &str) -> f64 {
    support::http_get(addr, "/metrics")
        .map(|(_, body)| metric(&body, name))
        .unwrap_or(0.0)
}

fn accepted(addrs: &[SocketAddr]) -> f64 {
    addrs
        .iter()
        .map(|a| metric_of(*a, "landport_readings_accepted_total"))
        .sum()
}

/// Waits until the instances' accepted readings reach `target`.
fn wait_accepted(addrs: &[SocketAddr], target: f64) {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let got = accepted(addrs);
        if got >= target {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {target} readings accepted after 900 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Landport instance with `[cluster]` (config as in tests/cluster_e2e.rs).
fn start_instance(
    dir: &Path,
    i: usize,
    nats: &NatsCluster,
    s: &Settings,
    snapshot_seconds: Option<u64>,
) -> Landport {
    let dir = dir.join(format!("lp{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    let http_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut config = format!(
        "[http]\nlisten = \"{http_addr}\"\n\
         [storage]\npath = \"{}\"\n\
         [auth]\nadmin_key = \"{ADMIN}\"\n\
         [ingest]\nauto_register = true\n\
         [log]\nlevel = \"warn\"\n\
         [cluster]\nnats_url = \"{}\"\npartitions = {}\ninstance_id = \"lp-{i}\"\n\
         lease_seconds = {}\n",
        dir.join("data").display(),
        nats.client_urls(),
        s.partitions,
        s.lease_seconds,
    );
    if let Some(secs) = snapshot_seconds {
        config.push_str(&format!("snapshot_seconds = {secs}\n"));
    }
    Landport::start(&dir, &config, http_addr, 0)
}

/// A NATS cluster and `instances` Landport instances on it, every partition live, tenant
/// `bench` and a key for it written through the registry.
struct Deployment {
    _tmp: tempfile::TempDir,
    nats: NatsCluster,
    lps: Vec<Landport>,
    key: String,
    client: async_nats::Client,
    procs: Procs,
    nats_nodes: usize,
}

impl Deployment {
    /// `snapshot_seconds`: how often owners save partition snapshots (`None`: the key is not
    /// written, for a build without snapshots).
    async fn start(
        s: &Settings,
        instances: usize,
        nats_nodes: usize,
        snapshot_seconds: Option<u64>,
    ) -> Deployment {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let nats = NatsCluster::start(&dir.join("nats"), nats_nodes, s.partitions);
        let lps: Vec<Landport> = (0..instances)
            .map(|i| start_instance(&dir, i, &nats, s, snapshot_seconds))
            .collect();
        let addrs: Vec<SocketAddr> = lps.iter().map(|l| l.http).collect();
        // Every partition live, and shared evenly.
        let each = s.partitions as usize / instances;
        wait_for("every partition live", Duration::from_secs(120), || {
            let live: Vec<usize> = addrs
                .iter()
                .map(|a| metric_of(*a, "landport_cluster_partitions_live") as usize)
                .collect();
            (live.iter().sum::<usize>() == s.partitions as usize && live.iter().all(|l| *l >= each))
                .then_some(())
        });
        let (st, body) = wait_for("the tenant written", Duration::from_secs(60), || {
            let r = http(
                addrs[0],
                "POST",
                "/v1/tenants",
                Some(ADMIN),
                Some(&json!({"id": TENANT, "name": "Bench"})),
            );
            (r.0 == 201 || r.0 == 409).then_some(r)
        });
        assert!(st == 201 || st == 409, "{body}");
        let (st, key) = http(
            addrs[0],
            "POST",
            &format!("/v1/tenants/{TENANT}/keys"),
            Some(ADMIN),
            None,
        );
        assert_eq!(st, 201, "{key}");
        let key = key["key"].as_str().unwrap().to_owned();
        let mut procs: Procs = lps
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("landport lp-{i}"), l.child.id()))
            .collect();
        for n in 0..nats_nodes {
            let conf = dir
                .join("nats")
                .join(format!("n{}", n + 1))
                .join("nats.conf");
            procs.push((
                format!("nats-server n{}", n + 1),
                pid_with_arg(conf.to_str().unwrap()),
            ));
        }
        let client = nats_client(&nats).await;
        Deployment {
            _tmp: tmp,
            nats,
            lps,
            key,
            client,
            procs,
            nats_nodes,
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.lps.iter().map(|l| l.http).collect()
    }
}

// ----- measurements -------------------------------------------------------------------------

/// One throughput run: readings/s and CPU seconds per process over the window.
struct Throughput {
    name: String,
    readings: usize,
    /// Until the last publish was acknowledged.
    publish_secs: f64,
    /// Until the last reading was accepted (stored).
    secs: f64,
    cpu: Vec<(String, f64)>,
    /// The stream `LANDPORT` afterwards: (messages, bytes) on each replica.
    stream: Option<(u64, u64)>,
}

impl Throughput {
    fn rate(&self) -> f64 {
        self.readings as f64 / self.secs
    }

    fn us_per_reading(&self, f: impl Fn(&str) -> bool) -> f64 {
        self.cpu
            .iter()
            .filter(|(n, _)| f(n))
            .map(|(_, c)| c)
            .sum::<f64>()
            * 1e6
            / self.readings as f64
    }
}

/// The single-node baseline: its own MQTT endpoint, no `[cluster]`.
async fn baseline(s: &Settings, base_ms: i64) -> Throughput {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let http_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mqtt_port = free_port();
    let config = format!(
        "[http]\nlisten = \"{http_addr}\"\n\
         [mqtt]\nembedded = true\nlisten = \"127.0.0.1:{mqtt_port}\"\n\
         anonymous_tenant = \"{TENANT}\"\n\
         [storage]\npath = \"{}\"\n\
         [ingest]\nauto_register = true\n\
         [log]\nlevel = \"warn\"\n",
        dir.join("data").display()
    );
    let lp = Landport::start(dir, &config, http_addr, mqtt_port);
    let procs: Procs = vec![
        ("landport single".to_owned(), lp.child.id()),
        (BENCH_PROCESS.to_owned(), std::process::id()),
    ];
    let before = accepted(&[http_addr]);
    let cpu0 = cpu_snapshot(&procs);
    let t0 = Instant::now();
    publish_mqtt(&[mqtt_port], s.readings, s.devices, base_ms, 4).await;
    let publish_secs = t0.elapsed().as_secs_f64();
    wait_accepted(&[http_addr], before + s.readings as f64);
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_snapshot(&procs);
    Throughput {
        name: "single node, embedded MQTT endpoint (QoS 1, 4 connections)".to_owned(),
        readings: s.readings,
        publish_secs,
        secs,
        cpu: procs
            .iter()
            .zip(cpu0.iter().zip(&cpu1))
            .map(|((n, _), (a, b))| (n.clone(), b - a))
            .collect(),
        stream: None,
    }
}

/// The same readings into a cluster deployment, published natively (JetStream acked).
/// How a cluster run's readings reach NATS.
#[derive(Clone, Copy, PartialEq)]
enum Publish {
    /// Native JetStream publishes, each acknowledged once in the stream.
    Native,
    /// MQTT QoS 1 through NATS's MQTT gateway, 4 connections over the nodes.
    Mqtt,
}

async fn cluster_throughput(
    d: &Deployment,
    s: &Settings,
    base_ms: i64,
    how: Publish,
) -> Throughput {
    let addrs = d.addrs();
    let js = async_nats::jetstream::new(d.client.clone());
    if how == Publish::Mqtt {
        // Out of the timed window: each node's MQTT gateway sets up its JetStream state
        // (sessions) at its first connection.
        for n in 0..d.nats_nodes {
            let port = d.nats.mqtt_port(n);
            wait_mqtt_connect(port).await;
        }
    }
    let before = accepted(&addrs);
    let mut procs = d.procs.clone();
    procs.push((BENCH_PROCESS.to_owned(), std::process::id()));
    let cpu0 = cpu_snapshot(&procs);
    let t0 = Instant::now();
    match how {
        Publish::Native => publish_js(&js, 0, s.readings, s.devices, base_ms).await,
        Publish::Mqtt => {
            let ports: Vec<u16> = (0..d.nats_nodes).map(|n| d.nats.mqtt_port(n)).collect();
            publish_mqtt(&ports, s.readings, s.devices, base_ms, 4).await
        }
    }
    let publish_secs = t0.elapsed().as_secs_f64();
    let waiting = addrs.clone();
    let target = before + s.readings as f64;
    tokio::task::spawn_blocking(move || wait_accepted(&waiting, target))
        .await
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_snapshot(&procs);
    let mut stream = js
        .get_stream("LANDPORT")
        .await
        .expect("the stream LANDPORT");
    let state = &stream.info().await.expect("the stream's info").state;
    let stream = Some((state.messages, state.bytes));
    Throughput {
        name: format!(
            "cluster, {} instance{}, {} NATS node{} (R{}){}",
            d.lps.len(),
            if d.lps.len() == 1 { "" } else { "s" },
            d.nats_nodes,
            if d.nats_nodes == 1 { "" } else { "s" },
            if d.nats_nodes >= 3 { 3 } else { 1 },
            if how == Publish::Mqtt {
                ", MQTT QoS 1 through NATS's gateway"
            } else {
                ""
            },
        ),
        readings: s.readings,
        publish_secs,
        secs,
        cpu: procs
            .iter()
            .zip(cpu0.iter().zip(&cpu1))
            .map(|((n, _), (a, b))| (n.clone(), b - a))
            .collect(),
        stream,
    }
}

/// One handover: instance `lp-1` killed under a steady load.
struct Handover {
    /// What the new owner starts from.
    label: String,
    retained: usize,
    retained_moved: usize,
    moved: Vec<u32>,
    replayed: f64,
    /// Kill -> the survivor holds every moved partition's lease.
    leases_secs: f64,
    /// Kill -> every moved partition rebuilt on the survivor (its `takeover_seconds` count).
    rebuilt_secs: f64,
    /// Kill -> the survivor's `partitions_live` gauge says all.
    live_secs: f64,
    /// Kill -> the probe reading answered over HTTP.
    answered_secs: f64,
    /// Mean and total of the survivor's rebuilds (takeover_seconds).
    rebuild_mean: f64,
    rebuilds: f64,
    steady_published: u64,
}

/// A native publisher at `rate` readings/s, each device in turn, `ts` = now; on its own
/// thread and runtime, until `stop`.
fn steady_load(
    urls: String,
    devices: usize,
    rate: u64,
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let urls: Vec<async_nats::ServerAddr> =
                urls.split(',').map(|u| u.parse().unwrap()).collect();
            let client = async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connect(urls)
                .await
                .unwrap();
            let js = async_nats::jetstream::new(client);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let per_tick = (rate / 10).max(1);
            let mut d = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let now = landport_pipeline::now_ms();
                let mut acks = Vec::new();
                for _ in 0..per_tick {
                    let lat = 41.0 + (d % 100) as f64 * 0.001;
                    let lon = 123.0 + (d / 100 % devices.div_ceil(100)) as f64 * 0.001;
                    let payload =
                        format!(r#"{{"ts":{now},"lat":{lat:.6},"lon":{lon:.6},"speed_kmh":40}}"#);
                    let subject = format!("landport.{TENANT}.{}.telemetry", device(d % devices));
                    d += 1;
                    if let Ok(ack) = js.publish(subject, Bytes::from(payload)).await {
                        acks.push(ack);
                    }
                }
                for ack in acks {
                    if ack.await.is_ok() {
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    })
}

async fn handover(d: &mut Deployment, s: &Settings, retained: usize, label: &str) -> Handover {
    let survivor = d.lps[0].http;
    let js = async_nats::jetstream::new(d.client.clone());
    let leases = js
        .get_key_value("LANDPORT_LEASES")
        .await
        .expect("the lease bucket");
    let mut owners = BTreeMap::new();
    for p in 0..s.partitions {
        let owner = leases
            .get(format!("p{p}"))
            .await
            .unwrap()
            .unwrap_or_default();
        owners.insert(p, String::from_utf8_lossy(&owner).into_owned());
    }
    let moved: Vec<u32> = owners
        .iter()
        .filter(|(_, o)| *o == "lp-1")
        .map(|(p, _)| *p)
        .collect();
    assert!(!moved.is_empty(), "lp-1 holds no partition: {owners:?}");
    let part = |dev: &str| landport_cluster::partition::partition(TENANT, dev, s.partitions);
    let retained_moved: usize = (0..s.devices)
        .filter(|i| moved.contains(&part(&device(*i))))
        .map(|i| readings_of(i, retained, s.devices))
        .sum();
    let probe = (0..)
        .map(|k| format!("probe-{k}"))
        .find(|dev| moved.contains(&part(dev)))
        .unwrap();

    let takeover_sum0 = metric_of(survivor, "landport_cluster_takeover_seconds_sum");
    let takeover_count0 = metric_of(survivor, "landport_cluster_takeover_seconds_count");
    let replayed0 = metric_of(survivor, "landport_cluster_replayed_messages_total");

    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let load = steady_load(
        d.nats.client_urls(),
        s.devices,
        s.steady_rate,
        stop.clone(),
        published.clone(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    let t0 = Instant::now();
    d.lps[1].kill9();
    let ts = landport_pipeline::now_ms();
    let payload = format!(r#"{{"ts":{ts},"lat":{PROBE_LAT},"lon":123.5,"speed_kmh":0}}"#);
    js.publish(
        format!("landport.{TENANT}.{probe}.telemetry"),
        payload.into(),
    )
    .await
    .expect("publishing the probe")
    .await
    .expect("the probe acknowledged by JetStream");
    let (mut leases_secs, mut live_secs, mut answered_secs) = (None, None, None);
    let mut rebuilt_secs = None;
    let key = d.key.clone();
    let probe_path = format!("/v1/devices/{probe}");
    while leases_secs.is_none()
        || live_secs.is_none()
        || answered_secs.is_none()
        || rebuilt_secs.is_none()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "no handover within 600 s"
        );
        if leases_secs.is_none() {
            let mut all = true;
            for p in &moved {
                let owner = leases.get(format!("p{p}")).await.ok().flatten();
                all &= owner.as_deref() == Some(b"lp-0".as_slice());
            }
            if all {
                leases_secs = Some(t0.elapsed().as_secs_f64());
            }
        }
        let (key, path) = (key.clone(), probe_path.clone());
        let (live, rebuilt, answered) = tokio::task::spawn_blocking(move || {
            let text = support::http_get(survivor, "/metrics")
                .map(|(_, b)| b)
                .unwrap_or_default();
            let live = metric(&text, "landport_cluster_partitions_live");
            let rebuilt = metric(&text, "landport_cluster_takeover_seconds_count");
            let (st, body) = http(survivor, "GET", &path, Some(&key), None);
            let answered = st == 200
                && body["position"]["lat"]
                    .as_f64()
                    .is_some_and(|lat| (lat - PROBE_LAT).abs() < 1e-9);
            (live, rebuilt, answered)
        })
        .await
        .unwrap();
        if live_secs.is_none() && live as u32 == s.partitions {
            live_secs = Some(t0.elapsed().as_secs_f64());
        }
        if rebuilt_secs.is_none() && rebuilt - takeover_count0 >= moved.len() as f64 {
            rebuilt_secs = Some(t0.elapsed().as_secs_f64());
        }
        if answered_secs.is_none() && answered {
            answered_secs = Some(t0.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let rebuilds = metric_of(survivor, "landport_cluster_takeover_seconds_count") - takeover_count0;
    let rebuild_sum = metric_of(survivor, "landport_cluster_takeover_seconds_sum") - takeover_sum0;
    Handover {
        label: label.to_owned(),
        retained,
        retained_moved,
        moved,
        replayed: metric_of(survivor, "landport_cluster_replayed_messages_total") - replayed0,
        leases_secs: leases_secs.unwrap(),
        rebuilt_secs: rebuilt_secs.unwrap(),
        live_secs: live_secs.unwrap(),
        answered_secs: answered_secs.unwrap(),
        rebuild_mean: rebuild_sum / rebuilds.max(1.0),
        rebuilds,
        steady_published: published.load(Ordering::Relaxed),
    }
}

// ----- the report ---------------------------------------------------------------------------

fn report(s: &Settings, runs: &[Throughput], handovers: &[Handover]) -> String {
    let mut out = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        out,
        "## Cluster mode bench\n\n{} readings over {} devices (tenant `{TENANT}`), {} partitions, \
         lease_seconds = {}, partition snapshots: {}; {cores} cores shared by every process \
         (the bench's publisher included). The baseline publishes over MQTT QoS 1 to Landport's \
         own endpoint; the cluster runs publish natively to NATS (`landport.bench.{{device}}.telemetry`, \
         JetStream-acknowledged, so each reading is in the replicated stream before it counts \
         as sent). Each row's window runs from the first publish until every reading is \
         stored (`landport_readings_accepted_total`); CPU is utime + stime over that window. \
         \"total\" is Landport + NATS (not the bench process).\n",
        s.readings,
        s.devices,
        s.partitions,
        s.lease_seconds,
        if s.snapshots {
            "off in the throughput runs (snapshot_seconds = 86400)"
        } else {
            "not in this build"
        },
    );
    let base = &runs[0];
    let base_us = base.us_per_reading(|n| n.starts_with("landport"));
    let _ = writeln!(
        out,
        "| run | readings/s | publish acked (s) | stored (s) | Landport CPU µs/reading | NATS CPU µs/reading | total µs/reading | rate vs baseline | Landport CPU vs baseline | total CPU vs baseline |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in runs {
        let lp = r.us_per_reading(|n| n.starts_with("landport"));
        let nats = r.us_per_reading(|n| n.starts_with("nats"));
        let has_nats = r.cpu.iter().any(|(n, _)| n.starts_with("nats"));
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {:.2}x | {:.2}x | {:.2}x |",
            r.name,
            r.rate(),
            r.publish_secs,
            r.secs,
            lp,
            if has_nats {
                format!("{nats:.1}")
            } else {
                "-".to_owned()
            },
            lp + nats,
            r.rate() / base.rate(),
            lp / base_us,
            (lp + nats) / base_us
        );
    }
    let _ = writeln!(out, "\nCPU per process (µs per stored reading):\n");
    for r in runs {
        let per: Vec<String> = r
            .cpu
            .iter()
            .map(|(n, c)| format!("{n} {:.1}", c * 1e6 / r.readings as f64))
            .collect();
        let _ = writeln!(out, "- {}: {}", r.name, per.join(", "));
    }
    for r in runs {
        if let Some((messages, bytes)) = r.stream {
            let _ = writeln!(
                out,
                "\nStream `LANDPORT` after \"{}\": {messages} messages, {bytes} bytes \
                 ({:.0} bytes a reading, on each replica).",
                r.name,
                bytes as f64 / messages.max(1) as f64
            );
        }
    }
    let _ = writeln!(
        out,
        "\n### Handover (kill -9 of one of 2 instances, steady load {} readings/s)\n\n\
         Times from the kill. Leases taken: the survivor holds every lease of the dead instance \
         (they lapse after lease_seconds); rebuilt: every moved partition's shard built \
         (`landport_cluster_takeover_seconds` count); live gauge: `landport_cluster_partitions_live` \
         says all (set at the lease tick, every lease_seconds/3); probe answered: a reading of a \
         moved device, published just after the kill, is what `GET /v1/devices/{{id}}` answers \
         through the survivor.\n\n\
         | new owner starts from | retained in stream | in the moved partitions | partitions moved | replayed | leases taken (s) | rebuilt (s) | live gauge (s) | probe answered (s) | rebuild per partition, mean (s) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        s.steady_rate
    );
    for h in handovers {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} ({:?}) | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} ({} rebuilds) |",
            h.label,
            h.retained,
            h.retained_moved,
            h.moved.len(),
            h.moved,
            h.replayed,
            h.leases_secs,
            h.rebuilt_secs,
            h.live_secs,
            h.answered_secs,
            h.rebuild_mean,
            h.rebuilds
        );
    }
    let steady: Vec<String> = handovers
        .iter()
        .map(|h| h.steady_published.to_string())
        .collect();
    let _ = writeln!(
        out,
        "\nSteady-load readings acknowledged by JetStream during the handovers: {}.",
        steady.join(", ")
    );
    out
}

/// Publishes readings `0..n` into a deployment and waits until they are stored.
async fn preload(d: &Deployment, s: &Settings, n: usize, base_ms: i64) {
    let js = async_nats::jetstream::new(d.client.clone());
    publish_js(&js, 0, n, s.devices, base_ms).await;
    let addrs = d.addrs();
    tokio::task::spawn_blocking(move || wait_accepted(&addrs, n as f64))
        .await
        .unwrap();
}

/// Whether this build's config has `cluster.snapshot_seconds` (`landport check-config`).
fn snapshots_supported() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.toml");
    std::fs::write(
        &file,
        "[cluster]\nnats_url = \"nats://127.0.0.1:4222\"\npartitions = 8\n\
         instance_id = \"probe\"\nsnapshot_seconds = 60\n",
    )
    .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_landport"))
        .arg("check-config")
        .arg(&file)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run in release with --ignored --nocapture (scripts/bench-cluster)"]
async fn cluster_cpu_per_reading_and_partition_handover() {
    let mut s = Settings::from_env();
    s.snapshots = snapshots_supported();
    eprintln!("cluster bench: {s:?}");
    // Device time: two days ago, a second apart per device: every reading in the past and
    // in order, so each one is stored and applied (none late, none a duplicate).
    let base_ms = landport_pipeline::now_ms() - 2 * 86_400_000;
    let mut runs = Vec::new();

    eprintln!("baseline: single node, {} readings over MQTT", s.readings);
    runs.push(baseline(&s, base_ms).await);
    // Throughput and the size comparison with no snapshot taken: a takeover replays the
    // partition's whole retained stream.
    let no_snapshots = s.snapshots.then_some(86_400);

    eprintln!("cluster: 1 instance, {} NATS nodes", s.nats_nodes);
    {
        let d = Deployment::start(&s, 1, s.nats_nodes, no_snapshots).await;
        runs.push(cluster_throughput(&d, &s, base_ms, Publish::Native).await);
    }
    if env("BENCH_CLUSTER_MQTT", 1) == 1 {
        eprintln!("cluster: 1 instance, {} NATS nodes, MQTT", s.nats_nodes);
        let d = Deployment::start(&s, 1, s.nats_nodes, no_snapshots).await;
        runs.push(cluster_throughput(&d, &s, base_ms, Publish::Mqtt).await);
    }
    if s.nats_nodes > 1 && env("BENCH_CLUSTER_R1", 1) == 1 {
        eprintln!("cluster: 1 instance, 1 NATS node");
        let d = Deployment::start(&s, 1, 1, no_snapshots).await;
        runs.push(cluster_throughput(&d, &s, base_ms, Publish::Native).await);
    }

    eprintln!("cluster: 2 instances, {} NATS nodes", s.nats_nodes);
    let mut handovers = Vec::new();
    {
        let mut d = Deployment::start(&s, 2, s.nats_nodes, no_snapshots).await;
        runs.push(cluster_throughput(&d, &s, base_ms, Publish::Native).await);
        eprintln!("handover with {} readings retained", s.readings);
        handovers.push(handover(&mut d, &s, s.readings, "the stream (no snapshot)").await);
    }

    eprintln!("handover with {} readings retained", s.small);
    {
        let mut d = Deployment::start(&s, 2, s.nats_nodes, no_snapshots).await;
        preload(&d, &s, s.small, base_ms).await;
        let h = handover(&mut d, &s, s.small, "the stream (no snapshot)").await;
        handovers.insert(0, h);
    }

    if s.snapshots {
        let every = env("BENCH_CLUSTER_SNAPSHOT_SECONDS", 5u64);
        eprintln!(
            "handover with {} readings retained and a snapshot every {every} s",
            s.readings
        );
        let mut d = Deployment::start(&s, 2, s.nats_nodes, Some(every)).await;
        preload(&d, &s, s.readings, base_ms).await;
        // Two intervals: every partition's owner has saved a snapshot covering the load.
        tokio::time::sleep(Duration::from_secs(2 * every + 2)).await;
        let label = format!("a snapshot (snapshot_seconds = {every}) + the stream after it");
        handovers.push(handover(&mut d, &s, s.readings, &label).await);
    }

    let text = report(&s, &runs, &handovers);
    println!("{text}");
    if let Ok(path) = std::env::var("BENCH_CLUSTER_REPORT") {
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
}
