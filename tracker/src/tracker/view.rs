//! The read side: an immutable picture of the live state that any number of readers query
//! while the tracker goes on applying readings.
//!
//! The single writer (the pipeline's task) calls [`Tracker::view`] now and then (at most a few
//! times a second, and after each API command) with the view it published last; readers hold
//! an `Arc<LiveView>` and never touch the tracker. Building a view is incremental, so that its
//! cost on the writer stays small with 100,000 devices:
//! - a tenant with no change since the last view keeps its `Arc<TenantView>`;
//! - in a changed tenant, only the devices changed since (by the tracker's change counter) get
//!   a new `Arc<DeviceView>`; the rest are shared, so the copy is one pointer per device;
//! - the spatial index is a [`PositionIndex`] snapshot: positions copied (16 bytes a device),
//!   the R-tree shared; queries on it are exact, like the tracker's own.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use super::plans::eta_now;
use super::{DeviceView, Tracker};
use crate::positions::PositionIndex;
use crate::shipment::{Eta, ShipmentState};

/// Every tenant's live state as of one moment. Cheap to share (`Arc`), never changed.
#[derive(Debug, Clone, Default)]
pub struct LiveView {
    /// The tracker's change counter when the view was taken: readers that stream changes
    /// remember it and ask [`LiveView::changed_since`] for what came after.
    seq: u64,
    tenants: HashMap<String, Arc<TenantView>>,
}

/// One tenant's part of a [`LiveView`].
#[derive(Debug, Clone, Default)]
pub struct TenantView {
    /// The tracker's change counter and the tenant's epoch this view was built at; a later
    /// view reuses this one while both are unchanged.
    seq: u64,
    epoch: u64,
    /// By tenant-local slot; `None` for a removed device.
    devices: Vec<Option<Arc<DeviceView>>>,
    /// By tenant-local slot: the change counter at the device's latest change.
    changed_at: Vec<u64>,
    /// Device id -> tenant-local slot, shared between views while no device comes or goes.
    ids: Arc<HashMap<String, u32>>,
    /// By tenant-local slot: the device's place in id order. Shared with `ids` and computed
    /// by the first reader that sorts (never by the writer): lists sort by this `u32`
    /// instead of comparing id strings, which was ~12 % of a 10,000-device box.
    order: Arc<OnceLock<Vec<u32>>>,
    positions: PositionIndex,
    /// Geofence ids, to tell "no such fence" from "nobody inside".
    fences: Arc<HashSet<String>>,
    shipments: HashMap<String, Arc<ShipmentView>>,
}

/// A shipment as readers see it: its state and its latest ETA.
#[derive(Debug, Clone, PartialEq)]
pub struct ShipmentView {
    pub state: ShipmentState,
    /// See [`Tracker::shipment_eta`].
    pub eta: Option<Eta>,
    /// Change counter of the shipment's device when this was built.
    device_seq: u64,
}

impl Tracker {
    /// The live state for readers, built from `prev` (the view published last, or
    /// `LiveView::default()`) by copying only what changed since.
    pub fn view(&self, prev: &LiveView) -> LiveView {
        let mut tenants = HashMap::with_capacity(self.tenants.len());
        for (i, t) in self.tenants.iter().enumerate() {
            let old = prev.tenants.get(&t.name);
            // A rebuilt R-tree counts as a change: the old snapshot would go on scanning every
            // key that was dirty when it was taken.
            let unchanged = old.is_some_and(|o| {
                o.epoch == t.epoch
                    && o.positions.rebuilds() == t.positions.rebuilds()
                    && t.locals
                        .iter()
                        .all(|&g| self.changed_at.get(g as usize).is_none_or(|&c| c <= o.seq))
            });
            let view = match old {
                Some(o) if unchanged => o.clone(),
                _ => Arc::new(self.tenant_view(i, old.map(|o| &**o))),
            };
            tenants.insert(t.name.clone(), view);
        }
        LiveView {
            seq: self.change_seq,
            tenants,
        }
    }

