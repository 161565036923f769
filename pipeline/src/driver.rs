//! The pipeline's driver: decoded messages in, durable readings and events out,
//! acknowledgements last.
//!
//! ```text
//! ingest (decoded messages, each with its ack)
//!        -> [bounded channel] -> pipeline task: Intake::apply -> Core (tracker.apply)
//!        -> [bounded channel] -> writer thread: one SQLite transaction per batch
//!        -> [bounded channel] -> acknowledger task: acks, dead letters (an [`Acknowledger`])
//!                             -> broadcast (SSE), and a wake-up for the event outbox
//!                                (landport-sinks, spawned by the binary)
//! ```
//!
//! A QoS 1 message is acknowledged only after its readings and the events they caused are
//! committed, so a crash at any point loses nothing the broker believes delivered. Every
//! channel is bounded: a slow disk stalls the pipeline, which stalls ingest and the MQTT
//! event loop, which leaves messages with the broker. The driver knows neither MQTT nor the
//! payload formats: ingest hands it [`Decoded`] messages and an [`Acknowledger`] (both
//! generic), so this crate does not depend on landport-ingest.
//!
//! The tracker lives in the pipeline task (single writer for every device). Other tasks
//! reach it only through [`TrackerHandle`], which runs a closure between batches. A snapshot
//! of it goes through the writer after the batch it follows, tagged with the last telemetry
//! rowid committed; on start, [`recover`](crate::recover::recover) restores it and replays the readings stored after
//! it, re-deriving the same events with the same ids (already stored, so ignored).
//!
//! Time comes from a [`Clock`] ([`SystemClock`] in service): server time for timers and the
//! retention cutoff, monotonic time for the periods (snapshots, [`retention`](crate::retention) prunes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use landport_tracker::{Event, TimestampMs};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::core::{Core, Output};
use crate::decoded::{Acknowledger, Decoded, Intake};
use crate::handle::{Job, TrackerHandle, now_ms};
use crate::load::IngestStage;
use crate::metrics::Metrics;
use crate::read_side::ReadSide;
use crate::retention::RetentionSchedule;
use crate::writer::{self, Durable, WriterMsg};
use landport_store::{Checkpointer, Store, StoreError};

/// Where the pipeline reads the time. [`SystemClock`] in service; tests pass a clock they move
/// by hand ([`Pipeline::with_clock`]), so hours of retention or timers pass without a wait.
pub trait Clock: Send + Sync + 'static {
    /// Server time, epoch milliseconds: tracker timers, batch times, the retention cutoff.
    fn now_ms(&self) -> TimestampMs;
    /// Monotonic time: how long since the last snapshot or prune.
    fn now(&self) -> Instant;
}

/// The operating system's clocks: [`now_ms`] and [`Instant::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> TimestampMs {
        now_ms()
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Tunables of the pipeline driver.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Most messages folded into one transaction.
    pub batch_max_messages: usize,
    /// How often the tracker's position indexes are tidied. (Offline, dwell and excursion
    /// timers do not wait for it: the pipeline sleeps until the tracker's next deadline.)
    pub tick: Duration,
    /// How often the tracker state is saved.
    pub snapshot_every: Duration,
    /// Telemetry received longer ago than this is pruned, at start and then hourly (see
    /// [`retention`](crate::retention)).
    pub retention: Duration,
    /// Events stored longer ago than this are pruned, on the same schedule.
    pub events_retention: Duration,
    /// How often a background thread copies the WAL back into the database, so that commits
    /// seldom do it themselves (see [`landport_store::Checkpointer`]).
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
            events_retention: Duration::from_secs(90 * 86_400),
            checkpoint_every: Duration::from_millis(25),
            drain_on_shutdown: Duration::ZERO,
        }
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
    /// The store writer thread ended (it panicked): nothing more can be made durable, so
    /// nothing more is acknowledged. The process should stop and be restarted.
    #[error("the store writer stopped: {0}")]
    WriterStopped(String),
}

