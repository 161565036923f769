//! The sink's driver: [`InfluxSink::run`] starts the reader thread and posts its batches,
//! retrying, splitting refused batches, and moving the cursors once InfluxDB has accepted.

use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, Stream};
use super::client::{InfluxWriter, WriteError, dropped_points};
use super::reader::{Floors, Reader, ReaderSettings};
use super::spool::{Backlog, rows_to_drop};
use super::{SinkConfig, SinkError, SinkStats};
use landport_pipeline::Backoff;
use landport_pipeline::log_limit::LogLimiter;
use landport_pipeline::metrics::Metrics;
use landport_store::{Store, StoreError};

/// At most one log line per this interval for each kind of repeated problem.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Characters of a refused line quoted in the log.
const LINE_EXCERPT_CHARS: usize = 300;

/// Batches waiting between the reader and the poster (besides the one being posted and the one
/// being filled).
const CHANNEL_BATCHES: usize = 1;

/// The InfluxDB sink: every stored reading and event, as line protocol, to InfluxDB. See the
/// module docs of [`crate::influx`].
#[derive(Debug)]
pub struct InfluxSink {
    config: SinkConfig,
    writer: InfluxWriter,
    /// The storage directory; the sink opens connections of its own.
    store_dir: PathBuf,
    metrics: Arc<Metrics>,
    stats: Arc<SinkStats>,
}

impl InfluxSink {
    /// A sink of the store in `store_dir` to the server of `config`. Fails only on a config
    /// that cannot work (a URL that is not `http(s)://`); it does not contact the server.
    pub fn new(
        config: SinkConfig,
        store_dir: impl Into<PathBuf>,
        metrics: Arc<Metrics>,
    ) -> Result<InfluxSink, SinkError> {
        let writer = InfluxWriter::new(&config.url, &config.api, config.request_timeout)?;
        Ok(InfluxSink {
            config,
            writer,
            store_dir: store_dir.into(),
            stats: Arc::new(SinkStats::registered(&metrics)),
            metrics,
        })
    }

    /// The sink's own counters (dropped and refused rows), shared with the running sink.
    pub fn stats(&self) -> Arc<SinkStats> {
        Arc::clone(&self.stats)
    }

    /// Runs until `shutdown` is cancelled. Returns an error only when the store cannot be
    /// opened; every later failure (InfluxDB down, refusing data, the store busy) is counted,
    /// logged and retried or skipped, never the end of the loop.
    ///
    /// On shutdown, a batch in flight is abandoned: its rows are behind the cursor and are
    /// sent again by the next run (InfluxDB overwrites a point with the same series and time,
    /// so a point that had arrived is not doubled).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), SinkError> {
        let dir = self.store_dir.clone();
        let opened = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let store = Store::open(&dir)?;
            let reader = store.reader()?;
            let telemetry = store.cursor(Stream::Telemetry.cursor())?;
            let events = store.cursor(Stream::Events.cursor())?;
            Ok((store, reader, Acked { telemetry, events }))
        })
        .await
        .map_err(|e| SinkError::Task(e.to_string()))?;
        let (store, reader_store, acked) = opened?;
        tracing::info!(
            writer = ?self.writer,
            after_rowid = acked.telemetry,
            after_seq = acked.events,
            "InfluxDB sink started"
        );
        let floors = Arc::new(Floors::default());
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let reader = Reader::new(
            reader_store,
            ReaderSettings {
                batch_max_lines: self.config.batch_max_lines.get(),
                flush_interval: self.config.flush_interval,
            },
            acked.telemetry,
            acked.events,
            Arc::clone(&floors),
            Arc::clone(&self.stats),
        );
        let reader_shutdown = shutdown.clone();
        let reader = tokio::task::spawn_blocking(move || reader.run(tx, reader_shutdown));
        let poster = Poster {
            writer: self.writer,
            store: Arc::new(Mutex::new(store)),
            acked,
            floors,
            spool_max_bytes: self.config.spool_max_bytes,
            backoff: Backoff::new(
                self.config.retry_initial_delay,
                self.config.retry_max_delay,
                crate::seed(),
            ),
            metrics: self.metrics,
            stats: self.stats,
            prepared: false,
            log_split: LogLimiter::new(LOG_INTERVAL),
            log_refused: LogLimiter::new(LOG_INTERVAL),
        };
        poster.run(rx, &shutdown).await;
        if let Err(e) = reader.await {
            tracing::error!(error = %e, "InfluxDB sink: the reader thread failed");
        }
        tracing::info!("InfluxDB sink stopped");
        Ok(())
    }
}

