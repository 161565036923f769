//! Reports over a device's stored history (SPEC 14): stops, trips, and a cold-chain shipment's
//! record (temperature summary, excursions, gaps without readings, verdict).
//!
//! Pure and streaming, like the rest of the crate: the caller reads the history in time order
//! (the store streams it row by row) and feeds each reading to a detector with `push`, then
//! calls `finish`. A detector keeps only what it must to decide: the stop detector holds the
//! readings of the current stop candidate (at most those within `min_stop_s` of its first
//! reading), the cold-chain record a few running sums. Results (stops, trips, excursions,
//! gaps) are appended to the caller's output as soon as they are decided, so a month of 1 Hz
//! readings runs in memory bounded by what one stop candidate spans, not by the range.
//!
//! Ordering is the caller's job and is checked, not assumed: a reading older than the one
//! before it is refused with [`OutOfOrder`] (the store reads `ORDER BY ts_ms`), and a reading
//! with the same time as the one before it is a duplicate and ignored (the first wins, as in
//! the store's duplicate rule), so feeding the same history twice over gives the same result.
//!
//! Layout: [`segments`] (stops and the trips between them), [`cold_chain`] (temperature,
//! excursions, gaps, verdict). Coordinates are `(lon, lat)` degrees; distances metres
//! (geodesic, [`crate::geodesy::distance_m`]); times epoch milliseconds (device clock).

pub mod cold_chain;
pub mod segments;

pub use cold_chain::{
    ColdChain, ColdChainRecord, ColdChainSettings, Excursion, Gap, TempSummary, Verdict,
};
pub use segments::{Segment, SegmentSettings, Segmenter, Stop, Trip, TripEnd};

use crate::reading::TimestampMs;

/// A reading fed out of time order: `ts_ms` came after a reading at `previous_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("reading at {ts_ms} ms came after one at {previous_ms} ms: feed readings in time order")]
pub struct OutOfOrder {
    pub previous_ms: TimestampMs,
    pub ts_ms: TimestampMs,
}

/// Whether a reading at `ts_ms` after one at `previous` is new (`Ok(true)`), a duplicate
/// (`Ok(false)`: same time) or out of order.
fn check_order(previous: Option<TimestampMs>, ts_ms: TimestampMs) -> Result<bool, OutOfOrder> {
    match previous {
        Some(p) if ts_ms < p => Err(OutOfOrder {
            previous_ms: p,
            ts_ms,
        }),
        Some(p) if ts_ms == p => Ok(false),
        _ => Ok(true),
    }
}

#[cfg(test)]
mod real_traces;

#[cfg(test)]
mod first_eta;
