//! Snapshot and restore: the whole state, serializable so a restarted service resumes without
//! re-firing events. Indexes, name maps, plans and timers are rebuilt on restore.

use serde::{Deserialize, Serialize};

use super::plans::{ShipmentPlan, plan_for};
use super::{NO_TIMER, Tracker};
use crate::device::DeviceState;
use crate::error::TrackerError;
use crate::eta_history::EtaHistory;
use crate::fence_index::FenceIndex;
use crate::geofence::GeofenceDef;
use crate::route::Route;
use crate::settings::TrackerSettings;
use crate::shipment::ShipmentState;

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
    /// What the ETA model learned (absent from snapshots of older builds: nothing learned).
    #[serde(default)]
    pub eta_history: EtaHistory,
}

const SNAPSHOT_VERSION: u32 = 1;

impl Tracker {
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
                    eta_history: t.eta.clone(),
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
            tr.tenants[i].eta = ts.eta_history;
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
