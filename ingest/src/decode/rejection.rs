//! Why a payload, or one record in it, was refused: [`Rejection`], its stable [`code`]
//! (a metrics label) and a message that names the record and the field.
//!
//! [`code`]: Rejection::code

use std::fmt;

use landport_tracker::TimestampMs;

/// Where in a payload a problem sits: which record of a batch and which field.
///
/// Displays as `readings[3].lat` (a record of a native batch), `records[2].t` (a SenML record),
/// `lat` (a payload that is one object), `readings[3]` (a record as a whole) or `payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPath {
    /// The list the record is in: `readings` for native batches, `records` for SenML packs.
    /// Unused when `index` is `None`.
    pub list: &'static str,
    /// The record's index in that list; `None` when the payload is a single object.
    pub index: Option<usize>,
    /// The field's name as it is on the wire (`lat`, `tst`, `bt`, ...); empty for the record as
    /// a whole.
    pub field: &'static str,
}

impl FieldPath {
    /// The payload as a whole.
    pub const PAYLOAD: FieldPath = FieldPath {
        list: "",
        index: None,
        field: "",
    };

    /// A field of a payload that is one object.
    pub const fn single(field: &'static str) -> FieldPath {
        FieldPath {
            list: "",
            index: None,
            field,
        }
    }

    /// A field (or, with `""`, the whole) of record `index` of `list`.
    pub const fn item(list: &'static str, index: usize, field: &'static str) -> FieldPath {
        FieldPath {
            list,
            index: Some(index),
            field,
        }
    }

    /// The same record, another field (`""`: the record as a whole).
    pub const fn with_field(self, field: &'static str) -> FieldPath {
        FieldPath { field, ..self }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.index, self.field) {
            (None, "") => f.write_str("payload"),
            (None, field) => f.write_str(field),
            (Some(i), "") => write!(f, "{}[{i}]", self.list),
            (Some(i), field) => write!(f, "{}[{i}].{field}", self.list),
        }
    }
}

/// A measured quantity of a [`Reading`](landport_tracker::Reading), with its valid range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Quantity {
    /// Latitude, degrees, [-90, 90].
    Lat,
    /// Longitude, degrees, [-180, 180].
    Lon,
    /// Ground speed, km/h, >= 0.
    SpeedKmh,
    /// Course over ground, degrees clockwise from true north, [0, 360] (360 is stored as 0).
    HeadingDeg,
    /// Horizontal accuracy radius, metres, >= 0.
    AccuracyM,
    /// Cargo temperature, degrees Celsius, >= -273.15 (absolute zero).
    TempC,
    /// Load weight, kilograms; any finite value (a load cell drifts below zero when empty).
    WeightKg,
    /// Battery charge, percent, [0, 100].
    BatteryPct,
}

impl Quantity {
    /// Every quantity, in the order of [`Quantity::index`].
    pub const ALL: [Quantity; 8] = [
        Quantity::Lat,
        Quantity::Lon,
        Quantity::SpeedKmh,
        Quantity::HeadingDeg,
        Quantity::AccuracyM,
        Quantity::TempC,
        Quantity::WeightKg,
        Quantity::BatteryPct,
    ];

