//! What a tenant's ETA model has learned from its own history: travel pace and stop time per
//! map cell, the errors of its past ETAs per trip-progress bucket, and how much to trust the
//! learned route times against the plain estimate (see `docs/eta.md`).
//!
//! Pure and deterministic: it is fed every fix as it is applied (`learn`) and every arrival
//! (`record_arrival`), keeps no clock, and is part of the tracker's snapshot, so a restored
//! tracker gives the same ETAs.
//!
//! Cells are ~500 m squares (latitude bands of [`CELL_DEG`], longitude steps widened by
//! 1/cos(latitude)). A cell keeps the time and distance of moving samples (pace, s/m, is
//! their ratio: the harmonic mean of speed, which is what travel time needs), the time spent
//! stopped in it and the number of visits, all decayed by half once a cell has seen
//! [`MAX_VISITS`] visits so that it follows change.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::geodesy;
use crate::reading::{Fix, TimestampMs};

/// Cell height, degrees of latitude (~500 m).
pub const CELL_DEG: f64 = 0.0045;
/// Samples at or above this speed (m/s) are travel; below, a stop.
const MOVING_MPS: f64 = 1.0;
/// A gap longer than this between two fixes teaches nothing (ms).
const MAX_GAP_MS: i64 = 10 * 60_000;
/// One visit's stop time counts at most this much (s): a vessel anchored for a day must not
/// make everyone passing expect a day's stop.
const MAX_STOP_PER_VISIT_S: f64 = 30.0 * 60.0;
/// Once a cell has seen this many visits its sums are halved (recency).
const MAX_VISITS: f64 = 64.0;
/// Cells a tenant learns at most; past it, known cells keep learning, new ones are ignored.
pub const MAX_CELLS: usize = 200_000;
/// Progress buckets of the calibration (quarters of the trip).
pub const BUCKETS: usize = 4;
/// Residuals kept per bucket (the most recent).
const MAX_RESIDUALS: usize = 400;

/// Learned figures of one cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CellStats {
    /// Time spent moving in the cell, seconds.
    pub moving_s: f64,
    /// Distance covered moving in the cell, metres.
    pub moving_m: f64,
    /// Time spent stopped in the cell, seconds (each visit capped).
    pub stop_s: f64,
    /// Visits (a device entering the cell).
    pub visits: f64,
}

/// Where each device was, to count visits and cap a visit's stop time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct DeviceTrace {
    cell: u64,
    visit_stop_s: f64,
}

/// A tenant's learned ETA state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EtaHistory {
    /// Per cell key ([`cell_key`]); serialized sorted, so snapshots are deterministic.
    #[serde(with = "sorted_map")]
    cells: HashMap<u64, CellStats>,
    /// Per tenant-local device slot.
    #[serde(with = "sorted_map")]
    traces: HashMap<u32, DeviceTrace>,
    /// ln(real time to go / raw estimate) of past ETAs, per progress bucket, oldest first.
    residuals: [VecDeque<f64>; BUCKETS],
    /// The fit of the weight of the learned estimate against the plain one
    /// (see [`EtaHistory::learned_weight`]; absent from older snapshots).
    #[serde(default)]
    blend: BlendFit,
}

/// How well each candidate weight of the learned estimate ([`BLEND_WEIGHTS`]) would have
/// done on the tenant's past arrivals: the decayed sum of `|ln(real / blend)|` per candidate
/// (absolute, not squared, so a trip that stopped for hours does not outweigh the rest).
/// Decayed by [`BLEND_DECAY`] per trip so it follows change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct BlendFit {
    abs_err: [f64; BLEND_WEIGHTS.len()],
}

/// Candidate weights of the learned estimate against the plain one.
const BLEND_WEIGHTS: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];
/// Per arrival, the blending fit's old sums weigh this much (about the last 200 trips count).
const BLEND_DECAY: f64 = 0.995;
/// Weight of the learned estimate with no history (and on ties).
const BLEND_PRIOR_W: f64 = 0.5;

/// Quantiles of ln(real / raw estimate): the 10th, 50th and 90th percentile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub q10: f64,
    pub q50: f64,
    pub q90: f64,
}

/// With no history: an honest guess of the spread of a naive ETA (from the evaluation's
/// tuning part): the real time to go between 0.6x and 1.8x the estimate 80 % of the time.
pub const PRIOR: Calibration = Calibration {
    q10: -0.51, // ln 0.6
    q50: 0.0,
    q90: 0.59, // ln 1.8
};
/// Weight of the prior, in residuals.
const PRIOR_WEIGHT: f64 = 20.0;

