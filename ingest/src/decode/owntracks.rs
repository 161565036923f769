//! OwnTracks JSON, from `owntracks/{user}/{device}`: `_type: "location"` messages become
//! readings; other types (`transition`, `lwt`, `waypoint`, `card`, ...) are
//! [ignored](super::DecodeOutcome::ignored); `encrypted` is refused (Landport holds no keys).
//!
//! | field | meaning | becomes |
//! | --- | --- | --- |
//! | `tst` | fix time, seconds since the epoch (required) | `ts_ms` |
//! | `lat`, `lon` | degrees (required) | the fix |
//! | `acc` | horizontal accuracy, metres | `accuracy_m` |
//! | `vel` | speed, km/h | `speed_kmh` |
//! | `cog` | course over ground, degrees | `heading_deg` |
//! | `batt` | battery, percent | `battery_pct` |
//!
//! Other fields (`alt`, `vac`, `tid`, `t`, `conn`, `SSID`, ...) are ignored. A negative `vel`
//! or `cog` is taken as "unknown" and dropped rather than refusing the fix: phones report
//! CoreLocation's -1 for a speed or course they do not have.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;

use landport_tracker::{Reading, TimestampMs};

use super::rejection::{FieldPath, Quantity, Rejection};
use super::scalar::{Scalar, number, read_field};
use super::validate::{Values, build_reading, check_ts, seconds_to_ms};
use super::{DecodeOutcome, Limits, json_error, payload_text};

/// Decodes an OwnTracks message.
pub fn decode_owntracks(
    payload: &[u8],
    limits: &Limits,
    now_ms: TimestampMs,
) -> Result<DecodeOutcome, Rejection> {
    let text = payload_text(payload, limits)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let msg = MessageSeed
        .deserialize(&mut de)
        .and_then(|msg| de.end().map(|()| msg))
        .map_err(|e| json_error(e, FieldPath::PAYLOAD))?;
    let msg = match msg {
        Top::Object(msg) => msg,
        Top::Other(found) => {
            return Err(Rejection::WrongType {
                at: FieldPath::PAYLOAD,
                expected: "an OwnTracks JSON object",
                found: found.to_owned(),
            });
        }
    };
    let mut out = DecodeOutcome::default();
    match msg.message_type() {
        Ok(Kind::Location) => out.push(validate(&msg, limits, now_ms)),
        Ok(Kind::Encrypted) => out.rejections.push(Rejection::OwnTracksEncrypted),
        Ok(Kind::Other) => out.ignored = true,
        Err(rejection) => out.rejections.push(rejection),
    }
    Ok(out)
}

/// Field names of an OwnTracks message that Landport reads.
#[derive(serde::Deserialize)]
#[serde(field_identifier)]
enum Key {
    #[serde(rename = "_type")]
    Type,
    #[serde(rename = "tst")]
    Tst,
    #[serde(rename = "lat")]
    Lat,
    #[serde(rename = "lon")]
    Lon,
    #[serde(rename = "acc")]
    Acc,
    #[serde(rename = "vel")]
    Vel,
    #[serde(rename = "cog")]
    Cog,
    #[serde(rename = "batt")]
    Batt,
    #[serde(other)]
    Unknown,
}

/// The fields read, in `Key` order after `_type` and `tst`, with their wire names and
/// quantities.
const FIELDS: [(&str, Quantity); 6] = [
    ("lat", Quantity::Lat),
    ("lon", Quantity::Lon),
    ("acc", Quantity::AccuracyM),
    ("vel", Quantity::SpeedKmh),
    ("cog", Quantity::HeadingDeg),
    ("batt", Quantity::BatteryPct),
];

/// One OwnTracks message as read, borrowing from the payload.
#[derive(Debug, Default)]
struct Message<'a> {
    kind: Option<Scalar<'a>>,
    tst: Option<Scalar<'a>>,
    /// Indexed like [`FIELDS`].
    fields: [Option<Scalar<'a>>; 6],
    duplicate: Option<&'static str>,
}

enum Kind {
    Location,
    Encrypted,
    Other,
}

impl Message<'_> {
    fn message_type(&self) -> Result<Kind, Rejection> {
        let at = FieldPath::single("_type");
        match &self.kind {
            None => Err(Rejection::MissingField {
                at,
                required_with: None,
            }),
            Some(kind) => match kind.text().as_deref() {
                Some("location") => Ok(Kind::Location),
                Some("encrypted") => Ok(Kind::Encrypted),
                Some(_) => Ok(Kind::Other),
                None => Err(kind.wrong_type(at, "a string")),
            },
        }
    }
}

fn validate(msg: &Message<'_>, limits: &Limits, now_ms: TimestampMs) -> Result<Reading, Rejection> {
    if let Some(field) = msg.duplicate {
        return Err(Rejection::DuplicateField {
            at: FieldPath::single(field),
        });
    }
    let at_tst = || FieldPath::single("tst");
    let tst = match &msg.tst {
        None => {
            return Err(Rejection::MissingField {
                at: at_tst(),
                required_with: None,
            });
        }
        Some(Scalar::U64(secs)) => i64::try_from(*secs)
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .ok_or_else(|| Rejection::TsInvalid {
                at: at_tst(),
                detail: format!("{secs} s since the epoch is out of range"),
            })?,
        Some(Scalar::I64(secs)) => secs.saturating_mul(1000),
        Some(Scalar::F64(secs)) => seconds_to_ms(*secs, at_tst)?,
        Some(other) => return Err(other.wrong_type(at_tst(), "integer epoch seconds")),
    };
    let ts_ms = check_ts(tst, at_tst, limits, now_ms)?;
    let mut values = Values::default();
    for (slot, (name, q)) in msg.fields.iter().zip(FIELDS) {
        if let Some(v) = slot {
            let v = number(v, || FieldPath::single(name))?;
            let unknown = matches!(q, Quantity::SpeedKmh | Quantity::HeadingDeg) && v < 0.0;
            values.set(q, (!unknown).then_some(v));
        }
    }
    for q in [Quantity::Lat, Quantity::Lon] {
        if values.get(q).is_none() {
            return Err(Rejection::MissingField {
                at: FieldPath::single(q.native_name()),
                required_with: Some("_type \"location\""),
            });
        }
    }
    build_reading(ts_ms, None, values, wire_path)
}