    fn tenant_view(&self, t: usize, old: Option<&TenantView>) -> TenantView {
        let ten = &self.tenants[t];
        let same_epoch = old.is_some_and(|o| o.epoch == ten.epoch);
        let since = old.map_or(0, |o| o.seq);
        let changed = |g: u32| self.changed_at.get(g as usize).copied().unwrap_or(0);
        let mut devices = Vec::with_capacity(ten.locals.len());
        let mut changed_at = Vec::with_capacity(ten.locals.len());
        for (local, &g) in ten.locals.iter().enumerate() {
            let d = &self.devices[g as usize];
            let c = changed(g);
            changed_at.push(c);
            let reuse = same_epoch && c <= since;
            let dev = match old.and_then(|o| o.devices.get(local)) {
                Some(prev) if reuse => prev.clone(),
                _ => (!d.removed).then(|| Arc::new(self.device_view(g))),
            };
            devices.push(dev);
        }
        let (ids, order) = match old {
            Some(o) if o.ids.len() == ten.devices.len() && same_epoch => {
                (o.ids.clone(), o.order.clone())
            }
            _ => (
                Arc::new(
                    ten.devices
                        .iter()
                        .map(|(id, &g)| (id.clone(), self.devices[g as usize].local))
                        .collect(),
                ),
                Arc::default(),
            ),
        };
        let fences = match old {
            Some(o) if same_epoch => o.fences.clone(),
            _ => Arc::new(ten.fences.iter().map(|(_, f)| f.def().id.clone()).collect()),
        };
        let mut shipments = HashMap::with_capacity(ten.shipments.len());
        for (id, &s) in &ten.shipments {
            let Some(sh) = self.shipments[s as usize].as_ref() else {
                continue;
            };
            let device_seq = ten.devices.get(&sh.def.device).map_or(0, |&g| changed(g));
            let prev = old.and_then(|o| o.shipments.get(id));
            let view = match prev {
                Some(p) if same_epoch && p.device_seq == device_seq => p.clone(),
                _ => Arc::new(ShipmentView {
                    state: sh.clone(),
                    eta: self.eta_of(t, s as usize),
                    device_seq,
                }),
            };
            shipments.insert(id.clone(), view);
        }
        TenantView {
            seq: self.change_seq,
            epoch: ten.epoch,
            devices,
            changed_at,
            ids,
            order,
            positions: ten.positions.clone(),
            fences,
            shipments,
        }
    }

    /// [`Tracker::shipment_eta`] by slots.
    pub(super) fn eta_of(&self, t: usize, s: usize) -> Option<Eta> {
        let sh = self.shipments[s].as_ref()?;
        if !sh.status.is_active() {
            return None;
        }
        if sh.eta.is_some() {
            return sh.eta;
        }
        let d = &self.devices[*self.tenants[t].devices.get(&sh.def.device)? as usize];
        let (e, _, _) = eta_now(
            &self.settings,
            &self.plans[s],
            sh,
            d,
            None,
            &self.tenants[t].eta,
        )?;
        Some(e)
    }
}

