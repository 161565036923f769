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
//! rowid committed; on start, [`recover`] restores it and replays the readings stored after
//! it, re-deriving the same events with the same ids (already stored, so ignored).
//!
//! Time comes from a [`Clock`] ([`SystemClock`] in service): server time for timers and the
//! retention cutoff, monotonic time for the periods (snapshots, [`retention`](crate::retention) prunes).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use landport_tracker::device::DeviceProfile;
use landport_tracker::{
    Event, ShipmentStatus, TimestampMs, Tracker, TrackerSettings, TrackerSnapshot,
};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::core::{Core, Output};
use crate::decoded::{Acknowledger, Decoded, Intake};
use crate::handle::{Job, TrackerHandle, now_ms};
use crate::metrics::Metrics;
use crate::read_side::ReadSide;
use crate::retention::RetentionSchedule;
use crate::writer::{self, Durable, WriterMsg};
use landport_store::{Checkpointer, GeofenceRecord, ShipmentRecord, Store, StoreError};

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
            checkpoint_every: Duration::from_millis(250),
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

/// Builds the core from the store: the newest snapshot that restores, the registry, then
/// a replay of the readings stored after that snapshot. Events the replay derives are
/// committed (those already stored are ignored by id), so none is lost if the crash came
/// between apply and publish.
///
/// A snapshot that does not decode or restore (corrupt, or written by an incompatible
/// version) is skipped with a warning for the one before it (the store keeps two); with none
/// left, the tracker starts empty and every stored reading is replayed. Replay is
/// deterministic, so an older starting point gives the same state and the same event ids;
/// it only takes longer. (A full replay starts at the oldest reading retention kept: state
/// that only older readings built is lost.)
///
/// Today's `tracker_settings` replace the snapshot's. The registry is written before the
/// tracker by every API change, so it may be newer than the snapshot: it is the source of
/// truth for definitions. What it no longer holds is removed from the restored tracker (see
/// `drop_deleted`; without `auto_register`, the replay also skips the readings of devices it
/// no longer holds), device profiles come from it, and each shipment's status is
/// [`merge_status`] of the registry's and the snapshot's.
///
/// `auto_register` is `ingest.auto_register`: accept readings of devices not registered to
/// their topic's tenant.
pub fn recover(
    store: &mut Store,
    tracker_settings: TrackerSettings,
    auto_register: bool,
    metrics: Arc<Metrics>,
) -> Result<Core, PipelineError> {
    let (tracker, mut after) = restore_newest(store.load_snapshots()?, tracker_settings);
    let devices = store.list_devices(None)?;
    let geofences = store.list_geofences(None)?;
    let shipments = store.list_shipments(None)?;
    let registered: HashSet<(String, String)> = devices
        .iter()
        .map(|d| (d.tenant.clone(), d.id.clone()))
        .collect();
    let mut ing = Core::new(tracker, auto_register, metrics);
    drop_deleted(
        ing.tracker_mut(),
        &registered,
        &geofences,
        &shipments,
        auto_register,
    );
    for d in devices {
        ing.set_registered(&d.tenant, &d.id, true);
        // Registered after the snapshot, or changed since: the registry has the profile.
        match serde_json::from_value::<DeviceProfile>(d.profile) {
            Ok(profile) => {
                let live = ing.tracker().device(&d.tenant, &d.id).map(|v| v.profile);
                // Unchanged profiles are left alone (an open excursion stays open), and a
                // device that never reported gets no live state for an empty profile.
                if live.unwrap_or_default() != profile {
                    ing.tracker_mut()
                        .set_device_profile(&d.tenant, &d.id, profile);
                }
            }
            Err(e) => tracing::warn!(
                tenant = d.tenant,
                device = d.id,
                error = %e,
                "stored device profile no longer loads"
            ),
        }
    }
    for g in geofences {
        // Validated by the API when it was stored: prepared, not validated again.
        let loaded = landport_tracker::geofence::Geofence::trusted(g.def)
            .and_then(|f| ing.tracker_mut().upsert_prepared_geofence(&g.tenant, f));
        if let Err(e) = loaded {
            tracing::warn!(tenant = g.tenant, error = %e, "stored geofence no longer loads");
        }
    }
    for s in shipments {
        let (tenant, id, status) = (s.tenant.clone(), s.def.id.clone(), s.status);
        match ing.tracker_mut().upsert_shipment(&tenant, s.def) {
            Ok(()) => {
                let live = ing.tracker().shipment(&tenant, &id).map(|s| s.status);
                let merged = merge_status(status, live);
                if live != Some(merged) {
                    let _ = ing.tracker_mut().set_shipment_status(&tenant, &id, merged);
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
            // Without auto-registration, a device with no registry row had its registration
            // deleted (see `drop_deleted`): its readings from before the deletion would bring
            // it back. The live run forgot it at the deletion, so the replay skips them too.
            if !auto_register && !registered.contains(&(row.tenant.clone(), row.device.clone())) {
                continue;
            }
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

/// The tracker restored from the first of `snapshots` (newest first, as
/// [`Store::load_snapshots`] returns them) that decodes and restores, under today's
/// `settings`, with the telemetry rowid it covers; an empty tracker and rowid 0 (replay
/// everything) when none does. Each one skipped is logged with the reason.
fn restore_newest(snapshots: Vec<(Vec<u8>, i64)>, settings: TrackerSettings) -> (Tracker, i64) {
    let kept = snapshots.len();
    for (bytes, applied_rowid) in snapshots {
        match restore_snapshot(&bytes, settings.clone()) {
            Ok(tracker) => return (tracker, applied_rowid),
            Err(e) => tracing::warn!(
                applied_rowid,
                bytes = bytes.len(),
                error = %e,
                "tracker snapshot does not restore; falling back on an older one"
            ),
        }
    }
    if kept > 0 {
        tracing::warn!(
            kept,
            "no tracker snapshot restores; starting empty and replaying every stored reading"
        );
    }
    (Tracker::new(settings), 0)
}

/// Decodes and restores one snapshot under `settings`.
fn restore_snapshot(bytes: &[u8], settings: TrackerSettings) -> Result<Tracker, PipelineError> {
    let mut snap: TrackerSnapshot =
        serde_json::from_slice(bytes).map_err(|e| PipelineError::Snapshot(e.to_string()))?;
    // Settings come from today's config, not the snapshot's, and before the restore arms the
    // timers: `set_settings` afterwards would leave every device's offline deadline at the
    // snapshot's `offline_after_seconds`.
    snap.settings = settings;
    Tracker::restore(snap).map_err(|e| PipelineError::Snapshot(e.to_string()))
}

/// Removes from a restored tracker what the registry deleted after the snapshot was taken
/// (the API deletes from the store first, then from the live tracker, so a crash after a
/// deletion but before the next snapshot brings the item back otherwise).
///
/// - Geofences and shipments exist only through the registry: any the registry lacks goes.
/// - Devices are different: with `auto_register`, a device reporting on its tenant's topic
///   is live without ever having a registry row, and neither the snapshot nor the registry
///   records that a device *was* registered (the core's registered set is rebuilt from
///   the registry, and a deletion leaves no trace). So a live device without a row is
///   dropped only when `auto_register` is off: then only registration admits readings, and a
///   live device without a row had its registration deleted (or came in while the config
///   still allowed auto-registration, and would now be refused: dropping it is right too).
///   With `auto_register` on, such devices are kept: dropping them would wipe every
///   auto-registered device's live state at each restart, and a replay from the snapshot
///   would then fire their geofence entries again. The price is that a registered device
///   deleted shortly before a crash reappears as an auto-registered one; telling the two
///   apart needs the store to record deletions.
/// - A shipment names its device before that device is registered or reports, and the
///   tracker holds a slot for it meanwhile. Such a slot (named by a shipment the registry
///   holds, never reported) is kept: the shipment would create it again, and each restart
///   would leave one more removed slot in the tracker (and its snapshots). A device that
///   has reported goes even then; loading the shipment then links it to a new, empty slot,
///   as registering the device again would.
fn drop_deleted(
    tracker: &mut Tracker,
    registered: &HashSet<(String, String)>,
    geofences: &[GeofenceRecord],
    shipments: &[ShipmentRecord],
    auto_register: bool,
) {
    let fences: HashSet<(&str, &str)> = geofences
        .iter()
        .map(|g| (g.tenant.as_str(), g.def.id.as_str()))
        .collect();
    let defined: HashSet<(&str, &str)> = shipments
        .iter()
        .map(|s| (s.tenant.as_str(), s.def.id.as_str()))
        .collect();
    // (tenant, device) of every shipment the registry holds
    let carriers: HashSet<(&str, &str)> = shipments
        .iter()
        .map(|s| (s.tenant.as_str(), s.def.device.as_str()))
        .collect();
    let tenants: Vec<String> = tracker.tenants().map(str::to_owned).collect();
    for tenant in &tenants {
        let t = tenant.as_str();
        let gone_shipments: Vec<String> = tracker
            .shipments(t)
            .into_iter()
            .map(|s| s.def.id.clone())
            .filter(|id| !defined.contains(&(t, id.as_str())))
            .collect();
        let gone_fences: Vec<String> = tracker
            .geofences(t)
            .into_iter()
            .map(|g| g.id.clone())
            .filter(|id| !fences.contains(&(t, id.as_str())))
            .collect();
        let gone_devices: Vec<String> = if auto_register {
            Vec::new()
        } else {
            tracker
                .devices(t)
                .into_iter()
                .filter(|d| !registered.contains(&(tenant.clone(), d.id.clone())))
                .filter(|d| d.last_seen_ms.is_some() || !carriers.contains(&(t, d.id.as_str())))
                .map(|d| d.id)
                .collect()
        };
        // Before the registry's shipments are loaded, which link each to its device again
        // (`remove_device` unlinks a device's shipments).
        for id in &gone_shipments {
            tracker.remove_shipment(t, id);
        }
        for id in &gone_fences {
            tracker.remove_geofence(t, id);
        }
        for id in &gone_devices {
            tracker.remove_device(t, id);
        }
        if !(gone_shipments.is_empty() && gone_fences.is_empty() && gone_devices.is_empty()) {
            tracing::info!(
                tenant = t,
                shipments = ?gone_shipments,
                geofences = ?gone_fences,
                devices = ?gone_devices,
                "removed what the registry deleted after the snapshot"
            );
        }
    }
}

/// A shipment's status after a restart, from the registry's (`stored`: the user's last word,
/// or the tracker's progress the API stored with an edit) and the snapshot's (`live`: the
/// tracker's progress up to the snapshot; `None` when the shipment is newer).
///
/// - A user's `delivered` / `cancelled` in the registry wins.
/// - The tracker never sets `delivered` / `cancelled` itself, so when the snapshot has one and
///   the registry another, the user re-opened the shipment after the snapshot: the registry
///   wins.
/// - Otherwise the further along of the two wins (planned < in transit < arrived): the tracker
///   only moves forward, so the registry being further means the user moved it on after the
///   snapshot, and the snapshot being further is the tracker's own progress. (A user moving a
///   shipment *back*, e.g. arrived to planned, after the last snapshot cannot be told from
///   that and is undone by a restart; the next snapshot after the change makes it stick.)
pub fn merge_status(stored: ShipmentStatus, live: Option<ShipmentStatus>) -> ShipmentStatus {
    fn by_user(s: ShipmentStatus) -> bool {
        matches!(s, ShipmentStatus::Delivered | ShipmentStatus::Cancelled)
    }
    fn progress(s: ShipmentStatus) -> u8 {
        match s {
            ShipmentStatus::Planned => 0,
            ShipmentStatus::InTransit => 1,
            _ => 2,
        }
    }
    match live {
        None => stored,
        Some(live) if by_user(stored) || by_user(live) => stored,
        Some(live) if progress(live) > progress(stored) => live,
        Some(_) => stored,
    }
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
    /// A pipeline applying `inbox` to `core` (see [`recover`]) and handing what is durable to
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
            let (events, notify, metrics) =
                (events.clone(), events_committed.clone(), metrics.clone());
            std::thread::Builder::new()
                .name("landport-store".into())
                .spawn(move || {
                    writer::run(
                        store,
                        writer_rx,
                        durable_tx,
                        events,
                        notify,
                        metrics,
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
        loop {
            // The tracker's next deadline (server time) as a point on tokio's clock.
            let timer_at = core.next_deadline().map(|deadline_ms| {
                let wait_ms = (deadline_ms - clock.now_ms()).max(0) as u64;
                tokio::time::Instant::now() + Duration::from_millis(wait_ms)
            });
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
            if stop || clock.now().saturating_duration_since(last_snapshot) >= config.snapshot_every
            {
                last_snapshot = clock.now();
                match serde_json::to_vec(&core.tracker().snapshot()) {
                    Ok(bytes) => {
                        if writer_tx.send(WriterMsg::Snapshot(bytes)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "tracker snapshot failed"),
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

    use bytes::Bytes;
    use landport_tracker::{
        EventType, GeofenceDef, Place, Reading, Shape, ShipmentDef, ShipmentStatus,
    };
    use serde_json::json;

    use super::*;
    use crate::core::DeadLetter;
    use crate::decoded::Content;
    use crate::retention;
    use ShipmentStatus::{Arrived, Cancelled, Delivered, InTransit, Planned};
    use landport_store::{DeviceRecord, EventFilter, ShipmentRecord, TelemetryRow};

    const NOW: TimestampMs = 1_795_400_000_000;
    const DAY_MS: i64 = 86_400_000;
    const HOUR_MS: i64 = 3_600_000;

    fn offline_after(seconds: u32) -> TrackerSettings {
        TrackerSettings {
            offline_after_seconds: seconds,
            ..TrackerSettings::default()
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        (tmp, store)
    }

    /// One message of `acme`'s `device` holding `reading`, as ingest decodes it (QoS 0).
    fn message(device: &str, reading: Reading, received_ms: TimestampMs) -> Decoded<u32> {
        Decoded {
            topic: format!("landport/acme/{device}/telemetry"),
            payload: Bytes::new(),
            received_ms,
            content: Content::Device {
                tenant: "acme".into(),
                device: device.into(),
                readings: vec![reading],
                refusals: Vec::new(),
            },
            ack: None,
        }
    }

    /// What the pipeline does with one message: apply it, commit its rows and events.
    fn ingest(
        store: &mut Store,
        ing: &mut Core,
        device: &str,
        reading: &Reading,
        now_ms: TimestampMs,
    ) -> Vec<EventType> {
        let mut out = Output::default();
        let mut intake = Intake::new(ing.metrics().clone());
        intake.apply(ing, &message(device, *reading, now_ms), &mut out);
        assert!(out.dead_letters.is_empty(), "{reading:?} refused");
        store.commit(&out.rows, &out.events).unwrap();
        out.events.iter().map(|e| e.kind).collect()
    }

    fn temp(ts_ms: TimestampMs, temp_c: f64) -> Reading {
        Reading::at(ts_ms).with_temp(temp_c)
    }

    fn tick(ing: &mut Core, now_ms: TimestampMs) -> Vec<EventType> {
        let mut out = Output::default();
        ing.tick(now_ms, &mut out);
        out.events.iter().map(|e| e.kind).collect()
    }

    /// Saves a snapshot of `ing` covering every reading stored so far, as the pipeline does.
    fn save_snapshot(store: &mut Store, ing: &Core) {
        let bytes = serde_json::to_vec(&ing.tracker().snapshot()).unwrap();
        let rowid = store.telemetry_rowid_max().unwrap();
        store.save_snapshot(&bytes, rowid).unwrap();
    }

    fn restart(store: &mut Store, settings: TrackerSettings) -> Core {
        recover(store, settings, true, Metrics::new()).unwrap()
    }

    // ----- recover ------------------------------------------------------------------------

    #[test]
    fn a_restored_snapshot_runs_under_todays_settings_not_its_own() {
        for (before_s, after_s) in [(300, 60), (60, 300)] {
            let (_tmp, mut store) = store();
            let mut ing = restart(&mut store, offline_after(before_s));
            ingest(&mut store, &mut ing, "t1", &temp(NOW, 4.0), NOW);
            save_snapshot(&mut store, &ing);
            drop(ing);

            let mut ing = restart(&mut store, offline_after(after_s));
            assert_eq!(ing.tracker().settings(), &offline_after(after_s));
            // The device's offline deadline follows the new setting, not the snapshot's.
            let due = NOW + i64::from(after_s) * 1000;
            assert_eq!(tick(&mut ing, due - 1_000), [], "{before_s} -> {after_s}");
            assert_eq!(
                tick(&mut ing, due),
                [EventType::DeviceOffline],
                "{before_s} -> {after_s}"
            );
        }
    }

    #[test]
    fn without_a_snapshot_the_replay_runs_under_todays_settings() {
        let (_tmp, mut store) = store();
        let mut ing = restart(&mut store, offline_after(300));
        ingest(&mut store, &mut ing, "t1", &temp(NOW, 4.0), NOW);
        drop(ing);
        let mut ing = restart(&mut store, offline_after(60));
        assert_eq!(tick(&mut ing, NOW + 59_000), []);
        assert_eq!(tick(&mut ing, NOW + 60_000), [EventType::DeviceOffline]);
    }

    fn coldroom(range: [f64; 2]) -> DeviceRecord {
        DeviceRecord {
            tenant: "acme".into(),
            id: "coldroom".into(),
            name: "Cold room".into(),
            kind: "sensor".into(),
            // as the API stores it
            profile: json!({"temp_range_c": range, "max_speed_kmh": null}),
            created_ms: NOW,
        }
    }

    #[test]
    fn a_device_registered_after_the_last_snapshot_keeps_its_profile_across_a_restart() {
        let (_tmp, mut store) = store();
        let ing = restart(&mut store, TrackerSettings::default());
        save_snapshot(&mut store, &ing);
        // Registered (store first, then the live tracker, as the API does); no snapshot since.
        store.insert_device(&coldroom([2.0, 8.0])).unwrap();
        drop(ing);

        let mut ing = restart(&mut store, TrackerSettings::default());
        let mut kinds = ingest(&mut store, &mut ing, "coldroom", &temp(NOW, 12.0), NOW);
        let later = NOW + 400_000; // past the 300 s grace
        kinds.extend(ingest(
            &mut store,
            &mut ing,
            "coldroom",
            &temp(later, 12.5),
            later,
        ));
        assert_eq!(kinds, [EventType::TemperatureExcursion]);
    }

    #[test]
    fn a_profile_changed_after_the_last_snapshot_is_the_one_in_force_after_a_restart() {
        let (_tmp, mut store) = store();
        let mut ing = restart(&mut store, TrackerSettings::default());
        store.insert_device(&coldroom([2.0, 8.0])).unwrap();
        ing.tracker_mut().set_device_profile(
            "acme",
            "coldroom",
            DeviceProfile {
                temp_range_c: Some([2.0, 8.0]),
                max_speed_kmh: None,
            },
        );
        save_snapshot(&mut store, &ing);
        // widened to [0, 20] after the snapshot
        assert!(store.update_device(&coldroom([0.0, 20.0])).unwrap());
        drop(ing);

        let mut ing = restart(&mut store, TrackerSettings::default());
        let view = ing.tracker().device("acme", "coldroom").unwrap();
        assert_eq!(view.profile.temp_range_c, Some([0.0, 20.0]));
        let mut kinds = ingest(&mut store, &mut ing, "coldroom", &temp(NOW, 12.0), NOW);
        let later = NOW + 400_000;
        kinds.extend(ingest(
            &mut store,
            &mut ing,
            "coldroom",
            &temp(later, 12.5),
            later,
        ));
        assert_eq!(kinds, []);
    }

    #[test]
    fn registry_and_snapshot_statuses_merge() {
        let table = [
            // (registry, snapshot, after the restart)
            (Planned, None, Planned),
            (Cancelled, None, Cancelled),
            // the tracker's own progress since the registry row was written is kept
            (Planned, Some(InTransit), InTransit),
            (Planned, Some(Arrived), Arrived),
            (InTransit, Some(Arrived), Arrived),
            // a user's end states win
            (Delivered, Some(InTransit), Delivered),
            (Cancelled, Some(Arrived), Cancelled),
            (Delivered, Some(Cancelled), Delivered),
            // only a user sets delivered / cancelled: a registry that differs is newer
            (InTransit, Some(Delivered), InTransit),
            (Planned, Some(Cancelled), Planned),
            // the tracker only moves forward: a registry further along is the user's word
            (InTransit, Some(Planned), InTransit),
            (Arrived, Some(InTransit), Arrived),
            (InTransit, Some(InTransit), InTransit),
        ];
        for (stored, live, want) in table {
            assert_eq!(merge_status(stored, live), want, "{stored:?} + {live:?}");
        }
    }

    #[test]
    fn recover_merges_each_shipments_registry_status_with_the_snapshots() {
        let (_tmp, mut store) = store();
        let mut ing = restart(&mut store, TrackerSettings::default());
        let def = |id: &str| ShipmentDef {
            id: id.into(),
            device: "truck".into(),
            reference: None,
            origin: None,
            destination: Place::Point {
                lon: 123.0,
                lat: 41.0,
            },
            route: None,
            route_corridor_m: None,
            deadline_ms: None,
            temp_range_c: None,
            max_speed_kmh: None,
        };
        // (id, registry, snapshot: None = created after it, after the restart)
        let cases = [
            ("progressed", Planned, Some(InTransit), InTransit),
            ("delivered", Delivered, Some(InTransit), Delivered),
            ("reopened", Planned, Some(Cancelled), Planned),
            ("arrived-by-hand", Arrived, Some(InTransit), Arrived),
            ("new", Planned, None, Planned),
            ("new-cancelled", Cancelled, None, Cancelled),
        ];
        for (id, stored, live, _) in cases {
            store
                .insert_shipment(&ShipmentRecord {
                    tenant: "acme".into(),
                    def: def(id),
                    status: stored,
                    updated_ms: NOW,
                })
                .unwrap();
            if let Some(live) = live {
                let t = ing.tracker_mut();
                t.upsert_shipment("acme", def(id)).unwrap();
                t.set_shipment_status("acme", id, live).unwrap();
            }
        }
        save_snapshot(&mut store, &ing);
        drop(ing);

        let ing = restart(&mut store, TrackerSettings::default());
        for (id, _, _, want) in cases {
            assert_eq!(
                ing.tracker().shipment("acme", id).unwrap().status,
                want,
                "{id}"
            );
        }
    }

    // ----- recover: falling back on an older snapshot --------------------------------------

    /// A position reading.
    fn fix(ts_ms: TimestampMs, lon: f64, lat: f64) -> Reading {
        Reading::at(ts_ms).with_position(lon, lat)
    }

    const OUTSIDE: (f64, f64) = (123.05, 41.0);
    const INSIDE: (f64, f64) = (123.0, 41.0);

    /// Trucks driving in and out of the yard in three stretches, with a snapshot after the
    /// first and after the second. `replace` stands in for each snapshot's bytes, older
    /// first (`None` keeps the real one). Returns the live ingestor as it was at the "crash".
    fn yard_history(store: &mut Store, replace: [Option<Vec<u8>>; 2]) -> Core {
        let fence = GeofenceRecord {
            tenant: "acme".into(),
            def: yard(),
            updated_ms: NOW,
        };
        store.insert_geofence(&fence).unwrap();
        let mut ing = restart(store, TrackerSettings::default());
        let stretches = [
            [("t1", OUTSIDE), ("t2", INSIDE)],
            [("t1", INSIDE), ("t2", OUTSIDE)],
            [("t1", OUTSIDE), ("t3", INSIDE)],
        ];
        let mut replace = replace.into_iter();
        for (i, stretch) in stretches.into_iter().enumerate() {
            let ts = NOW + i as i64 * 60_000;
            for (device, (lon, lat)) in stretch {
                ingest(store, &mut ing, device, &fix(ts, lon, lat), ts);
                ingest(
                    store,
                    &mut ing,
                    device,
                    &temp(ts + 1, 4.0 + i as f64),
                    ts + 1,
                );
            }
            if let Some(bytes) = replace.next() {
                match bytes {
                    Some(bytes) => {
                        let rowid = store.telemetry_rowid_max().unwrap();
                        store.save_snapshot(&bytes, rowid).unwrap();
                    }
                    None => save_snapshot(store, &ing),
                }
            }
        }
        ing
    }

    /// The tracker's devices as the API shows them, without their slots (a full replay may
    /// number devices in another order than the live run did).
    fn device_views(ing: &Core) -> Vec<landport_tracker::DeviceView> {
        let mut views = ing.tracker().devices("acme");
        for v in &mut views {
            v.slot = landport_tracker::DeviceSlot(0);
        }
        views
    }

    /// Every stored event id, in seq order.
    fn event_ids(store: &Store) -> Vec<String> {
        let events = store.events_after(&EventFilter::default(), 10_000).unwrap();
        events.into_iter().map(|(_, e)| e.id).collect()
    }

    /// The bytes of a snapshot of `ing` from a version this build does not read: they decode,
    /// and `Tracker::restore` refuses them.
    fn from_another_version(ing: &Core) -> Vec<u8> {
        let mut snap = ing.tracker().snapshot();
        snap.version += 1;
        serde_json::to_vec(&snap).unwrap()
    }

    /// What a crash and restart after [`yard_history`] gave.
    struct Recovered {
        /// The live state at the crash.
        live: Vec<landport_tracker::DeviceView>,
        /// The state after the restart.
        recovered: Vec<landport_tracker::DeviceView>,
        /// The telemetry rowid the restart replayed from (0 = every reading).
        replayed_after: i64,
        /// Stored event ids at the crash, and after the restart.
        events_before: Vec<String>,
        events_after: Vec<String>,
    }

    /// Runs [`yard_history`] with the snapshot bytes `replace` makes (from a live ingestor
    /// of the same history), crashes and restarts.
    fn crash_and_recover(replace: impl FnOnce(&Core) -> [Option<Vec<u8>>; 2]) -> Recovered {
        let (_scratch_dir, mut scratch) = store();
        let replace = replace(&yard_history(&mut scratch, [None, None]));

        let (_tmp, mut store) = store();
        let live = yard_history(&mut store, replace);
        let events_before = event_ids(&store);
        let (_, replayed_after) =
            restore_newest(store.load_snapshots().unwrap(), TrackerSettings::default());
        let ing = restart(&mut store, TrackerSettings::default());
        Recovered {
            live: device_views(&live),
            recovered: device_views(&ing),
            replayed_after,
            events_before,
            events_after: event_ids(&store),
        }
    }

    #[test]
    fn a_newest_snapshot_that_does_not_decode_falls_back_on_the_one_before() {
        let good = crash_and_recover(|_| [None, None]);
        let got = crash_and_recover(|_| [None, Some(b"{\"version\":1,\"sett".to_vec())]);
        // the older snapshot, not a full replay
        assert!(
            0 < got.replayed_after && got.replayed_after < good.replayed_after,
            "{} vs {}",
            got.replayed_after,
            good.replayed_after
        );
        assert!(
            got.live.iter().any(|v| v.geofences == ["yard"]),
            "{:?}",
            got.live
        );
        assert_eq!(got.recovered, got.live);
        assert_eq!(
            got.recovered, good.recovered,
            "as a recover from a good snapshot"
        );
        assert!(got.events_before.len() >= 4, "{:?}", got.events_before);
        assert_eq!(got.events_after, got.events_before, "nothing stored twice");
        assert_eq!(got.events_after, good.events_after);
    }

    #[test]
    fn with_no_snapshot_that_restores_every_stored_reading_is_replayed() {
        let good = crash_and_recover(|_| [None, None]);
        let got = crash_and_recover(|live| {
            [
                Some(b"\x00garbage".to_vec()),
                Some(from_another_version(live)),
            ]
        });
        assert_eq!(got.replayed_after, 0, "a full replay");
        assert_eq!(got.recovered, got.live);
        assert_eq!(
            got.recovered, good.recovered,
            "as a recover from a good snapshot"
        );
        assert_eq!(got.events_after, got.events_before, "nothing stored twice");
        assert_eq!(got.events_after, good.events_after);
    }

    #[test]
    fn restore_newest_takes_the_first_snapshot_that_restores() {
        let (_tmp, mut store) = store();
        let ing = yard_history(&mut store, [None, None]);
        let good = serde_json::to_vec(&ing.tracker().snapshot()).unwrap();
        let settings = TrackerSettings::default;
        let cases = [
            (vec![(good.clone(), 7), (b"x".to_vec(), 5)], 7),
            (vec![(b"x".to_vec(), 7), (good.clone(), 5)], 5),
            (vec![(from_another_version(&ing), 7), (good, 5)], 5),
            (vec![(b"x".to_vec(), 7), (b"y".to_vec(), 5)], 0),
            (vec![], 0),
        ];
        for (i, (snapshots, want)) in cases.into_iter().enumerate() {
            let (tracker, rowid) = restore_newest(snapshots, settings());
            assert_eq!(rowid, want, "case {i}");
            let devices = tracker.devices("acme").len();
            assert_eq!(devices, if want == 0 { 0 } else { 3 }, "case {i}");
        }
    }

    // ----- recover: what the registry deleted after the snapshot ---------------------------

    fn shipment_to(id: &str, device: &str, fence: &str) -> ShipmentRecord {
        ShipmentRecord {
            tenant: "acme".into(),
            def: ShipmentDef {
                id: id.into(),
                device: device.into(),
                reference: None,
                origin: None,
                destination: Place::Geofence(fence.into()),
                route: None,
                route_corridor_m: None,
                deadline_ms: None,
                temp_range_c: None,
                max_speed_kmh: None,
            },
            status: Planned,
            updated_ms: NOW,
        }
    }

    #[test]
    fn geofences_and_shipments_deleted_after_the_last_snapshot_stay_deleted() {
        let (_tmp, mut store) = store();
        let mut dock = yard();
        dock.id = "dock".into();
        for def in [yard(), dock] {
            let fence = GeofenceRecord {
                tenant: "acme".into(),
                def,
                updated_ms: NOW,
            };
            store.insert_geofence(&fence).unwrap();
        }
        store
            .insert_shipment(&shipment_to("S", "t1", "yard"))
            .unwrap();
        store
            .insert_shipment(&shipment_to("K", "t2", "dock"))
            .unwrap();
        let mut ing = restart(&mut store, TrackerSettings::default());
        ingest(&mut store, &mut ing, "t1", &fix(NOW, 123.0, 41.0), NOW);
        assert_eq!(ing.tracker().geofences("acme").len(), 2);
        assert_eq!(ing.tracker().shipments("acme").len(), 2);
        save_snapshot(&mut store, &ing);
        // Deleted as the API does it (the store first, then the live tracker); then the
        // crash, before the next snapshot.
        assert!(store.delete_shipment("acme", "S").unwrap());
        assert!(store.delete_geofence("acme", "yard").unwrap());
        drop(ing);

        let ing = restart(&mut store, TrackerSettings::default());
        let t = ing.tracker();
        let fences: Vec<&str> = t.geofences("acme").iter().map(|g| g.id.as_str()).collect();
        assert_eq!(fences, ["dock"]);
        assert!(t.geofence("acme", "yard").is_none());
        assert!(t.shipment("acme", "S").is_none());
        let shipments: Vec<&str> = t
            .shipments("acme")
            .iter()
            .map(|s| s.def.id.as_str())
            .collect();
        assert_eq!(shipments, ["K"]);
        // t1 is inside both fences; only the one that still exists is listed.
        assert_eq!(t.device("acme", "t1").unwrap().geofences, ["dock"]);
    }

    fn truck(id: &str) -> DeviceRecord {
        DeviceRecord {
            tenant: "acme".into(),
            id: id.into(),
            name: id.into(),
            kind: "truck".into(),
            profile: json!({}),
            created_ms: NOW,
        }
    }

    fn restart_registered_only(store: &mut Store) -> Core {
        recover(store, TrackerSettings::default(), false, Metrics::new()).unwrap()
    }

    #[test]
    fn without_auto_registration_a_device_deleted_after_the_last_snapshot_stays_deleted() {
        let (_tmp, mut store) = store();
        store.insert_device(&truck("gone")).unwrap();
        store.insert_device(&truck("kept")).unwrap();
        // planned for a truck not registered yet: the tracker holds a slot for it
        let fence = GeofenceRecord {
            tenant: "acme".into(),
            def: yard(),
            updated_ms: NOW,
        };
        store.insert_geofence(&fence).unwrap();
        store
            .insert_shipment(&shipment_to("P", "later", "yard"))
            .unwrap();
        let mut ing = restart_registered_only(&mut store);
        let later_slot = ing.tracker().find_device("acme", "later").unwrap();
        ingest(&mut store, &mut ing, "gone", &temp(NOW, 4.0), NOW);
        ingest(&mut store, &mut ing, "kept", &temp(NOW, 4.0), NOW);
        save_snapshot(&mut store, &ing);
        // A reading after the snapshot: replaying it must not bring the device back either.
        let later = NOW + 1_000;
        ingest(&mut store, &mut ing, "gone", &temp(later, 5.0), later);
        assert!(store.delete_device("acme", "gone").unwrap());
        drop(ing);

        let mut ing = restart_registered_only(&mut store);
        assert!(ing.tracker().device("acme", "gone").is_none());
        assert!(ing.tracker().device("acme", "kept").is_some());
        // the shipment's slot is the one it had, still linked
        let t = ing.tracker();
        assert_eq!(t.find_device("acme", "later"), Some(later_slot));
        assert_eq!(t.device_shipment(later_slot), Some("P"));
        // and its readings are refused, as after the deletion
        let mut out = Output::default();
        let later = NOW + 2_000;
        let gone = message("gone", temp(later, 5.0), later);
        Intake::new(Metrics::new()).apply(&mut ing, &gone, &mut out);
        assert!(out.rows.is_empty());
        assert_eq!(out.dead_letters.len(), 1);
    }

    #[test]
    fn with_auto_registration_devices_without_a_registry_row_keep_their_live_state() {
        let (_tmp, mut store) = store();
        let fence = GeofenceRecord {
            tenant: "acme".into(),
            def: yard(),
            updated_ms: NOW,
        };
        store.insert_geofence(&fence).unwrap();
        let mut ing = restart(&mut store, TrackerSettings::default());
        let kinds = ingest(&mut store, &mut ing, "t9", &fix(NOW, 123.0, 41.0), NOW);
        assert_eq!(kinds, [EventType::GeofenceEntered]);
        save_snapshot(&mut store, &ing);
        let before = event_ids(&store);
        drop(ing);

        let mut ing = restart(&mut store, TrackerSettings::default());
        assert_eq!(
            ing.tracker().device("acme", "t9").unwrap().geofences,
            ["yard"]
        );
        let later = NOW + 1_000;
        let kinds = ingest(&mut store, &mut ing, "t9", &fix(later, 123.0, 41.0), later);
        assert_eq!(kinds, [], "still inside: no second entry");
        assert_eq!(event_ids(&store), before);
    }

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

    /// A fence around (123.0, 41.0) that confirms at once: a probe device's first reading there
    /// fires `geofence.entered`.
    fn yard() -> GeofenceDef {
        let ring = geo_types::LineString::from(vec![
            (122.99, 40.99),
            (123.01, 40.99),
            (123.01, 41.01),
            (122.99, 41.01),
            (122.99, 40.99),
        ]);
        GeofenceDef {
            id: "yard".into(),
            name: "Yard".into(),
            kind: "warehouse".into(),
            shape: Shape::Area(geo_types::MultiPolygon(vec![geo_types::Polygon::new(
                ring,
                vec![],
            )])),
            confirm_seconds: Some(0),
            dwell_seconds: None,
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
