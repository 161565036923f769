//! The InfluxDB sink (SPEC 7): every stored reading and event, as line protocol, to InfluxDB
//! 1.x (`/write`) or anything speaking the v2 write API (InfluxDB 2.x, 3.x, Cloud,
//! VictoriaMetrics).
//!
//! # Data flow
//!
//! ```text
//! store (telemetry rowids, event seqs)
//!   -> reader thread: rows after the cursors -> line protocol -> batches   (own connection)
//!   -> [bounded channel, 1 batch]
//!   -> poster task: POST, retry with backoff, split refused batches
//!   -> cursors `influx_telemetry` / `influx_events` moved once InfluxDB said 2xx
//! ```
//!
//! The store is the spool: the sink never holds rows of its own, it tails what the pipeline
//! committed. While InfluxDB is down, rows wait in SQLite behind the cursors, and a restart of
//! the service resumes from the persisted cursors. A crash between a write and its cursor
//! update writes that batch again, which InfluxDB absorbs (a point with the same measurement,
//! tags and time is overwritten, not doubled). Tracking never waits on InfluxDB: the pipeline
//! does not know the sink exists.
//!
//! - A batch is posted when it holds `batch_max_lines` lines, or `flush_interval` after its
//!   first row was read. Readings and events go in batches of their own (one cursor each).
//! - A failed write (no answer, 401/403, 404, 429, 5xx) is retried with exponential backoff
//!   and jitter, up to `retry_max_delay` between attempts, for as long as it takes. A cursor
//!   never moves before InfluxDB accepted the lines behind it.
//! - A refused write (400, 413, 422) is a data problem, not an outage: the batch is split in
//!   halves until the bad lines stand alone; they are logged with the server's message,
//!   skipped and counted ([`SinkStats::refused_lines`]); every other line is delivered. When
//!   InfluxDB 1.x reports that it dropped every point of a body (e.g. all older than the
//!   retention policy), the body is skipped whole instead of split. 401/403 are *not* treated
//!   so, although they are 4xx: a wrong token would otherwise discard every reading as "bad
//!   data".
//! - A stored event that this build cannot decode (written by a newer one) is stepped over and
//!   counted ([`SinkStats::undecodable_skips`]) rather than stalling the sink.
//! - The spool is bounded by `spool_max_bytes` (see [`spool`]): past it, the oldest rows are
//!   given up (still in the store, not in InfluxDB) and counted ([`SinkStats::dropped_rows`]).
//!
//! Metrics: `sink_lines` (lines accepted), `sink_errors` (failed or refused posts),
//! `sink_queue_depth` (readings behind the telemetry cursor).
//!
//! # Layout
//!
//! - [`line`](mod@line): the line protocol encoder (pure, unit-tested, benched in
//!   `benches/sink.rs`).
//! - `batch`: batches of lines and the cursors they move.
//! - `reader`: the blocking thread that reads the store and fills batches.
//! - `driver`: [`InfluxSink`] and its poster (retries, splitting, cursors).
//! - [`client`]: HTTP (reqwest), v1 and v2.
//! - [`landport_pipeline::backoff`], [`spool`]: the pure rules for retry delays and the spool bound.
//!
//! # Wiring (the binary)
//!
//! This crate does not depend on `landport-config`; the binary maps the `[influxdb]` section,
//! whose `InfluxDbConfig::default` is the one place the batching defaults are written down:
//!
//! ```ignore
//! let c: &landport_config::InfluxDbConfig = ...;
//! let api = match c.api {
//!     InfluxApi::V1 => WriteApi::V1 {
//!         database: c.database.clone(),
//!         credentials: c.v1_credentials().map(|(u, p)| (u.to_owned(), p.to_owned())),
//!     },
//!     InfluxApi::V2 => WriteApi::V2 {
//!         org: c.org.clone(),
//!         bucket: c.bucket.clone(),
//!         token: c.token.expose().to_owned(),
//!     },
//! };
//! let sink_config = SinkConfig::new(
//!     &c.url,
//!     api,
//!     NonZeroUsize::new(c.batch_max_lines).unwrap_or(NonZeroUsize::MIN),
//!     c.flush_interval(),
//!     c.spool_max_bytes,
//! );
//! let sink = InfluxSink::new(sink_config, &storage_dir, metrics.clone())?;
//! tasks.spawn(sink.run(shutdown.clone()));
//! ```

mod batch;
pub mod client;
mod driver;
pub mod line;
mod reader;
pub mod spool;

use std::num::NonZeroUsize;
use std::time::Duration;

