//! One tenant's geofences, with an R-tree of their envelopes to narrow candidates.
//!
//! Layout: a slab of fences indexed by slot (deleted fences leave a tombstone, so slots are
//! never reused), a map from id to slot, and an R-tree holding one rectangle per envelope of
//! each live fence, tagged with its slot. A point query walks the R-tree (allocation-free,
//! internal iteration) to find the slots whose envelope holds the point; the caller, or
//! [`FenceIndex::fences_containing`], then runs the exact test on those.
//!
//! The R-tree is in degrees and only narrows candidates; all metres live in [`Geofence`].

use std::collections::HashMap;
use std::ops::ControlFlow;

use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

use crate::error::TrackerError;
use crate::geofence::{Geofence, GeofenceDef};

/// An envelope rectangle `[lon, lat]` corners, degrees, carrying the fence's slot.
type Envelope = GeomWithData<Rectangle<[f64; 2]>, u32>;

/// A tenant's geofences. Each fence has a slot number that is never reused, so a device's
/// memberships (kept as slots) can't point at a different fence after a delete.
///
/// `Clone` copies everything (fences and tree). To persist an index, store
/// [`iter`](Self::iter)'s `(slot, def)` pairs and [`next_slot`](Self::next_slot); restore with
/// [`from_defs`](Self::from_defs) and [`reserve_slots`](Self::reserve_slots), which give every
/// fence back its slot.
#[derive(Debug, Clone, Default)]
pub struct FenceIndex {
    /// Slot -> fence; `None` is a tombstone (a deleted fence). Boxed so tombstones cost one
    /// word.
    slots: Vec<Option<Box<Geofence>>>,
    /// Id -> slot, for live fences.
    by_id: HashMap<String, u32>,
    /// Envelopes of live fences (one to three per fence), tagged with the slot.
    tree: RTree<Envelope>,
    /// Inserts and removals since the tree was last bulk-loaded. One-by-one inserts leave a
    /// tree about 30 % slower to query than a bulk-loaded one (measured at 10,000 fences), so
    /// after enough of them the tree is bulk-loaded again.
    changes_since_bulk_load: usize,
}

/// Bulk-load again after more than `max(64, len / 4)` one-by-one changes: each reload costs
/// O(len), so the amortised cost per change stays O(1).
const RELOAD_MIN_CHANGES: usize = 64;
const RELOAD_FRACTION: usize = 4;

impl FenceIndex {
    pub fn new() -> Self {
        FenceIndex::default()
    }

    /// Rebuilds an index from `(slot, def)` pairs, keeping the slots: `from_defs(index.iter()
    /// .map(|(s, f)| (s, f.def().clone())))` has the same fences at the same slots as `index`.
    /// The R-tree is bulk-loaded (faster, and better balanced, than inserting one by one).
    ///
    /// New fences get slots after the highest restored one. If the fences with the highest
    /// slots had been deleted before the snapshot, call [`reserve_slots`](Self::reserve_slots)
    /// with the saved [`next_slot`](Self::next_slot) so their slots are not handed out again.
    ///
    /// Errors (`InvalidSnapshot`): a def that no longer validates, a slot or an id that appears
    /// twice, or slot `u32::MAX`.
    pub fn from_defs(
        defs: impl IntoIterator<Item = (u32, GeofenceDef)>,
    ) -> Result<FenceIndex, TrackerError> {
        let mut index = FenceIndex::new();
        let mut items = Vec::new();
        for (slot, def) in defs {
            if slot == u32::MAX {
                return Err(TrackerError::InvalidSnapshot(format!(
                    "geofence {}: slot {slot} is out of range",
                    def.id
                )));
            }
            let id = def.id.clone();
            // Fences in a snapshot were validated when they were defined: prepared, not checked
            // again (a restart costs linear time in the vertices, not the validation's).
            let fence = Geofence::trusted(def).map_err(|e| {
                TrackerError::InvalidSnapshot(format!("geofence {id} (slot {slot}): {e}"))
            })?;
            let i = slot as usize;
            if index.slots.len() <= i {
                index.slots.resize_with(i + 1, || None);
            }
            if index.slots[i].is_some() {
                return Err(TrackerError::InvalidSnapshot(format!(
                    "geofence slot {slot} appears twice"
                )));
            }
            if index.by_id.insert(id.clone(), slot).is_some() {
                return Err(TrackerError::InvalidSnapshot(format!(
                    "geofence id {id} appears twice"
                )));
            }
            items.extend(envelopes_of(&fence, slot));
            index.slots[i] = Some(Box::new(fence));
        }
        index.tree = RTree::bulk_load(items);
        Ok(index)
    }