/// What the poster needs from the server; [`InfluxWriter`] in production, a fake in tests.
pub(crate) trait Post: Send + Sync {
    /// Posts lines; `Ok` once all are accepted.
    fn post(&self, body: Bytes) -> impl Future<Output = Result<(), WriteError>> + Send;
    /// Makes the destination exist (v1: `CREATE DATABASE`).
    fn prepare(&self) -> impl Future<Output = Result<(), WriteError>> + Send;
}

impl Post for InfluxWriter {
    fn post(&self, body: Bytes) -> impl Future<Output = Result<(), WriteError>> + Send {
        self.write(body)
    }

    fn prepare(&self) -> impl Future<Output = Result<(), WriteError>> + Send {
        self.ensure_database()
    }
}

/// The cursors as far as InfluxDB has them (or the spool bound gave them up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Acked {
    pub(crate) telemetry: i64,
    pub(crate) events: i64,
}

impl Acked {
    fn get(&self, stream: Stream) -> i64 {
        match stream {
            Stream::Telemetry => self.telemetry,
            Stream::Events => self.events,
        }
    }

    fn get_mut(&mut self, stream: Stream) -> &mut i64 {
        match stream {
            Stream::Telemetry => &mut self.telemetry,
            Stream::Events => &mut self.events,
        }
    }
}

/// The shutdown token fired while a batch was in flight.
#[derive(Debug)]
pub(crate) struct Cancelled;

/// The posting half: async, one batch at a time.
pub(crate) struct Poster<P> {
    pub(crate) writer: P,
    /// The read-write connection for the cursors. Locked only inside `spawn_blocking`, never
    /// across an `.await`: a std mutex, so that the blocking task can own the guard.
    pub(crate) store: Arc<Mutex<Store>>,
    pub(crate) acked: Acked,
    pub(crate) floors: Arc<Floors>,
    pub(crate) spool_max_bytes: u64,
    pub(crate) backoff: Backoff,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stats: Arc<SinkStats>,
    /// Whether `prepare` succeeded since the last "database not found".
    pub(crate) prepared: bool,
    pub(crate) log_split: LogLimiter,
    pub(crate) log_refused: LogLimiter,
}