/// The key of the cell holding `(lon, lat)`.
pub fn cell_key(lon: f64, lat: f64) -> u64 {
    let row = ((lat + 90.0) / CELL_DEG).floor().clamp(0.0, 65_535.0);
    let band_lat = (row + 0.5) * CELL_DEG - 90.0;
    let step = CELL_DEG / band_lat.to_radians().cos().max(0.01);
    let col = ((geodesy::wrap_lon(lon) + 180.0) / step).floor().max(0.0);
    ((row as u64) << 32) | (col as u64 & 0xFFFF_FFFF)
}

impl EtaHistory {
    /// Learns from a fix of tenant-local device `local` at `ts`, given its previous fix.
    pub fn learn(
        &mut self,
        local: u32,
        prev: Option<(Fix, TimestampMs)>,
        fix: &Fix,
        ts: TimestampMs,
    ) {
        if !(fix.lon.is_finite() && fix.lat.is_finite()) {
            return;
        }
        let here = cell_key(fix.lon, fix.lat);
        let room = self.cells.len() < MAX_CELLS;
        let trace = self.traces.entry(local).or_default();
        let new_visit = trace.cell != here;
        if new_visit {
            trace.cell = here;
            trace.visit_stop_s = 0.0;
        }
        if let Some((p, pts)) = prev {
            let dt_ms = ts - pts;
            if dt_ms > 0 && dt_ms <= MAX_GAP_MS {
                let dt = dt_ms as f64 / 1000.0;
                let d = geodesy::distance_m((p.lon, p.lat), (fix.lon, fix.lat));
                let mid = cell_key((p.lon + fix.lon) / 2.0, (p.lat + fix.lat) / 2.0);
                if d / dt >= MOVING_MPS {
                    if let Some(c) = cell_mut(&mut self.cells, mid, room) {
                        c.moving_s += dt;
                        c.moving_m += d;
                    }
                } else {
                    let add = dt.min(MAX_STOP_PER_VISIT_S - trace.visit_stop_s).max(0.0);
                    trace.visit_stop_s += add;
                    if let Some(c) = cell_mut(&mut self.cells, here, room) {
                        c.stop_s += add;
                    }
                }
            }
        }
        if new_visit && let Some(c) = cell_mut(&mut self.cells, here, room) {
            c.visits += 1.0;
            if c.visits > MAX_VISITS {
                c.moving_s /= 2.0;
                c.moving_m /= 2.0;
                c.stop_s /= 2.0;
                c.visits /= 2.0;
            }
        }
    }

    /// Forgets a removed device's trace.
    pub fn forget_device(&mut self, local: u32) {
        self.traces.remove(&local);
    }

    /// Cells learned so far.
    pub fn cells(&self) -> usize {
        self.cells.len()
    }

    /// What was learned of the cell at `(lon, lat)`, if it has seen travel.
    pub fn cell(&self, lon: f64, lat: f64) -> Option<LearnedCell> {
        let c = self.cells.get(&cell_key(lon, lat))?;
        if c.moving_m <= 0.0 {
            return None;
        }
        Some(LearnedCell {
            pace_s_per_m: c.moving_s / c.moving_m,
            weight: c.moving_m / (c.moving_m + CELL_PRIOR_M),
            stop_s: if c.visits >= 3.0 {
                c.stop_s / c.visits
            } else {
                0.0
            },
        })
    }

    /// Records how a trip's past ETAs fared: `samples` are (time asked, raw seconds to go)
    /// per progress bucket, `arrived_ms` the real arrival.
    pub fn record_arrival(
        &mut self,
        samples: &[Option<(TimestampMs, f64)>; BUCKETS],
        parts: &[Option<(f64, f64)>; BUCKETS],
        arrived_ms: TimestampMs,
    ) {
        let mut decayed = false;
        for (b, s) in samples.iter().enumerate() {
            let Some((at, raw_s)) = *s else { continue };
            let real_s = (arrived_ms - at) as f64 / 1000.0;
            if raw_s < 1.0 || real_s < 1.0 {
                continue;
            }
            if let Some((learned_s, plain_s)) = parts[b]
                && learned_s >= 1.0
                && plain_s >= 1.0
            {
                if !decayed {
                    for e in &mut self.blend.abs_err {
                        *e *= BLEND_DECAY;
                    }
                    decayed = true;
                }
                let (y, a, p) = (real_s.ln(), learned_s.ln(), plain_s.ln());
                for (e, w) in self.blend.abs_err.iter_mut().zip(BLEND_WEIGHTS) {
                    *e += (y - (w * a + (1.0 - w) * p)).abs().min(3.0);
                }
            }
            let r = (real_s / raw_s).ln().clamp(-3.0, 3.0);
            let q = &mut self.residuals[b];
            if q.len() == MAX_RESIDUALS {
                q.pop_front();
            }
            q.push_back(r);
        }
    }

