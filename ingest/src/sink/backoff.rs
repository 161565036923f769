//! Exponential backoff with jitter between failed writes (pure: the caller sleeps).

use std::time::Duration;

/// Delays for successive retries: the n-th failure waits between half and all of
/// `min(initial * 2^n, max)`, the part above half drawn at random ("equal jitter"), so that
/// sinks of several instances that lost the same server do not retry in step, and no wait is
/// ever shorter than half the nominal one.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Nominal delay after the first failure.
    initial: Duration,
    /// Cap of the nominal delay.
    max: Duration,
    /// Nominal delay of the next failure.
    next: Duration,
    /// State of the jitter generator (splitmix64; quality is not a concern here).
    seed: u64,
}

impl Backoff {
    /// `seed` varies the jitter; any value works (e.g. the clock's nanoseconds).
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        let initial = initial.min(max);
        Backoff {
            initial,
            max,
            next: initial,
            seed,
        }
    }

    /// The delay to wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = nominal / 2;
        let fraction = (self.random() >> 11) as f64 / (1u64 << 53) as f64;
        half + (nominal - half).mul_f64(fraction)
    }

    /// Back to the initial delay, after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    fn random(&mut self) -> u64 {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_cap_and_stay_within_half_to_full() {
        let mut b = Backoff::new(100 * MS, 30_000 * MS, 7);
        let mut nominal = 100 * MS;
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
            nominal = (nominal * 2).min(30_000 * MS);
        }
        assert_eq!(nominal, 30_000 * MS);
    }

    #[test]
    fn a_reset_starts_over() {
        let mut b = Backoff::new(100 * MS, 1_000 * MS, 1);
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        assert!(b.next_delay() <= 100 * MS);
    }

    #[test]
    fn the_jitter_spreads_delays() {
        let mut b = Backoff::new(1_000 * MS, 1_000 * MS, 42);
        let delays: std::collections::HashSet<_> = (0..50).map(|_| b.next_delay()).collect();
        assert!(delays.len() > 40);
    }
}