impl LiveView {
    /// The tracker's change counter when this view was taken.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Tenants known to the tracker, in no particular order.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.tenants.keys().map(String::as_str)
    }

    pub fn tenant(&self, tenant: &str) -> Option<&TenantView> {
        self.tenants.get(tenant).map(|t| &**t)
    }

    pub fn device(&self, tenant: &str, id: &str) -> Option<Arc<DeviceView>> {
        self.tenant(tenant)?.device(id)
    }

    /// The tenant's devices, sorted by id.
    pub fn devices(&self, tenant: &str) -> Vec<Arc<DeviceView>> {
        self.tenant(tenant)
            .map(TenantView::devices)
            .unwrap_or_default()
    }

    /// The tenant's devices changed after the change counter was `since`, sorted by id.
    pub fn changed_since(&self, tenant: &str, since: u64) -> Vec<Arc<DeviceView>> {
        self.tenant(tenant)
            .map(|t| t.changed_since(since))
            .unwrap_or_default()
    }

    /// Devices whose latest position is inside `[min_lon, min_lat, max_lon, max_lat]`
    /// (`min_lon > max_lon` crosses the antimeridian), sorted by id.
    pub fn in_bbox(&self, tenant: &str, bbox: [f64; 4]) -> Vec<Arc<DeviceView>> {
        self.tenant(tenant)
            .map(|t| t.in_bbox(bbox))
            .unwrap_or_default()
    }

    /// Up to `limit` devices within `radius_m` (geodesic) of `(lon, lat)`, nearest first,
    /// with their distances in metres.
    pub fn nearby(
        &self,
        tenant: &str,
        lon: f64,
        lat: f64,
        radius_m: f64,
        limit: usize,
    ) -> Vec<(Arc<DeviceView>, f64)> {
        self.tenant(tenant)
            .map(|t| t.nearby(lon, lat, radius_m, limit))
            .unwrap_or_default()
    }

    /// Ids of the devices inside a geofence now, sorted; `None` if there is no such fence.
    pub fn devices_in_geofence(&self, tenant: &str, id: &str) -> Option<Vec<String>> {
        self.tenant(tenant)?.devices_in_geofence(id)
    }

    pub fn shipment(&self, tenant: &str, id: &str) -> Option<&ShipmentView> {
        self.tenant(tenant)?.shipments.get(id).map(|s| &**s)
    }

    /// The tenant's shipments, sorted by id.
    pub fn shipments(&self, tenant: &str) -> Vec<&ShipmentView> {
        let Some(t) = self.tenant(tenant) else {
            return Vec::new();
        };
        let mut v: Vec<&ShipmentView> = t.shipments.values().map(|s| &**s).collect();
        v.sort_by(|a, b| a.state.def.id.cmp(&b.state.def.id));
        v
    }
}

impl TenantView {
    pub fn device(&self, id: &str) -> Option<Arc<DeviceView>> {
        let &local = self.ids.get(id)?;
        self.devices.get(local as usize)?.clone()
    }

    /// Each local slot's place in id order (slots no id maps to come last).
    fn order(&self) -> &[u32] {
        self.order.get_or_init(|| {
            let mut by_id: Vec<(&str, u32)> =
                self.ids.iter().map(|(id, &l)| (id.as_str(), l)).collect();
            by_id.sort_unstable();
            let mut order = vec![u32::MAX; self.devices.len()];
            for (rank, (_, local)) in by_id.into_iter().enumerate() {
                if let Some(o) = order.get_mut(local as usize) {
                    *o = rank as u32;
                }
            }
            order
        })
    }

    /// The devices at these local slots, sorted by id.
    fn sorted(&self, locals: impl Iterator<Item = u32>) -> Vec<Arc<DeviceView>> {
        self.sorted_slots(locals)
            .into_iter()
            .filter_map(|l| self.devices[l as usize].clone())
            .collect()
    }

    /// These local slots, those of removed devices left out, sorted by device id.
    fn sorted_slots(&self, locals: impl Iterator<Item = u32>) -> Vec<u32> {
        let order = self.order();
        let mut v: Vec<(u32, u32)> = locals
            .filter(|&l| matches!(self.devices.get(l as usize), Some(Some(_))))
            .map(|l| (order.get(l as usize).copied().unwrap_or(u32::MAX), l))
            .collect();
        v.sort_unstable_by_key(|&(rank, _)| rank);
        v.into_iter().map(|(_, l)| l).collect()
    }

    /// The device at a tenant-local slot, as the `*_slots` queries return them, borrowed
    /// from this view.
    ///
    /// The `*_slots` queries and this are what large answers use (a province box, a live
    /// map's items): they read the devices in place, where cloning each `Arc<DeviceView>`
    /// would write its reference count, a cache line the pipeline writes again when it
    /// builds the next view from this one (every unchanged device's `Arc` is cloned then),
    /// so that readers on another core would make the pipeline's view slower.
    pub fn device_at(&self, local: u32) -> Option<&DeviceView> {
        self.devices.get(local as usize)?.as_deref()
    }

