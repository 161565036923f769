//! Publishes stored events to `landport/{tenant}/{device}/events`, tailing the events table
//! from a persisted cursor: at least once, in order, across restarts.
//!
//! The saved cursor is the highest seq such that the broker has acknowledged (PUBACK) every
//! event up to it: handing an event to the MQTT client is not enough, since a `kill -9`
//! loses what the client still holds. Up to [`WINDOW`] events are out at a time, and their
//! acknowledgements may come in any order; the cursor moves over the acknowledged prefix
//! only. A publish that will never be acknowledged (the connection was lost first) sends the
//! outbox back to the first unacknowledged event, and everything after it goes out again:
//! duplicates, which consumers drop by id (SPEC §5), never a loss.

use std::collections::VecDeque;
use std::future::Future;

use super::*;
use crate::mqtt::{Confirmation, MqttError};

/// The name of the outbox's cursor in the store.
pub const CURSOR: &str = "mqtt_events";
/// Events read from the store at a time.
const PAGE: usize = 1_000;
/// Most events published and not yet acknowledged at a time. Above the MQTT client's own
/// in-flight window (`max_inflight`, 100 by default) so that the client always has the next
/// one ready, and well below its request queue (1,024) so that dead letters find room.
const WINDOW: usize = 512;
/// The cursor is saved once this many events were acknowledged since the last save ...
const SAVE_EVERY_EVENTS: usize = 1_000;
/// ... or this long after it, or as soon as nothing is in flight. What was acknowledged
/// after the last save is published again after a crash.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// After a stop, how long the outbox goes on for the events still unacknowledged.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where the outbox sends events: the broker through [`MqttClient`] in service; tests
/// record them.
pub trait EventPublisher: Send + Sync + 'static {
    /// Publishes one event (QoS 1) and waits until the broker has it: `Ok` means
    /// acknowledged (for [`MqttClient`], its PUBACK arrived).
    fn publish_event(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<(), MqttError>> + Send;

    /// Publishes one event and returns, once it is handed over, a [`Confirmation`] that
    /// resolves when the broker has it; so that many can be out at once. The default waits
    /// in [`EventPublisher::publish_event`].
    fn publish_confirmed(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<Confirmation, MqttError>> + Send {
        async move {
            self.publish_event(topic, payload)
                .await
                .map(|()| Confirmation::confirmed())
        }
    }
}

impl EventPublisher for MqttClient {
    async fn publish_event(&self, topic: &str, payload: Vec<u8>) -> Result<(), MqttError> {
        MqttClient::publish_confirmed(self, topic, payload)
            .await?
            .await
    }

    async fn publish_confirmed(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<Confirmation, MqttError> {
        MqttClient::publish_confirmed(self, topic, payload).await
    }
}

/// How far the outbox got, and when it last saved that.
struct Progress {
    /// Every event up to this seq is acknowledged.
    acked: i64,
    /// The value in the store.
    saved: i64,
    /// Events acknowledged since the last save.
    unsaved: usize,
    last_save: tokio::time::Instant,
}

impl Progress {
    /// Saves `acked` if it moved; a failure only means a re-send after a restart.
    fn save(&mut self, store: &mut Store) {
        if self.acked == self.saved {
            return;
        }
        if let Err(e) = store.set_cursor(CURSOR, self.acked) {
            tracing::error!(error = %e, "saving the outbox cursor failed");
        }
        self.saved = self.acked;
        self.unsaved = 0;
        self.last_save = tokio::time::Instant::now();
    }

    fn save_due(&self) -> bool {
        self.unsaved >= SAVE_EVERY_EVENTS || self.last_save.elapsed() >= SAVE_INTERVAL
    }
}

pub async fn run(
    mut store: Store,
    broker: impl EventPublisher,
    notify: Arc<Notify>,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let start = store.cursor(CURSOR).unwrap_or(0);
    let mut progress = Progress {
        acked: start,
        saved: start,
        unsaved: 0,
        last_save: tokio::time::Instant::now(),
    };
    // Published, not yet known to be acknowledged, in seq order.
    let mut in_flight: VecDeque<(i64, Confirmation)> = VecDeque::new();
    // Read from the store, not yet published.
    let mut page: VecDeque<(i64, Event)> = VecDeque::new();
    // The last seq read from the store.
    let mut read_to = start;
    // The last read found nothing after `read_to`.
    let mut caught_up = false;
    let mut resend_delay = RESEND_FIRST;
    let mut stop_deadline: Option<tokio::time::Instant> = None;
    loop {
        // Move over the acknowledged prefix.
        let mut lost = false;
        while let Some((seq, c)) = in_flight.front_mut() {
            match c.try_result() {
                Some(Ok(())) => {
                    progress.acked = *seq;
                    progress.unsaved += 1;
                    resend_delay = RESEND_FIRST;
                    in_flight.pop_front();
                }
                Some(Err(_)) => {
                    lost = true;
                    break;
                }
                None => break,
            }
        }
        if stop.is_cancelled() {
            let deadline =
                *stop_deadline.get_or_insert_with(|| tokio::time::Instant::now() + STOP_GRACE);
            if lost || tokio::time::Instant::now() >= deadline {
                if !in_flight.is_empty() {
                    tracing::warn!(
                        unacknowledged = in_flight.len(),
                        "stopping the event outbox with events unacknowledged; they go again on the next start"
                    );
                }
                progress.save(&mut store);
                return;
            }
        }
        if lost {
            // Everything from the first unacknowledged event goes again.
            tracing::warn!(
                after_seq = progress.acked,
                "events were not acknowledged by the MQTT broker; publishing them again"
            );
            in_flight.clear();
            page.clear();
            read_to = progress.acked;
            caught_up = false;
            progress.save(&mut store);
            tokio::select! {
                _ = tokio::time::sleep(resend_delay) => {}
                _ = stop.cancelled() => {}
            }
            resend_delay = (resend_delay * 2).min(RESEND_MAX);
            continue;
        }
        if page.is_empty() && in_flight.len() < WINDOW {
            let filter = EventFilter {
                after_seq: read_to,
                ..EventFilter::default()
            };
            match store.events_after(&filter, PAGE) {
                Ok(p) => page.extend(p),
                Err(e) => tracing::error!(error = %e, "reading the event outbox failed"),
            }
            caught_up = page.is_empty();
            if let Ok(max) = store.event_seq_max() {
                metrics.outbox_depth.set((max - progress.acked).max(0));
            }
        }
        if in_flight.len() < WINDOW
            && let Some((seq, e)) = page.pop_front()
        {
            let topic = crate::topic::events_topic(&e.tenant, &e.device);
            let payload = serde_json::to_vec(&e).unwrap_or_default();
            let mut backoff = Duration::from_millis(100);
            let confirmation = loop {
                match broker.publish_confirmed(&topic, payload.clone()).await {
                    Ok(c) => break c,
                    Err(err) => {
                        if stop.is_cancelled() {
                            progress.save(&mut store);
                            return;
                        }
                        tracing::warn!(error = %err, "publishing an event failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            };
            in_flight.push_back((seq, confirmation));
            read_to = seq;
            continue;
        }
        // Nothing to publish now: save if it is time, then wait.
        if in_flight.is_empty() || progress.save_due() {
            progress.save(&mut store);
        }
        if stop.is_cancelled() && in_flight.is_empty() && caught_up {
            return;
        }
        let front = in_flight.front_mut().map(|(_, c)| c);
        let wait = if stop.is_cancelled() {
            Duration::from_millis(100)
        } else {
            SAVE_INTERVAL
        };
        tokio::select! {
            _ = async {
                match front {
                    Some(c) => {
                        // The outcome is read at the top of the loop.
                        let _ = c.await;
                    }
                    None => std::future::pending().await,
                }
            } => {}
            _ = notify.notified(), if caught_up => {}
            _ = stop.cancelled(), if !stop.is_cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The first pause before publishing again what was not acknowledged; it doubles up to
/// [`RESEND_MAX`] while nothing is acknowledged (the broker is away).
const RESEND_FIRST: Duration = Duration::from_millis(100);
const RESEND_MAX: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use landport_tracker::EventType;
    use tokio::sync::oneshot;

    use super::*;

    /// One publish: the event id, and the sender of its confirmation until used.
    type Published = (String, Option<oneshot::Sender<()>>);

    /// A broker whose PUBACKs the test sends by hand: each publish is recorded with the
    /// sender of its confirmation (dropping the sender = the connection was lost).
    #[derive(Clone, Default)]
    struct HandAcked {
        sent: Arc<Mutex<Vec<Published>>>,
        published: Arc<Notify>,
    }

    impl HandAcked {
        /// Waits until `n` publishes have been made in all.
        async fn wait_published(&self, n: usize) {
            loop {
                let waiting = self.published.notified();
                if self.sent.lock().unwrap().len() >= n {
                    return;
                }
                tokio::time::timeout(Duration::from_secs(20), waiting)
                    .await
                    .unwrap_or_else(|_| panic!("{n} publishes not made"));
            }
        }

        /// The ids published, in order.
        fn ids(&self) -> Vec<String> {
            self.sent
                .lock()
                .unwrap()
                .iter()
                .map(|(id, _)| id.clone())
                .collect()
        }

        /// Acknowledges publish number `i` (0-based, in publish order).
        fn ack(&self, i: usize) {
            let tx = self.sent.lock().unwrap()[i].1.take().unwrap();
            let _ = tx.send(());
        }

        /// Loses publish number `i`: it will never be acknowledged.
        fn lose(&self, i: usize) {
            drop(self.sent.lock().unwrap()[i].1.take());
        }
    }

    impl EventPublisher for HandAcked {
        async fn publish_event(&self, _topic: &str, _payload: Vec<u8>) -> Result<(), MqttError> {
            unreachable!("the outbox publishes through publish_confirmed")
        }

        async fn publish_confirmed(
            &self,
            _topic: &str,
            payload: Vec<u8>,
        ) -> Result<Confirmation, MqttError> {
            let e: Event = serde_json::from_slice(&payload).unwrap();
            let (tx, rx) = oneshot::channel();
            self.sent.lock().unwrap().push((e.id, Some(tx)));
            self.published.notify_one();
            Ok(Confirmation::from_receiver(rx))
        }
    }

    fn numbered(n: i64) -> Event {
        Event::new(
            EventType::DeviceOnline,
            "acme",
            "d",
            None,
            None,
            1_795_400_000_000 + n,
            0,
            serde_json::json!({}),
        )
    }

    fn saved(dir: &std::path::Path) -> i64 {
        Store::open(dir).unwrap().cursor(CURSOR).unwrap()
    }

    /// Polls `saved` until it equals `want`; fails after 20 s.
    async fn wait_saved(dir: &std::path::Path, want: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while saved(dir) != want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "cursor {} never became {want}",
                saved(dir)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `n` stored events and an outbox running over them against a hand-acked broker.
    #[allow(clippy::type_complexity)]
    fn start_with(
        n: i64,
    ) -> (
        tempfile::TempDir,
        Vec<Event>,
        HandAcked,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let events: Vec<Event> = (0..n).map(numbered).collect();
        Store::open(tmp.path())
            .unwrap()
            .commit(&[], &events)
            .unwrap();
        let broker = HandAcked::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            Store::open(tmp.path()).unwrap(),
            broker.clone(),
            Arc::new(Notify::new()),
            stop.clone(),
            Metrics::new(),
        ));
        (tmp, events, broker, stop, task)
    }

    #[tokio::test]
    async fn the_cursor_moves_only_over_events_the_broker_acknowledged_in_order() {
        let (tmp, events, broker, stop, task) = start_with(6);
        let dir = tmp.path();
        // All six go out at once (a window, not one at a time) ...
        broker.wait_published(6).await;
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(broker.ids(), ids);
        // ... and with none acknowledged, the cursor stays put, however long it waits.
        tokio::time::sleep(SAVE_INTERVAL + Duration::from_millis(200)).await;
        assert_eq!(saved(dir), 0, "no event is acknowledged");

        // Acks out of order: only the acknowledged prefix counts.
        broker.ack(1);
        broker.ack(3);
        tokio::time::sleep(SAVE_INTERVAL + Duration::from_millis(200)).await;
        assert_eq!(saved(dir), 0, "event 1 is not acknowledged");
        broker.ack(0);
        wait_saved(dir, 2).await;
        broker.ack(2);
        wait_saved(dir, 4).await;

        // Event 5 is lost (connection gone): everything from it goes again, never skipped.
        broker.lose(4);
        broker.wait_published(8).await;
        assert_eq!(broker.ids()[6..], ids[4..]);
        assert_eq!(saved(dir), 4);
        broker.ack(6);
        broker.ack(7);
        wait_saved(dir, 6).await;
        stop.cancel();
        task.await.unwrap();
        assert_eq!(saved(dir), 6);
    }

    #[tokio::test]
    async fn a_stop_waits_for_the_acks_in_flight_and_saves_only_what_was_acknowledged() {
        let (tmp, _events, broker, stop, task) = start_with(3);
        let dir = tmp.path();
        broker.wait_published(3).await;
        stop.cancel();
        // Acknowledged after the stop: still counted.
        broker.ack(0);
        broker.ack(1);
        // The third never is: the outbox gives up after its grace and keeps it for next time.
        let _third = broker.sent.lock().unwrap()[2].1.take();
        tokio::time::timeout(STOP_GRACE * 2, task)
            .await
            .expect("the outbox stops after its grace")
            .unwrap();
        assert_eq!(saved(dir), 2);
    }
}
