//! `GET /v1/stream?topics=positions,events&shipment=`: server-sent events, live.
//!
//! - `event: event` — one stored-event envelope (SPEC 5) as JSON, `id:` its event id; from
//!   the pipeline's broadcast, filtered to the caller's tenant (and the shipment, if named).
//! - `event: positions` — a GeoJSON FeatureCollection of the devices whose live state changed
//!   since the previous one (all of them in the first; then every [`POSITIONS_EVERY`]), as
//!   `/v1/positions` shapes them, from the read side. Viewers of the same scope share one
//!   feed (`positions_feed`): each second's changes are serialized once for all of them. With
//!   `shipment=`, only that shipment's device, polled by this stream alone.
//! - `event: lagged` — this client fell behind the broadcast and missed `data` events; it can
//!   fill the gap from `GET /v1/events`.
//!
//! A tenant may have `limits.sse_connections` streams open at once; one more gets a 429.
//!
//! The stream opens with the SSE comment `: ready` (ignored by SSE parsers), sent at once: the
//! broadcast is subscribed by then, so a client that has read it gets every event published
//! after. It also puts the response headers on the wire (hyper sends them with the first body
//! bytes), so that a client need not wait for the first item to know the stream is open.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use futures_util::stream;
use landport_tracker::Event;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::positions_feed::changed_frame;
use super::sse::{self, Item};
use crate::auth::Caller;
use crate::error::{ApiError, Query};
use crate::state::ApiState;

/// How often the positions topic polls the tracker.
pub const POSITIONS_EVERY: Duration = Duration::from_secs(1);

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    topics: Option<String>,
    shipment: Option<String>,
}

/// What one client's stream remembers between items.
struct Client {
    state: ApiState,
    /// The pipeline's live events, subscribed only when the `events` topic is asked for: a
    /// live map (`topics=positions`) leaves the broadcast the store writer sends into alone.
    rx: Option<broadcast::Receiver<Arc<Event>>>,
    tick: tokio::time::Interval,
    /// The tenant watched; `None` = every tenant (an admin naming none).
    scope: Option<String>,
    shipment: Option<String>,
    /// With `shipment=`: `(tenant, device)` of its device, the only one whose positions go out.
    device: Option<(String, String)>,
    positions: bool,
    /// Without `shipment=`: the scope's shared positions feed, and whether the next positions
    /// item must be a full collection (the first, or after falling behind the feed).
    feed: Option<broadcast::Receiver<Item>>,
    /// The view to send in full next (the feed's, when subscribed or after falling behind).
    full_due: Option<Arc<landport_tracker::LiveView>>,
    /// With `shipment=`: the view seq at the previous positions item; `None` before the first.
    since: Option<u64>,
    /// This stream's place under `limits.sse_connections`, given back when the stream ends.
    _slot: crate::limits::StreamSlot,
}

/// The `topics` parameter of `/v1/stream` (both when absent) as (events, positions); an
/// unknown topic is a 400 naming it. The cluster front reads the parameter with it too.
pub fn topics(topics: Option<&str>) -> Result<(bool, bool), ApiError> {
    let (mut events, mut positions) = (false, false);
    for t in topics.unwrap_or("positions,events").split(',') {
        match t.trim() {
            "events" => events = true,
            "positions" => positions = true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "topics: unknown topic {other:?} (positions, events)"
                )));
            }
        }
    }
    Ok((events, positions))
}

#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "events",
    operation_id = "stream",
    params(StreamParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "server-sent events: `positions` (a FeatureCollection), `event`, `lagged`", content_type = "text/event-stream", body = String),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 429, description = "over `limits.sse_connections` (or the key's rate): see `retry-after`", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn stream(
    State(s): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<StreamParams>,
) -> Result<Response, ApiError> {
    let (events, positions) = topics(q.topics.as_deref())?;
    // Before any work: an admin's streams over every tenant count under "".
    let slot = s.stream_slot(caller.scope().unwrap_or(""))?;
    let shipment = q.shipment.filter(|s| !s.is_empty());
    let device = match &shipment {
        Some(id) => {
            let tenant = caller.tenant()?.to_owned();
            let (t, i) = (tenant.clone(), id.clone());
            let rec = s
                .read(move |st| st.get_shipment(&t, &i))
                .await?
                .ok_or_else(|| ApiError::not_found("shipment", id.clone()))?;
            Some((tenant, rec.def.device))
        }
        None => None,
    };
    let mut tick = tokio::time::interval(POSITIONS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let scope = caller.scope().map(str::to_owned);
    // The first item is the feed's view in full; the feed then carries what changed after it.
    let (feed, full_due) = if positions && device.is_none() {
        let (rx, view) = s.positions_hub().subscribe(&s, scope.clone());
        (Some(rx), Some(view))
    } else {
        (None, None)
    };
    let client = Client {
        rx: events.then(|| s.subscribe()),
        state: s,
        tick,
        scope,
        shipment,
        device,
        positions,
        feed,
        full_due,
        since: None,
        _slot: slot,
    };
    let items = stream::unfold(client, |mut c| async move {
        let item = c.next().await?;
        Some((item, c))
    });
    // `client` subscribed above: from here on no event is missed (see the module docs).
    let ready = stream::once(async { Item::from(sse::comment("ready")) });
    Ok(sse::response(&headers, ready.chain(items)))
}

impl Client {
    /// The next item to send; `None` ends the stream (the pipeline stopped).
    async fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(view) = self.full_due.take() {
                // Large (every device of the scope): the readers' budget first.
                self.state.reader_budget().admit().await;
                if let Some(fc) = self
                    .state
                    .positions_hub()
                    .full(&view, self.scope.as_deref())
                {
                    return Some(fc);
                }
            }
            let feed = async {
                match self.feed.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let events = async {
                match self.rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = feed => match r {
                    Ok(fc) => {
                        // Sending it to this viewer costs CPU too: the budget's gate.
                        self.state.reader_budget().admit().await;
                        return Some(fc);
                    }
                    // Behind the shared feed (or it ended): start over with a full collection.
                    Err(_) => {
                        let hub = self.state.positions_hub();
                        let (rx, view) = hub.subscribe(&self.state, self.scope.clone());
                        self.feed = Some(rx);
                        self.full_due = Some(view);
                    }
                },
                r = events => match r {
                    Ok(ev) if self.wants(&ev) => {
                        let data = serde_json::to_vec(&*ev).ok()?;
                        return Some(sse::frame("event", Some(&ev.id), &data).into());
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        return Some(sse::frame("lagged", None, n.to_string().as_bytes()).into());
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.tick.tick(), if self.positions && self.device.is_some() => {
                    if let Some(fc) = self.changed_positions().await? {
                        return Some(fc);
                    }
                }
            }
        }
    }

    fn wants(&self, ev: &Event) -> bool {
        self.scope.as_deref().is_none_or(|t| t == ev.tenant)
            && self
                .shipment
                .as_deref()
                .is_none_or(|s| ev.shipment.as_deref() == Some(s))
    }

    /// With `shipment=`: the positions event of its device if its live state changed since
    /// the previous call (at all, the first time); `Some(None)` when it did not.
    async fn changed_positions(&mut self) -> Option<Option<Item>> {
        let live = self.state.live();
        let device = self.device.as_ref().map(|(t, d)| (t.as_str(), d.as_str()));
        let json = changed_frame(&live, self.scope.as_deref(), self.since, device);
        self.since = Some(live.seq());
        Some(json.map(Item::from))
    }
}
