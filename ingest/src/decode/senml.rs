//! SenML JSON (RFC 8428), from `landport/{tenant}/{device}/senml`.
//!
//! A pack is a JSON array of records. Records are resolved as RFC 8428 section 4 says: base
//! fields (`bn`, `bt`, `bu`, `bv`, `bver`) apply to their record and every later one until
//! replaced; the name is `bn` + `n`, the unit `u` or else `bu`, the value `bv` + `v`, the time
//! `bt` + `t` in seconds since the epoch, where a time below 2^28 (268,435,456) is relative to
//! now (`now_ms`), so a record with no time at all means "now". `ut` and `bs` are ignored.
//! Records with the same resolved time (to the millisecond) become one [`Reading`](landport_tracker::Reading).
//!
//! Which field a record fills comes from its unit, or, for units that say too little, its
//! unit and the last segment of its name (after the last `:`, `/` or `.`):
//!
//! | unit | name's last segment | becomes |
//! | --- | --- | --- |
//! | `Cel` / `K` | any | `temp_c` (K - 273.15) |
//! | `kg` / `g` | any | `weight_kg` (g / 1000) |
//! | `lat` / `lon` | any | the fix's latitude / longitude |
//! | `%EL` | any | `battery_pct` |
//! | `m/s` / `km/h` | any | `speed_kmh` (m/s x 3.6) |
//! | `deg` / `rad` | `heading`, `heading_deg`, `cog`, `course` | `heading_deg` |
//! | `m` | `accuracy`, `accuracy_m`, `acc` | `accuracy_m` |
//! | `%` / `/` | `battery`, `battery_pct`, `batt` | `battery_pct` (`/` x 100) |
//! | none | a native field name (`lat`, `temp_c`, `speed_kmh`, ...) | that field |
//!
//! What has no Landport field (a unit such as `%RH` or `V`, a string `vs`, boolean `vb` or data
//! `vd` value, a record with only a sum, a second temperature at the same time) refuses that
//! record with `senml_unsupported` and keeps the rest. A record that breaks the RFC (a bad or
//! empty name, no value, two values) is `senml_invalid`.
//!
//! Refused as a whole, because later records would be resolved against a base field that
//! cannot be read: a wrong type in a base field, a label given twice, a number no f64 holds,
//! `bver` above 10, and a label ending in `_` (RFC 8428 section 4.4: must be understood).
//!
//! The topic names the device: a pack's `bn` names sensors, it does not pick the device.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use landport_tracker::TimestampMs;

use super::rejection::{FieldPath, Quantity, Rejection, excerpt};
use super::scalar::{Scalar, number, read_field};
use super::validate::{Values, build_reading, check_ts, seconds_to_ms};
use super::{DecodeOutcome, Limits, json_error, payload_text};

/// The list name in messages: `records[3].t`.
const LIST: &str = "records";

/// Times below this many seconds are relative to now (RFC 8428 section 4.5.3).
const RELATIVE_TIME_LIMIT_S: f64 = 268_435_456.0;

/// The SenML version this decoder reads (RFC 8428); packs declaring a later one are refused.
const MAX_VERSION: u64 = 10;

/// Decodes a SenML JSON pack.
pub fn decode_senml(
    payload: &[u8],
    limits: &Limits,
    now_ms: TimestampMs,
) -> Result<DecodeOutcome, Rejection> {
    let text = payload_text(payload, limits)?;
    let mut pack = Pack::new(limits, now_ms);
    let mut de = serde_json::Deserializer::from_str(text);
    let shape = PackSeed { pack: &mut pack }
        .deserialize(&mut de)
        .and_then(|shape| de.end().map(|()| shape));
    if let Some(fatal) = pack.fatal.take() {
        return Err(fatal);
    }
    match shape {
        Ok(Shape::Pack) => Ok(pack.finish()),
        Ok(Shape::Empty) => Err(Rejection::EmptyBatch),
        Ok(Shape::Other(found)) => Err(Rejection::WrongType {
            at: FieldPath::PAYLOAD,
            expected: "a SenML pack (a JSON array of records)",
            found: found.to_owned(),
        }),
        Err(e) => Err(json_error(e, FieldPath::PAYLOAD)),
    }
}

