//! The reading half of the sink: a blocking thread with its own read-only connection that
//! tails `telemetry` and `events` after the cursors, encodes rows into batches and hands each
//! batch to the poster once it is full or due. It runs ahead of the poster by at most the
//! batch being posted, one batch in the channel and the one being filled, so reading and
//! encoding overlap the HTTP round trips.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::SinkStats;
use super::batch::{Batch, BatchBuilder, Stream};
use landport_pipeline::Backoff;
use landport_store::{EventFilter, Store, StoreError};

/// How often the store is asked for new rows once the reader has caught up: `flush_interval`
/// within these bounds. New rows wait at most this long before they are read (and then up to
/// `flush_interval` in their batch).
pub(crate) const POLL_INTERVAL_MAX: Duration = Duration::from_millis(100);
pub(crate) const POLL_INTERVAL_MIN: Duration = Duration::from_millis(10);

/// Positions below which the reader need not read: the poster raises them when the spool
/// overflows and it gives up on the oldest rows (and on every delivery, harmlessly).
#[derive(Debug, Default)]
pub(crate) struct Floors {
    pub(crate) telemetry: AtomicI64,
    pub(crate) events: AtomicI64,
}

/// What the reader needs to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReaderSettings {
    pub(crate) batch_max_lines: usize,
    pub(crate) flush_interval: Duration,
}

pub(crate) struct Reader {
    /// A read-only connection of the reader's own.
    store: Store,
    settings: ReaderSettings,
    /// Last rowid read.
    after_rowid: i64,
    /// Last event seq read.
    after_seq: i64,
    telemetry: BatchBuilder,
    events: BatchBuilder,
    floors: Arc<Floors>,
    stats: Arc<SinkStats>,
}

impl Reader {
    /// A reader starting after the given cursors.
    pub(crate) fn new(
        store: Store,
        settings: ReaderSettings,
        after_rowid: i64,
        after_seq: i64,
        floors: Arc<Floors>,
        stats: Arc<SinkStats>,
    ) -> Reader {
        Reader {
            store,
            settings,
            after_rowid,
            after_seq,
            telemetry: BatchBuilder::new(Stream::Telemetry),
            events: BatchBuilder::new(Stream::Events),
            floors,
            stats,
        }
    }

