//! Geofences of a tenant: adding, replacing and deleting them, and who is inside one.

use super::Tracker;
use crate::error::TrackerError;
use crate::geofence::{Geofence, GeofenceDef};

impl Tracker {
    /// Adds or replaces a geofence. Devices are tested against it from their next reading.
    pub fn upsert_geofence(&mut self, tenant: &str, def: GeofenceDef) -> Result<(), TrackerError> {
        self.upsert_prepared_geofence(tenant, Geofence::new(def)?)
    }

    /// [`upsert_geofence`](Self::upsert_geofence) of a fence validated beforehand with
    /// [`Geofence::new`], which is the slow part (quadratic in a ring's vertex count), so that
    /// the caller can validate off the task that owns the tracker. Fails only when the tenant's
    /// fence slots are exhausted.
    pub fn upsert_prepared_geofence(
        &mut self,
        tenant: &str,
        fence: Geofence,
    ) -> Result<(), TrackerError> {
        let t = self.tenant_index(tenant) as usize;
        self.tenants[t].fences.upsert_prepared(fence)?;
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
}