pub use batch::{EVENTS_CURSOR, TELEMETRY_CURSOR};
pub use client::{InfluxWriter, WriteApi, WriteError};
pub use driver::InfluxSink;

use landport_store::StoreError;
use prometheus_client::metrics::counter::Counter;

use landport_pipeline::metrics::Metrics;

/// Default of [`SinkConfig::retry_initial_delay`].
pub const DEFAULT_RETRY_INITIAL_DELAY: Duration = Duration::from_millis(200);
/// Default of [`SinkConfig::retry_max_delay`].
pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(30);
/// Default of [`SinkConfig::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the sink; the binary builds it from `landport_config::InfluxDbConfig` (see the
/// module docs).
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Base URL of the server, `http://` or `https://`.
    pub url: String,
    /// Write API and its destination and credentials.
    pub api: WriteApi,
    /// A batch is posted once it holds this many lines...
    pub batch_max_lines: NonZeroUsize,
    /// ... or once its first row has waited this long.
    pub flush_interval: Duration,
    /// Bound of the backlog behind the cursors, bytes (estimated, see [`spool`]).
    pub spool_max_bytes: u64,
    /// Delay before the first retry of a failed write; it doubles with each failure...
    pub retry_initial_delay: Duration,
    /// ... up to this (jitter makes each wait between half and all of it).
    pub retry_max_delay: Duration,
    /// A request without an answer after this long has failed (and is retried).
    pub request_timeout: Duration,
}

impl SinkConfig {
    /// The settings for `url` and `api` with the batching and spool bound given (the
    /// `[influxdb]` section's, whose defaults are written down there only), and the retry
    /// delays and request timeout at the sink's own defaults.
    pub fn new(
        url: impl Into<String>,
        api: WriteApi,
        batch_max_lines: NonZeroUsize,
        flush_interval: Duration,
        spool_max_bytes: u64,
    ) -> SinkConfig {
        SinkConfig {
            url: url.into(),
            api,
            batch_max_lines,
            flush_interval,
            spool_max_bytes,
            retry_initial_delay: DEFAULT_RETRY_INITIAL_DELAY,
            retry_max_delay: DEFAULT_RETRY_MAX_DELAY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// What the sink gave up, as counters of the shared registry ([`SinkStats::registered`]:
/// `/metrics` shows them) or of its own ([`SinkStats::default`], for tests).
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Rows (readings and events) given up by the spool bound.
    pub(crate) dropped_rows: Counter,
    /// Lines that InfluxDB refused on their own (e.g. a field type conflict).
    pub(crate) refused_lines: Counter,
    /// Times the reader stepped over stored events it could not decode.
    pub(crate) undecodable_skips: Counter,
}

impl SinkStats {
    /// The counters registered in `metrics` (`landport_influxdb_*_total`).
    pub fn registered(metrics: &Metrics) -> SinkStats {
        SinkStats {
            dropped_rows: metrics.sink_dropped_rows.clone(),
            refused_lines: metrics.sink_refused_lines.clone(),
            undecodable_skips: metrics.sink_undecodable_skips.clone(),
        }
    }

    /// Rows given up because the backlog exceeded `spool_max_bytes`.
    pub fn dropped_rows(&self) -> u64 {
        self.dropped_rows.get()
    }

    /// Lines InfluxDB refused (400, 413, 422) on their own, which were skipped.
    pub fn refused_lines(&self) -> u64 {
        self.refused_lines.get()
    }

    /// Times the reader stepped over stored events that this build cannot decode (e.g. written
    /// by a newer one); each time one or more consecutive events, whose seqs the error log
    /// names. They are not in InfluxDB.
    pub fn undecodable_skips(&self) -> u64 {
        self.undecodable_skips.get()
    }
}

/// Why the sink cannot be built or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// `influxdb.url` is not an `http(s)://` URL.
    #[error("influxdb.url: {0}")]
    InvalidUrl(String),
    #[error("building the HTTP client: {0}")]
    HttpClient(String),
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    /// A blocking task of the sink panicked.
    #[error("InfluxDB sink task: {0}")]
    Task(String),
}

#[cfg(test)]
mod stats_tests {
    use super::*;

    #[test]
    fn the_influxdb_sinks_losses_are_in_the_exposition() {
        let m = Metrics::new();
        let stats = SinkStats::registered(&m);
        stats.dropped_rows.inc_by(550);
        stats.refused_lines.inc_by(2);
        stats.undecodable_skips.inc();
        let text = m.render();
        for line in [
            "landport_influxdb_dropped_rows_total 550",
            "landport_influxdb_refused_lines_total 2",
            "landport_influxdb_undecodable_skips_total 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(stats.dropped_rows(), 550);
    }
}