/// One record as read, borrowing from the payload; nothing resolved yet.
#[derive(Debug, Default)]
struct Record<'a> {
    bn: Option<Scalar<'a>>,
    bt: Option<Scalar<'a>>,
    bu: Option<Scalar<'a>>,
    bv: Option<Scalar<'a>>,
    bver: Option<Scalar<'a>>,
    n: Option<Scalar<'a>>,
    u: Option<Scalar<'a>>,
    v: Option<Scalar<'a>>,
    vs: Option<Scalar<'a>>,
    vb: Option<Scalar<'a>>,
    vd: Option<Scalar<'a>>,
    s: Option<Scalar<'a>>,
    t: Option<Scalar<'a>>,
    /// The first unknown label ending in `_`, shortened.
    must_understand: Option<String>,
    duplicate: Option<&'static str>,
    not_object: Option<&'static str>,
}

impl Record<'_> {
    fn has_base_field(&self) -> bool {
        self.bn.is_some()
            || self.bt.is_some()
            || self.bu.is_some()
            || self.bv.is_some()
            || self.bver.is_some()
    }

    fn has_regular_field(&self) -> bool {
        self.n.is_some() || self.u.is_some() || self.t.is_some()
    }
}

/// The readings being built from one pack, and the base fields in force.
struct Pack<'a, 'l> {
    limits: &'l Limits,
    now_ms: TimestampMs,
    bn: Cow<'a, str>,
    /// Whether every character of `bn` may appear in a name.
    bn_chars_ok: bool,
    bt: f64,
    bu: Option<Cow<'a, str>>,
    bv: f64,
    groups: Vec<Group>,
    /// Time -> position in `groups`, built once a pack has many distinct times.
    group_index: Option<HashMap<TimestampMs, usize>>,
    records: usize,
    rejections: Vec<Rejection>,
    /// The rejection of the whole pack, when one record makes the rest unreadable.
    fatal: Option<Rejection>,
}

/// The values at one resolved time, and which record gave each (for messages).
struct Group {
    ts_ms: TimestampMs,
    values: Values,
    /// Record index per [`Quantity::index`]; the group's first record where absent.
    record_of: [usize; 8],
}

/// Below this many groups a linear scan beats hashing.
const LINEAR_GROUPS: usize = 16;

impl<'a, 'l> Pack<'a, 'l> {
    fn new(limits: &'l Limits, now_ms: TimestampMs) -> Self {
        Pack {
            limits,
            now_ms,
            bn: Cow::Borrowed(""),
            bn_chars_ok: true,
            bt: 0.0,
            bu: None,
            bv: 0.0,
            groups: Vec::new(),
            group_index: None,
            records: 0,
            rejections: Vec::new(),
            fatal: None,
        }
    }

    /// Takes in record `i`. `Err` refuses the whole pack.
    fn record(&mut self, i: usize, rec: Record<'a>) -> Result<(), Rejection> {
        let at = |field| FieldPath::item(LIST, i, field);
        if let Some(found) = rec.not_object {
            self.rejections.push(Rejection::WrongType {
                at: at(""),
                expected: "a SenML record (a JSON object)",
                found: found.to_owned(),
            });
            return Ok(());
        }
        if let Some(label) = &rec.must_understand {
            return Err(Rejection::SenmlUnsupported {
                at: at(""),
                detail: format!(
                    "label {label:?} ends in '_' so it must be understood (RFC 8428 section 4.4); Landport does not know it"
                ),
            });
        }
        if let Some(field) = rec.duplicate {
            return Err(Rejection::DuplicateField { at: at(field) });
        }
        self.base_fields(&rec, at)?;
        if let Err(rejection) = self.regular_fields(i, rec) {
            self.rejections.push(rejection);
        }
        Ok(())
    }

