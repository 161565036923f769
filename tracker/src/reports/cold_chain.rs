//! A shipment's cold-chain record over a time range: temperature summary, excursions, gaps
//! without readings, and the verdict.
//!
//! - **Summary**: minimum, maximum and mean of the temperature readings, and the share of the
//!   covered time the temperature was in the allowed range. Each reading holds until the next
//!   one (sample and hold); the time between two readings further apart than the gap limit is
//!   not covered: nobody knows what the temperature was then.
//! - **Excursion**: a run of readings outside `[min, max]` (bounds included in the range),
//!   from the first such reading to the first reading back inside (or still going on at the
//!   range's end), with its peak, the reading farthest outside.
//! - **Gap**: more than `gap_ms` without a reading that counts: between two of them, from the
//!   range's start to the first, or from the last to the range's end. With a temperature
//!   range, only readings with a temperature count (a position is not a temperature: an
//!   absent reading is not a reading in range); without one, every reading counts.
//! - **Verdict**: `excursion` when there is one; else `incomplete` when there is a gap (or,
//!   with a range, no temperature at all); else `compliant`.

use serde::{Deserialize, Serialize};

use super::{OutOfOrder, check_order};
use crate::reading::TimestampMs;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ColdChainSettings {
    /// Allowed temperature `[min, max]`, degrees Celsius; `None` = no cold chain (gaps only).
    pub range_c: Option<[f64; 2]>,
    /// Longer than this without a reading is a gap, milliseconds.
    pub gap_ms: i64,
}

/// Temperature figures over the range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TempSummary {
    pub readings: u64,
    pub min_c: f64,
    pub max_c: f64,
    pub mean_c: f64,
    /// Time covered by readings (see the module docs), seconds.
    pub covered_s: f64,
    /// Share of `covered_s` in range, percent; `None` without a range or with nothing covered.
    pub time_in_range_pct: Option<f64>,
}

/// An out-of-range episode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Excursion {
    /// Time of the first reading outside the range.
    pub begin_ms: TimestampMs,
    /// Time of the first reading back inside; `None` when still outside at the range's end.
    pub end_ms: Option<TimestampMs>,
    /// Time of its last reading outside (the end of an open episode as far as known).
    pub last_out_ms: TimestampMs,
    /// The reading farthest outside the range, degrees Celsius.
    pub peak_c: f64,
}

impl Excursion {
    /// From begin to end (or to its last reading outside, while open), seconds.
    pub fn duration_s(&self) -> f64 {
        (self.end_ms.unwrap_or(self.last_out_ms) - self.begin_ms) as f64 / 1000.0
    }
}

/// Longer than the gap limit without a reading that counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
}

impl Gap {
    pub fn duration_s(&self) -> f64 {
        (self.to_ms - self.from_ms) as f64 / 1000.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Compliant,
    Excursion,
    Incomplete,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Compliant => "compliant",
            Verdict::Excursion => "excursion",
            Verdict::Incomplete => "incomplete",
        }
    }
}

/// What [`ColdChain::finish`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdChainRecord {
    /// `None` when no reading had a temperature.
    pub temperature: Option<TempSummary>,
    pub excursions: Vec<Excursion>,
    pub gaps: Vec<Gap>,
    pub verdict: Verdict,
}

impl ColdChainRecord {
    /// The record of a shipment with no range to cover yet (not under way): nothing
    /// recorded, so `incomplete`.
    pub fn nothing_recorded() -> Self {
        ColdChainRecord {
            temperature: None,
            excursions: Vec::new(),
            gaps: Vec::new(),
            verdict: Verdict::Incomplete,
        }
    }
}

/// The running record (see the module docs). Feed every reading of the range in time order
/// with [`ColdChain::push`], then [`ColdChain::finish`].
#[derive(Debug, Clone)]
pub struct ColdChain {
    settings: ColdChainSettings,
    from_ms: TimestampMs,
    to_ms: TimestampMs,
    /// Time of the last reading fed (order and duplicates).
    last_ms: Option<TimestampMs>,
    /// Time of the last reading that counts for gaps.
    last_counted_ms: Option<TimestampMs>,
    /// The last temperature and its time (sample and hold).
    last_temp: Option<(TimestampMs, f64)>,
    readings: u64,
    min_c: f64,
    max_c: f64,
    sum_c: f64,
    covered_ms: i64,
    in_range_ms: i64,
    open: Option<Excursion>,
    excursions: Vec<Excursion>,
    gaps: Vec<Gap>,
}

