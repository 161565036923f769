//! Real servers for the InfluxDB sink tests (SPEC 8): Debian's InfluxDB 1.x (`influxd`, package
//! `influxdb`) and VictoriaMetrics (`victoria-metrics`, package `victoria-metrics`), each on
//! free loopback ports with its data in a temporary directory, killed on drop. `stop()` and
//! `start()` simulate an outage: the server comes back on the same port with the same data.
//!
//! When a binary is missing the test is skipped with a note, unless `CI` is set: then it fails.
//!
//! Also the helpers the sink tests share: rows to commit, a sink to run, InfluxQL and export
//! queries, and bounded waits.

#![allow(dead_code)] // each test file uses its own part

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use landport_pipeline::metrics::Metrics;
use landport_sinks::influx::{InfluxSink, SinkConfig, SinkStats, WriteApi};
use landport_store::{Store, TelemetryRow};
use landport_tracker::Reading;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a server may take to answer its readiness probe after (re)starting.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `stop()` waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A server process with its data directory and fixed ports.
pub struct Server {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    /// Path answered with 2xx once the server is ready.
    ready_path: &'static str,
    /// The HTTP port.
    pub port: u16,
    /// Data, config and log (`server.log`).
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// `Some(path)` of `program` on `PATH`; `None` and a note when missing, or a panic under `CI`.
fn find_program(program: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{program}` is not installed (CI is set, so this fails rather than skips): \
             apt-get install -y {package}"
        );
        eprintln!("SKIPPED: `{program}` is not installed (apt-get install -y {package})");
    }
    found
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Server {
    /// InfluxDB 1.x with HTTP on a free port and the RPC listener on another; every other
    /// listener stays off (their defaults), and reporting and the internal monitor too.
    pub fn influxdb() -> Option<Server> {
        let program = find_program("influxd", "influxdb")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let rpc_port = free_port();
        let root = dir.path().display();
        let config = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false
"#
        );
        let config_path = dir.path().join("influxdb.conf");
        fs::write(&config_path, config).expect("write influxdb.conf");
        let mut server = Server {
            name: "influxd",
            program,
            args: vec!["-config".into(), config_path.display().to_string()],
            ready_path: "/ping",
            port,
            dir,
            child: None,
        };
        server.start();
        Some(server)
    }

    /// VictoriaMetrics (single node) on a free port.
    pub fn victoria_metrics() -> Option<Server> {
        let program = find_program("victoria-metrics", "victoria-metrics")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let data = dir.path().join("data");
        let mut server = Server {
            name: "victoria-metrics",
            program,
            args: vec![
                format!("-httpListenAddr=127.0.0.1:{port}"),
                format!("-storageDataPath={}", data.display()),
                "-retentionPeriod=100y".into(),
                "-loggerLevel=ERROR".into(),
            ],
            ready_path: "/health",
            port,
            dir,
            child: None,
        };
        server.start();
        Some(server)
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again) and waits until it answers its readiness probe.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("server log");
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            if http_status(self.port, self.ready_path).is_some_and(|s| (200..300).contains(&s)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {START_TIMEOUT:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]); data and port stay.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's output so far (for failure messages).
    pub fn log(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let start = text.len().saturating_sub(8_000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// CPU time the running process has used so far (Linux `/proc`), if it runs.
    pub fn cpu_time(&self) -> Option<Duration> {
        let pid = self.child.as_ref()?.id();
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // fields after the `(comm)`: state is the 3rd field overall, utime the 14th, stime the 15th
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // USER_HZ is 100 on Linux
        Some(Duration::from_millis(ticks * 10))
    }

    /// Waits (at most `timeout`) until the server has been idle for a while: less than 2 % of a
    /// core over half a second. For measurements, so that one run does not pay for the
    /// compactions that the previous one set off.
    pub fn settle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let window = Duration::from_millis(500);
        let Some(mut before) = self.cpu_time() else {
            return;
        };
        while Instant::now() < deadline {
            std::thread::sleep(window);
            let Some(now) = self.cpu_time() else {
                return;
            };
            if now.saturating_sub(before) <= window / 50 {
                return;
            }
            before = now;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Status code of `GET path` on the loopback port, or `None` when nothing answers (a readiness
/// probe with std alone, usable outside a runtime).
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 32];
    let n = stream.read(&mut head).ok()?;
    let head = std::str::from_utf8(&head[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Rows, the sink, queries.

/// Server time, epoch ms.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A reading with a position and a battery level (every field a float).
pub fn reading_row(tenant: &str, device: &str, ts_ms: i64, i: usize) -> TelemetryRow {
    let mut reading = Reading::at(ts_ms)
        .with_position(4.0 + i as f64 * 1e-5, 52.0 + i as f64 * 1e-5)
        .with_speed((i % 120) as f64);
    reading.battery_pct = Some((i % 100) as f64 + 0.5);
    TelemetryRow {
        tenant: tenant.into(),
        device: device.into(),
        shipment: None,
        reading,
        received_ms: now_ms(),
    }
}

/// `n` readings of `devices` devices of tenant `tenant`, one per device and millisecond from
/// `start_ms`, every one distinct in (device, ts).
pub fn readings(tenant: &str, devices: usize, n: usize, start_ms: i64) -> Vec<TelemetryRow> {
    (0..n)
        .map(|i| {
            let device = format!("dev-{}", i % devices);
            reading_row(tenant, &device, start_ms + (i / devices) as i64, i)
        })
        .collect()
}

/// Commits rows in chunks of 1,000 (as the pipeline would).
pub fn commit(store: &mut Store, rows: &[TelemetryRow]) {
    for chunk in rows.chunks(1_000) {
        store.commit(chunk, &[]).expect("commit");
    }
}

/// Settings for tests: batches of 5,000 lines, a 1 GiB spool, short flush interval and retry
/// delays.
pub fn test_config(url: &str, api: WriteApi) -> SinkConfig {
    let batch = std::num::NonZeroUsize::new(5_000).unwrap();
    let mut config = SinkConfig::new(url, api, batch, Duration::from_millis(50), 1 << 30);
    config.retry_initial_delay = Duration::from_millis(50);
    config.retry_max_delay = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(10);
    config
}

pub fn v1(database: &str) -> WriteApi {
    WriteApi::V1 {
        database: database.into(),
        credentials: None,
    }
}

/// A running sink.
pub struct RunningSink {
    pub metrics: Arc<Metrics>,
    pub stats: Arc<SinkStats>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningSink {
    pub fn start(config: SinkConfig, store_dir: &Path) -> RunningSink {
        let metrics = Metrics::new();
        let sink = InfluxSink::new(config, store_dir, Arc::clone(&metrics)).expect("sink");
        let stats = sink.stats();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move { sink.run(token).await.expect("sink run") });
        RunningSink {
            metrics,
            stats,
            shutdown,
            task,
        }
    }

    /// Stops it and waits (bounded) for it to end.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the sink stops within 10 s")
            .expect("the sink task");
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, panicking with `what` and the last
/// value seen after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the sink's telemetry cursor reaches the store's last rowid.
pub async fn wait_caught_up(store: &Store, timeout: Duration) {
    let target = store.telemetry_rowid_max().unwrap();
    let events = store.event_seq_max().unwrap();
    wait_for("the sink to catch up", timeout, || {
        let telemetry = store
            .cursor(landport_sinks::influx::TELEMETRY_CURSOR)
            .unwrap();
        let event_cursor = store.cursor(landport_sinks::influx::EVENTS_CURSOR).unwrap();
        std::future::ready(if telemetry >= target && event_cursor >= events {
            Ok(())
        } else {
            Err(format!(
                "telemetry {telemetry}/{target}, events {event_cursor}/{events}"
            ))
        })
    })
    .await
}

/// An InfluxQL query against InfluxDB 1.x (times as epoch ms); the JSON answer.
pub async fn influxql(url: &str, database: &str, query: &str) -> serde_json::Value {
    let response = reqwest::Client::new()
        .get(format!("{url}/query"))
        .query(&[("db", database), ("epoch", "ms"), ("q", query)])
        .send()
        .await
        .expect("query");
    let text = response.text().await.expect("query body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `SELECT count(field) FROM measurement` (0 when there is no such series).
pub async fn count(url: &str, database: &str, measurement: &str, field: &str) -> u64 {
    let answer = influxql(
        url,
        database,
        &format!("SELECT count({field}) FROM {measurement}"),
    )
    .await;
    answer
        .pointer("/results/0/series/0/values/0/1")
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

/// Posts raw line protocol (ms) to InfluxDB 1.x, creating the database first.
///
/// InfluxDB 1.x can answer a write right after `CREATE DATABASE` with 404 "database not
/// found" for a moment; that answer is retried for a few seconds, any other failure is not.
pub async fn post_v1(url: &str, database: &str, body: &str) {
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{url}/query"))
        .query(&[("q", format!("CREATE DATABASE \"{database}\""))])
        .send()
        .await
        .expect("create database");
    assert!(created.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = http
            .post(format!("{url}/write"))
            .query(&[("db", database), ("precision", "ms")])
            .body(body.to_owned())
            .send()
            .await
            .expect("write");
        let status = response.status();
        if status.is_success() {
            return;
        }
        let text = response.text().await.unwrap_or_default();
        let not_yet = status == reqwest::StatusCode::NOT_FOUND
            && text.contains("database not found")
            && Instant::now() < deadline;
        assert!(not_yet, "{status}: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// VictoriaMetrics `/api/v1/export` of the series matching `selector`: one JSON object per
/// series (`metric` labels, `values`, `timestamps`), after flushing what it buffers.
pub async fn vm_export(url: &str, selector: &str) -> Vec<serde_json::Value> {
    let http = reqwest::Client::new();
    let _ = http.get(format!("{url}/internal/force_flush")).send().await;
    let text = http
        .get(format!("{url}/api/v1/export"))
        .query(&[("match[]", selector)])
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("export body");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Points keyed by `(tenant, device, time in ms)`: each point's other tags and its fields by
/// name, numbers written as `f64` (InfluxDB's JSON writes 271.0 as 271).
pub type Points = std::collections::BTreeMap<(String, String, i64), Vec<(String, String)>>;

/// What InfluxDB 1.x holds in `telemetry` of `database` (`SELECT *`, then `where`, e.g.
/// `WHERE tenant = 'acme'`). Two writes of one (series, time) are one point here: use
/// [`points_written`] to see a write sent twice.
pub async fn telemetry_points(url: &str, database: &str, where_clause: &str) -> Points {
    let answer = influxql(
        url,
        database,
        &format!("SELECT * FROM telemetry {where_clause}"),
    )
    .await;
    assert!(answer["results"][0]["error"].is_null(), "{answer}");
    assert!(
        answer["results"][0]["partial"].is_null(),
        "a truncated answer: {answer}"
    );
    let mut out = Points::new();
    let Some(series) = answer["results"][0]["series"].as_array() else {
        return out;
    };
    for s in series {
        let columns: Vec<&str> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        for values in s["values"].as_array().unwrap() {
            let (mut tenant, mut device, mut time) = (String::new(), String::new(), 0);
            let mut rest = Vec::new();
            for (name, v) in columns.iter().zip(values.as_array().unwrap()) {
                match (*name, v) {
                    (_, serde_json::Value::Null) => {}
                    ("time", v) => time = v.as_i64().unwrap(),
                    ("tenant", v) => tenant = v.as_str().unwrap().to_owned(),
                    ("device", v) => device = v.as_str().unwrap().to_owned(),
                    (name, serde_json::Value::String(s)) => rest.push((name.to_owned(), s.clone())),
                    (name, v) => rest.push((name.to_owned(), v.as_f64().unwrap().to_string())),
                }
            }
            rest.sort();
            let key = (tenant, device, time);
            assert!(out.insert(key.clone(), rest).is_none(), "{key:?} twice");
        }
    }
    out
}

/// The points `rows` should make (SPEC 7: a row without any field makes none).
pub fn expected_points(rows: &[TelemetryRow]) -> Points {
    let mut out = Points::new();
    for row in rows {
        let r = &row.reading;
        let fix = r.fix.as_ref();
        let fields = [
            ("lat", fix.map(|f| f.lat)),
            ("lon", fix.map(|f| f.lon)),
            ("speed_kmh", fix.and_then(|f| f.speed_kmh)),
            ("heading_deg", fix.and_then(|f| f.heading_deg)),
            ("accuracy_m", fix.and_then(|f| f.accuracy_m)),
            ("temp_c", r.temp_c),
            ("weight_kg", r.weight_kg),
            ("battery_pct", r.battery_pct),
        ];
        let mut point: Vec<(String, String)> = fields
            .iter()
            .filter_map(|(name, v)| v.map(|v| (name.to_string(), v.to_string())))
            .collect();
        if point.is_empty() {
            continue;
        }
        if let Some(s) = &row.shipment {
            point.push(("shipment".into(), s.clone()));
        }
        point.sort();
        let key = (row.tenant.clone(), row.device.clone(), r.ts_ms);
        assert!(
            out.insert(key.clone(), point).is_none(),
            "test rows: {key:?} twice"
        );
    }
    out
}

/// Points InfluxDB 1.x has taken in over HTTP since it (re)started, every write counted, a
/// point written again included (`SHOW STATS`, httpd's `pointsWrittenOK`).
pub async fn points_written(url: &str) -> u64 {
    let answer = influxql(url, "_internal", "SHOW STATS FOR 'httpd'").await;
    let series = answer["results"][0]["series"]
        .as_array()
        .unwrap_or_else(|| panic!("no httpd stats: {answer}"));
    series
        .iter()
        .map(|s| {
            let column = s["columns"]
                .as_array()
                .unwrap()
                .iter()
                .position(|c| c == "pointsWrittenOK")
                .unwrap_or_else(|| panic!("no pointsWrittenOK: {s}"));
            s["values"][0][column].as_u64().unwrap()
        })
        .sum()
}
