//! The replicated registry log: how registry writes reach every shard, in the same order.
//!
//! Every HTTP request that is not a GET or HEAD (tenants, keys, devices, credentials,
//! geofences, shipments, share links, webhooks, replays) is a registry write. The instance
//! that takes one hands it to its [`Replicator`] ([`WriteLog`]), which appends it as one entry
//! to the JetStream stream [`STREAM`] (subject [`ENTRY_SUBJECT`]): the request as
//! [`WireRequest::to_nats`] carries it, plus
//! - [`SEED`]: 32 random bytes in hex, from which the shards derive every id, key, password,
//!   secret and token the request makes (`landport_api::replicated`),
//! - [`NOW`]: the submitter's server time, epoch milliseconds: the request's write times,
//! - [`ORIGIN`]: the submitter's instance id, and [`ENTRY`]: a unique entry id, also the
//!   `Nats-Msg-Id` (JetStream drops a second copy of a publish the submitter repeats).
//!
//! Every shard (a partition's complete core) runs a [`ShardApplier`]: it reads the stream in
//! order from the entry after the last one its store applied, runs each entry through the
//! shard's own router (whose `ApiState` trusts the replication headers), records the entry's
//! sequence in its store, and publishes the response to `lpreg.done.{origin}.{entry}`. The
//! submitter's [`Replicator`] has one subscription on `lpreg.done.{instance}.>` and answers the
//! client with a shard's response (each says its partition, [`PARTITION`]):
//! - a device's write (`/v1/devices/{id}...`, `POST /v1/devices`) or a shipment's: the answer
//!   of the shard of the device's partition (computed from the answer's `x-landport-tenant`
//!   and the device id, the shipment's from the answer's `device`), since only that shard has
//!   the device's live state (position, online, a shipment's progress) for the answer, and
//!   only there does a device known from its telemetry alone exist (deleting one is a 204
//!   there and a 404 everywhere else);
//! - a webhook replay (`POST /v1/webhooks/{id}/replay`): every shard queues its own
//!   partition's events, so the answer waits for every partition and sums their `queued`;
//! - any other write: the first success (2xx);
//! - otherwise, once every partition has answered (or the timeout has passed): the first
//!   success, else the first failure.
//!
//! Since every shard applies the same entries in the same order with the same seed and time,
//! every shard's store holds the same registry rows, and a shard started later (a new owner
//! of a partition, rebuilt from NATS) reads the log from its start and reaches the same state.
//! A replicated entry also skips the per-key rate on the shards (the API does that), so that
//! no shard refuses with a 429 what another applies.
//!
//! The log holds secrets, kept as long as the log: each entry's seed, from which the keys,
//! device passwords, webhook secrets and share tokens that write made can be derived, and the
//! hash of the caller's key (which the shards authenticate the entry by; the key itself is
//! not kept). Whoever may
//! read the stream `LANDPORT_REGISTRY` or subscribe to `lpreg.>` must be trusted like
//! whoever may read the stores' files: NATS accounts or permissions keep everyone else out.
//!
//! What stays a partition's own, by design (it derives from the partition's telemetry, which
//! only its shard has): events, and so webhook deliveries (each shard delivers the events of
//! its own partition; a webhook's `start_seq` and health are per shard; a replay queues each
//! shard's own events); a device's and a shipment's live state (answers come from the owner,
//! see above); and the `status` a `PATCH /v1/shipments/{id}` without `status` stores, which
//! keeps the local tracker's progress (in transit, arrived: the owner's is the real one,
//! other shards keep what they had; every value is an active status, so the active-shipment
//! quota counts the same everywhere, and a rebuilt owner merges the stored status with the
//! one its replay reaches). Delivery ids (`dlv_N`) are numbered per shard, so
//! `POST /v1/webhooks/{id}/deliveries/{delivery_id}/retry` must go to the shard whose delivery
//! it is, not through this log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use axum::http::{HeaderValue, StatusCode};
use futures_util::StreamExt;
use landport_api::auth::TenantSlot;
use landport_store::Store;
use serde_json::json;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::serve::TENANT_HEADER;
use crate::wire::{WireRequest, WireResponse, WriteLog};

/// The JetStream stream of registry entries.
pub const STREAM: &str = "LANDPORT_REGISTRY";
/// The subject registry entries are published to (the stream's only subject).
pub const ENTRY_SUBJECT: &str = "lpreg.entry";
/// Shards publish an applied entry's response to `{DONE_PREFIX}.{origin}.{entry}`; not part
/// of the stream.
pub const DONE_PREFIX: &str = "lpreg.done";
/// Header of an entry: its seed, 32 random bytes in hex.
pub const SEED: &str = landport_api::replicated::SEED_HEADER;
/// Header of an entry: the submitter's server time, epoch milliseconds.
pub const NOW: &str = landport_api::replicated::NOW_HEADER;
/// Entry header: the SHA-256 of the caller's key, in hex (the entry's credential).
pub const KEY_HASH: &str = landport_api::replicated::KEY_HASH_HEADER;
/// Header of an entry: the instance id of its submitter.
pub const ORIGIN: &str = "Lp-Origin";
/// Header of an entry: its unique id (also its `Nats-Msg-Id`).
pub const ENTRY: &str = "Lp-Entry";
/// Header of a response on `lpreg.done.>`: the partition of the shard that applied it.
pub const PARTITION: &str = "Lp-Partition";
/// How long a submitter waits for the log to take an entry and a shard to apply it.
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// A shard publishes the response of an entry this recent only (by the entry's time): the
/// submitter of an older one gave up waiting long ago, and a shard replaying the whole log
/// would otherwise publish one message per entry nobody reads.
const REPLY_WINDOW_MS: i64 = 60_000;
/// How long a [`ShardApplier`] waits without an entry before it checks whether the log is
/// ahead of it (its consumer lost with a NATS server), and the longest it waits for NATS to
/// answer that check or make a new consumer.
const STALL_CHECK: Duration = Duration::from_secs(2);
/// Bytes of headers an entry adds to the request's body, at most (the check against the
/// server's `max_payload`).
const ENTRY_OVERHEAD: usize = 2048;

