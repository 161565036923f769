//! What the tracker remembers about one device.

use serde::{Deserialize, Serialize};

use crate::eta::SpeedStats;
use crate::reading::{Fix, TimestampMs};
use crate::shipment::Excursion;

/// How many recent `(ts, seq)` pairs are kept to recognise duplicates of readings that are
/// not the latest (a store-and-forward batch sent twice).
pub const RECENT_KEYS: usize = 8;

/// Per-device settings the user may register (a cold room's sensor has a range with no
/// shipment).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceProfile {
    #[serde(default)]
    pub temp_range_c: Option<[f64; 2]>,
    #[serde(default)]
    pub max_speed_kmh: Option<f64>,
}

/// A device's relation to one geofence: kept only while it is inside, or while a transition is
/// pending.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    /// Fence slot in the tenant's `FenceIndex`.
    pub slot: u32,
    /// Confirmed side: inside.
    pub inside: bool,
    /// Whether `geofence.entered` was emitted for this visit. False only for a device whose
    /// first fix was inside, until the confirmation window has held.
    pub announced: bool,
    /// Estimated crossing time of the current visit (inside) or of the pending transition.
    pub crossing_ms: TimestampMs,
    /// First reading on the other side of `inside`, not yet confirmed; for an unannounced visit,
    /// the first reading inside.
    pub pending_since_ms: Option<TimestampMs>,
    /// Crossing time estimated for the pending transition.
    pub pending_crossing_ms: TimestampMs,
    pub dwell_fired: bool,
}

/// Live state of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    pub tenant: u32,
    pub id: String,
    /// Slot of this device inside its tenant (key of the tenant's position index).
    pub local: u32,
    pub profile: DeviceProfile,
    /// Device time of the latest accepted reading.
    pub last_ts_ms: Option<TimestampMs>,
    /// Server time at which the latest reading arrived.
    pub last_received_ms: Option<TimestampMs>,
    /// Latest fix and its device time.
    pub fix: Option<Fix>,
    pub fix_ts_ms: TimestampMs,
    pub temp_c: Option<f64>,
    pub weight_kg: Option<f64>,
    pub battery_pct: Option<f64>,
    /// Weight from which the next load/unload step is measured.
    pub weight_baseline_kg: Option<f64>,
    pub online: bool,
    /// Recent accepted `(ts, seq)` keys, a ring; seq `u64::MAX` stands for none.
    pub recent: [(TimestampMs, u64); RECENT_KEYS],
    pub recent_next: u8,
    pub memberships: Vec<Membership>,
    /// Slots of the tenant's shipments carried by this device.
    pub shipments: Vec<u32>,
    pub speed: SpeedStats,
    /// In an overspeed episode (event fired, speed not yet back under the limit).
    pub overspeeding: bool,
    /// Excursion against the device profile's own range.
    pub excursion: Option<Excursion>,
    /// Deleted through the API; the slot is kept so numbers stay stable.
    pub removed: bool,
    /// Geofences near the latest fix, so most readings skip the R-tree. Derived: not stored.
    #[serde(skip)]
    pub near: NearFences,
}

/// The slots of the fences whose envelopes meet a small box around a recent fix. While the
/// device stays inside the box and the tenant's fences are unchanged, these are a superset of
/// the fences that can contain it: a truck moving 20 m a reading queries the R-tree about once
/// every 20-40 readings instead of every time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NearFences {
    /// The tenant's fence generation the list was built for; 0 = never built.
    pub generation: u64,
    /// `[min_lon, min_lat, max_lon, max_lat]`, degrees.
    pub bbox: [f64; 4],
    pub slots: Vec<u32>,
}

impl NearFences {
    /// Half-size of the box, degrees (~550 m of latitude).
    pub const HALF_DEG: f64 = 0.005;

    /// Whether the list is valid for `(lon, lat)` under fence generation `generation`.
    pub fn covers(&self, generation: u64, lon: f64, lat: f64) -> bool {
        self.generation == generation
            && lon >= self.bbox[0]
            && lon <= self.bbox[2]
            && lat >= self.bbox[1]
            && lat <= self.bbox[3]
    }

    /// The box to query for a fix at `(lon, lat)`, clamped to the valid coordinate range (a
    /// fix near the antimeridian gets a narrower box on that side, and re-queries sooner).
    pub fn box_around(lon: f64, lat: f64) -> [f64; 4] {
        let h = Self::HALF_DEG;
        [
            (lon - h).max(-180.0),
            (lat - h).max(-90.0),
            (lon + h).min(180.0),
            (lat + h).min(90.0),
        ]
    }
}

impl DeviceState {
    pub fn new(tenant: u32, id: String, local: u32) -> Self {
        DeviceState {
            tenant,
            id,
            local,
            profile: DeviceProfile::default(),
            last_ts_ms: None,
            last_received_ms: None,
            fix: None,
            fix_ts_ms: 0,
            temp_c: None,
            weight_kg: None,
            battery_pct: None,
            weight_baseline_kg: None,
            online: false,
            recent: [(i64::MIN, u64::MAX); RECENT_KEYS],
            recent_next: 0,
            memberships: Vec::new(),
            shipments: Vec::new(),
            speed: SpeedStats::default(),
            overspeeding: false,
            excursion: None,
            removed: false,
            near: NearFences::default(),
        }
    }

    /// Whether `(ts, seq)` repeats an accepted reading: same `ts`, and the same `seq` when both
    /// carry one (SPEC clarification: `seq` alone never makes a duplicate).
    pub fn is_duplicate(&self, ts_ms: TimestampMs, seq: Option<u64>) -> bool {
        if self.last_ts_ms.is_none_or(|last| ts_ms > last) {
            // Every remembered key is at or before the latest: the common case, one compare.
            return false;
        }
        let seq = seq.unwrap_or(u64::MAX);
        self.recent
            .iter()
            .any(|&(t, s)| t == ts_ms && (s == u64::MAX || seq == u64::MAX || s == seq))
    }

    pub fn remember(&mut self, ts_ms: TimestampMs, seq: Option<u64>) {
        self.recent[self.recent_next as usize] = (ts_ms, seq.unwrap_or(u64::MAX));
        self.recent_next = ((self.recent_next as usize + 1) % RECENT_KEYS) as u8;
    }

    pub fn membership(&self, slot: u32) -> Option<&Membership> {
        self.memberships.iter().find(|m| m.slot == slot)
    }
}
