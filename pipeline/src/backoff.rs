//! Retry delays (MQTT reconnects, InfluxDB writes): exponential growth with "full jitter" (each delay uniform in
//! `[0, min(max, initial * 2^attempt)]`), so that many clients cut off by the same broker
//! restart don't come back in lock step. Pure: no clock, no global RNG; the caller seeds it.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Delays between reconnect attempts. Call [`Backoff::next_delay`] after each failure and
/// [`Backoff::reset`] after a successful connect.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Ceiling of the first delay (attempt 0).
    initial: Duration,
    /// Ceiling the growth stops at.
    max: Duration,
    /// Failures since the last reset; the ceiling is `initial * 2^attempt`.
    attempt: u32,
    /// Source of the jitter; seeded by the caller so tests are deterministic.
    rng: SmallRng,
}

impl Backoff {
    /// Delays start under `initial` and double up to `max` (`max` below `initial` is raised
    /// to it; a zero `initial` is taken as 1 ms so the delays can grow).
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The upper bound of the next delay: `min(max, initial * 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        // 2^31 * 1 ms is already 24 days: saturate instead of overflowing.
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt, uniform in `[0, ceiling()]`; then the ceiling
    /// doubles.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let delay = Duration::from_nanos(self.rng.random_range(0..=nanos));
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Failures since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Back to the first ceiling, after a successful connect.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn backoff(seed: u64) -> Backoff {
        Backoff::new(100 * MS, 30_000 * MS, seed)
    }

    #[test]
    fn ceiling_doubles_from_initial_and_stops_at_max() {
        let mut b = backoff(1);
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            ceilings.push(b.ceiling().as_millis());
            b.next_delay();
        }
        assert_eq!(
            ceilings,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
    }

    #[test]
    fn every_delay_lies_within_zero_and_its_ceiling() {
        for seed in 0..50 {
            let mut b = backoff(seed);
            for _ in 0..40 {
                let ceiling = b.ceiling();
                let d = b.next_delay();
                assert!(d <= ceiling, "seed {seed}: {d:?} > {ceiling:?}");
                assert!(d <= 30_000 * MS);
            }
        }
    }

    #[test]
    fn jitter_spreads_delays_across_the_range() {
        // 2,000 draws under one 30 s ceiling: both halves are hit, and they are not all equal.
        let mut b = backoff(7);
        for _ in 0..20 {
            b.next_delay();
        }
        let draws: Vec<Duration> = (0..2_000).map(|_| b.next_delay()).collect();
        let low = draws.iter().filter(|d| **d < 15_000 * MS).count();
        assert!(
            (800..=1_200).contains(&low),
            "{low} of 2000 in the lower half"
        );
        let mean = draws.iter().sum::<Duration>() / 2_000;
        assert!(mean > 13_500 * MS && mean < 16_500 * MS, "mean {mean:?}");
    }

    #[test]
    fn same_seed_gives_same_delays() {
        let a: Vec<_> = std::iter::repeat_with({
            let mut b = backoff(42);
            move || b.next_delay()
        })
        .take(10)
        .collect();
        let mut b = backoff(42);
        let again: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(a, again);
    }

    #[test]
    fn reset_after_a_successful_connect_starts_over() {
        let mut b = backoff(3);
        for _ in 0..8 {
            b.next_delay();
        }
        assert_eq!(b.attempt(), 8);
        assert_eq!(b.ceiling(), 25_600 * MS);
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.ceiling(), 100 * MS);
        assert!(b.next_delay() <= 100 * MS);
    }

    #[test]
    fn degenerate_bounds_are_made_usable() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, 0);
        assert_eq!(b.ceiling(), MS);
        assert!(b.next_delay() <= MS);
        let mut b = Backoff::new(5 * MS, MS, 0);
        assert_eq!(b.ceiling(), 5 * MS);
        for _ in 0..100 {
            assert!(b.next_delay() <= 5 * MS);
        }
        // Many failures never overflow.
        let mut b = Backoff::new(MS, Duration::MAX, 0);
        for _ in 0..200 {
            b.next_delay();
        }
        assert!(b.ceiling() >= MS);
    }
}