    /// The local slots of every device, sorted by id (see [`TenantView::device_at`]).
    pub fn device_slots(&self) -> Vec<u32> {
        self.sorted_slots(0..self.devices.len() as u32)
    }

    /// The local slots of the devices changed after `since`, sorted by id.
    pub fn changed_since_slots(&self, since: u64) -> Vec<u32> {
        self.sorted_slots(
            (0..self.changed_at.len() as u32).filter(|&l| self.changed_at[l as usize] > since),
        )
    }

    /// The local slots of the devices whose latest position is in `bbox`, sorted by id.
    pub fn in_bbox_slots(&self, bbox: [f64; 4]) -> Vec<u32> {
        self.sorted_slots(self.positions.in_bbox(bbox).into_iter())
    }

    pub fn devices(&self) -> Vec<Arc<DeviceView>> {
        self.sorted(0..self.devices.len() as u32)
    }

    pub fn changed_since(&self, since: u64) -> Vec<Arc<DeviceView>> {
        self.sorted(
            (0..self.changed_at.len() as u32).filter(|&l| self.changed_at[l as usize] > since),
        )
    }

    pub fn in_bbox(&self, bbox: [f64; 4]) -> Vec<Arc<DeviceView>> {
        self.sorted(self.positions.in_bbox(bbox).into_iter())
    }

    pub fn nearby(
        &self,
        lon: f64,
        lat: f64,
        radius_m: f64,
        limit: usize,
    ) -> Vec<(Arc<DeviceView>, f64)> {
        self.positions
            .nearest(lon, lat, radius_m, limit)
            .into_iter()
            .filter_map(|(local, dist)| Some((self.devices.get(local as usize)?.clone()?, dist)))
            .collect()
    }

    pub fn devices_in_geofence(&self, id: &str) -> Option<Vec<String>> {
        if !self.fences.contains(id) {
            return None;
        }
        let mut ids: Vec<String> = self
            .devices
            .iter()
            .flatten()
            .filter(|d| d.geofences.iter().any(|g| g == id))
            .map(|d| d.id.clone())
            .collect();
        ids.sort();
        Some(ids)
    }
}

#[cfg(test)]
mod tests {
    use geo_types::{LineString, MultiPolygon, Polygon};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::device::DeviceProfile;
    use crate::geofence::{GeofenceDef, Shape};
    use crate::reading::Reading;
    use crate::settings::TrackerSettings;
    use crate::shipment::{Place, ShipmentDef};

    const T0: i64 = 1_795_400_000_000;
    const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

    fn square(id: &str, lon: f64, lat: f64, half: f64) -> GeofenceDef {
        let ring = LineString::from(vec![
            (lon - half, lat - half),
            (lon + half, lat - half),
            (lon + half, lat + half),
            (lon - half, lat + half),
            (lon - half, lat - half),
        ]);
        GeofenceDef {
            id: id.into(),
            name: id.into(),
            kind: "warehouse".into(),
            shape: Shape::Area(MultiPolygon(vec![Polygon::new(ring, vec![])])),
            confirm_seconds: Some(0),
            dwell_seconds: None,
        }
    }

    fn ids(v: &[Arc<DeviceView>]) -> Vec<DeviceView> {
        v.iter().map(|d| (**d).clone()).collect()
    }