    /// Weight of the learned estimate against the plain one (remaining distance at the speed
    /// to plan with) in the raw time to go, in [0, 1]: of 0, 1/4, 1/2, 3/4 and 1, the one
    /// whose blend would have erred least (mean absolute log error) on this tenant's past
    /// arrivals; 1/2 with none. Where the learned route times have helped it
    /// grows, where they have misled it shrinks.
    pub fn learned_weight(&self) -> f64 {
        let mut best = (f64::INFINITY, BLEND_PRIOR_W);
        for (e, w) in self.blend.abs_err.iter().zip(BLEND_WEIGHTS) {
            // Ties (no history) go to the prior, in the middle.
            let closer = (w - BLEND_PRIOR_W).abs() < (best.1 - BLEND_PRIOR_W).abs();
            if *e < best.0 - 1e-9 || ((*e - best.0).abs() <= 1e-9 && closer) {
                best = (*e, w);
            }
        }
        best.1
    }

    /// Calibration for progress bucket `b`: split-conformal quantiles of the bucket's past
    /// residuals, blended with [`PRIOR`] while they are few.
    pub fn calibration(&self, b: usize) -> Calibration {
        let q = &self.residuals[b.min(BUCKETS - 1)];
        let n = q.len();
        if n == 0 {
            return PRIOR;
        }
        let mut v: Vec<f64> = q.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        // Finite-sample (conformal) ranks: ceil((n + 1) q) - 1, clamped.
        let at = |p: f64| {
            let k = (((n + 1) as f64 * p).ceil() as usize).clamp(1, n) - 1;
            v[k]
        };
        let w = n as f64 / (n as f64 + PRIOR_WEIGHT);
        let mix = |e: f64, p: f64| w * e + (1.0 - w) * p;
        let q10 = mix(at(0.075), PRIOR.q10);
        let q50 = mix(at(0.5), PRIOR.q50);
        let q90 = mix(at(0.925), PRIOR.q90);
        Calibration {
            q10: q10.min(q50),
            q50,
            q90: q90.max(q50),
        }
    }
}

fn cell_mut(cells: &mut HashMap<u64, CellStats>, key: u64, room: bool) -> Option<&mut CellStats> {
    if room {
        Some(cells.entry(key).or_default())
    } else {
        cells.get_mut(&key)
    }
}

/// A cell's learned figures, as the model uses them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnedCell {
    /// Seconds per metre of travel through the cell.
    pub pace_s_per_m: f64,
    /// How far to trust `pace_s_per_m`, in [0, 1): travel seen / (travel seen + 1 km).
    pub weight: f64,
    /// Stop time expected on a visit, seconds.
    pub stop_s: f64,
}

/// Travel (m) through a cell that weighs as much as the device's own speed.
const CELL_PRIOR_M: f64 = 1_000.0;

/// Progress bucket of a trip `fraction` done, in [0, 1].
pub fn bucket(fraction: f64) -> usize {
    ((fraction.clamp(0.0, 1.0) * BUCKETS as f64) as usize).min(BUCKETS - 1)
}

