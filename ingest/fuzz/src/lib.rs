//! The bodies of the fuzz targets, one function per target, each taking the fuzzer's bytes.
//!
//! They live here, not in `fuzz_targets/`, so that `ingest/tests/decoders_fuzz_corpus.rs` can
//! run the very same code (through `#[path]`) over the seed corpus on stable Rust in
//! `cargo test`, without libFuzzer. They only use `landport_ingest` and `landport_tracker`.
//!
//! Each body decodes and then checks what came out: no panic, and every reading returned is
//! one the tracker may take (finite values in range, a time in the accepted window).

use landport_ingest::decode::{
    DecodeOutcome, Limits, MIN_TS_MS, Rejection, decode, decode_native, decode_owntracks,
    decode_senml, encode_native_batch,
};
use landport_ingest::topic::{MAX_ID_CHARS, OwnTracksTenants, TopicKind};
use landport_tracker::Reading;

/// The server clock every body uses: 2026-11-18T11:06:40Z.
pub const NOW_MS: i64 = 1_795_000_000_000;

/// Native JSON: decode, check, and re-encode the readings: decoding that gives them back.
pub fn native(data: &[u8]) {
    let limits = Limits::default();
    if let Some(out) = checked(decode_native(data, &limits, NOW_MS), &limits)
        && !out.readings.is_empty()
    {
        // Re-encoding may write numbers longer than they came (`1e2` -> `100.0`).
        let unlimited = Limits {
            max_payload_bytes: usize::MAX,
            ..limits
        };
        let again = decode_native(
            encode_native_batch(&out.readings).as_bytes(),
            &unlimited,
            NOW_MS,
        )
        .expect("re-encoded readings decode");
        assert!(
            again.rejections.is_empty(),
            "re-encoded readings refused: {:?}",
            again.rejections
        );
        assert_eq!(
            again.readings, out.readings,
            "encode -> decode changed the readings"
        );
    }
}

/// SenML JSON.
pub fn senml(data: &[u8]) {
    let limits = Limits::default();
    checked(decode_senml(data, &limits, NOW_MS), &limits);
}

/// OwnTracks JSON.
pub fn owntracks(data: &[u8]) {
    let limits = Limits::default();
    checked(decode_owntracks(data, &limits, NOW_MS), &limits);
}

/// A topic, then (after the first newline) a payload: classify the topic, check the ids it
/// gives, and decode the payload as that topic says.
pub fn topic(data: &[u8]) {
    let (topic, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(topic) = std::str::from_utf8(topic) else {
        return;
    };
    let tenants = OwnTracksTenants::default();
    let kind = match TopicKind::parse(topic, &tenants) {
        Ok(kind) => kind,
        Err(rejection) => {
            assert!(
                matches!(
                    rejection,
                    Rejection::UnknownTopic { .. } | Rejection::BadId { .. }
                ),
                "topic refused with {rejection:?}"
            );
            return;
        }
    };
    if let Some(device) = kind.device() {
        for id in [&device.tenant, &device.device] {
            assert!((1..=MAX_ID_CHARS).contains(&id.len()), "id length: {id:?}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "id characters: {id:?}"
            );
        }
    }
    let limits = Limits::default();
    let out = checked(decode(&kind, payload, &limits, NOW_MS), &limits);
    if kind == TopicKind::Ignored {
        assert_eq!(out, Some(DecodeOutcome::ignored()));
    }
}

/// Checks a decoder's answer and hands back the outcome, if there is one.
fn checked(result: Result<DecodeOutcome, Rejection>, limits: &Limits) -> Option<DecodeOutcome> {
    let out = match result {
        Ok(out) => out,
        Err(rejection) => {
            assert!(!rejection.code().is_empty() && !rejection.to_string().is_empty());
            return None;
        }
    };
    if out.ignored {
        assert!(out.readings.is_empty() && out.rejections.is_empty());
    }
    for r in &out.readings {
        assert_in_range(r, limits);
    }
    for rejection in &out.rejections {
        assert!(
            Rejection::CODES.contains(&rejection.code()),
            "unlisted code {}",
            rejection.code()
        );
    }
    Some(out)
}

/// Every reading a decoder returns must pass these; the tracker relies on them.
pub fn assert_in_range(r: &Reading, limits: &Limits) {
    assert!(
        r.ts_ms >= MIN_TS_MS && r.ts_ms <= NOW_MS + limits.max_future_ms,
        "ts {}",
        r.ts_ms
    );
    let finite = |v: Option<f64>| v.is_none_or(f64::is_finite);
    assert!(
        finite(r.temp_c) && finite(r.weight_kg) && finite(r.battery_pct),
        "{r:?}"
    );
    assert!(r.temp_c.is_none_or(|t| t >= -273.15), "{r:?}");
    assert!(
        r.battery_pct.is_none_or(|b| (0.0..=100.0).contains(&b)),
        "{r:?}"
    );
    if let Some(f) = r.fix {
        assert!(
            (-90.0..=90.0).contains(&f.lat) && (-180.0..=180.0).contains(&f.lon),
            "{f:?}"
        );
        assert!(!(f.lat == 0.0 && f.lon == 0.0), "null island");
        assert!(
            f.speed_kmh.is_none_or(|s| s.is_finite() && s >= 0.0),
            "{f:?}"
        );
        assert!(
            f.accuracy_m.is_none_or(|a| a.is_finite() && a >= 0.0),
            "{f:?}"
        );
        assert!(
            f.heading_deg.is_none_or(|h| (0.0..360.0).contains(&h)),
            "{f:?}"
        );
    }
}
