//! The store writer: a thread that owns the SQLite write connection, commits each batch in one
//! transaction, and only then hands the batch's acknowledgements back. A failed commit is
//! retried with backoff while the pipeline waits (backpressure), never dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use landport_tracker::Event;
use tokio::sync::{Notify, broadcast, mpsc};

use crate::backoff::Backoff;
use crate::core::{DeadLetter, Output};
use crate::load::{IngestLoad, IngestStage};
use crate::metrics::Metrics;
use landport_store::Store;

/// A refused commit is retried after a delay under 50 ms, then under a ceiling that doubles up
/// to 5 s ([`Backoff`]); the batch and its acks wait meanwhile.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Queued batches are merged into one commit up to this many readings (a pipeline batch holds
/// at most `batch_max_messages`).
const MERGE_MAX_ROWS: usize = 10_000;

/// What the pipeline sends the writer.
#[derive(Debug)]
pub enum WriterMsg<A> {
    /// Make this durable, then release `acks`.
    Batch {
        output: Output,
        acks: Vec<A>,
        /// Server time the oldest message of the batch arrived (ms), for the lag gauge.
        oldest_ms: i64,
    },
    /// A tracker snapshot taken after every batch sent before it.
    Snapshot(Vec<u8>),
    /// A tracker snapshot was taken here, after every batch sent before it, and is being
    /// serialized off the pipeline's task: its bytes follow as [`WriterMsg::SnapshotBytes`]
    /// with the same id, to be saved with the telemetry position of this point (the batches
    /// between the two are not in it, and recovery replays them).
    SnapshotTaken(u64),
    SnapshotBytes(u64, Vec<u8>),
    /// Delete telemetry received and events stored before these server times (retention).
    Prune(crate::retention::Cutoffs),
}

/// What the writer releases once a batch is durable.
#[derive(Debug)]
pub struct Durable<A> {
    pub acks: Vec<A>,
    pub dead_letters: Vec<DeadLetter>,
}

/// Whom the writer tells about each commit, besides the acknowledgements.
pub struct Listeners {
    /// Committed events, for live streams.
    pub events: broadcast::Sender<Arc<Event>>,
    /// Woken when events were committed (the event outbox).
    pub outbox: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// How busy the writer is (for readers that yield to ingest).
    pub load: Arc<IngestLoad>,
}

