//! Rate-limited logging: one line per interval (per key) goes to the log, the rest are
//! counted and reported with the next line that goes through, so a flood of bad payloads or a
//! server that refuses everything cannot flood the log. The one limiter of the crate (the MQTT
//! source, the pipeline and the InfluxDB sink use it).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Lets one line through per interval and counts the others.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    interval: Duration,
    /// When a line was last let through.
    last: Option<Instant>,
    /// Lines held back since.
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(lines held back since the last one)` when this one may be logged.
    pub fn allow(&mut self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// Forgets the last line: the next one goes through (e.g. after a reconnect).
    pub fn reset(&mut self) {
        self.last = None;
        self.suppressed = 0;
    }
}

/// A [`LogLimiter`] per key (a rejection reason, say): one key's flood does not hide another's.
#[derive(Debug, Clone)]
pub struct KeyedLogLimiter {
    interval: Duration,
    limiters: HashMap<String, LogLimiter>,
}

impl KeyedLogLimiter {
    pub fn new(interval: Duration) -> Self {
        KeyedLogLimiter {
            interval,
            limiters: HashMap::new(),
        }
    }

    /// `Some(lines of `key` held back since its last one)` when this one may be logged.
    pub fn allow(&mut self, key: &str) -> Option<u64> {
        if let Some(l) = self.limiters.get_mut(key) {
            return l.allow();
        }
        let mut l = LogLimiter::new(self.interval);
        let first = l.allow();
        self.limiters.insert(key.to_owned(), l);
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_goes_through_and_the_rest_are_counted() {
        let mut l = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(l.allow_at(t0), Some(0));
        assert_eq!(l.allow_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow_at(t0 + Duration::from_secs(9)), None);
        assert_eq!(l.allow_at(t0 + Duration::from_secs(10)), Some(2));
        l.reset();
        assert_eq!(l.allow(), Some(0));
        let mut l = LogLimiter::new(Duration::ZERO);
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), Some(0));
    }

    #[test]
    fn each_key_has_its_own_interval() {
        let mut l = KeyedLogLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.allow("a"), Some(0));
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("b"), Some(0));
        assert_eq!(l.allow("a"), None);
    }
}
