//! Native JSON (SPEC section 4), from `landport/{tenant}/{device}/telemetry`: one reading, or
//! an array of them (a store-and-forward batch).
//!
//! ```json
//! {"ts": "2026-11-24T08:15:30.250Z", "seq": 1042, "lat": 41.1087, "lon": 122.9946,
//!  "speed_kmh": 63.2, "heading_deg": 181, "accuracy_m": 4.5,
//!  "temp_c": -18.4, "weight_kg": 18250.0, "battery_pct": 87}
//! ```
//!
//! Fields, all optional but `ts`:
//!
//! | field | type | unit, range |
//! | --- | --- | --- |
//! | `ts` | RFC 3339 string (any offset) or integer | ms since the epoch; from 2000-01-01 to now + [`Limits::max_future_ms`] |
//! | `seq` | unsigned integer | device sequence number |
//! | `lat`, `lon` | number | degrees, [-90, 90] and [-180, 180]; both or neither; not both 0 |
//! | `speed_kmh` | number | km/h, >= 0 (needs a position) |
//! | `heading_deg` | number | degrees, [0, 360], 360 stored as 0 (needs a position) |
//! | `accuracy_m` | number | metres, >= 0 (needs a position) |
//! | `temp_c` | number | degrees Celsius, >= -273.15 |
//! | `weight_kg` | number | kg |
//! | `battery_pct` | number | percent, [0, 100] |
//!
//! **Unknown fields are ignored**, not refused: firmware adds fields (altitude, satellites,
//! signal strength) before Landport knows them, and refusing would drop its readings. A `null`
//! counts as an absent field. A field given twice in one object is refused (which one counts
//! would be a guess).
//!
//! Each record of a batch stands alone: one bad record is one [`Rejection`] in
//! [`DecodeOutcome::rejections`] and the others are still decoded. Only what spoils the whole
//! payload (size, UTF-8, JSON syntax, an empty array, a top level that is neither an object nor
//! an array) is the `Err`.
//!
//! Speed: the payload is read in one pass, straight into a borrowed `Wire` per record (no
//! `serde_json::Value`, no string copies), each known field as a `Scalar` so that a wrong type
//! is a fact for validation rather than a serde error that would end the pass. The only thing
//! that fails one record mid-pass is a number no f64 holds (`1e400`); a batch then goes through
//! a slower second pass that splits it into records first, so only that record is refused.

use serde::Serialize;
use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;
use std::fmt;

use landport_tracker::{Reading, TimestampMs};

use super::rejection::{FieldPath, Quantity, Rejection};
use super::scalar::{Scalar, number, read_field};
use super::validate::{Values, build_reading, check_ts, parse_rfc3339_ms};
use super::{DecodeOutcome, Limits, json_error, payload_text};

/// The list name in messages about a record of a batch: `readings[3].lat`.
const LIST: &str = "readings";

/// Decodes a native JSON payload: valid readings and per-record rejections, or the one
/// rejection of a payload that cannot be read at all.
pub fn decode_native(
    payload: &[u8],
    limits: &Limits,
    now_ms: TimestampMs,
) -> Result<DecodeOutcome, Rejection> {
    let text = payload_text(payload, limits)?;
    let mut out = DecodeOutcome::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let top = Top {
        limits,
        now_ms,
        out: &mut out,
    };
    let shape = top
        .deserialize(&mut de)
        .and_then(|shape| de.end().map(|()| shape));
    match shape {
        Ok(Shape::Single | Shape::Batch) => Ok(out),
        Ok(Shape::EmptyBatch) => Err(Rejection::EmptyBatch),
        Ok(Shape::Other(found)) => Err(Rejection::WrongType {
            at: FieldPath::PAYLOAD,
            expected: "a JSON object (one reading) or an array of them",
            found: found.to_owned(),
        }),
        Err(e) if text.trim_start().starts_with('[') => {
            split_batch(text, limits, now_ms).ok_or_else(|| whole(e))
        }
        Err(e) => Err(whole(e)),
    }
}

