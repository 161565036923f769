//! Malformed input of every kind (SPEC section 10), each case asserting the rejection code it
//! must get; then the happy paths of each format and RFC 8428's own examples.

use landport_ingest::decode::{
    DecodeOutcome, Limits, Rejection, decode, decode_native, decode_owntracks, decode_senml,
};
use landport_ingest::topic::{DeviceRef, OwnTracksTenants, TopicKind};
use landport_tracker::{Fix, Reading};

/// The server clock: 2026-11-18T11:06:40Z.
const NOW: i64 = 1_795_000_000_000;
/// 2026-11-18T10:00:00Z, a device time an hour before `NOW`.
const T: i64 = 1_794_996_000_000;

#[derive(Clone, Copy, Debug)]
enum Format {
    Native,
    Senml,
    OwnTracks,
}

use Format::*;

/// What a payload must give.
#[derive(Debug)]
enum Want {
    /// The whole payload refused with this code.
    Whole(&'static str),
    /// Read, with these per-record rejection codes (and possibly readings).
    Records(&'static [&'static str]),
}

use Want::*;

fn run(format: Format, payload: &[u8], limits: &Limits) -> Result<DecodeOutcome, Rejection> {
    match format {
        Native => decode_native(payload, limits, NOW),
        Senml => decode_senml(payload, limits, NOW),
        OwnTracks => decode_owntracks(payload, limits, NOW),
    }
}

fn check(name: &str, format: Format, payload: &[u8], want: Want, limits: &Limits) {
    let got = run(format, payload, limits);
    match (&want, &got) {
        (Whole(code), Err(r)) if r.code() == *code => {}
        (Records(codes), Ok(out))
            if out
                .rejections
                .iter()
                .map(Rejection::code)
                .eq(codes.iter().copied()) => {}
        _ => panic!("{name} ({format:?}): want {want:?}, got {got:#?}"),
    }
    // Messages name where the problem is; none is empty.
    if let Err(r) = &got {
        assert!(!r.to_string().is_empty());
    }
}

