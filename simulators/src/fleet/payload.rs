//! Payload encoders of the fleet: native JSON (the load generator's writer), native batches,
//! SenML and OwnTracks. Pure.

use crate::loadgen::payload::{Fields, write_fixed, write_reading};

/// One native reading as JSON (`ts` in epoch ms).
pub fn native(f: &Fields) -> Vec<u8> {
    let mut buf = Vec::with_capacity(200);
    write_reading(&mut buf, f);
    buf
}

/// A store-and-forward batch: a JSON array of native readings, oldest first.
pub fn native_batch(readings: &[Fields]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(200 * readings.len() + 2);
    buf.push(b'[');
    for (i, f) in readings.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_reading(&mut buf, f);
    }
    buf.push(b']');
    buf
}

/// A warehouse sensor's SenML pack (RFC 8428): cold-room temperature (`Cel`) and floor scale
/// (`kg`), base time in seconds since the epoch.
pub fn senml(name: &str, ts_ms: i64, temp_c: f64, weight_kg: f64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(160);
    buf.extend_from_slice(b"[{\"bn\":\"urn:dev:landport:");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b":\",\"bt\":");
    write_fixed(&mut buf, ts_ms as f64 / 1000.0, 3);
    buf.extend_from_slice(b",\"n\":\"temp\",\"u\":\"Cel\",\"v\":");
    write_fixed(&mut buf, temp_c, 2);
    buf.extend_from_slice(b"},{\"n\":\"scale\",\"u\":\"kg\",\"v\":");
    write_fixed(&mut buf, weight_kg, 1);
    buf.extend_from_slice(b"}]");
    buf
}

/// An OwnTracks `location` message: `tst` in seconds, `vel` in km/h, `cog` in degrees.
pub fn owntracks(f: &Fields, tid: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(160);
    let mut int = itoa::Buffer::new();
    buf.extend_from_slice(b"{\"_type\":\"location\",\"tid\":\"");
    buf.extend_from_slice(tid.as_bytes());
    buf.extend_from_slice(b"\",\"tst\":");
    buf.extend_from_slice(int.format(f.ts_ms.div_euclid(1000)).as_bytes());
    buf.extend_from_slice(b",\"lat\":");
    write_fixed(&mut buf, f.lat, 6);
    buf.extend_from_slice(b",\"lon\":");
    write_fixed(&mut buf, f.lon, 6);
    buf.extend_from_slice(b",\"acc\":");
    buf.extend_from_slice(int.format(f.accuracy_m.round() as i64).as_bytes());
    buf.extend_from_slice(b",\"vel\":");
    buf.extend_from_slice(int.format(f.speed_kmh.round() as i64).as_bytes());
    buf.extend_from_slice(b",\"cog\":");
    buf.extend_from_slice(
        int.format((f.heading_deg.round() as i64).rem_euclid(360))
            .as_bytes(),
    );
    buf.extend_from_slice(b",\"batt\":");
    buf.extend_from_slice(int.format(f.battery_pct.round() as i64).as_bytes());
    buf.push(b'}');
    buf
}
