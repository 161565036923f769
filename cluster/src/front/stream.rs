//! `GET /v1/stream?topics=positions,events&shipment=` in cluster mode: the single node's live
//! stream, served by any instance.
//!
//! - The key is checked by a partition first (`GET /v1/devices?limit=1` with the request's own
//!   key, to any one partition; the shard names the key's tenant in `x-landport-tenant`), so a
//!   bad key is a 401 and a key over its rate a 429, as a single node answers. With
//!   `shipment=`, the shipment is read from its partition (404 if the tenant has none).
//! - `event: event`: the events the shards publish to core NATS
//!   (`landport.{tenant}.{device}.events`, the envelope as JSON, see [`crate::events`]), `id:`
//!   the event id. One NATS subscription per scope (a tenant; every tenant for an admin key
//!   naming none) on this instance feeds every stream of the scope. A shard publishes at least
//!   once (a takeover may publish an event again): an id seen among the scope's last
//!   [`RECENT_IDS`] is dropped. `event: lagged` (data: how many) when a client fell behind.
//! - `event: positions`: a FeatureCollection (the shape of `/v1/positions`) of the devices
//!   whose Feature changed since the previous frame; the first frame holds them all. One feed
//!   per scope on this instance polls the merged `/v1/positions` of the scope every
//!   [`POSITIONS_EVERY`] (with the key of its latest viewer) for all its viewers, as a single
//!   node shares one feed per scope. With `shipment=`, only that shipment's device.
//! - At most `limits.sse_connections` streams per tenant on this instance (429 past it);
//!   `: ready` first, a keep-alive comment after [`landport_api::sse::KEEP_ALIVE`] of silence; a stream ends when
//!   its client goes (its feeds stop once nobody watches them).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use landport_api::ApiError;
use landport_api::limits::{StreamSlot, StreamSlots};
use serde_json::value::RawValue;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::{Front, Known, bearer_hash, query};
use crate::serve::TENANT_HEADER;
use crate::wire::{WireRequest, WireResponse};

/// How often a positions feed polls the partitions.
pub const POSITIONS_EVERY: Duration = Duration::from_secs(1);

use landport_api::sse::{Item, frame, response as sse_response};

/// Event ids a scope remembers to drop repeats.
pub const RECENT_IDS: usize = 10_000;

/// Items a stream may fall behind a feed before it is told (`lagged`) or starts over.
const EVENTS_DEPTH: usize = 1024;
const POSITIONS_DEPTH: usize = 16;

/// How often an idle events feed checks whether anybody still watches it.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// The whole world, as `/v1/positions` takes it.
const WORLD: &str = "-180,-90,180,90";

/// `(tenant, device id)`.
type DeviceKey = (String, String);

/// The instance's live streams: the cap per tenant and the shared feeds.
pub(super) struct Streams {
    slots: Arc<StreamSlots>,
    events: Mutex<HashMap<Option<String>, broadcast::Sender<Arc<EventItem>>>>,
    positions: Mutex<HashMap<Option<String>, PositionsFeed>>,
}

impl Streams {
    pub(super) fn new(sse_connections: u64) -> Streams {
        Streams {
            slots: StreamSlots::new(sse_connections),
            events: Mutex::default(),
            positions: Mutex::default(),
        }
    }
}

/// One event as NATS carried it, framed once for every stream of the scope.
struct EventItem {
    shipment: Option<String>,
    frame: Item,
}

/// The parts of an event envelope the stream reads.
#[derive(serde::Deserialize)]
struct Envelope {
    id: String,
    tenant: String,
    device: String,
    #[serde(default)]
    shipment: Option<String>,
}

/// One scope's positions feed.
struct PositionsFeed {
    tx: broadcast::Sender<Arc<Update>>,
    /// The latest poll (`None` before the first): a new viewer starts from it.
    latest: Option<Arc<Latest>>,
    /// The requests of its latest viewers (distinct keys, newest last): the feed polls with
    /// the newest, and forgets one whose key is refused (revoked meanwhile).
    polls: VecDeque<WireRequest>,
}

