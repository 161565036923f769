//! The positions topic of the live stream, shared: one feed per scope (a tenant, or every
//! tenant for an admin key naming none) serializes each second's changes once, and every live
//! map watching that scope gets the same bytes. Before, each viewer compared and serialized
//! on its own: a hundred maps of a busy tenant cost a hundred times the work of one.
//!
//! A viewer subscribes to its scope's feed and, in the same step, takes the view the feed's
//! latest item was computed from; its first item is the full FeatureCollection of that view
//! (shared too: maps that open together serialize it once), and the feed's next item is
//! exactly what changed after it. A viewer that falls behind the feed starts over with a full
//! collection. A feed stops when its last viewer has gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use landport_tracker::LiveView;
use tokio::sync::broadcast;

use super::positions::{Group, collection_chunks, groups};
use super::sse::{self, Item};
use super::stream::POSITIONS_EVERY;
use crate::state::ApiState;

/// Items a viewer may fall behind its feed before it starts over.
const FEED_DEPTH: usize = 16;

/// One scope's feed: its channel and the view its latest item was computed from.
struct Feed {
    tx: broadcast::Sender<Item>,
    view: Arc<LiveView>,
}

/// The feeds and the latest full collection of each scope.
#[derive(Default)]
pub(crate) struct PositionsHub {
    // std Mutexes: held only to look up, swap an entry or hand an item to a channel (which
    // does not wait), never across an `.await`.
    feeds: Mutex<HashMap<Option<String>, Feed>>,
    /// Per scope: the latest full collection.
    full: Mutex<HashMap<Option<String>, FullCollection>>,
}

/// A full collection (`None`: no device has a position) and the view seq it was built at.
type FullCollection = (u64, Option<Item>);

impl PositionsHub {
    /// A receiver of `scope`'s feed (started if none runs) and the view whose changes its
    /// next item carries.
    pub(crate) fn subscribe(
        &self,
        state: &ApiState,
        scope: Option<String>,
    ) -> (broadcast::Receiver<Item>, Arc<LiveView>) {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(feed) = feeds.get(&scope) {
            return (feed.tx.subscribe(), feed.view.clone());
        }
        let (tx, rx) = broadcast::channel(FEED_DEPTH);
        let view = state.live();
        let feed = Feed {
            tx: tx.clone(),
            view: view.clone(),
        };
        feeds.insert(scope.clone(), feed);
        tokio::spawn(run_feed(state.clone(), scope, tx, view.seq()));
        (rx, view)
    }

    /// Sends `item` (the changes up to `view`) and makes `view` the feed's, in one step, so a
    /// viewer that subscribes meanwhile either gets the item or starts from `view`.
    fn publish(&self, scope: &Option<String>, view: Arc<LiveView>, item: Option<Item>) {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(feed) = feeds.get_mut(scope) {
            if let Some(item) = item {
                // No receiver left is fine: the next tick ends the feed.
                let _ = feed.tx.send(item);
            }
            feed.view = view;
        }
    }

    /// Every device of `scope` with a position, as of `live` (`None`: none has one).
    pub(crate) fn full(&self, live: &Arc<LiveView>, scope: Option<&str>) -> Option<Item> {
        let key = scope.map(str::to_owned);
        {
            let full = self.full.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((seq, json)) = full.get(&key)
                && *seq == live.seq()
            {
                return json.clone();
            }
        }
        // Built outside the lock: two maps opening at once may both build it.
        let json = changed_frame(live, scope, None, None).map(Item::from);
        let mut full = self.full.lock().unwrap_or_else(PoisonError::into_inner);
        full.insert(key, (live.seq(), json.clone()));
        json
    }

    /// Ends `scope`'s feed if nobody listens any more; `true` if it was ended.
    fn stop_if_unwatched(&self, scope: &Option<String>, tx: &broadcast::Sender<Item>) -> bool {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if tx.receiver_count() > 0 {
            return false;
        }
        if feeds.get(scope).is_some_and(|f| f.tx.same_channel(tx)) {
            feeds.remove(scope);
        }
        self.full
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(scope);
        true
    }
}

