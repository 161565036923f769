//! Shipments of a tenant: adding, replacing and deleting them, their status and ETA.

use super::Tracker;
use super::plans::{ShipmentPlan, plan_for};
use crate::error::TrackerError;
use crate::route::Route;
use crate::shipment::{Eta, Place, ShipmentDef, ShipmentState, ShipmentStatus};

impl Tracker {
    /// Whether [`upsert_shipment`](Self::upsert_shipment) would take `def` now: its values
    /// are in range, the geofences it names exist in the tenant, its route is usable. Changes
    /// nothing, so a caller can check before it stores the definition elsewhere.
    pub fn check_shipment(&self, tenant: &str, def: &ShipmentDef) -> Result<(), TrackerError> {
        self.check_shipment_places(tenant, def)?;
        def.route.clone().map(Route::new).transpose()?;
        Ok(())
    }

    /// The checks of [`check_shipment`](Self::check_shipment) but the route's.
    fn check_shipment_places(&self, tenant: &str, def: &ShipmentDef) -> Result<(), TrackerError> {
        validate_shipment(def)?;
        for place in def.origin.iter().chain(std::iter::once(&def.destination)) {
            if let Place::Geofence(id) = place
                && self
                    .tenant(tenant)
                    .is_none_or(|t| t.fences.slot_of(id).is_none())
            {
                return Err(TrackerError::InvalidShipment(format!(
                    "geofence {id:?} does not exist"
                )));
            }
        }
        Ok(())
    }

    /// Adds or replaces a shipment (its runtime status and history are kept on replace). A
    /// definition it refuses changes nothing (see [`check_shipment`](Self::check_shipment)).
    pub fn upsert_shipment(&mut self, tenant: &str, def: ShipmentDef) -> Result<(), TrackerError> {
        self.check_shipment_places(tenant, &def)?;
        let route = def.route.clone().map(Route::new).transpose()?;
        let t = self.tenant_index(tenant) as usize;
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
    pub(super) fn replan_tenant(&mut self, t: usize) {
        let slots: Vec<u32> = self.tenants[t].shipments.values().copied().collect();
        for s in slots {
            if let Some(sh) = self.shipments[s as usize].as_mut() {
                let old = &mut self.plans[s as usize];
                let mut plan = plan_for(&self.tenants[t].fences, sh);
                plan.route = old.route.take();
                // A reshaped destination fence moves the point a direct ETA aims at: the
                // cached ETA was measured to the old one (as in `upsert_shipment`).
                if plan.destination_lonlat != old.destination_lonlat {
                    sh.eta = None;
                }
                *old = plan;
            }
        }
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