/// The stream's configuration on a NATS cluster of `servers` servers.
///
/// Retention by limits with no limits: the registry log is kept whole, since a shard started
/// later rebuilds the registry by reading it from the first entry. Registry writes are rare
/// next to telemetry (a million entries of 1 KB is a gigabyte), so this holds for a long time.
/// It could be compacted later without changing the shards' reading: a shard that has applied
/// up to sequence S snapshots its registry tables (tenants, keys, devices, credentials,
/// geofences, shipments, share tokens, webhooks) into the JetStream object store, tagged S;
/// the log is then purged below S (`purge` up to a sequence), and a new shard restores the
/// newest snapshot and reads the log from S + 1 (the [`ShardApplier`] already starts at its
/// store's applied sequence + 1).
pub fn stream_config(servers: usize) -> stream::Config {
    stream::Config {
        name: STREAM.to_owned(),
        description: Some("Landport's registry writes, applied by every shard in order".into()),
        subjects: vec![ENTRY_SUBJECT.to_owned()],
        storage: stream::StorageType::File,
        num_replicas: servers.clamp(1, 3),
        retention: stream::RetentionPolicy::Limits,
        max_age: Duration::ZERO,
        // Repeated publishes of one entry (same Nats-Msg-Id) within this window are stored once.
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

/// Creates the registry stream if absent ([`stream_config`]), or returns the existing one
/// (whose replicas stay what they were when it was created).
pub async fn ensure_stream(js: &jetstream::Context, servers: usize) -> Result<stream::Stream> {
    js.get_or_create_stream(stream_config(servers))
        .await
        .with_context(|| format!("creating the JetStream stream {STREAM}"))
}

/// A waiter for an entry's response.
struct Waiter {
    tx: Option<oneshot::Sender<WireResponse>>,
    /// What the write is about, when its answer shows live state a partition's own.
    scope: Scope,
    /// The first success answered and not sent at once (see [`deliver`]).
    success: Option<WireResponse>,
    /// The first failure (non-2xx) answered, returned if no shard succeeds.
    failure: Option<WireResponse>,
    answers: u32,
}

impl Waiter {
    fn new(tx: oneshot::Sender<WireResponse>, scope: Scope) -> Waiter {
        Waiter {
            tx: Some(tx),
            scope,
            success: None,
            failure: None,
            answers: 0,
        }
    }
}

/// What a write is about, for whose answer to prefer: a device's or a shipment's write is
/// answered by the shard of the device's partition (its answer has the live state: position,
/// online, a shipment's progress; other shards have none), other writes by the first shard
/// that succeeds.
#[derive(Debug, Clone, PartialEq)]
enum Scope {
    Any,
    /// `/v1/devices/{id}...`, or `POST /v1/devices` with this `id`; `tenant` from the query
    /// (an admin key's `?tenant=`).
    Device {
        id: String,
        tenant: Option<String>,
    },
    /// `/v1/shipments...`: the device is the answer's `device`.
    Shipment {
        tenant: Option<String>,
    },
    /// `POST /v1/webhooks/{id}/replay`: each shard queues its own partition's events, so the
    /// answer is every shard's together (`queued` summed, `truncated` if any was).
    Replay,
}

impl Scope {
    fn of(req: &WireRequest) -> Scope {
        let (path, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
        let tenant = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("tenant="))
            .filter(|t| !t.is_empty() && is_token(t))
            .map(str::to_owned);
        if path.starts_with("/v1/shipments") {
            return Scope::Shipment { tenant };
        }
        if path.starts_with("/v1/webhooks/") && path.ends_with("/replay") {
            return Scope::Replay;
        }
        let Some(rest) = path.strip_prefix("/v1/devices") else {
            return Scope::Any;
        };
        let id = match rest.strip_prefix('/') {
            Some(rest) => rest.split('/').next().unwrap_or("").to_owned(),
            None if rest.is_empty() && req.method == axum::http::Method::POST => {
                serde_json::from_slice::<serde_json::Value>(&req.body)
                    .ok()
                    .and_then(|b| b.get("id")?.as_str().map(str::to_owned))
                    .unwrap_or_default()
            }
            None => String::new(),
        };
        // Ids are plain (A-Z a-z 0-9 . _ -): anything else is no device this can route.
        let plain = id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if id.is_empty() || id == "nearby" || !plain {
            return Scope::Any;
        }
        Scope::Device { id, tenant }
    }

    /// The partition whose shard's answer is preferred, as far as `res` tells.
    fn owner(&self, res: &WireResponse, partitions: u32) -> Option<u32> {
        let tenant_of = |query: &Option<String>| match res.header(TENANT_HEADER) {
            Some(t) if t == TenantSlot::ADMIN => query.clone(),
            Some(t) => Some(t.to_owned()),
            None => None,
        };
        let (tenant, device) = match self {
            Scope::Any | Scope::Replay => return None,
            Scope::Device { id, tenant } => (tenant_of(tenant)?, id.clone()),
            Scope::Shipment { tenant } => {
                let body: serde_json::Value = serde_json::from_slice(&res.body).ok()?;
                (tenant_of(tenant)?, body.get("device")?.as_str()?.to_owned())
            }
        };
        Some(crate::partition::partition(&tenant, &device, partitions))
    }
}

type Waiters = Arc<Mutex<HashMap<String, Waiter>>>;

/// An instance's side of the registry log ([`WriteLog`]): appends writes as entries and
/// answers with the response of a shard that applied them (see the module docs).
pub struct Replicator {
    js: jetstream::Context,
    instance: String,
    /// Largest message the server takes.
    max_payload: usize,
    timeout: Duration,
    waiters: Waiters,
    listener: JoinHandle<()>,
}

impl Drop for Replicator {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Replicator {
    /// Subscribes to the responses of this instance's entries. `instance_id` is
    /// `[cluster] instance_id` (one NATS subject token: no `.`, `*`, `>` or spaces);
    /// `partitions` is `[cluster] partitions`, the number of shards that apply each entry.
    pub async fn start(
        client: async_nats::Client,
        js: jetstream::Context,
        instance_id: &str,
        partitions: u32,
    ) -> Result<Replicator> {
        if !is_token(instance_id) {
            bail!(
                "the instance id {instance_id:?} is not one NATS subject token \
                 (letters, digits, - and _)"
            );
        }
        let waiters: Waiters = Arc::default();
        let mut sub = client
            .subscribe(format!("{DONE_PREFIX}.{instance_id}.>"))
            .await
            .context("subscribing to the registry log's responses")?;
        // The subscription is in place on the server before any entry is published.
        client.flush().await.context("flushing to NATS")?;
        let listener = tokio::spawn({
            let waiters = waiters.clone();
            async move {
                while let Some(msg) = sub.next().await {
                    let Some(entry) = msg.subject.as_str().rsplit('.').next() else {
                        continue;
                    };
                    let from = msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(PARTITION))
                        .and_then(|p| p.as_str().parse().ok());
                    match WireResponse::from_nats(msg.headers.as_ref(), msg.payload.clone()) {
                        Ok(res) => deliver(&waiters, entry, res, from, partitions.max(1)),
                        Err(e) => tracing::warn!(error = %e, "a bad registry response"),
                    }
                }
            }
        });
        Ok(Replicator {
            max_payload: client.server_info().max_payload,
            js,
            instance: instance_id.to_owned(),
            timeout: SUBMIT_TIMEOUT,
            waiters,
            listener,
        })
    }

    /// How long [`WriteLog::submit`] waits before its 503 ([`SUBMIT_TIMEOUT`] by default).
    pub fn with_timeout(mut self, timeout: Duration) -> Replicator {
        self.timeout = timeout;
        self
    }

    async fn submit_entry(&self, mut req: WireRequest) -> WireResponse {
        let scope = Scope::of(&req);
        // The log keeps the caller's key as its hash, which the shards authenticate by: reading
        // the log gives no one a key to call the API with.
        let key_hash = bearer_hash_hex(&req);
        req.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        let (mut headers, body) = req.to_nats();
        if let Some(hash) = &key_hash {
            headers.insert(KEY_HASH, hash.as_str());
        }
        if body.len() + ENTRY_OVERHEAD > self.max_payload {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body ({} bytes) is larger than a registry entry may be: the NATS \
                     server's max_payload is {} bytes",
                    body.len(),
                    self.max_payload
                ),
            );
        }
        let (entry, seed) = match (random_hex::<16>(), random_hex::<32>()) {
            (Ok(entry), Ok(seed)) => (entry, seed),
            (Err(e), _) | (_, Err(e)) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("the OS random source failed: {e}"),
                );
            }
        };
        headers.insert(SEED, seed.as_str());
        headers.insert(NOW, landport_pipeline::now_ms().to_string().as_str());
        headers.insert(ORIGIN, self.instance.as_str());
        headers.insert(ENTRY, entry.as_str());
        headers.insert("Nats-Msg-Id", entry.as_str());

        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).insert(entry.clone(), Waiter::new(tx, scope));
        let waiting = WaiterGuard {
            waiters: &self.waiters,
            entry: &entry,
        };
        let deadline = Instant::now() + self.timeout;
        let seq = match self.append(headers, body, deadline).await {
            Ok(seq) => seq,
            Err(why) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "registry_unavailable",
                    format!(
                        "the registry log did not confirm the write ({why}); if it was stored \
                         nonetheless it will be applied: look before repeating it"
                    ),
                );
            }
        };
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(res)) => res,
            _ => match waiting.held() {
                Some(res) => res,
                None => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "registry_timeout",
                    format!(
                        "the write is in the registry log (entry {seq}) and will be applied, but \
                         no partition answered within {} s",
                        self.timeout.as_secs()
                    ),
                ),
            },
        }
    }

    /// Publishes an entry until JetStream confirms it (a repeat after a lost confirmation is
    /// stored once: same `Nats-Msg-Id`) or `deadline`; its stream sequence.
    async fn append(
        &self,
        headers: HeaderMap,
        body: bytes::Bytes,
        deadline: Instant,
    ) -> Result<u64, String> {
        let mut pause = Duration::from_millis(50);
        loop {
            let attempt = async {
                self.js
                    .publish_with_headers(ENTRY_SUBJECT, headers.clone(), body.clone())
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            };
            let why = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(ack)) => return Ok(ack.sequence),
                Ok(Err(why)) => why,
                Err(_) => return Err("the registry log did not confirm it in time".to_owned()),
            };
            if Instant::now() + pause >= deadline {
                return Err(format!("the registry log refused it ({why})"));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

impl WriteLog for Replicator {
    fn submit(
        &self,
        req: WireRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = WireResponse> + Send + '_>> {
        Box::pin(self.submit_entry(req))
    }
}

/// Removes an entry's waiter however its submit ends (answered, timed out, cancelled).
struct WaiterGuard<'a> {
    waiters: &'a Waiters,
    entry: &'a str,
}