/// Viewers' keys a positions feed remembers.
const POLL_KEYS: usize = 8;

/// The Features of one poll, by device.
struct Latest {
    features: BTreeMap<DeviceKey, Box<RawValue>>,
    /// The full frame, built when a viewer first needs it.
    full: std::sync::OnceLock<Option<Item>>,
}

impl Latest {
    fn full(&self) -> Option<Item> {
        self.full
            .get_or_init(|| frame_of(self.features.iter().map(|(k, v)| (k, &**v))))
            .clone()
    }
}

/// What changed between two polls.
struct Update {
    changed: Vec<(DeviceKey, Box<RawValue>)>,
    /// `changed` as a positions frame (`None`: nothing changed).
    frame: Option<Item>,
}

/// `GET /v1/stream` (see the module docs).
pub(super) async fn handle(f: Arc<Front>, req: Request) -> Response {
    match open(f, req).await {
        Ok(res) | Err(res) => res,
    }
}

/// A partition's answer (or the front's own) as the client gets it.
fn wire(res: WireResponse) -> Response {
    let mut res = res.to_http();
    super::strip_internal(res.headers_mut());
    res
}

async fn open(f: Arc<Front>, req: Request) -> Result<Response, Response> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::MethodNotAllowed.into_response());
    }
    let headers = req.headers().clone();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/v1/stream", |p| p.as_str())
        .to_owned();
    let auth: Vec<(String, String)> = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| vec![("authorization".to_owned(), v.to_owned())])
        .unwrap_or_default();
    let tenant_param = query(&path, "tenant").filter(|t| !t.is_empty());
    let with_tenant = |p: &str| match &tenant_param {
        Some(t) => format!("{p}&tenant={}", encode(t)),
        None => p.to_owned(),
    };
    let get = |p: String| WireRequest {
        method: Method::GET,
        path: p,
        headers: auth.clone(),
        body: Bytes::new(),
    };
    // 1. The key, as a partition judges it.
    let check = get(with_tenant("/v1/devices?limit=1"));
    let key = bearer_hash(&check);
    let res = f.one(&check, key.as_ref()).await.map_err(wire)?;
    if res.status != StatusCode::OK {
        return Err(wire(res));
    }
    let known = match res.header(TENANT_HEADER) {
        Some(landport_api::auth::TenantSlot::ADMIN) => Known::Admin,
        Some(t) => Known::Tenant(t.to_owned()),
        None => return Err(ApiError::Unauthorized.into_response()),
    };
    let scope = match known {
        Known::Tenant(t) => Some(t),
        Known::Admin => tenant_param.clone(),
    };
    // 2. The parameters, as the single node reads them.
    let (events, positions) = landport_api::stream_topics(query(&path, "topics").as_deref())
        .map_err(IntoResponse::into_response)?;
    // 3. The cap, before any work: an admin's streams over every tenant count under "".
    let slot = f
        .streams
        .slots
        .acquire(scope.as_deref().unwrap_or(""))
        .map_err(IntoResponse::into_response)?;
    // 4. The shipment, from its partition.
    let shipment = query(&path, "shipment").filter(|s| !s.is_empty());
    let device = match &shipment {
        Some(id) => {
            let Some(tenant) = scope.clone() else {
                return Err(ApiError::bad_request(
                    "an admin key must name the tenant: add ?tenant=ID",
                )
                .into_response());
            };
            let read = get(with_tenant(&format!("/v1/shipments/{}?", encode(id))));
            let res = f.first_found(&read, key.as_ref()).await.map_err(wire)?;
            if res.status != StatusCode::OK {
                return Err(wire(res));
            }
            let v: serde_json::Value = serde_json::from_slice(&res.body).unwrap_or_default();
            let Some(d) = v["device"].as_str() else {
                return Err(wire(super::error(
                    StatusCode::BAD_GATEWAY,
                    "bad_gateway",
                    "the shipment's partition answered without its device",
                )));
            };
            Some((tenant, d.to_owned()))
        }
        None => None,
    };
    // 5. Subscribed before `: ready` goes out: every event after it reaches the client.
    let events_rx = if events {
        Some(subscribe_events(&f, scope.clone()).await.map_err(|e| {
            tracing::warn!(error = %e, "subscribing to the events on NATS");
            wire(super::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the event stream of the cluster cannot be read right now; retry shortly",
            ))
        })?)
    } else {
        None
    };
    let (feed, full_due) = if positions {
        // A shipment's device is its tenant's: its viewers share the tenant's feed.
        let feed_scope = match &device {
            Some((t, _)) => Some(t.clone()),
            None => scope.clone(),
        };
        let mut poll = get(format!("/v1/positions?bbox={WORLD}"));
        if let Some(t) = &feed_scope {
            poll.path = format!("{}&tenant={}", poll.path, encode(t));
        }
        let (rx, latest) = subscribe_positions(&f, feed_scope, poll.clone());
        (Some((rx, poll)), Some(latest))
    } else {
        (None, None)
    };
    let (feed, poll) = feed.unzip();
    let viewer = Viewer {
        front: f,
        scope,
        events: events_rx,
        shipment,
        device,
        feed,
        poll,
        full_due,
        _slot: slot,
    };
    let items = stream::unfold(viewer, |mut v| async move {
        let item = v.next().await?;
        Some((item, v))
    });
    let ready = stream::once(async { Item::from(Bytes::from_static(b": ready\n\n")) });
    Ok(sse_response(&headers, ready.chain(items)))
}