impl<P: Post> Poster<P> {
    /// Delivers batches until `shutdown` or the end of the reader.
    pub(crate) async fn run(
        mut self,
        mut batches: mpsc::Receiver<Batch>,
        shutdown: &CancellationToken,
    ) {
        // v1: create the database at once, so that a fresh server has it before any data; if
        // the server is not up yet, this is tried again before the first write.
        if self.prepare(shutdown).await.is_err() {
            return;
        }
        loop {
            let batch = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                batch = batches.recv() => match batch {
                    Some(batch) => batch,
                    None => return,
                },
            };
            if self.deliver(&batch, shutdown).await.is_err() {
                return;
            }
            self.sync(Some((batch.stream, batch.last))).await;
        }
    }

    /// Posts the lines of `batch` that are above the cursor until each is accepted or refused
    /// on its own. Failures are retried with backoff; a refused body is split in halves, each
    /// posted on its own, down to single lines, which are skipped and counted. So a bad line
    /// costs about `2 log2(n)` extra requests and never stalls the rest.
    pub(crate) async fn deliver(
        &mut self,
        batch: &Batch,
        shutdown: &CancellationToken,
    ) -> Result<(), Cancelled> {
        // Ranges of lines still to post, the next on top.
        let mut todo: Vec<Range<usize>> = Vec::with_capacity(64);
        todo.push(0..batch.len());
        while let Some(range) = todo.pop() {
            // A spool overflow may have moved the cursor past some of these lines.
            let start = range
                .start
                .max(batch.first_after(self.acked.get(batch.stream)));
            if start >= range.end {
                continue;
            }
            let range = start..range.end;
            if !self.prepared {
                self.prepare(shutdown).await?;
            }
            let result = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Err(Cancelled),
                result = self.writer.post(batch.body(range.clone())) => result,
            };
            match result {
                Ok(()) => {
                    self.metrics.sink_lines.inc_by(range.len() as u64);
                    self.backoff.reset();
                }
                Err(WriteError::Rejected { status, message }) => {
                    self.metrics.sink_errors.inc();
                    // InfluxDB 1.x counts the points it refused: when that is all of them
                    // (e.g. every point older than the retention policy), splitting would only
                    // find each one again.
                    let all_refused = dropped_points(&message) == Some(range.len());
                    if range.len() == 1 || all_refused {
                        self.stats.refused_lines.inc_by(range.len() as u64);
                        if let Some(suppressed) = self.log_refused.allow() {
                            let body = batch.body(range.start..range.start + 1);
                            let line: String = String::from_utf8_lossy(&body)
                                .trim_end()
                                .chars()
                                .take(LINE_EXCERPT_CHARS)
                                .collect();
                            tracing::error!(
                                status,
                                %message,
                                lines = range.len(),
                                first_line = line,
                                suppressed,
                                "InfluxDB refused lines; skipped them"
                            );
                        }
                    } else {
                        if let Some(suppressed) = self.log_split.allow() {
                            tracing::warn!(
                                status,
                                %message,
                                lines = range.len(),
                                suppressed,
                                "InfluxDB refused a batch; splitting it to find the bad lines"
                            );
                        }
                        let middle = range.start + range.len() / 2;
                        todo.push(middle..range.end);
                        todo.push(range.start..middle);
                    }
                }
                Err(error) => {
                    self.metrics.sink_errors.inc();
                    if matches!(error, WriteError::DatabaseNotFound { .. }) {
                        self.prepared = false;
                    }
                    let delay = self.backoff.next_delay();
                    tracing::warn!(
                        %error,
                        retry_in = ?delay,
                        lines = range.len(),
                        "InfluxDB write failed; retrying"
                    );
                    todo.push(range);
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return Err(Cancelled),
                        () = tokio::time::sleep(delay) => {}
                    }
                    // Meanwhile the backlog grew: keep the spool within its bound.
                    self.sync(None).await;
                }
            }
        }
        Ok(())
    }

    /// `prepare` once; a failure is logged and the write tried anyway (a user without admin
    /// rights cannot `CREATE DATABASE` but may write to an existing one).
    async fn prepare(&mut self, shutdown: &CancellationToken) -> Result<(), Cancelled> {
        let result = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Err(Cancelled),
            result = self.writer.prepare() => result,
        };
        match result {
            Ok(()) => self.prepared = true,
            // The write that follows fails the same way, and says so.
            Err(WriteError::Transport(_)) => {}
            Err(error) => {
                tracing::warn!(%error, "InfluxDB sink: could not create the database");
                self.prepared = true;
            }
        }
        Ok(())
    }

    /// Persists `ack` (the cursor of a delivered batch), updates the queue depth and keeps the
    /// spool within its bound (see [`super::spool`]). Store failures are logged: the cursor
    /// in memory is right, and the next sync persists it.
    pub(crate) async fn sync(&mut self, ack: Option<(Stream, i64)>) {
        let ack = ack.filter(|&(stream, last)| last > self.acked.get(stream));
        if let Some((stream, last)) = ack {
            *self.acked.get_mut(stream) = last;
        }
        let store = Arc::clone(&self.store);
        let acked = self.acked;
        let spool_max_bytes = self.spool_max_bytes;
        let outcome = tokio::task::spawn_blocking(move || {
            // Blocking task: no `.await` while the guard lives. A poisoned lock only means an
            // earlier task panicked mid-update of a cursor, which SQLite has rolled back.
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            sync_store(&mut store, ack, acked, spool_max_bytes)
        })
        .await;
        let outcome = match outcome {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => {
                tracing::warn!(%error, "InfluxDB sink: updating its cursors failed");
                return;
            }
            Err(error) => {
                tracing::error!(%error, "InfluxDB sink: the cursor task failed");
                return;
            }
        };
        self.metrics.sink_queue_depth.set(outcome.depth);
        let dropped = outcome.dropped;
        if dropped != Backlog::default() {
            self.acked = outcome.acked;
            self.stats
                .dropped_rows
                .inc_by(dropped.telemetry + dropped.events);
            tracing::error!(
                dropped_readings = dropped.telemetry,
                dropped_events = dropped.events,
                spool_max_bytes = self.spool_max_bytes,
                "InfluxDB sink: spool full while InfluxDB does not take writes; gave up on \
                 the oldest rows (they stay in the store, not in InfluxDB)"
            );
        }
        self.floors
            .telemetry
            .fetch_max(self.acked.telemetry, Ordering::Relaxed);
        self.floors
            .events
            .fetch_max(self.acked.events, Ordering::Relaxed);
    }
}

/// What [`sync_store`] found and did.
struct SyncOutcome {
    /// Readings behind the telemetry cursor, after any drop.
    depth: i64,
    /// Rows given up on.
    dropped: Backlog,
    /// The cursors after any drop.
    acked: Acked,
}