impl WaiterGuard<'_> {
    /// The answer held for the entry, if any shard answered: a success before a failure.
    fn held(&self) -> Option<WireResponse> {
        lock(self.waiters)
            .get_mut(self.entry)
            .and_then(|w| w.success.take().or_else(|| w.failure.take()))
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        lock(self.waiters).remove(self.entry);
    }
}

/// Hands the response of partition `from`'s shard to the entry's waiter. Sent at once: the
/// answer of the device's own partition for a device's or shipment's write, whatever it is;
/// else the first success. Held: the others; once every partition (`partitions`) has
/// answered, the first success held, else the first failure.
fn deliver(waiters: &Waiters, entry: &str, res: WireResponse, from: Option<u32>, partitions: u32) {
    let mut map = lock(waiters);
    let Some(w) = map.get_mut(entry) else {
        return; // answered already, or not ours any more
    };
    w.answers += 1;
    let owner = w.scope.owner(&res, partitions);
    let now = match owner {
        Some(p) => from == Some(p),
        None => res.status.is_success() && w.scope != Scope::Replay,
    };
    if now {
        if let Some(tx) = w.tx.take() {
            let _ = tx.send(res);
        }
        return;
    }
    let held = if res.status.is_success() {
        &mut w.success
    } else {
        &mut w.failure
    };
    match held {
        None => *held = Some(res),
        Some(first) if w.scope == Scope::Replay && res.status.is_success() => {
            add_replayed(first, &res);
        }
        Some(_) => {}
    }
    if w.answers >= partitions
        && let Some(tx) = w.tx.take()
        && let Some(best) = w.success.take().or_else(|| w.failure.take())
    {
        let _ = tx.send(best);
    }
}

