//! What the `/v1` handlers share: store connections, the tracker handle, the admin key.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use landport_ingest::pipeline::{Ingestor, TrackerHandle};
use landport_ingest::store::{KeyHash, Store, StoreError};
use landport_tracker::Event;
use tokio::sync::broadcast;

use crate::error::ApiError;

/// State of the `/v1` routes. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    /// The API's own store connections (the pipeline keeps its own writer).
    db: Db,
    /// Runs closures on the live tracker between pipeline batches.
    tracker: TrackerHandle,
    /// SHA-256 of the admin key; `None` = no admin key configured (demo mode).
    admin_key: Option<KeyHash>,
    /// Live events, for the SSE stream.
    events: broadcast::Sender<Arc<Event>>,
}

impl ApiState {
    /// Opens the API's store connections in `store_dir` (one writer, one reader) and keeps the
    /// handles the binary has. An empty `admin_key` counts as none.
    pub fn new(
        store_dir: &Path,
        tracker: TrackerHandle,
        events: broadcast::Sender<Arc<Event>>,
        admin_key: Option<&str>,
    ) -> Result<ApiState, StoreError> {
        // The writer first: it creates and migrates the database the reader needs.
        let writer = Store::open(store_dir)?;
        let reader = writer.reader()?;
        Ok(ApiState {
            inner: Arc::new(Inner {
                db: Db {
                    writer: Arc::new(Mutex::new(writer)),
                    reader: Arc::new(Mutex::new(reader)),
                },
                tracker,
                admin_key: admin_key.filter(|k| !k.is_empty()).map(KeyHash::of),
                events,
            }),
        })
    }

    pub(crate) fn admin_key(&self) -> Option<&KeyHash> {
        self.inner.admin_key.as_ref()
    }

    /// Runs `f` on the store's read connection on a blocking thread.
    pub(crate) async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let conn = self.inner.db.reader.clone();
        blocking(move || {
            // A std Mutex, locked and released inside this blocking closure: never held
            // across an `.await`.
            let store = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&store)
        })
        .await
    }

    /// Runs `f` on the API's write connection on a blocking thread.
    pub(crate) async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let conn = self.inner.db.writer.clone();
        blocking(move || {
            // As in `read`: locked only inside the blocking closure, never across `.await`.
            let mut store = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut store)
        })
        .await
    }

    /// A receiver of the live events from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.subscribe()
    }

    /// Runs `f` on the live ingestor (and its tracker) between batches.
    pub(crate) async fn tracker<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ingestor) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        self.inner
            .tracker
            .call(f)
            .await
            .ok_or(ApiError::Unavailable)
    }
}

/// The store connections. One of each for now; SQLite's WAL lets the reader run beside both
/// writers (ours and the pipeline's). A pool is the next step if reads queue up.
struct Db {
    writer: Arc<Mutex<Store>>,
    reader: Arc<Mutex<Store>>,
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> Result<R, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::Internal(format!("store task failed: {e}"))),
    }
}
