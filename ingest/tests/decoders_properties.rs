//! Property tests: no input makes a decoder panic or let an out-of-range reading through, and
//! valid readings survive native JSON encode -> decode unchanged.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_bodies;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use landport_ingest::decode::{
    Limits, MIN_TS_MS, decode_native, decode_senml, encode_native, encode_native_batch,
};
use landport_tracker::{Fix, Reading};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use fuzz_bodies::NOW_MS;

/// JSON-ish text: the characters JSON is made of, and the field names the decoders look for,
/// so that generated payloads get past the parser often enough to reach validation.
fn jsonish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("\"ts\":".to_owned()),
        Just("\"lat\":".to_owned()),
        Just("\"lon\":".to_owned()),
        Just("\"_type\":\"location\"".to_owned()),
        Just("\"tst\":".to_owned()),
        Just("\"n\":\"temp_c\"".to_owned()),
        Just("\"u\":".to_owned()),
        Just("\"v\":".to_owned()),
        Just("\"bt\":".to_owned()),
        Just("\"NaN\"".to_owned()),
        Just("null".to_owned()),
        Just("1e400".to_owned()),
        Just("1794996000000".to_owned()),
        Just("1794996000".to_owned()),
        Just("\"2026-11-18T10:00:00Z\"".to_owned()),
        (-200.0f64..200.0).prop_map(|v| v.to_string()),
        "[a-zA-Z0-9_\" .%/-]{0,6}",
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        // Failing cases are saved beside this file, in decoders_properties.proptest-regressions
        // (the default looks for a lib.rs, which tests/ does not have).
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions"
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz_bodies::native(&data);
        fuzz_bodies::senml(&data);
        fuzz_bodies::owntracks(&data);
        fuzz_bodies::topic(&data);
    }

    #[test]
    fn jsonish_text_never_panics(text in jsonish()) {
        fuzz_bodies::native(text.as_bytes());
        fuzz_bodies::senml(text.as_bytes());
        fuzz_bodies::owntracks(text.as_bytes());
        fuzz_bodies::topic(format!("landport/a/b/telemetry\n{text}").as_bytes());
    }

    #[test]
    fn every_record_of_a_batch_is_a_reading_or_a_rejection(
        records in prop::collection::vec(
            prop_oneof![
                valid_reading().prop_map(|r| encode_native(&r)),
                json_value().prop_map(|v| v.to_string()),
                // No f64 holds it: the batch takes the split-into-records path.
                Just(r#"{"ts": 1794996000000, "temp_c": 1e400}"#.to_owned()),
            ],
            1..20,
        )
    ) {
        let payload = format!("[{}]", records.join(","));
        let out = decode_native(payload.as_bytes(), &Limits::default(), NOW_MS).unwrap();
        prop_assert_eq!(out.readings.len() + out.rejections.len(), records.len());
    }

    #[test]
    fn valid_readings_round_trip_through_native_json(readings in prop::collection::vec(valid_reading(), 1..50)) {
        let out = decode_native(encode_native_batch(&readings).as_bytes(), &Limits::default(), NOW_MS).unwrap();
        prop_assert!(out.rejections.is_empty(), "{:?}", out.rejections);
        prop_assert_eq!(out.readings, readings);
    }

    #[test]
    fn rfc3339_with_any_offset_gives_the_same_instant(
        reading in valid_reading(),
        offset_minutes in -(14 * 60)..=(14 * 60),
    ) {
        let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
        let ts = DateTime::from_timestamp_millis(reading.ts_ms)
            .unwrap()
            .with_timezone(&offset)
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let json = encode_native(&reading).replacen(&reading.ts_ms.to_string(), &format!("\"{ts}\""), 1);
        let out = decode_native(json.as_bytes(), &Limits::default(), NOW_MS).unwrap();
        prop_assert_eq!(out.readings, vec![reading]);
    }

    #[test]
    fn senml_temperatures_round_trip(temps in prop::collection::vec((0i64..86_400, -60.0f64..60.0), 1..30)) {
        let base_s = (NOW_MS - 86_400_000) / 1000;
        let records: Vec<String> = temps
            .iter()
            .enumerate()
            .map(|(i, (dt, t))| format!(r#"{{"n":"cargo{i}:temp","u":"Cel","bt":{base_s},"t":{dt},"v":{t}}}"#))
            .collect();
        let out = decode_senml(format!("[{}]", records.join(",")).as_bytes(), &Limits::default(), NOW_MS).unwrap();
        // One reading per distinct time; a second temperature at a time already taken is refused.
        let mut seen = std::collections::HashSet::new();
        let distinct = temps.iter().filter(|(dt, _)| seen.insert(*dt)).count();
        prop_assert_eq!(out.readings.len(), distinct);
        prop_assert_eq!(out.rejections.len(), temps.len() - distinct);
        for r in &out.readings {
            let dt = (r.ts_ms / 1000) - base_s;
            let first = temps.iter().find(|(t, _)| *t == dt).map(|(_, v)| *v);
            prop_assert_eq!(r.temp_c, first);
        }
    }
}

/// Any JSON value, with objects keyed mostly by the names the decoders read.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        (MIN_TS_MS - 1000..NOW_MS + 100_000_000).prop_map(Value::from),
        "[a-zA-Z0-9:. +-]{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let key = prop_oneof![
            Just("ts".to_owned()),
            Just("seq".to_owned()),
            Just("lat".to_owned()),
            Just("lon".to_owned()),
            Just("speed_kmh".to_owned()),
            Just("heading_deg".to_owned()),
            Just("temp_c".to_owned()),
            Just("battery_pct".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Readings the decoders must accept: ms times from 2000 to now + 24 h, values in range,
/// headings below 360 (360 is stored as 0), never (0, 0).
fn valid_reading() -> impl Strategy<Value = Reading> {
    let fix = (
        -90.0f64..=90.0,
        -180.0f64..=180.0,
        prop::option::of(0.0f64..300.0),
        prop::option::of(0.0f64..360.0),
        prop::option::of(0.0f64..5_000.0),
    )
        .prop_filter("not null island", |(lat, lon, ..)| {
            !(*lat == 0.0 && *lon == 0.0)
        })
        .prop_map(|(lat, lon, speed_kmh, heading_deg, accuracy_m)| Fix {
            lat,
            lon,
            speed_kmh,
            heading_deg,
            accuracy_m,
        });
    (
        MIN_TS_MS..=NOW_MS + Limits::default().max_future_ms,
        prop::option::of(any::<u64>()),
        prop::option::of(fix),
        prop::option::of(-273.15f64..1e4),
        prop::option::of(-1e3f64..1e6),
        prop::option::of(0.0f64..=100.0),
    )
        .prop_map(
            |(ts_ms, seq, fix, temp_c, weight_kg, battery_pct)| Reading {
                ts_ms,
                seq,
                fix,
                temp_c,
                weight_kg,
                battery_pct,
            },
        )
}
