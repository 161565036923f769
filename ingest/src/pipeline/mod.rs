//! The pipeline: MQTT messages in, durable readings and events out, acknowledgements last.
//!
//! ```text
//! broker -> [bounded channel] -> pipeline task: decode, validate, tracker.apply (Ingestor)
//!        -> [bounded channel] -> writer thread: one SQLite transaction per batch
//!        -> [bounded channel] -> acknowledger task: MQTT PUBACKs, dead letters
//!                             -> broadcast (SSE) and the outbox task: events to MQTT
//! ```
//!
//! A QoS 1 message is acknowledged only after its readings and the events they caused are
//! committed, so a crash at any point loses nothing the broker believes delivered. Every
//! channel is bounded: a slow disk stalls the pipeline, which stalls the MQTT event loop,
//! which leaves messages with the broker.
//!
//! The tracker lives in the pipeline task (single writer for every device). Other tasks
//! reach it only through [`TrackerHandle`], which runs a closure between batches. A snapshot
//! of it goes through the writer after the batch it follows, tagged with the last telemetry
//! rowid committed; on start, [`recover`] restores it and replays the readings stored after
//! it, re-deriving the same events with the same ids (already stored, so ignored).

pub mod ingestor;
pub mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use landport_tracker::{Event, TimestampMs, Tracker, TrackerSettings};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::mqtt::{AckToken, Inbound, MqttClient};
use crate::store::{Checkpointer, EventFilter, Store, StoreError};
pub use ingestor::{DeadLetter, IngestSettings, Ingestor, Output};
use writer::{Durable, WriterMsg};

/// Server time, epoch milliseconds.
pub fn now_ms() -> TimestampMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as TimestampMs)
        .unwrap_or(0)
}

/// Tunables of the pipeline driver.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Most messages folded into one transaction.
    pub batch_max_messages: usize,
    /// Timer resolution for offline/dwell/excursion events.
    pub tick: Duration,
    /// How often the tracker state is saved.
    pub snapshot_every: Duration,
    /// Telemetry older than this is pruned.
    pub retention: Duration,
    /// How often a background thread copies the WAL back into the database, so that commits
    /// seldom do it themselves (see [`crate::store::Checkpointer`]).
    pub checkpoint_every: Duration,
    /// On shutdown, keep taking messages until none has come for [`DRAIN_IDLE`], for at most
    /// this long. For the embedded broker, whose backlog dies with the process: with an
    /// external broker (zero, the default) what is not acknowledged is simply sent again.
    pub drain_on_shutdown: Duration,
}

/// A drain on shutdown ends once no message has come for this long.
pub const DRAIN_IDLE: Duration = Duration::from_millis(300);

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_max_messages: 2_000,
            tick: Duration::from_secs(1),
            snapshot_every: Duration::from_secs(30),
            retention: Duration::from_secs(30 * 86_400),
            checkpoint_every: Duration::from_millis(250),
            drain_on_shutdown: Duration::ZERO,
        }
    }
}

/// A closure run on the ingestor between batches.
type Command = Box<dyn FnOnce(&mut Ingestor) + Send>;

/// Cheap handle to reach the tracker from other tasks (the HTTP API).
#[derive(Clone)]
pub struct TrackerHandle {
    tx: mpsc::Sender<Command>,
}

impl TrackerHandle {
    /// A handle to an ingestor served by a task of its own, with no MQTT or store around it:
    /// for the API's tests, and tools that need the tracker alone. Must be called inside a
    /// tokio runtime; the task ends when every handle is dropped.
    pub fn standalone(mut ingestor: Ingestor) -> TrackerHandle {
        let (tx, mut rx) = mpsc::channel::<Command>(256);
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                cmd(&mut ingestor);
            }
        });
        TrackerHandle { tx }
    }

    /// Runs `f` on the ingestor (and its tracker) between batches; `None` if the pipeline has
    /// stopped.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ingestor) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let cmd: Command = Box::new(move |ing| {
            let _ = tx.send(f(ing));
        });
        self.tx.send(cmd).await.ok()?;
        rx.await.ok()
    }
}

/// Errors that stop the pipeline (bad input never does).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("tracker snapshot: {0}")]
    Snapshot(String),
}

