//! An instance's public HTTP side in cluster mode: any instance answers any request by asking
//! the partitions' shards over NATS request/reply (subject `lphttp.{p}`, see [`crate::serve`]).
//!
//! - Writes (every method but GET and HEAD) go to the replicated registry log
//!   ([`WriteLog::submit`]), which every shard applies.
//! - One device (`/v1/devices/{id}`, its `track`, `trips`, `stops`): to the device's partition
//!   when the key's tenant is known (learned from the `x-landport-tenant` header of earlier
//!   answers to the same key; an admin key names it with `?tenant=`), else to every partition,
//!   answered by the one that does not say 404. One shipment (`/v1/shipments/{id}...`) and a
//!   share link (`/v1/public/{token}`): every partition, the one that does not say 404.
//! - Lists (`/v1/devices`, `/v1/shipments`, a geofence's devices), `/v1/positions`,
//!   `/v1/devices/nearby`, `/v1/events`, `/v1/reports/geofence-visits`: every partition,
//!   merged as one node would answer ([`merge`]), pagination kept (`/v1/events` pages by a
//!   composite cursor over the partitions); a webhook's deliveries (each partition's webhook
//!   engine delivers its own partition's events) likewise, by queue time.
//! - Everything else under `/v1` (geofences, webhooks: every shard holds the whole registry):
//!   one partition, the next one if nobody serves it.
//! - `/v1/stream` (SSE): served by the instance itself from the events the shards publish to
//!   NATS and a shared poll of the merged positions ([`stream`]).
//! - Outside `/v1` (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`, the map pages and
//!   their assets): the instance's own local router ([`FrontSettings::local`]); a share
//!   link's page (`/track/{token}`) after the partitions said whether the token is open.
//!
//! When a partition needed for an answer does not answer (nobody serves it, or not within
//! [`FrontSettings::timeout`]) the answer is a 503 naming the partitions, never a partial
//! result that looks whole. Internal `x-landport-*` headers are stripped from requests coming
//! in and from answers going out.

pub mod merge;
mod stream;

pub use stream::map_pages;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use futures_util::future::join_all;
use landport_store::KeyHash;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::serve::{TENANT_HEADER, subject};
use crate::wire::{WireRequest, WireResponse, WriteLog};
use merge::{EventCursor, Key, MergeError};

/// Which partition a device `(tenant, device)` is in (`cluster::partition::partition` with
/// the deployment's partition count).
pub type PartitionOf = Arc<dyn Fn(&str, &str) -> u32 + Send + Sync>;

/// How the front behaves.
#[derive(Clone)]
pub struct FrontSettings {
    /// How long a partition may take to answer one request.
    pub timeout: Duration,
    /// Serves what is not under `/v1` (health, metrics, OpenAPI, map pages and assets);
    /// without it those are 404s.
    pub local: Option<Router>,
    /// Routes a single device's reads to its partition once the key's tenant is known;
    /// without it they go to every partition.
    pub partition_of: Option<PartitionOf>,
    /// Largest request body, bytes (the shards apply each endpoint's own limit too).
    pub max_body_bytes: usize,
    /// `limits.sse_connections`: live streams (`/v1/stream`) per tenant on this instance.
    pub sse_connections: u64,
}

impl Default for FrontSettings {
    fn default() -> Self {
        FrontSettings {
            timeout: Duration::from_secs(5),
            local: None,
            partition_of: None,
            max_body_bytes: landport_api::MAX_GEOFENCE_BODY_BYTES,
            sse_connections: landport_api::Limits::default().sse_connections,
        }
    }
}

impl FrontSettings {
    /// The settings of a deployment of `partitions` partitions: a single device's reads go to
    /// the partition NATS maps it to ([`crate::partition::partition`]); `timeout` per partition.
    pub fn new(partitions: u32, timeout: Duration) -> FrontSettings {
        FrontSettings {
            timeout,
            partition_of: Some(Arc::new(move |t: &str, d: &str| {
                crate::partition::partition(t, d, partitions)
            })),
            ..FrontSettings::default()
        }
    }
}

/// At most this many keys' tenants are remembered; past it the memory starts over.
const TENANT_CACHE_MAX: usize = 10_000;

