//! The read side: the pipeline publishes an immutable [`LiveView`] of the tracker, and every
//! reader (HTTP requests, SSE viewers) queries the latest one without ever running on the
//! pipeline's task or waiting for it.
//!
//! The writer builds a view from the previous one (only what changed is copied, see
//! [`Tracker::view`]) after readings, and at once after a command, so an API write is visible
//! to the request that follows it. After readings it publishes as often as it can while
//! publishing stays under 1/[`COST_SHARE`] of the writer's time (with a few devices, after
//! every batch, before the batch is committed: whoever sees a stored event sees its reading),
//! and at least every `every` (100 ms by default; 100,000 devices cost about 3 ms a view). A `tokio::sync::watch`
//! channel carries it: a reader holds its lock only to clone an `Arc`, and a reader that waits
//! for the next view (a live stream) is woken by the publish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use landport_tracker::{LiveView, Tracker};
use tokio::sync::watch;

/// Publishing may take at most 1/COST_SHARE of the writer's time.
pub const COST_SHARE: u32 = 20;

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
        self.pending = false;
    }

    /// Publishes if something changed and either publishing is cheap beside the time since
    /// the last view, or that view is `every` old.
    pub fn publish_due(&mut self, tracker: &Tracker, now: Instant) {
        if self.due_at().is_some_and(|due| now >= due) {
            self.publish(tracker);
        }
    }

    /// When a pending change is to be published, if one is pending.
    pub fn due_at(&self) -> Option<Instant> {
        let wait = (self.last_cost * COST_SHARE).min(self.every);
        self.pending.then(|| self.published_at + wait)
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
        // As if the last view had cost 10 ms: the next waits 100 ms (`every`), not 200.
        side.last_cost = Duration::from_millis(10);
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
        side.mark();
        side.last_cost = Duration::ZERO;
        assert_eq!(side.due_at(), Some(t0), "cheap: after every batch");
        side.last_cost = Duration::from_millis(2);
        assert_eq!(side.due_at(), Some(t0 + Duration::from_millis(40)));
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