/// One client's stream.
struct Viewer {
    front: Arc<Front>,
    scope: Option<String>,
    events: Option<broadcast::Receiver<Arc<EventItem>>>,
    shipment: Option<String>,
    /// With `shipment=`: its device, the only one whose positions go out.
    device: Option<DeviceKey>,
    feed: Option<broadcast::Receiver<Arc<Update>>>,
    /// The positions request with this stream's key (for its feed).
    poll: Option<WireRequest>,
    /// The poll to send in full next (`Some(None)`: the feed has not polled yet).
    full_due: Option<Option<Arc<Latest>>>,
    _slot: StreamSlot,
}

impl Viewer {
    /// The next item; `None` ends the stream.
    async fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(Some(latest)) = self.full_due.take() {
                let full = match &self.device {
                    Some(d) => frame_of(latest.features.get_key_value(d).map(|(k, v)| (k, &**v))),
                    None => latest.full(),
                };
                if let Some(full) = full {
                    return Some(full);
                }
            }
            let (feed_rx, events_rx) = (&mut self.feed, &mut self.events);
            let feed = async {
                match feed_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let events = async {
                match events_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = feed => match r {
                    Ok(update) => match &self.device {
                        None => if let Some(frame) = &update.frame {
                            return Some(frame.clone());
                        },
                        Some(d) => {
                            let mine = update.changed.iter().filter(|(k, _)| k == d);
                            if let Some(frame) = frame_of(mine.map(|(k, v)| (k, &**v))) {
                                return Some(frame);
                            }
                        }
                    },
                    // Behind the feed (or it ended): start over with a full collection.
                    Err(_) => {
                        let scope = match &self.device {
                            Some((t, _)) => Some(t.clone()),
                            None => self.scope.clone(),
                        };
                        let poll = self.poll.clone()?;
                        let (rx, latest) = subscribe_positions(&self.front, scope, poll);
                        self.feed = Some(rx);
                        self.full_due = Some(latest);
                    }
                },
                r = events => match r {
                    Ok(item) => {
                        if self.shipment.is_none() || item.shipment == self.shipment {
                            return Some(item.frame.clone());
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        return Some(frame("lagged", None, n.to_string().as_bytes()).into());
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

/// The live map (`/`), its assets (`/assets/...`) and the webhooks' page, served by the
/// instance itself in cluster mode (their data comes from `/v1`, which the front answers).
/// `landport_api::web::router` wants an API state, which it reads for `/track/{token}` only:
/// it gets an empty one here, over a store of its own in `dir`, so that it answers every
/// token with the "not found" page; the front asks the partitions about a token first
/// ([`track_page`]).
pub fn map_pages(
    map: landport_api::web::MapSettings,
    dir: &std::path::Path,
) -> anyhow::Result<axum::Router> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let core = landport_pipeline::Core::new(
        landport_tracker::Tracker::new(landport_tracker::TrackerSettings::default()),
        false,
        landport_pipeline::metrics::Metrics::new(),
    );
    let (events, _) = broadcast::channel(1);
    let api = landport_api::ApiState::new(
        dir,
        landport_pipeline::TrackerHandle::standalone(core),
        events,
        None,
    )
    .with_context(|| format!("opening {}", dir.display()))?;
    Ok(landport_api::web::router(map, api))
}

/// The tracking page's template (the single node renders the same file).
use landport_api::web::TRACK_HTML;

/// Where the pages carry their settings.
const CONFIG_START: &str = r#"<script id="landport-config" type="application/json">"#;

/// `GET /track/{token}` in cluster mode: the partitions say whether the token opens a
/// shipment now (`GET /v1/public/{token}`, answered by the shipment's partition, which also
/// holds the token to its rate); if it does, the tracking page, with the settings and headers
/// of the instance's own map page; if not, `local`'s "not found" page (see [`map_pages`]).
pub(super) async fn track_page(f: Arc<Front>, req: Request, local: axum::Router) -> Response {
    use tower::ServiceExt;
    let token = req.uri().path().trim_start_matches("/track/").to_owned();
    let public = WireRequest {
        method: Method::GET,
        path: format!("/v1/public/{token}"),
        headers: Vec::new(),
        body: Bytes::new(),
    };
    let res = match f.first_found(&public, None).await {
        Ok(res) | Err(res) => res,
    };
    let pass = |req: Request| async move {
        match local.clone().oneshot(req).await {
            Ok(res) => res,
            Err(e) => match e {},
        }
    };
    match res.status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return pass(req).await,
        _ => return wire(res),
    }
    let map = pass(Request::get("/").body(Body::empty()).unwrap_or_default()).await;
    let (parts, body) = map.into_parts();
    let page = axum::body::to_bytes(body, 4 * 1024 * 1024)
        .await
        .ok()
        .and_then(|b| {
            let text = std::str::from_utf8(&b).ok()?;
            let (_, rest) = text.split_once(CONFIG_START)?;
            let (config, _) = rest.split_once("</script>")?;
            Some(TRACK_HTML.replace("{{CONFIG}}", config))
        });
    match page {
        Some(page) if parts.status == StatusCode::OK => {
            let mut res = Response::from_parts(parts, Body::from(page));
            res.headers_mut().remove(header::CONTENT_LENGTH);
            res
        }
        _ => wire(super::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the tracking page could not be rendered",
        )),
    }
}

/// The NATS subject of a scope's events.
fn events_subject(scope: Option<&str>) -> String {
    match scope {
        // A tenant id that is one NATS token; anything else is filtered by the envelope.
        Some(t)
            if !t.is_empty()
                && !t
                    .bytes()
                    .any(|b| matches!(b, b'.' | b'*' | b'>') || b.is_ascii_whitespace()) =>
        {
            format!("landport.{t}.*.events")
        }
        _ => "landport.*.*.events".to_owned(),
    }
}

/// A receiver of `scope`'s events, its NATS subscription started (and known to the server)
/// if none runs on this instance.
async fn subscribe_events(
    f: &Arc<Front>,
    scope: Option<String>,
) -> Result<broadcast::Receiver<Arc<EventItem>>, String> {
    if let Some(tx) = f
        .streams
        .events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&scope)
    {
        return Ok(tx.subscribe());
    }
    let sub = f
        .client
        .subscribe(events_subject(scope.as_deref()))
        .await
        .map_err(|e| e.to_string())?;
    // A round trip: the server has the subscription once the flush is answered.
    f.client.flush().await.map_err(|e| e.to_string())?;
    let mut feeds = f
        .streams
        .events
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(tx) = feeds.get(&scope) {
        // Another stream started the scope's feed meanwhile: ours is dropped.
        return Ok(tx.subscribe());
    }
    let (tx, rx) = broadcast::channel(EVENTS_DEPTH);
    feeds.insert(scope.clone(), tx.clone());
    tokio::spawn(run_events(f.clone(), scope, sub, tx));
    Ok(rx)
}

/// One scope's events feed: NATS messages, repeats dropped, framed once.
async fn run_events(
    f: Arc<Front>,
    scope: Option<String>,
    mut sub: async_nats::Subscriber,
    tx: broadcast::Sender<Arc<EventItem>>,
) {
    let mut recent = Recent::new(RECENT_IDS);
    let mut idle = tokio::time::interval(IDLE_CHECK);
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            m = sub.next() => m,
            _ = idle.tick() => {
                if stop_events_if_unwatched(&f, &scope, &tx) {
                    break;
                }
                continue;
            }
        };
        let Some(msg) = msg else {
            // The client is closing: the streams end.
            f.streams
                .events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&scope);
            break;
        };
        let Ok(env) = serde_json::from_slice::<Envelope>(&msg.payload) else {
            tracing::debug!(subject = %msg.subject, "a message on an events subject that is no event");
            continue;
        };
        if !belongs(&msg.subject, &env, scope.as_deref()) || !recent.first_time(&env.id) {
            continue;
        }
        let item = EventItem {
            frame: frame("event", Some(&env.id), &msg.payload).into(),
            shipment: env.shipment,
        };
        if tx.send(Arc::new(item)).is_err() && stop_events_if_unwatched(&f, &scope, &tx) {
            break;
        }
    }
    let _ = sub.unsubscribe().await;
}

