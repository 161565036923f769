//! A real NATS cluster for tests: `nats-server` processes (Debian's package, installed by
//! `scripts/test`) on free loopback ports, each with JetStream, the MQTT gateway and
//! Landport's partition mapping. Std only (no async runtime), so any test binary can include it:
//! `#[path = "../cluster/tests/support/nats.rs"] mod nats;`.
//!
//! Every node's config comes from [`render_config`], the one template that also produced the
//! operator example `docs/nats/landport-nats.conf` (`partition_oracle.rs` checks the committed
//! file equals [`render_config`]`(&`[`documented_example`]`())`), so the documented config is
//! the tested one.
//!
//! ```ignore
//! let nats = NatsCluster::start(dir.path(), 3, 16); // waits for a JetStream meta leader
//! let urls = nats.client_urls();                      // "nats://127.0.0.1:p1,nats://127.0.0.1:p2,..."
//! let mqtt = nats.mqtt_port(0);                       // node 0 is server_name n1
//! nats.kill(1);                                       // SIGKILL n2
//! nats.restart(1);                                    // same ports, config and store
//! ```

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to be ready (a 2-core machine shared with other builds).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The settings of one NATS node that differ between nodes and deployments; everything else
/// in its config is fixed by [`render_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// `server_name`, unique in the cluster (JetStream's Raft groups name their peers by it).
    pub server_name: String,
    /// Address every listener of the node binds (`0.0.0.0` in production, loopback in tests).
    pub listen_host: String,
    /// Native NATS clients: Landport instances and native publishers.
    pub client_port: u16,
    /// Routes between the nodes of the cluster.
    pub cluster_port: u16,
    /// The MQTT gateway devices publish to.
    pub mqtt_port: u16,
    /// HTTP monitoring (`/healthz`, `/jsz`, `/varz`).
    pub monitor_port: u16,
    /// `host:port` of the cluster listener of every node, this one included (NATS ignores the
    /// route to itself, so every node gets the same list). Empty: a single server, no cluster.
    pub routes: Vec<String>,
    /// JetStream's directory (NATS adds `jetstream/` below it).
    pub store_dir: String,
    /// Number of partitions of the deployment: fixed for its lifetime (a device's partition is
    /// `partition(N, tenant, device)`; changing N moves devices).
    pub partitions: u32,
}

/// The settings that rendered `docs/nats/landport-nats.conf`: node `n1` of three hosts
/// `nats1`..`nats3`, NATS's standard ports, 16 partitions.
pub fn documented_example() -> NodeConfig {
    NodeConfig {
        server_name: "n1".to_owned(),
        listen_host: "0.0.0.0".to_owned(),
        client_port: 4222,
        cluster_port: 6222,
        mqtt_port: 1883,
        monitor_port: 8222,
        routes: vec![
            "nats1:6222".to_owned(),
            "nats2:6222".to_owned(),
            "nats3:6222".to_owned(),
        ],
        store_dir: "/var/lib/nats".to_owned(),
        partitions: 16,
    }
}

