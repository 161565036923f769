//! `GET /v1/stream?topics=positions,events&shipment=`: server-sent events, live.
//!
//! - `event: event` — one stored-event envelope (SPEC 5) as JSON, `id:` its event id; from
//!   the pipeline's broadcast, filtered to the caller's tenant (and the shipment, if named).
//! - `event: positions` — a GeoJSON FeatureCollection of the devices whose live state changed
//!   since the previous one (all of them in the first; polled from the tracker every
//!   [`POSITIONS_EVERY`]), as `/v1/positions` shapes them; with `shipment=`, only that
//!   shipment's device.
//! - `event: lagged` — this client fell behind the broadcast and missed `data` events; it can
//!   fill the gap from `GET /v1/events`.
//!
//! The stream opens with the SSE comment `: ready` (ignored by SSE parsers), sent at once: the
//! broadcast is subscribed by then, so a client that has read it gets every event published
//! after. It also puts the response headers on the wire (hyper sends them with the first body
//! bytes), so that a client need not wait for the first item to know the stream is open.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream;
use futures_util::{Stream, StreamExt};
use landport_tracker::{DeviceView, Event};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::positions::{PositionCollection, PositionFeature};
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
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<Event>>,
    tick: tokio::time::Interval,
    /// The tenant watched; `None` = every tenant (an admin naming none).
    scope: Option<String>,
    shipment: Option<String>,
    /// With `shipment=`: `(tenant, device)` of its device, the only one whose positions go out.
    device: Option<(String, String)>,
    events: bool,
    positions: bool,
    /// The tracker's change counter at the previous positions item; `None` before the first.
    since: Option<u64>,
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
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn stream(
    State(s): State<ApiState>,
    caller: Caller,
    Query(q): Query<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let (mut events, mut positions) = (false, false);
    for t in q.topics.as_deref().unwrap_or("positions,events").split(',') {
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
    let client = Client {
        rx: s.subscribe(),
        state: s,
        tick,
        scope: caller.scope().map(str::to_owned),
        shipment,
        device,
        events,
        positions,
        since: None,
    };
    let items = stream::unfold(client, |mut c| async move {
        let item = c.next().await?;
        Some((Ok(item), c))
    });
    // `client` subscribed above: from here on no event is missed (see the module docs).
    let ready = stream::once(async { Ok(SseEvent::default().comment("ready")) });
    Ok(Sse::new(ready.chain(items)).keep_alive(KeepAlive::default()))
}

impl Client {
    /// The next item to send; `None` ends the stream (the pipeline stopped).
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            tokio::select! {
                r = self.rx.recv(), if self.events => match r {
                    Ok(ev) if self.wants(&ev) => {
                        let data = serde_json::to_string(&*ev).ok()?;
                        let item = SseEvent::default().event("event").id(ev.id.clone());
                        return Some(item.data(data));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        return Some(SseEvent::default().event("lagged").data(n.to_string()));
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.tick.tick(), if self.positions => {
                    if let Some(fc) = self.changed_positions().await? {
                        return Some(SseEvent::default().event("positions").data(fc));
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

    /// The FeatureCollection (JSON) of devices whose live state changed since the previous
    /// call (all of them, the first time); `Some(None)` when none changed. Read from the read
    /// side (one counter per device compared), never on the pipeline's task.
    async fn changed_positions(&mut self) -> Option<Option<String>> {
        let live = self.state.live();
        let tenants: Vec<String> = match &self.scope {
            Some(one) => vec![one.clone()],
            None => live.tenants().map(str::to_owned).collect(),
        };
        let views: Vec<(String, Arc<DeviceView>)> = tenants
            .into_iter()
            .flat_map(|ten| {
                let changed = match self.since {
                    Some(s) => live.changed_since(&ten, s),
                    None => live.devices(&ten),
                };
                changed
                    .into_iter()
                    .map(move |d| (ten.clone(), d))
                    .collect::<Vec<_>>()
            })
            .collect();
        let seq = live.seq();
        self.since = Some(seq);
        let features: Vec<PositionFeature<'_>> = views
            .iter()
            .filter(|(ten, d)| {
                self.device
                    .as_ref()
                    .is_none_or(|(want_t, want_d)| want_t == ten && *want_d == d.id)
            })
            .filter_map(|(ten, d)| PositionFeature::new(ten, d))
            .collect();
        if features.is_empty() {
            return Some(None);
        }
        serde_json::to_string(&PositionCollection::new(features))
            .ok()
            .map(Some)
    }
}