    /// Position in [`Quantity::ALL`], for quantity-indexed arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The field's name in native JSON (SPEC section 4), which is also its name in messages.
    pub const fn native_name(self) -> &'static str {
        match self {
            Quantity::Lat => "lat",
            Quantity::Lon => "lon",
            Quantity::SpeedKmh => "speed_kmh",
            Quantity::HeadingDeg => "heading_deg",
            Quantity::AccuracyM => "accuracy_m",
            Quantity::TempC => "temp_c",
            Quantity::WeightKg => "weight_kg",
            Quantity::BatteryPct => "battery_pct",
        }
    }

    /// Inclusive bounds of a valid value.
    pub const fn range(self) -> (f64, f64) {
        match self {
            Quantity::Lat => (-90.0, 90.0),
            Quantity::Lon => (-180.0, 180.0),
            Quantity::SpeedKmh | Quantity::AccuracyM => (0.0, f64::INFINITY),
            Quantity::HeadingDeg => (0.0, 360.0),
            Quantity::TempC => (-273.15, f64::INFINITY),
            Quantity::WeightKg => (f64::NEG_INFINITY, f64::INFINITY),
            Quantity::BatteryPct => (0.0, 100.0),
        }
    }

    /// The range as people write it, for messages.
    pub const fn range_text(self) -> &'static str {
        match self {
            Quantity::Lat => "[-90, 90]",
            Quantity::Lon => "[-180, 180]",
            Quantity::SpeedKmh | Quantity::AccuracyM => "[0, inf)",
            Quantity::HeadingDeg => "[0, 360]",
            Quantity::TempC => "[-273.15, inf)",
            Quantity::WeightKg => "(-inf, inf)",
            Quantity::BatteryPct => "[0, 100]",
        }
    }

    /// The rejection code for a value outside [`Quantity::range`].
    pub const fn out_of_range_code(self) -> &'static str {
        match self {
            Quantity::Lat => "lat_out_of_range",
            Quantity::Lon => "lon_out_of_range",
            Quantity::SpeedKmh => "speed_out_of_range",
            Quantity::HeadingDeg => "heading_out_of_range",
            Quantity::AccuracyM => "accuracy_out_of_range",
            Quantity::TempC => "temp_out_of_range",
            Quantity::WeightKg => "weight_out_of_range",
            Quantity::BatteryPct => "battery_out_of_range",
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.native_name())
    }
}