/// One scope's feed: every [`POSITIONS_EVERY`], the devices changed since the previous item.
async fn run_feed(
    state: ApiState,
    scope: Option<String>,
    tx: broadcast::Sender<Item>,
    mut since: u64,
) {
    let mut tick = tokio::time::interval(POSITIONS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.positions_hub().stop_if_unwatched(&scope, &tx) {
            return;
        }
        let live = state.live();
        if live.seq() == since {
            continue;
        }
        state.reader_budget().admit().await;
        let live = state.live();
        let json = changed_frame(&live, scope.as_deref(), Some(since), None).map(Item::from);
        since = live.seq();
        state.positions_hub().publish(&scope, live, json);
    }
}

/// The `positions` event (framed for SSE, see [`sse`]) whose data is the FeatureCollection of
/// the devices of `scope` (`None`: every tenant) changed after view seq `since` (`None`: all
/// of them), only `device` (tenant, id) if given; `None` when no device qualifies.
pub(crate) fn changed_frame(
    live: &Arc<LiveView>,
    scope: Option<&str>,
    since: Option<u64>,
    device: Option<(&str, &str)>,
) -> Option<Bytes> {
    let mut found = groups(live, scope, |tenant, view| {
        if device.is_some_and(|(t, _)| t != tenant) {
            return None;
        }
        Some(match since {
            Some(s) => view.changed_since_slots(s),
            None => view.device_slots(),
        })
    });
    if let Some((_, id)) = device {
        for group in &mut found {
            group.retain(|_, d| d.id == id);
        }
    }
    if found.iter().all(Group::no_position) {
        return None;
    }
    // Compact JSON has no line break: the document is one `data:` line.
    let mut out = sse::frame_start("positions");
    for chunk in collection_chunks(found, usize::MAX) {
        out.extend_from_slice(&chunk);
    }
    out.extend_from_slice(sse::FRAME_END);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use landport_pipeline::metrics::Metrics;
    use landport_pipeline::{Core, Output, TrackerHandle, now_ms};
    use landport_tracker::{Reading, Tracker, TrackerSettings};

    use super::*;

    fn api(dir: &std::path::Path) -> ApiState {
        let core = Core::new(
            Tracker::new(TrackerSettings::default()),
            true,
            Metrics::new(),
        );
        let (events, _) = broadcast::channel(4);
        ApiState::new(dir, TrackerHandle::standalone(core), events, None).unwrap()
    }

    async fn fix(s: &ApiState, device: &str, lon: f64) {
        let device = device.to_owned();
        let reading = Reading::at(now_ms()).with_position(lon, 41.0);
        s.tracker(move |core| {
            let mut out = Output::default();
            core.apply("acme", &device, &[reading], now_ms(), &mut out)
                .unwrap();
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn viewers_of_a_scope_share_one_feed_and_each_item_is_serialized_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = api(dir.path());
        fix(&s, "t1", 123.0).await;
        let hub = s.positions_hub();
        let (mut a, view_a) = hub.subscribe(&s, Some("acme".into()));
        let (mut b, view_b) = hub.subscribe(&s, Some("acme".into()));
        assert!(Arc::ptr_eq(&view_a, &view_b), "one feed, one starting view");
        let full_a = hub.full(&view_a, Some("acme")).unwrap();
        let full_b = hub.full(&view_b, Some("acme")).unwrap();
        assert_eq!(
            full_a.bytes().as_ptr(),
            full_b.bytes().as_ptr(),
            "the full collection is built once"
        );
        let text = |b: &Item| String::from_utf8(b.bytes().to_vec()).unwrap();
        assert!(text(&full_a).starts_with("event: positions\ndata: {"));
        assert!(text(&full_a).contains("\"t1\""));

        fix(&s, "t2", 123.1).await;
        let item_a = a.recv().await.unwrap();
        let item_b = b.recv().await.unwrap();
        assert_eq!(
            item_a.bytes().as_ptr(),
            item_b.bytes().as_ptr(),
            "each change serialized once"
        );
        assert!(
            text(&item_a).contains("\"t2\"") && !text(&item_a).contains("\"t1\""),
            "{}",
            text(&item_a)
        );

        // A viewer that comes later starts from the view of the latest item: nothing twice.
        let (_c, view_c) = hub.subscribe(&s, Some("acme".into()));
        assert!(view_c.device("acme", "t2").is_some());
        // Another scope is another feed.
        let (_d, view_d) = hub.subscribe(&s, Some("globex".into()));
        assert!(view_d.devices("globex").is_empty());
    }
}
