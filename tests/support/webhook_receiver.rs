//! A webhook receiver for end-to-end tests: a plain HTTP/1.1 server on a std listener that
//! records every request and answers the statuses it is told to.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status it answered.
    pub status: u16,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    pub fn event(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver: a plain HTTP/1.1 server on a std listener, one thread per connection,
/// answering the statuses of `script` first and then `status`; records every request.
pub struct Receiver {
    pub port: u16,
    pub got: Arc<Mutex<Vec<Got>>>,
    pub script: Arc<Mutex<VecDeque<u16>>>,
    pub status: Arc<AtomicU16>,
    pub stop: Arc<AtomicBool>,
    /// How long it takes to answer, milliseconds.
    pub delay_ms: Arc<AtomicUsize>,
    /// Requests being answered now, and the most at once.
    pub busy: Arc<(AtomicUsize, AtomicUsize)>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::start_on(0)
    }

    pub fn start_on(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("binding the receiver");
        listener.set_nonblocking(true).unwrap();
        let r = Receiver {
            port: listener.local_addr().unwrap().port(),
            got: Arc::default(),
            script: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            stop: Arc::default(),
            delay_ms: Arc::default(),
            busy: Arc::default(),
        };
        let (delay, busy) = (r.delay_ms.clone(), r.busy.clone());
        let (got, script, status, stop) = (
            r.got.clone(),
            r.script.clone(),
            r.status.clone(),
            r.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (got, script, status) = (got.clone(), script.clone(), status.clone());
                        let (delay, busy) = (delay.clone(), busy.clone());
                        std::thread::spawn(move || serve(s, &got, &script, &status, &delay, &busy));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        r
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The requests answered 2xx.
    pub fn delivered(&self) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| (200..300).contains(&g.status))
            .collect()
    }

    pub fn delivered_ids(&self) -> BTreeSet<String> {
        self.delivered()
            .iter()
            .map(|g| g.header("webhook-id").to_owned())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The next HTTP/1.1 request on a connection: its headers (names in lower case) and its
/// body (`content-length` bytes). `None` once the client closed the connection.
pub fn read_request(r: &mut BufReader<TcpStream>) -> Option<(HashMap<String, String>, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let n: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; n];
    r.read_exact(&mut body).ok()?;
    Some((headers, body))
}

/// Serves the requests of one connection (keep-alive: reqwest reuses connections).
fn serve(
    s: TcpStream,
    got: &Mutex<Vec<Got>>,
    script: &Mutex<VecDeque<u16>>,
    status: &AtomicU16,
    delay_ms: &AtomicUsize,
    busy: &(AtomicUsize, AtomicUsize),
) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    while let Some((headers, body)) = read_request(&mut r) {
        let now = busy.0.fetch_add(1, Ordering::SeqCst) + 1;
        busy.1.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(
            delay_ms.load(Ordering::Relaxed) as u64
        ));
        busy.0.fetch_sub(1, Ordering::SeqCst);
        let code = script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| status.load(Ordering::Relaxed));
        got.lock().unwrap().push(Got {
            headers,
            body,
            status: code,
        });
        let answer = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\n\r\nok");
        if w.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
