//! Spatial index of live device positions: bounding-box and nearest-within-radius queries.
// CONTRACT (filled in by the geometry work): see the docs.

/// Latest position per key (a device slot). `update` is O(1) amortised on the hot path;
/// the R-tree is rebuilt in bulk by `maintain`, and queries stay exact in between by also
/// scanning the keys moved since the last rebuild.
#[derive(Debug, Clone, Default)]
pub struct PositionIndex {}

impl PositionIndex {
    pub fn new() -> Self {
        PositionIndex {}
    }

    /// Records the latest position of `key`.
    pub fn update(&mut self, key: u32, lon: f64, lat: f64) {
        let _ = (key, lon, lat);
        todo!()
    }

    pub fn remove(&mut self, key: u32) {
        let _ = key;
        todo!()
    }

    pub fn get(&self, key: u32) -> Option<(f64, f64)> {
        let _ = key;
        todo!()
    }

    /// Rebuilds the R-tree in bulk if enough keys moved since the last rebuild.
    pub fn maintain(&mut self) {
        todo!()
    }

    /// Keys inside `[min_lon, min_lat, max_lon, max_lat]` (edges inclusive); when
    /// `min_lon > max_lon` the box crosses the antimeridian.
    pub fn in_bbox(&self, bbox: [f64; 4]) -> Vec<u32> {
        let _ = bbox;
        todo!()
    }

    /// Up to `limit` keys within `radius_m` (geodesic) of `(lon, lat)`, nearest first, with
    /// their distances in metres.
    pub fn nearest(&self, lon: f64, lat: f64, radius_m: f64, limit: usize) -> Vec<(u32, f64)> {
        let _ = (lon, lat, radius_m, limit);
        todo!()
    }

    pub fn len(&self) -> usize {
        0
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
