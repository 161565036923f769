//! Stops and trips, from a device's position fixes in time order.
//!
//! # Stops
//!
//! A stop is a run of consecutive fixes that all lie within `stop_radius_m` of the run's first
//! fix (its anchor) and that spans at least `min_stop_s`, from the anchor's time to the last
//! fix of the run. This is the classic stay-point rule (Li et al., 2008): starting from a
//! fix, take every following fix while it stays within the radius of it; if they span long
//! enough, that is a stop and the search goes on from the first fix outside it; if not, the
//! search goes on from the next fix. A stop's position is the mean of its fixes.
//!
//! Streaming: the detector holds the current candidate's fixes until either the candidate
//! spans `min_stop_s` (a stop: from then on only running sums are kept) or a fix leaves the
//! radius first (no stop from that anchor: the anchor is released to the current trip and
//! the held fixes are tried again from the next one). So it holds at most the fixes of
//! `min_stop_s`.
//!
//! # Trips
//!
//! A trip is the movement between two stops, or between a stop and the range's start or
//! end: it starts at the last fix of the stop before it (or the range's first fix) and ends
//! at the first fix of the stop after it (or the range's last fix), and is kept when the
//! distance along its fixes is at least `min_trip_m`. Its maximum speed is the highest speed
//! the device reported in it, or, when no fix of it carried a speed, the highest speed
//! between two consecutive fixes.
//!
//! Segments come out in time order: a trip as soon as the stop that ends it is confirmed, a
//! stop once a fix leaves it (or at [`Segmenter::finish`], cut at the range's end).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{OutOfOrder, check_order};
use crate::geodesy;
use crate::reading::TimestampMs;

/// What makes a stop and a trip.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SegmentSettings {
    /// Fixes of a stop stay within this distance of its first fix, metres.
    pub stop_radius_m: f64,
    /// A stop lasts at least this long, seconds.
    pub min_stop_s: f64,
    /// A trip covers at least this distance along its fixes, metres; shorter movements are
    /// left out of the trips (and are no stop either).
    pub min_trip_m: f64,
}

impl Default for SegmentSettings {
    /// SPEC 14's defaults: 100 m, 300 s, 500 m.
    fn default() -> Self {
        SegmentSettings {
            stop_radius_m: 100.0,
            min_stop_s: 300.0,
            min_trip_m: 500.0,
        }
    }
}

/// A stop: the device stayed within the radius from `start_ms` to `end_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stop {
    /// Time of its first fix.
    pub start_ms: TimestampMs,
    /// Time of its last fix (cut at the range's end for a stop still going on there).
    pub end_ms: TimestampMs,
    /// Mean position of its fixes, degrees.
    pub lon: f64,
    pub lat: f64,
    /// Fixes it holds.
    pub fixes: u64,
}

impl Stop {
    pub fn duration_s(&self) -> f64 {
        (self.end_ms - self.start_ms) as f64 / 1000.0
    }
}

/// One end of a trip: a fix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TripEnd {
    pub ts_ms: TimestampMs,
    pub lon: f64,
    pub lat: f64,
}

/// A trip: the movement from `start` to `end`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Trip {
    pub start: TripEnd,
    pub end: TripEnd,
    /// Distance along its fixes, metres (geodesic, fix to fix).
    pub distance_m: f64,
    /// The highest speed reported in it, else the highest over half a minute of it, km/h;
    /// `None` only for a trip of no duration.
    pub max_speed_kmh: Option<f64>,
}

impl Trip {
    pub fn duration_s(&self) -> f64 {
        (self.end.ts_ms - self.start.ts_ms) as f64 / 1000.0
    }

    /// Distance over duration, km/h; `None` for a trip of no duration.
    pub fn avg_speed_kmh(&self) -> Option<f64> {
        let d = self.duration_s();
        (d > 0.0).then(|| self.distance_m / d * 3.6)
    }
}

/// A stop or a trip, as [`Segmenter`] decides them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Segment {
    Stop(Stop),
    Trip(Trip),
}

/// A fix as the detector keeps it: with the distance along the track up to it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pt {
    ts_ms: TimestampMs,
    lon: f64,
    lat: f64,
    speed_kmh: Option<f64>,
    /// Distance along every fix fed so far, from the first, metres.
    along_m: f64,
}

impl Pt {
    fn lonlat(&self) -> (f64, f64) {
        (self.lon, self.lat)
    }

    fn end(&self) -> TripEnd {
        TripEnd {
            ts_ms: self.ts_ms,
            lon: self.lon,
            lat: self.lat,
        }
    }
}

/// A confirmed stop, as running sums.
#[derive(Debug, Clone, Copy)]
struct StopAcc {
    anchor: Pt,
    last: Pt,
    /// Sums of the offsets from the anchor (so the mean does not break at the antimeridian).
    sum_dlon: f64,
    sum_dlat: f64,
    fixes: u64,
}