/// The nats-server config of one node: the template behind `docs/nats/landport-nats.conf`.
pub fn render_config(c: &NodeConfig) -> String {
    let NodeConfig {
        server_name,
        listen_host: host,
        client_port,
        cluster_port,
        mqtt_port,
        monitor_port,
        routes,
        store_dir,
        partitions: n,
    } = c;
    let mut out = format!(
        r#"# nats-server config for Landport's cluster mode (nats-server 2.9 or later; Debian's
# `nats-server` package). One file per node: every node of the cluster gets the same file
# except `server_name` (and, where several nodes share a host, their ports and store_dir).
# Generated from the template in cluster/tests/support/nats.rs, which the tests run.

# Unique per node (n1, n2, n3): JetStream's replicas name their peers by it.
server_name: {server_name}

# Native NATS clients: the Landport instances ([cluster] nats_url) and native publishers.
listen: {host}:{client_port}

# Monitoring: /healthz (ready), /jsz (JetStream, meta leader), /varz. Unauthenticated:
# firewall it from everything but your monitoring.
http: {host}:{monitor_port}

# Largest message (default 1MB). Besides device payloads (Landport's ingest.max_payload_bytes,
# 64 KiB by default), NATS carries Landport's own traffic: replicated registry writes (a
# geofence body may be 4 MiB) and read answers over request/reply (a bbox of thousands of
# devices is megabytes). 8MB is the largest value NATS recommends.
max_payload: 8MB

# The durable, replicated log. Landport creates what it needs here itself: the stream
# LANDPORT on `lp.>` (3 replicas on 3 nodes), its registry log and its partition leases.
jetstream {{
  store_dir: "{store_dir}"
}}

# Devices publish MQTT (3.1.1, QoS 0 or 1) here, to landport/{{tenant}}/{{device}}/telemetry
# or .../senml; NATS turns the topic into the subject landport.{{tenant}}.{{device}}.telemetry.
# MQTT needs JetStream (sessions, QoS 1). A '.' in a topic (an id like cold.room) is refused
# by nats-server 2.9 and written as '//' in the subject by 2.10 and later.
mqtt {{
  listen: {host}:{mqtt_port}
}}

# Partitioning: NATS, not the publisher, picks a device's partition. The subject
# landport.acme.truck-1.telemetry becomes lp.12.acme.truck-1.telemetry: partition() hashes
# tokens 1 and 2 (tenant and device, FNV-1a) modulo the partition count, so a device always
# lands in the same partition. The count ({n} here) is Landport's [cluster] partitions and is
# fixed for the deployment: change it and devices move. Owntracks topics are not partitioned.
mappings {{
  "landport.*.*.telemetry": "lp.{{{{partition({n},1,2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.telemetry"
  "landport.*.*.senml": "lp.{{{{partition({n},1,2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.senml"
}}
"#
    );
    if !routes.is_empty() {
        let routes: String = routes.iter().map(|r| format!("    nats://{r}\n")).collect();
        out.push_str(&format!(
            r#"
# The cluster: every node lists every node's route address (its own is ignored). Three
# nodes keep JetStream (R3 streams, the meta leader) available when one is down.
cluster {{
  name: landport
  listen: {host}:{cluster_port}
  routes: [
{routes}  ]
}}
"#
        ));
    }
    out
}

/// The `nats-server` binary: `$PATH`, then Debian's `/usr/sbin` (not in every user's `$PATH`).
pub fn nats_server_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("nats-server not found in $PATH or /usr/sbin: scripts/test installs it (apt-get install nats-server)")
        })
}

/// One node: its config, files and process.
struct Node {
    config: NodeConfig,
    /// `{dir}/n{i}`: `nats.conf`, `nats.log` (appended across restarts), `store/`.
    dir: PathBuf,
    /// `None` while killed.
    child: Option<Child>,
}

/// A running NATS cluster (or single server) for a test; dropping it kills every node.
/// Nodes are numbered from 0: node `i` is `server_name` `n{i+1}`.
pub struct NatsCluster {
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts `nodes` nats-servers (1: a single server; more: one cluster) under `dir`, each with
    /// JetStream (store under `dir/n{i}/store`), MQTT and the mapping for `partitions`, and waits
    /// until they are ready: JetStream enabled (`/healthz?js-enabled-only=true`), the MQTT port
    /// open and, for a cluster, a JetStream meta leader known to every node, each current with
    /// it (`/healthz?js-server-only=true`).
    pub fn start(dir: &Path, nodes: usize, partitions: u32) -> NatsCluster {
        assert!(nodes >= 1, "a NATS cluster needs at least one node");
        // Hold every port until all are chosen so no two are the same.
        let held: Vec<[TcpListener; 4]> = (0..nodes)
            .map(|_| std::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").expect("a port")))
            .collect();
        let port = |l: &TcpListener| l.local_addr().expect("bound").port();
        let routes: Vec<String> = if nodes == 1 {
            Vec::new()
        } else {
            held.iter()
                .map(|ls| format!("127.0.0.1:{}", port(&ls[1])))
                .collect()
        };
        let mut cluster = NatsCluster {
            nodes: held
                .iter()
                .enumerate()
                .map(|(i, ls)| {
                    let dir = dir.join(format!("n{}", i + 1));
                    std::fs::create_dir_all(&dir).expect("node dir");
                    let config = NodeConfig {
                        server_name: format!("n{}", i + 1),
                        listen_host: "127.0.0.1".to_owned(),
                        client_port: port(&ls[0]),
                        cluster_port: port(&ls[1]),
                        mqtt_port: port(&ls[2]),
                        monitor_port: port(&ls[3]),
                        routes: routes.clone(),
                        store_dir: dir.join("store").to_str().expect("utf-8 dir").to_owned(),
                        partitions,
                    };
                    std::fs::write(dir.join("nats.conf"), render_config(&config))
                        .expect("write nats.conf");
                    Node {
                        config,
                        dir,
                        child: None,
                    }
                })
                .collect(),
        };
        drop(held);
        for i in 0..nodes {
            cluster.spawn(i);
        }
        for i in 0..nodes {
            cluster.wait_ready(i);
        }
        cluster
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// `nats://` URLs of every node, comma-separated (Landport's `[cluster] nats_url`).
    pub fn client_urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.client_url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `nats://127.0.0.1:port` of node `node`.
    pub fn client_url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[node].config.client_port)
    }