    /// The slot the next new fence will get: one past the highest slot ever used.
    pub fn next_slot(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Makes sure new fences get slots `>= next_slot` (adds tombstones; never removes any).
    pub fn reserve_slots(&mut self, next_slot: u32) {
        if (next_slot as usize) > self.slots.len() {
            self.slots.resize_with(next_slot as usize, || None);
        }
    }

    /// Adds a fence, or replaces the one with the same id (keeping its slot).
    ///
    /// The definition is validated first; on error the index is unchanged.
    pub fn upsert(&mut self, def: GeofenceDef) -> Result<u32, TrackerError> {
        self.upsert_prepared(Geofence::new(def)?)
    }

    /// [`upsert`](Self::upsert) of a fence validated beforehand with [`Geofence::new`].
    /// Validation is the slow part (quadratic in a ring's vertex count: ~20 ms at 2,000
    /// vertices, ~0.7 s at 10,000), so a caller holding a lock can validate before taking it.
    /// Fails only when the slots are exhausted.
    pub fn upsert_prepared(&mut self, fence: Geofence) -> Result<u32, TrackerError> {
        if let Some(&slot) = self.by_id.get(fence.id()) {
            if let Some(old) = self.slots[slot as usize].take() {
                self.remove_envelopes(&old, slot);
            }
            for e in envelopes_of(&fence, slot) {
                self.tree.insert(e);
            }
            self.slots[slot as usize] = Some(Box::new(fence));
            self.note_changes();
            return Ok(slot);
        }
        let slot = u32::try_from(self.slots.len())
            .ok()
            .filter(|s| *s < u32::MAX)
            .ok_or_else(|| TrackerError::InvalidGeometry("too many geofences".to_owned()))?;
        for e in envelopes_of(&fence, slot) {
            self.tree.insert(e);
        }
        self.by_id.insert(fence.id().to_owned(), slot);
        self.slots.push(Some(Box::new(fence)));
        self.note_changes();
        Ok(slot)
    }

    /// Removes a fence by id, returning its slot.
    pub fn remove(&mut self, id: &str) -> Option<u32> {
        let slot = self.by_id.remove(id)?;
        if let Some(old) = self.slots[slot as usize].take() {
            self.remove_envelopes(&old, slot);
        }
        self.note_changes();
        Some(slot)
    }

    /// Counts a one-by-one change and bulk-loads the tree again when there were many.
    fn note_changes(&mut self) {
        self.changes_since_bulk_load += 1;
        if self.changes_since_bulk_load > RELOAD_MIN_CHANGES.max(self.len() / RELOAD_FRACTION) {
            let items = self
                .iter()
                .flat_map(|(slot, f)| envelopes_of(f, slot))
                .collect();
            self.tree = RTree::bulk_load(items);
            self.changes_since_bulk_load = 0;
        }
    }

    fn remove_envelopes(&mut self, fence: &Geofence, slot: u32) {
        for e in envelopes_of(fence, slot) {
            let removed = self.tree.remove(&e);
            debug_assert!(
                removed.is_some(),
                "envelope of slot {slot} missing from the tree"
            );
        }
    }

    pub fn get(&self, slot: u32) -> Option<&Geofence> {
        self.slots.get(slot as usize)?.as_deref()
    }

    pub fn slot_of(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Appends to `out` the slots of fences whose envelope contains the point (the caller
    /// then runs the exact test). Does not clear `out`. Allocation-free.
    ///
    /// Each slot appears once; the order is the R-tree's. "Allocation-free" as long as `out`
    /// has room: keep one scratch vector and reuse it. A point at longitude ±180 finds fences
    /// on either side of the antimeridian.
    pub fn candidates_at(&self, lon: f64, lat: f64, out: &mut Vec<u32>) {
        let start = out.len();
        let at_antimeridian = lon.abs() == 180.0;
        let mut probe = |x: f64| {
            let _ = self.tree.locate_all_at_point_int(&[x, lat], |e| {
                let slot = e.data;
                // Fences with several envelopes (antimeridian, MultiPolygons on both sides)
                // may be hit twice.
                let multi =
                    at_antimeridian || self.get(slot).is_some_and(|f| f.envelope_slice().len() > 1);
                if !(multi && out[start..].contains(&slot)) {
                    out.push(slot);
                }
                ControlFlow::<()>::Continue(())
            });
        };
        probe(lon);
        if at_antimeridian {
            probe(-lon);
        }
    }

    /// Appends to `out` the slots of fences whose envelope meets the box
    /// `[min_lon, min_lat, max_lon, max_lat]` (edges inclusive): a superset of the fences that
    /// can contain any point of the box. Does not clear `out`; each slot appears once.
    /// Allocation-free when `out` has room.
    ///
    /// `min_lon > max_lon` means the box crosses the antimeridian; a box touching ±180 also
    /// finds the fences touching the line from the other side. A box with a NaN, or with
    /// `min_lat > max_lat`, meets nothing.
    pub fn candidates_in_box(&self, bbox: [f64; 4], out: &mut Vec<u32>) {
        let [min_lon, min_lat, max_lon, max_lat] = bbox;
        if bbox.iter().any(|v| v.is_nan()) || min_lat > max_lat {
            return;
        }
        let start = out.len();
        let mut probe = |lo: f64, hi: f64| {
            let env = AABB::from_corners([lo, min_lat], [hi, max_lat]);
            let _ = self.tree.locate_in_envelope_intersecting_int(&env, |e| {
                let slot = e.data;
                if !out[start..].contains(&slot) {
                    out.push(slot);
                }
                ControlFlow::<()>::Continue(())
            });
        };
        let (west, east) = if min_lon <= max_lon {
            probe(min_lon, max_lon);
            (min_lon <= -180.0, max_lon >= 180.0)
        } else {
            probe(min_lon, 180.0);
            probe(-180.0, max_lon);
            (true, true)
        };
        if west {
            probe(180.0, 180.0);
        }
        if east {
            probe(-180.0, -180.0);
        }
    }

    /// Appends to `out` the slots of the fences that contain the point (boundary included),
    /// in ascending slot order: [`candidates_at`](Self::candidates_at) followed by the exact
    /// tests. Does not clear `out`; allocation-free when `out` has room.
    pub fn fences_containing(&self, lon: f64, lat: f64, out: &mut Vec<u32>) {
        let start = out.len();
        self.candidates_at(lon, lat, out);
        let mut keep = start;
        for i in start..out.len() {
            let slot = out[i];
            if self.get(slot).is_some_and(|f| f.contains(lon, lat)) {
                out[keep] = slot;
                keep += 1;
            }
        }
        out.truncate(keep);
        out[start..].sort_unstable();
    }

    /// Live fences, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Geofence)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, f)| Some((i as u32, f.as_deref()?)))
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The R-tree entries of a fence.
fn envelopes_of(fence: &Geofence, slot: u32) -> impl Iterator<Item = Envelope> + '_ {
    fence
        .envelope_slice()
        .iter()
        .map(move |b| GeomWithData::new(Rectangle::from_corners([b[0], b[1]], [b[2], b[3]]), slot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geofence::Shape;
    use geo_types::{MultiPolygon, Point, polygon};

    fn square(id: &str, lon: f64, lat: f64, size: f64) -> GeofenceDef {
        GeofenceDef {
            id: id.into(),
            name: id.to_uppercase(),
            kind: "warehouse".into(),
            shape: Shape::Area(MultiPolygon(vec![polygon![
                (x: lon, y: lat), (x: lon + size, y: lat), (x: lon + size, y: lat + size),
                (x: lon, y: lat + size), (x: lon, y: lat)
            ]])),
            confirm_seconds: None,
            dwell_seconds: Some(60),
        }
    }

    fn candidates(index: &FenceIndex, lon: f64, lat: f64) -> Vec<u32> {
        let mut out = Vec::new();
        index.candidates_at(lon, lat, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn slots_are_never_reused_after_a_delete() {
        let mut index = FenceIndex::new();
        assert_eq!(index.upsert(square("a", 0.0, 0.0, 1.0)).unwrap(), 0);
        assert_eq!(index.upsert(square("b", 2.0, 0.0, 1.0)).unwrap(), 1);
        assert_eq!(index.remove("a"), Some(0));
        assert_eq!(index.remove("a"), None);
        assert_eq!(index.upsert(square("a", 0.0, 0.0, 1.0)).unwrap(), 2);
        assert!(index.get(0).is_none());
        assert_eq!(index.len(), 2);
        assert_eq!(index.next_slot(), 3);
    }

    #[test]
    fn upsert_of_an_existing_id_keeps_the_slot_and_moves_the_envelope() {
        let mut index = FenceIndex::new();
        index.upsert(square("a", 0.0, 0.0, 1.0)).unwrap();
        index.upsert(square("b", 5.0, 5.0, 1.0)).unwrap();
        assert_eq!(index.upsert(square("a", 10.0, 10.0, 1.0)).unwrap(), 0);
        assert!(candidates(&index, 0.5, 0.5).is_empty());
        assert_eq!(candidates(&index, 10.5, 10.5), vec![0]);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn an_invalid_upsert_leaves_the_index_unchanged() {
        let mut index = FenceIndex::new();
        index.upsert(square("a", 0.0, 0.0, 1.0)).unwrap();
        let mut bad = square("a", 0.0, 0.0, 1.0);
        bad.shape = Shape::Circle {
            center: Point::new(0.0, 0.0),
            radius_m: -1.0,
        };
        assert!(index.upsert(bad).is_err());
        assert_eq!(candidates(&index, 0.5, 0.5), vec![0]);
    }

    #[test]
    fn removed_fences_are_no_longer_candidates() {
        let mut index = FenceIndex::new();
        index.upsert(square("a", 0.0, 0.0, 1.0)).unwrap();
        index.upsert(square("b", 0.5, 0.5, 1.0)).unwrap();
        assert_eq!(candidates(&index, 0.75, 0.75), vec![0, 1]);
        index.remove("a");
        assert_eq!(candidates(&index, 0.75, 0.75), vec![1]);
        assert_eq!(index.slot_of("b"), Some(1));
        assert_eq!(index.slot_of("a"), None);
    }

    #[test]
    fn candidates_append_without_clearing() {
        let mut index = FenceIndex::new();
        index.upsert(square("a", 0.0, 0.0, 1.0)).unwrap();
        let mut out = vec![99];
        index.candidates_at(0.5, 0.5, &mut out);
        assert_eq!(out, vec![99, 0]);
    }

    #[test]
    fn antimeridian_fences_are_candidates_once_on_both_sides() {
        let mut index = FenceIndex::new();
        let mut def = square("x", 0.0, 0.0, 1.0);
        def.shape = Shape::Area(MultiPolygon(vec![polygon![
            (x: 179.0, y: 0.0), (x: -179.0, y: 0.0), (x: -179.0, y: 1.0), (x: 179.0, y: 1.0), (x: 179.0, y: 0.0)
        ]]));
        index.upsert(def).unwrap();
        for lon in [179.5, 180.0, -180.0, -179.5] {
            let mut out = Vec::new();
            index.fences_containing(lon, 0.5, &mut out);
            assert_eq!(out, vec![0], "lon {lon}");
        }
        assert!(candidates(&index, 0.0, 0.5).is_empty());
    }

    #[test]
    fn candidates_in_box_finds_every_fence_meeting_the_box_once() {
        let mut index = FenceIndex::new();
        index.upsert(square("a", 0.0, 0.0, 1.0)).unwrap();
        index.upsert(square("b", 0.9, 0.9, 1.0)).unwrap();
        index.upsert(square("c", 5.0, 5.0, 1.0)).unwrap();
        let mut x = square("x", 0.0, 0.0, 1.0);
        x.shape = Shape::Area(MultiPolygon(vec![polygon![
            (x: 179.0, y: 0.0), (x: -179.0, y: 0.0), (x: -179.0, y: 1.0), (x: 179.0, y: 1.0), (x: 179.0, y: 0.0)
        ]]));
        index.upsert(x).unwrap();
        let boxed = |b: [f64; 4]| {
            let mut out = vec![];
            index.candidates_in_box(b, &mut out);
            out.sort_unstable();
            out
        };
        assert_eq!(boxed([0.5, 0.5, 0.95, 0.95]), vec![0, 1]);
        assert_eq!(boxed([1.0, 1.0, 1.0, 1.0]), vec![0, 1]);
        assert_eq!(boxed([3.0, 3.0, 4.0, 4.0]), Vec::<u32>::new());
        assert_eq!(boxed([179.5, 0.5, 180.0, 0.6]), vec![3]);
        assert_eq!(boxed([178.0, 0.5, -178.0, 0.6]), vec![3]);
        assert_eq!(boxed([-180.0, 0.5, -179.5, 0.6]), vec![3]);
        assert_eq!(boxed([0.0, 2.0, 1.0, 1.0]), Vec::<u32>::new());
    }

    #[test]
    fn from_defs_restores_the_same_slots_and_answers() {
        let mut index = FenceIndex::new();
        for i in 0..20 {
            index
                .upsert(square(&format!("f{i}"), i as f64, 0.0, 1.5))
                .unwrap();
        }
        index.remove("f3");
        index.remove("f19");
        let saved: Vec<(u32, GeofenceDef)> =
            index.iter().map(|(s, f)| (s, f.def().clone())).collect();
        let mut restored = FenceIndex::from_defs(saved).unwrap();
        restored.reserve_slots(index.next_slot());
        assert_eq!(restored.len(), index.len());
        for (s, f) in index.iter() {
            assert_eq!(restored.get(s).map(|g| g.def()), Some(f.def()));
            assert_eq!(restored.slot_of(f.id()), Some(s));
        }
        for x in 0..40 {
            let lon = x as f64 * 0.5 + 0.25;
            assert_eq!(
                candidates(&restored, lon, 0.7),
                candidates(&index, lon, 0.7)
            );
        }
        assert_eq!(restored.upsert(square("new", 50.0, 0.0, 1.0)).unwrap(), 20);
    }

    #[test]
    fn from_defs_rejects_duplicate_slots_and_ids() {
        let dup_slot = vec![
            (1, square("a", 0.0, 0.0, 1.0)),
            (1, square("b", 0.0, 0.0, 1.0)),
        ];
        assert!(matches!(
            FenceIndex::from_defs(dup_slot),
            Err(TrackerError::InvalidSnapshot(_))
        ));
        let dup_id = vec![
            (1, square("a", 0.0, 0.0, 1.0)),
            (2, square("a", 0.0, 0.0, 1.0)),
        ];
        assert!(matches!(
            FenceIndex::from_defs(dup_id),
            Err(TrackerError::InvalidSnapshot(_))
        ));
    }

    #[test]
    fn iter_lists_live_fences_in_slot_order_and_clone_is_independent() {
        let mut index = FenceIndex::new();
        for id in ["c", "a", "b"] {
            index.upsert(square(id, 0.0, 0.0, 1.0)).unwrap();
        }
        let copy = index.clone();
        index.remove("a");
        let ids: Vec<&str> = index.iter().map(|(_, f)| f.id()).collect();
        assert_eq!(ids, vec!["c", "b"]);
        assert_eq!(copy.len(), 3);
        assert_eq!(candidates(&copy, 0.5, 0.5), vec![0, 1, 2]);
    }
}
