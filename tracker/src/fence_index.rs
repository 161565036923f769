//! One tenant's geofences, with an R-tree of their envelopes to narrow candidates.
// CONTRACT (filled in by the geometry work): see the docs.

use crate::error::TrackerError;
use crate::geofence::{Geofence, GeofenceDef};

/// A tenant's geofences. Each fence has a slot number that is never reused, so a device's
/// memberships (kept as slots) can't point at a different fence after a delete.
#[derive(Debug, Clone, Default)]
pub struct FenceIndex {}

impl FenceIndex {
    pub fn new() -> Self {
        FenceIndex {}
    }

    /// Adds a fence, or replaces the one with the same id (keeping its slot).
    pub fn upsert(&mut self, def: GeofenceDef) -> Result<u32, TrackerError> {
        let _ = def;
        todo!()
    }

    /// Removes a fence by id, returning its slot.
    pub fn remove(&mut self, id: &str) -> Option<u32> {
        let _ = id;
        todo!()
    }

    pub fn get(&self, slot: u32) -> Option<&Geofence> {
        let _ = slot;
        todo!()
    }

    pub fn slot_of(&self, id: &str) -> Option<u32> {
        let _ = id;
        todo!()
    }

    /// Appends to `out` the slots of fences whose envelope contains the point (the caller
    /// then runs the exact test). Does not clear `out`. Allocation-free.
    pub fn candidates_at(&self, lon: f64, lat: f64, out: &mut Vec<u32>) {
        let _ = (lon, lat, out);
        todo!()
    }

    /// Live fences, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Geofence)> {
        std::iter::empty()
    }

    pub fn len(&self) -> usize {
        0
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
