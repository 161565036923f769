//! When the pipeline prunes telemetry and events, and up to where. Pure: the caller passes the time (the
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
    /// Events stored longer ago than this are pruned (`storage.events_retention_days`).
    events_retention: Duration,
    /// Monotonic time of the last prune; `None` until the first.
    last: Option<Instant>,
}

/// Up to where one prune deletes, server time, epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Readings received before this go.
    pub telemetry_ms: TimestampMs,
    /// Events stored before this go.
    pub events_ms: TimestampMs,
}

impl RetentionSchedule {
    pub fn new(retention: Duration, events_retention: Duration) -> Self {
        RetentionSchedule {
            retention,
            events_retention,
            last: None,
        }
    }

    /// The cutoffs to prune with when a prune is due at `now` (monotonic) / `now_ms` (server
    /// time, epoch milliseconds), and `None` when not. Each cutoff is `now_ms - retention`:
    /// [`Store::prune_telemetry`](landport_store::Store::prune_telemetry) and
    /// [`Store::prune_events`](landport_store::Store::prune_events) delete what came *before*
    /// it, so a row exactly `retention` old, not older, is kept until the next prune.
    pub fn due(&mut self, now: Instant, now_ms: TimestampMs) -> Option<Cutoffs> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < PRUNE_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        let before = |retention: Duration| {
            now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
        };
        Some(Cutoffs {
            telemetry_ms: before(self.retention),
            events_ms: before(self.events_retention),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: TimestampMs = 1_795_400_000_000;
    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn the_first_prune_is_due_at_once_with_the_cutoff_retention_before_now() {
        let mut s = RetentionSchedule::new(30 * DAY, 90 * DAY);
        let start = Instant::now();
        assert_eq!(
            s.due(start, NOW_MS),
            Some(Cutoffs {
                telemetry_ms: NOW_MS - 30 * 86_400_000,
                events_ms: NOW_MS - 90 * 86_400_000,
            })
        );
    }

    #[test]
    fn the_next_prune_comes_an_hour_later_not_before() {
        let mut s = RetentionSchedule::new(DAY, DAY);
        let start = Instant::now();
        assert!(s.due(start, NOW_MS).is_some());
        let almost = PRUNE_EVERY - Duration::from_millis(1);
        assert_eq!(s.due(start + almost, NOW_MS + 3_599_999), None);
        let hour = start + PRUNE_EVERY;
        assert_eq!(
            s.due(hour, NOW_MS + 3_600_000).map(|c| c.telemetry_ms),
            Some(NOW_MS + 3_600_000 - 86_400_000)
        );
        // and the hour counts from that prune
        assert_eq!(s.due(hour + almost, NOW_MS), None);
        assert!(s.due(hour + PRUNE_EVERY, NOW_MS).is_some());
    }

    #[test]
    fn a_retention_past_the_epoch_does_not_wrap() {
        let mut s = RetentionSchedule::new(Duration::MAX, Duration::MAX);
        let c = s.due(Instant::now(), NOW_MS).unwrap();
        assert_eq!(
            (c.telemetry_ms, c.events_ms),
            (NOW_MS - i64::MAX, NOW_MS - i64::MAX)
        );
    }
}
