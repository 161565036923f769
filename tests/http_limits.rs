//! SPEC 15's HTTP limits through the real binary, where the socket matters: slow clients
//! (slowloris) do not stop normal requests and are cut off at the header read timeout, the
//! connection cap holds further connections in the listen queue, an idle kept-alive
//! connection is closed, a slow body gets a 408 at the request timeout while a live stream
//! outlasts it, and a key over its rate gets a 429 with `retry-after`.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{Landport, free_port, http_get};

const ADMIN: &str = "http-limits-admin-key-7f3a9c1e5b2d8064";

/// The binary with `http` keys added to its `[http]` section and `extra` sections appended.
fn start_with(http_keys: &str, extra: &str) -> (tempfile::TempDir, Landport) {
    let dir = tempfile::tempdir().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mqtt = free_port();
    let config = Landport::config(
        dir.path(),
        http,
        mqtt,
        true,
        &format!("[auth]\nadmin_key = \"{ADMIN}\"\n{extra}"),
    )
    .replacen("[http]\n", &format!("[http]\n{http_keys}"), 1);
    let lp = Landport::start(dir.path(), &config, http, mqtt);
    (dir, lp)
}

/// Sends `request` on a new connection and reads the response head and what follows until
/// the server closes or `wait` passes: (status, raw text). Status 0 when nothing came.
fn exchange(addr: SocketAddr, request: &str, wait: Duration) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    read_until_closed(&mut s, wait)
}

fn read_until_closed(s: &mut TcpStream, wait: Duration) -> (u16, String) {
    let deadline = Instant::now() + wait;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(
            (deadline - Instant::now()).max(Duration::from_millis(1)),
        ))
        .unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn get(path: &str, key: Option<&str>) -> String {
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: landport\r\nConnection: close\r\n{auth}\r\n")
}

/// Whether the server has closed `s` (EOF or reset) within `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn two_hundred_slow_clients_do_not_stop_normal_requests_and_are_cut_off() {
    let (_dir, lp) = start_with("header_read_timeout_seconds = 2\n", "");
    let addr = lp.http;
    // 200 connections sending their headers one line at a time, never finishing.
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: landport\r\n")
                .unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        for (i, s) in slow.iter_mut().enumerate() {
            let _ = write!(s, "X-Slow-{i}: a\r\n");
        }
        let t = Instant::now();
        let (status, body) = exchange(addr, &get("/healthz", None), Duration::from_secs(2));
        assert_eq!(status, 200, "{body}");
        let (status, body) = exchange(
            addr,
            &get("/v1/devices", Some(ADMIN)),
            Duration::from_secs(2),
        );
        assert_eq!(status, 200, "{body}");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        served += 2;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(served >= 6);
    // Past the header read timeout every slow connection is closed, though it kept sending.
    let cut = slow
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_secs(3)))
        .filter(|closed| *closed)
        .count();
    assert_eq!(
        cut, 200,
        "slow connections still open after the header read timeout"
    );
    assert!(http_get(addr, "/healthz").is_some_and(|(s, _)| s == 200));
}

#[test]
fn past_max_connections_a_client_waits_until_one_closes() {
    let (_dir, lp) = start_with(
        "max_connections = 20\nheader_read_timeout_seconds = 20\n",
        "",
    );
    let addr = lp.http;
    // Twenty idle connections hold every slot (the server accepts them and waits for headers).
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The 21st connects (the kernel's listen queue) but is not served.
    let mut waiting = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    waiting.write_all(get("/healthz", None).as_bytes()).unwrap();
    let (status, _) = read_until_closed(&mut waiting, Duration::from_secs(1));
    assert_eq!(status, 0, "served past the connection cap");
    // One closes: the waiting one is served.
    idle.truncate(19);
    let (status, text) = read_until_closed(&mut waiting, Duration::from_secs(3));
    assert_eq!(status, 200, "{text}");
    drop(idle);
}

#[test]
fn timeouts_cut_slow_bodies_and_idle_connections_but_not_live_streams() {
    let (_dir, lp) = start_with(
        "request_timeout_seconds = 1\nheader_read_timeout_seconds = 2\n",
        "",
    );
    let addr = lp.http;
    // A body announced and never sent: 408 at the request timeout, JSON.
    let t = Instant::now();
    let (status, text) = exchange(
        addr,
        &format!(
            "POST /v1/tenants HTTP/1.1\r\nHost: landport\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\""
        ),
        Duration::from_secs(5),
    );
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("\"timeout\""), "{text}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // A kept-alive connection with nothing more to ask is closed after the header timeout.
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: landport\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(5)),
        "idle connection kept open"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );

    // A live stream outlasts the request timeout: still open after 3.5 s.
    let mut sse = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    sse.write_all(
        format!(
            "GET /v1/stream?topics=positions HTTP/1.1\r\nHost: landport\r\n\
             Authorization: Bearer {ADMIN}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    let mut got = String::new();
    while started.elapsed() < Duration::from_millis(3500) {
        sse.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        match sse.read(&mut buf) {
            Ok(0) => panic!("the stream was closed after {:?}: {got}", started.elapsed()),
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("the stream failed after {:?}: {e}", started.elapsed()),
        }
    }
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains(": ready"), "{got}");
}

#[test]
fn a_key_over_its_rate_gets_429_with_retry_after() {
    let (_dir, lp) = start_with("", "[limits]\nrequests_per_second = 2\nburst = 5\n");
    let addr = lp.http;
    let statuses: Vec<(u16, String)> = (0..7)
        .map(|_| {
            exchange(
                addr,
                &get("/v1/devices", Some(ADMIN)),
                Duration::from_secs(2),
            )
        })
        .collect();
    assert!(statuses[..5].iter().all(|(s, _)| *s == 200), "{statuses:?}");
    let (status, text) = &statuses[6];
    assert_eq!(*status, 429, "{text}");
    let lower = text.to_ascii_lowercase();
    let retry = lower
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .unwrap_or_else(|| panic!("no retry-after: {text}"));
    assert_eq!(retry.trim(), "1");
    assert!(text.contains("limits.requests_per_second"), "{text}");
    // Unauthenticated endpoints are not held to a key's rate.
    assert!(http_get(addr, "/healthz").is_some_and(|(s, _)| s == 200));
}
