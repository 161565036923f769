//! What the `/v1` handlers share: store connections, the tracker handle, the admin key and
//! the remembered tenant keys.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use landport_pipeline::{Command, Outcome, TrackerHandle};
use landport_store::{KeyHash, Store, StoreError};
use landport_tracker::Event;
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::limits::{Limits, RateLimiter, StreamSlot, StreamSlots, TenantQuota};

/// State of the `/v1` routes. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
    /// Cluster mode: honors the registry log's replication headers
    /// ([`ApiState::trust_replication_headers`]).
    replicated: bool,
    /// Cluster mode: which devices this API answers for (see [`ApiState::with_owns`]).
    owns: Option<Owns>,
    /// The large reads' CPU while ingest is busy (see [`ApiState::with_reader_cpu_percent`]).
    budget: Arc<crate::budget::ReaderBudget>,
}

/// Whether a device `(tenant, device)` belongs to this API's partition (cluster mode).
pub type Owns = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

struct Inner {
    /// The API's own store connections (the pipeline keeps its own writer).
    db: Db,
    /// Executes commands (writes) on the pipeline's task; the latest published view (reads).
    tracker: TrackerHandle,
    /// SHA-256 of the admin key; `None` = no admin key configured (demo mode).
    admin_key: Option<KeyHash>,
    /// Tenant keys that were valid when last looked up.
    keys: Mutex<KeyCache>,
    /// Key lookups that reached the store (the rest were answered from `keys`).
    key_reads: std::sync::atomic::AtomicU64,
    /// Live events, for the SSE stream.
    events: broadcast::Sender<Arc<Event>>,
    /// The live maps' shared positions feeds.
    positions: crate::v1::positions_feed::PositionsHub,
    /// Per-tenant quotas, the per-key rate, the live streams' cap.
    limits: Limits,
    /// Requests per API key and per share token.
    rate: RateLimiter,
    /// Open live streams per tenant.
    streams: Arc<StreamSlots>,
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
        ApiState::with_limits(store_dir, tracker, events, admin_key, Limits::default())
    }

    /// [`ApiState::new`] with the `[limits]` the binary read from the config.
    pub fn with_limits(
        store_dir: &Path,
        tracker: TrackerHandle,
        events: broadcast::Sender<Arc<Event>>,
        admin_key: Option<&str>,
        limits: Limits,
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
                keys: Mutex::default(),
                key_reads: Default::default(),
                events,
                positions: Default::default(),
                rate: RateLimiter::new(&limits),
                streams: StreamSlots::new(limits.sse_connections),
                limits,
            }),
            replicated: false,
            owns: None,
            budget: Arc::new(crate::budget::ReaderBudget::unlimited()),
        })
    }

    /// While ingest is busy, the large reads (position boxes, live maps' positions) may use
    /// `percent` of one core and wait beyond it (`http.reader_cpu_percent`; 0: no limit, the
    /// default of [`ApiState::new`]). See `budget`.
    pub fn with_reader_cpu_percent(mut self, percent: u32) -> ApiState {
        let load = self.inner.tracker.reader().ingest_load();
        self.budget = Arc::new(crate::budget::ReaderBudget::new(percent, load));
        self
    }

    /// The readers' CPU budget: large reads pass its gate before each piece.
    pub(crate) fn reader_budget(&self) -> &crate::budget::ReaderBudget {
        &self.budget
    }

    /// Cluster mode: this API is one partition's ("shard") and answers reads only for the
    /// devices `owns` accepts. Every shard stores the whole registry (registry writes are
    /// replicated to all), so without the filter a merge of every shard's answer would hold
    /// each device once per shard. Filtered: device lists and a device's reads (another
    /// partition's device is a 404), shipment lists and reads (a shipment belongs to its
    /// device's partition: every shipment names one, so it has a partition before the device
    /// ever reports), positions, nearby and a geofence's devices; event lists carry each
    /// event's cursor (`cursors`) for the front's composite cursor. Writes are not filtered:
    /// every shard applies every one.
    pub fn with_owns(mut self, owns: Owns) -> ApiState {
        self.owns = Some(owns);
        self
    }

    /// Whether this API answers for the device (always, outside cluster mode).
    pub(crate) fn owns(&self, tenant: &str, device: &str) -> bool {
        self.owns.as_ref().is_none_or(|f| f(tenant, device))
    }

    /// The partition filter, if this API is a shard's.
    pub(crate) fn owner(&self) -> Option<Owns> {
        self.owns.clone()
    }

    /// Cluster mode: this API is a shard's, and applies the entries of the replicated registry
    /// log, whose ids, keys, secrets, tokens and times come from the entry's
    /// `x-landport-seed` and `x-landport-now` headers ([`crate::replicated`]) so that every
    /// shard writes the same rows. Only for the router the registry log feeds: an API without
    /// it ignores those headers.
    pub fn trust_replication_headers(mut self) -> ApiState {
        self.replicated = true;
        self
    }

    /// Whether this API honors the replication headers.
    pub(crate) fn trusts_replication_headers(&self) -> bool {
        self.replicated
    }

    /// Sets what the commits of the API's write connection (registry, keys, share links) wait
    /// for: the binary passes `storage.synchronous`, as for the pipeline's connection.
    pub fn set_synchronous(&self, mode: landport_store::Synchronous) -> Result<(), StoreError> {
        // A std Mutex held for one PRAGMA, never across an `.await`.
        self.inner
            .db
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_synchronous(mode)
    }

    pub(crate) fn admin_key(&self) -> Option<&KeyHash> {
        self.inner.admin_key.as_ref()
    }

    /// The quotas and rates in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Counts a request of the key (or share token) whose hash is `hash`; the 429 past its rate.
    pub(crate) fn check_rate(&self, hash: &KeyHash, what: &str) -> Result<(), ApiError> {
        if crate::replicated::is_replicated() {
            // Held where the request came in; a 429 here would make the shards diverge.
            return Ok(());
        }
        self.inner.rate.check(&hash.0, what)
    }

    /// A slot for a live stream of `tenant` (`""`: an admin's over every tenant), or the 429.
    pub(crate) fn stream_slot(&self, tenant: &str) -> Result<StreamSlot, ApiError> {
        self.inner.streams.acquire(tenant)
    }

    /// The 422 if `tenant` already has as many as `quota` allows; call before a create. Two
    /// creates at once may both pass with one left: a quota bounds growth, it is no ledger.
    pub async fn check_quota(&self, quota: TenantQuota, tenant: &str) -> Result<(), ApiError> {
        let max = quota.max(&self.inner.limits);
        let t = tenant.to_owned();
        let count = self
            .read(move |st| match quota {
                TenantQuota::Devices => st.count_devices(&t),
                TenantQuota::Geofences => st.count_geofences(&t),
                TenantQuota::ShipmentsActive => st.count_active_shipments(&t),
            })
            .await?;
        if u64::try_from(count).unwrap_or(0) >= max {
            return Err(quota.exceeded(tenant, max));
        }
        Ok(())
    }

    /// The tenant of a valid (not revoked) tenant key, by its hash.
    ///
    /// Valid keys are remembered, so that most requests skip a SQLite read and the hop to a
    /// blocking thread (a third of `/eta`'s cost in the bench). Revocation goes through
    /// [`ApiState::forget_key`]; keys are only ever revoked through this API, in this process.
    pub(crate) async fn key_tenant(&self, hash: KeyHash) -> Result<Option<String>, ApiError> {
        let now = Instant::now();
        let generation = {
            let cache = self.key_cache();
            if let Some((_, tenant)) = cache.valid.get(&hash) {
                return Ok(Some(tenant.clone()));
            }
            if cache.invalid.get(&hash).is_some_and(|until| *until > now) {
                return Ok(None);
            }
            cache.generation
        };
        self.inner
            .key_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let found = self.read(move |s| s.lookup_key_hash(&hash)).await?;
        if found.is_none() {
            self.key_cache().remember_invalid(hash, now);
        }
        if let Some((key_id, tenant)) = &found {
            let mut cache = self.key_cache();
            // A revocation since the read started may concern this very key: don't remember it.
            if cache.generation == generation {
                if cache.valid.len() >= KEY_CACHE_MAX {
                    cache.valid.clear();
                }
                cache.valid.insert(hash, (key_id.clone(), tenant.clone()));
            }
        }
        Ok(found.map(|(_, tenant)| tenant))
    }

    fn key_cache(&self) -> MutexGuard<'_, KeyCache> {
        // Held for a map operation only, never across an `.await`.
        self.inner
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets a tenant key, and stops lookups already under way from remembering it. Call it
    /// before revoking in the store (so no lookup caches it meanwhile) and after.
    /// How many bearer-key lookups have reached the store since start (tests, metrics).
    pub fn key_store_reads(&self) -> u64 {
        self.inner
            .key_reads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets that a key was found invalid: it has just been created.
    pub(crate) fn key_created(&self, hash: &KeyHash) {
        self.key_cache().invalid.remove(hash);
    }

    pub(crate) fn forget_key(&self, tenant: &str, key_id: &str) {
        let mut cache = self.key_cache();
        cache.generation += 1;
        cache
            .valid
            .retain(|_, (k, t)| !(k.as_str() == key_id && t.as_str() == tenant));
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

    /// The shared positions feeds of the live stream.
    pub(crate) fn positions_hub(&self) -> &crate::v1::positions_feed::PositionsHub {
        &self.inner.positions
    }

    /// The latest published view of the live state: reads never wait for the pipeline.
    pub(crate) fn live(&self) -> Arc<landport_tracker::LiveView> {
        self.inner.tracker.live()
    }

    /// Executes a write to live state on the pipeline's task: validated by the tracker,
    /// stored through the API's writer connection in one transaction, then applied to the
    /// tracker, and the read side published before it answers ([`TrackerHandle::execute`]).
    /// The command's errors become the API's (400, 404, 409, 500, 503); a handler adds
    /// context where it has some.
    pub(crate) async fn command(
        &self,
        command: Command,
    ) -> Result<Outcome, landport_pipeline::CommandError> {
        let Some(now) = crate::replicated::replicated_now() else {
            return self
                .inner
                .tracker
                .execute(&self.inner.db.writer, command)
                .await;
        };
        // A replicated entry: the same steps, at the entry's time rather than the clock's.
        let store = self.inner.db.writer.clone();
        self.inner
            .tracker
            .call(move |core| {
                let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
                landport_pipeline::command::execute(core, &mut store, command, now)
            })
            .await
            .unwrap_or(Err(landport_pipeline::CommandError::Stopped))
    }

    /// Runs `f` on the live core between batches (the tests feed readings with it).
    #[cfg(test)]
    pub(crate) async fn tracker<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut landport_pipeline::Core) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        self.inner
            .tracker
            .call(f)
            .await
            .ok_or(ApiError::Unavailable)
    }
}