/// The public router of an instance in cluster mode (see the module docs).
pub fn router(
    client: async_nats::Client,
    partitions: u32,
    writes: Arc<dyn WriteLog>,
    settings: FrontSettings,
) -> Router {
    let front = Arc::new(Front {
        streams: stream::Streams::new(settings.sse_connections),
        client,
        partitions: partitions.max(1),
        writes,
        settings,
        tenants: Mutex::default(),
        turn: AtomicU32::new(0),
    });
    Router::new().fallback(handle).with_state(front)
}

/// What a key is, as the shards said.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    Tenant(String),
    /// The admin key: the tenant is the request's `?tenant=`.
    Admin,
}

struct Front {
    client: async_nats::Client,
    partitions: u32,
    writes: Arc<dyn WriteLog>,
    settings: FrontSettings,
    /// Tenants of keys by key hash, learned from the shards' answers.
    tenants: Mutex<HashMap<KeyHash, Known>>,
    /// Where the next single-partition request starts (spreads them over the shards).
    turn: AtomicU32,
    /// The live streams (`/v1/stream`) of this instance.
    streams: stream::Streams,
}

/// A partition that did not answer.
#[derive(Debug, Clone, Copy)]
struct Missing(u32);

/// Where a read goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// `/v1/stream`: the instance's own live stream.
    Stream,
    /// One device's read: its partition, if the tenant is known.
    Device(String),
    /// Every partition; the one answer that is not a 404.
    FirstFound,
    /// Every partition; a keyed list merged.
    List(&'static str, Key),
    Nearby,
    Positions,
    Events,
    /// A webhook's deliveries: every partition's engine delivers its own events.
    Deliveries,
    Visits,
    /// Any one partition (every shard holds the whole registry).
    One,
}

/// `POST /v1/webhooks/{id}/deliveries/{cluster delivery id}/retry`: the delivery's partition,
/// and the path with the shard's own delivery id.
fn delivery_retry(path: &str) -> Option<(u32, String)> {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let seg: Vec<&str> = path.strip_prefix("/v1/")?.split('/').collect();
    let ["webhooks", webhook, "deliveries", delivery, "retry"] = seg.as_slice() else {
        return None;
    };
    let (p, local) = merge::parse_cluster_delivery_id(delivery)?;
    let mut local_path = format!("/v1/webhooks/{webhook}/deliveries/{local}/retry");
    if let Some(q) = query {
        local_path = format!("{local_path}?{q}");
    }
    Some((p, local_path))
}

fn classify(path: &str) -> Route {
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Route::One;
    };
    let seg: Vec<&str> = rest.split('/').collect();
    match seg.as_slice() {
        ["stream"] => Route::Stream,
        ["devices"] => Route::List("devices", Key::TenantId),
        ["devices", "nearby"] => Route::Nearby,
        ["devices", id] | ["devices", id, "track" | "trips" | "stops"] if !id.is_empty() => {
            Route::Device((*id).to_owned())
        }
        ["shipments"] => Route::List("shipments", Key::TenantId),
        ["shipments", id, ..] if !id.is_empty() => Route::FirstFound,
        ["public", token] if !token.is_empty() => Route::FirstFound,
        ["geofences", id, "devices"] if !id.is_empty() => Route::List("devices", Key::Id),
        ["positions"] => Route::Positions,
        ["events"] => Route::Events,
        ["reports", "geofence-visits"] => Route::Visits,
        ["webhooks", id, "deliveries"] if !id.is_empty() => Route::Deliveries,
        _ => Route::One,
    }
}