/// Why a payload (returned as the `Err` of a decoder) or one record of it (listed in
/// [`DecodeOutcome::rejections`](super::DecodeOutcome::rejections)) was refused.
///
/// [`Rejection::code`] is a stable snake_case label for metrics and the `reason` of the
/// `landport/{tenant}/{device}/rejected` message; the `Display` text is for people and names
/// the record and field, e.g. `readings[3].lat: 91.2 is outside [-90, 90]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The payload is over [`Limits::max_payload_bytes`](super::Limits::max_payload_bytes).
    #[error("payload: {len_bytes} bytes is over the {max_bytes}-byte limit")]
    PayloadTooLarge { len_bytes: usize, max_bytes: usize },

    /// Nothing but whitespace (or nothing at all).
    #[error("payload: empty")]
    EmptyPayload,

    /// The payload is not UTF-8, so it cannot be JSON.
    #[error("payload: not UTF-8 (invalid byte sequence at byte {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },

    /// Not JSON (truncated, a syntax error, nested deeper than 128 levels, trailing bytes).
    /// `at` is the payload, or the record of a batch whose text is broken.
    #[error("{at}: not valid JSON: {detail}")]
    InvalidJson { at: FieldPath, detail: String },

    /// A top-level array with no records in it.
    #[error("payload: an empty array holds no readings")]
    EmptyBatch,

    /// A value of the wrong JSON type: a string where a number belongs (`"NaN"`), a float
    /// sequence number, a record that is not an object.
    #[error("{at}: expected {expected}, found {found}")]
    WrongType {
        at: FieldPath,
        expected: &'static str,
        /// What was there, shortened (`string "NaN"`, `array`).
        found: String,
    },

    /// A required field is absent: `ts`, or one of `lat`/`lon` when the other is present, or a
    /// position when speed, heading or accuracy is given.
    #[error("{at}: missing{}", required_with_text(.required_with))]
    MissingField {
        at: FieldPath,
        /// The field whose presence makes this one required.
        required_with: Option<&'static str>,
    },

    /// The same field twice in one object: which one counts would be a guess.
    #[error("{at}: appears twice in the same object")]
    DuplicateField { at: FieldPath },

    /// A number no f64 can hold (`1e400`), or a computed value that overflowed.
    #[error("{at}: not a finite number: {detail}")]
    NonFinite { at: FieldPath, detail: String },

    /// A value outside its quantity's range; the code is per quantity (`lat_out_of_range`, ...).
    #[error("{at}: {value} is outside {}", .quantity.range_text())]
    OutOfRange {
        at: FieldPath,
        quantity: Quantity,
        value: f64,
    },

    /// Latitude and longitude both exactly 0: a receiver's default, not a fix.
    #[error("{at}: position (0, 0) is a receiver's default, not a fix")]
    NullIsland { at: FieldPath },

    /// A device time further ahead of the server's clock than
    /// [`Limits::max_future_ms`](super::Limits::max_future_ms).
    #[error(
        "{at}: {ts_ms} ms since the epoch is {} ms ahead of now ({now_ms}); at most {max_future_ms} ms is allowed",
        .ts_ms.saturating_sub(*.now_ms)
    )]
    TsTooFarAhead {
        at: FieldPath,
        ts_ms: TimestampMs,
        now_ms: TimestampMs,
        max_future_ms: i64,
    },

    /// A device time before 2000-01-01T00:00:00Z: an unset clock, or seconds sent as ms.
    #[error("{at}: {ts_ms} ms since the epoch is before 2000-01-01{}", seconds_hint(*.ts_ms))]
    TsTooOld { at: FieldPath, ts_ms: TimestampMs },

    /// A time that cannot be read: not RFC 3339, or outside what milliseconds in an i64 hold.
    #[error("{at}: {detail}")]
    TsInvalid { at: FieldPath, detail: String },

    /// A topic outside `landport/{tenant}/{device}/{telemetry|senml}` and
    /// `owntracks/{user}/{device}`.
    #[error("topic {topic:?}: not one Landport reads")]
    UnknownTopic {
        /// The topic, shortened to 128 characters.
        topic: String,
    },

    /// A tenant, device or user id in a topic that breaks the id rules (1 to 64 characters of
    /// `A-Z a-z 0-9 . _ -`).
    #[error("topic: {what} id {id:?} {reason}")]
    BadId {
        /// `tenant`, `device` or `user`.
        what: &'static str,
        /// The id, shortened to 80 characters.
        id: String,
        reason: &'static str,
    },

    /// A SenML pack that breaks RFC 8428: a bad name, a record with no value or two.
    #[error("{at}: {detail}")]
    SenmlInvalid { at: FieldPath, detail: String },

    /// Valid SenML that Landport has no field for: a unit such as `%RH`, a string or boolean
    /// value, a second temperature at the same time, a must-understand label, `bver` > 10.
    #[error("{at}: {detail}")]
    SenmlUnsupported { at: FieldPath, detail: String },

    /// An OwnTracks `_type: "encrypted"` message: Landport holds no keys.
    #[error("payload: OwnTracks encrypted messages are not supported (turn encryption off)")]
    OwnTracksEncrypted,
}

fn required_with_text(required_with: &Option<&'static str>) -> String {
    match required_with {
        Some(other) => format!(" (required with {other})"),
        None => String::new(),
    }
}

/// Epoch seconds from 2000 to 2100 read as milliseconds land in January 1970.
fn seconds_hint(ts_ms: TimestampMs) -> &'static str {
    if (946_684_800..4_102_444_800).contains(&ts_ms) {
        " (epoch seconds? ts takes milliseconds)"
    } else {
        ""
    }
}

