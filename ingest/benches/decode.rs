//! Decode + validate throughput of each payload format, in readings per second.
//!
//!     cargo bench -p landport-ingest --bench decode
//!
//! SPEC section 9 asks for decode + validate + apply at 1,000,000 readings/s/core: the
//! `decode_apply` group measures exactly the pipeline's per-message work (topic parsing,
//! decoding, validation, `Tracker::apply` against 10,000 polygon geofences with 100,000 moving
//! devices, building the row to store): ingest's `Decoder::decode`, then the pipeline's
//! `Intake::apply` (the channel between them is not timed).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use landport_ingest::decode::{
    DecodeOutcome, Limits, Rejection, decode_native, decode_owntracks, decode_senml,
};
use landport_ingest::mqtt::Inbound;
use landport_pipeline::Output;

type Decoder = fn(&[u8], &Limits, i64) -> Result<DecodeOutcome, Rejection>;

/// The server clock: 2026-11-18T11:06:40Z.
const NOW: i64 = 1_795_000_000_000;

/// SPEC section 4's example reading, every field present, `ts` in RFC 3339.
const NATIVE_RFC3339: &str = r#"{"ts": "2026-11-18T10:15:30.250Z", "seq": 1042, "lat": 41.1087, "lon": 122.9946, "speed_kmh": 63.2, "heading_deg": 181, "accuracy_m": 4.5, "temp_c": -18.4, "weight_kg": 18250.0, "battery_pct": 87}"#;

/// The same with `ts` in epoch milliseconds, as compact firmware sends it.
const NATIVE_EPOCH_MS: &str = r#"{"ts":1794996930250,"seq":1042,"lat":41.1087,"lon":122.9946,"speed_kmh":63.2,"heading_deg":181,"accuracy_m":4.5,"temp_c":-18.4,"weight_kg":18250.0,"battery_pct":87}"#;

/// A truck's position, speed and cargo temperature at one time, as SenML.
const SENML_PACK: &str = r#"[{"bn":"urn:dev:landport:truck-17:","bt":1794996930.25,"n":"lat","u":"lat","v":41.1087},{"n":"lon","u":"lon","v":122.9946},{"n":"speed","u":"m/s","v":17.55},{"n":"cargo_temp","u":"Cel","v":-18.4},{"n":"battery","u":"%EL","v":87}]"#;

/// An OwnTracks location as the Android app sends it.
const OWNTRACKS: &str = r#"{"_type":"location","acc":12,"alt":51,"batt":87,"bs":1,"conn":"m","created_at":1794996931,"lat":41.1087,"lon":122.9946,"m":1,"tid":"ja","tst":1794996930,"vac":3,"vel":63,"cog":181,"topic":"owntracks/ja/phone"}"#;

fn native_batch(n: usize) -> String {
    let readings: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"ts":{},"seq":{i},"lat":{},"lon":{},"speed_kmh":63.2,"heading_deg":181,"accuracy_m":4.5,"temp_c":-18.4,"weight_kg":18250.0,"battery_pct":87}}"#,
                1_794_996_000_000 + i as i64 * 1000,
                41.1087 + i as f64 * 1e-4,
                122.9946 - i as f64 * 1e-4,
            )
        })
        .collect();
    format!("[{}]", readings.join(","))
}

fn decode(c: &mut Criterion) {
    let limits = Limits::default();
    let batch = native_batch(100);
    let mut g = c.benchmark_group("decode");

    let cases: [(&str, &[u8], Decoder); 5] = [
        (
            "native_single_rfc3339",
            NATIVE_RFC3339.as_bytes(),
            decode_native,
        ),
        (
            "native_single_epoch_ms",
            NATIVE_EPOCH_MS.as_bytes(),
            decode_native,
        ),
        ("native_batch_100", batch.as_bytes(), decode_native),
        ("senml_pack_5_records", SENML_PACK.as_bytes(), decode_senml),
        ("owntracks_location", OWNTRACKS.as_bytes(), decode_owntracks),
    ];
    for (name, payload, decoder) in cases {
        // Every payload decodes in full: the bench measures the path readings take.
        let out = decoder(payload, &limits, NOW).expect(name);
        assert!(
            !out.readings.is_empty() && out.rejections.is_empty(),
            "{name}: {out:?}"
        );
        g.throughput(Throughput::Elements(out.readings.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| decoder(black_box(payload), &limits, NOW))
        });
    }
    g.finish();
}

const DEVICES: usize = 100_000;
const STEPS: usize = 10;
const BATCH: usize = 10_000;