/// The slow path for a batch the one-pass read could not get through: split it into records
/// (checking only JSON syntax, which no number's size breaks), then read each alone. `None`
/// when the batch does not even split (a syntax error: the whole payload is refused).
fn split_batch(text: &str, limits: &Limits, now_ms: TimestampMs) -> Option<DecodeOutcome> {
    let records: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    let mut out = DecodeOutcome::default();
    for (i, raw) in records.iter().enumerate() {
        match serde_json::from_str::<Wire<'_>>(raw.get()) {
            Ok(wire) => out.push(validate(wire, Some(i), limits, now_ms)),
            Err(e) => out
                .rejections
                .push(json_error(e, FieldPath::item(LIST, i, ""))),
        }
    }
    Some(out)
}

/// A serde_json error as a rejection of the whole payload.
fn whole(e: serde_json::Error) -> Rejection {
    json_error(e, FieldPath::PAYLOAD)
}

/// What the top level of the payload turned out to be.
enum Shape {
    Single,
    Batch,
    EmptyBatch,
    Other(&'static str),
}

/// Reads the top level and validates each record as soon as it is read, straight into `out`.
struct Top<'s> {
    limits: &'s Limits,
    now_ms: TimestampMs,
    out: &'s mut DecodeOutcome,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = Shape;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Shape, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a reading or an array of readings")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Shape, A::Error> {
        let wire = Wire::from_map(map)?;
        self.out
            .push(validate(wire, None, self.limits, self.now_ms));
        Ok(Shape::Single)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        if let Some(n) = seq.size_hint() {
            self.out.readings.reserve(n);
        }
        let mut index = 0;
        while let Some(wire) = seq.next_element::<Wire<'de>>()? {
            self.out
                .push(validate(wire, Some(index), self.limits, self.now_ms));
            index += 1;
        }
        Ok(if index == 0 {
            Shape::EmptyBatch
        } else {
            Shape::Batch
        })
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Other("boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Other("number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Other("number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Other("number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Other("string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
        Ok(Shape::Other("null"))
    }
}

/// Field names of a native record. `Unknown` catches every other name (ignored).
#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Key {
    Ts,
    Seq,
    Lat,
    Lon,
    SpeedKmh,
    HeadingDeg,
    AccuracyM,
    TempC,
    WeightKg,
    BatteryPct,
    #[serde(other)]
    Unknown,
}

/// One native record as read, borrowing from the payload; nothing checked yet.
#[derive(Debug, Default)]
struct Wire<'a> {
    ts: Option<Scalar<'a>>,
    seq: Option<Scalar<'a>>,
    /// Indexed by [`Quantity::index`].
    values: [Option<Scalar<'a>>; 8],
    /// The first field seen twice.
    duplicate: Option<&'static str>,
    /// The JSON type of a record that is not an object.
    not_object: Option<&'static str>,
}

impl<'de> Wire<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut w = Wire::default();
        while let Some(key) = map.next_key::<Key>()? {
            let (slot, name) = match key {
                Key::Ts => (&mut w.ts, "ts"),
                Key::Seq => (&mut w.seq, "seq"),
                Key::Lat => (&mut w.values[Quantity::Lat.index()], "lat"),
                Key::Lon => (&mut w.values[Quantity::Lon.index()], "lon"),
                Key::SpeedKmh => (&mut w.values[Quantity::SpeedKmh.index()], "speed_kmh"),
                Key::HeadingDeg => (&mut w.values[Quantity::HeadingDeg.index()], "heading_deg"),
                Key::AccuracyM => (&mut w.values[Quantity::AccuracyM.index()], "accuracy_m"),
                Key::TempC => (&mut w.values[Quantity::TempC.index()], "temp_c"),
                Key::WeightKg => (&mut w.values[Quantity::WeightKg.index()], "weight_kg"),
                Key::BatteryPct => (&mut w.values[Quantity::BatteryPct.index()], "battery_pct"),
                Key::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            read_field(&mut map, slot, name, &mut w.duplicate)?;
        }
        Ok(w)
    }

    fn not_object(kind: &'static str) -> Self {
        Wire {
            not_object: Some(kind),
            ..Wire::default()
        }
    }
}