/// Builds the ingestor from the store: the latest snapshot, the registry, then a replay of
/// the readings stored after the snapshot. Events the replay derives are committed (those
/// already stored are ignored by id), so none is lost if the crash came between apply and
/// publish.
pub fn recover(
    store: &mut Store,
    tracker_settings: TrackerSettings,
    ingest: IngestSettings,
    metrics: Arc<Metrics>,
) -> Result<Ingestor, PipelineError> {
    let (tracker, mut after) = match store.load_snapshot()? {
        Some((bytes, rowid)) => {
            let snap = serde_json::from_slice(&bytes)
                .map_err(|e| PipelineError::Snapshot(e.to_string()))?;
            let mut t =
                Tracker::restore(snap).map_err(|e| PipelineError::Snapshot(e.to_string()))?;
            // Settings come from today's config, not the snapshot's.
            t.set_settings(tracker_settings);
            (t, rowid)
        }
        None => (Tracker::new(tracker_settings), 0),
    };
    let mut ing = Ingestor::new(tracker, ingest, metrics);
    for d in store.list_devices(None)? {
        ing.set_registered(&d.tenant, &d.id, true);
    }
    for g in store.list_geofences(None)? {
        if let Err(e) = ing.tracker_mut().upsert_geofence(&g.tenant, g.def) {
            tracing::warn!(tenant = g.tenant, error = %e, "stored geofence no longer loads");
        }
    }
    for s in store.list_shipments(None)? {
        let (tenant, id, status) = (s.tenant.clone(), s.def.id.clone(), s.status);
        match ing.tracker_mut().upsert_shipment(&tenant, s.def) {
            Ok(()) => {
                let live = ing.tracker().shipment(&tenant, &id).map(|s| s.status);
                // A user's delivered/cancelled wins; the tracker's own progress is kept.
                if !status.is_active() && status != landport_tracker::ShipmentStatus::Arrived
                    || live.is_none()
                {
                    let _ = ing.tracker_mut().set_shipment_status(&tenant, &id, status);
                }
            }
            Err(e) => tracing::warn!(tenant, error = %e, "stored shipment no longer loads"),
        }
    }
    let mut replayed = 0usize;
    loop {
        let rows = store.readings_after(after, 5_000)?;
        let Some(&(last, _)) = rows.last() else { break };
        let mut events = Vec::new();
        for (_, row) in &rows {
            ing.replay(row, &mut events);
        }
        store.commit(&[], &events)?;
        replayed += rows.len();
        after = last;
    }
    if replayed > 0 {
        tracing::info!(replayed, "replayed readings stored after the last snapshot");
    }
    Ok(ing)
}

/// The running pipeline's parts, as built by [`Pipeline::new`].
pub struct Pipeline {
    ingestor: Ingestor,
    store: Store,
    broker: MqttClient,
    config: PipelineConfig,
    inbox: mpsc::Receiver<Inbound>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<Arc<Event>>,
    metrics: Arc<Metrics>,
}

impl Pipeline {
    /// A pipeline reading `inbox`; returns it with the handle to its tracker and the live event
    /// stream.
    pub fn new(
        ingestor: Ingestor,
        store: Store,
        broker: MqttClient,
        inbox: mpsc::Receiver<Inbound>,
        config: PipelineConfig,
        metrics: Arc<Metrics>,
    ) -> (Self, TrackerHandle, broadcast::Sender<Arc<Event>>) {
        let (tx, commands) = mpsc::channel(256);
        let (events, _) = broadcast::channel(4_096);
        let p = Pipeline {
            ingestor,
            store,
            broker,
            config,
            inbox,
            commands,
            events: events.clone(),
            metrics,
        };
        (p, TrackerHandle { tx }, events)
    }

    /// Runs until `shutdown`, then flushes: the last batch is committed and acknowledged, a
    /// final snapshot saved, and pending events published.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), PipelineError> {
        let Pipeline {
            mut ingestor,
            store,
            broker,
            config,
            mut inbox,
            mut commands,
            events,
            metrics,
        } = self;
        let dir = store.dir().to_path_buf();
        let outbox_store = Store::open(&dir)?;
        let checkpointer = Checkpointer::start(&dir, config.checkpoint_every)?;
        let outbox_notify = Arc::new(Notify::new());

        let (writer_tx, writer_rx) = mpsc::channel::<WriterMsg<AckToken>>(4);
        let (durable_tx, mut durable_rx) = mpsc::channel::<Durable<AckToken>>(16);
        let writer = {
            let (events, notify, metrics) =
                (events.clone(), outbox_notify.clone(), metrics.clone());
            std::thread::Builder::new()
                .name("landport-store".into())
                .spawn(move || writer::run(store, writer_rx, durable_tx, events, notify, metrics))
                .expect("spawning the store writer thread")
        };
        let acker = {
            let broker = broker.clone();
            tokio::spawn(async move {
                while let Some(d) = durable_rx.recv().await {
                    for a in d.acks {
                        broker.ack(a).await;
                    }
                    // Dead letters never hold acknowledgements back: if the broker is
                    // away they are dropped (and counted in the logs); the rejection is
                    // already counted in /metrics.
                    for dl in d.dead_letters {
                        if let Err(e) = broker.try_publish(&dl.topic, dl.payload, true) {
                            tracing::warn!(error = %e, "dead letter not published");
                        }
                    }
                }
            })
        };
        let outbox_stop = CancellationToken::new();
        let outbox = tokio::spawn(outbox::run(
            outbox_store,
            broker.clone(),
            outbox_notify.clone(),
            outbox_stop.clone(),
            metrics.clone(),
        ));

