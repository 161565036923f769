//! When the pipeline prunes telemetry, and up to where. Pure: the caller passes the time (the
//! pipeline's [`Clock`](crate::driver::Clock)), so the schedule is tested without a runtime or a wait.

use std::time::{Duration, Instant};

use landport_tracker::TimestampMs;

/// Time between two prunes (the first runs at start).
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The retention schedule: a prune at start, then one every [`PRUNE_EVERY`].
#[derive(Debug, Clone)]
pub struct RetentionSchedule {
    /// Telemetry received longer ago than this is pruned.
    retention: Duration,
    /// Monotonic time of the last prune; `None` until the first.
    last: Option<Instant>,
}

impl RetentionSchedule {
    pub fn new(retention: Duration) -> Self {
        RetentionSchedule {
            retention,
            last: None,
        }
    }

    /// The cutoff to prune with when a prune is due at `now` (monotonic) / `now_ms` (server
    /// time, epoch milliseconds), and `None` when not. The cutoff is `now_ms - retention`:
    /// [`Store::prune_telemetry`](landport_store::Store::prune_telemetry) deletes what was
    /// received *before* it, so a reading received exactly at the cutoff (exactly `retention`
    /// old, not older) is kept until the next prune.
    pub fn due(&mut self, now: Instant, now_ms: TimestampMs) -> Option<TimestampMs> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < PRUNE_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        let retention_ms = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        Some(now_ms.saturating_sub(retention_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: TimestampMs = 1_795_400_000_000;
    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn the_first_prune_is_due_at_once_with_the_cutoff_retention_before_now() {
        let mut s = RetentionSchedule::new(30 * DAY);
        let start = Instant::now();
        assert_eq!(s.due(start, NOW_MS), Some(NOW_MS - 30 * 86_400_000));
    }

    #[test]
    fn the_next_prune_comes_an_hour_later_not_before() {
        let mut s = RetentionSchedule::new(DAY);
        let start = Instant::now();
        assert!(s.due(start, NOW_MS).is_some());
        let almost = PRUNE_EVERY - Duration::from_millis(1);
        assert_eq!(s.due(start + almost, NOW_MS + 3_599_999), None);
        let hour = start + PRUNE_EVERY;
        assert_eq!(
            s.due(hour, NOW_MS + 3_600_000),
            Some(NOW_MS + 3_600_000 - 86_400_000)
        );
        // and the hour counts from that prune
        assert_eq!(s.due(hour + almost, NOW_MS), None);
        assert!(s.due(hour + PRUNE_EVERY, NOW_MS).is_some());
    }

    #[test]
    fn a_retention_past_the_epoch_does_not_wrap() {
        let mut s = RetentionSchedule::new(Duration::MAX);
        assert_eq!(s.due(Instant::now(), NOW_MS), Some(NOW_MS - i64::MAX));
    }
}
