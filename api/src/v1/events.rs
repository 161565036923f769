//! `GET /v1/events?since=CURSOR&type=&device=&shipment=&limit=`: stored events in commit
//! order, paged by an opaque cursor.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use landport_store::EventFilter;
use landport_tracker::EventType;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::error::{ApiError, Query};
use crate::state::ApiState;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    since: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    device: Option<String>,
    shipment: Option<String>,
    limit: Option<usize>,
}

/// `{"events": [...], "next": CURSOR}`. Pass `next` as `since` for the following page; an
/// empty page means caught up (and `next` stays where it was). The cursor is the store's event
/// sequence number as a string: clients should treat it as opaque.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    operation_id = "list_events",
    params(EventParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of events", body = crate::openapi::EventPage),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(s): State<ApiState>,
    caller: Caller,
    Query(q): Query<EventParams>,
) -> Result<Response, ApiError> {
    let after_seq = match q.since.as_deref() {
        None | Some("") => 0,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .ok_or_else(|| ApiError::bad_request(format!("since: {c:?} is not a cursor")))?,
    };
    let kind = q
        .kind
        .as_deref()
        .filter(|k| !k.is_empty())
        .map(|k| {
            serde_json::from_value::<EventType>(json!(k))
                .map_err(|_| ApiError::bad_request(format!("type: unknown event type {k:?}")))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be in [1, {MAX_LIMIT}]"
        )));
    }
    let filter = EventFilter {
        tenant: caller.scope().map(str::to_owned),
        after_seq,
        kind,
        device: q.device.filter(|d| !d.is_empty()),
        shipment: q.shipment.filter(|d| !d.is_empty()),
    };
    let page = s.read(move |st| st.events_after(&filter, limit)).await?;
    let next = page.last().map_or(after_seq, |(seq, _)| *seq);
    let events: Vec<_> = page.into_iter().map(|(_, e)| e).collect();
    Ok(axum::Json(json!({"events": events, "next": next.to_string()})).into_response())
}