/// Whether an event that came on `subject` is one of `scope`'s: its envelope names the
/// subject's tenant and device (a message published there with another tenant's envelope is
/// not taken for that tenant's) and the scope's tenant.
fn belongs(subject: &str, env: &Envelope, scope: Option<&str>) -> bool {
    let expected = format!("landport.{}.{}.events", env.tenant, env.device);
    subject == expected && scope.is_none_or(|t| t == env.tenant)
}

/// Ends `scope`'s events feed if nobody listens any more; `true` if it was ended.
fn stop_events_if_unwatched(
    f: &Front,
    scope: &Option<String>,
    tx: &broadcast::Sender<Arc<EventItem>>,
) -> bool {
    let mut feeds = f
        .streams
        .events
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if tx.receiver_count() > 0 {
        return false;
    }
    if feeds.get(scope).is_some_and(|t| t.same_channel(tx)) {
        feeds.remove(scope);
    }
    true
}

/// A receiver of `scope`'s positions feed (started if none runs; `poll`, the viewer's request,
/// becomes the one the feed polls with) and the poll
/// whose changes its next item carries (`None`: the feed has not polled yet; its first item
/// holds every device).
fn subscribe_positions(
    f: &Arc<Front>,
    scope: Option<String>,
    poll: WireRequest,
) -> (broadcast::Receiver<Arc<Update>>, Option<Arc<Latest>>) {
    let mut feeds = f
        .streams
        .positions
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(feed) = feeds.get_mut(&scope) {
        let auth = poll.header("authorization").map(str::to_owned);
        feed.polls
            .retain(|p| p.header("authorization").map(str::to_owned) != auth);
        feed.polls.push_back(poll);
        while feed.polls.len() > POLL_KEYS {
            feed.polls.pop_front();
        }
        return (feed.tx.subscribe(), feed.latest.clone());
    }
    let (tx, rx) = broadcast::channel(POSITIONS_DEPTH);
    feeds.insert(
        scope.clone(),
        PositionsFeed {
            tx: tx.clone(),
            latest: None,
            polls: VecDeque::from([poll]),
        },
    );
    tokio::spawn(run_positions(f.clone(), scope, tx));
    (rx, None)
}