async fn handle(State(f): State<Arc<Front>>, mut req: Request) -> Response {
    strip_internal(req.headers_mut());
    let path = req.uri().path();
    if path != "/v1" && !path.starts_with("/v1/") {
        if let Some(token) = path.strip_prefix("/track/")
            && !token.is_empty()
            && !token.contains('/')
            && req.method() == Method::GET
            && let Some(local) = f.settings.local.clone()
        {
            return stream::track_page(f, req, local).await;
        }
        return match &f.settings.local {
            Some(local) => match local.clone().oneshot(req).await {
                Ok(res) => res,
                Err(e) => match e {},
            },
            None => error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("route {path} not found"),
            )
            .to_http(),
        };
    }
    if path == "/v1/stream" {
        return stream::handle(f, req).await;
    }
    let head = req.method() == Method::HEAD;
    let read = head || req.method() == Method::GET;
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, f.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!(
                    "the request body is larger than {} bytes",
                    f.settings.max_body_bytes
                ),
            )
            .to_http();
        }
    };
    let mut wire = match WireRequest::from_http(Request::from_parts(parts, Body::from(body))).await
    {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()).to_http(),
    };
    let key = bearer_hash(&wire);
    let res = if read {
        wire.method = Method::GET;
        f.read(&wire, key.as_ref()).await
    } else if let Some((p, local_path)) = delivery_retry(&wire.path) {
        // A retry acts on one shard's delivery, not on the registry: straight to its shard.
        wire.path = local_path;
        f.ask(p, &wire, key.as_ref())
            .await
            .map_err(|m| unavailable(&[m]))
    } else {
        let res = f.writes.submit(wire).await;
        f.learn(key.as_ref(), &res);
        Ok(res)
    };
    let mut res = match res {
        Ok(res) | Err(res) => res.to_http(),
    };
    strip_internal(res.headers_mut());
    if head {
        *res.body_mut() = Body::empty();
    }
    res
}

impl Front {
    async fn read(
        &self,
        wire: &WireRequest,
        key: Option<&KeyHash>,
    ) -> Result<WireResponse, WireResponse> {
        let path = wire.path.split('?').next().unwrap_or("");
        match classify(path) {
            Route::Stream | Route::One => self.one(wire, key).await,
            Route::Device(id) => match self.partition_of(key, wire, &id) {
                Some(p) => self.ask(p, wire, key).await.map_err(|m| unavailable(&[m])),
                None => self.first_found(wire, key).await,
            },
            Route::FirstFound => self.first_found(wire, key).await,
            Route::List(list, k) => {
                let limit = query_usize(&wire.path, "limit").unwrap_or(100);
                self.merged(self.everywhere(wire), key, |pages| {
                    merge::keyed_page(pages, list, k, limit)
                })
                .await
            }
            Route::Nearby => {
                let limit = query_usize(&wire.path, "limit").unwrap_or(10);
                self.merged(self.everywhere(wire), key, |pages| {
                    merge::nearby(pages, limit)
                })
                .await
            }
            Route::Positions => self.positions(wire, key).await,
            Route::Events => self.events(wire, key).await,
            Route::Deliveries => self.deliveries(wire, key).await,
            Route::Visits => self.visits(wire, key).await,
        }
    }

    /// The same request for every partition.
    fn everywhere(&self, wire: &WireRequest) -> Vec<(u32, WireRequest)> {
        (0..self.partitions).map(|p| (p, wire.clone())).collect()
    }

    /// Asks partition `p`; learns the key's tenant from the answer.
    async fn ask(
        &self,
        p: u32,
        wire: &WireRequest,
        key: Option<&KeyHash>,
    ) -> Result<WireResponse, Missing> {
        match self.exchange(p, wire).await {
            Ok(res) => {
                self.learn(key, &res);
                Ok(res)
            }
            Err(why) => {
                if let Some(why) = why {
                    tracing::warn!(partition = p, error = %why, "asking a partition");
                }
                Err(Missing(p))
            }
        }
    }