impl Rejection {
    /// Every code [`Rejection::code`] can return, for registering metrics up front.
    pub const CODES: &'static [&'static str] = &[
        "payload_too_large",
        "empty_payload",
        "invalid_utf8",
        "invalid_json",
        "empty_batch",
        "wrong_type",
        "missing_field",
        "duplicate_field",
        "non_finite",
        "lat_out_of_range",
        "lon_out_of_range",
        "speed_out_of_range",
        "heading_out_of_range",
        "accuracy_out_of_range",
        "temp_out_of_range",
        "weight_out_of_range",
        "battery_out_of_range",
        "null_island",
        "ts_too_far_ahead",
        "ts_too_old",
        "ts_invalid",
        "unknown_topic",
        "bad_id",
        "senml_invalid",
        "senml_unsupported",
        "owntracks_encrypted",
    ];

    /// A stable snake_case label: the metrics label and the `reason` of a rejected message.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::PayloadTooLarge { .. } => "payload_too_large",
            Rejection::EmptyPayload => "empty_payload",
            Rejection::InvalidUtf8 { .. } => "invalid_utf8",
            Rejection::InvalidJson { .. } => "invalid_json",
            Rejection::EmptyBatch => "empty_batch",
            Rejection::WrongType { .. } => "wrong_type",
            Rejection::MissingField { .. } => "missing_field",
            Rejection::DuplicateField { .. } => "duplicate_field",
            Rejection::NonFinite { .. } => "non_finite",
            Rejection::OutOfRange { quantity, .. } => quantity.out_of_range_code(),
            Rejection::NullIsland { .. } => "null_island",
            Rejection::TsTooFarAhead { .. } => "ts_too_far_ahead",
            Rejection::TsTooOld { .. } => "ts_too_old",
            Rejection::TsInvalid { .. } => "ts_invalid",
            Rejection::UnknownTopic { .. } => "unknown_topic",
            Rejection::BadId { .. } => "bad_id",
            Rejection::SenmlInvalid { .. } => "senml_invalid",
            Rejection::SenmlUnsupported { .. } => "senml_unsupported",
            Rejection::OwnTracksEncrypted => "owntracks_encrypted",
        }
    }
}

/// `s` cut to at most `max_chars` characters (with `...` when cut), for messages that quote
/// outside input.
pub(crate) fn excerpt(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}...", &s[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_the_payload() {
        assert_eq!(FieldPath::PAYLOAD.to_string(), "payload");
        assert_eq!(FieldPath::single("lat").to_string(), "lat");
        assert_eq!(
            FieldPath::item("readings", 3, "lat").to_string(),
            "readings[3].lat"
        );
        assert_eq!(FieldPath::item("records", 0, "").to_string(), "records[0]");
    }

    #[test]
    fn out_of_range_message_names_record_field_and_range() {
        let r = Rejection::OutOfRange {
            at: FieldPath::item("readings", 3, "lat"),
            quantity: Quantity::Lat,
            value: 91.2,
        };
        assert_eq!(r.to_string(), "readings[3].lat: 91.2 is outside [-90, 90]");
        assert_eq!(r.code(), "lat_out_of_range");
    }

    #[test]
    fn too_old_hints_at_seconds_sent_as_milliseconds() {
        let r = Rejection::TsTooOld {
            at: FieldPath::single("ts"),
            ts_ms: 1_764_000_000,
        };
        assert!(r.to_string().contains("epoch seconds?"), "{r}");
        let r = Rejection::TsTooOld {
            at: FieldPath::single("ts"),
            ts_ms: 0,
        };
        assert!(!r.to_string().contains("epoch seconds?"), "{r}");
    }

    #[test]
    fn every_quantity_code_is_listed() {
        for q in Quantity::ALL {
            assert!(Rejection::CODES.contains(&q.out_of_range_code()), "{q}");
            assert_eq!(Quantity::ALL[q.index()], q);
        }
    }

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in Rejection::CODES {
            assert!(seen.insert(code), "{code} twice");
            assert!(
                code.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{code}"
            );
        }
    }

    #[test]
    fn excerpt_cuts_on_char_boundaries() {
        assert_eq!(excerpt("abc", 5), "abc");
        assert_eq!(excerpt("ééééé", 2), "éé...");
    }
}
