//! Webhook delivery bench (BENCHMARKS.md, "Webhooks"): the real `landport run` binary with a
//! Mosquitto of our own and a fast receiver on loopback (a keep-alive HTTP/1.1 server that
//! answers 204 at once). Ignored by default; run it in release:
//!
//! ```sh
//! cargo test --release --test webhooks_bench -- --ignored --nocapture
//! ```
//!
//! 1. Latency: 200 trucks each cross the warehouse fence once a second for 20 s (about 200
//!    `geofence.*` events/s); each reading's `ts` is its publish time, so the latency of an event
//!    is its arrival at the receiver minus the publish time of the reading that caused it (the
//!    device's first reading at or after the event's time). Prints p50, p99 and max.
//! 2. Throughput: 20,000 crossings published as fast as the broker takes them; prints the
//!    events/s the receiver got (first to last arrival), and ingest's own rate for scale.

mod support;
#[path = "../ingest/tests/support_mqtt/mod.rs"]
mod support_mqtt;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::QoS;
use serde_json::json;
use support::webhook_receiver::read_request;
use support::{Landport, free_port, http, seed_fence, sse, wait_for};
use support_mqtt::{Mosquitto, publish};

const ADMIN: &str = "bench-admin-key-0123456789abcdefghijk";

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// (arrival wall ms, event JSON) of every request.
type Arrivals = Arc<Mutex<Vec<(i64, serde_json::Value)>>>;

fn receiver() -> (u16, Arrivals) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Arrivals = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let g = g.clone();
            std::thread::spawn(move || serve(s, &g));
        }
    });
    (port, got)
}