impl StopAcc {
    fn add(&mut self, p: Pt) {
        self.sum_dlon += geodesy::wrap_lon(p.lon - self.anchor.lon);
        self.sum_dlat += p.lat - self.anchor.lat;
        self.fixes += 1;
        self.last = p;
    }

    fn stop(&self) -> Stop {
        let n = self.fixes as f64;
        Stop {
            start_ms: self.anchor.ts_ms,
            end_ms: self.last.ts_ms,
            lon: geodesy::wrap_lon(self.anchor.lon + self.sum_dlon / n),
            lat: self.anchor.lat + self.sum_dlat / n,
            fixes: self.fixes,
        }
    }
}

/// Computed speeds are measured over at least this long, seconds: between fixes a second
/// apart, a GPS jump of 100 m reads as 360 km/h; over half a minute it adds 12 km/h.
const SPEED_SPAN_S: f64 = 30.0;

/// The trip being built: its start, its last fix so far and its speeds.
#[derive(Debug, Clone)]
struct TripAcc {
    start: Pt,
    last: Pt,
    max_reported_kmh: Option<f64>,
    /// The highest speed over [`SPEED_SPAN_S`] so far.
    max_between_kmh: Option<f64>,
    /// `(ts_ms, along_m)` of the trip's recent fixes: the first is the latest one at least
    /// [`SPEED_SPAN_S`] before the last (so it holds half a minute of fixes at most).
    recent: VecDeque<(TimestampMs, f64)>,
}

impl TripAcc {
    fn new(start: Pt) -> Self {
        TripAcc {
            start,
            last: start,
            max_reported_kmh: None,
            max_between_kmh: None,
            recent: VecDeque::from([(start.ts_ms, start.along_m)]),
        }
    }

    /// Adds a fix after `last` to the trip.
    fn extend(&mut self, p: Pt) {
        let span_ms = (SPEED_SPAN_S * 1000.0) as i64;
        self.recent.push_back((p.ts_ms, p.along_m));
        while self.recent.len() > 2 && p.ts_ms - self.recent[1].0 >= span_ms {
            self.recent.pop_front();
        }
        let (t0, a0) = self.recent[0];
        if p.ts_ms - t0 >= span_ms {
            let v = (p.along_m - a0) / ((p.ts_ms - t0) as f64 / 1000.0) * 3.6;
            self.max_between_kmh = Some(self.max_between_kmh.map_or(v, |m| m.max(v)));
        }
        if let Some(v) = p.speed_kmh.filter(|v| v.is_finite()) {
            self.max_reported_kmh = Some(self.max_reported_kmh.map_or(v, |m| m.max(v)));
        }
        self.last = p;
    }

    fn trip(&self) -> Trip {
        let t = Trip {
            start: self.start.end(),
            end: self.last.end(),
            distance_m: self.last.along_m - self.start.along_m,
            max_speed_kmh: None,
        };
        Trip {
            // a trip shorter than the span: its mean speed
            max_speed_kmh: self
                .max_reported_kmh
                .or(self.max_between_kmh)
                .or_else(|| t.avg_speed_kmh()),
            ..t
        }
    }
}

#[derive(Debug, Clone)]
enum State {
    /// Looking for a stop: `0` holds the candidate's anchor and the fixes after it, all within
    /// the radius of the anchor, spanning less than `min_stop_s`.
    Searching(VecDeque<Pt>),
    /// In a confirmed stop.
    InStop(StopAcc),
}

/// Splits a device's fixes into stops and trips (see the module docs). Feed fixes in time
/// order with [`Segmenter::push`], then call [`Segmenter::finish`].
#[derive(Debug, Clone)]
pub struct Segmenter {
    settings: SegmentSettings,
    min_stop_ms: i64,
    /// The last fix fed (for order, duplicates and the distance along).
    last: Option<Pt>,
    state: State,
    /// The trip since the last stop (or the range's start); `None` before the first fix and
    /// while in a stop.
    trip: Option<TripAcc>,
    /// Fixes to process, oldest first (the held fixes being tried again).
    queue: VecDeque<Pt>,
}

impl Segmenter {
    pub fn new(settings: SegmentSettings) -> Self {
        Segmenter {
            settings,
            min_stop_ms: (settings.min_stop_s * 1000.0).ceil() as i64,
            last: None,
            state: State::Searching(VecDeque::new()),
            trip: None,
            queue: VecDeque::new(),
        }
    }

    /// Feeds one fix: `(lon, lat)` degrees at `ts_ms`, with the speed the device reported
    /// (km/h), if any. Stops and trips decided by it are appended to `out`. A fix at the same
    /// time as the previous one is ignored; an older one is refused.
    pub fn push(
        &mut self,
        ts_ms: TimestampMs,
        lon: f64,
        lat: f64,
        speed_kmh: Option<f64>,
        out: &mut Vec<Segment>,
    ) -> Result<(), OutOfOrder> {
        if !check_order(self.last.map(|p| p.ts_ms), ts_ms)? {
            return Ok(());
        }
        let along_m = match self.last {
            Some(prev) => prev.along_m + geodesy::distance_m(prev.lonlat(), (lon, lat)),
            None => 0.0,
        };
        let p = Pt {
            ts_ms,
            lon,
            lat,
            speed_kmh,
            along_m,
        };
        self.last = Some(p);
        self.queue.push_back(p);
        while let Some(p) = self.queue.pop_front() {
            self.step(p, out);
        }
        Ok(())
    }

