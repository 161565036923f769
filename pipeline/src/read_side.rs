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
//! devices costs about 3 ms).
//!
//! The latest view sits in an [`ArcSwap`]: a reader loads it without taking any lock, and the
//! writer swaps in the next one without waiting for any reader. That matters because readers
//! run on threads of the lowest priority (the HTTP side, under `SCHED_IDLE`): a reader
//! preempted while it held a lock the writer needs would stall ingest until a core fell idle
//! (with `tokio::sync::watch`, whose value sits behind a `RwLock`, that was possible). A
//! reader that waits for the next view is woken through a `watch` channel of the view's
//! change counter, which only such waiters lock.
//!
//! Views are freed by the writer, never by a reader: a replaced view that a reader still
//! holds waits in `retired` until the reader lets it go, and the writer drops it at a later
//! publish. Dropping a view releases every device it shares with the next one (100,000
//! reference counts the writer increments again when it builds the view after); done on a
//! reader's core, that pulled those cache lines away from the writer, and freed the writer's
//! allocations from another thread. So publishing costs the writer the same with readers as
//! without them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use landport_tracker::{LiveView, Tracker};
use tokio::sync::watch;

use crate::load::IngestLoad;

/// Publishing may take at most 1/COST_SHARE of the writer's time.
pub const COST_SHARE: u32 = 20;
/// The most publishing credit saved up while idle: a burst of cheap views after a quiet spell.
const CREDIT_MAX: Duration = Duration::from_millis(10);

/// The publishing end, owned by the single writer of the tracker.
#[derive(Debug)]
pub struct ReadSide {
    /// The published view, shared with every [`LiveReader`].
    current: Arc<ArcSwap<LiveView>>,
    /// The published view's change counter, for readers waiting for the next view.
    tx: watch::Sender<u64>,
    /// Replaced views that readers still held when last looked at, oldest first: the writer
    /// drops each once it is the only holder (see the module docs).
    retired: VecDeque<Arc<LiveView>>,
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
    /// How busy ingest is, reported by its stages, for readers that yield to it.
    load: Arc<IngestLoad>,
}

/// A reader's handle: cheap to clone, one per request or stream.
#[derive(Debug, Clone)]
pub struct LiveReader {
    current: Arc<ArcSwap<LiveView>>,
    rx: watch::Receiver<u64>,
    load: Arc<IngestLoad>,
}

impl ReadSide {
    /// How often views are published while readings arrive.
    pub const DEFAULT_EVERY: Duration = Duration::from_millis(100);

    /// A read side whose first view is taken of `tracker` now.
    pub fn new(tracker: &Tracker, every: Duration) -> ReadSide {
        let view = tracker.view(&LiveView::default());
        let (tx, _) = watch::channel(view.seq());
        ReadSide {
            current: Arc::new(ArcSwap::from_pointee(view)),
            tx,
            retired: VecDeque::new(),
            every,
            published_at: Instant::now(),
            pending: false,
            last_cost: Duration::ZERO,
            credit: CREDIT_MAX,
            credit_at: Instant::now(),
            load: Arc::default(),
        }
    }

    pub fn reader(&self) -> LiveReader {
        LiveReader {
            current: self.current.clone(),
            rx: self.tx.subscribe(),
            load: self.load.clone(),
        }
    }

    /// Where ingest's stages report how busy they are.
    pub fn load(&self) -> Arc<IngestLoad> {
        self.load.clone()
    }

    /// Notes that the tracker changed (a reading, a timer): the next [`ReadSide::publish_due`]
    /// publishes.
    pub fn mark(&mut self) {
        self.pending = true;
    }

    /// Publishes now (after an API command, so the caller's next read sees its write).
    pub fn publish(&mut self, tracker: &Tracker) {
        let start = Instant::now();
        let view = Arc::new(tracker.view(&self.current.load()));
        let seq = view.seq();
        let old = self.current.swap(view);
        self.tx.send_replace(seq);
        self.retire(old);
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

    /// Keeps `old` until no reader holds it, and drops the retired views no reader holds
    /// any more. A reader cannot take a new reference to a retired view (it only loads the
    /// current one, or clones one it holds), so a count of one, ours, stays one.
    fn retire(&mut self, old: Arc<LiveView>) {
        self.retired.push_back(old);
        self.retired.retain(|v| Arc::strong_count(v) > 1);
    }

    /// Replaced views still held by readers.
    pub fn retired(&self) -> usize {
        self.retired.len()
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
    /// How busy ingest is (see [`IngestLoad`]).
    pub fn ingest_load(&self) -> Arc<IngestLoad> {
        self.load.clone()
    }

    /// The latest published view.
    pub fn current(&self) -> Arc<LiveView> {
        self.current.load_full()
    }

    /// Waits for a view published after the last one this reader waited for (or after the
    /// reader was made), and returns the latest; `None` once the writer is gone.
    pub async fn next(&mut self) -> Option<Arc<LiveView>> {
        self.rx.changed().await.ok()?;
        self.rx.borrow_and_update();
        Some(self.current())
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

    #[test]
    fn a_replaced_view_is_freed_by_the_writer_once_no_reader_holds_it() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let mut side = ReadSide::new(&tracker, Duration::ZERO);
        let reader = side.reader();
        let mut out = Vec::new();
        let slot = tracker.device_slot("acme", "t1");
        let r = Reading::at(1_795_400_000_000).with_position(123.0, 41.0);
        tracker.apply(slot, &r, r.ts_ms, &mut out);
        side.publish(&tracker);
        assert_eq!(
            side.retired(),
            0,
            "nobody held the first view: dropped at once"
        );
        let held = reader.current();
        let weak = Arc::downgrade(&held);
        side.publish(&tracker);
        assert_eq!(side.retired(), 1, "a reader holds the replaced view");
        // The reader lets go: its drop is not the last, so it frees nothing...
        drop(held);
        assert!(weak.upgrade().is_some(), "still kept for the writer");
        // ...and the writer frees it at its next publish.
        side.publish(&tracker);
        assert_eq!(side.retired(), 0);
        assert!(weak.upgrade().is_none());
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
