//! The tracker: every tenant's devices, geofences and shipments, and the event rules.
//!
//! `apply` is the hot path: no allocation in the steady state, one R-tree point query against
//! the tenant's fence envelopes, exact tests only for the candidates and the fences the device is
//! already in. Everything that happens without a reading (offline, dwell, an excursion
//! outlasting its grace period) is driven by `next_deadline` / `on_timer`, fed with server time.
//!
//! Two clocks: readings and events carry device time (`ts_ms`); `now_ms` is server time, used
//! only to decide when a device is silent. A timer converts between them with the offset seen at
//! the device's latest reading.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::device::{DeviceProfile, DeviceState, Membership, NearFences};
use crate::error::TrackerError;
use crate::eta;
use crate::event::{Event, EventType, format_rfc3339};
use crate::fence_index::FenceIndex;
use crate::geodesy;
use crate::geofence::{GeofenceDef, Shape};
use crate::positions::PositionIndex;
use crate::reading::{Fix, Reading, TimestampMs};
use crate::route::Route;
use crate::settings::TrackerSettings;
use crate::shipment::{
    Eta, EtaMethod, Excursion, Place, ShipmentDef, ShipmentState, ShipmentStatus,
};

/// Handle of a device, stable for the life of the tracker (and across snapshot/restore).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceSlot(pub u32);

/// What `apply` did with a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The newest reading of its device: state moved, rules ran.
    Current,
    /// Older than the device's latest: store it in history, nothing else.
    Late,
    /// Repeats an accepted reading: drop it.
    Duplicate,
}

/// A device's live state as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceView {
    pub slot: DeviceSlot,
    pub id: String,
    pub online: bool,
    /// Device time of the latest reading.
    pub last_seen_ms: Option<TimestampMs>,
    pub fix: Option<Fix>,
    /// Device time of `fix`.
    pub fix_ts_ms: Option<TimestampMs>,
    pub temp_c: Option<f64>,
    pub weight_kg: Option<f64>,
    pub battery_pct: Option<f64>,
    /// Ids of the geofences the device is inside now.
    pub geofences: Vec<String>,
    pub profile: DeviceProfile,
}

/// A tenant's indexes and name maps.
#[derive(Debug, Clone, Default)]
struct Tenant {
    name: String,
    fences: FenceIndex,
    /// Keyed by the device's tenant-local slot.
    positions: PositionIndex,
    devices: HashMap<String, u32>,
    /// Tenant-local slot -> global device slot.
    locals: Vec<u32>,
    shipments: HashMap<String, u32>,
    /// Bumped on every fence change; invalidates the devices' `NearFences` lists.
    fence_generation: u64,
    /// Bumped on every change that is not a reading (registry, fences, shipments, profiles),
    /// so the read side knows to rebuild this tenant's view (see `view`).
    epoch: u64,
}

/// Derived from a shipment definition and the tenant's fences; rebuilt when either changes.
#[derive(Debug, Clone, Default)]
struct ShipmentPlan {
    route: Option<Route>,
    origin_slot: Option<u32>,
    destination_slot: Option<u32>,
    /// Point the direct ETA aims at: the destination point, or its geofence's centre.
    destination_lonlat: Option<(f64, f64)>,
}

/// A fence transition confirmed during one reading, handed to the shipment rules.
#[derive(Debug, Clone, Copy)]
struct Transition {
    slot: u32,
    entered: bool,
    crossing_ms: TimestampMs,
}

/// The whole state, serializable so a restarted service resumes without re-firing events.
/// Indexes are not stored: `Tracker::restore` rebuilds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerSnapshot {
    pub version: u32,
    pub settings: TrackerSettings,
    pub tenants: Vec<TenantSnapshot>,
    pub devices: Vec<DeviceState>,
    pub shipments: Vec<Option<ShipmentState>>,
}

/// One tenant's part of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantSnapshot {
    pub name: String,
    /// Geofences with their slots, so device memberships keep pointing at them.
    pub fences: Vec<(u32, GeofenceDef)>,
    /// Slot the next new fence gets, so deleted fences' slots are never handed out again.
    pub next_fence_slot: u32,
    /// Slots (in `TrackerSnapshot::shipments`) of this tenant's shipments.
    pub shipments: Vec<u32>,
}

const SNAPSHOT_VERSION: u32 = 1;
const NO_TIMER: TimestampMs = TimestampMs::MAX;

/// Devices, geofences and shipments of every tenant, and the rules that turn readings into
/// events. Pure: the caller supplies time.
#[derive(Debug, Clone)]
pub struct Tracker {
    settings: TrackerSettings,
    tenants: Vec<Tenant>,
    tenant_ids: HashMap<String, u32>,
    devices: Vec<DeviceState>,
    shipments: Vec<Option<ShipmentState>>,
    plans: Vec<ShipmentPlan>,
    /// Min-heap of (server-time deadline, device slot); entries whose deadline no longer
    /// matches `timer_at` are stale and skipped.
    timers: BinaryHeap<Reverse<(TimestampMs, u32)>>,
    /// The deadline each device is registered under in `timers`, or `NO_TIMER`.
    timer_at: Vec<TimestampMs>,
    /// Reused buffers, so `apply` does not allocate.
    scratch_slots: Vec<u32>,
    scratch_transitions: Vec<Transition>,
    /// Changes of live state so far (not in snapshots: it only orders changes within one
    /// process, for [`Tracker::changed_since`]).
    change_seq: u64,
    /// Per device slot, `change_seq` at its latest change; missing or 0 = none yet.
    changed_at: Vec<u64>,
    /// Deadlines `on_timer` found due but could not advance (see there), so far.
    stalled_timers: u64,
    /// Tests only: an extra deadline for one device that no rule can advance, to exercise the
    /// stall guard in `on_timer`.
    #[cfg(test)]
    stuck_deadline: Option<(usize, TimestampMs)>,
}

/// Marks device `slot` as changed now.
fn touch(changed_at: &mut Vec<u64>, change_seq: &mut u64, slot: usize) {
    *change_seq += 1;
    if changed_at.len() <= slot {
        changed_at.resize(slot + 1, 0);
    }
    changed_at[slot] = *change_seq;
}

impl Tracker {
    pub fn new(settings: TrackerSettings) -> Self {
        Tracker {
            settings,
            tenants: Vec::new(),
            tenant_ids: HashMap::new(),
            devices: Vec::new(),
            shipments: Vec::new(),
            plans: Vec::new(),
            timers: BinaryHeap::new(),
            timer_at: Vec::new(),
            scratch_slots: Vec::new(),
            scratch_transitions: Vec::new(),
            change_seq: 0,
            changed_at: Vec::new(),
            stalled_timers: 0,
            #[cfg(test)]
            stuck_deadline: None,
        }
    }

    pub fn settings(&self) -> &TrackerSettings {
        &self.settings
    }

    /// Replaces the rule settings (a restored snapshot runs under today's configuration).
    pub fn set_settings(&mut self, settings: TrackerSettings) {
        self.settings = settings;
    }