    /// Sends `wire` to partition `p` and reads its answer, in one message or several
    /// ([`crate::serve::messages`]), all within the timeout. `Err(None)`: nobody answered
    /// (no responders, or not in time); `Err(Some(why))`: something worth a log line.
    async fn exchange(&self, p: u32, wire: &WireRequest) -> Result<WireResponse, Option<String>> {
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        let inbox = self.client.new_inbox();
        let mut sub = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| Some(e.to_string()))?;
        let (h, payload) = wire.to_nats();
        self.client
            .publish_with_reply_and_headers(subject(p), inbox, h, payload)
            .await
            .map_err(|e| Some(e.to_string()))?;
        let first = next_message(&mut sub, deadline).await?;
        let chunks = first
            .headers
            .as_ref()
            .and_then(|h| h.get(crate::serve::CHUNKS))
            .and_then(|v| v.as_str().parse::<usize>().ok())
            .unwrap_or(1);
        let mut res = WireResponse::from_nats(first.headers.as_ref(), first.payload)
            .map_err(|e| Some(format!("an answer that is no HTTP response: {e}")))?;
        if chunks > 1 {
            let mut body = bytes::BytesMut::from(&res.body[..]);
            for _ in 1..chunks {
                let m = next_message(&mut sub, deadline).await?;
                if body.len() + m.payload.len() > crate::serve::MAX_RESPONSE_BYTES {
                    return Err(Some("an answer larger than a partition sends".to_owned()));
                }
                body.extend_from_slice(&m.payload);
            }
            res.body = body.freeze();
        }
        let _ = sub.unsubscribe().await;
        Ok(res)
    }

    /// Asks every partition of `reqs` at once; the answers in partition order, or the 503
    /// naming those that did not answer.
    async fn ask_all(
        &self,
        reqs: Vec<(u32, WireRequest)>,
        key: Option<&KeyHash>,
    ) -> Vec<Result<(u32, WireResponse), Missing>> {
        join_all(
            reqs.iter()
                .map(|(p, w)| async move { self.ask(*p, w, key).await.map(|res| (*p, res)) }),
        )
        .await
    }

    /// Any one partition: the next in turn, then the others while nobody serves them.
    async fn one(
        &self,
        wire: &WireRequest,
        key: Option<&KeyHash>,
    ) -> Result<WireResponse, WireResponse> {
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut missing = Vec::new();
        for i in 0..self.partitions {
            let p = (start.wrapping_add(i)) % self.partitions;
            match self.ask(p, wire, key).await {
                Ok(res) => return Ok(res),
                Err(m) => missing.push(m),
            }
        }
        Err(unavailable(&missing))
    }

    /// Every partition; the one answer that is not a 404 (the owner's), else a 404, or the
    /// 503 when a partition that did not answer may be the owner.
    async fn first_found(
        &self,
        wire: &WireRequest,
        key: Option<&KeyHash>,
    ) -> Result<WireResponse, WireResponse> {
        let answers = self.ask_all(self.everywhere(wire), key).await;
        let mut missing = Vec::new();
        let mut not_found = None;
        for a in answers {
            match a {
                Ok((_, res)) if res.status != StatusCode::NOT_FOUND => return Ok(res),
                Ok((_, res)) => not_found = not_found.or(Some(res)),
                Err(m) => missing.push(m),
            }
        }
        match not_found {
            Some(res) if missing.is_empty() => Ok(res),
            _ => Err(unavailable(&missing)),
        }
    }

    /// Every partition of `reqs`, their 200 JSON bodies merged by `merge`; the first answer
    /// that is not a 200 (a 400 for a bad parameter, a 401: every shard says the same) as is.
    async fn merged(
        &self,
        reqs: Vec<(u32, WireRequest)>,
        key: Option<&KeyHash>,
        merge: impl FnOnce(&[(u32, Value)]) -> Result<Value, MergeError>,
    ) -> Result<WireResponse, WireResponse> {
        let answers = self.gathered(reqs, key).await?;
        merged_json(answers, merge)
    }

    /// Every partition's 200 answer to `reqs`; else (as `Err`) the answer to give: the 503
    /// naming the partitions that did not answer, or the first answer that is not a 200.
    async fn gathered(
        &self,
        reqs: Vec<(u32, WireRequest)>,
        key: Option<&KeyHash>,
    ) -> Result<Vec<(u32, WireResponse)>, WireResponse> {
        let answers = self.all_answered(reqs, key).await?;
        match answers.iter().find(|(_, r)| r.status != StatusCode::OK) {
            Some((_, res)) => Err(res.clone()),
            None => Ok(answers),
        }
    }

    async fn all_answered(
        &self,
        reqs: Vec<(u32, WireRequest)>,
        key: Option<&KeyHash>,
    ) -> Result<Vec<(u32, WireResponse)>, WireResponse> {
        let mut answers = Vec::new();
        let mut missing = Vec::new();
        for a in self.ask_all(reqs, key).await {
            match a {
                Ok(x) => answers.push(x),
                Err(m) => missing.push(m),
            }
        }
        if !missing.is_empty() {
            return Err(unavailable(&missing));
        }
        Ok(answers)
    }

    /// `/v1/events`: each partition from its own cursor, merged with a composite cursor.
    async fn events(
        &self,
        wire: &WireRequest,
        key: Option<&KeyHash>,
    ) -> Result<WireResponse, WireResponse> {
        let given = query(&wire.path, "since").or_else(|| query(&wire.path, "next"));
        let Some(from) = EventCursor::parse(given.as_deref(), self.partitions) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!(
                    "since: {:?} is not a cursor of this cluster's event list",
                    given.unwrap_or_default()
                ),
            ));
        };
        let limit = query_usize(&wire.path, "limit").unwrap_or(100);
        let reqs = (0..self.partitions)
            .map(|p| {
                let mut w = wire.clone();
                w.path = with_query(
                    &wire.path,
                    &["since", "next"],
                    ("since", &from.0[p as usize].to_string()),
                );
                (p, w)
            })
            .collect();
        self.merged(reqs, key, |pages| merge::events(pages, &from, limit))
            .await
    }

    /// `/v1/webhooks/{id}/deliveries`: each partition after its own cursor, merged.
    async fn deliveries(
        &self,
        wire: &WireRequest,
        key: Option<&KeyHash>,
    ) -> Result<WireResponse, WireResponse> {
        let given = query(&wire.path, "next");
        let Some(from) = EventCursor::parse(given.as_deref(), self.partitions) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!(
                    "next: {:?} is not a cursor of this cluster's delivery list",
                    given.unwrap_or_default()
                ),
            ));
        };
        let limit = query_usize(&wire.path, "limit").unwrap_or(100);
        let reqs = (0..self.partitions)
            .map(|p| {
                let mut w = wire.clone();
                let after = merge::page_cursor(&[from.0[p as usize].to_string()]);
                w.path = with_query(&wire.path, &["next"], ("next", &after));
                (p, w)
            })
            .collect();
        self.merged(reqs, key, |pages| merge::deliveries(pages, &from, limit))
            .await
    }

    /// `/v1/reports/geofence-visits`, JSON or CSV.
    async fn visits(
        &self,
        wire: &WireRequest,
        key: Option<&KeyHash>,
    ) -> Result<WireResponse, WireResponse> {
        let answers = self.gathered(self.everywhere(wire), key).await?;
        let csv = answers
            .first()
            .and_then(|(_, r)| r.header("content-type"))
            .is_some_and(|c| c.starts_with("text/csv"));
        if !csv {
            return merged_json(answers, merge::visits);
        }
        let pages: Vec<(u32, &[u8])> = answers.iter().map(|(p, r)| (*p, &r.body[..])).collect();
        let body = merge::visits_csv(&pages).map_err(|e| merge_failed(&e))?;
        let mut res = answers[0].1.clone();
        res.body = body.into();
        Ok(res)
    }

    /// `/v1/positions`: the Features of every partition, as bytes (not re-encoded).
    async fn positions(
        &self,
        wire: &WireRequest,
        key: Option<&KeyHash>,
    ) -> Result<WireResponse, WireResponse> {
        let answers = self.gathered(self.everywhere(wire), key).await?;
        let pages: Vec<(u32, &[u8])> = answers.iter().map(|(p, r)| (*p, &r.body[..])).collect();
        let body = merge::positions(&pages).map_err(|e| merge_failed(&e))?;
        Ok(WireResponse {
            status: StatusCode::OK,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        })
    }

    /// The partition of device `id` of the request's tenant, when the front knows the tenant.
    fn partition_of(&self, key: Option<&KeyHash>, wire: &WireRequest, id: &str) -> Option<u32> {
        let of = self.settings.partition_of.as_ref()?;
        let known = self.known(key?)?;
        let tenant = match known {
            Known::Tenant(t) => t,
            Known::Admin => query(&wire.path, "tenant").filter(|t| !t.is_empty())?,
        };
        // Ids are plain ASCII; anything escaped is left to every partition to judge.
        if id.contains('%') || tenant.contains('%') {
            return None;
        }
        Some(of(&tenant, id) % self.partitions)
    }

    fn known(&self, key: &KeyHash) -> Option<Known> {
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Remembers the tenant a shard named for the key.
    fn learn(&self, key: Option<&KeyHash>, res: &WireResponse) {
        let (Some(key), Some(t)) = (key, res.header(TENANT_HEADER)) else {
            return;
        };
        let known = if t == landport_api::auth::TenantSlot::ADMIN {
            Known::Admin
        } else {
            Known::Tenant(t.to_owned())
        };
        // A std Mutex held for one map operation, never across an `.await`.
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        if tenants.get(key) == Some(&known) {
            return;
        }
        if tenants.len() >= TENANT_CACHE_MAX {
            tenants.clear();
        }
        tenants.insert(*key, known);
    }
}