impl<'de> Deserialize<'de> for Wire<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WireVisitor)
    }
}

/// Accepts any JSON value: an object is a record, anything else a record that is not an object.
struct WireVisitor;

impl<'de> Visitor<'de> for WireVisitor {
    type Value = Wire<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a reading")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Wire::from_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Wire::not_object("array"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Wire::not_object("boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Wire::not_object("number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Wire::not_object("number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Wire::not_object("number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Wire::not_object("string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Wire::not_object("null"))
    }
}

/// Checks one record. `index` is its place in a batch, `None` for a single object.
fn validate(
    w: Wire<'_>,
    index: Option<usize>,
    limits: &Limits,
    now_ms: TimestampMs,
) -> Result<Reading, Rejection> {
    let path = |field: &'static str| match index {
        Some(i) => FieldPath::item(LIST, i, field),
        None => FieldPath::single(field),
    };
    if let Some(found) = w.not_object {
        return Err(Rejection::WrongType {
            at: path(""),
            expected: "a JSON object (one reading)",
            found: found.to_owned(),
        });
    }
    if let Some(field) = w.duplicate {
        return Err(Rejection::DuplicateField { at: path(field) });
    }
    let Some(ts) = &w.ts else {
        return Err(Rejection::MissingField {
            at: path("ts"),
            required_with: None,
        });
    };
    let ts_ms = match ts {
        Scalar::Str(s) => parse_rfc3339_ms(s, || path("ts"))?,
        Scalar::EscapedStr(s) => parse_rfc3339_ms(s, || path("ts"))?,
        Scalar::I64(ms) => *ms,
        Scalar::U64(ms) => i64::try_from(*ms).map_err(|_| Rejection::TsInvalid {
            at: path("ts"),
            detail: format!("{ms} ms since the epoch is out of range"),
        })?,
        other => {
            return Err(other.wrong_type(
                path("ts"),
                "an RFC 3339 string or integer epoch milliseconds",
            ));
        }
    };
    let ts_ms = check_ts(ts_ms, || path("ts"), limits, now_ms)?;
    let seq = match &w.seq {
        None => None,
        Some(Scalar::U64(seq)) => Some(*seq),
        Some(other) => return Err(other.wrong_type(path("seq"), "an unsigned integer")),
    };
    let mut values = Values::default();
    for q in Quantity::ALL {
        if let Some(v) = &w.values[q.index()] {
            values.set(q, Some(number(v, || path(q.native_name()))?));
        }
    }
    build_reading(ts_ms, seq, values, |q| path(q.native_name()))
}

/// The native JSON for `reading`: the inverse of [`decode_native`] (`ts` as epoch ms), for
/// simulators and tests.
pub fn encode_native(reading: &Reading) -> String {
    // Serialising plain numbers and options into a String cannot fail.
    serde_json::to_string(&WireOut::from(reading)).unwrap_or_default()
}

/// A store-and-forward batch of `readings` in native JSON (an array).
pub fn encode_native_batch(readings: &[Reading]) -> String {
    let wire: Vec<WireOut> = readings.iter().map(WireOut::from).collect();
    serde_json::to_string(&wire).unwrap_or_default()
}

/// The serialising twin of [`Wire`].
#[derive(Serialize)]
struct WireOut {
    ts: TimestampMs,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lon: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speed_kmh: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heading_deg: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accuracy_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temp_c: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight_kg: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    battery_pct: Option<f64>,
}

