//! [`TrackerHandle`]: how other tasks (the HTTP API) reach the live state. Commands (writes)
//! run on the pipeline's task between batches and publish the read side before they answer;
//! reads go to the read side and never wait for that task.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use landport_tracker::{LiveView, TimestampMs};
use tokio::sync::{mpsc, oneshot};

use crate::core::Core;
use crate::read_side::{LiveReader, ReadSide};

/// Server time, epoch milliseconds.
pub fn now_ms() -> TimestampMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as TimestampMs)
        .unwrap_or(0)
}

/// A closure run on the core between batches; it publishes the read side before it answers,
/// so the caller's next read sees what it did.
pub type Command = Box<dyn FnOnce(&mut Core, &mut ReadSide) + Send>;

/// Cheap handle to the live state for other tasks.
#[derive(Clone)]
pub struct TrackerHandle {
    tx: mpsc::Sender<Command>,
    live: LiveReader,
}

impl TrackerHandle {
    /// A handle whose commands arrive on the returned receiver (the pipeline's task runs
    /// them) and whose reads go to `live`.
    pub fn new(live: LiveReader) -> (TrackerHandle, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(256);
        (TrackerHandle { tx, live }, rx)
    }

    /// A handle to a core served by a task of its own, with no MQTT or store around it: for
    /// the API's tests, and tools that need the tracker alone. Must be called inside a tokio
    /// runtime; the task ends when every handle is dropped.
    pub fn standalone(mut core: Core) -> TrackerHandle {
        let mut read_side = ReadSide::new(core.tracker(), ReadSide::DEFAULT_EVERY);
        let (handle, mut rx) = TrackerHandle::new(read_side.reader());
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                cmd(&mut core, &mut read_side);
            }
        });
        handle
    }

    /// The latest published view of the live state.
    pub fn live(&self) -> Arc<LiveView> {
        self.live.current()
    }

    /// A reader of the read side that can wait for the next view (live streams).
    pub fn reader(&self) -> LiveReader {
        self.live.clone()
    }

    /// Runs `f` on the core (and its tracker) between batches; `None` if the pipeline has
    /// stopped.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let cmd: Command = Box::new(move |core, read_side| {
            let r = f(core);
            read_side.publish(core.tracker());
            let _ = tx.send(r);
        });
        self.tx.send(cmd).await.ok()?;
        rx.await.ok()
    }
}
