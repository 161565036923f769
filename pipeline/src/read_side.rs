//! The read side: the pipeline publishes an immutable [`LiveView`] of the tracker, and every
//! reader (HTTP requests, SSE viewers) queries the latest one without ever running on the
//! pipeline's task or waiting for it.
//!
//! The writer builds a view from the previous one (only what changed is copied, see
//! [`Tracker::view`]) after readings, and at once after a command, so an API write is visible
//! to the request that follows it. After readings it publishes before each batch is committed
//! (so whoever sees a stored event sees its reading) as long as publishing stays within
//! 1/[`COST_SHARE`] of the writer's time (a credit that grows with time, spent by each view's
//! cost); past that budget, at least every `every` (100 ms by default; a view of 100,000
//! devices costs about 3 ms). A `tokio::sync::watch`
//! channel carries it: a reader holds its lock only to clone an `Arc`, and a reader that waits
//! for the next view (a live stream) is woken by the publish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use landport_tracker::{LiveView, Tracker};
use tokio::sync::watch;

/// Publishing may take at most 1/COST_SHARE of the writer's time.
pub const COST_SHARE: u32 = 20;
/// The most publishing credit saved up while idle: a burst of cheap views after a quiet spell.
const CREDIT_MAX: Duration = Duration::from_millis(10);

/// The publishing end, owned by the single writer of the tracker.
#[derive(Debug)]
pub struct ReadSide {
    tx: watch::Sender<Arc<LiveView>>,
    /// Longest a reading waits before readers see it.
    every: Duration,
    /// When the current view was published.
    published_at: Instant,
    /// Something changed since the current view was published.
    pending: bool,
    /// How long building and publishing the current view took.
    last_cost: Duration,
    /// Writer time publishing may still spend, and when it was last topped up.
    credit: Duration,
    credit_at: Instant,
}

/// A reader's handle: cheap to clone, one per request or stream.
#[derive(Debug, Clone)]
pub struct LiveReader {
    rx: watch::Receiver<Arc<LiveView>>,
}

impl ReadSide {
    /// How often views are published while readings arrive.
    pub const DEFAULT_EVERY: Duration = Duration::from_millis(100);

    /// A read side whose first view is taken of `tracker` now.
    pub fn new(tracker: &Tracker, every: Duration) -> ReadSide {
        let (tx, _) = watch::channel(Arc::new(tracker.view(&LiveView::default())));
        ReadSide {
            tx,
            every,
            published_at: Instant::now(),
            pending: false,
            last_cost: Duration::ZERO,
            credit: CREDIT_MAX,
            credit_at: Instant::now(),
        }
    }

    pub fn reader(&self) -> LiveReader {
        LiveReader {
            rx: self.tx.subscribe(),
        }
    }

    /// Notes that the tracker changed (a reading, a timer): the next [`ReadSide::publish_due`]
    /// publishes.
    pub fn mark(&mut self) {
        self.pending = true;
    }

    /// Publishes now (after an API command, so the caller's next read sees its write).
    pub fn publish(&mut self, tracker: &Tracker) {
        let start = Instant::now();
        let prev = self.tx.borrow().clone();
        let view = Arc::new(tracker.view(&prev));
        self.tx.send_replace(view);
        self.published_at = Instant::now();
        self.last_cost = self.published_at.duration_since(start);
        self.credit = self.credit.saturating_sub(self.last_cost);
        self.pending = false;
    }

    /// Publishes if something changed and either the credit covers another view like the
    /// last one, or the current view is `every` old.
    pub fn publish_due(&mut self, tracker: &Tracker, now: Instant) {
        self.top_up(now);
        if self.due_at().is_some_and(|due| now >= due) {
            self.publish(tracker);
        }
    }

    fn top_up(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.credit_at) / COST_SHARE;
        self.credit = (self.credit + earned).min(CREDIT_MAX);
        self.credit_at = now;
    }

    /// When a pending change is to be published, if one is pending: now if the credit covers
    /// it, else once it will have, and at the latest `every` after the current view.
    pub fn due_at(&self) -> Option<Instant> {
        let short = self.last_cost.saturating_sub(self.credit);
        let wait = (self.credit_at + short * COST_SHARE).min(self.published_at + self.every);
        self.pending.then_some(wait)
    }
}

impl LiveReader {
    /// The latest published view.
    pub fn current(&self) -> Arc<LiveView> {
        self.rx.borrow().clone()
    }

    /// Waits for a view newer than the last one this reader took, and returns it; `None`
    /// once the writer is gone.
    pub async fn next(&mut self) -> Option<Arc<LiveView>> {
        self.rx.changed().await.ok()?;
        Some(self.rx.borrow_and_update().clone())
    }
}

#[cfg(test)]
mod tests {
    use landport_tracker::{Reading, TrackerSettings};

    use super::*;

    #[test]
    fn readers_see_a_change_once_it_is_published_and_never_before() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let mut side = ReadSide::new(&tracker, Duration::from_millis(100));
        let reader = side.reader();
        let slot = tracker.device_slot("acme", "t1");
        let mut out = Vec::new();
        let r = Reading::at(1_795_400_000_000).with_position(123.0, 41.0);
        tracker.apply(slot, &r, r.ts_ms, &mut out);
        side.mark();
        let t0 = side.published_at;
        // As if the last view had cost 10 ms with no credit left: the next waits 100 ms
        // (`every`), not the 200 ms it would take to earn 10 ms.
        side.last_cost = Duration::from_millis(10);
        side.credit = Duration::ZERO;
        side.credit_at = t0;
        side.publish_due(&tracker, t0 + Duration::from_millis(99));
        assert!(
            reader.current().device("acme", "t1").is_none(),
            "not yet due"
        );
        assert_eq!(side.due_at(), Some(t0 + Duration::from_millis(100)));
        side.publish_due(&tracker, t0 + Duration::from_millis(100));
        assert!(reader.current().device("acme", "t1").is_some());
        assert_eq!(side.due_at(), None, "nothing pending");
    }

    #[test]
    fn a_cheap_view_is_published_at_once_and_a_costly_one_waits_its_share() {
        let tracker = Tracker::new(TrackerSettings::default());
        let mut side = ReadSide::new(&tracker, Duration::from_millis(100));
        let t0 = side.published_at;
        side.credit_at = t0;
        side.mark();
        side.last_cost = Duration::from_micros(50);
        assert_eq!(side.due_at(), Some(t0), "cheap: after every batch");
        side.credit = Duration::from_millis(1);
        side.last_cost = Duration::from_millis(3);
        assert_eq!(
            side.due_at(),
            Some(t0 + Duration::from_millis(40)),
            "2 ms short: 40 ms to earn them"
        );
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_the_next_publish() {
        let tracker = Tracker::new(TrackerSettings::default());
        let mut side = ReadSide::new(&tracker, Duration::ZERO);
        let mut reader = side.reader();
        let waiting = tokio::spawn(async move { reader.next().await.map(|v| v.seq()) });
        tokio::task::yield_now().await;
        side.publish(&tracker);
        assert_eq!(waiting.await.unwrap(), Some(tracker.change_seq()));
    }
}
