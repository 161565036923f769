//! The checks every format shares: device time against the server's clock, ranges, pairing of
//! latitude and longitude, null island. Each decoder gathers plain numbers into [`Values`] and
//! says how to name a quantity in its messages; [`build_reading`] does the rest.

use chrono::DateTime;
use landport_tracker::{Fix, Reading, TimestampMs};

use super::Limits;
use super::rejection::{FieldPath, Quantity, Rejection, excerpt};

/// 2000-01-01T00:00:00Z in ms since the epoch: device times before it are refused (an unset
/// clock, or seconds sent where milliseconds belong).
pub const MIN_TS_MS: TimestampMs = 946_684_800_000;

/// Checks a device time against the floor (2000-01-01) and the server's clock.
pub(crate) fn check_ts(
    ts_ms: TimestampMs,
    at: impl FnOnce() -> FieldPath,
    limits: &Limits,
    now_ms: TimestampMs,
) -> Result<TimestampMs, Rejection> {
    if ts_ms < MIN_TS_MS {
        return Err(Rejection::TsTooOld { at: at(), ts_ms });
    }
    if ts_ms > now_ms.saturating_add(limits.max_future_ms) {
        return Err(Rejection::TsTooFarAhead {
            at: at(),
            ts_ms,
            now_ms,
            max_future_ms: limits.max_future_ms,
        });
    }
    Ok(ts_ms)
}

/// An RFC 3339 time with any offset (`2026-11-24T08:15:30.250Z`, `...+08:00`) as ms since the
/// epoch, UTC. Digits past the millisecond are dropped (rounded toward the past).
pub(crate) fn parse_rfc3339_ms(
    s: &str,
    at: impl FnOnce() -> FieldPath,
) -> Result<TimestampMs, Rejection> {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => Ok(t.timestamp_millis()),
        Err(e) => Err(Rejection::TsInvalid {
            at: at(),
            detail: format!("{:?} is not an RFC 3339 time: {e}", excerpt(s, 40)),
        }),
    }
}

/// Seconds since the epoch (SenML, OwnTracks) as ms, refusing what an i64 of ms cannot hold.
pub(crate) fn seconds_to_ms(
    secs: f64,
    at: impl FnOnce() -> FieldPath,
) -> Result<TimestampMs, Rejection> {
    let ms = (secs * 1000.0).round();
    // i64::MAX as f64 rounds up to 2^63, which does not fit: keep strictly below it.
    if ms.is_finite() && ms >= -(2f64.powi(63)) && ms < 2f64.powi(63) {
        Ok(ms as i64)
    } else {
        Err(Rejection::TsInvalid {
            at: at(),
            detail: format!("{secs} s since the epoch is out of range"),
        })
    }
}

/// The measured values of one reading, in their Landport units, before range checks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Values(pub(crate) [Option<f64>; 8]);

impl Values {
    pub(crate) fn get(&self, q: Quantity) -> Option<f64> {
        self.0[q.index()]
    }

    pub(crate) fn set(&mut self, q: Quantity, v: Option<f64>) {
        self.0[q.index()] = v;
    }
}

