//! The registry: tenants, device slots, device profiles, device removal.

use super::{DeviceSlot, NO_TIMER, Tenant, Tracker};
use crate::device::{DeviceProfile, DeviceState};
use crate::shipment::ShipmentStatus;

impl Tracker {
    /// Tenant names known to the tracker (any tenant that has a device, fence or shipment).
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.tenants.iter().map(|t| t.name.as_str())
    }

    pub(super) fn tenant_index(&mut self, tenant: &str) -> u32 {
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

    pub(super) fn tenant(&self, tenant: &str) -> Option<&Tenant> {
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
}
