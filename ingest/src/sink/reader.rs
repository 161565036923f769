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

use super::backoff::Backoff;
use super::batch::{Batch, BatchBuilder, Stream};
use crate::store::{EventFilter, Store, StoreError};

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
}

impl Reader {
    /// A reader starting after the given cursors.
    pub(crate) fn new(
        store: Store,
        settings: ReaderSettings,
        after_rowid: i64,
        after_seq: i64,
        floors: Arc<Floors>,
    ) -> Reader {
        Reader {
            store,
            settings,
            after_rowid,
            after_seq,
            telemetry: BatchBuilder::new(Stream::Telemetry),
            events: BatchBuilder::new(Stream::Events),
            floors,
        }
    }

    /// Reads and sends batches until `shutdown` or until the poster is gone. Blocks: run it on
    /// a thread of its own (`spawn_blocking`).
    pub(crate) fn run(mut self, batches: mpsc::Sender<Batch>, shutdown: CancellationToken) {
        let poll = self
            .settings
            .flush_interval
            .clamp(POLL_INTERVAL_MIN, POLL_INTERVAL_MAX);
        let mut backoff = Backoff::new(poll, Duration::from_secs(5), super::seed());
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
                    tracing::warn!(%error, retry_in = ?delay, "InfluxDB sink: reading the store failed");
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
            let filter = EventFilter {
                after_seq: self.after_seq,
                ..EventFilter::default()
            };
            for (seq, event) in self.store.events_after(&filter, room)? {
                self.events.push_event(seq, &event, now);
                self.after_seq = seq;
                read += 1;
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
}