fn octagon(lon: f64, lat: f64, radius_m: f64) -> geo_types::Polygon<f64> {
    let dlat = radius_m / 111_320.0;
    let dlon = dlat / lat.to_radians().cos();
    let mut pts: Vec<(f64, f64)> = (0..8)
        .map(|i| {
            let a = i as f64 * std::f64::consts::TAU / 8.0;
            (lon + dlon * a.cos(), lat + dlat * a.sin())
        })
        .collect();
    pts.push(pts[0]);
    geo_types::Polygon::new(geo_types::LineString::from(pts), vec![])
}

/// What the service does with one message, without the channels between: ingest's decoder,
/// then the pipeline's intake applying the decoded message to a core (tracker and registry).
struct Ingestor {
    decoder: landport_ingest::decoder::Decoder,
    intake: landport_pipeline::Intake,
    core: landport_pipeline::Core,
}

impl Ingestor {
    fn handle(&mut self, topic: &str, payload: &[u8], now_ms: i64, out: &mut Output) {
        let msg = self.decoder.decode(Inbound {
            topic: topic.to_owned(),
            payload: bytes::Bytes::copy_from_slice(payload),
            qos: 0,
            ack: None,
            received_ms: now_ms,
        });
        self.intake.apply(&mut self.core, &msg, out);
    }
}

/// An ingestor holding 10,000 octagon geofences spread over a 6 x 6 degree region.
fn ingestor() -> Ingestor {
    use landport_ingest::decoder::{Decoder, IngestSettings};
    use landport_pipeline::{Core, Intake, metrics::Metrics};
    use landport_tracker::{GeofenceDef, Shape, Tracker, TrackerSettings};
    let mut tr = Tracker::new(TrackerSettings::default());
    let mut x: u64 = 7;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 1_000_000) as f64 / 1_000_000.0
    };
    for i in 0..10_000 {
        let def = GeofenceDef {
            id: format!("fence-{i}"),
            name: String::new(),
            kind: "warehouse".into(),
            shape: Shape::Area(geo_types::MultiPolygon(vec![octagon(
                120.0 + 6.0 * rnd(),
                38.0 + 6.0 * rnd(),
                300.0 + 500.0 * rnd(),
            )])),
            confirm_seconds: None,
            dwell_seconds: None,
        };
        tr.upsert_geofence("bench", def).unwrap();
    }
    let settings = IngestSettings {
        limits: Limits::default(),
        owntracks: Default::default(),
    };
    let metrics = Metrics::new();
    Ingestor {
        decoder: Decoder::new(settings),
        intake: Intake::new(metrics.clone()),
        core: Core::new(tr, true, metrics),
    }
}

/// `STEPS` readings for each of `DEVICES` trucks, in arrival order: (topic, payload).
fn stream() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::with_capacity(DEVICES * STEPS);
    for step in 0..STEPS {
        for d in 0..DEVICES {
            let lon = 120.0 + 6.0 * (d as f64 * 0.618_034).fract() + step as f64 * 1.5e-4;
            let lat = 38.0 + 6.0 * (d as f64 * 0.414_214).fract();
            let payload = format!(
                r#"{{"ts":{},"seq":{step},"lat":{lat:.6},"lon":{lon:.6},"speed_kmh":60.5,"heading_deg":90,"accuracy_m":5}}"#,
                NOW - 3_600_000 + step as i64 * 1000
            );
            out.push((
                format!("landport/bench/truck-{d}/telemetry"),
                payload.into_bytes(),
            ));
        }
    }
    out
}

fn decode_apply(c: &mut Criterion) {
    let stream = stream();
    let mut ing = ingestor();
    let mut out = Output::default();
    // The first lap creates the devices; time the steady state after it.
    for (topic, payload) in &stream[..DEVICES] {
        ing.handle(topic, payload, NOW, &mut out);
        out.rows.clear();
        out.events.clear();
    }
    let mut next = DEVICES;
    let mut g = c.benchmark_group("decode_apply");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    g.bench_function("native_100k_devices_10k_fences", |b| {
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            for _ in 0..iters {
                if next + BATCH > stream.len() {
                    // Out of fresh readings: start over with a new ingestor, untimed.
                    ing = ingestor();
                    for (topic, payload) in &stream[..DEVICES] {
                        ing.handle(topic, payload, NOW, &mut out);
                        out.rows.clear();
                        out.events.clear();
                    }
                    next = DEVICES;
                }
                let start = std::time::Instant::now();
                for (topic, payload) in &stream[next..next + BATCH] {
                    ing.handle(topic, payload, NOW, &mut out);
                    out.rows.clear();
                    out.events.clear();
                }
                spent += start.elapsed();
                next += BATCH;
            }
            black_box(&out);
            spent
        })
    });
    g.finish();
}

criterion_group!(benches, decode, decode_apply);
criterion_main!(benches);
