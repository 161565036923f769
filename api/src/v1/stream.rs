//! `GET /v1/stream?topics=positions,events&shipment=`: server-sent events, live.
//!
//! - `event: event` — one stored-event envelope (SPEC 5) as JSON, `id:` its event id; from
//!   the pipeline's broadcast, filtered to the caller's tenant (and the shipment, if named).
//! - `event: positions` — a GeoJSON FeatureCollection of the devices whose latest reading
//!   changed since the previous one (polled from the tracker every [`POSITIONS_EVERY`]), as
//!   `/v1/positions` shapes them; with `shipment=`, only that shipment's device.
//! - `event: lagged` — this client fell behind the broadcast and missed `data` events; it can
//!   fill the gap from `GET /v1/events`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;
use landport_tracker::Event;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::devices::live_devices;
use super::view::rfc3339;
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
    /// `(tenant, device)` -> device time of the latest reading already sent.
    sent: HashMap<(String, String), i64>,
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
        sent: HashMap::new(),
    };
    let items = stream::unfold(client, |mut c| async move {
        let item = c.next().await?;
        Some((Ok(item), c))
    });
    Ok(Sse::new(items).keep_alive(KeepAlive::default()))
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
                        return Some(SseEvent::default().event("positions").data(fc.to_string()));
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

    /// The FeatureCollection of devices with a reading not sent yet; `Some(None)` when none
    /// changed, `None` when the tracker is gone.
    async fn changed_positions(&mut self) -> Option<Option<Value>> {
        let live = live_devices(&self.state, self.scope.clone()).await.ok()?;
        let mut features = Vec::new();
        for (tenant, d) in live {
            let (Some(f), Some(seen)) = (d.fix, d.last_seen_ms) else {
                continue;
            };
            let key = (tenant, d.id.clone());
            if self.device.as_ref().is_some_and(|want| *want != key) {
                continue;
            }
            if self.sent.get(&key) == Some(&seen) {
                continue;
            }
            features.push(json!({
                "type": "Feature", "id": d.id,
                "geometry": {"type": "Point", "coordinates": [f.lon, f.lat]},
                "properties": {
                    "tenant": key.0, "online": d.online, "ts": rfc3339(d.fix_ts_ms),
                    "speed_kmh": f.speed_kmh, "heading_deg": f.heading_deg,
                    "accuracy_m": f.accuracy_m, "geofences": d.geofences,
                },
            }));
            self.sent.insert(key, seen);
        }
        Some(
            (!features.is_empty())
                .then(|| json!({"type": "FeatureCollection", "features": features})),
        )
    }
}