/// The blocking part of [`Poster::sync`].
fn sync_store(
    store: &mut Store,
    ack: Option<(Stream, i64)>,
    acked: Acked,
    spool_max_bytes: u64,
) -> Result<SyncOutcome, StoreError> {
    if let Some((stream, last)) = ack {
        store.set_cursor(stream.cursor(), last)?;
    }
    let rowid_max = store.telemetry_rowid_max()?;
    let seq_max = store.event_seq_max()?;
    let behind = |max: i64, cursor: i64| u64::try_from(max - cursor).unwrap_or(0);
    let backlog = Backlog {
        telemetry: behind(rowid_max, acked.telemetry),
        events: behind(seq_max, acked.events),
    };
    let dropped = rows_to_drop(backlog, spool_max_bytes);
    let mut after = acked;
    // The drops are at most the backlogs, so these stay within the maxima.
    after.telemetry += dropped.telemetry as i64;
    after.events += dropped.events as i64;
    if dropped.telemetry > 0 {
        store.set_cursor(Stream::Telemetry.cursor(), after.telemetry)?;
    }
    if dropped.events > 0 {
        store.set_cursor(Stream::Events.cursor(), after.events)?;
    }
    Ok(SyncOutcome {
        depth: rowid_max - after.telemetry,
        dropped,
        acked: after,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::AtomicUsize;

    use landport_tracker::Reading;

    use super::*;
    use crate::influx::batch::BatchBuilder;
    use landport_store::TelemetryRow;

    /// A server that refuses any body holding `refuse` (as InfluxDB 1.x does, after writing
    /// the other lines, saying how many it dropped when `count_dropped`), fails the first
    /// `outages` posts, and records the lines it took.
    #[derive(Default)]
    struct FakeServer {
        refuse: &'static str,
        count_dropped: bool,
        outages: AtomicUsize,
        posts: AtomicUsize,
        lines: Mutex<Vec<String>>,
    }

    impl Post for FakeServer {
        fn post(&self, body: Bytes) -> impl Future<Output = Result<(), WriteError>> + Send {
            self.posts.fetch_add(1, Ordering::Relaxed);
            let text = String::from_utf8(body.to_vec()).unwrap();
            let result = if self
                .outages
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                Err(WriteError::Transport("connection refused".into()))
            } else {
                let mut lines = self.lines.lock().unwrap();
                let mut refused = 0;
                for line in text.lines() {
                    if !self.refuse.is_empty() && line.contains(self.refuse) {
                        refused += 1;
                    } else {
                        lines.push(line.to_owned());
                    }
                }
                if refused > 0 {
                    let mut message = "partial write: field type conflict".to_owned();
                    if self.count_dropped {
                        message.push_str(&format!(" dropped={refused}"));
                    }
                    Err(WriteError::Rejected {
                        status: 400,
                        message,
                    })
                } else {
                    Ok(())
                }
            };
            std::future::ready(result)
        }

        fn prepare(&self) -> impl Future<Output = Result<(), WriteError>> + Send {
            std::future::ready(Ok(()))
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        poster: Poster<FakeServer>,
        batch: Batch,
    }

    /// A store holding `n` readings (device `bad` for the indexes in `bad`), the poster of
    /// `server`, and the batch of all readings.
    fn setup(server: FakeServer, n: usize, bad: &[usize]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let rows: Vec<TelemetryRow> = (0..n)
            .map(|i| TelemetryRow {
                tenant: "t".into(),
                device: if bad.contains(&i) { "bad" } else { "ok" }.into(),
                shipment: None,
                reading: Reading::at(i as i64).with_temp(1.0),
                received_ms: 0,
            })
            .collect();
        store.commit(&rows, &[]).unwrap();
        let mut builder = BatchBuilder::new(Stream::Telemetry);
        for (rowid, row) in store.readings_after(0, n).unwrap() {
            builder.push_reading(rowid, &row, std::time::Instant::now());
        }
        let batch = builder.take().unwrap();
        let poster = Poster {
            writer: server,
            store: Arc::new(Mutex::new(store)),
            acked: Acked::default(),
            floors: Arc::new(Floors::default()),
            spool_max_bytes: 1 << 30,
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(2), 1),
            metrics: Metrics::new(),
            stats: Arc::new(SinkStats::default()),
            prepared: false,
            log_split: LogLimiter::new(LOG_INTERVAL),
            log_refused: LogLimiter::new(LOG_INTERVAL),
        };
        Setup {
            _dir: dir,
            poster,
            batch,
        }
    }

    fn cursor(poster: &Poster<FakeServer>) -> i64 {
        poster
            .store
            .lock()
            .unwrap()
            .cursor(Stream::Telemetry.cursor())
            .unwrap()
    }

    #[tokio::test]
    async fn refused_lines_are_isolated_skipped_and_the_rest_delivered() {
        let server = FakeServer {
            refuse: "device=bad",
            ..FakeServer::default()
        };
        let Setup {
            _dir,
            mut poster,
            batch,
        } = setup(server, 100, &[3, 70]);
        let shutdown = CancellationToken::new();
        poster.deliver(&batch, &shutdown).await.unwrap();
        poster.sync(Some((batch.stream, batch.last))).await;
        assert_eq!(poster.stats.refused_lines(), 2);
        assert_eq!(cursor(&poster), 100);
        let lines = poster.writer.lines.lock().unwrap();
        let distinct: HashSet<_> = lines.iter().collect();
        assert_eq!(distinct.len(), 98);
        // each bad line costs a few posts, not one per line
        let posts = poster.writer.posts.load(Ordering::Relaxed);
        assert!(posts <= 1 + 2 * 2 * 7, "{posts} posts");
        assert_eq!(poster.metrics.sink_lines.get(), 98);
    }

    #[tokio::test]
    async fn a_batch_of_nothing_but_bad_lines_ends() {
        let server = FakeServer {
            refuse: "device=bad",
            ..FakeServer::default()
        };
        let all: Vec<usize> = (0..64).collect();
        let Setup {
            _dir,
            mut poster,
            batch,
        } = setup(server, 64, &all);
        poster
            .deliver(&batch, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(poster.stats.refused_lines(), 64);
        assert_eq!(poster.writer.posts.load(Ordering::Relaxed), 127);
    }

    #[tokio::test]
    async fn a_batch_refused_whole_by_count_is_skipped_without_splitting() {
        let server = FakeServer {
            refuse: "device=bad",
            count_dropped: true,
            ..FakeServer::default()
        };
        let bad: Vec<usize> = (0..40).chain(60..64).collect();
        let Setup {
            _dir,
            mut poster,
            batch,
        } = setup(server, 64, &bad);
        poster
            .deliver(&batch, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(poster.stats.refused_lines(), 44);
        let lines = poster.writer.lines.lock().unwrap();
        assert_eq!(lines.iter().collect::<HashSet<_>>().len(), 20);
        // 0..64, then 0..32 (all bad: skipped whole), 32..64, 32..48, 32..40 (all bad), 40..48,
        // 48..64, 48..56, 56..64, 56..60, 60..64 (all bad)
        assert_eq!(poster.writer.posts.load(Ordering::Relaxed), 11);
    }

    #[tokio::test]
    async fn failures_are_retried_and_the_cursor_waits_for_the_acceptance() {
        let server = FakeServer {
            outages: AtomicUsize::new(3),
            ..FakeServer::default()
        };
        let Setup {
            _dir,
            mut poster,
            batch,
        } = setup(server, 10, &[]);
        let shutdown = CancellationToken::new();
        poster.deliver(&batch, &shutdown).await.unwrap();
        assert_eq!(cursor(&poster), 0, "not before the acknowledgement");
        poster.sync(Some((batch.stream, batch.last))).await;
        assert_eq!(cursor(&poster), 10);
        assert_eq!(poster.metrics.sink_errors.get(), 3);
        assert_eq!(poster.writer.lines.lock().unwrap().len(), 10);
        assert_eq!(poster.metrics.sink_queue_depth.get(), 0);
    }

    #[tokio::test]
    async fn shutdown_abandons_a_batch_without_moving_the_cursor() {
        let server = FakeServer {
            outages: AtomicUsize::new(usize::MAX),
            ..FakeServer::default()
        };
        let Setup {
            _dir,
            mut poster,
            batch,
        } = setup(server, 10, &[]);
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert!(poster.deliver(&batch, &shutdown).await.is_err());
        assert_eq!(cursor(&poster), 0);
    }

    #[tokio::test]
    async fn an_overflowing_spool_gives_up_the_oldest_rows_and_sends_the_rest() {
        let server = FakeServer {
            outages: AtomicUsize::new(1),
            ..FakeServer::default()
        };
        let Setup {
            _dir,
            mut poster,
            batch,
        } = setup(server, 1_000, &[]);
        // 1,000 readings x 100 B against 50,000 B: 550 go, down to 90 %
        poster.spool_max_bytes = 50_000;
        poster
            .deliver(&batch, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(poster.stats.dropped_rows(), 550);
        assert_eq!(cursor(&poster), 550);
        assert_eq!(poster.writer.lines.lock().unwrap().len(), 450);
        assert_eq!(poster.floors.telemetry.load(Ordering::Relaxed), 550);
    }
}
