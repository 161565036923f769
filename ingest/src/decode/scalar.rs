//! [`Scalar`]: a field's JSON value, whatever its type, read without failing.
//!
//! The decoders read every known field as a `Scalar` instead of as the type they want, so a
//! wrong type (`"lat": "NaN"`) is not a serde error that would abort the whole payload, only a
//! fact that validation turns into a rejection of that one record. Strings borrow from the
//! payload unless they hold escapes; nested arrays and objects are skipped without recursion
//! (serde_json's `ignore_value` keeps its own stack).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::rejection::{FieldPath, Rejection, excerpt};

/// One JSON value, with only as much kept as validation needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    /// A non-negative integer.
    U64(u64),
    /// A negative integer.
    I64(i64),
    /// A number with a fraction or an exponent.
    F64(f64),
    /// A string without escapes, borrowed from the payload.
    Str(&'a str),
    /// A string with escapes, unescaped (rare: kept out of `Str` so that `Scalar` stays 24
    /// bytes, which matters on the hot path).
    EscapedStr(Box<str>),
    Bool(bool),
    Null,
    Array,
    Object,
}

impl<'a> Scalar<'a> {
    /// The string, if this is one, borrowed from the payload where it can be.
    pub(crate) fn text(&self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(s) => Some(Cow::Borrowed(s)),
            Scalar::EscapedStr(s) => Some(Cow::Owned(s.to_string())),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::U64(v) => Some(v as f64),
            Scalar::I64(v) => Some(v as f64),
            Scalar::F64(v) => Some(v),
            _ => None,
        }
    }

    /// What this is, for "expected X, found Y" messages: `number 3.5`, `string "NaN"`, `array`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Scalar::U64(v) => format!("number {v}"),
            Scalar::I64(v) => format!("number {v}"),
            Scalar::F64(v) => format!("number {v}"),
            Scalar::Str(s) => format!("string {:?}", excerpt(s, 32)),
            Scalar::EscapedStr(s) => format!("string {:?}", excerpt(s, 32)),
            Scalar::Bool(b) => format!("boolean {b}"),
            Scalar::Null => "null".to_owned(),
            Scalar::Array => "array".to_owned(),
            Scalar::Object => "object".to_owned(),
        }
    }

    pub(crate) fn wrong_type(&self, at: FieldPath, expected: &'static str) -> Rejection {
        Rejection::WrongType {
            at,
            expected,
            found: self.describe(),
        }
    }
}

/// A present field as a finite number, or the rejection saying why not.
pub(crate) fn number(value: &Scalar<'_>, at: impl FnOnce() -> FieldPath) -> Result<f64, Rejection> {
    match value.as_f64() {
        Some(v) if v.is_finite() => Ok(v),
        // serde_json refuses NaN and infinite literals; kept so that no path can let one in.
        Some(v) => Err(Rejection::NonFinite {
            at: at(),
            detail: v.to_string(),
        }),
        None => Err(value.wrong_type(at(), "a number")),
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(if v >= 0 {
            Scalar::U64(v as u64)
        } else {
            Scalar::I64(v)
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::EscapedStr(v.into()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::EscapedStr(v.into_boxed_str()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// Reads the value of a field into `slot`, or notes a duplicate (and skips the value) when the
/// field was already seen. `null` counts as absent.
pub(crate) fn read_field<'de, A: MapAccess<'de>>(
    map: &mut A,
    slot: &mut Option<Scalar<'de>>,
    name: &'static str,
    duplicate: &mut Option<&'static str>,
) -> Result<(), A::Error> {
    if slot.is_some() {
        duplicate.get_or_insert(name);
        map.next_value::<IgnoredAny>()?;
    } else {
        match map.next_value::<Scalar<'de>>()? {
            Scalar::Null => {}
            value => *slot = Some(value),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Scalar<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn numbers_keep_their_integer_ness() {
        assert_eq!(parse("181"), Scalar::U64(181));
        assert_eq!(parse("-18"), Scalar::I64(-18));
        assert_eq!(parse("-18.4"), Scalar::F64(-18.4));
        assert_eq!(parse("1e3"), Scalar::F64(1000.0));
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        assert_eq!(parse(r#""NaN""#), Scalar::Str("NaN"));
        assert_eq!(parse(r#""N\u0061N""#), Scalar::EscapedStr("NaN".into()));
        assert_eq!(parse(r#""N\u0061N""#).text().as_deref(), Some("NaN"));
    }

    #[test]
    fn a_scalar_stays_small() {
        assert_eq!(std::mem::size_of::<Option<Scalar<'_>>>(), 24);
    }

    #[test]
    fn nested_values_are_skipped_not_refused() {
        assert_eq!(parse(r#"[1, {"a": [2]}]"#), Scalar::Array);
        assert_eq!(parse(r#"{"a": {"b": null}}"#), Scalar::Object);
        assert_eq!(parse("null"), Scalar::Null);
    }

    #[test]
    fn wrong_types_describe_what_was_found() {
        let err = number(&parse(r#""NaN""#), || FieldPath::single("lat")).unwrap_err();
        assert_eq!(err.code(), "wrong_type");
        assert_eq!(
            err.to_string(),
            r#"lat: expected a number, found string "NaN""#
        );
    }
}
