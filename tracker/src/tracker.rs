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
//!
//! # Layout
//!
//! This file holds the state ([`Tracker`] and its per-tenant and per-shipment parts) and
//! `apply`, which runs the rules for one reading. The rest is split by job, each file adding
//! an `impl Tracker` block or free functions over split borrows of the state:
//!
//! - `registry`: tenants, device slots, device profiles, device removal.
//! - `geofences`: adding, replacing and deleting fences; which devices are inside one.
//! - `shipments`: adding, replacing and deleting shipments, their status and ETA.
//! - `plans`: what a shipment's rules derive from its definition and the tenant's fences
//!   (route, origin and destination slots, the point a direct ETA aims at, distance to go).
//! - `timers`: deadlines (`next_deadline`, `on_timer` and its stall guard) and the rules that
//!   fire without a reading (offline, dwell, excursions outlasting their grace period).
//! - `snapshot`: snapshot and restore.
//! - `queries`: device views, change tracking, spatial queries.
//! - `view`: the read side published to the API ([`LiveView`]).
//! - `rules`: the event rules, by family: `fences` (entry, exit, crossing time, dwell),
//!   `shipments` (departure, arrival, route corridor, ETA, late risk), `cargo` (temperature
//!   excursions, weight) and `speed` (overspeed). Each takes a [`rules::RuleCtx`] (settings,
//!   tenant, time, output) plus the state it reads and changes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

use crate::device::DeviceState;
use crate::eta_history::EtaHistory;
use crate::event::{Event, EventType};
use crate::fence_index::FenceIndex;
use crate::positions::PositionIndex;
use crate::reading::{Reading, TimestampMs};
use crate::settings::TrackerSettings;
use crate::shipment::ShipmentState;

mod geofences;
mod plans;
mod queries;
mod registry;
mod rules;
mod shipments;
mod snapshot;
mod timers;
mod view;

#[cfg(test)]
mod tests;

use plans::ShipmentPlan;
use rules::{RuleCtx, Scratch};

pub use queries::DeviceView;
pub use snapshot::{TenantSnapshot, TrackerSnapshot};
pub use view::{LiveView, ShipmentView, TenantView};

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
    /// What the ETA model learned from this tenant's fixes and arrivals.
    eta: EtaHistory,
}

/// Deadline registered for a device that has none.
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
    scratch: Scratch,
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
            scratch: Scratch::default(),
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
            scratch,
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
        // Split borrows: the rules read the tenant's name and fences while the position index
        // takes the new fix.
        let Tenant {
            name,
            fences,
            positions,
            fence_generation,
            eta,
            ..
        } = &mut tenants[d.tenant as usize];
        let mut ctx = RuleCtx {
            settings,
            tenant: name,
            fences,
            ts,
            out,
        };
        let seen_before = d.last_ts_ms.is_some();
        touch(changed_at, change_seq, slot);
        d.last_ts_ms = Some(ts);
        d.last_received_ms = Some(now_ms);
        if !d.online {
            d.online = true;
            if seen_before {
                ctx.emit(ctx.event(EventType::DeviceOnline, &d.id).at(ts).finish());
            }
        }
        if reading.battery_pct.is_some() {
            d.battery_pct = reading.battery_pct;
        }

        scratch.transitions.clear();
        if let Some(fix) = reading.fix {
            let prev = d.fix.map(|p| (p, d.fix_ts_ms));
            let speed_kmh = fix
                .speed_kmh
                .or_else(|| rules::speed::derived_kmh(prev, &fix, ts));
            if let (Some(v), Some((_, pts))) = (speed_kmh, prev) {
                // A long gap says nothing about how fast the truck went meanwhile: cap it.
                d.speed.update(v / 3.6, (ts - pts).min(300_000));
            }
            eta.learn(d.local, prev, &fix, ts);
            d.fix = Some(fix);
            d.fix_ts_ms = ts;
            positions.update(d.local, fix.lon, fix.lat);
            rules::fences::eval_fences(&mut ctx, *fence_generation, d, &fix, prev, scratch);
            for i in 0..d.shipments.len() {
                let s = d.shipments[i] as usize;
                if let Some(sh) = shipments[s].as_mut() {
                    rules::shipments::eval_shipment_fix(
                        &mut ctx,
                        d,
                        sh,
                        &plans[s],
                        &fix,
                        &scratch.transitions,
                        eta,
                    );
                }
            }
            rules::speed::eval_overspeed(&mut ctx, d, shipments, speed_kmh);
        }
        if let Some(temp) = reading.temp_c {
            d.temp_c = Some(temp);
            rules::cargo::eval_temperature(&mut ctx, d, shipments, temp);
        }
        if let Some(w) = reading.weight_kg {
            d.weight_kg = Some(w);
            rules::cargo::eval_weight(&mut ctx, d, shipments, w);
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
}
