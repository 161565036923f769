//! Spatial index of live device positions: bounding-box and nearest-within-radius queries.
//!
//! Moving a point in an R-tree (remove + insert) costs about 2 µs at 100,000 points, far over
//! the per-reading budget. So [`PositionIndex::update`] only writes the position into a vector
//! and marks the key dirty (O(1), no allocation once the vectors have grown), and
//! [`PositionIndex::maintain`] bulk-loads a fresh R-tree when enough keys have moved. Queries
//! are exact at all times: they take the R-tree's hits for keys that are not dirty (their tree
//! position is current) and scan the dirty keys, whose tree entries are stale.
//!
//! When to rebuild is a rent-or-buy choice. A rebuild costs about 200-600 ns per position
//! (measured on a 2-core machine: 20-40 ms at 100,000, 0.3-0.6 s at 1,000,000); a query pays
//! 1-20 ns per dirty key it scans (sequentially when many keys are dirty, from the dirty list
//! when few are). So `maintain` rebuilds only when many keys are dirty *and* queries since the
//! last rebuild have scanned, in total, several times as many dirty keys as there are
//! positions. With 1,000,000 moving devices and no queries it never pays 30 % of a core to
//! rebuild every second; with frequent queries it rebuilds every time it is called.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rstar::primitives::GeomWithData;
use rstar::{AABB, RTree};

use crate::geodesy::{self, wrap_lon};

/// A position in the R-tree: `[lon, lat]` degrees, tagged with its key.
type Entry = GeomWithData<[f64; 2], u32>;

/// Latest position per key (a device slot). `update` is O(1) amortised on the hot path;
/// the R-tree is rebuilt in bulk by `maintain`, and queries stay exact in between by also
/// scanning the keys moved since the last rebuild.
///
/// Memory is proportional to the largest key (keys are meant to be dense slots): 17 bytes per
/// key (21 while dirty) plus the R-tree's entry (24 bytes and node overhead).
///
/// A clone is a snapshot for readers (the read side): it copies the positions and dirty
/// marks (about 17 bytes a key) but shares the R-tree, and queries on any clone count towards
/// the original's rebuild decision.
#[derive(Debug, Default, Clone)]
pub struct PositionIndex {
    /// Latest `[lon, lat]` per key; NaN longitude = no position.
    pos: Vec<[f64; 2]>,
    /// Whether the key moved or was removed since the last rebuild (its tree entry, if any,
    /// is stale).
    dirty_flag: Vec<bool>,
    /// The dirty keys, each once, in the order they first moved.
    dirty: Vec<u32>,
    /// Positions as of the last rebuild; shared with snapshots, never changed in place.
    tree: Arc<RTree<Entry>>,
    /// Keys with a position.
    len: usize,
    /// Dirty keys scanned by queries since the last rebuild, here and in snapshots (queries
    /// take `&self`, hence the atomic; relaxed ordering: it is a statistic).
    scanned: Arc<AtomicU64>,
    /// Rebuilds so far: a snapshot older than the latest rebuild still scans the keys dirty
    /// at its time, so the read side takes a new one.
    rebuilds: u64,
}

/// Rebuild when more keys than this have moved (or `len / REBUILD_FRACTION`, if larger)...
const REBUILD_MIN_DIRTY: usize = 1024;
const REBUILD_FRACTION: usize = 16;
/// ...and queries have scanned more than `REBUILD_SCAN_FACTOR * len` dirty keys since the last
/// rebuild (scanning costs ~1-20 ns a key, rebuilding ~200-300 ns a position).
const REBUILD_SCAN_FACTOR: u64 = 8;
/// Queries walk all keys in order, rather than the dirty list in random order, when more than
/// this fraction of keys is dirty (sequential reads are ~10x cheaper than cache misses).
const SEQUENTIAL_SCAN_FRACTION: usize = 8;

impl PositionIndex {
    pub fn new() -> Self {
        PositionIndex::default()
    }