/// Runs the writer until the pipeline drops its sender; returns the store.
///
/// `retry_wait` blocks the writer between a failed commit and its retry, for the backoff
/// it is given (`std::thread::sleep` in service). Tests pass their own, to act while the
/// store is refusing a batch.
pub fn run<A: Send + 'static>(
    mut store: Store,
    mut rx: mpsc::Receiver<WriterMsg<A>>,
    durable: mpsc::Sender<Durable<A>>,
    listeners: Listeners,
    mut retry_wait: impl FnMut(Duration),
) -> Store {
    let Listeners {
        events,
        outbox,
        metrics,
        load,
    } = listeners;
    let mut last_rowid = store.telemetry_rowid_max().unwrap_or(0);
    // Snapshots taken and still being serialized: (id, telemetry position when taken).
    let mut taken: Vec<(u64, i64)> = Vec::new();
    // A message taken while merging batches, to be handled next.
    let mut next: Option<WriterMsg<A>> = None;
    while let Some(msg) = next.take().or_else(|| rx.blocking_recv()) {
        let started = Instant::now();
        match msg {
            WriterMsg::Batch {
                mut output,
                mut acks,
                oldest_ms,
            } => {
                // Group commit: the batches that queued up while the last commit ran go into
                // this one. A commit costs about 70 us besides its readings, and at a steady
                // 20k readings/s the pipeline hands over a batch every few messages: one
                // commit per batch was 3,200 commits/s of 6 readings, half the writer's time.
                // Merging stops at anything else (a snapshot's mark must stay between the
                // batches it was sent between).
                while output.rows.len() < MERGE_MAX_ROWS {
                    match rx.try_recv() {
                        Ok(WriterMsg::Batch {
                            output: more,
                            acks: more_acks,
                            oldest_ms: _,
                        }) => {
                            output.rows.extend(more.rows);
                            output.events.extend(more.events);
                            output.dead_letters.extend(more.dead_letters);
                            acks.extend(more_acks);
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                // The one retry schedule of the crate; the seed only spreads the jitter.
                let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX, oldest_ms as u64);
                let committed = loop {
                    match store.commit(&output.rows, &output.events) {
                        Ok(c) => break c,
                        Err(e) => {
                            metrics.commit_errors.inc();
                            tracing::error!(error = %e, "store commit failed; retrying");
                            retry_wait(backoff.next_delay());
                        }
                    }
                };
                metrics.commits.inc();
                last_rowid = committed.last_rowid;
                let lag_ms = (crate::handle::now_ms() - oldest_ms).max(0);
                metrics.pipeline_lag_seconds.set(lag_ms as f64 / 1000.0);
                if !output.events.is_empty() {
                    for e in output.events {
                        // No subscribers is fine: nobody is watching the stream.
                        let _ = events.send(Arc::new(e));
                    }
                    outbox.notify_one();
                }
                if durable
                    .blocking_send(Durable {
                        acks,
                        dead_letters: output.dead_letters,
                    })
                    .is_err()
                {
                    tracing::debug!("acknowledger gone; stopping writer");
                }
            }
            // Deletes what was received before the cutoff; a reading received exactly at it
            // stays (see `retention::RetentionSchedule::due`).
            WriterMsg::Prune(cutoffs) => {
                match store.prune_telemetry(cutoffs.telemetry_ms) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "pruned telemetry past retention"),
                    Err(e) => tracing::error!(error = %e, "pruning telemetry failed"),
                }
                match store.prune_events(cutoffs.events_ms) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "pruned events past retention"),
                    Err(e) => tracing::error!(error = %e, "pruning events failed"),
                }
            }
            WriterMsg::Snapshot(bytes) => {
                if let Err(e) = store.save_snapshot(&bytes, last_rowid) {
                    tracing::error!(error = %e, "saving the tracker snapshot failed");
                }
            }
            WriterMsg::SnapshotTaken(id) => taken.push((id, last_rowid)),
            WriterMsg::SnapshotBytes(id, bytes) => match taken.iter().position(|&(t, _)| t == id) {
                Some(i) => {
                    let (_, rowid) = taken.swap_remove(i);
                    if let Err(e) = store.save_snapshot(&bytes, rowid) {
                        tracing::error!(error = %e, "saving the tracker snapshot failed");
                    }
                }
                None => tracing::error!(id, "tracker snapshot bytes without their mark"),
            },
        }
        load.worked(IngestStage::Writer, started, Instant::now());
    }
    store
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::mpsc as std_mpsc;
    use std::thread::JoinHandle;

    use landport_tracker::{EventType, Reading};
    use rusqlite::Connection;
    use serde_json::json;

    use super::*;
    use landport_store::{DB_FILE, EventFilter, TelemetryRow};

    const NOW: i64 = 1_795_400_000_000;

    fn row(device: &str, ts_ms: i64) -> TelemetryRow {
        TelemetryRow {
            tenant: "acme".into(),
            device: device.into(),
            shipment: None,
            reading: Reading::at(ts_ms).with_temp(4.0),
            received_ms: NOW,
        }
    }

    fn event(device: &str, ts_ms: i64) -> Event {
        Event::new(
            EventType::DeviceOnline,
            "acme",
            device,
            None,
            None,
            ts_ms,
            0,
            json!({}),
        )
    }

    fn batch(device: &str, ack: u32) -> WriterMsg<u32> {
        WriterMsg::Batch {
            output: Output {
                rows: vec![row(device, NOW), row(device, NOW + 1_000)],
                events: vec![event(device, NOW)],
                dead_letters: Vec::new(),
            },
            acks: vec![ack],
            oldest_ms: NOW,
        }
    }

    /// A writer on a thread of its own over a fresh store, as the pipeline runs it. Its
    /// retry wait reports each failed commit's backoff on `failures` and then blocks until
    /// the test sends on `retry`, so the test acts while a batch is being refused.
    struct Harness {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
        tx: Option<mpsc::Sender<WriterMsg<u32>>>,
        durable: mpsc::Receiver<Durable<u32>>,
        failures: std_mpsc::Receiver<Duration>,
        retry: std_mpsc::Sender<()>,
        metrics: Arc<Metrics>,
        thread: Option<JoinHandle<Store>>,
    }

    impl Harness {
        fn start() -> Harness {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().to_owned();
            let store = Store::open(&dir).unwrap();
            let (tx, rx) = mpsc::channel(4);
            let (durable_tx, durable) = mpsc::channel(16);
            let (failed_tx, failures) = std_mpsc::channel();
            let (retry, retry_rx) = std_mpsc::channel::<()>();
            let metrics = Metrics::new();
            let (events, _) = broadcast::channel(16);
            let m = metrics.clone();
            let thread = std::thread::spawn(move || {
                let wait = move |backoff: Duration| {
                    let _ = failed_tx.send(backoff);
                    let _ = retry_rx.recv();
                };
                run(
                    store,
                    rx,
                    durable_tx,
                    Listeners {
                        events,
                        outbox: Arc::new(Notify::new()),
                        metrics: m,
                        load: Arc::default(),
                    },
                    wait,
                )
            });
            Harness {
                _tmp: tmp,
                dir,
                tx: Some(tx),
                durable,
                failures,
                retry,
                metrics,
                thread: Some(thread),
            }
        }

        fn send(&self, msg: WriterMsg<u32>) {
            self.tx.as_ref().unwrap().blocking_send(msg).unwrap();
        }

        /// A second read-write connection, for the test's own SQL.
        fn connection(&self) -> Connection {
            Connection::open(self.dir.join(DB_FILE)).unwrap()
        }

        /// Ends the writer (as the pipeline does, by dropping its sender) and waits for it.
        fn stop(mut self) -> Store {
            drop(self.tx.take());
            self.thread.take().unwrap().join().unwrap()
        }
    }

    /// What another connection reads of one device's batch right now: readings, event ids.
    fn stored(reader: &Store, device: &str) -> (usize, Vec<String>) {
        let readings = reader.track("acme", device, 0, i64::MAX, 100).unwrap();
        let filter = EventFilter {
            device: Some(device.into()),
            ..EventFilter::tenant("acme", 0)
        };
        let events = reader.events_after(&filter, 100).unwrap();
        (
            readings.len(),
            events.into_iter().map(|(_, e)| e.id).collect(),
        )
    }

    /// Makes the database refuse every reading, as a full or failing disk would: the
    /// transaction that tries to store one fails and leaves nothing behind.
    fn refuse_writes(conn: &Connection) {
        conn.execute_batch(
            "CREATE TRIGGER refuse_telemetry BEFORE INSERT ON telemetry
             BEGIN SELECT RAISE(ABORT, 'the test refuses writes'); END;",
        )
        .unwrap();
    }

    fn accept_writes(conn: &Connection) {
        conn.execute_batch("DROP TRIGGER refuse_telemetry").unwrap();
    }

    #[test]
    fn a_snapshot_serialized_later_is_saved_with_the_position_where_it_was_taken() {
        let mut h = Harness::start();
        h.send(batch("d0", 0));
        let after_d0 = {
            let _ = h.durable.blocking_recv().unwrap();
            Store::open_reader(&h.dir)
                .unwrap()
                .telemetry_rowid_max()
                .unwrap()
        };
        // Taken after d0; its bytes arrive after d1 and d2 were committed, and after another
        // snapshot taken (and serialized sooner) after d1.
        h.send(WriterMsg::SnapshotTaken(1));
        h.send(batch("d1", 1));
        h.send(WriterMsg::SnapshotTaken(2));
        h.send(batch("d2", 2));
        h.send(WriterMsg::SnapshotBytes(2, b"after d1".to_vec()));
        h.send(WriterMsg::SnapshotBytes(1, b"after d0".to_vec()));
        // An unmatched id is logged and saves nothing.
        h.send(WriterMsg::SnapshotBytes(9, b"stray".to_vec()));
        let store = h.stop();
        let saved = store.load_snapshots().unwrap();
        let rowid = |bytes: &[u8]| {
            saved
                .iter()
                .find(|(b, _)| b == bytes)
                .map(|&(_, r)| r)
                .unwrap_or_else(|| panic!("{:?} not saved", String::from_utf8_lossy(bytes)))
        };
        assert_eq!(rowid(b"after d0"), after_d0);
        assert_eq!(rowid(b"after d1"), after_d0 + 2, "d1 is two readings");
        assert!(saved.iter().all(|(b, _)| b != b"stray"));
    }

    #[test]
    fn each_batch_is_readable_from_another_connection_when_its_acks_are_released() {
        let mut h = Harness::start();
        let conn = h.connection();
        let reader = Store::open_reader(&h.dir).unwrap();
        // The store refuses each batch's first commit: the writer then holds the batch until
        // the test lets it retry, so the test looks while the commit is known not to have
        // happened. Acks released before the commit would be here already.
        for (ack, d) in ["d0", "d1", "d2"].into_iter().enumerate() {
            refuse_writes(&conn);
            h.send(batch(d, ack as u32));
            h.failures.recv().unwrap();
            assert!(
                h.durable.try_recv().is_err(),
                "{d}: released before its commit"
            );
            assert_eq!(stored(&reader, d), (0, vec![]));
            accept_writes(&conn);
            h.retry.send(()).unwrap();
            let released = h.durable.blocking_recv().unwrap();
            assert_eq!(released.acks, [ack as u32]);
            // At the moment of release another connection sees the readings and the event.
            assert_eq!(stored(&reader, d), (2, vec![event(d, NOW).id]), "{d}");
        }
        // And with no refusal, several batches queued at once (the writer may merge them).
        let devices = ["d3", "d4", "d5", "d6"];
        for (i, d) in devices.iter().enumerate() {
            h.send(batch(d, 3 + i as u32));
        }
        let mut acks = Vec::new();
        while acks.len() < devices.len() {
            acks.extend(h.durable.blocking_recv().unwrap().acks);
        }
        assert_eq!(acks, [3, 4, 5, 6], "acks come back in batch order");
        for d in devices {
            assert_eq!(stored(&reader, d), (2, vec![event(d, NOW).id]), "{d}");
        }
        assert!((4..=7).contains(&h.metrics.commits.get()));
        drop(h.stop());
    }

    #[test]
    fn batches_queued_during_a_commit_are_committed_together_up_to_a_snapshot_mark() {
        let mut h = Harness::start();
        let conn = h.connection();
        let reader = Store::open_reader(&h.dir).unwrap();
        // d0's commit is refused, so the writer waits in its retry while more queue up.
        refuse_writes(&conn);
        h.send(batch("d0", 0));
        h.failures.recv().unwrap();
        for (i, d) in ["d1", "d2", "d3"].into_iter().enumerate() {
            h.send(batch(d, 1 + i as u32));
        }
        h.send(WriterMsg::SnapshotTaken(1));
        accept_writes(&conn);
        h.retry.send(()).unwrap();
        assert_eq!(h.durable.blocking_recv().unwrap().acks, [0]);
        // The three queued batches: one commit, their acks in order, all of it readable.
        let merged = h.durable.blocking_recv().unwrap();
        assert_eq!(merged.acks, [1, 2, 3]);
        for d in ["d1", "d2", "d3"] {
            assert_eq!(stored(&reader, d), (2, vec![event(d, NOW).id]), "{d}");
        }
        assert_eq!(h.metrics.commits.get(), 2);
        // The mark stopped the merge: a batch after it is a commit of its own, and the
        // snapshot is saved with the position after d3, not after d4.
        h.send(batch("d4", 4));
        assert_eq!(h.durable.blocking_recv().unwrap().acks, [4]);
        h.send(WriterMsg::SnapshotBytes(1, b"after d3".to_vec()));
        let store = h.stop();
        let saved = store.load_snapshots().unwrap();
        let rowid = saved
            .iter()
            .find(|(b, _)| b == b"after d3")
            .map(|&(_, r)| r);
        assert_eq!(
            rowid,
            Some(8),
            "four batches of two readings before the mark"
        );
    }

    #[test]
    fn a_refused_commit_releases_no_ack_until_a_retry_commits() {
        let mut h = Harness::start();
        let conn = h.connection();
        let reader = Store::open_reader(&h.dir).unwrap();
        refuse_writes(&conn);
        h.send(batch("d0", 7));

        // Refused twice: the writer backs off and holds the acks back each time. Its delays
        // are the one Backoff's, seeded by the batch: exactly these, under 50, 100, 200 ms.
        let mut expected = Backoff::new(RETRY_FIRST, RETRY_MAX, NOW as u64);
        let expected: Vec<Duration> = (0..3).map(|_| expected.next_delay()).collect();
        for (delay, ceiling_ms) in expected.iter().zip([50, 100, 200]) {
            assert!(*delay <= Duration::from_millis(ceiling_ms));
        }
        for delay in &expected[..2] {
            assert_eq!(h.failures.recv().unwrap(), *delay);
            assert!(
                h.durable.try_recv().is_err(),
                "no ack may be released while the batch is not stored"
            );
            assert_eq!(stored(&reader, "d0"), (0, vec![]));
            h.retry.send(()).unwrap();
        }
        assert_eq!(h.failures.recv().unwrap(), expected[2]);
        assert!(h.durable.try_recv().is_err());
        assert_eq!(h.metrics.commit_errors.get(), 3);

        // The store takes writes again: the next retry commits, and only then the ack goes.
        accept_writes(&conn);
        h.retry.send(()).unwrap();
        let released = h.durable.blocking_recv().unwrap();
        assert_eq!(released.acks, [7]);
        assert_eq!(stored(&reader, "d0"), (2, vec![event("d0", NOW).id]));
        assert_eq!(h.metrics.commits.get(), 1);

        // Later batches go through as usual, and nothing was stored twice.
        h.send(batch("d1", 8));
        assert_eq!(h.durable.blocking_recv().unwrap().acks, [8]);
        assert!(h.failures.try_recv().is_err());
        let store = h.stop();
        assert_eq!(store.readings_after(0, 100).unwrap().len(), 4);
    }
}
