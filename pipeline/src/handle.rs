//! [`TrackerHandle`]: how other tasks (the HTTP API) reach the live state. Writes are
//! [`Command`]s executed on the pipeline's task between batches, which publish the read side
//! before they answer; reads go to the read side and never wait for that task.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use landport_store::Store;
use landport_tracker::{LiveView, TimestampMs};
use tokio::sync::{mpsc, oneshot};

use crate::command::{self, Command, CommandError, Outcome};
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
/// so the caller's next read sees what it did. The pipeline's task receives these.
pub type Job = Box<dyn FnOnce(&mut Core, &mut ReadSide) + Send>;

/// Cheap handle to the live state for other tasks.
#[derive(Clone)]
pub struct TrackerHandle {
    tx: mpsc::Sender<Job>,
    live: LiveReader,
}

impl TrackerHandle {
    /// A handle whose jobs arrive on the returned receiver (the pipeline's task runs them)
    /// and whose reads go to `live`.
    pub fn new(live: LiveReader) -> (TrackerHandle, mpsc::Receiver<Job>) {
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

    /// Executes `command` on the pipeline's task between batches ([`command::execute`]:
    /// validated by the tracker, written to `store` in one transaction, then applied) and
    /// publishes the read side before it answers, so the caller's next read sees it.
    /// [`CommandError::Stopped`] if the pipeline has stopped.
    ///
    /// `store` is the caller's writer connection: it is locked on the pipeline's task for the
    /// one short transaction of the command (a std `Mutex`, never held across an `.await`).
    pub async fn execute(
        &self,
        store: &Arc<Mutex<Store>>,
        command: Command,
    ) -> Result<Outcome, CommandError> {
        let store = store.clone();
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |core, read_side| {
            let r = {
                let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
                command::execute(core, &mut store, command, now_ms())
            };
            read_side.publish(core.tracker());
            let _ = tx.send(r);
        });
        self.tx.send(job).await.map_err(|_| CommandError::Stopped)?;
        rx.await.map_err(|_| CommandError::Stopped)?
    }

    /// Runs `f` on the core (and its tracker) between batches; `None` if the pipeline has
    /// stopped. For what is not a [`Command`]: tests, and tools feeding readings.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let cmd: Job = Box::new(move |core, read_side| {
            let r = f(core);
            read_side.publish(core.tracker());
            let _ = tx.send(r);
        });
        self.tx.send(cmd).await.ok()?;
        rx.await.ok()
    }
}
