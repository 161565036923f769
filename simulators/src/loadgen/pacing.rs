//! Pacing a fixed rate in small time slices, and splitting work over connections. Pure: the
//! caller reads the clock and sleeps.
//!
//! A paced sender publishes, at the start of each slice, everything that has become due since
//! it started (`due`), then sleeps until the next slice (`next_slice`). Being cumulative, the
//! schedule does not drift: a slice that runs late is made up by the next one.

use std::time::Duration;

/// Length of one pacing slice: short enough that a 5,000/s stream goes out as bursts of 10
/// rather than one burst a second, long enough that the sleeps cost nothing.
pub const SLICE: Duration = Duration::from_millis(2);

/// Messages due by `elapsed` since the start at `rate_per_s`: floor(rate x elapsed).
pub fn due(rate_per_s: f64, elapsed: Duration) -> u64 {
    (rate_per_s * elapsed.as_secs_f64()).floor() as u64
}

/// Start of the slice after the one `elapsed` falls in, as an offset from the start.
pub fn next_slice(elapsed: Duration, slice: Duration) -> Duration {
    let n = elapsed.as_nanos() / slice.as_nanos() + 1;
    // A u64 of nanoseconds is 584 years: a bench never gets there.
    Duration::from_nanos((n * slice.as_nanos()) as u64)
}

/// Part `index` of `total` split as evenly as possible into `parts` (the first `total % parts`
/// get one more).
pub fn share(total: u64, parts: u64, index: u64) -> u64 {
    total / parts + u64::from(index < total % parts)
}

/// Whether the `n`-th message (counting from 1) is the deliberately malformed one of every
/// `every` (`None` or `Some(0)`: none is).
pub fn is_malformed(n: u64, every: Option<u64>) -> bool {
    every.is_some_and(|e| e > 0 && n.is_multiple_of(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_counts_whole_messages_since_the_start() {
        assert_eq!(due(5_000.0, Duration::ZERO), 0);
        assert_eq!(due(5_000.0, Duration::from_millis(2)), 10);
        assert_eq!(due(5_000.0, Duration::from_micros(2_100)), 10);
        assert_eq!(due(50_000.0, Duration::from_secs(10)), 500_000);
        assert_eq!(due(3.0, Duration::from_millis(999)), 2);
    }

    #[test]
    fn paced_slices_add_up_to_the_rate_without_drift() {
        // Walk the schedule as a sender would, starting each slice a little late, until
        // 20,000 are out at 20,000 per 3 s: it finishes on time, give or take one slice.
        let rate = 20_000.0 / 3.0;
        let late = Duration::from_micros(137);
        let mut elapsed = Duration::ZERO;
        let mut sent = 0;
        loop {
            sent = sent.max(due(rate, elapsed).min(20_000));
            if sent == 20_000 {
                break;
            }
            elapsed = next_slice(elapsed, SLICE) + late;
        }
        assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
        assert!(
            elapsed <= Duration::from_secs(3) + SLICE + late,
            "{elapsed:?}"
        );
    }

    #[test]
    fn next_slice_is_strictly_later_and_on_the_grid() {
        let s = Duration::from_millis(2);
        assert_eq!(next_slice(Duration::ZERO, s), s);
        assert_eq!(next_slice(Duration::from_micros(1_999), s), s);
        assert_eq!(next_slice(s, s), 2 * s);
        assert_eq!(next_slice(Duration::from_micros(4_001), s), 3 * s);
    }

    #[test]
    fn shares_are_even_and_sum_to_the_total() {
        for (total, parts) in [(10, 4), (200_000, 4), (3, 4), (0, 2), (7, 1)] {
            let shares: Vec<u64> = (0..parts).map(|i| share(total, parts, i)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total);
            let (min, max) = (shares.iter().min(), shares.iter().max());
            assert!(max.unwrap() - min.unwrap() <= 1, "{shares:?}");
        }
    }

    #[test]
    fn one_in_every_n_is_malformed() {
        let bad = (1..=1_000).filter(|&n| is_malformed(n, Some(100))).count();
        assert_eq!(bad, 10);
        assert!(!is_malformed(100, None));
        assert!(!is_malformed(100, Some(0)));
    }
}
