//! The bound of the spool: how many of the oldest undelivered rows to give up on (pure).
//!
//! The store is the sink's spool: rows behind a cursor wait in SQLite until InfluxDB takes
//! them. While InfluxDB is down that backlog grows with every reading, and it is bounded by
//! `spool_max_bytes`: once the estimated backlog exceeds it, the sink moves its cursors past the
//! oldest rows and counts them as dropped (with an error in the log). Those rows stay in the
//! store (history, API, replay); only their copy in InfluxDB is given up. That is the trade-off
//! of SPEC 7: tracking never waits on InfluxDB, and the disk the spool may claim is bounded.
//!
//! The backlog is estimated from rowid and seq differences (rows x a typical size), which
//! costs two look-ups instead of a scan. Rowids skip numbers only for readings that retention
//! pruned or transactions that rolled back, so the estimate errs on the side of more.

/// Estimated bytes per undelivered reading (a stored row with its index entries, or its line
/// of line protocol: both about 100 bytes).
pub const TELEMETRY_ROW_BYTES: u64 = 100;

/// Estimated bytes per undelivered event (the JSON envelope is the bulk).
pub const EVENT_ROW_BYTES: u64 = 400;

/// Once over the bound, the backlog is cut to this share of it (percent), so that a sink that
/// keeps failing drops a chunk now and then rather than a few rows after every attempt.
pub const REFILL_PERCENT: u64 = 90;

/// Rows behind each cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub telemetry: u64,
    pub events: u64,
}

impl Backlog {
    /// Estimated size, bytes.
    pub fn bytes(self) -> u64 {
        self.telemetry
            .saturating_mul(TELEMETRY_ROW_BYTES)
            .saturating_add(self.events.saturating_mul(EVENT_ROW_BYTES))
    }
}

/// How many of the oldest rows of each stream to drop so that the backlog fits
/// `max_bytes`: none while it fits; otherwise enough to bring it down to
/// [`REFILL_PERCENT`] of the bound, readings first (they are the bulk, and one reading of a
/// stream of many matters less than an event).
pub fn rows_to_drop(backlog: Backlog, max_bytes: u64) -> Backlog {
    let total = backlog.bytes();
    if total <= max_bytes {
        return Backlog::default();
    }
    let target = max_bytes / 100 * REFILL_PERCENT + max_bytes % 100 * REFILL_PERCENT / 100;
    let mut excess = total - target;
    let telemetry = excess.div_ceil(TELEMETRY_ROW_BYTES).min(backlog.telemetry);
    excess = excess.saturating_sub(telemetry.saturating_mul(TELEMETRY_ROW_BYTES));
    let events = excess.div_ceil(EVENT_ROW_BYTES).min(backlog.events);
    Backlog { telemetry, events }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(telemetry: u64, events: u64) -> Backlog {
        Backlog { telemetry, events }
    }

    #[test]
    fn nothing_is_dropped_while_the_backlog_fits() {
        assert_eq!(rows_to_drop(backlog(10_000, 10), 1 << 30), backlog(0, 0));
        assert_eq!(rows_to_drop(backlog(100, 0), 10_000), backlog(0, 0));
    }

    #[test]
    fn an_overflow_drops_the_oldest_readings_down_to_ninety_percent() {
        // 1,000 rows x 100 B against 50,000 B: keep 450 rows
        assert_eq!(rows_to_drop(backlog(1_000, 0), 50_000), backlog(550, 0));
        let after = backlog(450, 0);
        assert_eq!(rows_to_drop(after, 50_000), backlog(0, 0));
    }

    #[test]
    fn events_go_only_when_dropping_every_reading_is_not_enough() {
        assert_eq!(rows_to_drop(backlog(10, 100), 10_000), backlog(10, 78));
        assert_eq!(rows_to_drop(backlog(1_000, 100), 100_000), backlog(500, 0));
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let d = rows_to_drop(backlog(u64::MAX, u64::MAX), 1 << 40);
        assert!(d.telemetry > 0);
    }
}