fn serve(s: TcpStream, got: &Mutex<Vec<(i64, serde_json::Value)>>) {
    let _ = s.set_nodelay(true);
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    while let Some((_, body)) = read_request(&mut r) {
        let at = wall_ms();
        if let Ok(v) = serde_json::from_slice(&body) {
            got.lock().unwrap().push((at, v));
        }
        if w.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

fn reading(ts_ms: i64, inside: bool, d: usize) -> Vec<u8> {
    let lon = if inside { 123.0 } else { 123.05 };
    let lat = 41.0 + d as f64 * 1e-5;
    format!(r#"{{"ts":{ts_ms},"lat":{lat},"lon":{lon},"speed_kmh":40}}"#).into_bytes()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run in release with --ignored --nocapture"]
async fn webhook_delivery_throughput_and_latency() {
    let broker = Mosquitto::start().expect("mosquitto");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    seed_fence(dir, "acme");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg = Landport::config(
        dir,
        addr,
        broker.port,
        false,
        &format!(
            "[auth]\nadmin_key = \"{ADMIN}\"\n[webhooks]\nallow_private_targets = true\n\
             [log]\nlevel = \"warn\"\n"
        ),
    )
    .replace("[log]\nlevel = \"info,rumqttd=warn\"\n", "");
    let _lp = Landport::start(dir, &cfg, addr, broker.port);
    let (s, _) = http(
        addr,
        "POST",
        "/v1/tenants",
        Some(ADMIN),
        Some(&json!({"id": "acme", "name": "Acme"})),
    );
    assert_eq!(s, 201);
    let (_, k) = http(addr, "POST", "/v1/tenants/acme/keys", Some(ADMIN), None);
    let key = k["key"].as_str().unwrap().to_owned();
    let (port, got) = receiver();
    let (s, b) = http(
        addr,
        "POST",
        "/v1/webhooks",
        Some(&key),
        Some(&json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["geofence.*"]})),
    );
    assert_eq!(s, 201, "{b}");

    // The same events on the live stream (sent right after each commit): the part of the
    // latency before the webhook engine.
    let stream = sse(addr, "/v1/stream?topics=events", &key, "event");
    let streamed: Arrivals = Arc::default();
    {
        let streamed = streamed.clone();
        std::thread::spawn(move || {
            while let Ok(data) = stream.recv() {
                if let Ok(v) = serde_json::from_str(&data) {
                    streamed.lock().unwrap().push((wall_ms(), v));
                }
            }
        });
    }

    // 1. Latency at ~200 events/s.
    const TRUCKS: usize = 200;
    const SECONDS: usize = 20;
    // device -> (reading ts, publish wall ms), in order.
    let mut published: HashMap<String, Vec<i64>> = HashMap::new();
    let start = Instant::now();
    for i in 0..=SECONDS {
        let ts = wall_ms();
        let mut tasks = Vec::new();
        for d in 0..TRUCKS {
            let device = format!("truck-{d}");
            published.entry(device.clone()).or_default().push(ts);
            let p = reading(ts, i % 2 == 1, d);
            let port = broker.port;
            tasks.push(tokio::spawn(async move {
                publish(
                    port,
                    &format!("landport/acme/{device}/telemetry"),
                    vec![p],
                    QoS::AtLeastOnce,
                )
                .await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let next = start + Duration::from_secs(i as u64 + 1);
        tokio::time::sleep_until(next.into()).await;
    }
    let expected = TRUCKS * SECONDS;
    wait_for(
        "the latency phase delivered",
        Duration::from_secs(120),
        || (got.lock().unwrap().len() >= expected).then_some(()),
    );
    let latencies = |arrivals: &Arrivals| -> Vec<i64> {
        let mut lat: Vec<i64> = arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| {
                e["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("geofence."))
            })
            .filter_map(|(at, e)| {
                let ts = landport_tracker::event::parse_rfc3339(e["ts"].as_str()?)?;
                let sent = published.get(e["device"].as_str()?)?;
                let cause = sent.iter().find(|t| **t >= ts)?;
                Some(at - cause)
            })
            .collect();
        lat.sort_unstable();
        lat
    };
    let sse_lat = latencies(&streamed);
    println!(
        "for scale, the live stream (publish -> SSE): p50 {} ms, p90 {} ms, p99 {} ms over {} events",
        percentile(&sse_lat, 0.5),
        percentile(&sse_lat, 0.9),
        percentile(&sse_lat, 0.99),
        sse_lat.len()
    );
    let lat = latencies(&got);
    // Per event: the webhook's arrival after the same event's on the live stream.
    let on_stream: HashMap<String, i64> = streamed
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(at, e)| Some((e["id"].as_str()?.to_owned(), *at)))
        .collect();
    let mut behind: Vec<i64> = got
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(at, e)| Some(at - on_stream.get(e["id"].as_str()?)?))
        .collect();
    behind.sort_unstable();
    println!(
        "webhook arrival after the same event on the live stream: p50 {} ms, p99 {} ms, max {} ms \
         over {} events",
        percentile(&behind, 0.5),
        percentile(&behind, 0.99),
        behind.last().unwrap(),
        behind.len()
    );
    println!(
        "latency (reading publish -> webhook arrival) over {} events at ~{} events/s: \
         p50 {} ms, p90 {} ms, p95 {} ms, p99 {} ms, max {} ms; over 500 ms: {}",
        lat.len(),
        TRUCKS,
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
        lat.last().unwrap(),
        lat.iter().filter(|l| **l > 500).count()
    );

    // 2. Throughput: 20,000 crossings as fast as they go in.
    const BURST_TRUCKS: usize = 1000;
    const BURST_ROUNDS: usize = 20;
    let before = got.lock().unwrap().len();
    let t0 = wall_ms() + 10_000;
    let publish_start = Instant::now();
    let mut tasks = Vec::new();
    for d in 0..BURST_TRUCKS {
        let port = broker.port;
        tasks.push(tokio::spawn(async move {
            // Starts inside (the latency phase ended outside): every reading is a crossing.
            let readings = (0..BURST_ROUNDS)
                .map(|i| reading(t0 + i as i64 * 1000, i % 2 == 0, d))
                .collect();
            publish(
                port,
                &format!("landport/acme/truck-b{d}/telemetry"),
                readings,
                QoS::AtLeastOnce,
            )
            .await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let published_in = publish_start.elapsed();
    // A new truck's first reading inside counts as an entry too (SPEC 11).
    let burst = BURST_TRUCKS * BURST_ROUNDS;
    wait_for("the burst delivered", Duration::from_secs(600), || {
        (got.lock().unwrap().len() >= before + burst).then_some(())
    });
    let arrivals: Vec<i64> = got.lock().unwrap()[before..]
        .iter()
        .map(|(a, _)| *a)
        .collect();
    let span_ms = (arrivals.iter().max().unwrap() - arrivals.iter().min().unwrap()).max(1);
    println!(
        "throughput: {} events delivered in {:.2} s = {:.0} events/s \
         (the readings were taken in by the broker in {:.2} s: {:.0}/s)",
        arrivals.len(),
        span_ms as f64 / 1000.0,
        arrivals.len() as f64 * 1000.0 / span_ms as f64,
        published_in.as_secs_f64(),
        burst as f64 / published_in.as_secs_f64(),
    );
}
