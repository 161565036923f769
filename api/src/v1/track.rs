//! `GET /v1/devices/{id}/track?from=&to=&limit=`: a device's stored history as a GeoJSON
//! LineString Feature, with the time of each vertex.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use landport_pipeline::now_ms;
use serde::Deserialize;
use serde_json::json;

use super::view::rfc3339;
use crate::auth::Caller;
use crate::error::{ApiError, Path, Query};
use crate::state::ApiState;

/// Default window when `from` is absent: the 24 hours before `to`.
const DEFAULT_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
const DEFAULT_LIMIT: usize = 10_000;
const MAX_LIMIT: usize = 100_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrackParams {
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

/// RFC 3339, or epoch milliseconds.
fn parse_time(name: &str, s: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be an RFC 3339 time or epoch milliseconds, got {s:?}"
            ))
        })
}

/// `{"type": "Feature", "id": device, "geometry": LineString, "properties": {"times": [...],
/// "from", "to", "truncated"}}`: readings with a position, oldest first; `times[i]` is the
/// device time of `coordinates[i]`. 404 when the tenant has no such device and no history
/// of one in the window.
#[utoipa::path(
    get,
    path = "/v1/devices/{id}/track",
    tag = "devices",
    operation_id = "device_track",
    params(("id" = String, Path, description = "the device id"), TrackParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a LineString Feature; `properties.times` holds one RFC 3339 time per vertex", body = crate::openapi::Feature),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn track(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TrackParams>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let to_ms = match &q.to {
        Some(t) => parse_time("to", t)?,
        None => now_ms(),
    };
    let from_ms = match &q.from {
        Some(t) => parse_time("from", t)?,
        None => to_ms.saturating_sub(DEFAULT_WINDOW_MS),
    };
    if from_ms > to_ms {
        return Err(ApiError::bad_request("from is after to"));
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be in [1, {MAX_LIMIT}]"
        )));
    }
    let (t, i) = (tenant.clone(), id.clone());
    let (readings, registered) = s
        .read(move |st| {
            let r = st.track(&t, &i, from_ms, to_ms, limit)?;
            Ok((r, st.get_device(&t, &i)?.is_some()))
        })
        .await?;
    let unknown = readings.is_empty() && !registered && s.live().device(&tenant, &id).is_none();
    if unknown || !s.owns(&tenant, &id) {
        return Err(ApiError::not_found("device", id));
    }
    let truncated = readings.len() == limit;
    let (coords, times): (Vec<_>, Vec<_>) = readings
        .iter()
        .filter_map(|r| r.fix.map(|f| ([f.lon, f.lat], rfc3339(Some(r.ts_ms)))))
        .unzip();
    let body = json!({
        "type": "Feature",
        "id": id,
        "geometry": {"type": "LineString", "coordinates": coords},
        "properties": {"times": times, "from": rfc3339(Some(from_ms)), "to": rfc3339(Some(to_ms)),
            "truncated": truncated},
    });
    Ok(axum::Json(body).into_response())
}
