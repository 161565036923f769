//! Building the core from the store at start: the newest snapshot that restores, the
//! registry as the source of truth for definitions, then a replay of the readings stored
//! after the snapshot (see [`recover()`]).

use std::collections::HashSet;
use std::sync::Arc;

use landport_store::{GeofenceRecord, ShipmentRecord, Store};
use landport_tracker::device::DeviceProfile;
use landport_tracker::{ShipmentStatus, Tracker, TrackerSettings, TrackerSnapshot};

use crate::core::Core;
use crate::driver::PipelineError;
use crate::metrics::Metrics;

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

/// A snapshot as the store keeps it: its JSON, gzip-compressed at the fastest level. With
/// 100,000 devices (two readings each) the JSON is 111 MB, which the store writer (ingest's
/// own thread) had to copy into the database every 30 s; compressed it is 8.8 MB (12.6x),
/// for 0.31 s of serializing and compressing against 0.27 s of serializing alone (measured
/// once, release build), done where the snapshot is serialized, off ingest's threads.
pub fn encode_snapshot(snap: &TrackerSnapshot) -> Result<Vec<u8>, PipelineError> {
    use std::io::Write;
    let fail = |e: &dyn std::fmt::Display| PipelineError::Snapshot(e.to_string());
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // serde_json writes in small pieces: buffered, the compressor sees 64 KiB at a time.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, gz);
    serde_json::to_writer(&mut out, snap).map_err(|e| fail(&e))?;
    out.flush().map_err(|e| fail(&e))?;
    let gz = out.into_inner().map_err(|e| fail(&e))?;
    gz.finish().map_err(|e| fail(&e))
}

/// A stored snapshot's JSON: gzip-compressed ([`encode_snapshot`]) or, from builds before
/// it, plain.
fn snapshot_json(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, PipelineError> {
    use std::io::Read;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let mut json = Vec::with_capacity(bytes.len() * 8);
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .map_err(|e| PipelineError::Snapshot(format!("gzip: {e}")))?;
    Ok(std::borrow::Cow::Owned(json))
}

/// Decodes and restores one snapshot under `settings`.
fn restore_snapshot(bytes: &[u8], settings: TrackerSettings) -> Result<Tracker, PipelineError> {
    let mut snap: TrackerSnapshot = serde_json::from_slice(&snapshot_json(bytes)?)
        .map_err(|e| PipelineError::Snapshot(e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use crate::core::Output;
    use landport_tracker::{EventType, Place, Reading, ShipmentDef, ShipmentStatus, TimestampMs};
    use serde_json::json;

    use super::*;
    use crate::decoded::Intake;
    use crate::test_support::*;
    use ShipmentStatus::{Arrived, Cancelled, Delivered, InTransit, Planned};
    use landport_store::{DeviceRecord, EventFilter, ShipmentRecord};

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
    fn snapshots_are_stored_compressed_and_plain_ones_of_older_builds_still_restore() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let mut out = Vec::new();
        for i in 0..500 {
            let slot = tracker.device_slot("acme", &format!("truck-{i}"));
            let r = Reading::at(1_795_400_000_000 + i64::from(i))
                .with_position(123.0 + f64::from(i) * 1e-3, 41.0)
                .with_speed(50.0);
            tracker.apply(slot, &r, r.ts_ms, &mut out);
        }
        let snap = tracker.snapshot();
        let gz = encode_snapshot(&snap).unwrap();
        let plain = serde_json::to_vec(&snap).unwrap();
        assert!(gz.starts_with(&[0x1f, 0x8b]), "gzip");
        assert!(
            gz.len() * 4 < plain.len(),
            "{} of {}",
            gz.len(),
            plain.len()
        );
        assert_eq!(&*snapshot_json(&gz).unwrap(), &plain[..], "the same JSON");
        let from_gz = restore_snapshot(&gz, TrackerSettings::default()).unwrap();
        let from_plain = restore_snapshot(&plain, TrackerSettings::default()).unwrap();
        assert_eq!(from_gz.snapshot(), from_plain.snapshot());
        assert_eq!(from_gz.devices("acme").len(), 500);
        // A torn one is refused (recovery then falls back on an older one).
        assert!(restore_snapshot(&gz[..gz.len() / 2], TrackerSettings::default()).is_err());
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
}