impl ColdChain {
    /// A record of `[from_ms, to_ms]`.
    pub fn new(settings: ColdChainSettings, from_ms: TimestampMs, to_ms: TimestampMs) -> Self {
        ColdChain {
            settings,
            from_ms,
            to_ms,
            last_ms: None,
            last_counted_ms: None,
            last_temp: None,
            readings: 0,
            min_c: f64::INFINITY,
            max_c: f64::NEG_INFINITY,
            sum_c: 0.0,
            covered_ms: 0,
            in_range_ms: 0,
            open: None,
            excursions: Vec::new(),
            gaps: Vec::new(),
        }
    }

    fn in_range(&self, t: f64) -> bool {
        match self.settings.range_c {
            Some([lo, hi]) => lo <= t && t <= hi,
            None => true,
        }
    }

    /// Feeds one reading at `ts_ms`, with its temperature if it has one. A reading at the
    /// time of the one before is ignored (a duplicate); an older one is refused.
    pub fn push(&mut self, ts_ms: TimestampMs, temp_c: Option<f64>) -> Result<(), OutOfOrder> {
        if !check_order(self.last_ms, ts_ms)? {
            return Ok(());
        }
        self.last_ms = Some(ts_ms);
        let temp_c = temp_c.filter(|t| t.is_finite());
        let counts = self.settings.range_c.is_none() || temp_c.is_some();
        if counts {
            let since = self.last_counted_ms.unwrap_or(self.from_ms);
            if ts_ms - since > self.settings.gap_ms {
                self.gaps.push(Gap {
                    from_ms: since,
                    to_ms: ts_ms,
                });
            }
            self.last_counted_ms = Some(ts_ms);
        }
        let Some(t) = temp_c else {
            return Ok(());
        };
        self.readings += 1;
        self.min_c = self.min_c.min(t);
        self.max_c = self.max_c.max(t);
        self.sum_c += t;
        if let Some((prev_ms, prev_t)) = self.last_temp {
            let dt = ts_ms - prev_ms;
            if dt <= self.settings.gap_ms {
                self.covered_ms += dt;
                if self.in_range(prev_t) {
                    self.in_range_ms += dt;
                }
            }
        }
        self.last_temp = Some((ts_ms, t));
        if let Some([lo, hi]) = self.settings.range_c {
            let inside = lo <= t && t <= hi;
            match (&mut self.open, inside) {
                (Some(e), true) => {
                    e.end_ms = Some(ts_ms);
                    self.excursions.push(*e);
                    self.open = None;
                }
                (Some(e), false) => {
                    e.last_out_ms = ts_ms;
                    if outside_by(t, lo, hi) > outside_by(e.peak_c, lo, hi) {
                        e.peak_c = t;
                    }
                }
                (None, false) => {
                    self.open = Some(Excursion {
                        begin_ms: ts_ms,
                        end_ms: None,
                        last_out_ms: ts_ms,
                        peak_c: t,
                    })
                }
                (None, true) => {}
            }
        }
        Ok(())
    }

    /// Ends the range and returns the record.
    pub fn finish(mut self) -> ColdChainRecord {
        let since = self.last_counted_ms.unwrap_or(self.from_ms);
        if self.to_ms - since > self.settings.gap_ms {
            self.gaps.push(Gap {
                from_ms: since,
                to_ms: self.to_ms,
            });
        }
        if let Some(e) = self.open.take() {
            self.excursions.push(e);
        }
        let temperature = (self.readings > 0).then(|| TempSummary {
            readings: self.readings,
            min_c: self.min_c,
            max_c: self.max_c,
            mean_c: self.sum_c / self.readings as f64,
            covered_s: self.covered_ms as f64 / 1000.0,
            time_in_range_pct: (self.settings.range_c.is_some() && self.covered_ms > 0)
                .then(|| self.in_range_ms as f64 / self.covered_ms as f64 * 100.0),
        });
        let verdict = if !self.excursions.is_empty() {
            Verdict::Excursion
        } else if !self.gaps.is_empty()
            || (self.settings.range_c.is_some() && temperature.is_none())
        {
            Verdict::Incomplete
        } else {
            Verdict::Compliant
        };
        ColdChainRecord {
            temperature,
            excursions: self.excursions,
            gaps: self.gaps,
            verdict,
        }
    }
}

