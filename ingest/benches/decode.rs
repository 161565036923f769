//! Decode + validate throughput of each payload format, in readings per second.
//!
//!     cargo bench -p landport-ingest --bench decode
//!
//! (SPEC section 9 asks for decode + validate + apply at 1,000,000 readings/s/core; this
//! measures the decode + validate share of that budget.)

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use landport_ingest::decode::{
    DecodeOutcome, Limits, Rejection, decode_native, decode_owntracks, decode_senml,
};

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

criterion_group!(benches, decode);
criterion_main!(benches);