    /// Records the latest position of `key`.
    ///
    /// `(lon, lat)` in degrees; a longitude outside [-180, 180] is wrapped, a non-finite
    /// coordinate is ignored (the key keeps its previous position). O(1); allocates only when
    /// `key` is beyond every key seen so far or the dirty list has to grow.
    #[inline]
    pub fn update(&mut self, key: u32, lon: f64, lat: f64) {
        if !(lon.is_finite() && lat.is_finite()) {
            return;
        }
        let k = key as usize;
        if k >= self.pos.len() {
            self.pos.resize(k + 1, [f64::NAN, f64::NAN]);
            self.dirty_flag.resize(k + 1, false);
        }
        if self.pos[k][0].is_nan() {
            self.len += 1;
        }
        self.pos[k] = [wrap_lon(lon), lat.clamp(-90.0, 90.0)];
        self.mark_dirty(k);
    }

    #[inline]
    fn mark_dirty(&mut self, k: usize) {
        if !self.dirty_flag[k] {
            self.dirty_flag[k] = true;
            self.dirty.push(k as u32);
        }
    }

    pub fn remove(&mut self, key: u32) {
        let k = key as usize;
        if k < self.pos.len() && !self.pos[k][0].is_nan() {
            self.pos[k] = [f64::NAN, f64::NAN];
            self.len -= 1;
            self.mark_dirty(k);
        }
    }

    pub fn get(&self, key: u32) -> Option<(f64, f64)> {
        let p = self.pos.get(key as usize)?;
        (!p[0].is_nan()).then_some((p[0], p[1]))
    }

    /// Rebuilds the R-tree in bulk if enough keys moved since the last rebuild.
    ///
    /// "Enough": more than `max(1024, len / 16)` keys moved, and queries since the last
    /// rebuild scanned more than `8 * len` moved keys in total (see the module docs). Call it
    /// periodically (every second or so); queries are exact either way.
    pub fn maintain(&mut self) {
        let many_dirty = self.dirty.len() > REBUILD_MIN_DIRTY.max(self.len / REBUILD_FRACTION);
        let scanned = self.scanned.load(Ordering::Relaxed);
        if many_dirty && scanned > REBUILD_SCAN_FACTOR * self.len as u64 {
            self.rebuild();
        }
    }

    /// Rebuilds the R-tree now, whatever the number of moved keys.
    pub fn rebuild(&mut self) {
        let entries: Vec<Entry> = self
            .pos
            .iter()
            .enumerate()
            .filter(|(_, p)| !p[0].is_nan())
            .map(|(k, p)| GeomWithData::new(*p, k as u32))
            .collect();
        self.tree = Arc::new(RTree::bulk_load(entries));
        for &k in &self.dirty {
            self.dirty_flag[k as usize] = false;
        }
        self.dirty.clear();
        self.scanned.store(0, Ordering::Relaxed);
        self.rebuilds += 1;
    }

    /// How many times the R-tree has been rebuilt.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// Keys moved or removed since the last rebuild.
    pub fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    /// Calls `f(key, [lon, lat])` once for every key inside one of `boxes`
    /// (`[min_lon, min_lat, max_lon, max_lat]`, edges inclusive, min <= max).
    fn for_each_in_boxes(&self, boxes: &[[f64; 4]], mut f: impl FnMut(u32, [f64; 2])) {
        let first_box_with = |p: &[f64; 2]| {
            boxes
                .iter()
                .position(|b| b[0] <= p[0] && p[0] <= b[2] && b[1] <= p[1] && p[1] <= b[3])
        };
        for (i, b) in boxes.iter().enumerate() {
            let env = AABB::from_corners([b[0], b[1]], [b[2], b[3]]);
            let _ = self.tree.locate_in_envelope_int(&env, |e| {
                // Tree entries of dirty keys are stale; a point on the edge of two boxes is
                // reported by the first.
                if !self.dirty_flag[e.data as usize] && first_box_with(e.geom()) == Some(i) {
                    f(e.data, *e.geom());
                }
                ControlFlow::<()>::Continue(())
            });
        }
        if self.dirty.len() > self.pos.len() / SEQUENTIAL_SCAN_FRACTION {
            for (k, p) in self.pos.iter().enumerate() {
                if self.dirty_flag[k] && !p[0].is_nan() && first_box_with(p).is_some() {
                    f(k as u32, *p);
                }
            }
        } else {
            for &k in &self.dirty {
                let p = &self.pos[k as usize];
                if !p[0].is_nan() && first_box_with(p).is_some() {
                    f(k, *p);
                }
            }
        }
        self.scanned
            .fetch_add(self.dirty.len() as u64, Ordering::Relaxed);
    }