fn corpus() -> Vec<(&'static str, Format, Vec<u8>, Want)> {
    let b = |s: &str| s.as_bytes().to_vec();
    let mib = {
        let mut v = b"[".to_vec();
        while v.len() < 1 << 20 {
            v.extend_from_slice(br#"{"ts":1794996000000,"temp_c":1},"#);
        }
        v.extend_from_slice(br#"{"ts":1794996000000}]"#);
        v
    };
    vec![
        // Size, encoding, emptiness.
        (
            "1 MiB batch",
            Native,
            mib.clone(),
            Whole("payload_too_large"),
        ),
        (
            "1 MiB SenML",
            Senml,
            mib.clone(),
            Whole("payload_too_large"),
        ),
        (
            "1 MiB OwnTracks",
            OwnTracks,
            mib,
            Whole("payload_too_large"),
        ),
        ("empty", Native, b(""), Whole("empty_payload")),
        ("empty", Senml, b(""), Whole("empty_payload")),
        ("empty", OwnTracks, b(""), Whole("empty_payload")),
        ("whitespace", Native, b(" \r\n\t"), Whole("empty_payload")),
        (
            "invalid UTF-8",
            Native,
            b"\xff\xfe{}".to_vec(),
            Whole("invalid_utf8"),
        ),
        (
            "invalid UTF-8 in a string",
            Native,
            b"{\"ts\": \"\xc3\x28\"}".to_vec(),
            Whole("invalid_utf8"),
        ),
        (
            "invalid UTF-8",
            Senml,
            b"[{\"n\":\"\xed\xa0\x80\"}]".to_vec(),
            Whole("invalid_utf8"),
        ),
        (
            "invalid UTF-8",
            OwnTracks,
            b"\xc0\xaf".to_vec(),
            Whole("invalid_utf8"),
        ),
        ("NUL bytes", Native, vec![0; 16], Whole("invalid_json")),
        // Not JSON.
        (
            "truncated object",
            Native,
            b(r#"{"ts": "2026-11-18T10:00:00Z", "lat": 41.1"#),
            Whole("invalid_json"),
        ),
        (
            "truncated batch",
            Native,
            b(r#"[{"ts": 1794996000000}, {"ts": 17949"#),
            Whole("invalid_json"),
        ),
        (
            "truncated string",
            Native,
            b(r#"{"ts": "2026-11-"#),
            Whole("invalid_json"),
        ),
        (
            "truncated pack",
            Senml,
            b(r#"[{"n":"temp_c","v":1},{"n":"#),
            Whole("invalid_json"),
        ),
        (
            "truncated",
            OwnTracks,
            b(r#"{"_type":"location","lat":41"#),
            Whole("invalid_json"),
        ),
        (
            "NaN literal",
            Native,
            b(r#"{"ts": 1794996000000, "temp_c": NaN}"#),
            Whole("invalid_json"),
        ),
        (
            "Infinity literal",
            Native,
            b(r#"{"ts": 1794996000000, "temp_c": Infinity}"#),
            Whole("invalid_json"),
        ),
        (
            "trailing comma",
            Native,
            b(r#"{"ts": 1794996000000,}"#),
            Whole("invalid_json"),
        ),
        (
            "single quotes",
            Native,
            b(r#"{'ts': 1794996000000}"#),
            Whole("invalid_json"),
        ),
        (
            "two objects",
            Native,
            b(r#"{"ts": 1794996000000} {"ts": 1794996000000}"#),
            Whole("invalid_json"),
        ),
        (
            "nested garbage",
            Native,
            b(r#"{{"ts"}: [}]"#),
            Whole("invalid_json"),
        ),
        ("unbalanced", Senml, b("[[[{]]]"), Whole("invalid_json")),
        ("plain text", OwnTracks, b("hello"), Whole("invalid_json")),
        // Numbers no f64 holds.
        (
            "1e400",
            Native,
            b(r#"{"ts": 1794996000000, "temp_c": 1e400}"#),
            Whole("non_finite"),
        ),
        (
            "-1e400 lat",
            Native,
            b(r#"{"ts": 1794996000000, "lat": -1e400, "lon": 1}"#),
            Whole("non_finite"),
        ),
        (
            "1e400 in a batch",
            Native,
            b(r#"[{"ts": 1794996000000, "temp_c": 1e400}, {"ts": 1794996000000}]"#),
            Records(&["non_finite"]),
        ),
        (
            "1e400",
            Senml,
            b(r#"[{"n":"temp_c","v":1e400}]"#),
            Whole("non_finite"),
        ),
        (
            "1e400 tst",
            OwnTracks,
            b(r#"{"_type":"location","lat":1,"lon":1,"tst":1e400}"#),
            Whole("non_finite"),
        ),
        // Wrong shapes and types.
        ("top-level number", Native, b("42"), Whole("wrong_type")),
        (
            "top-level string",
            Native,
            b(r#""reading""#),
            Whole("wrong_type"),
        ),
        ("top-level null", OwnTracks, b("null"), Whole("wrong_type")),
        (
            "object, not a pack",
            Senml,
            b(r#"{"n":"temp_c","v":1}"#),
            Whole("wrong_type"),
        ),
        (
            "array, not a message",
            OwnTracks,
            b(r#"[{"_type":"location"}]"#),
            Whole("wrong_type"),
        ),
        ("empty array", Native, b("[]"), Whole("empty_batch")),
        ("empty array", Senml, b(" [ ] "), Whole("empty_batch")),
        (
            "records that are not objects",
            Native,
            b(r#"[1, "x", null, true, [{}]]"#),
            Records(&["wrong_type"; 5]),
        ),
        (
            "records that are not objects",
            Senml,
            b(r#"[1, [], "x"]"#),
            Records(&["wrong_type"; 3]),
        ),
        (
            "string lat",
            Native,
            b(r#"{"ts": 1794996000000, "lat": "41.1", "lon": 122.9}"#),
            Records(&["wrong_type"]),
        ),
        (
            "\"NaN\"",
            Native,
            b(r#"{"ts": 1794996000000, "temp_c": "NaN"}"#),
            Records(&["wrong_type"]),
        ),
        (
            "\"Infinity\"",
            Native,
            b(r#"{"ts": 1794996000000, "weight_kg": "Infinity"}"#),
            Records(&["wrong_type"]),
        ),
        (
            "\"-Infinity\"",
            Native,
            b(r#"{"ts": 1794996000000, "speed_kmh": "-Infinity"}"#),
            Records(&["wrong_type"]),
        ),
        (
            "\"NaN\"",
            Senml,
            b(r#"[{"n":"temp_c","v":"NaN"}]"#),
            Records(&["wrong_type"]),
        ),
        (
            "\"NaN\"",
            OwnTracks,
            b(r#"{"_type":"location","lat":"NaN","lon":1,"tst":1794996000}"#),
            Records(&["wrong_type"]),
        ),
        (
            "boolean temp",
            Native,
            b(r#"{"ts": 1794996000000, "temp_c": true}"#),
            Records(&["wrong_type"]),
        ),
        (
            "object lat",
            Native,
            b(r#"{"ts": 1794996000000, "lat": {"deg": 41}, "lon": 1}"#),
            Records(&["wrong_type"]),
        ),
        (
            "array battery",
            Native,
            b(r#"{"ts": 1794996000000, "battery_pct": [87]}"#),
            Records(&["wrong_type"]),
        ),
        (
            "float ts",
            Native,
            b(r#"{"ts": 1794996000000.5}"#),
            Records(&["wrong_type"]),
        ),
        (
            "object ts",
            Native,
            b(r#"{"ts": {"s": 1794996000}}"#),
            Records(&["wrong_type"]),
        ),
        (
            "negative seq",
            Native,
            b(r#"{"ts": 1794996000000, "seq": -1}"#),
            Records(&["wrong_type"]),
        ),
        (
            "string unit",
            Senml,
            b(r#"[{"n":"x","u":5,"v":1}]"#),
            Records(&["wrong_type"]),
        ),
        (
            "string base time",
            Senml,
            b(r#"[{"bt":"1794996000","n":"temp_c","v":1}]"#),
            Whole("wrong_type"),
        ),
        (
            "duplicate field",
            Native,
            b(r#"{"ts": 1794996000000, "ts": 1794996000001}"#),
            Records(&["duplicate_field"]),
        ),
        (
            "duplicate label",
            Senml,
            b(r#"[{"n":"temp_c","v":1,"v":2}]"#),
            Whole("duplicate_field"),
        ),
        // Missing fields.
        (
            "no ts",
            Native,
            b(r#"{"lat": 41.1, "lon": 122.9}"#),
            Records(&["missing_field"]),
        ),
        (
            "lat without lon",
            Native,
            b(r#"{"ts": 1794996000000, "lat": 41.1}"#),
            Records(&["missing_field"]),
        ),
        (
            "lon without lat",
            Native,
            b(r#"{"ts": 1794996000000, "lon": 122.9}"#),
            Records(&["missing_field"]),
        ),
        (
            "speed without position",
            Native,
            b(r#"{"ts": 1794996000000, "speed_kmh": 50}"#),
            Records(&["missing_field"]),
        ),
        (
            "no _type",
            OwnTracks,
            b(r#"{"lat":41.1,"lon":122.9,"tst":1794996000}"#),
            Records(&["missing_field"]),
        ),
        (
            "no tst",
            OwnTracks,
            b(r#"{"_type":"location","lat":41.1,"lon":122.9}"#),
            Records(&["missing_field"]),
        ),
        (
            "lat without lon",
            Senml,
            b(r#"[{"n":"p","u":"lat","v":41}]"#),
            Records(&["missing_field"]),
        ),
        // Ranges.
        (
            "lat 91.2",
            Native,
            b(r#"{"ts": 1794996000000, "lat": 91.2, "lon": 122.9}"#),
            Records(&["lat_out_of_range"]),
        ),
        (
            "lat -90.01",
            Native,
            b(r#"{"ts": 1794996000000, "lat": -90.01, "lon": 122.9}"#),
            Records(&["lat_out_of_range"]),
        ),
        (
            "lon 180.5",
            Native,
            b(r#"{"ts": 1794996000000, "lat": 41.1, "lon": 180.5}"#),
            Records(&["lon_out_of_range"]),
        ),
        (
            "lon -1000",
            OwnTracks,
            b(r#"{"_type":"location","lat":41.1,"lon":-1000,"tst":1794996000}"#),
            Records(&["lon_out_of_range"]),
        ),
        (
            "lat 1e300",
            Senml,
            b(r#"[{"n":"p","u":"lat","v":1e300},{"n":"p","u":"lon","v":1}]"#),
            Records(&["lat_out_of_range"]),
        ),
        (
            "(0, 0)",
            Native,
            b(r#"{"ts": 1794996000000, "lat": 0, "lon": 0}"#),
            Records(&["null_island"]),
        ),
        (
            "(0.0, -0.0)",
            Native,
            b(r#"{"ts": 1794996000000, "lat": 0.0, "lon": -0.0}"#),
            Records(&["null_island"]),
        ),
        (
            "(0, 0)",
            OwnTracks,
            b(r#"{"_type":"location","lat":0,"lon":0,"tst":1794996000}"#),
            Records(&["null_island"]),
        ),
        (
            "(0, 0)",
            Senml,
            b(r#"[{"n":"p","u":"lat","v":0},{"n":"p","u":"lon","v":0}]"#),
            Records(&["null_island"]),
        ),
        (
            "negative speed",
            Native,
            b(r#"{"ts": 1794996000000, "lat": 1, "lon": 1, "speed_kmh": -3}"#),
            Records(&["speed_out_of_range"]),
        ),
        (
            "heading 361",
            Native,
            b(r#"{"ts": 1794996000000, "lat": 1, "lon": 1, "heading_deg": 361}"#),
            Records(&["heading_out_of_range"]),
        ),
        (
            "negative accuracy",
            Native,
            b(r#"{"ts": 1794996000000, "lat": 1, "lon": 1, "accuracy_m": -1}"#),
            Records(&["accuracy_out_of_range"]),
        ),
        (
            "battery 101",
            Native,
            b(r#"{"ts": 1794996000000, "battery_pct": 101}"#),
            Records(&["battery_out_of_range"]),
        ),
        (
            "battery -1",
            OwnTracks,
            b(r#"{"_type":"location","lat":1,"lon":1,"tst":1794996000,"batt":-1}"#),
            Records(&["battery_out_of_range"]),
        ),
        (
            "below absolute zero",
            Native,
            b(r#"{"ts": 1794996000000, "temp_c": -300}"#),
            Records(&["temp_out_of_range"]),
        ),
        // Times.
        (
            "far-future RFC 3339",
            Native,
            b(r#"{"ts": "2099-01-01T00:00:00Z", "temp_c": 1}"#),
            Records(&["ts_too_far_ahead"]),
        ),
        (
            "25 h ahead",
            Native,
            format!(r#"{{"ts": {}}}"#, NOW + 25 * 3_600_000).into_bytes(),
            Records(&["ts_too_far_ahead"]),
        ),
        (
            "far-future tst",
            OwnTracks,
            b(r#"{"_type":"location","lat":1,"lon":1,"tst":4102444800}"#),
            Records(&["ts_too_far_ahead"]),
        ),
        (
            "far-future bt",
            Senml,
            b(r#"[{"bt":4102444800,"n":"temp_c","v":1}]"#),
            Records(&["ts_too_far_ahead"]),
        ),
        (
            "1999",
            Native,
            b(r#"{"ts": "1999-12-31T23:59:59Z"}"#),
            Records(&["ts_too_old"]),
        ),
        (
            "epoch 0",
            Native,
            b(r#"{"ts": 0}"#),
            Records(&["ts_too_old"]),
        ),
        (
            "seconds as ms",
            Native,
            b(r#"{"ts": 1794996000}"#),
            Records(&["ts_too_old"]),
        ),
        (
            "tst in ms",
            OwnTracks,
            b(r#"{"_type":"location","lat":1,"lon":1,"tst":1794996000000}"#),
            Records(&["ts_too_far_ahead"]),
        ),
        (
            "30 February",
            Native,
            b(r#"{"ts": "2026-02-30T00:00:00Z"}"#),
            Records(&["ts_invalid"]),
        ),
        (
            "no offset",
            Native,
            b(r#"{"ts": "2026-11-18T10:00:00"}"#),
            Records(&["ts_invalid"]),
        ),
        (
            "prose time",
            Native,
            b(r#"{"ts": "yesterday at noon"}"#),
            Records(&["ts_invalid"]),
        ),
        (
            "u64::MAX ms",
            Native,
            b(r#"{"ts": 18446744073709551615}"#),
            Records(&["ts_invalid"]),
        ),
        (
            "t of 1e300",
            Senml,
            b(r#"[{"n":"temp_c","t":1e300,"v":1}]"#),
            Records(&["ts_invalid"]),
        ),
        // SenML specifics.
        (
            "unknown unit",
            Senml,
            b(r#"[{"n":"h","u":"%RH","v":40}]"#),
            Records(&["senml_unsupported"]),
        ),
        (
            "must-understand label",
            Senml,
            b(r#"[{"n":"temp_c","v":1,"unit_":"x"}]"#),
            Whole("senml_unsupported"),
        ),
        (
            "version 11",
            Senml,
            b(r#"[{"bver":11,"n":"temp_c","v":1}]"#),
            Whole("senml_unsupported"),
        ),
        (
            "empty name",
            Senml,
            b(r#"[{"u":"Cel","v":1}]"#),
            Records(&["senml_invalid"]),
        ),
        (
            "name with a space",
            Senml,
            b(r#"[{"n":"cargo temp","u":"Cel","v":1}]"#),
            Records(&["senml_invalid"]),
        ),
        (
            "no value",
            Senml,
            b(r#"[{"n":"temp_c"}]"#),
            Records(&["senml_invalid"]),
        ),
        // OwnTracks specifics.
        (
            "encrypted",
            OwnTracks,
            b(r#"{"_type":"encrypted","data":"abc"}"#),
            Records(&["owntracks_encrypted"]),
        ),
        (
            "numeric _type",
            OwnTracks,
            b(r#"{"_type":1}"#),
            Records(&["wrong_type"]),
        ),
    ]
}

#[test]
fn every_malformed_payload_gets_its_code() {
    let limits = Limits::default();
    let corpus = corpus();
    for (name, format, payload, want) in corpus {
        check(name, format, &payload, want, &limits);
    }
}

#[test]
fn the_corpus_covers_every_code_that_payloads_can_earn() {
    let mut seen: Vec<&str> = corpus()
        .iter()
        .flat_map(|(_, _, _, want)| match want {
            Whole(code) => vec![*code],
            Records(codes) => codes.to_vec(),
        })
        .collect();
    seen.extend(["unknown_topic", "bad_id"]); // covered by the topic test below
    for code in Rejection::CODES {
        // No weight range to break: a load cell drifts below zero when empty.
        if *code == "weight_out_of_range" {
            continue;
        }
        assert!(seen.contains(code), "no malformed case for {code}");
    }
}

#[test]
fn deep_nesting_is_refused_or_skipped_without_overflowing_the_stack() {
    let depth = 1_000_000;
    let limits = Limits {
        max_payload_bytes: 4 * depth + 64,
        ..Limits::default()
    };
    let balanced = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let unclosed = "[".repeat(depth);
    let objects = format!(
        r#"{{"ts": 1794996000000, "x": {}1{}}}"#,
        r#"{"a":"#.repeat(depth / 8),
        "}".repeat(depth / 8)
    );
    let in_a_field = format!(
        r#"{{"ts": 1794996000000, "lat": {}{}, "lon": 1}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    for format in [Native, Senml, OwnTracks] {
        check(
            "unclosed",
            format,
            unclosed.as_bytes(),
            Whole("invalid_json"),
            &limits,
        );
    }
    check(
        "balanced arrays",
        Native,
        balanced.as_bytes(),
        Records(&["wrong_type"]),
        &limits,
    );
    check(
        "balanced arrays",
        Senml,
        balanced.as_bytes(),
        Records(&["wrong_type"]),
        &limits,
    );
    check(
        "balanced arrays",
        OwnTracks,
        balanced.as_bytes(),
        Whole("wrong_type"),
        &limits,
    );
    check(
        "deep unknown field",
        Native,
        objects.as_bytes(),
        Records(&[]),
        &limits,
    );
    check(
        "deep value",
        Native,
        in_a_field.as_bytes(),
        Records(&["wrong_type"]),
        &limits,
    );
    // The same at the default 64 KiB limit.
    let nested = format!("{}{}", "[".repeat(32_000), "]".repeat(32_000));
    check(
        "64 KiB of nesting",
        Native,
        nested.as_bytes(),
        Records(&["wrong_type"]),
        &Limits::default(),
    );
}

#[test]
fn unknown_topic_shapes_are_refused_and_our_own_ignored() {
    let tenants = OwnTracksTenants::default();
    let unknown = [
        "",
        "landport",
        "landport/acme/truck-17",
        "landport/acme/truck-17/telemetry/extra",
        "landport/acme/truck-17/gps",
        "owntracks/ja",
        "devices/truck-17/telemetry",
        "$SYS/broker/load",
    ];
    for topic in unknown {
        let err = TopicKind::parse(topic, &tenants).unwrap_err();
        assert_eq!(err.code(), "unknown_topic", "{topic:?}");
    }
    for topic in [
        "landport/acme/+/telemetry",
        "landport/#/truck/senml",
        "landport//truck/telemetry",
        "landport/acme/трак/telemetry",
        "owntracks/ja/my phone",
    ] {
        let err = TopicKind::parse(topic, &tenants).unwrap_err();
        assert_eq!(err.code(), "bad_id", "{topic:?}");
    }
    for topic in [
        "landport/acme/truck-17/events",
        "landport/acme/truck-17/rejected",
        "owntracks/ja/phone/info",
    ] {
        let kind = TopicKind::parse(topic, &tenants).unwrap();
        assert_eq!(kind, TopicKind::Ignored, "{topic}");
        let out = decode(&kind, b"whatever", &Limits::default(), NOW).unwrap();
        assert!(out.ignored);
    }
}

// --- Happy paths ---

#[test]
fn native_single_and_batch() {
    let dev = DeviceRef::new("acme", "truck-17");
    let kind = TopicKind::Native(dev);
    let single = br#"{"ts": "2026-11-18T18:00:00.250+08:00", "seq": 7, "lat": 41.1087, "lon": 122.9946, "heading_deg": 360}"#;
    let out = decode(&kind, single, &Limits::default(), NOW).unwrap();
    let mut want = Reading::at(T + 250)
        .with_position(122.9946, 41.1087)
        .with_seq(7);
    want.fix.as_mut().unwrap().heading_deg = Some(0.0);
    assert_eq!(out.readings, [want]);

    let batch: Vec<String> = (0..500)
        .map(|i| {
            format!(
                r#"{{"ts": {}, "seq": {i}, "lat": 41.1, "lon": 122.9, "temp_c": -18.5}}"#,
                T + i * 1000
            )
        })
        .collect();
    let out = decode(
        &kind,
        format!("[{}]", batch.join(",")).as_bytes(),
        &Limits::default(),
        NOW,
    )
    .unwrap();
    assert_eq!(out.readings.len(), 500);
    assert!(out.rejections.is_empty());
    assert_eq!(out.readings[499].seq, Some(499));
}

#[test]
fn one_bad_record_in_a_500_reading_batch_loses_only_itself() {
    let batch: Vec<String> = (0..500)
        .map(|i| {
            let lat = if i == 321 { 91.2 } else { 41.1 };
            format!(r#"{{"ts": {}, "lat": {lat}, "lon": 122.9}}"#, T + i * 1000)
        })
        .collect();
    let out = decode_native(
        format!("[{}]", batch.join(",")).as_bytes(),
        &Limits::default(),
        NOW,
    )
    .unwrap();
    assert_eq!(out.readings.len(), 499);
    assert_eq!(out.rejections.len(), 1);
    assert_eq!(
        out.rejections[0].to_string(),
        "readings[321].lat: 91.2 is outside [-90, 90]"
    );
}

#[test]
fn owntracks_location() {
    let tenants = OwnTracksTenants::default();
    let kind = TopicKind::parse("owntracks/ja/phone", &tenants).unwrap();
    let payload = br#"{"_type":"location","tid":"ja","acc":12,"batt":87,"lat":41.1087,"lon":122.9946,"tst":1794996000,"vel":63,"cog":181}"#;
    let out = decode(&kind, payload, &Limits::default(), NOW).unwrap();
    assert_eq!(
        out.readings,
        [Reading {
            ts_ms: T,
            seq: None,
            fix: Some(Fix {
                lat: 41.1087,
                lon: 122.9946,
                speed_kmh: Some(63.0),
                heading_deg: Some(181.0),
                accuracy_m: Some(12.0),
            }),
            temp_c: None,
            weight_kg: None,
            battery_pct: Some(87.0),
        }]
    );
    let out = decode(
        &kind,
        br#"{"_type":"transition","event":"leave","tst":1794996000}"#,
        &Limits::default(),
        NOW,
    )
    .unwrap();
    assert_eq!(out, DecodeOutcome::ignored());
}

// --- RFC 8428 section 5.1 examples ---

fn senml(json: &str) -> DecodeOutcome {
    decode_senml(json.as_bytes(), &Limits::default(), NOW).unwrap()
}

fn codes(out: &DecodeOutcome) -> Vec<&'static str> {
    out.rejections.iter().map(Rejection::code).collect()
}

#[test]
fn rfc8428_5_1_1_single_data_point() {
    let out = senml(r#"[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]"#);
    assert_eq!(
        out.readings,
        [Reading::at(NOW).with_temp(23.1)],
        "no time: now"
    );
}

#[test]
fn rfc8428_5_1_2_multiple_data_points() {
    // Volts and amperes: valid SenML with no Landport field, every record skipped by itself.
    let out = senml(
        r#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
            {"n":"current","u":"A","v":1.2}]"#,
    );
    assert!(out.readings.is_empty());
    assert_eq!(codes(&out), ["senml_unsupported"; 2]);
    assert!(
        out.rejections[1]
            .to_string()
            .contains(r#""urn:dev:ow:10e2073a01080063:current""#)
    );

    let rfc = r#"[
     {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
      "bu":"A","bver":5,
      "n":"voltage","u":"V","v":120.1},
     {"n":"current","t":-5,"v":1.2},
     {"n":"current","t":-4,"v":1.3},
     {"n":"current","t":-3,"v":1.4},
     {"n":"current","t":-2,"v":1.5},
     {"n":"current","t":-1,"v":1.6},
     {"n":"current","v":1.7}
   ]"#;
    let out = senml(rfc);
    assert!(out.readings.is_empty());
    assert_eq!(
        codes(&out),
        ["senml_unsupported"; 7],
        "bu \"A\" applies to the later records"
    );

    // The same pack in units Landport reads: bt, bu and relative t resolve as the RFC says.
    let out = senml(
        &rfc.replace(r#""bu":"A""#, r#""bu":"Cel""#)
            .replace(r#""u":"V""#, r#""u":"kg""#),
    );
    assert!(out.rejections.is_empty(), "{:?}", out.rejections);
    let bt = 1_276_020_076_001;
    let temps = [1.2, 1.3, 1.4, 1.5, 1.6];
    let mut want: Vec<Reading> = vec![Reading::at(bt).with_weight(120.1).with_temp(1.7)];
    want.extend(
        temps
            .iter()
            .zip(-5..0)
            .map(|(&t, dt)| Reading::at(bt + dt * 1000).with_temp(t)),
    );
    assert_eq!(out.readings, want);
}

const MULTIPLE_MEASUREMENTS: &str = r#"[
     {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
      "bu":"%RH","v":20},
     {"u":"lon","v":24.30621},
     {"u":"lat","v":60.07965},
     {"t":60,"v":20.3},
     {"u":"lon","t":60,"v":24.30622},
     {"u":"lat","t":60,"v":60.07965},
     {"t":120,"v":20.7},
     {"u":"lon","t":120,"v":24.30623},
     {"u":"lat","t":120,"v":60.07966},
     {"u":"%EL","t":150,"v":98},
     {"t":180,"v":21.2},
     {"u":"lon","t":180,"v":24.30628},
     {"u":"lat","t":180,"v":60.07967}
   ]"#;

#[test]
fn rfc8428_5_1_3_multiple_measurements_group_by_time() {
    let out = senml(MULTIPLE_MEASUREMENTS);
    let bt = 1_320_067_464_000;
    assert_eq!(
        out.readings,
        [
            Reading::at(bt).with_position(24.30621, 60.07965),
            Reading::at(bt + 60_000).with_position(24.30622, 60.07965),
            Reading::at(bt + 120_000).with_position(24.30623, 60.07966),
            Reading {
                battery_pct: Some(98.0),
                ..Reading::at(bt + 150_000)
            },
            Reading::at(bt + 180_000).with_position(24.30628, 60.07967),
        ]
    );
    // The four humidity records: no Landport field.
    assert_eq!(codes(&out), ["senml_unsupported"; 4]);
    let records: Vec<String> = out
        .rejections
        .iter()
        .map(|r| {
            r.to_string()
                .split([':', '.'])
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        records,
        ["records[0]", "records[3]", "records[6]", "records[10]"]
    );
}

#[test]
fn rfc8428_5_1_4_resolved_data_decodes_the_same() {
    let resolved = r#"[
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,"v":20},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,"v":24.30621},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,"v":60.07965},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,"v":20.3},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,"v":24.30622},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,"v":60.07965},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,"v":20.7},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,"v":24.30623},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,"v":60.07966},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,"v":98},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,"v":21.2},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,"v":24.30628},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,"v":60.07967}
   ]"#;
    assert_eq!(
        senml(resolved).readings,
        senml(MULTIPLE_MEASUREMENTS).readings
    );
}

#[test]
fn rfc8428_5_1_5_multiple_data_types() {
    let out = senml(
        r#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
            {"n":"label","vs":"Machine Room"},
            {"n":"open","vb":false},
            {"n":"nfc-reader","vd":"aGkgCg"}]"#,
    );
    assert_eq!(out.readings, [Reading::at(NOW).with_temp(23.1)]);
    assert_eq!(codes(&out), ["senml_unsupported"; 3]);
}