/// Adds a shard's replay answer (`{"queued", "truncated"}`) to `sum`.
fn add_replayed(sum: &mut WireResponse, res: &WireResponse) {
    let parse = |r: &WireResponse| serde_json::from_slice::<serde_json::Value>(&r.body).ok();
    let (Some(mut total), Some(more)) = (parse(sum), parse(res)) else {
        return;
    };
    let queued = |v: &serde_json::Value| v["queued"].as_u64().unwrap_or(0);
    let truncated = |v: &serde_json::Value| v["truncated"].as_bool().unwrap_or(false);
    total["queued"] = json!(queued(&total) + queued(&more));
    total["truncated"] = json!(truncated(&total) || truncated(&more));
    sum.body = bytes::Bytes::from(total.to_string());
}

fn lock(waiters: &Waiters) -> std::sync::MutexGuard<'_, HashMap<String, Waiter>> {
    // Held for a map operation only, never across an `.await`.
    waiters.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How far a [`ShardApplier`] is.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// The sequence of the last entry applied.
    applied: u64,
    /// The stream's last sequence when the applier started; `None` until it knows.
    target: Option<u64>,
    /// The applier's task has ended.
    ended: bool,
}

impl Progress {
    fn caught_up(&self) -> bool {
        self.target.is_some_and(|t| self.applied >= t)
    }
}

