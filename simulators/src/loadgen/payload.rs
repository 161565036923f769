//! Simulated trucks and their native JSON readings (SPEC 4). Pure: the caller passes the time
//! in, so a truck's path depends only on its seed and the timestamps it is given.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Western edge of the region trucks drive in, degrees (Liaoning, China).
pub const MIN_LON: f64 = 120.0;
/// Eastern edge, degrees.
pub const MAX_LON: f64 = 126.0;
/// Southern edge, degrees.
pub const MIN_LAT: f64 = 38.0;
/// Northern edge, degrees.
pub const MAX_LAT: f64 = 44.0;

/// Latitude put in a deliberately malformed reading: out of range, so Landport rejects it
/// (`lat_out_of_range`) and dead-letters it.
pub const MALFORMED_LAT: f64 = 95.0;

/// Metres per degree of latitude (mean), for the flat-earth step of a few hundred metres.
const M_PER_DEG_LAT: f64 = 111_320.0;
/// Slowest and fastest cruising speed, km/h.
const SPEED_RANGE_KMH: (f64, f64) = (20.0, 100.0);
/// Longest step applied at once, seconds: a truck silent for hours does not teleport.
const MAX_STEP_SECONDS: f64 = 600.0;

/// One simulated truck: where it is and what it reports.
#[derive(Debug, Clone)]
pub struct Truck {
    rng: SmallRng,
    /// Longitude, degrees.
    lon: f64,
    /// Latitude, degrees.
    lat: f64,
    /// Course over ground, degrees clockwise from north, in [0, 360).
    heading_deg: f64,
    speed_kmh: f64,
    /// Reefer temperature, °C; wanders around -18.
    temp_c: f64,
    /// Cargo weight, kg; constant per trip.
    weight_kg: f64,
    battery_pct: f64,
    /// Sequence number of the next reading.
    seq: u64,
    /// `ts` of the last reading, epoch ms; `None` before the first.
    last_ts_ms: Option<i64>,
}

/// The fields of one reading, as they go on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fields {
    /// Epoch milliseconds.
    pub ts_ms: i64,
    pub seq: u64,
    /// Degrees.
    pub lat: f64,
    /// Degrees.
    pub lon: f64,
    pub speed_kmh: f64,
    pub heading_deg: f64,
    pub accuracy_m: f64,
    pub temp_c: f64,
    pub weight_kg: f64,
    pub battery_pct: f64,
}

impl Truck {
    /// A truck at a random place in the region; the same `seed` gives the same truck.
    pub fn new(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        Truck {
            lon: rng.random_range(MIN_LON + 0.5..MAX_LON - 0.5),
            lat: rng.random_range(MIN_LAT + 0.5..MAX_LAT - 0.5),
            heading_deg: rng.random_range(0.0..360.0),
            speed_kmh: rng.random_range(40.0..90.0),
            temp_c: rng.random_range(-20.0..-16.0),
            weight_kg: (rng.random_range(2_000.0..25_000.0_f64) / 50.0).round() * 50.0,
            battery_pct: rng.random_range(40.0..100.0),
            seq: 0,
            last_ts_ms: None,
            rng,
        }
    }

    /// The next reading, stamped `now_ms` (epoch ms) or 1 ms after the previous one if that is
    /// later, so a truck's timestamps strictly increase even when it publishes several
    /// readings in the same millisecond. Moves the truck by the time since its last reading.
    pub fn next_reading(&mut self, now_ms: i64) -> Fields {
        let ts_ms = match self.last_ts_ms {
            Some(last) => now_ms.max(last + 1),
            None => now_ms,
        };
        let dt_s = self.last_ts_ms.map_or(0.0, |last| {
            ((ts_ms - last) as f64 / 1000.0).min(MAX_STEP_SECONDS)
        });
        self.last_ts_ms = Some(ts_ms);
        self.drive(dt_s);
        self.seq += 1;
        Fields {
            ts_ms,
            seq: self.seq,
            lat: self.lat,
            lon: self.lon,
            speed_kmh: self.speed_kmh,
            heading_deg: self.heading_deg,
            accuracy_m: self.rng.random_range(3.0..8.0),
            temp_c: self.temp_c,
            weight_kg: self.weight_kg,
            battery_pct: self.battery_pct,
        }
    }