/// The next message of an answer before `deadline`; `Err(None)` when there is none (no
/// responders, or not in time).
async fn next_message(
    sub: &mut async_nats::Subscriber,
    deadline: tokio::time::Instant,
) -> Result<async_nats::Message, Option<String>> {
    match tokio::time::timeout_at(deadline, sub.next()).await {
        Ok(Some(m)) if m.status == Some(async_nats::StatusCode::NO_RESPONDERS) => Err(None),
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(Some("the subscription closed".to_owned())),
        Err(_) => Err(None),
    }
}

/// The hash of the request's bearer key (as the API hashes it).
fn bearer_hash(wire: &WireRequest) -> Option<KeyHash> {
    let (scheme, key) = wire.header("authorization")?.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then(|| KeyHash::of(key))
}

/// Drops the internal `x-landport-*` headers.
fn strip_internal(h: &mut axum::http::HeaderMap) {
    let internal: Vec<_> = h
        .keys()
        .filter(|k| k.as_str().starts_with("x-landport-"))
        .cloned()
        .collect();
    for k in internal {
        h.remove(k);
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> WireResponse {
    WireResponse::json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// The 503 of an answer that needs partitions that did not answer.
fn unavailable(missing: &[Missing]) -> WireResponse {
    let mut parts: Vec<u32> = missing.iter().map(|m| m.0).collect();
    parts.sort_unstable();
    let list = parts
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let body = json!({
        "error": {"code": "partitions_unavailable", "message": format!(
            "partition(s) {list} did not answer (no instance serves them right now, or not in time): \
             the answer would be incomplete; retry shortly")},
        "partitions": parts,
    });
    let mut res = WireResponse::json(StatusCode::SERVICE_UNAVAILABLE, &body);
    res.headers.push(("retry-after".into(), "1".into()));
    res
}

/// The 200 JSON bodies of `answers` merged by `merge`.
fn merged_json(
    answers: Vec<(u32, WireResponse)>,
    merge: impl FnOnce(&[(u32, Value)]) -> Result<Value, MergeError>,
) -> Result<WireResponse, WireResponse> {
    let mut pages = Vec::with_capacity(answers.len());
    for (p, res) in answers {
        let v = serde_json::from_slice::<Value>(&res.body).map_err(|e| {
            merge_failed(&MergeError {
                partition: p,
                why: e.to_string(),
            })
        })?;
        pages.push((p, v));
    }
    merge(&pages)
        .map(|v| WireResponse::json(StatusCode::OK, &v))
        .map_err(|e| merge_failed(&e))
}

fn merge_failed(e: &MergeError) -> WireResponse {
    tracing::warn!(error = %e, "merging the partitions' answers");
    error(StatusCode::BAD_GATEWAY, "bad_gateway", &e.to_string())
}

/// The first value of query parameter `name` of a path, percent-decoded.
fn query(path: &str, name: &str) -> Option<String> {
    let (_, q) = path.split_once('?')?;
    q.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| percent_decode(v))
        })
        .next()
}

