//! Publishes stored events to `landport/{tenant}/{device}/events`, tailing the events table
//! from a persisted cursor: at least once, in order, across restarts.
//!
//! The saved cursor is the highest seq such that the broker has acknowledged (PUBACK) every
//! event up to it: handing an event to the MQTT client is not enough, since a `kill -9`
//! loses what the client still holds. Up to `WINDOW` events are out at a time, and their
//! acknowledgements may come in any order; the cursor moves over the acknowledged prefix
//! only. A publish that will never be acknowledged (the connection was lost first) sends the
//! outbox back to the first unacknowledged event, and everything after it goes out again:
//! duplicates, which consumers drop by id (SPEC §5), never a loss.

use std::collections::VecDeque;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use landport_pipeline::Backoff;
use landport_pipeline::metrics::Metrics;
use landport_pipeline::topics::events_topic;
use landport_store::{EventFilter, Store};
use landport_tracker::Event;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
/// Retries of a publish the MQTT client refused (its queue full, the broker away): the first
/// pause is at most this, doubling ...
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// ... up to this.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Where the outbox sends events: the broker through the MQTT client in service (the binary
/// wires it in: this crate does not depend on landport-ingest); tests record them.
pub trait EventPublisher: Send + Sync + 'static {
    /// Why a publish failed (logged).
    type Error: Display + Send;
    /// Resolves once the broker has the event (`Ok`: for MQTT, its PUBACK arrived), or fails
    /// if it never will (the connection was lost first): then the outbox publishes it again.
    type Confirmation: Future<Output = Result<(), Self::Error>> + Send + Unpin;

    /// Publishes one event (QoS 1) to `topic` and returns, once it is handed over, the
    /// [`EventPublisher::Confirmation`] of its arrival; so that many can be out at once.
    fn publish_confirmed(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<Self::Confirmation, Self::Error>> + Send;
}

/// A published event, not yet known to be acknowledged.
struct InFlight<C: Future> {
    seq: i64,
    confirmation: C,
    /// Its outcome once known (a finished future is not polled again).
    outcome: Option<C::Output>,
}

impl<E, C: Future<Output = Result<(), E>> + Unpin> InFlight<C> {
    /// `Some(true)` acknowledged, `Some(false)` never will be, `None` not known yet; without
    /// waiting.
    fn acknowledged(&mut self) -> Option<bool> {
        if self.outcome.is_none()
            && let Poll::Ready(r) =
                Pin::new(&mut self.confirmation).poll(&mut Context::from_waker(Waker::noop()))
        {
            self.outcome = Some(r);
        }
        self.outcome.as_ref().map(Result::is_ok)
    }

