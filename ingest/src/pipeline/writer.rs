//! The store writer: a thread that owns the SQLite write connection, commits each batch in one
//! transaction, and only then hands the batch's acknowledgements back. A failed commit is
//! retried with backoff while the pipeline waits (backpressure), never dropped.

use std::sync::Arc;
use std::time::Duration;

use landport_tracker::Event;
use tokio::sync::{Notify, broadcast, mpsc};

use crate::metrics::Metrics;
use crate::pipeline::ingestor::{DeadLetter, Output};
use crate::store::Store;

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
    /// Delete telemetry received before this server time (retention).
    Prune(i64),
}

/// What the writer releases once a batch is durable.
#[derive(Debug)]
pub struct Durable<A> {
    pub acks: Vec<A>,
    pub dead_letters: Vec<DeadLetter>,
}

/// Runs the writer until the pipeline drops its sender; returns the store.
pub fn run<A: Send + 'static>(
    mut store: Store,
    mut rx: mpsc::Receiver<WriterMsg<A>>,
    durable: mpsc::Sender<Durable<A>>,
    events: broadcast::Sender<Arc<Event>>,
    outbox: Arc<Notify>,
    metrics: Arc<Metrics>,
) -> Store {
    let mut last_rowid = store.telemetry_rowid_max().unwrap_or(0);
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            WriterMsg::Batch {
                output,
                acks,
                oldest_ms,
            } => {
                let mut backoff = Duration::from_millis(50);
                let committed = loop {
                    match store.commit(&output.rows, &output.events) {
                        Ok(c) => break c,
                        Err(e) => {
                            metrics.commit_errors.inc();
                            tracing::error!(error = %e, "store commit failed; retrying");
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                };
                metrics.commits.inc();
                last_rowid = committed.last_rowid;
                let lag_ms = (super::now_ms() - oldest_ms).max(0);
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
            WriterMsg::Prune(cutoff_ms) => match store.prune_telemetry(cutoff_ms) {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned telemetry past retention"),
                Err(e) => tracing::error!(error = %e, "pruning telemetry failed"),
            },
            WriterMsg::Snapshot(bytes) => {
                if let Err(e) = store.save_snapshot(&bytes, last_rowid) {
                    tracing::error!(error = %e, "saving the tracker snapshot failed");
                }
            }
        }
    }
    store
}