    /// Everything a reader can ask, from the view and from the tracker itself, must agree.
    fn assert_agrees(tr: &Tracker, view: &LiveView, rng: &mut SmallRng, since: u64) {
        assert_eq!(view.seq(), tr.change_seq());
        for t in TENANTS {
            assert_eq!(ids(&view.devices(t)), tr.devices(t), "{t}: devices");
            for d in tr.devices(t) {
                assert_eq!(view.device(t, &d.id).as_deref(), Some(&d));
            }
            assert_eq!(view.device(t, "nobody"), None);
            if let Some(tv) = view.tenant(t) {
                let at = |slots: Vec<u32>| -> Vec<DeviceView> {
                    slots
                        .into_iter()
                        .map(|l| tv.device_at(l).unwrap().clone())
                        .collect()
                };
                assert_eq!(at(tv.device_slots()), tr.devices(t), "{t}: device slots");
                assert_eq!(
                    at(tv.changed_since_slots(since)),
                    tr.changed_since(t, since),
                    "{t}: changed slots"
                );
                let bbox = [122.5, 40.5, 123.5, 41.5];
                assert_eq!(
                    at(tv.in_bbox_slots(bbox)),
                    tr.in_bbox(t, bbox),
                    "{t}: bbox slots"
                );
            }
            assert_eq!(
                ids(&view.changed_since(t, since)),
                tr.changed_since(t, since),
                "{t}: changed since {since}"
            );
            for _ in 0..5 {
                let (lon, lat) = (rng.random_range(122.0..124.0), rng.random_range(40.0..42.0));
                let half = rng.random_range(0.0..0.8);
                let bbox = [lon - half, lat - half, lon + half, lat + half];
                assert_eq!(
                    ids(&view.in_bbox(t, bbox)),
                    tr.in_bbox(t, bbox),
                    "{t}: bbox"
                );
                let radius_m = rng.random_range(0.0..60_000.0);
                let near: Vec<(DeviceView, f64)> = view
                    .nearby(t, lon, lat, radius_m, 7)
                    .into_iter()
                    .map(|(d, m)| ((*d).clone(), m))
                    .collect();
                assert_eq!(near, tr.nearby(t, lon, lat, radius_m, 7), "{t}: nearby");
            }
            for f in ["f0", "f1", "f2", "gone"] {
                assert_eq!(
                    view.devices_in_geofence(t, f),
                    tr.devices_in_geofence(t, f),
                    "{t}: in {f}"
                );
            }
            let shipments: Vec<&ShipmentState> =
                view.shipments(t).iter().map(|s| &s.state).collect();
            assert_eq!(shipments, tr.shipments(t), "{t}: shipments");
            for s in tr.shipments(t) {
                let v = view.shipment(t, &s.def.id).unwrap();
                assert_eq!(v.eta, tr.shipment_eta(t, &s.def.id), "{t}: eta");
            }
        }
    }

    #[test]
    fn an_incremental_view_answers_every_query_as_the_tracker_does() {
        let mut rng = SmallRng::seed_from_u64(15);
        let mut tr = Tracker::new(TrackerSettings::default());
        let mut view = LiveView::default();
        let mut out = Vec::new();
        let mut now = T0;
        for step in 0..400 {
            let t = TENANTS[rng.random_range(0..TENANTS.len())];
            let dev = format!("d{}", rng.random_range(0..30));
            now += rng.random_range(0..20_000);
            match rng.random_range(0..100) {
                0..70 => {
                    let r = Reading::at(now)
                        .with_position(rng.random_range(122.0..124.0), rng.random_range(40.0..42.0))
                        .with_temp(rng.random_range(-30.0..10.0));
                    let slot = tr.device_slot(t, &dev);
                    tr.apply(slot, &r, now, &mut out);
                }
                70..75 => {
                    let range = rng.random_bool(0.5).then_some([-25.0, -15.0]);
                    let profile = DeviceProfile {
                        temp_range_c: range,
                        max_speed_kmh: None,
                    };
                    tr.set_device_profile(t, &dev, profile);
                }
                75..80 => {
                    let f = format!("f{}", rng.random_range(0..3));
                    let (lon, lat) = (rng.random_range(122.0..124.0), rng.random_range(40.0..42.0));
                    tr.upsert_geofence(t, square(&f, lon, lat, rng.random_range(0.05..0.5)))
                        .unwrap();
                }
                80..83 => {
                    tr.remove_geofence(t, &format!("f{}", rng.random_range(0..3)));
                }
                83..88 => {
                    let def = ShipmentDef {
                        id: format!("S{}", rng.random_range(0..5)),
                        device: dev.clone(),
                        reference: None,
                        origin: None,
                        destination: Place::Point {
                            lon: 125.0,
                            lat: 41.0,
                        },
                        route: None,
                        route_corridor_m: None,
                        deadline_ms: None,
                        temp_range_c: Some([-25.0, -15.0]),
                        max_speed_kmh: None,
                    };
                    tr.upsert_shipment(t, def).unwrap();
                }
                88..90 => {
                    tr.remove_shipment(t, &format!("S{}", rng.random_range(0..5)));
                }
                90..92 => {
                    tr.remove_device(t, &dev);
                }
                92..96 => tr.on_timer(now + rng.random_range(0..400_000), &mut out),
                _ => tr.maintain(),
            }
            // Views are taken now and then, not after every step, as the pipeline does.
            if step % 3 == 0 {
                let since = view.seq();
                let next = tr.view(&view);
                let full = tr.view(&LiveView::default());
                assert_agrees(&tr, &next, &mut rng, since);
                assert_agrees(&tr, &full, &mut rng, since);
                view = next;
            }
        }
    }