    /// Applies the record's base fields to it and to every later record.
    fn base_fields(
        &mut self,
        rec: &Record<'a>,
        at: impl Fn(&'static str) -> FieldPath,
    ) -> Result<(), Rejection> {
        match &rec.bver {
            None => {}
            Some(Scalar::U64(v)) if *v <= MAX_VERSION => {}
            Some(Scalar::U64(v)) => {
                return Err(Rejection::SenmlUnsupported {
                    at: at("bver"),
                    detail: format!(
                        "version {v}: Landport reads SenML versions up to {MAX_VERSION}"
                    ),
                });
            }
            Some(other) => return Err(other.wrong_type(at("bver"), "a positive integer")),
        }
        if let Some(bn) = &rec.bn {
            let Some(text) = bn.text() else {
                return Err(bn.wrong_type(at("bn"), "a string"));
            };
            self.bn_chars_ok = text.chars().all(name_char);
            self.bn = text;
        }
        if let Some(bu) = &rec.bu {
            let Some(text) = bu.text() else {
                return Err(bu.wrong_type(at("bu"), "a string"));
            };
            self.bu = Some(text);
        }
        if let Some(bt) = &rec.bt {
            self.bt = number(bt, || at("bt"))?;
        }
        if let Some(bv) = &rec.bv {
            self.bv = number(bv, || at("bv"))?;
        }
        Ok(())
    }

    /// Resolves the record and adds its value to the group of its time. `Err` refuses this
    /// record only.
    fn regular_fields(&mut self, i: usize, rec: Record<'a>) -> Result<(), Rejection> {
        let at = |field| FieldPath::item(LIST, i, field);
        let values = [&rec.v, &rec.vs, &rec.vb, &rec.vd]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if values == 0 {
            if rec.s.is_some() {
                return Err(Rejection::SenmlUnsupported {
                    at: at("s"),
                    detail: "a sum without a value: Landport reads values only".to_owned(),
                });
            }
            if rec.has_base_field() && !rec.has_regular_field() {
                // Only sets base fields for the records after it.
                return Ok(());
            }
            return Err(Rejection::SenmlInvalid {
                at: at(""),
                detail: "no value (v, vs, vb or vd) and no sum (s)".to_owned(),
            });
        }
        if values > 1 {
            return Err(Rejection::SenmlInvalid {
                at: at(""),
                detail: "more than one value (v, vs, vb, vd)".to_owned(),
            });
        }

        let n = match &rec.n {
            None => Cow::Borrowed(""),
            Some(n) => n.text().ok_or_else(|| n.wrong_type(at("n"), "a string"))?,
        };
        let n = n.as_ref();
        self.check_name(n, at)?;
        let u = match &rec.u {
            None => None,
            Some(u) => Some(u.text().ok_or_else(|| u.wrong_type(at("u"), "a string"))?),
        };
        let unit: Option<&str> = u.as_deref().or(self.bu.as_deref());
        let v = match (&rec.v, &rec.vs, &rec.vb) {
            (Some(v), _, _) => v,
            (_, Some(_), _) => return Err(self.unsupported(at("vs"), n, "a string value (vs)")),
            (_, _, Some(_)) => return Err(self.unsupported(at("vb"), n, "a boolean value (vb)")),
            _ => return Err(self.unsupported(at("vd"), n, "a data value (vd)")),
        };
        let Some((quantity, convert)) = field_for(unit, || last_segment(&self.bn, n)) else {
            let what = match unit {
                Some(u) => format!("unit {:?}", excerpt(u, 16)),
                None => "no unit".to_owned(),
            };
            return Err(self.unsupported(at(if rec.u.is_some() { "u" } else { "" }), n, &what));
        };

        let value = self.bv + number(v, || at("v"))?;
        let value = convert(value);
        if !value.is_finite() {
            return Err(Rejection::NonFinite {
                at: at("v"),
                detail: "bv + v overflows".to_owned(),
            });
        }
        let t = match &rec.t {
            None => 0.0,
            Some(t) => number(t, || at("t"))?,
        };
        let secs = self.bt + t;
        let ts_ms = if secs < RELATIVE_TIME_LIMIT_S {
            self.now_ms.saturating_add(seconds_to_ms(secs, || at("t"))?)
        } else {
            seconds_to_ms(secs, || at("t"))?
        };
        let ts_ms = check_ts(ts_ms, || at("t"), self.limits, self.now_ms)?;

        let group = self.group(ts_ms, i);
        if let Some(_earlier) = group.values.get(quantity) {
            let earlier = group.record_of[quantity.index()];
            return Err(Rejection::SenmlUnsupported {
                at: at(""),
                detail: format!(
                    "a second {quantity} at the same time as records[{earlier}]: a reading holds one"
                ),
            });
        }
        group.values.set(quantity, Some(value));
        group.record_of[quantity.index()] = i;
        Ok(())
    }

    /// RFC 8428 section 4.5.1: the name `bn` + `n` is not empty, starts with a letter or digit
    /// and holds only `A-Z a-z 0-9 - : . / _`.
    fn check_name(&self, n: &str, at: impl Fn(&'static str) -> FieldPath) -> Result<(), Rejection> {
        let invalid = |detail: String| Rejection::SenmlInvalid {
            at: at("n"),
            detail,
        };
        let full = || excerpt(&format!("{}{n}", self.bn), 64);
        match self.bn.chars().chain(n.chars()).next() {
            None => return Err(invalid("no name: bn + n is empty".to_owned())),
            Some(c) if !c.is_ascii_alphanumeric() => {
                return Err(invalid(format!(
                    "name {:?} must start with a letter or a digit",
                    full()
                )));
            }
            Some(_) => {}
        }
        if !self.bn_chars_ok || !n.chars().all(name_char) {
            return Err(invalid(format!(
                "name {:?} may hold only A-Z a-z 0-9 - : . / _",
                full()
            )));
        }
        Ok(())
    }

    fn unsupported(&self, at: FieldPath, n: &str, what: &str) -> Rejection {
        Rejection::SenmlUnsupported {
            at,
            detail: format!(
                "{what} in {:?}: Landport has no field for it",
                excerpt(&format!("{}{n}", self.bn), 64)
            ),
        }
    }

    /// The group of readings at `ts_ms`, new (first record `i`) if there is none yet.
    fn group(&mut self, ts_ms: TimestampMs, i: usize) -> &mut Group {
        let found = if let Some(index) = &self.group_index {
            index.get(&ts_ms).copied()
        } else {
            self.groups.iter().rposition(|g| g.ts_ms == ts_ms)
        };
        let at = match found {
            Some(at) => at,
            None => {
                let at = self.groups.len();
                self.groups.push(Group {
                    ts_ms,
                    values: Values::default(),
                    record_of: [i; 8],
                });
                match &mut self.group_index {
                    Some(index) => {
                        index.insert(ts_ms, at);
                    }
                    None if self.groups.len() > LINEAR_GROUPS => {
                        let index = self
                            .groups
                            .iter()
                            .enumerate()
                            .map(|(at, g)| (g.ts_ms, at))
                            .collect();
                        self.group_index = Some(index);
                    }
                    None => {}
                }
                at
            }
        };
        &mut self.groups[at]
    }

    /// The readings of all groups, then the rejections (records first, then groups).
    fn finish(self) -> DecodeOutcome {
        let mut out = DecodeOutcome {
            readings: Vec::with_capacity(self.groups.len()),
            rejections: self.rejections,
            ignored: false,
        };
        for g in self.groups {
            let path = |q: Quantity| FieldPath::item(LIST, g.record_of[q.index()], q.native_name());
            out.push(build_reading(g.ts_ms, None, g.values, path));
        }
        out
    }
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | '/' | '_')
}

/// The last segment (after the last `:`, `/` or `.`) of the name `bn` + `n`.
fn last_segment<'s>(bn: &'s str, n: &'s str) -> Cow<'s, str> {
    let sep = |c: char| matches!(c, ':' | '/' | '.');
    if let Some(p) = n.rfind(sep) {
        return Cow::Borrowed(&n[p + 1..]);
    }
    let tail = bn.rfind(sep).map_or(bn, |p| &bn[p + 1..]);
    match (tail.is_empty(), n.is_empty()) {
        (true, _) => Cow::Borrowed(n),
        (false, true) => Cow::Borrowed(tail),
        (false, false) => Cow::Owned(format!("{tail}{n}")),
    }
}

/// Converts a SenML value to its Landport field's unit.
type Convert = fn(f64) -> f64;

/// The field a record fills, and how its value converts to that field's unit (see the table
/// in the module docs). `segment` gives the name's last segment, computed only when needed.
fn field_for<'s>(
    unit: Option<&str>,
    segment: impl FnOnce() -> Cow<'s, str>,
) -> Option<(Quantity, Convert)> {
    fn same(v: f64) -> f64 {
        v
    }
    const HEADING: [&str; 4] = ["heading", "heading_deg", "cog", "course"];
    const ACCURACY: [&str; 3] = ["accuracy", "accuracy_m", "acc"];
    const BATTERY: [&str; 3] = ["battery", "battery_pct", "batt"];
    Some(match unit {
        Some("Cel") => (Quantity::TempC, same),
        Some("K") => (Quantity::TempC, |k| k - 273.15),
        Some("kg") => (Quantity::WeightKg, same),
        Some("g") => (Quantity::WeightKg, |g| g / 1000.0),
        Some("lat") => (Quantity::Lat, same),
        Some("lon") => (Quantity::Lon, same),
        Some("%EL") => (Quantity::BatteryPct, same),
        Some("m/s") => (Quantity::SpeedKmh, |ms| ms * 3.6),
        Some("km/h") => (Quantity::SpeedKmh, same),
        Some(unit @ ("deg" | "rad" | "m" | "%" | "/")) => {
            let segment = segment();
            let segment = segment.as_ref();
            match unit {
                "deg" if HEADING.contains(&segment) => (Quantity::HeadingDeg, same),
                "rad" if HEADING.contains(&segment) => (Quantity::HeadingDeg, f64::to_degrees),
                "m" if ACCURACY.contains(&segment) => (Quantity::AccuracyM, same),
                "%" if BATTERY.contains(&segment) => (Quantity::BatteryPct, same),
                "/" if BATTERY.contains(&segment) => (Quantity::BatteryPct, |r| r * 100.0),
                _ => return None,
            }
        }
        Some(_) => return None,
        None => {
            let segment = segment();
            let q = Quantity::ALL
                .into_iter()
                .find(|q| q.native_name() == segment)?;
            (q, same)
        }
    })
}

