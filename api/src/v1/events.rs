//! `GET /v1/events?since=CURSOR&type=&device=&shipment=&limit=`: stored events in commit
//! order, paged by an opaque cursor.
//!
//! The cursor of a tenant key (and of an admin key naming `?tenant=`) is the tenant's own event
//! number, which counts that tenant's events only: how far it moves between two pages says
//! nothing about other tenants' traffic (SPEC 15). An admin key listing every tenant pages by
//! the store's global sequence instead. A cursor is good for the scope it came from. Events are
//! kept `storage.events_retention_days`; a cursor older than that just continues with the
//! oldest event kept.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use landport_store::EventFilter;
use landport_tracker::EventType;
use serde::Deserialize;
use serde_json::json;

use super::page::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::auth::Caller;
use crate::error::{ApiError, Query};
use crate::state::ApiState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// The `next` of the previous page; absent (or empty) for the first.
    since: Option<String>,
    /// The same as `since`, under the name the other lists use.
    next: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    device: Option<String>,
    shipment: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// `{"events": [...], "next": CURSOR}`. Pass `next` as `since` for the following page; an
/// empty page means caught up (and `next` stays where it was). The cursor is a number as a
/// string (see the module docs for which): clients should treat it as opaque.
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
    let after_seq = match q.since.as_deref().or(q.next.as_deref()) {
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
    let page = s
        .read(move |st| match filter.tenant {
            // the tenant's own numbers: nothing about other tenants' volume
            Some(_) => st.tenant_events_after(&filter, limit),
            None => st.events_after(&filter, limit),
        })
        .await?;
    let next = page.last().map_or(after_seq, |(seq, _)| *seq);
    if s.owner().is_some() {
        // Cluster mode: each event's own cursor, from which the instance's front makes the
        // composite cursor over partitions of a merged page (and strips this member).
        let cursors: Vec<String> = page.iter().map(|(seq, _)| seq.to_string()).collect();
        let events: Vec<_> = page.into_iter().map(|(_, e)| e).collect();
        let body = json!({"events": events, "next": next.to_string(), "cursors": cursors});
        return Ok(axum::Json(body).into_response());
    }
    let events: Vec<_> = page.into_iter().map(|(_, e)| e).collect();
    Ok(axum::Json(json!({"events": events, "next": next.to_string()})).into_response())
}
