//! Batches of lines: gathered from one table, posted whole or in contiguous parts.

use std::ops::Range;
use std::time::Instant;

use bytes::Bytes;
use landport_tracker::Event;

use super::line;
use landport_store::TelemetryRow;

/// Cursor of the readings delivered to InfluxDB (a telemetry rowid).
pub const TELEMETRY_CURSOR: &str = "influx_telemetry";

/// Cursor of the events delivered to InfluxDB (an event seq).
pub const EVENTS_CURSOR: &str = "influx_events";

/// The table a batch comes from, and so the cursor its delivery moves. A batch never mixes
/// the two, so that each is one contiguous range of one cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Telemetry,
    Events,
}

impl Stream {
    pub(crate) fn cursor(self) -> &'static str {
        match self {
            Stream::Telemetry => TELEMETRY_CURSOR,
            Stream::Events => EVENTS_CURSOR,
        }
    }
}

/// A batch while rows are added to it.
#[derive(Debug)]
pub(crate) struct BatchBuilder {
    stream: Stream,
    /// The lines, one after another (each ends in `\n`).
    text: String,
    /// End offset in `text` of each line.
    ends: Vec<usize>,
    /// Rowid or seq of each line.
    keys: Vec<i64>,
    /// Rowid or seq of the last row taken, including rows that made no line.
    last: Option<i64>,
    /// When the first row was taken: the batch is due `flush_interval` later.
    since: Option<Instant>,
}

impl BatchBuilder {
    pub(crate) fn new(stream: Stream) -> BatchBuilder {
        BatchBuilder {
            stream,
            text: String::new(),
            ends: Vec::new(),
            keys: Vec::new(),
            last: None,
            since: None,
        }
    }

    /// Lines so far.
    pub(crate) fn lines(&self) -> usize {
        self.ends.len()
    }

    /// When the first row was taken; `None` while empty.
    pub(crate) fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Adds a reading (no line when it has no field; the cursor still moves past it).
    pub(crate) fn push_reading(&mut self, rowid: i64, row: &TelemetryRow, now: Instant) {
        if line::encode_reading(&mut self.text, row) {
            self.ends.push(self.text.len());
            self.keys.push(rowid);
        }
        self.taken(rowid, now);
    }

    /// Adds an event.
    pub(crate) fn push_event(&mut self, seq: i64, event: &Event, now: Instant) {
        line::encode_event(&mut self.text, event);
        self.ends.push(self.text.len());
        self.keys.push(seq);
        self.taken(seq, now);
    }

    fn taken(&mut self, key: i64, now: Instant) {
        self.last = Some(key);
        self.since.get_or_insert(now);
    }

    /// The batch so far, leaving the builder empty; `None` when no row was taken. The text
    /// moves into the batch (no copy); the next one starts with the same capacity.
    pub(crate) fn take(&mut self) -> Option<Batch> {
        let last = self.last.take()?;
        self.since = None;
        let capacity = self.text.capacity();
        let text = std::mem::replace(&mut self.text, String::with_capacity(capacity));
        Some(Batch {
            stream: self.stream,
            body: Bytes::from(text.into_bytes()),
            ends: std::mem::take(&mut self.ends),
            keys: std::mem::take(&mut self.keys),
            last,
        })
    }
}

/// Lines ready to post, from one stream, in cursor order.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub(crate) stream: Stream,
    body: Bytes,
    ends: Vec<usize>,
    keys: Vec<i64>,
    /// The cursor once this batch is delivered.
    pub(crate) last: i64,
}

impl Batch {
    /// Number of lines.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The body of lines `lines` (a slice of the batch's, no copy).
    pub(crate) fn body(&self, lines: Range<usize>) -> Bytes {
        if lines.is_empty() {
            return Bytes::new();
        }
        let start = match lines.start {
            0 => 0,
            i => self.ends[i - 1],
        };
        self.body.slice(start..self.ends[lines.end - 1])
    }

    /// Index of the first line whose key is above `cursor` (`len()` when none is).
    pub(crate) fn first_after(&self, cursor: i64) -> usize {
        self.keys.partition_point(|&k| k <= cursor)
    }
}

#[cfg(test)]
mod tests {
    use landport_tracker::Reading;

    use super::*;

    fn row(device: &str, reading: Reading) -> TelemetryRow {
        TelemetryRow {
            tenant: "t".into(),
            device: device.into(),
            shipment: None,
            reading,
            received_ms: 0,
        }
    }

    #[test]
    fn a_batch_slices_into_whole_lines_and_skips_what_a_cursor_covers() {
        let now = Instant::now();
        let mut b = BatchBuilder::new(Stream::Telemetry);
        assert!(b.take().is_none());
        b.push_reading(10, &row("a", Reading::at(1).with_temp(1.0)), now);
        b.push_reading(11, &row("b", Reading::at(2)), now); // no field: no line
        b.push_reading(12, &row("c", Reading::at(3).with_temp(3.0)), now);
        b.push_reading(13, &row("d", Reading::at(4)), now);
        assert_eq!(b.lines(), 2);
        let batch = b.take().unwrap();
        assert!(b.since().is_none() && b.lines() == 0);
        assert_eq!(batch.last, 13);
        assert_eq!(batch.len(), 2);
        assert_eq!(
            batch.body(0..2),
            "telemetry,device=a,tenant=t temp_c=1.0 1\ntelemetry,device=c,tenant=t temp_c=3.0 3\n"
        );
        assert_eq!(
            batch.body(1..2),
            "telemetry,device=c,tenant=t temp_c=3.0 3\n"
        );
        assert_eq!(batch.body(1..1), "");
        assert_eq!(batch.first_after(0), 0);
        assert_eq!(batch.first_after(10), 1);
        assert_eq!(batch.first_after(11), 1);
        assert_eq!(batch.first_after(12), 2);
    }

    #[test]
    fn rows_without_lines_still_make_a_batch_that_moves_the_cursor() {
        let mut b = BatchBuilder::new(Stream::Telemetry);
        b.push_reading(5, &row("a", Reading::at(1)), Instant::now());
        let batch = b.take().unwrap();
        assert_eq!((batch.len(), batch.last), (0, 5));
    }
}
