//! Payload decoders: outside bytes in, [`Reading`]s and typed [`Rejection`]s out.
//!
//! Pure functions: no I/O, no clock (the server's `now_ms` is passed in), no state between
//! calls. [`decode`] dispatches on the [`TopicKind`] to one decoder per format:
//!
//! - [`native`]: Landport's own JSON (SPEC section 4), one reading or a store-and-forward batch;
//! - [`senml`]: SenML JSON (RFC 8428), records grouped into readings by their time;
//! - [`owntracks`]: OwnTracks `location` messages.
//!
//! A decoder answers `Err(rejection)` when the payload as a whole cannot be read (too large,
//! not UTF-8, not JSON, an empty batch) and otherwise a [`DecodeOutcome`]: the valid readings
//! plus one rejection per refused record, so that one bad record does not lose the rest of a
//! batch. Every reading returned has passed the same checks (module `validate`): finite
//! values in range, lat and lon together and not (0, 0), a time from 2000-01-01 to
//! `now_ms + max_future_ms`.

pub mod native;
pub mod owntracks;
pub mod rejection;
mod scalar;
pub mod senml;
mod validate;

pub use native::{decode_native, encode_native, encode_native_batch};
pub use owntracks::decode_owntracks;
pub use rejection::{FieldPath, Quantity, Rejection};
pub use senml::decode_senml;
pub use validate::MIN_TS_MS;

use landport_tracker::{Reading, TimestampMs};

use crate::topic::TopicKind;

/// Bounds on what a decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload read, bytes (SPEC: 64 KiB). A store-and-forward batch may fill it.
    pub max_payload_bytes: usize,
    /// How far a device time may be ahead of the server's clock, ms (SPEC: 24 h). Device clocks
    /// drift; a time further ahead would pin the device's "latest reading" in the future.
    pub max_future_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 64 * 1024,
            max_future_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// What a readable payload gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodeOutcome {
    /// Valid readings: in payload order (native), or in order of first appearance of their
    /// time (SenML). Not sorted by time: the pipeline orders a batch.
    pub readings: Vec<Reading>,
    /// One per refused record (or, for SenML, per refused record or time group); the readings
    /// above are unaffected by them.
    pub rejections: Vec<Rejection>,
    /// The message is well-formed but carries no telemetry (an OwnTracks `transition`, `lwt`,
    /// `waypoint` ..., or a topic Landport publishes itself): not an error, nothing to count as
    /// rejected. `readings` and `rejections` are then empty.
    pub ignored: bool,
}

impl DecodeOutcome {
    /// An outcome for a message that is deliberately not read.
    pub fn ignored() -> Self {
        DecodeOutcome {
            ignored: true,
            ..DecodeOutcome::default()
        }
    }

    fn push(&mut self, record: Result<Reading, Rejection>) {
        match record {
            Ok(r) => self.readings.push(r),
            Err(e) => self.rejections.push(e),
        }
    }
}

/// Decodes `payload` as the format its topic names. `now_ms` is the server's clock (ms since
/// the epoch): it bounds device times and stands for "now" in SenML.
///
/// `Err` refuses the whole payload; `Ok` may still hold per-record rejections.
pub fn decode(
    topic: &TopicKind<'_>,
    payload: &[u8],
    limits: &Limits,
    now_ms: TimestampMs,
) -> Result<DecodeOutcome, Rejection> {
    match topic {
        TopicKind::Native(_) => decode_native(payload, limits, now_ms),
        TopicKind::Senml(_) => decode_senml(payload, limits, now_ms),
        TopicKind::OwnTracks(_) => decode_owntracks(payload, limits, now_ms),
        TopicKind::Ignored => Ok(DecodeOutcome::ignored()),
    }
}

/// A serde_json error as a rejection: `non_finite` for a number too large for an f64,
/// `invalid_json` for anything else. (serde_json has no public error code for the former;
/// its message is stable.)
fn json_error(e: serde_json::Error, at: FieldPath) -> Rejection {
    let detail = e.to_string();
    if detail.starts_with("number out of range") {
        Rejection::NonFinite { at, detail }
    } else {
        Rejection::InvalidJson { at, detail }
    }
}

/// The checks every format starts with: size, UTF-8, not blank. Drops a leading UTF-8 byte
/// order mark, which RFC 8259 lets a reader ignore and some device stacks send.
fn payload_text<'a>(payload: &'a [u8], limits: &Limits) -> Result<&'a str, Rejection> {
    if payload.len() > limits.max_payload_bytes {
        return Err(Rejection::PayloadTooLarge {
            len_bytes: payload.len(),
            max_bytes: limits.max_payload_bytes,
        });
    }
    let payload = payload.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(payload);
    let text = std::str::from_utf8(payload).map_err(|e| Rejection::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    if text.trim_ascii().is_empty() {
        return Err(Rejection::EmptyPayload);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::DeviceRef;

    #[test]
    fn size_is_checked_before_anything_else() {
        let limits = Limits {
            max_payload_bytes: 4,
            ..Limits::default()
        };
        let err = payload_text(b"\xff\xff\xff\xff\xff", &limits).unwrap_err();
        assert_eq!(err.code(), "payload_too_large");
        assert_eq!(err.to_string(), "payload: 5 bytes is over the 4-byte limit");
        assert!(payload_text(b"{}  ", &limits).is_ok());
    }

    #[test]
    fn invalid_utf8_says_where() {
        let err = payload_text(b"{\"a\xc3\x28", &Limits::default()).unwrap_err();
        assert_eq!(err, Rejection::InvalidUtf8 { valid_up_to: 3 });
    }

    #[test]
    fn a_byte_order_mark_is_dropped() {
        assert_eq!(
            payload_text(b"\xEF\xBB\xBF[1]", &Limits::default()),
            Ok("[1]")
        );
        let err = payload_text(b"\xEF\xBB\xBF", &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "empty_payload");
    }

    #[test]
    fn decode_dispatches_on_the_topic() {
        let dev = DeviceRef::new("acme", "truck-17");
        let now = 1_795_000_000_000;
        let native = br#"{"ts": 1794996000000, "temp_c": 3}"#;
        let out = decode(
            &TopicKind::Native(dev.clone()),
            native,
            &Limits::default(),
            now,
        )
        .unwrap();
        assert_eq!(out.readings.len(), 1);
        let err = decode(
            &TopicKind::Senml(dev.clone()),
            native,
            &Limits::default(),
            now,
        )
        .unwrap_err();
        assert_eq!(err.code(), "wrong_type", "SenML wants an array");
        let err = decode(&TopicKind::OwnTracks(dev), native, &Limits::default(), now).unwrap();
        assert_eq!(
            err.rejections[0].code(),
            "missing_field",
            "OwnTracks wants _type"
        );
        let out = decode(&TopicKind::Ignored, b"\xff", &Limits::default(), now).unwrap();
        assert_eq!(out, DecodeOutcome::ignored());
    }
}