impl From<&Reading> for WireOut {
    fn from(r: &Reading) -> Self {
        WireOut {
            ts: r.ts_ms,
            seq: r.seq,
            lat: r.fix.map(|f| f.lat),
            lon: r.fix.map(|f| f.lon),
            speed_kmh: r.fix.and_then(|f| f.speed_kmh),
            heading_deg: r.fix.and_then(|f| f.heading_deg),
            accuracy_m: r.fix.and_then(|f| f.accuracy_m),
            temp_c: r.temp_c,
            weight_kg: r.weight_kg,
            battery_pct: r.battery_pct,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use landport_tracker::Fix;

    /// 2026-11-18T11:06:40Z.
    const NOW: TimestampMs = 1_795_000_000_000;
    /// 2026-11-18T10:00:00Z.
    const T: TimestampMs = 1_794_996_000_000;

    fn decode(json: &str) -> Result<DecodeOutcome, Rejection> {
        decode_native(json.as_bytes(), &Limits::default(), NOW)
    }

    fn codes(out: &DecodeOutcome) -> Vec<&'static str> {
        out.rejections.iter().map(Rejection::code).collect()
    }

    #[test]
    fn the_spec_example_decodes_in_full() {
        let json = r#"{"ts": "2026-11-24T08:15:30.250Z", "seq": 1042, "lat": 41.1087, "lon": 122.9946,
            "speed_kmh": 63.2, "heading_deg": 181, "accuracy_m": 4.5,
            "temp_c": -18.4, "weight_kg": 18250.0, "battery_pct": 87}"#;
        let now = 1_795_508_130_250; // the reading's own time
        let out = decode_native(json.as_bytes(), &Limits::default(), now).unwrap();
        assert!(out.rejections.is_empty(), "{:?}", out.rejections);
        assert_eq!(
            out.readings,
            vec![Reading {
                ts_ms: 1_795_508_130_250,
                seq: Some(1042),
                fix: Some(Fix {
                    lat: 41.1087,
                    lon: 122.9946,
                    speed_kmh: Some(63.2),
                    heading_deg: Some(181.0),
                    accuracy_m: Some(4.5),
                }),
                temp_c: Some(-18.4),
                weight_kg: Some(18250.0),
                battery_pct: Some(87.0),
            }]
        );
    }