    /// Steers a little, changes speed a little, and advances `dt_s` seconds along the heading;
    /// turns back at the region's edges.
    fn drive(&mut self, dt_s: f64) {
        let rng = &mut self.rng;
        self.heading_deg = (self.heading_deg + rng.random_range(-8.0..8.0)).rem_euclid(360.0);
        self.speed_kmh = (self.speed_kmh + rng.random_range(-3.0..3.0))
            .clamp(SPEED_RANGE_KMH.0, SPEED_RANGE_KMH.1);
        self.temp_c = (self.temp_c + rng.random_range(-0.1..0.1)).clamp(-22.0, -14.0);
        self.battery_pct = (self.battery_pct - dt_s * 0.0005).max(5.0);

        let distance_m = self.speed_kmh / 3.6 * dt_s;
        let heading = self.heading_deg.to_radians();
        let lat = self.lat + distance_m * heading.cos() / M_PER_DEG_LAT;
        let lon =
            self.lon + distance_m * heading.sin() / (M_PER_DEG_LAT * self.lat.to_radians().cos());
        let (lon_in, lat_in) = (
            (MIN_LON..=MAX_LON).contains(&lon),
            (MIN_LAT..=MAX_LAT).contains(&lat),
        );
        if lon_in && lat_in {
            self.lon = lon;
            self.lat = lat;
        } else {
            // Bounce: mirror the heading off the edge that was crossed and stay put this step.
            if !lon_in {
                self.heading_deg = (360.0 - self.heading_deg).rem_euclid(360.0);
            }
            if !lat_in {
                self.heading_deg = (180.0 - self.heading_deg).rem_euclid(360.0);
            }
        }
    }
}

/// Appends `fields` as a native JSON reading. `ts` comes first, so it survives in the
/// truncated `payload_excerpt` of a dead letter.
pub fn write_reading(buf: &mut Vec<u8>, f: &Fields) {
    let mut int = itoa::Buffer::new();
    buf.extend_from_slice(b"{\"ts\":");
    buf.extend_from_slice(int.format(f.ts_ms).as_bytes());
    buf.extend_from_slice(b",\"seq\":");
    buf.extend_from_slice(int.format(f.seq).as_bytes());
    buf.extend_from_slice(b",\"lat\":");
    write_fixed(buf, f.lat, 6);
    buf.extend_from_slice(b",\"lon\":");
    write_fixed(buf, f.lon, 6);
    buf.extend_from_slice(b",\"speed_kmh\":");
    write_fixed(buf, f.speed_kmh, 1);
    buf.extend_from_slice(b",\"heading_deg\":");
    // Rounding may give 360.0, which is out of range: fold it back to 0.
    let heading = (f.heading_deg * 10.0).round() / 10.0;
    write_fixed(buf, if heading >= 360.0 { 0.0 } else { heading }, 1);
    buf.extend_from_slice(b",\"accuracy_m\":");
    write_fixed(buf, f.accuracy_m, 1);
    buf.extend_from_slice(b",\"temp_c\":");
    write_fixed(buf, f.temp_c, 1);
    buf.extend_from_slice(b",\"weight_kg\":");
    write_fixed(buf, f.weight_kg, 1);
    buf.extend_from_slice(b",\"battery_pct\":");
    write_fixed(buf, f.battery_pct, 0);
    buf.push(b'}');
}