/// Checks `values` and builds the reading. `path` names a quantity's field in this format's
/// messages (`readings[3].lat`, `records[5].lat`, `vel`); it is only called on failure.
///
/// Rules: every value finite and in [`Quantity::range`]; heading 360 becomes 0; lat and lon
/// come together and not as (0, 0); speed, heading and accuracy need a position (a `Reading`
/// keeps them in its `Fix`).
pub(crate) fn build_reading(
    ts_ms: TimestampMs,
    seq: Option<u64>,
    values: Values,
    path: impl Fn(Quantity) -> FieldPath,
) -> Result<Reading, Rejection> {
    for q in Quantity::ALL {
        if let Some(v) = values.get(q) {
            if !v.is_finite() {
                return Err(Rejection::NonFinite {
                    at: path(q),
                    detail: v.to_string(),
                });
            }
            let (lo, hi) = q.range();
            if !(lo..=hi).contains(&v) {
                return Err(Rejection::OutOfRange {
                    at: path(q),
                    quantity: q,
                    value: v,
                });
            }
        }
    }
    let fix = match (values.get(Quantity::Lat), values.get(Quantity::Lon)) {
        (Some(lat), Some(lon)) => {
            if lat == 0.0 && lon == 0.0 {
                return Err(Rejection::NullIsland {
                    at: path(Quantity::Lat).with_field(""),
                });
            }
            Some(Fix {
                lat,
                lon,
                speed_kmh: values.get(Quantity::SpeedKmh),
                heading_deg: values
                    .get(Quantity::HeadingDeg)
                    .map(|h| if h == 360.0 { 0.0 } else { h }),
                accuracy_m: values.get(Quantity::AccuracyM),
            })
        }
        (Some(_), None) => return Err(missing(&path, Quantity::Lon, Quantity::Lat)),
        (None, Some(_)) => return Err(missing(&path, Quantity::Lat, Quantity::Lon)),
        (None, None) => {
            for q in [
                Quantity::SpeedKmh,
                Quantity::HeadingDeg,
                Quantity::AccuracyM,
            ] {
                if values.get(q).is_some() {
                    return Err(missing(&path, Quantity::Lat, q));
                }
            }
            None
        }
    };
    Ok(Reading {
        ts_ms,
        seq,
        fix,
        temp_c: values.get(Quantity::TempC),
        weight_kg: values.get(Quantity::WeightKg),
        battery_pct: values.get(Quantity::BatteryPct),
    })
}