    #[test]
    fn a_rebuilt_position_index_reaches_the_next_view() {
        let mut tr = Tracker::new(TrackerSettings::default());
        let mut out = Vec::new();
        for i in 0..2_000 {
            let slot = tr.device_slot("acme", &format!("d{i}"));
            let lon = 122.0 + i as f64 * 0.001;
            tr.apply(
                slot,
                &Reading::at(T0).with_position(lon, 41.0),
                T0,
                &mut out,
            );
        }
        let v1 = tr.view(&LiveView::default());
        assert_eq!(v1.tenants["acme"].positions.dirty_len(), 2_000);
        // Queries on the view make the rebuild pay (see PositionIndex::maintain).
        for _ in 0..9 {
            assert_eq!(v1.in_bbox("acme", [121.0, 40.0, 125.0, 42.0]).len(), 2_000);
        }
        tr.maintain();
        let v2 = tr.view(&v1);
        assert_eq!(
            v2.tenants["acme"].positions.dirty_len(),
            0,
            "the rebuilt tree"
        );
        assert_eq!(v2.in_bbox("acme", [121.0, 40.0, 125.0, 42.0]).len(), 2_000);
    }

    #[test]
    fn an_unchanged_tenant_keeps_its_view_and_unchanged_devices_are_shared() {
        let mut tr = Tracker::new(TrackerSettings::default());
        let mut out = Vec::new();
        for (t, d) in [("acme", "a"), ("acme", "b"), ("globex", "c")] {
            let slot = tr.device_slot(t, d);
            tr.apply(
                slot,
                &Reading::at(T0).with_position(123.0, 41.0),
                T0,
                &mut out,
            );
        }
        let v1 = tr.view(&LiveView::default());
        let slot = tr.find_device("acme", "a").unwrap();
        let r = Reading::at(T0 + 1000).with_position(123.1, 41.0);
        tr.apply(slot, &r, T0 + 1000, &mut out);
        let v2 = tr.view(&v1);
        assert!(Arc::ptr_eq(&v1.tenants["globex"], &v2.tenants["globex"]));
        assert!(!Arc::ptr_eq(&v1.tenants["acme"], &v2.tenants["acme"]));
        let b1 = v1.device("acme", "b").unwrap();
        assert!(Arc::ptr_eq(&b1, &v2.device("acme", "b").unwrap()));
        assert_eq!(v2.device("acme", "a").unwrap().fix.unwrap().lon, 123.1);
        assert_eq!(
            v1.device("acme", "a").unwrap().fix.unwrap().lon,
            123.0,
            "v1 is frozen"
        );
        let names: Vec<String> = v2
            .changed_since("acme", v1.seq())
            .iter()
            .map(|d| d.id.clone())
            .collect();
        assert_eq!(names, ["a"]);
    }
}