/// Labels of a SenML record.
enum Key {
    Bn,
    Bt,
    Bu,
    Bv,
    Bver,
    N,
    U,
    V,
    Vs,
    Vb,
    Vd,
    S,
    T,
    /// An unknown label ending in `_`, shortened.
    MustUnderstand(String),
    /// `ut`, `bs` and unknown labels: ignored.
    Ignored,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SenML label")
    }

    fn visit_str<E: de::Error>(self, label: &str) -> Result<Key, E> {
        Ok(match label {
            "bn" => Key::Bn,
            "bt" => Key::Bt,
            "bu" => Key::Bu,
            "bv" => Key::Bv,
            "bver" => Key::Bver,
            "n" => Key::N,
            "u" => Key::U,
            "v" => Key::V,
            "vs" => Key::Vs,
            "vb" => Key::Vb,
            "vd" => Key::Vd,
            "s" => Key::S,
            "t" => Key::T,
            other if other.ends_with('_') => Key::MustUnderstand(excerpt(other, 32)),
            _ => Key::Ignored,
        })
    }
}

impl<'de> Record<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut r = Record::default();
        while let Some(key) = map.next_key::<Key>()? {
            let (slot, name) = match key {
                Key::Bn => (&mut r.bn, "bn"),
                Key::Bt => (&mut r.bt, "bt"),
                Key::Bu => (&mut r.bu, "bu"),
                Key::Bv => (&mut r.bv, "bv"),
                Key::Bver => (&mut r.bver, "bver"),
                Key::N => (&mut r.n, "n"),
                Key::U => (&mut r.u, "u"),
                Key::V => (&mut r.v, "v"),
                Key::Vs => (&mut r.vs, "vs"),
                Key::Vb => (&mut r.vb, "vb"),
                Key::Vd => (&mut r.vd, "vd"),
                Key::S => (&mut r.s, "s"),
                Key::T => (&mut r.t, "t"),
                Key::MustUnderstand(label) => {
                    r.must_understand.get_or_insert(label);
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                Key::Ignored => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            read_field(&mut map, slot, name, &mut r.duplicate)?;
        }
        Ok(r)
    }

    fn not_object(kind: &'static str) -> Self {
        Record {
            not_object: Some(kind),
            ..Record::default()
        }
    }
}

