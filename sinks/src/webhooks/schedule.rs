//! When a failed delivery is tried again: exponential backoff with full jitter (each delay
//! uniform in `[0, ceiling]`, the ceiling `RETRY_FIRST * 2^(n-1)` after the n-th failure, at
//! most [`RETRY_MAX`]), through the pipeline's one [`Backoff`], for up to the retry window
//! from when the delivery was queued; the last try falls at the window's end. Pure: the
//! caller passes the time and a seed.

use std::time::Duration;

use landport_pipeline::Backoff;
use landport_store::AttemptOutcome;

/// The first retry comes within this long of the first failure.
pub const RETRY_FIRST: Duration = Duration::from_secs(10);
/// Never longer than this between two tries.
pub const RETRY_MAX: Duration = Duration::from_secs(3600);

/// The delay before the next try after `failures` failed attempts (at least 1).
pub fn retry_delay(failures: u32, seed: u64) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    let ceiling = RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX);
    // A fresh Backoff whose first ceiling is this one: its first delay is the full jitter.
    Backoff::new(ceiling, RETRY_MAX, seed).next_delay()
}

/// What follows a failed attempt at `now_ms` of a delivery queued at `queued_ms` that has now
/// failed `failures` times: another try, or none past the `window`.
pub fn after_failure(
    failures: u32,
    now_ms: i64,
    queued_ms: i64,
    window: Duration,
    seed: u64,
) -> AttemptOutcome {
    let end = queued_ms.saturating_add(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
    if now_ms >= end {
        return AttemptOutcome::GaveUp;
    }
    let delay = i64::try_from(retry_delay(failures, seed).as_millis()).unwrap_or(i64::MAX);
    AttemptOutcome::RetryAt(now_ms.saturating_add(delay).min(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_retry_is_within_10_s_and_no_pause_exceeds_an_hour() {
        for seed in 0..500 {
            assert!(retry_delay(1, seed) <= RETRY_FIRST);
            assert!(retry_delay(2, seed) <= 2 * RETRY_FIRST);
            for n in [9, 10, 30, 1000, u32::MAX] {
                assert!(retry_delay(n, seed) <= RETRY_MAX, "failure {n}");
            }
        }
    }

    #[test]
    fn delays_are_jittered_over_the_whole_range_and_grow() {
        let firsts: Vec<Duration> = (0..200).map(|s| retry_delay(1, s)).collect();
        assert!(firsts.iter().any(|d| *d < RETRY_FIRST / 4));
        assert!(firsts.iter().any(|d| *d > RETRY_FIRST * 3 / 4));
        let mean = |n| {
            (0..400)
                .map(|s| retry_delay(n, s).as_secs_f64())
                .sum::<f64>()
                / 400.0
        };
        assert!(mean(4) > 2.0 * mean(2), "{} vs {}", mean(4), mean(2));
        let late = mean(30);
        assert!(
            late > 1200.0 && late < 2400.0,
            "capped at an hour, mean {late}"
        );
    }

    #[test]
    fn retries_stop_at_the_end_of_the_window() {
        let h = Duration::from_secs(3600);
        let q = 1_000_000;
        match after_failure(1, q + 1, q, h, 7) {
            AttemptOutcome::RetryAt(t) => assert!(t > q && t <= q + 1 + 10_000),
            other => panic!("{other:?}"),
        }
        // Close to the end: the last try is at the end, not after it.
        match after_failure(12, q + 3_599_000, q, h, 7) {
            AttemptOutcome::RetryAt(t) => assert!(t <= q + 3_600_000),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            after_failure(13, q + 3_600_000, q, h, 7),
            AttemptOutcome::GaveUp
        );
    }
}