/// A shard's side of the registry log: applies every entry, in stream order, through the
/// shard's router (see the module docs).
///
/// It reads the stream with an **ordered consumer** from the entry after its store's
/// recorded sequence, not with a durable consumer per shard: the shard's store is then the
/// only record of how far the shard is (a durable's acknowledged position would be a second
/// one, which a rebuilt or restored store would contradict, and which would have to be
/// deleted when the partition moves); the ordered consumer is ephemeral and in-memory on the
/// server, delivers strictly in order and recreates itself after a gap or a lost connection,
/// and a repeated delivery is skipped (its sequence is not above the applied one). Since the
/// consumer lives on one NATS server, the applier also makes a new one when nothing has come
/// for 2 s while the log is ahead of it (that server died): in the tests, a shard
/// applies again within seconds of losing a node of three, rather than after a minute or two.
///
/// An entry is applied, then its sequence recorded, in two transactions (the router commits
/// on its own): a crash between them applies that entry again on restart (at-least-once; only
/// the last entry applied, since each is recorded before the next is applied). That is
/// harmless: a repeated entry has the same seed and time, so it makes the same ids,
/// keys and rows: a repeated create is a 409 conflict (the row exists), not a copy; a
/// repeated PATCH, PUT or share writes the same values again; a repeated delete is a 404; a
/// repeated secret rotation keeps the old secret (the API checks); a repeated replay queues
/// deliveries again, which receivers drop by `webhook-id`.
///
/// A response 5xx or 408 (the shard cannot apply now: its pipeline stopped, a store error, a
/// timeout) is not recorded as applied: the entry is tried again with a backoff, and later
/// entries wait, so a shard never skips a registry write. 4xx answers are the entry's own
/// (every shard gives the same) and are applied as such.
pub struct ShardApplier {
    progress: watch::Receiver<Progress>,
    task: JoinHandle<()>,
}

impl ShardApplier {
    /// Starts applying the registry log to partition `partition`'s shard, whose store is in
    /// `store_dir` and whose router is `router` (built on an `ApiState` with
    /// `trust_replication_headers`), until `stop`. Waits for the stream if it does not exist
    /// yet. Errors end the task (logged); [`ShardApplier::caught_up`] then fails.
    pub fn start(
        client: async_nats::Client,
        js: jetstream::Context,
        partition: u32,
        store_dir: &Path,
        router: axum::Router,
        stop: CancellationToken,
    ) -> ShardApplier {
        let (progress_tx, progress) = watch::channel(Progress::default());
        let applier = Applier {
            client,
            js,
            partition,
            dir: store_dir.to_owned(),
            router,
            stop,
            progress: progress_tx,
        };
        let task = tokio::spawn(async move {
            if let Err(e) = applier.run().await {
                tracing::error!(partition, error = %format!("{e:#}"), "the registry applier stopped");
            }
            applier.progress.send_modify(|p| p.ended = true);
        });
        ShardApplier { progress, task }
    }

    /// Resolves once every entry that was in the stream when the applier started is applied;
    /// an error if the applier ended first (stopped, or failed).
    pub async fn caught_up(&self) -> Result<()> {
        let mut rx = self.progress.clone();
        let p = *rx
            .wait_for(|p| p.caught_up() || p.ended)
            .await
            .context("the registry applier is gone")?;
        if p.caught_up() {
            Ok(())
        } else {
            bail!("the registry applier stopped before catching up with the registry log")
        }
    }

    /// The stream sequence of the last entry applied.
    pub fn applied(&self) -> u64 {
        self.progress.borrow().applied
    }

    /// The applier's task (it ends after `stop`).
    pub fn into_task(self) -> JoinHandle<()> {
        self.task
    }
}

struct Applier {
    client: async_nats::Client,
    js: jetstream::Context,
    partition: u32,
    dir: PathBuf,
    router: axum::Router,
    stop: CancellationToken,
    progress: watch::Sender<Progress>,
}