/// The message of a panic payload (`panic!` with a string, or a formatted one).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// The running pipeline's parts, as built by [`Pipeline::new`]; `K` takes the acknowledgements
/// and dead letters (ingest's MQTT client in service).
pub struct Pipeline<K: Acknowledger> {
    core: Core,
    /// Counts the messages and their refusals, and applies them to `core`.
    intake: Intake,
    store: Store,
    acknowledger: K,
    config: PipelineConfig,
    inbox: mpsc::Receiver<Decoded<K::Ack>>,
    commands: mpsc::Receiver<Job>,
    read_side: ReadSide,
    events: broadcast::Sender<Arc<Event>>,
    /// Told after each commit that stored events (wakes the event outbox).
    events_committed: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Server and monotonic time; [`SystemClock`] unless [`Pipeline::with_clock`].
    clock: Arc<dyn Clock>,
}

impl<K: Acknowledger> Pipeline<K> {
    /// A pipeline applying `inbox` to `core` (see [`recover`](crate::recover::recover)) and handing what is durable to
    /// `acknowledger`; returns it with the handle to its tracker and the live event stream.
    /// `events_committed` is notified after each commit that stored events (the event outbox
    /// waits on it).
    pub fn new(
        core: Core,
        store: Store,
        acknowledger: K,
        inbox: mpsc::Receiver<Decoded<K::Ack>>,
        events_committed: Arc<Notify>,
        config: PipelineConfig,
        metrics: Arc<Metrics>,
    ) -> (Self, TrackerHandle, broadcast::Sender<Arc<Event>>) {
        let (events, _) = broadcast::channel(4_096);
        let read_side = ReadSide::new(core.tracker(), ReadSide::DEFAULT_EVERY);
        let (handle, commands) = TrackerHandle::new(read_side.reader());
        let p = Pipeline {
            core,
            intake: Intake::new(metrics.clone()),
            store,
            acknowledger,
            config,
            inbox,
            commands,
            read_side,
            events: events.clone(),
            events_committed,
            metrics,
            clock: Arc::new(SystemClock),
        };
        (p, handle, events)
    }

    /// Runs on `clock` instead of the system's (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runs until `shutdown`, then flushes: the last batch is committed and acknowledged, and
    /// a final snapshot saved.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), PipelineError> {
        let Pipeline {
            mut core,
            mut intake,
            store,
            acknowledger,
            config,
            mut inbox,
            mut commands,
            mut read_side,
            events,
            events_committed,
            metrics,
            clock,
        } = self;
        let dir = store.dir().to_path_buf();
        let checkpointer = Checkpointer::start(&dir, config.checkpoint_every)?;

        let (writer_tx, writer_rx) = mpsc::channel::<WriterMsg<K::Ack>>(4);
        let (durable_tx, mut durable_rx) = mpsc::channel::<Durable<K::Ack>>(16);
        let writer = {
            let (events, notify, metrics, load) = (
                events.clone(),
                events_committed.clone(),
                metrics.clone(),
                read_side.load(),
            );
            std::thread::Builder::new()
                .name("landport-store".into())
                .spawn(move || {
                    writer::run(
                        store,
                        writer_rx,
                        durable_tx,
                        writer::Listeners {
                            events,
                            outbox: notify,
                            metrics,
                            load,
                        },
                        std::thread::sleep,
                    )
                })
                .expect("spawning the store writer thread")
        };
        let acker = tokio::spawn(async move {
            while let Some(d) = durable_rx.recv().await {
                for a in d.acks {
                    acknowledger.ack(a).await;
                }
                // Dead letters never hold acknowledgements back: if the broker is away they
                // are dropped (and counted in the logs); the rejection is already counted in
                // /metrics.
                for dl in d.dead_letters {
                    acknowledger.dead_letter(dl);
                }
            }
        });