/// A quantity's OwnTracks field, for messages.
fn wire_path(q: Quantity) -> FieldPath {
    let name = FIELDS
        .iter()
        .find(|(_, fq)| *fq == q)
        .map_or("", |(name, _)| *name);
    FieldPath::single(name)
}

enum Top<'a> {
    Object(Message<'a>),
    Other(&'static str),
}

struct MessageSeed;

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = Top<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an OwnTracks message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut m = Message::default();
        while let Some(key) = map.next_key::<Key>()? {
            let (slot, name) = match key {
                Key::Type => (&mut m.kind, "_type"),
                Key::Tst => (&mut m.tst, "tst"),
                Key::Lat => (&mut m.fields[0], "lat"),
                Key::Lon => (&mut m.fields[1], "lon"),
                Key::Acc => (&mut m.fields[2], "acc"),
                Key::Vel => (&mut m.fields[3], "vel"),
                Key::Cog => (&mut m.fields[4], "cog"),
                Key::Batt => (&mut m.fields[5], "batt"),
                Key::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            read_field(&mut map, slot, name, &mut m.duplicate)?;
        }
        Ok(Top::Object(m))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::Other("array"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Top::Other("boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Top::Other("number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Top::Other("number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Top::Other("number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Top::Other("string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Top::Other("null"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use landport_tracker::Fix;

    const NOW: TimestampMs = 1_795_000_000_000;

    fn decode(json: &str) -> Result<DecodeOutcome, Rejection> {
        decode_owntracks(json.as_bytes(), &Limits::default(), NOW)
    }

    fn code(json: &str) -> &'static str {
        decode(json).unwrap().rejections[0].code()
    }

    #[test]
    fn a_location_becomes_a_reading() {
        let json = r#"{"_type":"location","tid":"ja","acc":12,"alt":51,"batt":87,"conn":"m",
            "lat":41.1087,"lon":122.9946,"tst":1794996000,"vel":63,"cog":181,"t":"u","topic":"owntracks/ja/phone"}"#;
        let out = decode(json).unwrap();
        assert!(out.rejections.is_empty() && !out.ignored);
        assert_eq!(
            out.readings,
            vec![Reading {
                ts_ms: 1_794_996_000_000,
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
    }

    #[test]
    fn other_types_are_ignored_not_rejected() {
        for t in ["transition", "lwt", "waypoint", "card", "status"] {
            let out = decode(&format!(r#"{{"_type":"{t}","tst":1794996000}}"#)).unwrap();
            assert!(
                out.ignored && out.readings.is_empty() && out.rejections.is_empty(),
                "{t}"
            );
        }
    }

    #[test]
    fn unknown_speed_and_course_are_dropped() {
        let json =
            r#"{"_type":"location","lat":41.1,"lon":122.9,"tst":1794996000,"vel":-1,"cog":-1}"#;
        let fix = decode(json).unwrap().readings[0].fix.unwrap();
        assert_eq!((fix.speed_kmh, fix.heading_deg), (None, None));
    }

    #[test]
    fn refusals_name_the_owntracks_field() {
        let json = r#"{"_type":"location","lat":41.1,"lon":122.9,"tst":1794996000,"batt":140}"#;
        let out = decode(json).unwrap();
        assert_eq!(
            out.rejections[0].to_string(),
            "batt: 140 is outside [0, 100]"
        );
        assert_eq!(
            code(r#"{"_type":"location","lat":41.1,"lon":122.9,"tst":1794996000,"acc":-5}"#),
            "accuracy_out_of_range"
        );
        assert_eq!(
            code(r#"{"_type":"location","lat":41.1,"tst":1794996000}"#),
            "missing_field"
        );
        assert_eq!(
            code(r#"{"_type":"location","lat":41.1,"lon":122.9}"#),
            "missing_field"
        );
        assert_eq!(
            code(r#"{"_type":"location","lat":0,"lon":0,"tst":1794996000}"#),
            "null_island"
        );
        assert_eq!(
            code(r#"{"_type":"location","lat":41.1,"lon":122.9,"tst":1794996000000}"#),
            "ts_too_far_ahead"
        );
        assert_eq!(
            code(r#"{"_type":"location","lat":41.1,"lon":122.9,"tst":"1794996000"}"#),
            "wrong_type"
        );
        assert_eq!(code(r#"{"_type":5}"#), "wrong_type");
        assert_eq!(code(r#"{"lat":41.1}"#), "missing_field");
        assert_eq!(
            code(r#"{"_type":"encrypted","data":"abc"}"#),
            "owntracks_encrypted"
        );
    }

    #[test]
    fn a_non_object_is_refused_whole() {
        assert_eq!(decode("[1]").unwrap_err().code(), "wrong_type");
        assert_eq!(
            decode(r#"{"_type":"location""#).unwrap_err().code(),
            "invalid_json"
        );
    }
}
