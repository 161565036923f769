//! Test support for end-to-end tests: the real `landport` binary on free loopback ports,
//! a minimal HTTP client, and waiting with deadlines (never bare sleeps for a result).

#![allow(dead_code)]

pub mod webhook_receiver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound then released; good enough for tests on one machine), never
/// one this process was given before: the kernel may hand a just-released port out again, and
/// two servers of one test on the same port fail to start.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET http://addr/path` -> (status, body). `None` if the server isn't answering.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, dechunk(&body)))
}

/// Undoes `Transfer-Encoding: chunked` if the body looks chunked.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_owned();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// The value of an unlabelled counter or gauge in Prometheus text, 0 if absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// A running `landport run`.
pub struct Landport {
    pub child: Child,
    pub http: SocketAddr,
    pub mqtt_port: u16,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Landport {
    /// Writes `config_toml` next to the data dir and starts the binary on it.
    pub fn start(dir: &Path, config_toml: &str, http: SocketAddr, mqtt_port: u16) -> Landport {
        let config = dir.join("landport.toml");
        std::fs::write(&config, config_toml).unwrap();
        let mut lp = Landport {
            child: spawn(&config, &dir.join("landport.log")),
            http,
            mqtt_port,
            data_dir: dir.join("data"),
            config,
            log: dir.join("landport.log"),
        };
        lp.wait_ready();
        lp
    }

    /// The config for a service with its data in `dir/data`, HTTP on `http`, and either the
    /// embedded broker on `mqtt_port` or an external one there; `extra` is appended.
    pub fn config(
        dir: &Path,
        http: SocketAddr,
        mqtt_port: u16,
        embedded: bool,
        extra: &str,
    ) -> String {
        format!(
            "[http]\nlisten = \"{http}\"\n\
             [mqtt]\nembedded = {embedded}\nlisten = \"127.0.0.1:{mqtt_port}\"\n\
             url = \"mqtt://127.0.0.1:{mqtt_port}\"\n\
             [storage]\npath = \"{}\"\n\
             [ingest]\nauto_register = true\n\
             [log]\nlevel = \"info,rumqttd=warn\"\n{extra}",
            dir.join("data").display()
        )
    }

    /// Starts instance `lp-{i}` of a cluster-mode deployment (`[cluster]` on `nats_urls` with
    /// `partitions`, leases of 5 s), its data in `dir/lp{i}`, HTTP on a free port, `admin` as
    /// the admin key; `sections` (whole sections) and `cluster` (more `[cluster]` keys) are
    /// added.
    pub fn start_cluster_instance(
        dir: &Path,
        i: usize,
        nats_urls: &str,
        partitions: u32,
        admin: &str,
        sections: &str,
        cluster: &str,
    ) -> Landport {
        let dir = dir.join(format!("lp{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = format!(
            "[http]\nlisten = \"{http}\"\n\
             [storage]\npath = \"{}\"\n\
             [auth]\nadmin_key = \"{admin}\"\n\
             [log]\nlevel = \"info\"\n\
             {sections}\
             [cluster]\nnats_url = \"{nats_urls}\"\npartitions = {partitions}\n\
             instance_id = \"lp-{i}\"\nlease_seconds = 5\nrequest_timeout_ms = 3000\n{cluster}",
            dir.join("data").display(),
        );
        Landport::start(&dir, &config, http, 0)
    }

    pub fn wait_ready(&mut self) {
        let http = self.http;
        let log = self.log.clone();
        let child = &mut self.child;
        wait_for("landport /readyz", Duration::from_secs(60), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "landport exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            http_get(http, "/readyz").filter(|(s, _)| *s == 200)
        });
    }

    pub fn metrics(&self) -> String {
        http_get(self.http, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        wait_for("landport to exit", Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        })
    }

    /// Starts the binary again on the same config and data.
    pub fn restart(&mut self) {
        self.child = spawn(&self.config, &self.log);
        self.wait_ready();
    }
}

impl Drop for Landport {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config: &Path, log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_landport"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("starting landport")
}

/// One HTTP/1.1 request with a JSON body (if any) and an optional bearer key -> (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| dechunk(b))
        .unwrap_or_default();
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (status, json)
}