    /// Reads and sends batches until `shutdown` or until the poster is gone. Blocks: run it on
    /// a thread of its own (`spawn_blocking`).
    pub(crate) fn run(mut self, batches: mpsc::Sender<Batch>, shutdown: CancellationToken) {
        let poll = self
            .settings
            .flush_interval
            .clamp(POLL_INTERVAL_MIN, POLL_INTERVAL_MAX);
        let mut backoff = Backoff::new(poll, Duration::from_secs(5), crate::seed());
        // A closed channel means the poster is gone (e.g. its runtime shut down): stop too, or
        // the runtime would wait for this thread forever.
        while !shutdown.is_cancelled() && !batches.is_closed() {
            self.after_rowid = self
                .after_rowid
                .max(self.floors.telemetry.load(Ordering::Relaxed));
            self.after_seq = self
                .after_seq
                .max(self.floors.events.load(Ordering::Relaxed));
            let read = match self.read(Instant::now()) {
                Ok(read) => {
                    backoff.reset();
                    read
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        %error,
                        retry_in = ?delay,
                        "InfluxDB sink: reading the store failed"
                    );
                    std::thread::sleep(delay);
                    continue;
                }
            };
            let now = Instant::now();
            for builder in [&mut self.events, &mut self.telemetry] {
                let full = builder.lines() >= self.settings.batch_max_lines;
                let due = builder
                    .since()
                    .is_some_and(|since| now.duration_since(since) >= self.settings.flush_interval);
                if (full || due)
                    && let Some(batch) = builder.take()
                    && batches.blocking_send(batch).is_err()
                {
                    return; // the poster has stopped
                }
            }
            if read == 0 {
                std::thread::sleep(poll);
            }
        }
    }

    /// Reads what fits into the two batches; returns how many rows it read.
    fn read(&mut self, now: Instant) -> Result<usize, StoreError> {
        let max = self.settings.batch_max_lines;
        let mut read = 0;
        let room = max.saturating_sub(self.events.lines());
        if room > 0 {
            match self.store.events_after(&self.events_filter(), room) {
                Ok(events) => {
                    for (seq, event) in events {
                        self.events.push_event(seq, &event, now);
                        self.after_seq = seq;
                        read += 1;
                    }
                }
                // Some event of the page cannot be decoded: take them one at a time.
                Err(StoreError::Json(_)) => read += self.read_events_one_by_one(room, now)?,
                Err(error) => return Err(error),
            }
        }
        let room = max.saturating_sub(self.telemetry.lines());
        if room > 0 {
            for (rowid, row) in self.store.readings_after(self.after_rowid, room)? {
                self.telemetry.push_reading(rowid, &row, now);
                self.after_rowid = rowid;
                read += 1;
            }
        }
        Ok(read)
    }

    /// Reads up to `room` events one at a time, stepping over those that cannot be decoded
    /// (e.g. of a type that a newer build wrote before a downgrade): each would fail every page
    /// that holds it, and the sink would stall on it for ever. Only decoding errors are
    /// stepped over; SQLite errors pass up and are retried. Returns the events read, plus one
    /// for each stretch stepped over.
    fn read_events_one_by_one(&mut self, room: usize, now: Instant) -> Result<usize, StoreError> {
        let mut read = 0;
        while read < room {
            match self.store.events_after(&self.events_filter(), 1) {
                Ok(events) => {
                    let Some((seq, event)) = events.into_iter().next() else {
                        break;
                    };
                    self.events.push_event(seq, &event, now);
                    self.after_seq = seq;
                }
                Err(StoreError::Json(error)) => self.step_over_undecodable(&error)?,
                Err(error) => return Err(error),
            }
            read += 1;
        }
        Ok(read)
    }

    /// The first event after `after_seq` cannot be decoded: moves `after_seq` past it, and past
    /// any undecodable ones right after it, one seq at a time (seqs may skip numbers, and the
    /// bad ones' are unknown until a read after them succeeds).
    fn step_over_undecodable(&mut self, error: &serde_json::Error) -> Result<(), StoreError> {
        let from = self.after_seq;
        let last = self.store.event_seq_max()?;
        while self.after_seq < last {
            self.after_seq += 1;
            match self.store.events_after(&self.events_filter(), 1) {
                Ok(_) => break,
                Err(StoreError::Json(_)) => {}
                Err(other) => return Err(other),
            }
        }
        self.stats.undecodable_skips.inc();
        tracing::error!(
            after_seq = from,
            up_to_seq = self.after_seq,
            %error,
            "InfluxDB sink: skipped stored events it cannot decode"
        );
        Ok(())
    }

    /// Every event after `after_seq`.
    fn events_filter(&self) -> EventFilter {
        EventFilter {
            after_seq: self.after_seq,
            ..EventFilter::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use landport_tracker::{Event, EventType};

    use super::*;
    use landport_store::DB_FILE;

    fn event(device: &str, ts_ms: i64) -> Event {
        let data = serde_json::json!({});
        Event::new(
            EventType::DeviceOffline,
            "t",
            device,
            None,
            None,
            ts_ms,
            0,
            data,
        )
    }

    #[test]
    fn a_stored_event_that_cannot_be_decoded_is_skipped_not_retried_for_ever() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let events = [
            event("a", 1),
            event("b", 2),
            event("c", 3),
            event("d", 4),
            event("e", 5),
            event("f", 6),
        ];
        store.commit(&[], &events).unwrap();
        let raw = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
        raw.execute(
            "UPDATE events SET body = '{\"type\":\"from.the.future\"}' WHERE seq IN (2, 3, 5)",
            [],
        )
        .unwrap();
        let stats = Arc::new(SinkStats::default());
        let settings = ReaderSettings {
            batch_max_lines: 100,
            flush_interval: Duration::from_secs(1),
        };
        let floors = Arc::new(Floors::default());
        let mut reader = Reader::new(store, settings, 0, 0, floors, Arc::clone(&stats));
        for _ in 0..5 {
            reader.read(Instant::now()).unwrap();
        }
        let batch = reader.events.take().unwrap();
        let text = String::from_utf8(batch.body(0..batch.len()).to_vec()).unwrap();
        let devices: Vec<&str> = text.lines().map(|l| l.split(',').nth(1).unwrap()).collect();
        assert_eq!(devices, ["device=a", "device=d", "device=f"], "{text}");
        assert_eq!(batch.last, 6);
        assert_eq!(stats.undecodable_skips(), 2, "two stretches: 2-3 and 5");
    }
}