    #[test]
    fn a_temperature_alone_with_epoch_ms_is_a_reading() {
        let out = decode(&format!(r#"{{"ts": {T}, "temp_c": -18.4}}"#)).unwrap();
        assert_eq!(out.readings, vec![Reading::at(T).with_temp(-18.4)]);
    }

    #[test]
    fn unknown_fields_and_nulls_are_ignored() {
        let json = format!(
            r#"{{"ts": {T}, "alt_m": 12.5, "sats": [1, 2, {{"x": null}}], "fw": "1.2", "temp_c": null, "weight_kg": 10}}"#
        );
        let out = decode(&json).unwrap();
        assert_eq!(out.readings, vec![Reading::at(T).with_weight(10.0)]);
    }

    #[test]
    fn one_bad_record_of_a_batch_costs_only_itself() {
        let json = format!(
            r#"[{{"ts": {T}, "lat": 41.0, "lon": 122.0}},
                {{"ts": {T}, "lat": 91.2, "lon": 122.0}},
                {{"ts": {T}, "lat": "NaN", "lon": 122.0}},
                [1, 2],
                {{"ts": {T}, "lat": 40.0, "lon": 121.0}}]"#
        );
        let out = decode(&json).unwrap();
        assert_eq!(out.readings.len(), 2);
        assert_eq!(
            codes(&out),
            ["lat_out_of_range", "wrong_type", "wrong_type"]
        );
        assert_eq!(
            out.rejections[0].to_string(),
            "readings[1].lat: 91.2 is outside [-90, 90]"
        );
        assert_eq!(
            out.rejections[2].to_string(),
            "readings[3]: expected a JSON object (one reading), found array"
        );
    }

    #[test]
    fn a_huge_number_in_a_batch_refuses_only_its_record() {
        let json = format!(
            r#"[{{"ts": {T}, "temp_c": 1}}, {{"ts": {T}, "temp_c": 1e400}}, {{"ts": {T}}}]"#
        );
        let out = decode(&json).unwrap();
        assert_eq!(out.readings.len(), 2);
        assert_eq!(codes(&out), ["non_finite"]);
        assert!(
            out.rejections[0].to_string().starts_with("readings[1]: "),
            "{}",
            out.rejections[0]
        );
    }

    #[test]
    fn a_huge_number_in_a_single_reading_refuses_the_payload() {
        let err = decode(&format!(r#"{{"ts": {T}, "lat": -1e400}}"#)).unwrap_err();
        assert_eq!(err.code(), "non_finite");
    }

    #[test]
    fn a_duplicate_field_refuses_its_record() {
        let out = decode(&format!(r#"{{"ts": {T}, "lat": 1, "lon": 2, "lat": 3}}"#)).unwrap();
        assert_eq!(codes(&out), ["duplicate_field"]);
        assert_eq!(
            out.rejections[0].to_string(),
            "lat: appears twice in the same object"
        );
    }

    #[test]
    fn ts_forms_and_types() {
        let cases = [
            (r#"{"temp_c": 1}"#, "missing_field"),
            (r#"{"ts": 1794996000000.0}"#, "wrong_type"),
            (r#"{"ts": "1794996000000"}"#, "ts_invalid"),
            (r#"{"ts": 1794996000}"#, "ts_too_old"),
            (r#"{"ts": -5}"#, "ts_too_old"),
            (r#"{"ts": 18446744073709551615}"#, "ts_invalid"),
            (r#"{"ts": "2099-01-01T00:00:00Z"}"#, "ts_too_far_ahead"),
            (r#"{"ts": true}"#, "wrong_type"),
            (r#"{"ts": 1794996000000, "seq": -1}"#, "wrong_type"),
            (r#"{"ts": 1794996000000, "seq": 1.5}"#, "wrong_type"),
        ];
        for (json, want) in cases {
            let out = decode(json).unwrap();
            assert_eq!(codes(&out), [want], "{json}");
        }
    }

    #[test]
    fn whole_payload_problems_are_the_err() {
        let cases = [
            ("", "empty_payload"),
            ("  \n", "empty_payload"),
            ("[]", "empty_batch"),
            ("42", "wrong_type"),
            ("null", "wrong_type"),
            (r#"{"ts": 1"#, "invalid_json"),
            (r#"{"ts": NaN}"#, "invalid_json"),
            (r#"{"ts": 1} x"#, "invalid_json"),
            (r#"[{"ts": 1},"#, "invalid_json"),
        ];
        for (json, want) in cases {
            assert_eq!(decode(json).unwrap_err().code(), want, "{json:?}");
        }
    }

    #[test]
    fn escaped_strings_are_read_too() {
        let out = decode(r#"{"t\u0073": "2026-11-18T10:00:00\u005a", "temp_c": 2}"#).unwrap();
        assert_eq!(out.readings, vec![Reading::at(T).with_temp(2.0)]);
    }

    #[test]
    fn encode_then_decode_gives_the_same_readings() {
        let readings = [
            Reading::at(T)
                .with_position(122.9946, 41.1087)
                .with_speed(63.2)
                .with_accuracy(4.5)
                .with_seq(3),
            Reading::at(T + 1).with_temp(-18.4).with_weight(0.1),
        ];
        let out = decode(&encode_native_batch(&readings)).unwrap();
        assert_eq!(out.readings, readings);
        let out = decode(&encode_native(&readings[0])).unwrap();
        assert_eq!(out.readings, readings[..1]);
    }
}