    /// Waits until the outcome is known.
    async fn settled(&mut self) {
        if self.outcome.is_none() {
            self.outcome = Some((&mut self.confirmation).await);
        }
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

/// Runs the outbox until `stop`: publishes every event stored after its cursor, and then
/// each batch the store writer commits (it calls `notify` after each commit with events).
/// After `stop` it goes on, for at most `STOP_GRACE` (5 s), until what is stored is published
/// and acknowledged.
pub async fn run<P: EventPublisher>(
    mut store: Store,
    broker: P,
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
    let mut in_flight: VecDeque<InFlight<P::Confirmation>> = VecDeque::new();
    // Read from the store, not yet published.
    let mut page: VecDeque<(i64, Event)> = VecDeque::new();
    // The last seq read from the store.
    let mut read_to = start;
    // The last read found nothing after `read_to`.
    let mut caught_up = false;
    // Pauses before publishing again what was not acknowledged, while nothing is (the broker
    // is away), and before retrying a publish the client refused.
    let mut resend = Backoff::new(RESEND_FIRST, RESEND_MAX, crate::seed());
    let mut retry = Backoff::new(RETRY_FIRST, RETRY_MAX, crate::seed());
    let mut stop_deadline: Option<tokio::time::Instant> = None;
    loop {
        // Move over the acknowledged prefix.
        let mut lost = false;
        while let Some(front) = in_flight.front_mut() {
            match front.acknowledged() {
                Some(true) => {
                    progress.acked = front.seq;
                    progress.unsaved += 1;
                    resend.reset();
                    in_flight.pop_front();
                }
                Some(false) => {
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
                _ = tokio::time::sleep(resend.next_delay()) => {}
                _ = stop.cancelled() => {}
            }
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
            let topic = events_topic(&e.tenant, &e.device);
            let payload = serde_json::to_vec(&e).unwrap_or_default();
            let confirmation = loop {
                match broker.publish_confirmed(&topic, payload.clone()).await {
                    Ok(c) => break c,
                    Err(err) => {
                        if stop.is_cancelled() {
                            progress.save(&mut store);
                            return;
                        }
                        tracing::warn!(error = %err, "publishing an event failed; retrying");
                        tokio::time::sleep(retry.next_delay()).await;
                    }
                }
            };
            retry.reset();
            in_flight.push_back(InFlight {
                seq,
                confirmation,
                outcome: None,
            });
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
        let front = in_flight.front_mut();
        let wait = if stop.is_cancelled() {
            Duration::from_millis(100)
        } else {
            SAVE_INTERVAL
        };
        tokio::select! {
            _ = async {
                match front {
                    // The outcome is read at the top of the loop.
                    Some(c) => c.settled().await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = notify.notified(), if caught_up => {}
            _ = stop.cancelled(), if !stop.is_cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The first pause before publishing again what was not acknowledged is at most this; it
/// doubles up to [`RESEND_MAX`] while nothing is acknowledged (the broker is away).
const RESEND_FIRST: Duration = Duration::from_millis(100);
const RESEND_MAX: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use landport_tracker::EventType;
    use tokio::sync::{mpsc, oneshot};

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

    /// The sender of a publish's confirmation dropped: the connection was lost.
    type Lost = oneshot::error::RecvError;

    impl EventPublisher for HandAcked {
        type Error = Lost;
        type Confirmation = oneshot::Receiver<()>;

        async fn publish_confirmed(
            &self,
            _topic: &str,
            payload: Vec<u8>,
        ) -> Result<oneshot::Receiver<()>, Lost> {
            let e: Event = serde_json::from_slice(&payload).unwrap();
            let (tx, rx) = oneshot::channel();
            self.sent.lock().unwrap().push((e.id, Some(tx)));
            self.published.notify_one();
            Ok(rx)
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

    // ----- the event outbox ---------------------------------------------------------------

    /// How the recording broker treats the outbox.
    #[derive(Clone, Copy)]
    enum Broker<'a> {
        /// Takes every event.
        Up,
        /// Refuses this event, and the outbox is stopped there (a shutdown while the broker
        /// is away).
        RefusesAndStops(&'a Event),
        /// Never answers for this event, and the process dies there (kill -9).
        HangsAt(&'a Event),
    }

    /// Records what the outbox publishes (and, for [`Broker::HangsAt`], the event it hangs
    /// on).
    struct Recorder {
        sent: mpsc::UnboundedSender<Event>,
        refuse: Option<(String, CancellationToken)>,
        hang: Option<String>,
    }

    impl EventPublisher for Recorder {
        type Error = &'static str;
        type Confirmation = std::future::Ready<Result<(), &'static str>>;

        /// Returns once the event is recorded (or hangs there), confirmed already.
        async fn publish_confirmed(
            &self,
            _topic: &str,
            payload: Vec<u8>,
        ) -> Result<Self::Confirmation, &'static str> {
            let e: Event = serde_json::from_slice(&payload).unwrap();
            if let Some((id, stop)) = &self.refuse
                && *id == e.id
            {
                stop.cancel();
                return Err("the MQTT source has stopped");
            }
            let hang = self.hang.as_ref() == Some(&e.id);
            let _ = self.sent.send(e);
            if hang {
                std::future::pending::<()>().await;
            }
            Ok(std::future::ready(Ok(())))
        }
    }

    /// Runs the outbox over the store in `dir` (a fresh connection: a restart) until it has
    /// published `expect` events, then stops it (or kills it, for [`Broker::HangsAt`]);
    /// returns their ids and the saved cursor.
    async fn outbox_run(
        dir: &std::path::Path,
        expect: usize,
        broker: Broker<'_>,
    ) -> (Vec<String>, i64) {
        let (sent, mut got) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let recorder = Recorder {
            sent,
            refuse: match broker {
                Broker::RefusesAndStops(e) => Some((e.id.clone(), stop.clone())),
                _ => None,
            },
            hang: match broker {
                Broker::HangsAt(e) => Some(e.id.clone()),
                _ => None,
            },
        };
        let task = tokio::spawn(run(
            Store::open(dir).unwrap(),
            recorder,
            Arc::new(Notify::new()),
            stop.clone(),
            Metrics::new(),
        ));
        let mut ids = Vec::new();
        for _ in 0..expect {
            ids.push(got.recv().await.unwrap().id);
        }
        if let Broker::HangsAt(_) = broker {
            task.abort();
            assert!(task.await.unwrap_err().is_cancelled());
        } else {
            stop.cancel();
            task.await.unwrap();
        }
        // nothing else went out before it stopped
        assert!(got.try_recv().is_err());
        (ids, Store::open(dir).unwrap().cursor(CURSOR).unwrap())
    }

    #[tokio::test]
    async fn the_event_outbox_resumes_after_its_saved_cursor_across_restarts() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let e: Vec<Event> = (0..8).map(numbered).collect();
        let ids = |range: std::ops::Range<usize>| -> Vec<String> {
            e[range].iter().map(|e| e.id.clone()).collect()
        };
        let mut store = Store::open(dir).unwrap();
        let c = store.commit(&[], &e[..5]).unwrap();
        assert_eq!(c.last_event_seq, 5);
        // An earlier run had the first two confirmed.
        store.set_cursor(CURSOR, 2).unwrap();

        assert_eq!(outbox_run(dir, 3, Broker::Up).await, (ids(2..5), 5));

        // While it is down: a re-derived event (ignored, but it spends a seq) and new ones.
        store.commit(&[], &e[..1]).unwrap();
        let c = store.commit(&[], &e[5..8]).unwrap();
        assert_eq!(c.last_event_seq, 9);
        // The broker refuses e[6] and the outbox is stopped there: e[5] went out and is not
        // sent again; e[6] and e[7] wait for the next start.
        let refused = Broker::RefusesAndStops(&e[6]);
        assert_eq!(outbox_run(dir, 1, refused).await, (ids(5..6), 7));
        assert_eq!(outbox_run(dir, 2, Broker::Up).await, (ids(6..8), 9));
        assert_eq!(outbox_run(dir, 0, Broker::Up).await, (vec![], 9));
    }

    #[tokio::test]
    async fn an_outbox_killed_mid_page_skips_nothing_after_the_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let e: Vec<Event> = (0..5).map(numbered).collect();
        let ids = |range: std::ops::Range<usize>| -> Vec<String> {
            e[range].iter().map(|e| e.id.clone()).collect()
        };
        Store::open(dir).unwrap().commit(&[], &e).unwrap();
        // Killed while e[2] is being handed over: the page is not marked done ...
        assert_eq!(
            outbox_run(dir, 3, Broker::HangsAt(&e[2])).await,
            (ids(0..3), 0)
        );
        // ... so it all goes again (at least once: consumers drop ids they have seen).
        assert_eq!(outbox_run(dir, 5, Broker::Up).await, (ids(0..5), 5));
    }
}