    /// Loopback MQTT port of node `node`'s gateway.
    pub fn mqtt_port(&self, node: usize) -> u16 {
        self.nodes[node].config.mqtt_port
    }

    /// Loopback HTTP monitoring port of node `node` (`/healthz`, `/jsz`, `/varz`).
    pub fn monitor_port(&self, node: usize) -> u16 {
        self.nodes[node].config.monitor_port
    }

    /// The config node `node` runs with.
    pub fn config(&self, node: usize) -> &NodeConfig {
        &self.nodes[node].config
    }

    /// Node `node`'s log (stdout and stderr, all its runs).
    pub fn log_path(&self, node: usize) -> PathBuf {
        self.nodes[node].dir.join("nats.log")
    }

    /// Whether node `node` runs (started and not killed).
    pub fn is_running(&self, node: usize) -> bool {
        self.nodes[node].child.is_some()
    }

    /// SIGKILLs node `node` (no lame duck, no flush) and reaps it. No-op if it is down.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `node` again (killing it first if it runs) with the same ports, config and
    /// JetStream store, and waits until it is ready (for a cluster: it knows the meta leader).
    pub fn restart(&mut self, node: usize) {
        self.kill(node);
        self.spawn(node);
        self.wait_ready(node);
    }

    /// The JetStream meta leader's `server_name` as node `node` sees it (`None`: not known, or
    /// a single server, which has no meta group).
    pub fn meta_leader(&self, node: usize) -> Option<String> {
        let (status, body) = self.monitor(node, "/jsz")?;
        if status != 200 {
            return None;
        }
        let meta = &body[body.find("\"meta_cluster\"")?..];
        let value = meta[meta.find("\"leader\"")? + "\"leader\"".len()..].trim_start();
        let value = value.strip_prefix(':')?.trim_start().strip_prefix('"')?;
        let leader = &value[..value.find('"')?];
        (!leader.is_empty()).then(|| leader.to_owned())
    }

    /// `GET` on node `node`'s monitoring port -> (status, body); `None` if it does not answer.
    pub fn monitor(&self, node: usize, path: &str) -> Option<(u16, String)> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.monitor_port(node)));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        // HTTP/1.0: the body ends at EOF, never chunked.
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw);
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let (_, body) = text.split_once("\r\n\r\n")?;
        Some((status, body.to_owned()))
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("nats.log"))
            .expect("open nats.log");
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(node.dir.join("nats.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        node.child = Some(child);
    }

    /// Waits until node `i` is ready; panics with its log's tail if it exits or takes too long.
    fn wait_ready(&mut self, i: usize) {
        let clustered = self.nodes.len() > 1;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = match self.monitor(i, "/healthz?js-enabled-only=true") {
                Some((200, _)) if !clustered => true,
                Some((200, _)) => {
                    self.meta_leader(i).is_some()
                        // Not the full /healthz: after a restart it stays red while a
                        // consumer of the node's previous MQTT session catches up.
                        && matches!(
                            self.monitor(i, "/healthz?js-server-only=true"),
                            Some((200, _))
                        )
                }
                _ => false,
            } && TcpStream::connect(("127.0.0.1", self.mqtt_port(i))).is_ok();
            if ready {
                return;
            }
            let exited = match self.nodes[i].child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                None => Some("not started".to_owned()),
                _ => None,
            };
            if exited.is_some() || Instant::now() >= deadline {
                let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "nats-server {} not ready ({}); last lines of {}:\n{}",
                    self.nodes[i].config.server_name,
                    exited.unwrap_or_else(|| format!("still waiting after {READY_TIMEOUT:?}")),
                    self.log_path(i).display(),
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