    /// Keys inside `[min_lon, min_lat, max_lon, max_lat]` (edges inclusive); when
    /// `min_lon > max_lon` the box crosses the antimeridian.
    ///
    /// Sorted by key. Longitudes 180 and -180 are the same meridian: a point on it is in a box
    /// that touches either. A box with a NaN or with `min_lat > max_lat` is empty.
    pub fn in_bbox(&self, bbox: [f64; 4]) -> Vec<u32> {
        let [min_lon, min_lat, max_lon, max_lat] = bbox;
        let mut out = Vec::new();
        if bbox.iter().any(|v| v.is_nan()) || min_lat > max_lat {
            return out;
        }
        let mut boxes = [[0.0; 4]; 3];
        let mut n = if min_lon <= max_lon {
            boxes[0] = [min_lon, min_lat, max_lon, max_lat];
            1
        } else {
            boxes[0] = [min_lon, min_lat, 180.0, max_lat];
            boxes[1] = [-180.0, min_lat, max_lon, max_lat];
            2
        };
        // The antimeridian under its other name.
        let has_lon = |x: f64| boxes[..n].iter().any(|b| b[0] <= x && x <= b[2]);
        let (west, east) = (has_lon(-180.0), has_lon(180.0));
        if west && !east {
            boxes[n] = [180.0, min_lat, 180.0, max_lat];
            n += 1;
        } else if east && !west {
            boxes[n] = [-180.0, min_lat, -180.0, max_lat];
            n += 1;
        }
        self.for_each_in_boxes(&boxes[..n], |k, _| out.push(k));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Up to `limit` keys within `radius_m` (geodesic) of `(lon, lat)`, nearest first, with
    /// their distances in metres.
    ///
    /// Ties are broken by key. Candidates come from [`geodesy::bboxes_around`]; each is then
    /// measured exactly (Karney), so this costs about a microsecond per device in the boxes.
    pub fn nearest(&self, lon: f64, lat: f64, radius_m: f64, limit: usize) -> Vec<(u32, f64)> {
        let mut out = Vec::new();
        if limit == 0 || !(lon.is_finite() && lat.is_finite()) || !(radius_m >= 0.0) {
            return out;
        }
        let boxes = geodesy::bboxes_around_inline(lon, lat, radius_m);
        self.for_each_in_boxes(boxes.as_slice(), |k, p| {
            let d = geodesy::distance_m((lon, lat), (p[0], p[1]));
            if d <= radius_m {
                out.push((k, d));
            }
        });
        out.sort_unstable_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        out.dedup_by_key(|e| e.0);
        out.truncate(limit);
        out
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_get_and_remove_track_the_latest_position() {
        let mut idx = PositionIndex::new();
        assert!(idx.is_empty());
        idx.update(3, 10.0, 50.0);
        idx.update(3, 10.5, 50.5);
        assert_eq!(idx.get(3), Some((10.5, 50.5)));
        assert_eq!(idx.get(2), None);
        assert_eq!(idx.get(99), None);
        assert_eq!(idx.len(), 1);
        idx.remove(3);
        idx.remove(3);
        idx.remove(77);
        assert_eq!(idx.get(3), None);
        assert_eq!(idx.len(), 0);
    }

    #[test]
    fn non_finite_updates_are_ignored() {
        let mut idx = PositionIndex::new();
        idx.update(0, 1.0, 2.0);
        idx.update(0, f64::NAN, 2.0);
        idx.update(1, 1.0, f64::INFINITY);
        assert_eq!(idx.get(0), Some((1.0, 2.0)));
        assert_eq!(idx.get(1), None);
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn queries_are_exact_before_and_after_maintain() {
        let mut idx = PositionIndex::new();
        idx.update(0, 0.0, 0.0);
        idx.update(1, 1.0, 1.0);
        idx.rebuild();
        idx.update(0, 5.0, 5.0); // moved: its tree entry at (0, 0) is stale
        idx.remove(1);
        idx.update(2, 0.5, 0.5);
        assert_eq!(idx.in_bbox([-1.0, -1.0, 2.0, 2.0]), vec![2]);
        assert_eq!(idx.in_bbox([4.0, 4.0, 6.0, 6.0]), vec![0]);
        idx.rebuild();
        assert_eq!(idx.dirty_len(), 0);
        assert_eq!(idx.in_bbox([-1.0, -1.0, 2.0, 2.0]), vec![2]);
        assert_eq!(idx.in_bbox([4.0, 4.0, 6.0, 6.0]), vec![0]);
    }

    #[test]
    fn maintain_rebuilds_only_after_many_moves_and_enough_query_work() {
        let mut idx = PositionIndex::new();
        for k in 0..1000 {
            idx.update(k, 0.0, 0.0);
        }
        for _ in 0..20 {
            idx.in_bbox([1.0, 1.0, 2.0, 2.0]);
        }
        idx.maintain();
        assert_eq!(idx.dirty_len(), 1000, "1000 moved keys are not many");

        let mut idx = PositionIndex::new();
        for k in 0..1100 {
            idx.update(k, 0.0, 0.0);
        }
        idx.maintain();
        assert_eq!(idx.dirty_len(), 1100, "no query has scanned them");
        for _ in 0..8 {
            idx.in_bbox([1.0, 1.0, 2.0, 2.0]);
        }
        idx.maintain();
        assert_eq!(
            idx.dirty_len(),
            1100,
            "8 x 1100 scanned is not more than 8 x len"
        );
        idx.nearest(0.0, 0.0, 10.0, 1);
        idx.maintain();
        assert_eq!(idx.dirty_len(), 0);
        assert_eq!(idx.in_bbox([-1.0, -1.0, 1.0, 1.0]).len(), 1100);
    }

    #[test]
    fn bbox_edges_are_inclusive_and_antimeridian_boxes_wrap() {
        let mut idx = PositionIndex::new();
        idx.update(0, 179.5, 0.0);
        idx.update(1, -179.5, 0.0);
        idx.update(2, 0.0, 0.0);
        idx.update(3, 180.0, 1.0);
        idx.update(4, -180.0, 1.0);
        idx.update(5, 10.0, 10.0);
        for rebuild in [false, true] {
            if rebuild {
                idx.rebuild();
            }
            assert_eq!(idx.in_bbox([179.0, -1.0, -179.0, 1.0]), vec![0, 1, 3, 4]);
            assert_eq!(idx.in_bbox([-180.0, -1.0, -179.0, 2.0]), vec![1, 3, 4]);
            assert_eq!(idx.in_bbox([179.0, -1.0, 180.0, 2.0]), vec![0, 3, 4]);
            assert_eq!(idx.in_bbox([0.0, 0.0, 10.0, 10.0]), vec![2, 5]);
            assert!(idx.in_bbox([0.0, 5.0, 10.0, 4.0]).is_empty());
            assert!(idx.in_bbox([f64::NAN, 0.0, 1.0, 1.0]).is_empty());
        }
    }

    #[test]
    fn nearest_is_sorted_by_distance_then_key_and_limited() {
        let mut idx = PositionIndex::new();
        idx.update(7, 0.001, 0.0);
        idx.update(3, -0.001, 0.0); // same distance as 7
        idx.update(5, 0.0005, 0.0);
        idx.update(9, 1.0, 0.0);
        let got = idx.nearest(0.0, 0.0, 500.0, 10);
        let keys: Vec<u32> = got.iter().map(|e| e.0).collect();
        assert_eq!(keys, vec![5, 3, 7]);
        assert!((got[0].1 - geodesy::distance_m((0.0, 0.0), (0.0005, 0.0))).abs() < 1e-9);
        assert_eq!(idx.nearest(0.0, 0.0, 500.0, 2).len(), 2);
        assert!(idx.nearest(0.0, 0.0, 500.0, 0).is_empty());
        assert!(idx.nearest(0.0, 0.0, f64::NAN, 5).is_empty());
    }

    #[test]
    fn nearest_finds_devices_across_the_antimeridian_and_near_a_pole() {
        let mut idx = PositionIndex::new();
        idx.update(0, -179.999, 10.0);
        idx.update(1, 120.0, 89.999);
        idx.rebuild();
        assert_eq!(idx.nearest(179.999, 10.0, 1_000.0, 5).len(), 1);
        assert_eq!(idx.nearest(-60.0, 89.999, 1_000.0, 5).len(), 1);
    }
}