/// At most this many keys are remembered; past it, the cache starts over.
const KEY_CACHE_MAX: usize = 10_000;

/// How long a key found invalid is answered 401 without asking the store again. Short: a key
/// created by another process (the CLI) works after at most this long.
const INVALID_KEY_TTL: Duration = Duration::from_secs(5);

/// Valid tenant keys by hash: (key id, tenant). `generation` counts revocations. `invalid`:
/// keys the store did not know, until when that answer stands, so that a client repeating a
/// bad key costs no store read per request; bounded by [`KEY_CACHE_MAX`] too.
#[derive(Default)]
struct KeyCache {
    valid: HashMap<KeyHash, (String, String)>,
    generation: u64,
    invalid: HashMap<KeyHash, Instant>,
}

impl KeyCache {
    fn remember_invalid(&mut self, hash: KeyHash, now: Instant) {
        if self.invalid.len() >= KEY_CACHE_MAX {
            self.invalid.retain(|_, until| *until > now);
            if self.invalid.len() >= KEY_CACHE_MAX {
                self.invalid.clear();
            }
        }
        self.invalid.insert(hash, now + INVALID_KEY_TTL);
    }
}

/// The store connections. One of each for now; SQLite's WAL lets the reader run beside both
/// writers (ours and the pipeline's). A pool is the next step if reads queue up.
struct Db {
    /// Locked on a blocking thread by [`ApiState::write`] and on the pipeline's task by
    /// [`ApiState::command`], each for one short transaction and never across an `.await`.
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