        let mut tick = tokio::time::interval(config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_snapshot = clock.now();
        let mut retention = RetentionSchedule::new(config.retention, config.events_retention);
        // Set once shutdown has been asked for and a drain is on: (deadline, messages taken).
        let mut draining: Option<(Instant, u64)> = None;
        let load = read_side.load();
        let mut snapshots_taken: u64 = 0;
        loop {
            // The tracker's next deadline (server time) as a point on tokio's clock.
            let timer_at = core.next_deadline().map(|deadline_ms| {
                let wait_ms = (deadline_ms - clock.now_ms()).max(0) as u64;
                tokio::time::Instant::now() + Duration::from_millis(wait_ms)
            });
            let mut out = Output::default();
            let mut acks = Vec::new();
            let mut oldest = None;
            let mut batch_started = None;
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
                Some(cmd) = commands.recv(), if !stop => cmd(&mut core, &mut read_side),
                _ = tick.tick(), if !stop => {
                    core.maintain();
                    // A rebuilt position index reaches readers with the next view.
                    read_side.mark();
                }
                // Timers fire when due, not on the next tick: the tracker says when.
                _ = tokio::time::sleep_until(timer_at.unwrap_or_else(tokio::time::Instant::now)),
                    if timer_at.is_some() && !stop =>
                {
                    core.fire_timers(clock.now_ms(), &mut out);
                    read_side.mark();
                }
                // Readings applied since the last view reach readers within `every`, even
                // when no more arrive.
                _ = tokio::time::sleep_until(
                    read_side.due_at().unwrap_or_else(Instant::now).into()
                ), if read_side.due_at().is_some() && !stop => {}
                msg = inbox.recv(), if !stop => match msg {
                    None => stop = true,
                    Some(first) => {
                        batch_started = Some(Instant::now());
                        oldest = Some(first.received_ms);
                        let mut taken = 0;
                        let mut take = |m: Decoded<K::Ack>, out: &mut Output| {
                            intake.apply(&mut core, &m, out);
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
                        read_side.mark();
                    }
                },
                else => {}
            }
            read_side.publish_due(core.tracker(), Instant::now());
            if !out.is_empty() || !acks.is_empty() {
                let msg = WriterMsg::Batch {
                    output: out,
                    acks,
                    oldest_ms: oldest.unwrap_or_else(|| clock.now_ms()),
                };
                if writer_tx.send(msg).await.is_err() {
                    // The writer is gone; what it had not committed stays unacknowledged.
                    break;
                }
            }
            if let Some(started) = batch_started {
                // Waiting for room at the writer counts: ingest is busy then too.
                load.worked(IngestStage::Pipeline, started, Instant::now());
            }
            if stop || clock.now().saturating_duration_since(last_snapshot) >= config.snapshot_every
            {
                last_snapshot = clock.now();
                let snapshot = core.tracker().snapshot();
                if stop {
                    // The last one: written before the writer stops.
                    match crate::recover::encode_snapshot(&snapshot) {
                        Ok(bytes) => {
                            if writer_tx.send(WriterMsg::Snapshot(bytes)).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "tracker snapshot failed"),
                    }
                } else {
                    // The task only copies the state; serializing and compressing it (111 MB
                    // of JSON at 100,000 devices, see `encode_snapshot`) runs on a thread of
                    // its own, so that ingest goes on with the next batch meanwhile. The
                    // writer saves the bytes with the position of the mark sent here.
                    snapshots_taken += 1;
                    let id = snapshots_taken;
                    if writer_tx.send(WriterMsg::SnapshotTaken(id)).await.is_err() {
                        break;
                    }
                    let tx = writer_tx.clone();
                    let spawned = std::thread::Builder::new()
                        .name("landport-snapshot".into())
                        .spawn(move || match crate::recover::encode_snapshot(&snapshot) {
                            Ok(bytes) => {
                                let _ = tx.blocking_send(WriterMsg::SnapshotBytes(id, bytes));
                            }
                            Err(e) => tracing::error!(error = %e, "tracker snapshot failed"),
                        });
                    if let Err(e) = spawned {
                        tracing::error!(error = %e, "starting the snapshot thread failed");
                    }
                }
            }
            if let Some(cutoffs) = retention.due(clock.now(), clock.now_ms()) {
                let _ = writer_tx.send(WriterMsg::Prune(cutoffs)).await;
            }
            if stop {
                break;
            }
        }
        drop(writer_tx);
        let writer_end = tokio::task::spawn_blocking(move || {
            let end = writer.join();
            checkpointer.stop();
            end
        })
        .await;
        let _ = acker.await;
        match writer_end {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(panic)) => Err(PipelineError::WriterStopped(panic_message(&panic))),
            Err(e) => Err(PipelineError::WriterStopped(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use landport_tracker::{EventType, Reading, Tracker, TrackerSettings};

    use super::*;
    use crate::core::DeadLetter;
    use crate::retention;
    use crate::test_support::*;
    use landport_store::TelemetryRow;

    // ----- the pipeline driver ------------------------------------------------------------

    /// A clock that moves only when the test says.
    struct ManualClock {
        start: Instant,
        start_ms: TimestampMs,
        elapsed_ms: AtomicU64,
    }

    impl ManualClock {
        fn at(start_ms: TimestampMs) -> Arc<ManualClock> {
            Arc::new(ManualClock {
                start: Instant::now(),
                start_ms,
                elapsed_ms: AtomicU64::new(0),
            })
        }

        fn advance(&self, by: Duration) {
            self.elapsed_ms
                .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now_ms(&self) -> TimestampMs {
            self.start_ms + self.elapsed_ms.load(Ordering::SeqCst) as i64
        }

        fn now(&self) -> Instant {
            self.start + Duration::from_millis(self.elapsed_ms.load(Ordering::SeqCst))
        }
    }

    /// An acknowledger with no broker behind it: acks and dead letters go nowhere (the tests
    /// read the store and the event stream).
    struct NoBroker;

    impl Acknowledger for NoBroker {
        type Ack = u32;

        async fn ack(&self, _ack: u32) {}

        fn dead_letter(&self, _letter: DeadLetter) {}
    }

    /// A pipeline over a store, fed by the test, on a manual clock, with no broker behind its
    /// acknowledger.
    struct Running {
        tracker: TrackerHandle,
        inbox: mpsc::Sender<Decoded<u32>>,
        events: broadcast::Receiver<Arc<Event>>,
        clock: Arc<ManualClock>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), PipelineError>>,
    }

    impl Running {
        fn start(core: Core, store: Store, config: PipelineConfig) -> Running {
            let clock = ManualClock::at(NOW);
            let (inbox, rx) = mpsc::channel(16);
            let (p, tracker, events) = Pipeline::new(
                core,
                store,
                NoBroker,
                rx,
                Arc::new(Notify::new()),
                config,
                Metrics::new(),
            );
            let events = events.subscribe();
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(p.with_clock(clock.clone()).run(shutdown.clone()));
            Running {
                tracker,
                inbox,
                events,
                clock,
                shutdown,
                task,
            }
        }

        /// Returns once the writer has done everything the pipeline sent it so far, including
        /// a prune due now. A command round trip ends the pipeline's current turn (it checks
        /// the retention schedule at the end of each); a reading sent after it goes to the
        /// writer behind that turn's prune, and its event is broadcast only once committed.
        async fn settle(&mut self, probe: &str) {
            self.tracker.call(|_| ()).await.unwrap();
            let now = self.clock.now_ms();
            let reading = Reading::at(now).with_position(123.0, 41.0);
            self.inbox.send(message(probe, reading, now)).await.unwrap();
            while self.events.recv().await.unwrap().device != probe {}
        }

        async fn stop(self) {
            self.shutdown.cancel();
            self.task.await.unwrap().unwrap();
        }
    }

    fn received(device: &str, received_ms: TimestampMs) -> TelemetryRow {
        TelemetryRow {
            tenant: "acme".into(),
            device: device.into(),
            shipment: None,
            reading: Reading::at(received_ms).with_temp(4.0),
            received_ms,
        }
    }

    /// The devices of the stored readings, in rowid order.
    fn stored_devices(reader: &Store) -> Vec<String> {
        let rows = reader.readings_after(0, 1_000).unwrap();
        rows.into_iter().map(|(_, r)| r.device).collect()
    }

    #[tokio::test]
    async fn retention_prunes_at_start_then_an_hour_later_keeping_a_reading_at_the_cutoff() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let cutoff = NOW - DAY_MS;
        store
            .commit(
                &[
                    received("older", cutoff - 1),
                    received("at-cutoff", cutoff),
                    received("recent", NOW),
                ],
                &[],
            )
            .unwrap();
        let mut ing = restart(&mut store, TrackerSettings::default());
        ing.tracker_mut().upsert_geofence("acme", yard()).unwrap();
        let config = PipelineConfig {
            retention: Duration::from_secs(86_400),
            ..PipelineConfig::default()
        };
        let mut p = Running::start(ing, store, config);
        let reader = Store::open_reader(tmp.path()).unwrap();

        // At start: cutoff = now - retention; a reading received exactly then is kept.
        p.settle("probe-1").await;
        assert_eq!(stored_devices(&reader), ["at-cutoff", "recent", "probe-1"]);

        // Readings any prune would now delete, and two around the cutoff an hour on.
        let mut other = Store::open(tmp.path()).unwrap();
        let next_cutoff = cutoff + HOUR_MS;
        other
            .commit(
                &[
                    received("stale", cutoff - 5),
                    received("before-next", next_cutoff - 1),
                    received("at-next", next_cutoff),
                ],
                &[],
            )
            .unwrap();

        // Not before the hour is up ...
        p.clock
            .advance(retention::PRUNE_EVERY - Duration::from_millis(1));
        p.settle("probe-2").await;
        assert_eq!(
            stored_devices(&reader),
            [
                "at-cutoff",
                "recent",
                "probe-1",
                "stale",
                "before-next",
                "at-next",
                "probe-2"
            ]
        );

        // ... then on the hour, with the cutoff moved on by an hour.
        p.clock.advance(Duration::from_millis(1));
        p.settle("probe-3").await;
        assert_eq!(
            stored_devices(&reader),
            ["recent", "probe-1", "at-next", "probe-2", "probe-3"]
        );
        p.stop().await;
    }

    #[tokio::test]
    async fn timers_fire_at_the_trackers_deadline_not_on_the_next_tick() {
        let (_tmp, store) = store();
        let ing = Core::new(Tracker::new(offline_after(1)), true, Metrics::new());
        let (inbox, rx) = mpsc::channel(16);
        // A tick far beyond the test: only the tracker's own deadline can fire the timer.
        let config = PipelineConfig {
            tick: Duration::from_secs(3_600),
            ..PipelineConfig::default()
        };
        let (p, _tracker, events) = Pipeline::new(
            ing,
            store,
            NoBroker,
            rx,
            Arc::new(Notify::new()),
            config,
            Metrics::new(),
        );
        let mut events = events.subscribe();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(p.run(shutdown.clone()));
        let now = now_ms();
        let reading = Reading::at(now).with_position(123.0, 41.0);
        inbox.send(message("t1", reading, now)).await.unwrap();
        let offline = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let e = events.recv().await.unwrap();
                if e.kind == EventType::DeviceOffline {
                    break e;
                }
            }
        })
        .await
        .expect("device.offline, 1 s after the reading, long before the next tick");
        assert_eq!(offline.ts_ms, now + 1_000);
        shutdown.cancel();
        task.await.unwrap().unwrap();
    }
}