/// A server-sent-events stream read on a thread; the `data` of its events named `name`
/// arrive on the channel (one string per event, its `data:` lines joined by `\n`).
///
/// Returns only once the stream is established server-side: the response is `200` and its
/// first item, the `: ready` comment the server sends once it has subscribed, has been read.
/// An event published after this returns is therefore on the stream.
pub fn sse(
    addr: SocketAddr,
    path: &str,
    key: &str,
    name: &str,
) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;

    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let socket = s.try_clone().unwrap();
    let mut head = std::io::BufReader::new(s);
    let mut status_line = String::new();
    head.read_line(&mut status_line)
        .unwrap_or_else(|e| panic!("GET {path}: no response head: {e}"));
    let mut chunked = false;
    loop {
        let mut line = String::new();
        head.read_line(&mut line)
            .unwrap_or_else(|e| panic!("GET {path}: reading the headers: {e}"));
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            chunked |= k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked");
        }
    }
    assert!(
        status_line.split(' ').nth(1) == Some("200"),
        "GET {path}: {}",
        status_line.trim_end()
    );
    let body: Box<dyn Read + Send> = if chunked {
        Box::new(Chunked {
            inner: head,
            left: 0,
        })
    } else {
        Box::new(head)
    };
    let mut items = SseItems(std::io::BufReader::new(body));
    match items.next_item() {
        Some((_, _, comments)) if comments.iter().any(|c| c == "ready") => {}
        other => panic!("GET {path}: expected the `: ready` comment first, got {other:?}"),
    }
    // From here the thread blocks on the stream for as long as it lasts.
    socket.set_read_timeout(None).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let name = name.to_owned();
    std::thread::spawn(move || {
        while let Some((event, data, _)) = items.next_item() {
            if event == name && tx.send(data).is_err() {
                break;
            }
        }
    });
    rx
}

/// The items of a text/event-stream, parsed as the SSE spec says (fields up to a blank line).
struct SseItems<R>(std::io::BufReader<R>);

impl<R: Read> SseItems<R> {
    /// The next item: (event name, `data` lines joined by `\n`, comments); `None` at the end
    /// of the stream or on a read error (a timeout included).
    fn next_item(&mut self) -> Option<(String, String, Vec<String>)> {
        use std::io::BufRead;
        let (mut event, mut data, mut comments) = (String::from("message"), Vec::new(), Vec::new());
        let mut any = false;
        loop {
            let mut line = String::new();
            if self.0.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if any {
                    return Some((event, data.join("\n"), comments));
                }
                continue;
            }
            any = true;
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "" => comments.push(value.to_owned()),
                "event" => event = value.to_owned(),
                "data" => data.push(value.to_owned()),
                _ => {}
            }
        }
    }
}

/// The body of a `Transfer-Encoding: chunked` response, as a reader of its bytes.
struct Chunked<R> {
    inner: R,
    /// Bytes left in the current chunk.
    left: usize,
}

impl<R: std::io::BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            let mut size = String::new();
            // The CRLF that ends the previous chunk, then the size line.
            while size.trim().is_empty() {
                size.clear();
                if self.inner.read_line(&mut size)? == 0 {
                    return Ok(0);
                }
            }
            let hex = size.trim().split(';').next().unwrap_or_default();
            self.left = usize::from_str_radix(hex, 16).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("chunk size {size:?}"),
                )
            })?;
            if self.left == 0 {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..n])?;
        self.left -= n;
        Ok(n)
    }
}

/// A warehouse fence around (123.0, 41.0) that confirms at once.
pub fn warehouse() -> landport_tracker::GeofenceDef {
    let ring = geo_types::LineString::from(vec![
        (122.99, 40.99),
        (123.01, 40.99),
        (123.01, 41.01),
        (122.99, 41.01),
        (122.99, 40.99),
    ]);
    landport_tracker::GeofenceDef {
        id: "wh".into(),
        name: "Warehouse".into(),
        kind: "warehouse".into(),
        shape: landport_tracker::Shape::Area(geo_types::MultiPolygon(vec![
            geo_types::Polygon::new(ring, vec![]),
        ])),
        confirm_seconds: Some(0),
        dwell_seconds: None,
    }
}

/// Stores [`warehouse`] for `tenant` in `dir/data` before the service starts (the store is the
/// registry the service loads).
pub fn seed_fence(dir: &std::path::Path, tenant: &str) {
    let mut store = landport_store::Store::open(&dir.join("data")).unwrap();
    store
        .insert_geofence(&landport_store::GeofenceRecord {
            tenant: tenant.into(),
            def: warehouse(),
            updated_ms: 0,
        })
        .unwrap();
}

/// How many readings of `tenant`'s `device` the store in `data` holds (0 while it cannot be
/// opened yet).
pub fn stored_readings(data: &Path, tenant: &str, device: &str) -> usize {
    let Ok(store) = landport_store::Store::open_reader(data) else {
        return 0;
    };
    store
        .readings_after(0, 1_000_000)
        .map(|rows| {
            rows.iter()
                .filter(|(_, r)| r.tenant == tenant && r.device == device)
                .count()
        })
        .unwrap_or(0)
}