/// One scope's positions feed: every [`POSITIONS_EVERY`], the merged `/v1/positions`, and
/// the Features that changed since the previous poll.
async fn run_positions(f: Arc<Front>, scope: Option<String>, tx: broadcast::Sender<Arc<Update>>) {
    let mut tick = tokio::time::interval(POSITIONS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<Arc<Latest>> = None;
    loop {
        tick.tick().await;
        let poll = {
            let mut feeds = f
                .streams
                .positions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if tx.receiver_count() == 0 {
                if feeds.get(&scope).is_some_and(|p| p.tx.same_channel(&tx)) {
                    feeds.remove(&scope);
                }
                return;
            }
            match feeds.get(&scope) {
                Some(p) if p.tx.same_channel(&tx) => p.polls.back().cloned(),
                _ => return,
            }
        };
        let Some(poll) = poll else {
            continue;
        };
        let key = bearer_hash(&poll);
        let res = match f.positions(&poll, key.as_ref()).await {
            Ok(res) | Err(res) => res,
        };
        if matches!(res.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            // That key no longer works: the next tick polls with another viewer's.
            let mut feeds = f
                .streams
                .positions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(feed) = feeds.get_mut(&scope) {
                feed.polls.retain(|p| p.headers != poll.headers);
            }
        }
        if res.status != StatusCode::OK {
            tracing::debug!(status = %res.status, "a positions feed's poll");
            continue;
        }
        let Some(latest) = parse_collection(&res.body) else {
            tracing::warn!("a positions feed's poll: not a FeatureCollection");
            continue;
        };
        let latest = Arc::new(latest);
        let update = diff(previous.as_deref(), &latest);
        previous = Some(latest.clone());
        let mut feeds = f
            .streams
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(feed) = feeds.get_mut(&scope)
            && feed.tx.same_channel(&tx)
        {
            // Sent and made the feed's latest in one step: a viewer that subscribes meanwhile
            // either gets this update or starts from this poll.
            if !update.changed.is_empty() {
                let _ = tx.send(Arc::new(update));
            }
            feed.latest = Some(latest);
        }
    }
}

/// A FeatureCollection's Features by `(properties.tenant, id)`.
fn parse_collection(body: &[u8]) -> Option<Latest> {
    #[derive(serde::Deserialize)]
    struct Collection {
        features: Vec<Box<RawValue>>,
    }
    #[derive(serde::Deserialize)]
    struct Head {
        id: String,
        properties: Props,
    }
    #[derive(serde::Deserialize)]
    struct Props {
        tenant: String,
    }
    let c: Collection = serde_json::from_slice(body).ok()?;
    let mut features = BTreeMap::new();
    for f in c.features {
        let h: Head = serde_json::from_str(f.get()).ok()?;
        features.insert((h.properties.tenant, h.id), f);
    }
    Some(Latest {
        features,
        full: Default::default(),
    })
}

/// The Features of `now` that are new or differ from `before` (all of them without `before`).
fn diff(before: Option<&Latest>, now: &Latest) -> Update {
    let changed: Vec<(DeviceKey, Box<RawValue>)> = now
        .features
        .iter()
        .filter(|(k, v)| {
            before.is_none_or(|b| b.features.get(*k).is_none_or(|old| old.get() != v.get()))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let frame = frame_of(changed.iter().map(|(k, v)| (k, &**v)));
    Update { changed, frame }
}

/// The `positions` frame of these Features (`None`: none).
fn frame_of<'a>(features: impl IntoIterator<Item = (&'a DeviceKey, &'a RawValue)>) -> Option<Item> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(
        b"event: positions\ndata: {\"type\":\"FeatureCollection\",\"features\":[",
    );
    let mut any = false;
    for (_, f) in features {
        if any {
            out.push(b',');
        }
        // Compact JSON from the shards: one line.
        out.extend_from_slice(f.get().as_bytes());
        any = true;
    }
    out.extend_from_slice(b"]}\n\n");
    any.then(|| Item::from(Bytes::from(out)))
}

/// Percent-encodes what is not unreserved in a URL (ids in a path or query).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The ids seen most recently, at most `cap` of them.
struct Recent {
    seen: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl Recent {
    fn new(cap: usize) -> Recent {
        Recent {
            seen: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// `true` the first time `id` is seen (among the last `cap`).
    fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() >= self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_id_is_dropped_and_memory_is_bounded() {
        let mut r = Recent::new(2);
        assert!(r.first_time("a"));
        assert!(!r.first_time("a"));
        assert!(r.first_time("b"));
        assert!(r.first_time("c"));
        assert_eq!(r.seen.len(), 2);
        // "a" was forgotten: it counts as new again.
        assert!(r.first_time("a"));
        assert!(!r.first_time("c"));
    }

    fn feature(tenant: &str, id: &str, lon: f64) -> String {
        format!(
            r#"{{"type":"Feature","id":"{id}","geometry":{{"type":"Point","coordinates":[{lon},41.0]}},"properties":{{"tenant":"{tenant}"}}}}"#
        )
    }

    fn collection(fs: &[String]) -> Vec<u8> {
        format!(
            r#"{{"type":"FeatureCollection","features":[{}]}}"#,
            fs.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn a_poll_sends_only_the_features_that_changed_and_the_first_sends_all() {
        let one = parse_collection(&collection(&[
            feature("acme", "t1", 123.0),
            feature("acme", "t2", 123.0),
        ]))
        .unwrap();
        let first = diff(None, &one);
        assert_eq!(first.changed.len(), 2);
        let text = String::from_utf8(first.frame.unwrap().bytes().to_vec()).unwrap();
        assert!(text.starts_with("event: positions\ndata: {\"type\":\"FeatureCollection\""));
        assert!(text.ends_with("]}\n\n"));
        let v: serde_json::Value = serde_json::from_str(
            text.trim_end()
                .strip_prefix("event: positions\ndata: ")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(v["features"].as_array().unwrap().len(), 2);

        let two = parse_collection(&collection(&[
            feature("acme", "t1", 123.0),
            feature("acme", "t2", 123.5),
            feature("globex", "t1", 1.0),
        ]))
        .unwrap();
        let next = diff(Some(&one), &two);
        let keys: Vec<_> = next.changed.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            keys,
            vec![
                ("acme".to_owned(), "t2".to_owned()),
                ("globex".to_owned(), "t1".to_owned())
            ]
        );
        let same = diff(Some(&two), &two);
        assert!(same.changed.is_empty() && same.frame.is_none());
        assert!(two.full().is_some());
    }

    #[test]
    fn frames_and_subjects() {
        assert_eq!(events_subject(Some("acme")), "landport.acme.*.events");
        assert_eq!(events_subject(None), "landport.*.*.events");
        assert_eq!(events_subject(Some("a.b")), "landport.*.*.events");
        assert_eq!(encode("s-1 /x"), "s-1%20%2Fx");
        let env: Envelope =
            serde_json::from_str(r#"{"id":"evt_1","tenant":"acme","device":"t1","type":"x"}"#)
                .unwrap();
        assert!(belongs("landport.acme.t1.events", &env, Some("acme")));
        assert!(belongs("landport.acme.t1.events", &env, None));
        assert!(!belongs("landport.acme.t1.events", &env, Some("globex")));
        assert!(!belongs("landport.globex.t1.events", &env, None));
        assert!(!belongs("landport.acme.t2.events", &env, Some("acme")));
    }
}