fn missing(
    path: &impl Fn(Quantity) -> FieldPath,
    absent: Quantity,
    present: Quantity,
) -> Rejection {
    Rejection::MissingField {
        at: path(absent),
        required_with: Some(path(present).field),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_795_000_000_000;

    fn native(q: Quantity) -> FieldPath {
        FieldPath::single(q.native_name())
    }

    fn values(pairs: &[(Quantity, f64)]) -> Values {
        let mut v = Values::default();
        for &(q, x) in pairs {
            v.set(q, Some(x));
        }
        v
    }

    fn code(v: Values) -> &'static str {
        build_reading(NOW, None, v, native).unwrap_err().code()
    }

    #[test]
    fn ranges_are_inclusive() {
        let v = values(&[
            (Quantity::Lat, 90.0),
            (Quantity::Lon, -180.0),
            (Quantity::SpeedKmh, 0.0),
            (Quantity::AccuracyM, 0.0),
            (Quantity::BatteryPct, 100.0),
            (Quantity::HeadingDeg, 360.0),
        ]);
        let r = build_reading(NOW, Some(7), v, native).unwrap();
        let fix = r.fix.unwrap();
        assert_eq!((fix.lat, fix.lon), (90.0, -180.0));
        assert_eq!(fix.heading_deg, Some(0.0), "360 is stored as 0");
        assert_eq!(r.battery_pct, Some(100.0));
        assert_eq!(r.seq, Some(7));
    }

    #[test]
    fn each_quantity_has_its_out_of_range_code() {
        let pos = [(Quantity::Lat, 41.0), (Quantity::Lon, 122.0)];
        let cases = [
            (Quantity::Lat, 90.1, "lat_out_of_range"),
            (Quantity::Lon, -180.5, "lon_out_of_range"),
            (Quantity::SpeedKmh, -1.0, "speed_out_of_range"),
            (Quantity::HeadingDeg, 360.5, "heading_out_of_range"),
            (Quantity::HeadingDeg, -0.5, "heading_out_of_range"),
            (Quantity::AccuracyM, -3.0, "accuracy_out_of_range"),
            (Quantity::BatteryPct, 100.5, "battery_out_of_range"),
            (Quantity::TempC, -300.0, "temp_out_of_range"),
        ];
        for (q, x, want) in cases {
            let mut v = values(&pos);
            v.set(q, Some(x));
            assert_eq!(code(v), want, "{q} = {x}");
        }
    }

    #[test]
    fn lat_without_lon_is_missing_lon() {
        let err = build_reading(NOW, None, values(&[(Quantity::Lat, 41.0)]), native).unwrap_err();
        assert_eq!(err.to_string(), "lon: missing (required with lat)");
        assert_eq!(code(values(&[(Quantity::Lon, 122.0)])), "missing_field");
    }

    #[test]
    fn speed_without_a_position_is_refused() {
        let err =
            build_reading(NOW, None, values(&[(Quantity::SpeedKmh, 5.0)]), native).unwrap_err();
        assert_eq!(err.to_string(), "lat: missing (required with speed_kmh)");
    }

    #[test]
    fn null_island_is_refused_but_zero_on_one_axis_is_fine() {
        assert_eq!(
            code(values(&[(Quantity::Lat, 0.0), (Quantity::Lon, 0.0)])),
            "null_island"
        );
        assert_eq!(
            code(values(&[(Quantity::Lat, -0.0), (Quantity::Lon, 0.0)])),
            "null_island"
        );
        let ok = values(&[(Quantity::Lat, 0.0), (Quantity::Lon, 9.5)]);
        assert!(build_reading(NOW, None, ok, native).is_ok());
    }

    #[test]
    fn non_finite_values_are_refused() {
        assert_eq!(
            code(values(&[(Quantity::TempC, f64::INFINITY)])),
            "non_finite"
        );
        assert_eq!(
            code(values(&[(Quantity::WeightKg, f64::NAN)])),
            "non_finite"
        );
    }

    #[test]
    fn a_temperature_alone_is_a_reading() {
        let r = build_reading(NOW, None, values(&[(Quantity::TempC, -18.4)]), native).unwrap();
        assert_eq!(r, Reading::at(NOW).with_temp(-18.4));
    }

    #[test]
    fn ts_window_is_2000_to_now_plus_limit() {
        let limits = Limits::default();
        let at = || FieldPath::single("ts");
        assert_eq!(check_ts(MIN_TS_MS, at, &limits, NOW), Ok(MIN_TS_MS));
        assert_eq!(
            check_ts(MIN_TS_MS - 1, at, &limits, NOW)
                .unwrap_err()
                .code(),
            "ts_too_old"
        );
        let edge = NOW + limits.max_future_ms;
        assert_eq!(check_ts(edge, at, &limits, NOW), Ok(edge));
        let err = check_ts(edge + 1, at, &limits, NOW).unwrap_err();
        assert_eq!(err.code(), "ts_too_far_ahead");
        assert!(
            check_ts(i64::MAX, at, &limits, i64::MAX).is_ok(),
            "no overflow"
        );
    }

    #[test]
    fn rfc3339_takes_any_offset() {
        let at = || FieldPath::single("ts");
        let utc = parse_rfc3339_ms("2026-11-24T08:15:30.250Z", at).unwrap();
        assert_eq!(utc, 1_795_508_130_250);
        assert_eq!(
            parse_rfc3339_ms("2026-11-24T16:15:30.250+08:00", at),
            Ok(utc)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-24T03:15:30.250-05:00", at),
            Ok(utc)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-24T08:15:30.2509Z", at),
            Ok(utc),
            "sub-ms dropped"
        );
        for bad in [
            "2026-11-24",
            "2026-11-24T08:15:30",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "",
        ] {
            assert_eq!(
                parse_rfc3339_ms(bad, at).unwrap_err().code(),
                "ts_invalid",
                "{bad}"
            );
        }
    }

    #[test]
    fn seconds_convert_to_rounded_milliseconds() {
        let at = || FieldPath::single("t");
        assert_eq!(seconds_to_ms(1.276020076001e9, at), Ok(1_276_020_076_001));
        assert_eq!(seconds_to_ms(1e300, at).unwrap_err().code(), "ts_invalid");
        assert_eq!(
            seconds_to_ms(f64::NAN, at).unwrap_err().code(),
            "ts_invalid"
        );
    }
}
