//! Latency samples: reading a publish time back out of a received payload, and percentiles.

use serde::Serialize;

/// The epoch-ms `ts` in `payload`: the first `"ts":` (or the JSON-escaped `\"ts\":` inside a
/// dead letter's `payload_excerpt`) followed by digits. `None` when there is none.
pub fn extract_ts_ms(payload: &[u8]) -> Option<i64> {
    for pattern in [&b"\"ts\":"[..], &b"\\\"ts\\\":"[..]] {
        if let Some(at) = find(payload, pattern) {
            let digits = &payload[at + pattern.len()..];
            let end = digits
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(digits.len());
            if end > 0 {
                return std::str::from_utf8(&digits[..end]).ok()?.parse().ok();
            }
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Percentiles of latency samples, milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    /// Nearest-rank percentiles of `samples_ms` (sorted in place); `None` when empty.
    pub fn of(samples_ms: &mut [f64]) -> Option<Self> {
        if samples_ms.is_empty() {
            return None;
        }
        samples_ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let n = samples_ms.len();
            let i = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1;
            samples_ms[i]
        };
        Some(LatencySummary {
            samples: samples_ms.len(),
            p50_ms: rank(50.0),
            p90_ms: rank(90.0),
            p99_ms: rank(99.0),
            max_ms: samples_ms[samples_ms.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_is_found_in_a_reading_and_in_a_dead_letter_excerpt() {
        assert_eq!(
            extract_ts_ms(br#"{"ts":1764000000123,"seq":1}"#),
            Some(1_764_000_000_123)
        );
        let reading = br#"{"ts":1764000000456,"seq":9,"lat":95.000000}"#;
        let dead_letter = serde_json::to_vec(&serde_json::json!({
            "reason": "lat out of range",
            "topic": "landport/bench/truck-1/telemetry",
            "payload_excerpt": String::from_utf8_lossy(reading),
        }))
        .unwrap();
        assert_eq!(extract_ts_ms(&dead_letter), Some(1_764_000_000_456));
    }

    #[test]
    fn no_epoch_ts_gives_none() {
        assert_eq!(extract_ts_ms(b"{}"), None);
        assert_eq!(extract_ts_ms(br#"{"ts":"2026-11-24T08:15:30Z"}"#), None);
        assert_eq!(extract_ts_ms(br#"{"ts":"#), None);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = LatencySummary::of(&mut samples).unwrap();
        assert_eq!(
            (s.samples, s.p50_ms, s.p90_ms, s.p99_ms),
            (100, 50.0, 90.0, 99.0)
        );
        assert_eq!(s.max_ms, 100.0);
        let one = LatencySummary::of(&mut [7.5]).unwrap();
        assert_eq!((one.p50_ms, one.p99_ms), (7.5, 7.5));
        assert_eq!(LatencySummary::of(&mut []), None);
    }
}