/// Appends `value` with exactly `decimals` digits after the point (none, and no point, for 0).
/// `value` must be finite and below 1e12 in magnitude; the readings' values are.
pub fn write_fixed(buf: &mut Vec<u8>, value: f64, decimals: u32) {
    let scale = 10_i64.pow(decimals);
    let scaled = (value * scale as f64).round() as i64;
    if scaled < 0 {
        buf.push(b'-');
    }
    let magnitude = scaled.unsigned_abs();
    let scale = scale.unsigned_abs();
    let mut int = itoa::Buffer::new();
    buf.extend_from_slice(int.format(magnitude / scale).as_bytes());
    if decimals > 0 {
        buf.push(b'.');
        let frac = int.format(magnitude % scale);
        for _ in frac.len()..decimals as usize {
            buf.push(b'0');
        }
        buf.extend_from_slice(frac.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(value: f64, decimals: u32) -> String {
        let mut buf = Vec::new();
        write_fixed(&mut buf, value, decimals);
        String::from_utf8(buf).unwrap()
    }

    fn json_of(f: &Fields) -> serde_json::Value {
        let mut buf = Vec::new();
        write_reading(&mut buf, f);
        serde_json::from_slice(&buf)
            .unwrap_or_else(|e| panic!("invalid JSON {:?}: {e}", String::from_utf8_lossy(&buf)))
    }

    #[test]
    fn fixed_point_formatting_rounds_pads_and_keeps_the_sign() {
        assert_eq!(formatted(41.1087, 6), "41.108700");
        assert_eq!(formatted(122.0000004, 6), "122.000000");
        assert_eq!(formatted(0.05, 1), "0.1");
        assert_eq!(formatted(-0.4, 1), "-0.4");
        assert_eq!(formatted(-18.45, 1), "-18.5");
        assert_eq!(formatted(3.0001, 3), "3.000");
        assert_eq!(formatted(86.6, 0), "87");
        assert_eq!(formatted(0.0, 2), "0.00");
    }

    #[test]
    fn readings_are_valid_json_with_in_range_values_over_a_long_drive() {
        let mut now_ms = 1_764_000_000_000;
        for seed in 0..50 {
            let mut truck = Truck::new(seed);
            let mut last_ts = i64::MIN;
            for i in 0..2_000 {
                // Bursts in the same millisecond and long silences, both.
                now_ms += if i % 7 == 0 { 90_000 } else { 0 };
                let f = truck.next_reading(now_ms);
                let v = json_of(&f);
                let num = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
                assert!(v["ts"].as_i64().unwrap() > last_ts, "ts strictly increases");
                last_ts = v["ts"].as_i64().unwrap();
                assert_eq!(v["seq"].as_u64(), Some(i + 1));
                assert!((MIN_LAT..=MAX_LAT).contains(&num("lat")), "{v}");
                assert!((MIN_LON..=MAX_LON).contains(&num("lon")), "{v}");
                assert!((20.0..=100.0).contains(&num("speed_kmh")), "{v}");
                assert!((0.0..360.0).contains(&num("heading_deg")), "{v}");
                assert!((3.0..=8.0).contains(&num("accuracy_m")), "{v}");
                assert!((-22.0..=-14.0).contains(&num("temp_c")), "{v}");
                assert!(num("weight_kg") > 0.0, "{v}");
                assert!((5.0..=100.0).contains(&num("battery_pct")), "{v}");
            }
        }
    }

    #[test]
    fn a_truck_moves_about_as_far_as_its_speed_allows() {
        let mut truck = Truck::new(7);
        let a = truck.next_reading(0);
        let b = truck.next_reading(60_000);
        let dy_m = (b.lat - a.lat) * M_PER_DEG_LAT;
        let dx_m = (b.lon - a.lon) * M_PER_DEG_LAT * a.lat.to_radians().cos();
        let moved_m = dx_m.hypot(dy_m);
        // One minute at 20..100 km/h, unless it bounced off an edge (then 0).
        assert!(
            moved_m == 0.0 || (300.0..=1_700.0).contains(&moved_m),
            "{moved_m}"
        );
    }

    #[test]
    fn the_same_seed_drives_the_same_path() {
        let (mut a, mut b) = (Truck::new(42), Truck::new(42));
        for t in 0..100 {
            assert_eq!(a.next_reading(t * 1_000), b.next_reading(t * 1_000));
        }
    }

    #[test]
    fn a_malformed_reading_still_parses_and_puts_ts_first() {
        let mut f = Truck::new(1).next_reading(1_764_000_000_123);
        f.lat = MALFORMED_LAT;
        let mut buf = Vec::new();
        write_reading(&mut buf, &f);
        assert!(buf.starts_with(b"{\"ts\":1764000000123,"));
        assert_eq!(json_of(&f)["lat"].as_f64(), Some(95.0));
    }
}