/// How far `t` lies outside `[lo, hi]`, degrees (0 inside).
fn outside_by(t: f64, lo: f64, hi: f64) -> f64 {
    (lo - t).max(t - hi).max(0.0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const T0: i64 = 1_795_400_000_000;
    const MIN: i64 = 60_000;

    fn settings() -> ColdChainSettings {
        ColdChainSettings {
            range_c: Some([2.0, 8.0]),
            gap_ms: 15 * MIN,
        }
    }

    /// One reading a minute over `[T0, T0 + temps.len() - 1 min]`, `None` = no temperature.
    fn record(s: ColdChainSettings, temps: &[Option<f64>]) -> ColdChainRecord {
        let to = T0 + (temps.len() as i64 - 1).max(0) * MIN;
        let mut c = ColdChain::new(s, T0, to);
        for (i, t) in temps.iter().enumerate() {
            c.push(T0 + i as i64 * MIN, *t).unwrap();
        }
        c.finish()
    }

    #[test]
    fn readings_in_range_all_along_are_compliant() {
        let r = record(settings(), &[Some(4.0); 120]);
        assert_eq!(r.verdict, Verdict::Compliant);
        let t = r.temperature.unwrap();
        assert_eq!(
            (t.readings, t.min_c, t.max_c, t.mean_c),
            (120, 4.0, 4.0, 4.0)
        );
        assert_eq!(t.time_in_range_pct, Some(100.0));
        assert_eq!(t.covered_s, 119.0 * 60.0);
    }

    #[test]
    fn an_excursion_has_begin_end_duration_and_peak() {
        let mut temps = vec![Some(4.0); 10];
        temps.extend([Some(9.0), Some(12.5), Some(10.0)]); // minutes 10-12 out
        temps.extend(vec![Some(5.0); 7]); // back at minute 13
        let r = record(settings(), &temps);
        assert_eq!(r.verdict, Verdict::Excursion);
        assert_eq!(
            r.excursions,
            [Excursion {
                begin_ms: T0 + 10 * MIN,
                end_ms: Some(T0 + 13 * MIN),
                last_out_ms: T0 + 12 * MIN,
                peak_c: 12.5
            }]
        );
        assert_eq!(r.excursions[0].duration_s(), 180.0);
        // 3 of the 19 covered minutes were held out of range
        let pct = r.temperature.unwrap().time_in_range_pct.unwrap();
        assert!((pct - 16.0 / 19.0 * 100.0).abs() < 1e-9, "{pct}");
    }

    #[test]
    fn a_peak_below_the_range_is_the_coldest_reading() {
        let r = record(settings(), &[Some(4.0), Some(1.0), Some(-3.0), Some(0.5)]);
        assert_eq!(r.excursions.len(), 1);
        assert_eq!(r.excursions[0].peak_c, -3.0);
        assert_eq!(r.excursions[0].end_ms, None, "still out at the end");
        assert_eq!(r.excursions[0].duration_s(), 120.0);
    }

    #[test]
    fn a_gap_makes_it_incomplete_and_is_not_covered_time() {
        let mut c = ColdChain::new(settings(), T0, T0 + 120 * MIN);
        for m in (0..=30).chain(60..=120) {
            c.push(T0 + m * MIN, Some(5.0)).unwrap();
        }
        let r = c.finish();
        assert_eq!(r.verdict, Verdict::Incomplete);
        assert_eq!(
            r.gaps,
            [Gap {
                from_ms: T0 + 30 * MIN,
                to_ms: T0 + 60 * MIN
            }]
        );
        assert_eq!(r.temperature.unwrap().covered_s, 90.0 * 60.0);
    }

    #[test]
    fn positions_without_temperature_do_not_fill_a_cold_chain_gap() {
        let mut temps = vec![Some(5.0)];
        temps.extend(vec![None; 30]);
        temps.push(Some(5.0));
        assert_eq!(record(settings(), &temps).verdict, Verdict::Incomplete);
        // without a temperature range, any reading counts
        let s = ColdChainSettings {
            range_c: None,
            ..settings()
        };
        let r = record(s, &temps);
        assert_eq!(r.verdict, Verdict::Compliant);
        assert_eq!(r.temperature.unwrap().time_in_range_pct, None);
    }

    #[test]
    fn silence_at_the_ends_of_the_range_is_a_gap() {
        let mut c = ColdChain::new(settings(), T0, T0 + 100 * MIN);
        c.push(T0 + 20 * MIN, Some(5.0)).unwrap();
        c.push(T0 + 30 * MIN, Some(5.0)).unwrap();
        let r = c.finish();
        assert_eq!(
            r.gaps,
            [
                Gap {
                    from_ms: T0,
                    to_ms: T0 + 20 * MIN
                },
                Gap {
                    from_ms: T0 + 30 * MIN,
                    to_ms: T0 + 100 * MIN
                }
            ]
        );
        let none = ColdChain::new(settings(), T0, T0 + 10 * MIN).finish();
        assert_eq!(none.verdict, Verdict::Incomplete, "no temperature at all");
    }

    #[test]
    fn an_excursion_outranks_a_gap() {
        let mut c = ColdChain::new(settings(), T0, T0 + 100 * MIN);
        c.push(T0, Some(11.0)).unwrap();
        c.push(T0 + MIN, Some(5.0)).unwrap();
        assert_eq!(c.finish().verdict, Verdict::Excursion);
    }

    #[test]
    fn out_of_order_is_refused() {
        let mut c = ColdChain::new(settings(), T0, T0 + 10 * MIN);
        c.push(T0 + MIN, Some(5.0)).unwrap();
        assert!(c.push(T0, Some(5.0)).is_err());
    }

    proptest! {
        /// Against the definition computed over the whole list at once.
        #[test]
        fn matches_a_batch_computation(
            temps in prop::collection::vec(prop::option::weighted(0.8, -5.0..15.0_f64), 1..200),
            dup in any::<prop::sample::Index>(),
        ) {
            let s = settings();
            let got = record(s, &temps);
            let with_t: Vec<(i64, f64)> = temps.iter().enumerate()
                .filter_map(|(i, t)| t.map(|t| (T0 + i as i64 * MIN, t))).collect();
            let inside = |t: f64| (2.0..=8.0).contains(&t);
            // excursions: maximal runs of outside readings
            let mut want = Vec::new();
            let mut k = 0;
            while k < with_t.len() {
                if inside(with_t[k].1) { k += 1; continue; }
                let b = k;
                while k < with_t.len() && !inside(with_t[k].1) { k += 1; }
                let run = &with_t[b..k];
                let peak = run.iter().map(|r| r.1)
                    .max_by(|x, y| (2.0 - x).max(x - 8.0).total_cmp(&(2.0 - y).max(y - 8.0))).unwrap();
                want.push((run[0].0, with_t.get(k).map(|r| r.0), peak));
            }
            let got_ex: Vec<_> = got.excursions.iter().map(|e| (e.begin_ms, e.end_ms, e.peak_c)).collect();
            prop_assert_eq!(got_ex.len(), want.len());
            for (g, w) in got_ex.iter().zip(&want) {
                prop_assert_eq!((g.0, g.1), (w.0, w.1));
                // ties of distance outside may pick either reading
                prop_assert_eq!((2.0 - g.2).max(g.2 - 8.0), (2.0 - w.2).max(w.2 - 8.0));
            }
            if let Some(t) = got.temperature {
                let n = with_t.len() as f64;
                prop_assert_eq!(t.readings as usize, with_t.len());
                let mean = with_t.iter().map(|r| r.1).sum::<f64>() / n;
                prop_assert!((t.mean_c - mean).abs() < 1e-9);
            }
            // a duplicate of any reading changes nothing
            let i = dup.index(temps.len());
            let to = T0 + (temps.len() as i64 - 1) * MIN;
            let mut c = ColdChain::new(s, T0, to);
            for (j, t) in temps.iter().enumerate() {
                c.push(T0 + j as i64 * MIN, *t).unwrap();
                if j == i {
                    c.push(T0 + j as i64 * MIN, Some(100.0)).unwrap();
                }
            }
            prop_assert_eq!(c.finish(), got);
        }
    }
}