    /// Tenant names known to the tracker (any tenant that has a device, fence or shipment).
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.tenants.iter().map(|t| t.name.as_str())
    }

    fn tenant_index(&mut self, tenant: &str) -> u32 {
        if let Some(&i) = self.tenant_ids.get(tenant) {
            return i;
        }
        let i = self.tenants.len() as u32;
        self.tenants.push(Tenant {
            name: tenant.to_owned(),
            fence_generation: 1,
            ..Tenant::default()
        });
        self.tenant_ids.insert(tenant.to_owned(), i);
        i
    }

    fn tenant(&self, tenant: &str) -> Option<&Tenant> {
        self.tenant_ids
            .get(tenant)
            .map(|&i| &self.tenants[i as usize])
    }

    /// The slot of a device, created on first use.
    pub fn device_slot(&mut self, tenant: &str, device: &str) -> DeviceSlot {
        let t = self.tenant_index(tenant);
        if let Some(&slot) = self.tenants[t as usize].devices.get(device) {
            return DeviceSlot(slot);
        }
        let slot = self.devices.len() as u32;
        let ten = &mut self.tenants[t as usize];
        let local = ten.locals.len() as u32;
        ten.locals.push(slot);
        ten.devices.insert(device.to_owned(), slot);
        ten.epoch += 1;
        self.devices
            .push(DeviceState::new(t, device.to_owned(), local));
        self.timer_at.push(NO_TIMER);
        DeviceSlot(slot)
    }

    /// The slot of an existing device.
    pub fn find_device(&self, tenant: &str, device: &str) -> Option<DeviceSlot> {
        self.tenant(tenant)?
            .devices
            .get(device)
            .map(|&s| DeviceSlot(s))
    }

    /// Sets a device's own temperature range and speed limit.
    ///
    /// An open excursion against the old range is dropped when the range changes, as
    /// `upsert_shipment` does for a shipment's range: it was measured against limits that no
    /// longer apply (or no longer exist), and a reading still out of the new range opens a new
    /// one. Keeping it would leave a deadline that no rule can fire.
    pub fn set_device_profile(&mut self, tenant: &str, device: &str, profile: DeviceProfile) {
        let slot = self.device_slot(tenant, device).0 as usize;
        let d = &mut self.devices[slot];
        if d.profile.temp_range_c != profile.temp_range_c {
            d.excursion = None;
        }
        d.profile = profile;
        self.tenants[d.tenant as usize].epoch += 1;
        self.arm_timer(slot);
    }

    /// The shipment a device's readings belong to now: its first in-transit shipment, else its
    /// first planned one (an InfluxDB tag and a dashboard filter).
    pub fn device_shipment(&self, device: DeviceSlot) -> Option<&str> {
        let d = &self.devices[device.0 as usize];
        let active = |want: ShipmentStatus| {
            d.shipments
                .iter()
                .filter_map(|&s| self.shipments[s as usize].as_ref())
                .find(|s| s.status == want)
        };
        active(ShipmentStatus::InTransit)
            .or_else(|| active(ShipmentStatus::Planned))
            .map(|s| s.def.id.as_str())
    }

    /// Forgets a device's live state (its shipments stay, waiting for a device of that id).
    pub fn remove_device(&mut self, tenant: &str, device: &str) -> bool {
        let Some(slot) = self.find_device(tenant, device) else {
            return false;
        };
        let d = &mut self.devices[slot.0 as usize];
        let t = &mut self.tenants[d.tenant as usize];
        t.devices.remove(device);
        t.positions.remove(d.local);
        t.epoch += 1;
        d.removed = true;
        d.memberships.clear();
        d.shipments.clear();
        d.fix = None;
        d.online = false;
        self.timer_at[slot.0 as usize] = NO_TIMER;
        true
    }

    // ----- readings -----------------------------------------------------------------------

    /// Applies one reading of `device`, received at server time `now_ms`, appending any events
    /// to `out`. Readings must come from one writer per device in arrival order; a batch should
    /// go through [`Tracker::apply_batch`] so it is applied in `ts` order.
    pub fn apply(
        &mut self,
        device: DeviceSlot,
        reading: &Reading,
        now_ms: TimestampMs,
        out: &mut Vec<Event>,
    ) -> Applied {
        let slot = device.0 as usize;
        let Tracker {
            settings,
            tenants,
            devices,
            shipments,
            plans,
            scratch_slots,
            scratch_transitions,
            change_seq,
            changed_at,
            ..
        } = self;
        let d = &mut devices[slot];
        let ts = reading.ts_ms;
        if d.is_duplicate(ts, reading.seq) {
            return Applied::Duplicate;
        }
        d.remember(ts, reading.seq);
        if d.last_ts_ms.is_some_and(|last| ts < last) {
            return Applied::Late;
        }
        let tenant = &mut tenants[d.tenant as usize];
        let seen_before = d.last_ts_ms.is_some();
        touch(changed_at, change_seq, slot);
        d.last_ts_ms = Some(ts);
        d.last_received_ms = Some(now_ms);
        if !d.online {
            d.online = true;
            if seen_before {
                out.push(Event::new(
                    EventType::DeviceOnline,
                    &tenant.name,
                    &d.id,
                    None,
                    None,
                    ts,
                    0,
                    json!({}),
                ));
            }
        }
        if reading.battery_pct.is_some() {
            d.battery_pct = reading.battery_pct;
        }

        scratch_transitions.clear();
        if let Some(fix) = reading.fix {
            let prev = d.fix.map(|p| (p, d.fix_ts_ms));
            // Speed: as reported, else derived from the previous fix when far enough apart in
            // time for GPS jitter not to dominate.
            let derived_kmh = prev.and_then(|(p, pts)| {
                let dt = ts - pts;
                (dt >= 5_000)
                    .then(|| haversine_m((p.lon, p.lat), (fix.lon, fix.lat)) / (dt as f64) * 3600.0)
            });
            let speed_kmh = fix.speed_kmh.or(derived_kmh);
            if let (Some(v), Some((_, pts))) = (speed_kmh, prev) {
                // A long gap says nothing about how fast the truck went meanwhile: cap it.
                d.speed.update(v / 3.6, (ts - pts).min(300_000));
            }
            d.fix = Some(fix);
            d.fix_ts_ms = ts;
            tenant.positions.update(d.local, fix.lon, fix.lat);
            eval_fences(
                settings,
                &tenant.fences,
                tenant.fence_generation,
                &tenant.name,
                d,
                &fix,
                ts,
                prev,
                scratch_slots,
                scratch_transitions,
                out,
            );
            for i in 0..d.shipments.len() {
                let s = d.shipments[i] as usize;
                if let Some(sh) = shipments[s].as_mut() {
                    eval_shipment_fix(
                        settings,
                        &tenant.name,
                        d,
                        sh,
                        &plans[s],
                        &fix,
                        ts,
                        scratch_transitions,
                        out,
                    );
                }
            }
            eval_overspeed(settings, &tenant.name, d, shipments, speed_kmh, ts, out);
        }
        if let Some(temp) = reading.temp_c {
            d.temp_c = Some(temp);
            eval_temperature(settings, &tenant.name, d, shipments, temp, ts, out);
        }
        if let Some(w) = reading.weight_kg {
            d.weight_kg = Some(w);
            eval_weight(settings, tenant, d, shipments, w, ts, out);
        }
        self.arm_timer(slot);
        Applied::Current
    }

    /// Applies a batch (e.g. store-and-forward after a dropout) in `ts` order, returning what
    /// happened to each reading, in the batch's sorted order.
    pub fn apply_batch(
        &mut self,
        device: DeviceSlot,
        readings: &mut [Reading],
        now_ms: TimestampMs,
        out: &mut Vec<Event>,
    ) -> Vec<Applied> {
        readings.sort_by_key(|r| r.ts_ms);
        readings
            .iter()
            .map(|r| self.apply(device, r, now_ms, out))
            .collect()
    }

    // ----- timers -------------------------------------------------------------------------

    /// Server time at which `on_timer` next has something to do (it may find nothing, if the
    /// device reported meanwhile).
    pub fn next_deadline(&self) -> Option<TimestampMs> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Fires what is due at server time `now_ms`: offline devices, dwells, excursions that
    /// outlasted their grace period.
    pub fn on_timer(&mut self, now_ms: TimestampMs, out: &mut Vec<Event>) {
        let mut due: Vec<(TimestampMs, usize)> = Vec::new();
        loop {
            while let Some(&Reverse((deadline, slot))) = self.timers.peek() {
                if deadline > now_ms {
                    break;
                }
                self.timers.pop();
                let slot = slot as usize;
                if self.timer_at[slot] != deadline {
                    continue;
                }
                self.timer_at[slot] = NO_TIMER;
                // A registered deadline may be earlier than the device's real one (see
                // `arm_timer`): what is due is processed in the order of the real deadlines,
                // so a tracker restored from a snapshot, whose registrations are exact, fires
                // the same events in the same order.
                match self.device_deadline(slot) {
                    Some(real) if real <= now_ms => due.push((real, slot)),
                    _ => self.arm_timer(slot),
                }
            }
            if due.is_empty() {
                return;
            }
            due.sort_unstable();
            for (_, slot) in due.drain(..) {
                let fired = out.len();
                self.device_timers(slot, now_ms, out);
                if out.len() > fired {
                    touch(&mut self.changed_at, &mut self.change_seq, slot);
                }
                // Guard: a deadline still due after its device's timers ran is one no rule
                // can advance (the rules and `device_deadline` disagree: a bug). Re-arming it
                // would spin this loop forever on the ingest task; instead the device is left
                // unarmed until its next reading and the stall is counted for the caller to
                // log and export.
                match self.device_deadline(slot) {
                    Some(t) if t <= now_ms => self.stalled_timers += 1,
                    _ => self.arm_timer(slot),
                }
            }
        }
    }

    /// How many times `on_timer` met a deadline it could not advance (each a bug, guarded).
    pub fn stalled_timers(&self) -> u64 {
        self.stalled_timers
    }

    /// Registers the device's earliest deadline if it is earlier than the one registered.
    /// Lazily: a later deadline (each reading postpones "offline") is not registered until the
    /// earlier one comes due, so the heap does not fill with one stale entry per reading.
    fn arm_timer(&mut self, slot: usize) {
        let Some(deadline) = self.device_deadline(slot) else {
            return;
        };
        if deadline < self.timer_at[slot] {
            self.timer_at[slot] = deadline;
            self.timers.push(Reverse((deadline, slot as u32)));
        }
    }

    /// Earliest server time at which something about this device becomes due.
    fn device_deadline(&self, slot: usize) -> Option<TimestampMs> {
        let d = &self.devices[slot];
        if d.removed {
            return None;
        }
        let (last_ts, received) = (d.last_ts_ms?, d.last_received_ms?);
        // Server time at which device time reaches `t`.
        let at = |t: TimestampMs| received.saturating_add(t.saturating_sub(last_ts));
        let mut best = NO_TIMER;
        if d.online {
            best = best.min(received + self.settings.offline_after_seconds as i64 * 1000);
        }
        let fences = &self.tenants[d.tenant as usize].fences;
        for m in &d.memberships {
            if m.inside
                && m.announced
                && !m.dwell_fired
                && let Some(dwell) = fences.get(m.slot).and_then(|f| f.def().dwell_seconds)
            {
                best = best.min(at(m.crossing_ms + dwell as i64 * 1000));
            }
        }
        // Only the excursions `device_timers` can fire: those with a range to fire against.
        let grace = self.settings.temp_grace_seconds as i64 * 1000;
        let own = d
            .excursion
            .as_ref()
            .filter(|_| d.profile.temp_range_c.is_some());
        let carried = d
            .shipments
            .iter()
            .filter_map(|&s| self.shipments[s as usize].as_ref())
            .filter(|s| s.def.temp_range_c.is_some())
            .filter_map(|s| s.excursion.as_ref());
        for e in own.into_iter().chain(carried) {
            if !e.fired {
                best = best.min(at(e.begin_ms + grace));
            }
        }
        #[cfg(test)]
        if let Some((stuck, t)) = self.stuck_deadline
            && stuck == slot
        {
            best = best.min(t);
        }
        (best != NO_TIMER).then_some(best)
    }

    fn device_timers(&mut self, slot: usize, now_ms: TimestampMs, out: &mut Vec<Event>) {
        let Tracker {
            settings,
            tenants,
            devices,
            shipments,
            change_seq,
            changed_at,
            ..
        } = self;
        let d = &mut devices[slot];
        let (Some(last_ts), Some(received)) = (d.last_ts_ms, d.last_received_ms) else {
            return;
        };
        if d.removed {
            return;
        }
        let tenant = &tenants[d.tenant as usize];
        // Device time now, by the offset seen at the latest reading.
        let device_now = last_ts.saturating_add(now_ms - received);

        let offline_ms = settings.offline_after_seconds as i64 * 1000;
        if d.online && now_ms - received >= offline_ms {
            d.online = false;
            touch(changed_at, change_seq, slot);
            out.push(Event::new(
                EventType::DeviceOffline,
                &tenant.name,
                &d.id,
                None,
                None,
                last_ts + offline_ms,
                0,
                json!({ "last_seen": format_rfc3339(last_ts),
                        "offline_after_seconds": settings.offline_after_seconds }),
            ));
        }
        for m in d.memberships.iter_mut() {
            fire_dwell_if_due(&tenant.fences, &tenant.name, &d.id, m, device_now, out);
        }
        let grace_ms = settings.temp_grace_seconds as i64 * 1000;
        if let Some(e) = d.excursion.as_mut()
            && let Some(range) = d.profile.temp_range_c
        {
            fire_excursion_if_due(
                &tenant.name,
                &d.id,
                None,
                e,
                range,
                grace_ms,
                device_now,
                out,
            );
        }
        for &s in &d.shipments {
            if let Some(sh) = shipments[s as usize].as_mut()
                && let (Some(e), Some(range)) = (sh.excursion.as_mut(), sh.def.temp_range_c)
            {
                fire_excursion_if_due(
                    &tenant.name,
                    &d.id,
                    Some(&sh.def.id),
                    e,
                    range,
                    grace_ms,
                    device_now,
                    out,
                );
            }
        }
    }

    // ----- geofences ----------------------------------------------------------------------

    /// Adds or replaces a geofence. Devices are tested against it from their next reading.
    pub fn upsert_geofence(&mut self, tenant: &str, def: GeofenceDef) -> Result<(), TrackerError> {
        let t = self.tenant_index(tenant) as usize;
        self.tenants[t].fences.upsert(def)?;
        self.tenants[t].fence_generation += 1;
        self.tenants[t].epoch += 1;
        self.replan_tenant(t);
        Ok(())
    }

    /// Deletes a geofence; devices inside it simply stop being inside (no exit event).
    pub fn remove_geofence(&mut self, tenant: &str, id: &str) -> bool {
        let Some(&t) = self.tenant_ids.get(tenant) else {
            return false;
        };
        let t = t as usize;
        let Some(slot) = self.tenants[t].fences.remove(id) else {
            return false;
        };
        self.tenants[t].fence_generation += 1;
        self.tenants[t].epoch += 1;
        for &g in &self.tenants[t].locals {
            self.devices[g as usize]
                .memberships
                .retain(|m| m.slot != slot);
        }
        self.replan_tenant(t);
        true
    }

    pub fn geofence(&self, tenant: &str, id: &str) -> Option<&GeofenceDef> {
        let f = &self.tenant(tenant)?.fences;
        f.get(f.slot_of(id)?).map(|g| g.def())
    }

    /// The tenant's geofences, in creation order.
    pub fn geofences(&self, tenant: &str) -> Vec<&GeofenceDef> {
        self.tenant(tenant)
            .map(|t| t.fences.iter().map(|(_, g)| g.def()).collect())
            .unwrap_or_default()
    }

    /// Ids of the devices inside a geofence now; `None` if there is no such fence.
    pub fn devices_in_geofence(&self, tenant: &str, id: &str) -> Option<Vec<String>> {
        let t = self.tenant(tenant)?;
        let slot = t.fences.slot_of(id)?;
        let mut ids: Vec<String> = t
            .locals
            .iter()
            .map(|&g| &self.devices[g as usize])
            .filter(|d| d.membership(slot).is_some_and(|m| m.inside))
            .map(|d| d.id.clone())
            .collect();
        ids.sort();
        Some(ids)
    }

    // ----- shipments ----------------------------------------------------------------------

    /// Adds or replaces a shipment (its runtime status and history are kept on replace).
    pub fn upsert_shipment(&mut self, tenant: &str, def: ShipmentDef) -> Result<(), TrackerError> {
        validate_shipment(&def)?;
        let t = self.tenant_index(tenant) as usize;
        for place in def.origin.iter().chain(std::iter::once(&def.destination)) {
            if let Place::Geofence(id) = place
                && self.tenants[t].fences.slot_of(id).is_none()
            {
                return Err(TrackerError::InvalidShipment(format!(
                    "geofence {id:?} does not exist"
                )));
            }
        }
        let route = def.route.clone().map(Route::new).transpose()?;
        let device = self.device_slot(tenant, &def.device).0;
        let slot = match self.tenants[t].shipments.get(&def.id) {
            Some(&s) => {
                let sh = self.shipments[s as usize]
                    .as_mut()
                    .expect("shipment map points at a live slot");
                let old_device = sh.def.device.clone();
                if sh.def.route != def.route {
                    sh.deviated = false;
                    sh.route_pending_since_ms = None;
                }
                // The cached ETA was measured on the old plan (route, destination, device):
                // `shipment_eta` recomputes it from the device's last fix until the next one.
                sh.eta = None;
                if sh.def.temp_range_c != def.temp_range_c {
                    sh.excursion = None;
                }
                sh.def = def;
                if old_device != sh.def.device
                    && let Some(old) = self.tenants[t].devices.get(&old_device)
                {
                    self.devices[*old as usize].shipments.retain(|&x| x != s);
                }
                s
            }
            None => {
                let s = self.shipments.len() as u32;
                self.tenants[t].shipments.insert(def.id.clone(), s);
                self.shipments.push(Some(ShipmentState::new(def)));
                self.plans.push(ShipmentPlan::default());
                s
            }
        };
        self.tenants[t].epoch += 1;
        let d = &mut self.devices[device as usize];
        if !d.shipments.contains(&slot) {
            d.shipments.push(slot);
        }
        let mut plan = plan_for(
            &self.tenants[t].fences,
            self.shipments[slot as usize].as_ref().unwrap(),
        );
        plan.route = route;
        self.plans[slot as usize] = plan;
        Ok(())
    }

    /// Sets a shipment's status (e.g. `delivered` or `cancelled` by the user).
    pub fn set_shipment_status(
        &mut self,
        tenant: &str,
        id: &str,
        status: ShipmentStatus,
    ) -> Result<(), TrackerError> {
        let slot = self
            .tenant(tenant)
            .and_then(|t| t.shipments.get(id))
            .copied()
            .ok_or_else(|| TrackerError::InvalidShipment(format!("no shipment {id:?}")))?;
        if let Some(sh) = self.shipments[slot as usize].as_mut() {
            sh.status = status;
        }
        if let Some(&t) = self.tenant_ids.get(tenant) {
            self.tenants[t as usize].epoch += 1;
        }
        Ok(())
    }

    pub fn remove_shipment(&mut self, tenant: &str, id: &str) -> bool {
        let Some(&t) = self.tenant_ids.get(tenant) else {
            return false;
        };
        let Some(slot) = self.tenants[t as usize].shipments.remove(id) else {
            return false;
        };
        self.tenants[t as usize].epoch += 1;
        if let Some(sh) = self.shipments[slot as usize].take()
            && let Some(&d) = self.tenants[t as usize].devices.get(&sh.def.device)
        {
            self.devices[d as usize].shipments.retain(|&x| x != slot);
        }
        self.plans[slot as usize] = ShipmentPlan::default();
        true
    }

    pub fn shipment(&self, tenant: &str, id: &str) -> Option<&ShipmentState> {
        let s = *self.tenant(tenant)?.shipments.get(id)?;
        self.shipments[s as usize].as_ref()
    }

    /// The tenant's shipments, sorted by id.
    pub fn shipments(&self, tenant: &str) -> Vec<&ShipmentState> {
        let Some(t) = self.tenant(tenant) else {
            return Vec::new();
        };
        let mut v: Vec<&ShipmentState> = t
            .shipments
            .values()
            .filter_map(|&s| self.shipments[s as usize].as_ref())
            .collect();
        v.sort_by(|a, b| a.def.id.cmp(&b.def.id));
        v
    }

    /// The latest ETA of a shipment; computed from the device's last fix if no reading has
    /// arrived since the shipment was defined. `None` when there is no fix yet, or the goods
    /// have arrived.
    pub fn shipment_eta(&self, tenant: &str, id: &str) -> Option<Eta> {
        let t = *self.tenant_ids.get(tenant)?;
        let s = *self.tenants[t as usize].shipments.get(id)?;
        self.eta_of(t as usize, s as usize)
    }

    /// Recomputes every shipment plan of a tenant (after its fences changed).
    fn replan_tenant(&mut self, t: usize) {
        let slots: Vec<u32> = self.tenants[t].shipments.values().copied().collect();
        for s in slots {
            if let Some(sh) = self.shipments[s as usize].as_ref() {
                let route = self.plans[s as usize].route.take();
                let mut plan = plan_for(&self.tenants[t].fences, sh);
                plan.route = route;
                self.plans[s as usize] = plan;
            }
        }
    }

    // ----- queries ------------------------------------------------------------------------

    fn device_view(&self, slot: u32) -> DeviceView {
        let d = &self.devices[slot as usize];
        let fences = &self.tenants[d.tenant as usize].fences;
        let mut geofences: Vec<String> = d
            .memberships
            .iter()
            .filter(|m| m.inside)
            .filter_map(|m| fences.get(m.slot).map(|g| g.def().id.clone()))
            .collect();
        geofences.sort();
        DeviceView {
            slot: DeviceSlot(slot),
            id: d.id.clone(),
            online: d.online,
            last_seen_ms: d.last_ts_ms,
            fix: d.fix,
            fix_ts_ms: d.fix.map(|_| d.fix_ts_ms),
            temp_c: d.temp_c,
            weight_kg: d.weight_kg,
            battery_pct: d.battery_pct,
            geofences,
            profile: d.profile.clone(),
        }
    }

    pub fn device(&self, tenant: &str, id: &str) -> Option<DeviceView> {
        let slot = *self.tenant(tenant)?.devices.get(id)?;
        Some(self.device_view(slot))
    }

    /// The tenant's devices, sorted by id.
    pub fn devices(&self, tenant: &str) -> Vec<DeviceView> {
        let Some(t) = self.tenant(tenant) else {
            return Vec::new();
        };
        let mut v: Vec<DeviceView> = t.devices.values().map(|&s| self.device_view(s)).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The current change counter: pass it to [`Tracker::changed_since`] later to learn what
    /// changed in between.
    pub fn change_seq(&self) -> u64 {
        self.change_seq
    }

    /// A tenant's devices whose live state (a reading applied, online/offline) changed after
    /// `change_seq` had the value `since`, sorted by id. Cheap when few changed: one integer
    /// comparison per device, views only for the changed ones (a live map polls it every
    /// second on the pipeline's task).
    pub fn changed_since(&self, tenant: &str, since: u64) -> Vec<DeviceView> {
        let Some(t) = self.tenant(tenant) else {
            return Vec::new();
        };
        let mut v: Vec<DeviceView> = t
            .devices
            .values()
            .filter(|&&s| self.changed_at.get(s as usize).is_some_and(|&c| c > since))
            .map(|&s| self.device_view(s))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Devices whose latest position is inside `[min_lon, min_lat, max_lon, max_lat]`
    /// (`min_lon > max_lon` crosses the antimeridian), sorted by id.
    pub fn in_bbox(&self, tenant: &str, bbox: [f64; 4]) -> Vec<DeviceView> {
        let Some(t) = self.tenant(tenant) else {
            return Vec::new();
        };
        let mut v: Vec<DeviceView> = t
            .positions
            .in_bbox(bbox)
            .into_iter()
            .map(|local| self.device_view(t.locals[local as usize]))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Up to `limit` devices within `radius_m` of `(lon, lat)`, nearest first, with their
    /// geodesic distance in metres.
    pub fn nearby(
        &self,
        tenant: &str,
        lon: f64,
        lat: f64,
        radius_m: f64,
        limit: usize,
    ) -> Vec<(DeviceView, f64)> {
        let Some(t) = self.tenant(tenant) else {
            return Vec::new();
        };
        t.positions
            .nearest(lon, lat, radius_m, limit)
            .into_iter()
            .map(|(local, dist)| (self.device_view(t.locals[local as usize]), dist))
            .collect()
    }

    /// Rebuilds the position indexes that have drifted far from their last bulk load. Call it
    /// every second or so; queries are exact either way, only faster after it.
    pub fn maintain(&mut self) {
        for t in &mut self.tenants {
            t.positions.maintain();
        }
    }

    // ----- snapshot -----------------------------------------------------------------------

    /// Everything needed to resume: settings, fences, devices, shipments.
    pub fn snapshot(&self) -> TrackerSnapshot {
        TrackerSnapshot {
            version: SNAPSHOT_VERSION,
            settings: self.settings.clone(),
            tenants: self
                .tenants
                .iter()
                .map(|t| TenantSnapshot {
                    name: t.name.clone(),
                    fences: t.fences.iter().map(|(s, g)| (s, g.def().clone())).collect(),
                    next_fence_slot: t.fences.next_slot(),
                    shipments: {
                        let mut v: Vec<u32> = t.shipments.values().copied().collect();
                        v.sort_unstable();
                        v
                    },
                })
                .collect(),
            devices: self.devices.clone(),
            shipments: self.shipments.clone(),
        }
    }

    /// Rebuilds a tracker from a snapshot: indexes, name maps, plans and timers.
    pub fn restore(snap: TrackerSnapshot) -> Result<Tracker, TrackerError> {
        if snap.version != SNAPSHOT_VERSION {
            return Err(TrackerError::InvalidSnapshot(format!(
                "version {} (this build reads {SNAPSHOT_VERSION})",
                snap.version
            )));
        }
        let mut tr = Tracker::new(snap.settings);
        let mut shipment_slots = Vec::new();
        for ts in snap.tenants {
            let i = tr.tenant_index(&ts.name) as usize;
            shipment_slots.push(ts.shipments);
            tr.tenants[i].fences = FenceIndex::from_defs(ts.fences)?;
            tr.tenants[i].fences.reserve_slots(ts.next_fence_slot);
        }
        let bad = |what: String| TrackerError::InvalidSnapshot(what);
        for (g, d) in snap.devices.into_iter().enumerate() {
            let t = tr
                .tenants
                .get_mut(d.tenant as usize)
                .ok_or_else(|| bad(format!("device {} names tenant {}", d.id, d.tenant)))?;
            if d.local as usize != t.locals.len() {
                return Err(bad(format!("device {} is out of order", d.id)));
            }
            t.locals.push(g as u32);
            if !d.removed {
                t.devices.insert(d.id.clone(), g as u32);
                if let Some(f) = d.fix {
                    t.positions.update(d.local, f.lon, f.lat);
                }
            }
            tr.devices.push(d);
            tr.timer_at.push(NO_TIMER);
        }
        tr.plans = vec![ShipmentPlan::default(); snap.shipments.len()];
        for (t, slots) in shipment_slots.into_iter().enumerate() {
            for s in slots {
                let Some(Some(sh)) = snap.shipments.get(s as usize) else {
                    return Err(bad(format!("tenant {t} lists a missing shipment slot {s}")));
                };
                tr.tenants[t].shipments.insert(sh.def.id.clone(), s);
                let mut plan = plan_for(&tr.tenants[t].fences, sh);
                plan.route = sh.def.route.clone().map(Route::new).transpose()?;
                tr.plans[s as usize] = plan;
            }
        }
        tr.shipments = snap.shipments;
        for t in &mut tr.tenants {
            t.positions.maintain();
        }
        for slot in 0..tr.devices.len() {
            tr.arm_timer(slot);
        }
        Ok(tr)
    }
}

// ----- rules ------------------------------------------------------------------------------
// Free functions over split borrows of the tracker, so `apply` can hold a device, its tenant
// and the shipments at once.

/// Geofence transitions for one fix: candidates from the R-tree plus the fences the device is
/// already in (or pending on), exact tests, accuracy, confirmation window, crossing time.
#[allow(clippy::too_many_arguments)]
fn eval_fences(
    settings: &TrackerSettings,
    fences: &FenceIndex,
    fence_generation: u64,
    tenant: &str,
    d: &mut DeviceState,
    fix: &Fix,
    ts: TimestampMs,
    prev: Option<(Fix, TimestampMs)>,
    slots: &mut Vec<u32>,
    transitions: &mut Vec<Transition>,
    out: &mut Vec<Event>,
) {
    if !d.near.covers(fence_generation, fix.lon, fix.lat) {
        d.near.generation = fence_generation;
        d.near.bbox = NearFences::box_around(fix.lon, fix.lat);
        d.near.slots.clear();
        fences.candidates_in_box(d.near.bbox, &mut d.near.slots);
    }
    slots.clear();
    slots.extend_from_slice(&d.near.slots);
    if slots.is_empty() && d.memberships.is_empty() {
        return;
    }
    slots.extend(d.memberships.iter().map(|m| m.slot));
    slots.sort_unstable();
    slots.dedup();
    let accuracy = fix.accuracy_m.filter(|a| *a > 0.0);
    for &slot in slots.iter() {
        let idx = d.memberships.iter().position(|m| m.slot == slot);
        let Some(fence) = fences.get(slot) else {
            if let Some(i) = idx {
                d.memberships.swap_remove(i);
            }
            continue;
        };
        let def = fence.def();
        let inside_now = fence.contains(fix.lon, fix.lat);
        let confirm_ms = def.confirm_seconds.unwrap_or(settings.confirm_seconds) as i64 * 1000;
        let Some(i) = idx else {
            if !inside_now {
                continue;
            }
            if uncertain(accuracy, || fence.boundary_distance_m(fix.lon, fix.lat)) {
                continue;
            }
            // Outside -> inside begins. A device's very first fix has no old side: it is inside
            // at once, and the entry is announced once the window has held.
            let first_fix = prev.is_none();
            let crossing = crossing_time(prev, fix, ts, |lon, lat| {
                fence.boundary_distance_m(lon, lat)
            });
            d.memberships.push(Membership {
                slot,
                inside: first_fix,
                announced: false,
                crossing_ms: crossing,
                pending_since_ms: Some(ts),
                pending_crossing_ms: crossing,
                dwell_fired: false,
            });
            let i = d.memberships.len() - 1;
            if confirm_ms == 0 {
                confirm(&mut d.memberships[i], &d.id, tenant, def, transitions, out);
            }
            continue;
        };
        let m = &mut d.memberships[i];
        let unsure = || uncertain(accuracy, || fence.boundary_distance_m(fix.lon, fix.lat));
        match (m.inside, inside_now) {
            (false, false) => {
                // A pending entry whose device is outside again: abandoned.
                if !unsure() {
                    d.memberships.swap_remove(i);
                }
                continue;
            }
            (false, true) => {
                // A pending entry holding: confirm once the window has passed.
                let since = m.pending_since_ms.unwrap_or(ts);
                if ts - since >= confirm_ms && !unsure() {
                    confirm(m, &d.id, tenant, def, transitions, out);
                }
                continue;
            }
            (true, true) => {
                if !m.announced {
                    // First-fix visit: announce once it has held for the window.
                    let since = m.pending_since_ms.unwrap_or(ts);
                    if ts - since >= confirm_ms && !unsure() {
                        confirm(m, &d.id, tenant, def, transitions, out);
                    }
                } else if m.pending_since_ms.is_some() && !unsure() {
                    // Back inside before a pending exit held: jitter, forget it.
                    m.pending_since_ms = None;
                }
                continue;
            }
            (true, false) => {
                if unsure() {
                    continue;
                }
                if !m.announced {
                    // Left before its first-fix visit was announced: nothing to say.
                    d.memberships.swap_remove(i);
                    continue;
                }
            }
        }
        // Confirmed inside, observed outside.
        if m.pending_since_ms.is_none() {
            m.pending_since_ms = Some(ts);
            m.pending_crossing_ms = crossing_time(prev, fix, ts, |lon, lat| {
                fence.boundary_distance_m(lon, lat)
            });
        }
        if ts - m.pending_since_ms.unwrap_or(ts) >= confirm_ms {
            let m = d.memberships.swap_remove(i);
            let duration_s = (m.pending_crossing_ms - m.crossing_ms) as f64 / 1000.0;
            out.push(Event::new(
                EventType::GeofenceExited,
                tenant,
                &d.id,
                None,
                Some(&def.id),
                m.pending_crossing_ms,
                m.pending_since_ms.unwrap_or(ts),
                json!({ "name": def.name, "kind": def.kind,
                        "entered_at": format_rfc3339(m.crossing_ms), "duration_s": duration_s }),
            ));
            transitions.push(Transition {
                slot,
                entered: false,
                crossing_ms: m.pending_crossing_ms,
            });
        }
    }
    for m in d.memberships.iter_mut() {
        fire_dwell_if_due(fences, tenant, &d.id, m, ts, out);
    }
}

/// Great-circle distance in metres; accurate to ~0.5 %, plenty for a speed estimate, and several
/// times cheaper than the geodesic on the hot path.
fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    use geo::{Distance, Haversine, Point};
    Haversine.distance(Point::new(a.0, a.1), Point::new(b.0, b.1))
}

/// Whether a reading's accuracy circle reaches the boundary, so it can't tell the side.
fn uncertain(accuracy_m: Option<f64>, boundary_distance_m: impl FnOnce() -> f64) -> bool {
    accuracy_m.is_some_and(|a| a > boundary_distance_m())
}

/// Estimated time the device crossed the boundary between its previous fix (old side) and
/// this one (new side), interpolated by their distances to the boundary.
fn crossing_time(
    prev: Option<(Fix, TimestampMs)>,
    fix: &Fix,
    ts: TimestampMs,
    boundary_distance_m: impl Fn(f64, f64) -> f64,
) -> TimestampMs {
    let Some((p, pts)) = prev else {
        return ts;
    };
    let d0 = boundary_distance_m(p.lon, p.lat);
    let d1 = boundary_distance_m(fix.lon, fix.lat);
    if !(d0 + d1 > 0.0) || pts >= ts {
        return ts;
    }
    pts + ((ts - pts) as f64 * d0 / (d0 + d1)).round() as TimestampMs
}

/// Confirms a pending entry (or a first-fix visit) and announces it.
fn confirm(
    m: &mut Membership,
    device: &str,
    tenant: &str,
    def: &GeofenceDef,
    transitions: &mut Vec<Transition>,
    out: &mut Vec<Event>,
) {
    let since = m.pending_since_ms.unwrap_or(m.pending_crossing_ms);
    m.inside = true;
    m.announced = true;
    m.crossing_ms = m.pending_crossing_ms;
    m.pending_since_ms = None;
    m.dwell_fired = false;
    out.push(Event::new(
        EventType::GeofenceEntered,
        tenant,
        device,
        None,
        Some(&def.id),
        m.crossing_ms,
        since,
        json!({ "name": def.name, "kind": def.kind }),
    ));
    transitions.push(Transition {
        slot: m.slot,
        entered: true,
        crossing_ms: m.crossing_ms,
    });
}

fn fire_dwell_if_due(
    fences: &FenceIndex,
    tenant: &str,
    device: &str,
    m: &mut Membership,
    device_now: TimestampMs,
    out: &mut Vec<Event>,
) {
    if !(m.inside && m.announced) || m.dwell_fired {
        return;
    }
    let Some(def) = fences.get(m.slot).map(|f| f.def()) else {
        return;
    };
    let Some(dwell) = def.dwell_seconds else {
        return;
    };
    let at = m.crossing_ms + dwell as i64 * 1000;
    if device_now >= at {
        m.dwell_fired = true;
        out.push(Event::new(
            EventType::GeofenceDwell,
            tenant,
            device,
            None,
            Some(&def.id),
            at,
            m.crossing_ms,
            json!({ "name": def.name, "kind": def.kind, "dwell_seconds": dwell,
                    "entered_at": format_rfc3339(m.crossing_ms) }),
        ));
    }
}

/// Departure, arrival, route corridor and ETA for one shipment carried by a device that just
/// reported a fix.
#[allow(clippy::too_many_arguments)]
fn eval_shipment_fix(
    settings: &TrackerSettings,
    tenant: &str,
    d: &DeviceState,
    sh: &mut ShipmentState,
    plan: &ShipmentPlan,
    fix: &Fix,
    ts: TimestampMs,
    transitions: &[Transition],
    out: &mut Vec<Event>,
) {
    if !sh.status.is_active() {
        return;
    }
    let here = (fix.lon, fix.lat);
    let r = settings.place_radius_m;
    let mut depart_at = None;
    let mut arrive_at = None;
    match &sh.def.origin {
        Some(Place::Point { lon, lat }) => {
            let inside = geodesy::distance_m(here, (*lon, *lat)) <= r;
            if sh.at_origin && !inside {
                depart_at = Some(ts);
            }
            sh.at_origin = inside;
        }
        Some(Place::Geofence(_)) => {
            for t in transitions {
                if Some(t.slot) == plan.origin_slot && !t.entered {
                    depart_at = Some(t.crossing_ms);
                }
            }
        }
        None => match sh.anchor {
            None => sh.anchor = Some([fix.lon, fix.lat]),
            Some([lon, lat]) => {
                if geodesy::distance_m(here, (lon, lat)) > r {
                    depart_at = Some(ts);
                }
            }
        },
    }
    match &sh.def.destination {
        Place::Point { lon, lat } => {
            let inside = geodesy::distance_m(here, (*lon, *lat)) <= r;
            if inside && !sh.at_destination {
                arrive_at = Some(ts);
            }
            sh.at_destination = inside;
        }
        Place::Geofence(_) => {
            for t in transitions {
                if Some(t.slot) == plan.destination_slot && t.entered {
                    arrive_at = Some(t.crossing_ms);
                }
            }
        }
    }
    let sid = sh.def.id.clone();
    if let (Some(at), ShipmentStatus::Planned) = (depart_at, sh.status) {
        sh.status = ShipmentStatus::InTransit;
        sh.departed_ms = Some(at);
        out.push(Event::new(
            EventType::ShipmentDeparted,
            tenant,
            &d.id,
            Some(&sid),
            origin_id(&sh.def),
            at,
            0,
            json!({ "reference": sh.def.reference }),
        ));
    }
    if let Some(at) = arrive_at
        && (sh.status == ShipmentStatus::InTransit || depart_at.is_none())
    {
        sh.status = ShipmentStatus::Arrived;
        sh.arrived_ms = Some(at);
        sh.eta = None;
        let late_by_s = sh
            .def
            .deadline_ms
            .map(|dl| ((at - dl) as f64 / 1000.0).max(0.0));
        let dest = match &sh.def.destination {
            Place::Geofence(id) => Some(id.as_str()),
            Place::Point { .. } => None,
        };
        out.push(Event::new(
            EventType::ShipmentArrived,
            tenant,
            &d.id,
            Some(&sid),
            dest,
            at,
            0,
            json!({ "reference": sh.def.reference, "late_by_s": late_by_s }),
        ));
        return;
    }

    // Route corridor.
    let confirm_ms = settings.confirm_seconds as i64 * 1000;
    if let (Some(route), ShipmentStatus::InTransit) = (&plan.route, sh.status) {
        let p = route.project(fix.lon, fix.lat);
        let corridor = sh.def.route_corridor_m.unwrap_or(settings.route_corridor_m);
        let off = p.off_route_m > corridor;
        let unsure = uncertain(fix.accuracy_m, || (p.off_route_m - corridor).abs());
        if off == sh.deviated {
            if !unsure {
                sh.route_pending_since_ms = None;
            }
        } else if !unsure {
            let since = *sh.route_pending_since_ms.get_or_insert(ts);
            if ts - since >= confirm_ms {
                sh.deviated = off;
                sh.route_pending_since_ms = None;
                let kind = if off {
                    EventType::RouteDeviated
                } else {
                    EventType::RouteRejoined
                };
                out.push(Event::new(
                    kind,
                    tenant,
                    &d.id,
                    Some(&sid),
                    None,
                    since,
                    0,
                    json!({ "off_route_m": p.off_route_m, "corridor_m": corridor,
                            "along_m": p.along_m }),
                ));
            }
        }
    }

    // ETA.
    let Some((remaining_m, method)) = remaining(settings, plan, fix) else {
        return;
    };
    let under_way = sh.status != ShipmentStatus::Planned;
    let e = eta::estimate(remaining_m, method, &d.speed, &settings.eta, ts, under_way);
    sh.eta = Some(e);
    if sh.status != ShipmentStatus::InTransit {
        return;
    }
    match sh.announced_eta_ms {
        None => sh.announced_eta_ms = Some(e.eta_ms),
        Some(prev) if eta::changed_enough(prev, &e, &settings.eta) => {
            sh.announced_eta_ms = Some(e.eta_ms);
            out.push(Event::new(
                EventType::ShipmentEtaChanged,
                tenant,
                &d.id,
                Some(&sid),
                None,
                ts,
                e.eta_ms,
                json!({ "eta": format_rfc3339(e.eta_ms), "previous": format_rfc3339(prev),
                        "p10": format_rfc3339(e.p10_ms), "p90": format_rfc3339(e.p90_ms),
                        "remaining_m": e.remaining_m, "method": e.method.as_str() }),
            ));
        }
        Some(_) => {}
    }
    if let Some(deadline) = sh.def.deadline_ms {
        let late = e.eta_ms > deadline;
        if late && !sh.late_risk {
            sh.late_risk = true;
            out.push(Event::new(
                EventType::ShipmentLateRisk,
                tenant,
                &d.id,
                Some(&sid),
                None,
                ts,
                0,
                json!({ "eta": format_rfc3339(e.eta_ms), "deadline": format_rfc3339(deadline),
                        "late_by_s": (e.eta_ms - deadline) as f64 / 1000.0,
                        "p10": format_rfc3339(e.p10_ms), "p90": format_rfc3339(e.p90_ms) }),
            ));
        } else if !late {
            sh.late_risk = false;
        }
    }
}

fn origin_id(def: &ShipmentDef) -> Option<&str> {
    match &def.origin {
        Some(Place::Geofence(id)) => Some(id),
        _ => None,
    }
}

/// Distance still to go, along the planned route when there is one.
fn remaining(
    settings: &TrackerSettings,
    plan: &ShipmentPlan,
    fix: &Fix,
) -> Option<(f64, EtaMethod)> {
    if let Some(route) = &plan.route {
        let p = route.project(fix.lon, fix.lat);
        let to_end = (route.length_m() - p.along_m).max(0.0);
        return Some((to_end + p.off_route_m, EtaMethod::Route));
    }
    let dest = plan.destination_lonlat?;
    let straight = geodesy::distance_m((fix.lon, fix.lat), dest);
    Some((straight * settings.eta.detour_factor, EtaMethod::Direct))
}

fn plan_for(fences: &FenceIndex, sh: &ShipmentState) -> ShipmentPlan {
    let slot = |p: &Place| match p {
        Place::Geofence(id) => fences.slot_of(id),
        Place::Point { .. } => None,
    };
    let destination_lonlat = match &sh.def.destination {
        Place::Point { lon, lat } => Some((*lon, *lat)),
        Place::Geofence(id) => fences
            .slot_of(id)
            .and_then(|s| fences.get(s))
            .map(|g| shape_centre(&g.def().shape)),
    };
    ShipmentPlan {
        route: None,
        origin_slot: sh.def.origin.as_ref().and_then(slot),
        destination_slot: slot(&sh.def.destination),
        destination_lonlat,
    }
}

/// A representative point of a shape, the aim of a direct ETA.
fn shape_centre(shape: &Shape) -> (f64, f64) {
    use geo::Centroid;
    match shape {
        Shape::Circle { center, .. } => (center.x(), center.y()),
        Shape::Area(mp) => mp
            .centroid()
            .map(|c| (c.x(), c.y()))
            .unwrap_or((f64::NAN, f64::NAN)),
        Shape::Corridor { line, .. } => line
            .centroid()
            .map(|c| (c.x(), c.y()))
            .unwrap_or((f64::NAN, f64::NAN)),
    }
}

fn validate_shipment(def: &ShipmentDef) -> Result<(), TrackerError> {
    let bad = |m: String| Err(TrackerError::InvalidShipment(m));
    for (name, p) in [
        ("origin", def.origin.as_ref()),
        ("destination", Some(&def.destination)),
    ] {
        if let Some(Place::Point { lon, lat }) = p
            && !(lon.is_finite() && lat.is_finite() && lon.abs() <= 180.0 && lat.abs() <= 90.0)
        {
            return bad(format!("{name}: ({lon}, {lat}) is not a valid (lon, lat)"));
        }
    }
    if let Some([lo, hi]) = def.temp_range_c
        && !(lo.is_finite() && hi.is_finite() && lo <= hi)
    {
        return bad(format!(
            "temp_range_c: [{lo}, {hi}] must be finite with min <= max"
        ));
    }
    if let Some(v) = def.max_speed_kmh
        && !(v.is_finite() && v > 0.0)
    {
        return bad(format!("max_speed_kmh: {v} must be positive"));
    }
    if let Some(c) = def.route_corridor_m
        && !(c.is_finite() && c > 0.0)
    {
        return bad(format!("route_corridor_m: {c} must be positive"));
    }
    Ok(())
}

/// Overspeed, against the tightest limit of the device's active shipments, else its profile,
/// else the tracker default. One event per episode; the episode ends a little under the limit
/// so a truck hovering at it doesn't flap.
fn eval_overspeed(
    settings: &TrackerSettings,
    tenant: &str,
    d: &mut DeviceState,
    shipments: &[Option<ShipmentState>],
    speed_kmh: Option<f64>,
    ts: TimestampMs,
    out: &mut Vec<Event>,
) {
    let Some(speed) = speed_kmh else { return };
    let mut limit: Option<(f64, Option<&str>)> = None;
    for &s in &d.shipments {
        if let Some(sh) = shipments[s as usize]
            .as_ref()
            .filter(|s| s.status.is_active())
            && let Some(l) = sh.def.max_speed_kmh
            && limit.is_none_or(|(cur, _)| l < cur)
        {
            limit = Some((l, Some(&sh.def.id)));
        }
    }
    let limit = limit
        .or(d.profile.max_speed_kmh.map(|l| (l, None)))
        .or((settings.max_speed_kmh > 0.0).then_some((settings.max_speed_kmh, None)));
    let Some((limit, shipment)) = limit else {
        d.overspeeding = false;
        return;
    };
    if speed > limit && !d.overspeeding {
        d.overspeeding = true;
        out.push(Event::new(
            EventType::DeviceOverspeed,
            tenant,
            &d.id,
            shipment,
            None,
            ts,
            0,
            json!({ "speed_kmh": speed, "limit_kmh": limit }),
        ));
    } else if speed <= limit - (limit * 0.05).max(2.0) {
        d.overspeeding = false;
    }
}

/// Temperature against the device's own range and each active shipment's range.
fn eval_temperature(
    settings: &TrackerSettings,
    tenant: &str,
    d: &mut DeviceState,
    shipments: &mut [Option<ShipmentState>],
    temp: f64,
    ts: TimestampMs,
    out: &mut Vec<Event>,
) {
    let grace_ms = settings.temp_grace_seconds as i64 * 1000;
    if let Some(range) = d.profile.temp_range_c {
        excursion_step(
            tenant,
            &d.id,
            None,
            &mut d.excursion,
            range,
            temp,
            ts,
            grace_ms,
            out,
        );
    }
    for &s in &d.shipments {
        let Some(sh) = shipments[s as usize].as_mut() else {
            continue;
        };
        let Some(range) = sh.def.temp_range_c else {
            continue;
        };
        if !sh.status.is_active() && sh.excursion.is_none() {
            continue;
        }
        excursion_step(
            tenant,
            &d.id,
            Some(&sh.def.id),
            &mut sh.excursion,
            range,
            temp,
            ts,
            grace_ms,
            out,
        );
    }
}

/// How far a temperature lies outside `[min, max]` (0 inside).
fn outside_by(range: [f64; 2], temp: f64) -> f64 {
    (range[0] - temp).max(temp - range[1]).max(0.0)
}

#[allow(clippy::too_many_arguments)]
fn excursion_step(
    tenant: &str,
    device: &str,
    shipment: Option<&str>,
    state: &mut Option<Excursion>,
    range: [f64; 2],
    temp: f64,
    ts: TimestampMs,
    grace_ms: i64,
    out: &mut Vec<Event>,
) {
    let out_of_range = outside_by(range, temp) > 0.0;
    match (state.as_mut(), out_of_range) {
        (None, false) => {}
        (None, true) => {
            *state = Some(Excursion {
                begin_ms: ts,
                peak_c: temp,
                fired: false,
            });
        }
        (Some(e), true) => {
            if outside_by(range, temp) > outside_by(range, e.peak_c) {
                e.peak_c = temp;
            }
        }
        (Some(e), false) => {
            if e.fired {
                out.push(Event::new(
                    EventType::TemperatureRecovered,
                    tenant,
                    device,
                    shipment,
                    None,
                    ts,
                    e.begin_ms,
                    json!({ "begin": format_rfc3339(e.begin_ms), "end": format_rfc3339(ts),
                            "duration_s": (ts - e.begin_ms) as f64 / 1000.0,
                            "peak_c": e.peak_c, "min_c": range[0], "max_c": range[1] }),
                ));
            }
            *state = None;
            return;
        }
    }
    if let Some(e) = state.as_mut() {
        fire_excursion_if_due(tenant, device, shipment, e, range, grace_ms, ts, out);
    }
}

/// Fires `cargo.temperature_excursion` once the episode has lasted the grace period. Its time
/// is the moment the grace period ran out, whether a reading or a timer noticed, so the id is
/// the same either way.
#[allow(clippy::too_many_arguments)]
fn fire_excursion_if_due(
    tenant: &str,
    device: &str,
    shipment: Option<&str>,
    e: &mut Excursion,
    range: [f64; 2],
    grace_ms: i64,
    device_now: TimestampMs,
    out: &mut Vec<Event>,
) {
    let at = e.begin_ms + grace_ms;
    if e.fired || device_now < at {
        return;
    }
    e.fired = true;
    out.push(Event::new(
        EventType::TemperatureExcursion,
        tenant,
        device,
        shipment,
        None,
        at,
        e.begin_ms,
        json!({ "begin": format_rfc3339(e.begin_ms), "end": null,
                "duration_s": (device_now - e.begin_ms) as f64 / 1000.0,
                "peak_c": e.peak_c, "min_c": range[0], "max_c": range[1] }),
    ));
}

/// Load and unload: a step of at least `weight_change_kg` from the last baseline, reported
/// with the geofence the device is in (preferring places where goods change hands).
fn eval_weight(
    settings: &TrackerSettings,
    tenant: &Tenant,
    d: &mut DeviceState,
    shipments: &[Option<ShipmentState>],
    w: f64,
    ts: TimestampMs,
    out: &mut Vec<Event>,
) {
    let Some(base) = d.weight_baseline_kg else {
        d.weight_baseline_kg = Some(w);
        return;
    };
    let delta = w - base;
    if delta.abs() < settings.weight_change_kg {
        return;
    }
    d.weight_baseline_kg = Some(w);
    let rank = |kind: &str| match kind {
        "warehouse" | "customer" | "port" | "depot" => 0,
        "restricted" => 2,
        _ => 1,
    };
    let fence = d
        .memberships
        .iter()
        .filter(|m| m.inside)
        .filter_map(|m| tenant.fences.get(m.slot).map(|f| f.def()))
        .min_by(|a, b| rank(&a.kind).cmp(&rank(&b.kind)).then(a.id.cmp(&b.id)));
    let shipment = d
        .shipments
        .iter()
        .filter_map(|&s| shipments[s as usize].as_ref())
        .find(|s| s.status.is_active() || s.status == ShipmentStatus::Arrived)
        .map(|s| s.def.id.as_str());
    out.push(Event::new(
        EventType::WeightChanged,
        &tenant.name,
        &d.id,
        shipment,
        fence.map(|f| f.id.as_str()),
        ts,
        0,
        json!({ "from_kg": base, "to_kg": w, "delta_kg": delta,
                "direction": if delta > 0.0 { "load" } else { "unload" } }),
    ));
}

mod view;
pub use view::{LiveView, ShipmentView, TenantView};

#[cfg(test)]
mod tests;