    /// Whether `p` is within the stop radius of `anchor` (geodesic). The flat-earth distance
    /// decides when it is clearly in or out (it is within 1e-3 of the geodesic one under
    /// 50 km, see [`geodesy::fast_distance_m`]); a near tie, or anything far, is measured
    /// on the ellipsoid. Same answers, a fiftieth of the cost for most fixes.
    fn within(&self, anchor: &Pt, p: &Pt) -> bool {
        let r = self.settings.stop_radius_m;
        let flat = geodesy::fast_distance_m(anchor.lonlat(), p.lonlat());
        if flat < 50_000.0 {
            if flat < r * 0.99 {
                return true;
            }
            if flat > r * 1.01 {
                return false;
            }
        }
        geodesy::distance_m(anchor.lonlat(), p.lonlat()) <= r
    }

    fn step(&mut self, p: Pt, out: &mut Vec<Segment>) {
        let state = std::mem::replace(&mut self.state, State::Searching(VecDeque::new()));
        self.state = match state {
            State::InStop(mut acc) => {
                if self.within(&acc.anchor, &p) {
                    acc.add(p);
                    State::InStop(acc)
                } else {
                    out.push(Segment::Stop(acc.stop()));
                    // The trip starts where the stop ended; `p` is its first step and the
                    // next candidate's anchor (`release` adds a fix only once).
                    let mut trip = TripAcc::new(acc.last);
                    trip.extend(p);
                    self.trip = Some(trip);
                    State::Searching(VecDeque::from([p]))
                }
            }
            State::Searching(mut held) => {
                let Some(anchor) = held.front().copied() else {
                    if self.trip.is_none() {
                        self.trip = Some(TripAcc::new(p));
                    }
                    held.push_back(p);
                    self.state = State::Searching(held);
                    return;
                };
                if self.within(&anchor, &p) {
                    held.push_back(p);
                    if p.ts_ms - anchor.ts_ms < self.min_stop_ms {
                        State::Searching(held)
                    } else {
                        // A stop from `anchor`: the trip before it ends there.
                        self.release(anchor);
                        if let Some(trip) = self.trip.take() {
                            self.emit_trip(trip, out);
                        }
                        let mut acc = StopAcc {
                            anchor,
                            last: anchor,
                            sum_dlon: 0.0,
                            sum_dlat: 0.0,
                            fixes: 0,
                        };
                        for q in held {
                            acc.add(q);
                        }
                        State::InStop(acc)
                    }
                } else {
                    // No stop from this anchor: it is movement. The fixes after it, then
                    // `p`, are tried again ahead of anything else.
                    held.pop_front();
                    held.push_back(p);
                    while let Some(q) = held.pop_back() {
                        self.queue.push_front(q);
                    }
                    self.release(anchor);
                    State::Searching(held)
                }
            }
        };
    }

    /// Adds a fix that belongs to no stop to the current trip.
    fn release(&mut self, p: Pt) {
        match &mut self.trip {
            Some(t) if t.last.ts_ms < p.ts_ms => t.extend(p),
            Some(_) => {}
            None => self.trip = Some(TripAcc::new(p)),
        }
    }

    fn emit_trip(&self, trip: TripAcc, out: &mut Vec<Segment>) {
        let t = trip.trip();
        if t.distance_m >= self.settings.min_trip_m {
            out.push(Segment::Trip(t));
        }
    }

    /// Ends the range: a stop still going on is cut at the last fix; the trip since the
    /// last stop ends at the last fix.
    pub fn finish(mut self, out: &mut Vec<Segment>) {
        match std::mem::replace(&mut self.state, State::Searching(VecDeque::new())) {
            State::InStop(acc) => out.push(Segment::Stop(acc.stop())),
            State::Searching(held) => {
                for p in held {
                    self.release(p);
                }
                if let Some(trip) = self.trip.take() {
                    self.emit_trip(trip, out);
                }
            }
        }
    }
}

/// Every stop and trip of `fixes` (`(ts_ms, lon, lat, speed_kmh)`, in time order): the
/// detector over a whole slice, for tests and small inputs.
pub fn segments_of(
    settings: SegmentSettings,
    fixes: impl IntoIterator<Item = (TimestampMs, f64, f64, Option<f64>)>,
) -> Result<Vec<Segment>, OutOfOrder> {
    let mut s = Segmenter::new(settings);
    let mut out = Vec::new();
    for (ts, lon, lat, v) in fixes {
        s.push(ts, lon, lat, v, &mut out)?;
    }
    s.finish(&mut out);
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests;