/// Serializes a `HashMap` as a list of pairs sorted by key, so equal maps give equal bytes.
mod sorted_map {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K, V, S>(m: &HashMap<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize + Ord,
        V: Serialize,
        S: Serializer,
    {
        let mut v: Vec<(&K, &V)> = m.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.serialize(s)
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(lon: f64, lat: f64) -> Fix {
        Fix {
            lat,
            lon,
            speed_kmh: None,
            heading_deg: None,
            accuracy_m: None,
        }
    }

    #[test]
    fn neighbouring_cells_are_about_500_m_apart() {
        let a = cell_key(10.0, 50.0);
        assert_eq!(a, cell_key(10.0001, 50.0001));
        assert_ne!(a, cell_key(10.01, 50.0));
        assert_ne!(a, cell_key(10.0, 50.005));
    }

    #[test]
    fn a_cell_learns_the_pace_of_travel_through_it() {
        let mut h = EtaHistory::default();
        // 10 m/s eastwards, a fix every 10 s, many times over.
        for _ in 0..20 {
            let mut prev = None;
            for i in 0..200 {
                let f = fix(10.0 + i as f64 * 0.0014, 50.0);
                h.learn(0, prev, &f, i * 10_000);
                prev = Some((f, i * 10_000));
            }
        }
        let c = h.cell(10.1, 50.0).unwrap();
        assert!((c.pace_s_per_m - 0.1).abs() < 0.01, "{c:?}");
        assert!(c.weight > 0.9, "{c:?}");
        assert_eq!(c.stop_s, 0.0);
    }

    #[test]
    fn calibration_starts_at_the_prior_and_follows_the_residuals() {
        let mut h = EtaHistory::default();
        assert_eq!(h.calibration(1), PRIOR);
        for i in 0..400 {
            let mut s = [None; BUCKETS];
            s[1] = Some((0, 1000.0));
            // Real times to go between 1000 and 1399 s.
            h.record_arrival(&s, &[None; BUCKETS], 1_000_000 + (i % 400) * 1000);
        }
        let c = h.calibration(1);
        assert!(c.q10 < c.q50 && c.q50 < c.q90, "{c:?}");
        assert!((c.q50 - 1.2f64.ln()).abs() < 0.05, "{c:?}");
        assert_eq!(h.calibration(0), PRIOR);
    }

    #[test]
    fn the_blending_weight_follows_whichever_estimate_was_right() {
        let fresh = EtaHistory::default();
        assert_eq!(fresh.learned_weight(), BLEND_PRIOR_W);
        // Trips that arrived when the learned route times said (1,000 s) while the plain
        // estimate said 2,000 s, and the other way round.
        let trips = |real_s: f64| {
            let mut h = EtaHistory::default();
            for _ in 0..30 {
                let mut s = [None; BUCKETS];
                let mut p = [None; BUCKETS];
                s[1] = Some((0, 1_400.0));
                p[1] = Some((1_000.0, 2_000.0));
                h.record_arrival(&s, &p, (real_s * 1000.0) as i64);
            }
            h.learned_weight()
        };
        assert!(trips(1_000.0) > 0.95, "{}", trips(1_000.0));
        assert!(trips(2_000.0) < 0.05, "{}", trips(2_000.0));
        // Halfway (geometrically): half.
        let mid = trips((1_000.0f64 * 2_000.0).sqrt());
        assert!((mid - 0.5).abs() < 0.01, "{mid}");
    }

    #[test]
    fn one_trip_that_stopped_for_hours_does_not_flip_the_blending_weight() {
        let mut h = EtaHistory::default();
        let mut s = [None; BUCKETS];
        let mut p = [None; BUCKETS];
        s[2] = Some((0, 1_400.0));
        p[2] = Some((1_000.0, 2_000.0));
        for _ in 0..20 {
            h.record_arrival(&s, &p, 1_000_000);
        }
        // Arrived after 10 hours instead of 1,000 s: the plain estimate was "less wrong".
        h.record_arrival(&s, &p, 36_000_000);
        assert_eq!(h.learned_weight(), 1.0);
    }

    #[test]
    fn histories_of_older_builds_restore_with_the_prior_weight() {
        let old = r#"{"cells": [], "traces": [], "residuals": [[], [0.1], [], []]}"#;
        let h: EtaHistory = serde_json::from_str(old).unwrap();
        assert_eq!(h.learned_weight(), BLEND_PRIOR_W);
    }

    #[test]
    fn serialization_is_sorted_and_round_trips() {
        let mut h = EtaHistory::default();
        let mut prev = None;
        for i in 0..50 {
            let f = fix(10.0 + i as f64 * 0.003, 50.0 + i as f64 * 0.001);
            h.learn(i as u32 % 3, prev, &f, i * 30_000);
            prev = Some((f, i * 30_000));
        }
        // Arrivals that moved the blending weight off its prior.
        let mut s = [None; BUCKETS];
        let mut p = [None; BUCKETS];
        s[0] = Some((0, 1_000.0));
        p[0] = Some((900.0, 3_000.0));
        for _ in 0..5 {
            h.record_arrival(&s, &p, 950_000);
        }
        assert_eq!(h.learned_weight(), 1.0);
        let a = serde_json::to_string(&h).unwrap();
        let back: EtaHistory = serde_json::from_str(&a).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.learned_weight(), 1.0);
        assert_eq!(serde_json::to_string(&back).unwrap(), a);
    }
}