impl<'de> Deserialize<'de> for Record<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RecordVisitor)
    }
}

/// Accepts any JSON value: an object is a record, anything else a record that is not one.
struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Record<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SenML record")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Record::from_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Record::not_object("array"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Record::not_object("boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Record::not_object("number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Record::not_object("number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Record::not_object("number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Record::not_object("string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Record::not_object("null"))
    }
}

enum Shape {
    Pack,
    Empty,
    Other(&'static str),
}

/// Reads the top-level array, handing each record to the [`Pack`] as soon as it is read.
struct PackSeed<'p, 'a, 'l> {
    pack: &'p mut Pack<'a, 'l>,
}

impl<'de> DeserializeSeed<'de> for PackSeed<'_, 'de, '_> {
    type Value = Shape;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Shape, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PackSeed<'_, 'de, '_> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SenML pack")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        while let Some(record) = seq.next_element::<Record<'de>>()? {
            let i = self.pack.records;
            self.pack.records += 1;
            if let Err(fatal) = self.pack.record(i, record) {
                self.pack.fatal = Some(fatal);
                // Stops the read; `decode_senml` returns `fatal`, not this error.
                return Err(de::Error::custom("pack refused"));
            }
        }
        Ok(if self.pack.records == 0 {
            Shape::Empty
        } else {
            Shape::Pack
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Shape::Other("object"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use landport_tracker::Reading;

    const NOW: TimestampMs = 1_795_000_000_000;

    fn decode(json: &str) -> Result<DecodeOutcome, Rejection> {
        decode_senml(json.as_bytes(), &Limits::default(), NOW)
    }

    fn codes(out: &DecodeOutcome) -> Vec<&'static str> {
        out.rejections.iter().map(Rejection::code).collect()
    }

    #[test]
    fn no_time_means_now_and_relative_times_count_from_now() {
        let out = decode(r#"[{"n":"temp_c","v":4.5},{"n":"temp_c","t":-60,"v":4.0}]"#).unwrap();
        assert_eq!(
            out.readings,
            vec![
                Reading::at(NOW).with_temp(4.5),
                Reading::at(NOW - 60_000).with_temp(4.0)
            ]
        );
    }

    #[test]
    fn units_convert_to_landport_units() {
        let json = r#"[{"bt":1794996000,"n":"cargo","u":"K","v":255.15},
            {"n":"load","u":"g","v":1500},
            {"n":"gps:lat","u":"lat","v":41.1}, {"n":"gps:lon","u":"lon","v":122.9},
            {"n":"gps:speed","u":"m/s","v":10}, {"n":"gps:heading","u":"rad","v":3.141592653589793},
            {"n":"gps:accuracy","u":"m","v":4}, {"n":"dev/battery","u":"/","v":0.5}]"#;
        let out = decode(json).unwrap();
        assert!(out.rejections.is_empty(), "{:?}", out.rejections);
        let r = out.readings[0];
        let fix = r.fix.unwrap();
        assert!((r.temp_c.unwrap() - -18.0).abs() < 1e-9);
        assert_eq!(r.weight_kg, Some(1.5));
        assert_eq!(
            (fix.lat, fix.lon, fix.speed_kmh, fix.accuracy_m),
            (41.1, 122.9, Some(36.0), Some(4.0))
        );
        assert_eq!(fix.heading_deg, Some(180.0));
        assert_eq!(r.battery_pct, Some(50.0));
        assert_eq!(r.ts_ms, 1_794_996_000_000);
    }

    #[test]
    fn base_value_and_base_unit_apply_to_later_records() {
        let json = r#"[{"bn":"dev1:","bt":1794996000,"bu":"Cel","bv":20,"n":"temp","v":1.5},
            {"n":"temp","t":10,"v":-0.5}]"#;
        let out = decode(json).unwrap();
        let temps: Vec<_> = out.readings.iter().map(|r| (r.ts_ms, r.temp_c)).collect();
        assert_eq!(
            temps,
            [
                (1_794_996_000_000, Some(21.5)),
                (1_794_996_010_000, Some(19.5))
            ]
        );
    }

    #[test]
    fn names_follow_rfc_8428_rules() {
        let cases = [
            (r#"[{"u":"Cel","v":1}]"#, "senml_invalid"),
            (r#"[{"n":"-x","u":"Cel","v":1}]"#, "senml_invalid"),
            (r#"[{"n":"a b","u":"Cel","v":1}]"#, "senml_invalid"),
            (r#"[{"bn":"é:","n":"x","u":"Cel","v":1}]"#, "senml_invalid"),
        ];
        for (json, want) in cases {
            assert_eq!(codes(&decode(json).unwrap()), [want], "{json}");
        }
        let out =
            decode(r#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"t","u":"Cel","v":1}]"#).unwrap();
        assert_eq!(out.readings.len(), 1);
    }

    #[test]
    fn records_landport_cannot_hold_are_skipped_one_by_one() {
        let json = r#"[{"n":"hum","u":"%RH","v":40},{"n":"label","vs":"Machine Room"},
            {"n":"open","vb":false},{"n":"nfc","vd":"aGkgCg"},{"n":"energy","u":"J","s":5},
            {"n":"temp_c","v":3},{"n":"temp_c","v":4},{"n":"mystery","v":1}]"#;
        let out = decode(json).unwrap();
        assert_eq!(out.readings, vec![Reading::at(NOW).with_temp(3.0)]);
        assert_eq!(codes(&out), ["senml_unsupported"; 7]);
        assert_eq!(
            out.rejections[0].to_string(),
            r#"records[0].u: unit "%RH" in "hum": Landport has no field for it"#
        );
        assert!(
            out.rejections[5].to_string().contains("a second temp_c"),
            "{}",
            out.rejections[5]
        );
    }

    #[test]
    fn record_level_rfc_violations() {
        let out = decode(r#"[{"n":"temp_c"},{"n":"temp_c","v":1,"vs":"x"},{"bn":"x:"}]"#).unwrap();
        assert_eq!(
            codes(&out),
            ["senml_invalid", "senml_invalid"],
            "a base-only record is fine"
        );
    }

    #[test]
    fn pack_level_refusals() {
        let cases = [
            (r#"[{"n":"temp_c","v":1,"future_":1}]"#, "senml_unsupported"),
            (r#"[{"bver":11,"n":"temp_c","v":1}]"#, "senml_unsupported"),
            (r#"[{"bver":"10","n":"temp_c","v":1}]"#, "wrong_type"),
            (r#"[{"bt":"now","n":"temp_c","v":1}]"#, "wrong_type"),
            (r#"[{"bn":5,"n":"temp_c","v":1}]"#, "wrong_type"),
            (r#"[{"n":"temp_c","v":1,"n":"x"}]"#, "duplicate_field"),
            (r#"[{"n":"temp_c","v":1e999}]"#, "non_finite"),
            (r#"{"n":"temp_c","v":1}"#, "wrong_type"),
            ("[]", "empty_batch"),
            (r#"[{"n":"temp_c","v":1}"#, "invalid_json"),
        ];
        for (json, want) in cases {
            assert_eq!(decode(json).unwrap_err().code(), want, "{json}");
        }
    }

    #[test]
    fn group_checks_run_on_the_assembled_reading() {
        let out = decode(r#"[{"bt":1794996000,"u":"lat","n":"p","v":41},{"n":"p","u":"lat","t":1,"v":41},{"n":"p","u":"lon","t":1,"v":122}]"#).unwrap();
        assert_eq!(out.readings.len(), 1);
        assert_eq!(codes(&out), ["missing_field"]);
        assert_eq!(
            out.rejections[0].to_string(),
            "records[0].lon: missing (required with lat)"
        );
        let out = decode(r#"[{"n":"p","u":"lat","v":0},{"n":"p","u":"lon","v":0}]"#).unwrap();
        assert_eq!(codes(&out), ["null_island"]);
        let out = decode(r#"[{"n":"p","u":"lat","v":95},{"n":"p","u":"lon","v":0}]"#).unwrap();
        assert_eq!(
            out.rejections[0].to_string(),
            "records[0].lat: 95 is outside [-90, 90]"
        );
    }

    #[test]
    fn times_are_checked_per_record() {
        let out = decode(r#"[{"bt":5e8,"n":"temp_c","v":1},{"bt":4e9,"n":"temp_c","v":1},{"bt":1e30,"n":"temp_c","v":1}]"#).unwrap();
        assert_eq!(
            codes(&out),
            ["ts_too_old", "ts_too_far_ahead", "ts_invalid"]
        );
    }

    #[test]
    fn many_distinct_times_use_the_index() {
        let records: Vec<String> = (0..100)
            .flat_map(|i| {
                [
                    format!(r#"{{"n":"temp_c","bt":1794996000,"t":{i},"v":{i}}}"#),
                    format!(r#"{{"n":"weight_kg","t":{},"v":1}}"#, 99 - i),
                ]
            })
            .collect();
        let out = decode(&format!("[{}]", records.join(","))).unwrap();
        assert!(out.rejections.is_empty());
        assert_eq!(out.readings.len(), 100);
        assert!(
            out.readings
                .iter()
                .all(|r| r.temp_c.is_some() && r.weight_kg == Some(1.0))
        );
    }

    #[test]
    fn last_segment_spans_base_name_and_name() {
        assert_eq!(last_segment("urn:dev:x:", "temp_c"), "temp_c");
        assert_eq!(last_segment("urn:dev:x:te", "mp_c"), "temp_c");
        assert_eq!(last_segment("dev", "gps/lat"), "lat");
        assert_eq!(last_segment("dev/lat", ""), "lat");
    }
}