impl Applier {
    async fn run(&self) -> Result<()> {
        let dir = self.dir.clone();
        let store = blocking(move || Store::open(&dir)).await?;
        let store = Arc::new(Mutex::new(store));
        let s = store.clone();
        let mut applied = blocking(move || lock_store(&s).registry_applied_seq()).await?;
        self.progress.send_modify(|p| p.applied = applied);

        let Some(mut stream) = self.wait_for_stream().await else {
            return Ok(());
        };
        let state = &stream
            .info()
            .await
            .context("reading the registry stream's state")?
            .state;
        // An emptied stream (purged) has a last sequence but nothing left to apply.
        let target = if state.messages == 0 {
            0
        } else {
            state.last_sequence
        };
        self.progress.send_modify(|p| p.target = Some(target));
        let mut messages = read_from(&stream, applied + 1).await?;
        loop {
            let next = tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                next = messages.next() => next,
                _ = tokio::time::sleep(STALL_CHECK) => {
                    // Quiet for a while: is the log ahead of us? The ordered consumer lives on
                    // one server; when that server dies it notices only after missed
                    // heartbeats and slow retries (over a minute on nats-server 2.9), so a
                    // new one is made at once, from the entry after the last applied.
                    let ahead = tokio::time::timeout(STALL_CHECK, stream.info()).await;
                    if let Ok(Ok(info)) = ahead
                        && info.state.messages > 0
                        && info.state.last_sequence > applied
                    {
                        match read_from(&stream, applied + 1).await {
                            Ok(fresh) => {
                                tracing::info!(
                                    partition = self.partition,
                                    applied,
                                    "the registry log's consumer stalled: made a new one"
                                );
                                messages = fresh;
                            }
                            Err(e) => tracing::warn!(
                                partition = self.partition,
                                error = %format!("{e:#}"),
                                "the registry log's consumer stalled, and a new one failed"
                            ),
                        }
                    }
                    continue;
                }
            };
            let msg = match next {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    tracing::warn!(partition = self.partition, error = %e, "reading the registry log");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                None => bail!("the registry log's consumer ended"),
            };
            let seq = match msg.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => {
                    tracing::warn!(error = %e, "a registry message without its stream sequence");
                    continue;
                }
            };
            if seq <= applied {
                continue; // delivered again (a recreated consumer): applied already
            }
            let Some(response) = self.apply(&msg).await else {
                return Ok(()); // stopped while the shard could not apply it
            };
            let s = store.clone();
            let now = landport_pipeline::now_ms();
            blocking(move || lock_store(&s).set_registry_applied_seq(seq, now)).await?;
            applied = seq;
            self.progress.send_modify(|p| p.applied = seq);
            self.reply(&msg, &response).await;
        }
    }

    /// The stream, once it exists; `None` if stopped first.
    async fn wait_for_stream(&self) -> Option<stream::Stream> {
        let mut warned = false;
        loop {
            match self.js.get_stream(STREAM).await {
                Ok(stream) => return Some(stream),
                Err(e) if !warned => {
                    tracing::warn!(error = %e, "waiting for the registry stream {STREAM}");
                    warned = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = self.stop.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Runs the entry through the shard's router until it answers something else than a 5xx
    /// or 408; `None` if stopped first.
    async fn apply(&self, msg: &jetstream::Message) -> Option<WireResponse> {
        let mut pause = Duration::from_millis(100);
        loop {
            let res = match entry_request(msg) {
                Ok(mut req) => {
                    // The key's tenant, told to the submitter's front as for a read.
                    let slot = TenantSlot::default();
                    req.extensions_mut().insert(slot.clone());
                    let res = match self.router.clone().oneshot(req).await {
                        Ok(res) => res,
                        Err(never) => match never {},
                    };
                    match WireResponse::from_http(res).await {
                        Ok(mut res) => {
                            if let Some(tenant) = slot.get() {
                                res.headers.push((TENANT_HEADER.to_owned(), tenant));
                            }
                            res
                        }
                        Err(e) => {
                            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
                        }
                    }
                }
                // The same on every shard: applied as a refusal.
                Err(why) => {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        "bad_entry",
                        format!("a malformed registry entry: {why}"),
                    ));
                }
            };
            if !(res.status.is_server_error() || res.status == StatusCode::REQUEST_TIMEOUT) {
                return Some(res);
            }
            tracing::warn!(
                partition = self.partition,
                status = res.status.as_u16(),
                body = %String::from_utf8_lossy(&res.body),
                "the shard could not apply a registry entry; trying again"
            );
            tokio::select! {
                _ = self.stop.cancelled() => return None,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    }

    /// Publishes an applied entry's response to its submitter, if it may still be waiting.
    async fn reply(&self, msg: &jetstream::Message, response: &WireResponse) {
        let headers = msg.headers.as_ref();
        let get = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        let (Some(origin), Some(entry)) = (get(ORIGIN), get(ENTRY)) else {
            return;
        };
        if !is_token(origin) || !is_token(entry) {
            return;
        }
        let at = get(NOW).and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
        if landport_pipeline::now_ms() - at > REPLY_WINDOW_MS {
            return;
        }
        let max = self.client.server_info().max_payload;
        let (mut h, body) = fit(response, max).to_nats();
        h.insert(PARTITION, self.partition.to_string().as_str());
        let subject = format!("{DONE_PREFIX}.{origin}.{entry}");
        if let Err(e) = self.client.publish_with_headers(subject, h, body).await {
            tracing::warn!(error = %e, "publishing a registry response");
        }
    }
}

/// `response`, or, when it does not fit in a NATS message of `max_payload` bytes (a large
/// geofence's Feature), its status and headers with a short JSON body saying to read it
/// with a GET: the write is applied, and the submitter is told so rather than timing out.
fn fit(response: &WireResponse, max_payload: usize) -> WireResponse {
    if response.body.len() + ENTRY_OVERHEAD <= max_payload {
        return response.clone();
    }
    let (status, size) = (response.status, response.body.len());
    let mut short = WireResponse::json(
        status,
        &json!({"message": format!(
            "applied ({status}); the answer ({size} bytes) is larger than a NATS message may \
             be ({max_payload} bytes): read it with a GET"
        )}),
    );
    short.headers.extend(
        response
            .headers
            .iter()
            .filter(|(k, _)| k != "content-type")
            .cloned(),
    );
    short
}

/// An ordered consumer of the registry log from sequence `start`, and its messages.
async fn read_from(stream: &stream::Stream, start: u64) -> Result<consumer::pull::Ordered> {
    let consumer = tokio::time::timeout(
        STALL_CHECK,
        stream.create_consumer(consumer::pull::OrderedConfig {
            filter_subject: ENTRY_SUBJECT.to_owned(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        }),
    )
    .await
    .context("creating the registry log's consumer: no answer")?
    .context("creating the registry log's consumer")?;
    consumer
        .messages()
        .await
        .context("reading the registry log")
}

/// The HTTP request of an entry, with its seed and time.
fn entry_request(
    msg: &jetstream::Message,
) -> Result<axum::http::Request<axum::body::Body>, String> {
    let headers = msg.headers.as_ref();
    let wire = WireRequest::from_nats(headers, msg.payload.clone()).map_err(|e| e.to_string())?;
    let get = |name: &'static str| {
        headers
            .and_then(|h| h.get(name))
            .and_then(|v| HeaderValue::from_str(v.as_str()).ok())
            .ok_or_else(|| format!("no {name} header"))
    };
    let (seed, now) = (get(SEED)?, get(NOW)?);
    let mut req = wire.to_http().map_err(|e| e.to_string())?;
    req.headers_mut().insert(SEED, seed);
    req.headers_mut().insert(NOW, now);
    if let Ok(hash) = get(KEY_HASH) {
        req.headers_mut().insert(KEY_HASH, hash);
    }
    Ok(req)
}

/// The SHA-256 of a request's bearer key, in hex (as the store keeps keys).
fn bearer_hash_hex(req: &WireRequest) -> Option<String> {
    let (scheme, key) = req.header("authorization")?.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty())
        .then(|| landport_store::KeyHash::of(key).to_hex())
}

fn lock_store(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    // Locked inside blocking closures only, never across an `.await`.
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, landport_store::StoreError> + Send + 'static,
) -> Result<R> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .context("a store task failed")??)
}