fn query_usize(path: &str, name: &str) -> Option<usize> {
    query(path, name)?.trim().parse().ok()
}

/// `path` without the parameters `drop`, with `set` added.
fn with_query(path: &str, drop: &[&str], set: (&str, &str)) -> String {
    let (base, q) = path.split_once('?').unwrap_or((path, ""));
    let mut kept: Vec<&str> = q
        .split('&')
        .filter(|kv| !kv.is_empty())
        .filter(|kv| !drop.contains(&kv.split_once('=').map_or(*kv, |(k, _)| k)))
        .collect();
    let added = format!("{}={}", set.0, set.1);
    kept.push(&added);
    format!("{base}?{}", kept.join("&"))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_routed_by_path() {
        assert_eq!(
            classify("/v1/devices"),
            Route::List("devices", Key::TenantId)
        );
        assert_eq!(classify("/v1/devices/nearby"), Route::Nearby);
        assert_eq!(classify("/v1/devices/t1"), Route::Device("t1".into()));
        assert_eq!(classify("/v1/devices/t1/track"), Route::Device("t1".into()));
        assert_eq!(classify("/v1/devices/t1/stops"), Route::Device("t1".into()));
        assert_eq!(classify("/v1/devices/t1/credentials"), Route::One);
        assert_eq!(
            classify("/v1/shipments"),
            Route::List("shipments", Key::TenantId)
        );
        assert_eq!(classify("/v1/shipments/s1/eta"), Route::FirstFound);
        assert_eq!(classify("/v1/public/tok"), Route::FirstFound);
        assert_eq!(
            classify("/v1/geofences/g/devices"),
            Route::List("devices", Key::Id)
        );
        assert_eq!(classify("/v1/geofences/g"), Route::One);
        assert_eq!(classify("/v1/geofences"), Route::One);
        assert_eq!(classify("/v1/webhooks"), Route::One);
        assert_eq!(classify("/v1/webhooks/w/deliveries"), Route::Deliveries);
        assert_eq!(
            delivery_retry("/v1/webhooks/wh_1/deliveries/dlv_17-p3/retry"),
            Some((3, "/v1/webhooks/wh_1/deliveries/dlv_17/retry".to_owned()))
        );
        assert_eq!(
            delivery_retry("/v1/webhooks/wh_1/deliveries/dlv_17/retry"),
            None
        );
        assert_eq!(delivery_retry("/v1/webhooks/wh_1/replay"), None);
        assert_eq!(classify("/v1/positions"), Route::Positions);
        assert_eq!(classify("/v1/events"), Route::Events);
        assert_eq!(classify("/v1/reports/geofence-visits"), Route::Visits);
        assert_eq!(classify("/v1/stream"), Route::Stream);
        assert_eq!(classify("/v1/devices/"), Route::One);
    }

    #[test]
    fn a_deployments_settings_route_a_device_where_nats_maps_it() {
        let s = FrontSettings::new(16, Duration::from_secs(3));
        let of = s.partition_of.unwrap();
        // SPEC 16's example: landport/acme/truck-1/telemetry -> lp.12.acme.truck-1.telemetry.
        assert_eq!(of("acme", "truck-1"), 12);
        assert_eq!(s.timeout, Duration::from_secs(3));
    }

    #[test]
    fn query_parameters_are_read_and_replaced() {
        let p = "/v1/events?limit=5&since=c1.2&type=device.online&tenant=ac%2Dme";
        assert_eq!(query(p, "since").as_deref(), Some("c1.2"));
        assert_eq!(query(p, "tenant").as_deref(), Some("ac-me"));
        assert_eq!(query_usize(p, "limit"), Some(5));
        assert_eq!(query(p, "next"), None);
        assert_eq!(
            with_query(p, &["since", "next"], ("since", "7")),
            "/v1/events?limit=5&type=device.online&tenant=ac%2Dme&since=7"
        );
        assert_eq!(
            with_query("/v1/events", &["since"], ("since", "0")),
            "/v1/events?since=0"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn internal_headers_are_stripped() {
        let mut h = axum::http::HeaderMap::new();
        use axum::http::HeaderValue;
        h.insert("x-landport-tenant", HeaderValue::from_static("forged"));
        h.insert("x-landport-seed", HeaderValue::from_static("forged"));
        h.insert("authorization", HeaderValue::from_static("Bearer k"));
        strip_internal(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn the_503_names_the_partitions_sorted() {
        let res = unavailable(&[Missing(3), Missing(1)]);
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.header("retry-after"), Some("1"));
        let v: Value = serde_json::from_slice(&res.body).unwrap();
        assert_eq!(v["partitions"], json!([1, 3]));
        assert_eq!(v["error"]["code"], "partitions_unavailable");
    }
}
