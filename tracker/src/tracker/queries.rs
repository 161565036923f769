//! Queries of live state: device views, change tracking, spatial queries.

use super::{DeviceSlot, Tracker};
use crate::device::DeviceProfile;
use crate::reading::{Fix, TimestampMs};

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

impl Tracker {
    pub(super) fn device_view(&self, slot: u32) -> DeviceView {
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
}