        let mut tick = tokio::time::interval(config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_snapshot = Instant::now();
        let mut last_prune: Option<Instant> = None;
        // Set once shutdown has been asked for and a drain is on: (deadline, messages taken).
        let mut draining: Option<(Instant, u64)> = None;
        loop {
            let mut out = Output::default();
            let mut acks = Vec::new();
            let mut oldest = None;
            let mut stop = false;
            if let Some((deadline, _)) = draining
                && Instant::now() >= deadline
            {
                tracing::warn!("shutdown: messages still arriving after the drain period");
                stop = true;
            }
            // Not `biased`: with API requests always queued, a fixed order would starve the
            // broker's messages or the timers (and the index rebuild they drive). tokio picks
            // among the ready branches at random, so each gets its turn.
            tokio::select! {
                _ = shutdown.cancelled(), if draining.is_none() && !stop => {
                    if config.drain_on_shutdown.is_zero() {
                        stop = true;
                    } else {
                        tracing::info!("shutdown: taking in what the embedded broker still holds");
                        draining = Some((Instant::now() + config.drain_on_shutdown, 0));
                    }
                }
                _ = tokio::time::sleep(DRAIN_IDLE), if draining.is_some() && !stop => {
                    if let Some((_, taken)) = draining {
                        tracing::info!(messages = taken, "shutdown: drained");
                    }
                    stop = true;
                }
                Some(cmd) = commands.recv(), if !stop => cmd(&mut ingestor),
                _ = tick.tick(), if !stop => ingestor.tick(now_ms(), &mut out),
                msg = inbox.recv(), if !stop => match msg {
                    None => stop = true,
                    Some(first) => {
                        oldest = Some(first.received_ms);
                        let mut taken = 0;
                        let mut take = |m: Inbound, out: &mut Output| {
                            ingestor.handle(&m.topic, &m.payload, m.received_ms, out);
                            acks.extend(m.ack);
                            taken += 1;
                        };
                        take(first, &mut out);
                        for _ in 1..config.batch_max_messages {
                            match inbox.try_recv() {
                                Ok(m) => take(m, &mut out),
                                Err(_) => break,
                            }
                        }
                        if let Some((_, n)) = draining.as_mut() {
                            *n += taken;
                        }
                    }
                },
                else => {}
            }
            if !out.is_empty() || !acks.is_empty() {
                let msg = WriterMsg::Batch {
                    output: out,
                    acks,
                    oldest_ms: oldest.unwrap_or_else(now_ms),
                };
                if writer_tx.send(msg).await.is_err() {
                    break;
                }
            }
            if stop || last_snapshot.elapsed() >= config.snapshot_every {
                last_snapshot = Instant::now();
                match serde_json::to_vec(&ingestor.tracker().snapshot()) {
                    Ok(bytes) => {
                        let _ = writer_tx.send(WriterMsg::Snapshot(bytes)).await;
                    }
                    Err(e) => tracing::error!(error = %e, "tracker snapshot failed"),
                }
            }
            if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                last_prune = Some(Instant::now());
                let cutoff = now_ms() - config.retention.as_millis() as TimestampMs;
                let _ = writer_tx.send(WriterMsg::Prune(cutoff)).await;
            }
            if stop {
                break;
            }
        }
        drop(writer_tx);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = writer.join();
            checkpointer.stop();
        })
        .await;
        let _ = acker.await;
        outbox_notify.notify_one();
        outbox_stop.cancel();
        let _ = outbox.await;
        Ok(())
    }
}

/// Publishes stored events to `landport/{tenant}/{device}/events`, tailing the events table
/// from a persisted cursor: at least once, in order, across restarts.
mod outbox {
    use super::*;

    const CURSOR: &str = "mqtt_events";
    const PAGE: usize = 1_000;

    pub async fn run(
        mut store: Store,
        broker: MqttClient,
        notify: Arc<Notify>,
        stop: CancellationToken,
        metrics: Arc<Metrics>,
    ) {
        let mut cursor = store.cursor(CURSOR).unwrap_or(0);
        loop {
            let filter = EventFilter {
                after_seq: cursor,
                ..EventFilter::default()
            };
            let page = match store.events_after(&filter, PAGE) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "reading the event outbox failed");
                    Vec::new()
                }
            };
            if let Ok(max) = store.event_seq_max() {
                metrics.outbox_depth.set((max - cursor).max(0));
            }
            let mut published = false;
            for (seq, e) in &page {
                let payload = serde_json::to_vec(e).unwrap_or_default();
                let mut backoff = Duration::from_millis(100);
                loop {
                    let topic = crate::topic::events_topic(&e.tenant, &e.device);
                    match broker.publish(&topic, payload.clone(), true).await {
                        Ok(()) => break,
                        Err(err) => {
                            if stop.is_cancelled() {
                                return;
                            }
                            tracing::warn!(error = %err, "publishing an event failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
                cursor = *seq;
                published = true;
            }
            if published {
                if let Err(e) = store.set_cursor(CURSOR, cursor) {
                    tracing::error!(error = %e, "saving the outbox cursor failed");
                }
                if page.len() == PAGE {
                    continue;
                }
            }
            if stop.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = notify.notified() => {}
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