/// A JSON error response of the registry itself.
fn error(status: StatusCode, code: &str, message: String) -> WireResponse {
    WireResponse::json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// Whether `s` may be one token of a NATS subject (and so an instance or entry id).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `N` bytes from the OS's random source, in lower-case hex.
fn random_hex<const N: usize>() -> Result<String, getrandom::Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(status: u16) -> WireResponse {
        WireResponse::json(StatusCode::from_u16(status).unwrap(), &json!({}))
    }

    fn waiting(waiters: &Waiters, entry: &str) -> oneshot::Receiver<WireResponse> {
        waiting_for(waiters, entry, Scope::Any)
    }

    fn waiting_for(
        waiters: &Waiters,
        entry: &str,
        scope: Scope,
    ) -> oneshot::Receiver<WireResponse> {
        let (tx, rx) = oneshot::channel();
        lock(waiters).insert(entry.to_owned(), Waiter::new(tx, scope));
        rx
    }

    fn with_tenant(mut r: WireResponse, tenant: &str) -> WireResponse {
        r.headers.push((TENANT_HEADER.into(), tenant.into()));
        r
    }

    fn wire(method: &str, path: &str, body: &str) -> WireRequest {
        WireRequest {
            method: axum::http::Method::from_bytes(method.as_bytes()).unwrap(),
            path: path.into(),
            headers: Vec::new(),
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn device_and_shipment_writes_know_their_device() {
        let dev = |id: &str, tenant: Option<&str>| Scope::Device {
            id: id.into(),
            tenant: tenant.map(str::to_owned),
        };
        assert_eq!(
            Scope::of(&wire("PATCH", "/v1/devices/t-1", "{}")),
            dev("t-1", None)
        );
        assert_eq!(
            Scope::of(&wire(
                "DELETE",
                "/v1/devices/t-1/credentials?tenant=acme",
                ""
            )),
            dev("t-1", Some("acme"))
        );
        assert_eq!(
            Scope::of(&wire(
                "POST",
                "/v1/devices",
                r#"{"id": "t-2", "name": "x"}"#
            )),
            dev("t-2", None)
        );
        assert_eq!(
            Scope::of(&wire("POST", "/v1/shipments/s/share?tenant=a", "")),
            Scope::Shipment {
                tenant: Some("a".into())
            }
        );
        for any in [
            wire("POST", "/v1/devices", "not json"),
            wire("POST", "/v1/devices/nearby", ""),
            wire("PATCH", "/v1/devices/a%2Fb", ""),
            wire("POST", "/v1/geofences", "{}"),
            wire("POST", "/v1/tenants", r#"{"id": "x"}"#),
        ] {
            assert_eq!(Scope::of(&any), Scope::Any, "{}", any.path);
        }
    }

    #[test]
    fn a_device_write_is_answered_by_the_devices_partition() {
        let waiters = Waiters::default();
        let scope = Scope::Device {
            id: "truck-1".into(),
            tenant: None,
        };
        let owner = crate::partition::partition("acme", "truck-1", 4);
        let other = (owner + 1) % 4;
        let mut rx = waiting_for(&waiters, "e1", scope.clone());
        deliver(
            &waiters,
            "e1",
            with_tenant(res(200), "acme"),
            Some(other),
            4,
        );
        assert!(rx.try_recv().is_err(), "not the owner: held");
        deliver(
            &waiters,
            "e1",
            with_tenant(res(200), "acme"),
            Some(owner),
            4,
        );
        let got = rx.try_recv().unwrap();
        assert_eq!(got.status, StatusCode::OK);

        // An admin key: the tenant is the query's.
        let admin = Scope::Device {
            id: "truck-1".into(),
            tenant: Some("acme".into()),
        };
        let mut rx = waiting_for(&waiters, "e2", admin);
        deliver(&waiters, "e2", with_tenant(res(404), "*"), Some(owner), 4);
        assert_eq!(rx.try_recv().unwrap().status, StatusCode::NOT_FOUND);

        // Every partition answered, none of them the owner (its answer lost): the first
        // success, else the first failure.
        let mut rx = waiting_for(&waiters, "e3", scope);
        for _ in 0..3 {
            deliver(&waiters, "e3", with_tenant(res(404), "acme"), None, 3);
        }
        assert_eq!(rx.try_recv().unwrap().status, StatusCode::NOT_FOUND);

        // A shipment's device comes from the answer.
        let owner = crate::partition::partition("acme", "truck-9", 4);
        let shipment = Scope::Shipment { tenant: None };
        let mut answer = with_tenant(res(200), "acme");
        answer.body = bytes::Bytes::from(r#"{"id": "s1", "device": "truck-9"}"#);
        let mut rx = waiting_for(&waiters, "e4", shipment);
        deliver(&waiters, "e4", answer.clone(), Some((owner + 1) % 4), 4);
        assert!(rx.try_recv().is_err());
        deliver(&waiters, "e4", answer, Some(owner), 4);
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn the_first_success_wins_at_once() {
        let waiters = Waiters::default();
        let mut rx = waiting(&waiters, "e1");
        deliver(&waiters, "e1", res(201), Some(0), 3);
        assert_eq!(rx.try_recv().unwrap().status, StatusCode::CREATED);
        // Later answers of the entry change nothing.
        deliver(&waiters, "e1", res(409), Some(1), 3);
    }

    #[test]
    fn a_failure_waits_for_a_success_or_every_partition() {
        let waiters = Waiters::default();
        let mut rx = waiting(&waiters, "e1");
        deliver(&waiters, "e1", res(404), Some(0), 3);
        assert!(
            rx.try_recv().is_err(),
            "another partition may still succeed"
        );
        deliver(&waiters, "e1", res(204), Some(1), 3);
        assert_eq!(rx.try_recv().unwrap().status, StatusCode::NO_CONTENT);

        let mut rx = waiting(&waiters, "e2");
        deliver(&waiters, "e2", res(409), Some(0), 3);
        deliver(&waiters, "e2", res(400), Some(1), 3);
        assert!(rx.try_recv().is_err());
        deliver(&waiters, "e2", res(400), Some(1), 3);
        assert_eq!(
            rx.try_recv().unwrap().status,
            StatusCode::CONFLICT,
            "the first"
        );
    }

    #[test]
    fn a_replay_answers_every_shards_count_together() {
        assert_eq!(
            Scope::of(&wire("POST", "/v1/webhooks/wh_1/replay?tenant=a", "{}")),
            Scope::Replay
        );
        let waiters = Waiters::default();
        let mut rx = waiting_for(&waiters, "e1", Scope::Replay);
        let replayed = |queued: u64, truncated: bool| {
            WireResponse::json(
                StatusCode::ACCEPTED,
                &json!({"queued": queued, "truncated": truncated}),
            )
        };
        deliver(&waiters, "e1", replayed(3, false), Some(0), 3);
        deliver(&waiters, "e1", replayed(0, true), Some(1), 3);
        assert!(rx.try_recv().is_err(), "a partition has not answered");
        deliver(&waiters, "e1", replayed(4, false), Some(2), 3);
        let got = rx.try_recv().unwrap();
        assert_eq!(got.status, StatusCode::ACCEPTED);
        let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(body, json!({"queued": 7, "truncated": true}));
    }

    #[test]
    fn answers_of_unknown_entries_are_dropped() {
        let waiters = Waiters::default();
        deliver(&waiters, "nobody", res(201), Some(0), 1);
        assert!(lock(&waiters).is_empty());
    }

    #[test]
    fn an_answer_too_large_for_a_message_keeps_its_status_and_says_so() {
        let mut big = res(201);
        big.body = bytes::Bytes::from(vec![b' '; 10_000]);
        big.headers
            .push(("x-landport-tenant".into(), "acme".into()));
        assert_eq!(fit(&big, 1 << 20), big, "it fits");
        let short = fit(&big, 4096);
        assert_eq!(short.status, StatusCode::CREATED);
        assert_eq!(short.header("x-landport-tenant"), Some("acme"));
        assert_eq!(short.header("content-type"), Some("application/json"));
        assert_eq!(short.headers.len(), 2);
        let body: serde_json::Value = serde_json::from_slice(&short.body).unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("10000 bytes"),
            "{body}"
        );
        assert!(short.body.len() + ENTRY_OVERHEAD <= 4096);
    }

    #[test]
    fn ids_that_could_break_a_subject_are_refused() {
        assert!(is_token("instance-1_a"));
        for bad in ["", "a.b", "a*", ">", "a b", "é"] {
            assert!(!is_token(bad), "{bad:?}");
        }
        assert_eq!(random_hex::<16>().unwrap().len(), 32);
    }

    #[test]
    fn the_stream_keeps_everything_on_up_to_three_replicas() {
        let c = stream_config(5);
        assert_eq!(c.num_replicas, 3);
        assert_eq!(stream_config(1).num_replicas, 1);
        assert_eq!(stream_config(0).num_replicas, 1);
        assert_eq!(c.max_age, Duration::ZERO);
        assert_eq!(c.subjects, vec![ENTRY_SUBJECT.to_owned()]);
        assert!(matches!(c.storage, stream::StorageType::File));
        assert!(matches!(c.retention, stream::RetentionPolicy::Limits));
    }
}
