//! `GET/POST /v1/shipments`, `GET/PATCH/DELETE /v1/shipments/{id}`,
//! `GET /v1/shipments/{id}/eta`, `GET/POST/DELETE /v1/shipments/{id}/share` and the public
//! `GET /v1/public/{token}`.
//!
//! # Share links (SPEC 15)
//!
//! A shipment has at most one share token: `POST .../share` makes one (and revokes the one
//! before, so it also rotates a leaked link), `GET .../share` says when it was made and when it
//! expires (never the token: it is stored hashed), `DELETE .../share` revokes it. A token
//! expires at its explicit `expires_at`, else 7 days after the shipment arrived (or was
//! delivered or cancelled), else 7 days after its deadline; without any of those it does not
//! expire yet. The public view shows the position and ETA only while the shipment is
//! `in_transit`: once it has arrived the link no longer follows the vehicle to its next job
//! (nor before it has left, on its previous one).
//!
//! A write is a [`Command`]: this module parses the request into a definition (or a change of
//! one); the pipeline has the tracker validate what needs the tenant's live state (that origin
//! and destination geofences exist, the route's geometry), then stores and applies it. When
//! the tracker refuses, nothing is stored and the answer is 400. A PATCH's read-modify-write
//! happens inside its command, so concurrent PATCHes all land.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use geo_types::LineString;
use landport_pipeline::command::ShipmentChange;
use landport_pipeline::{Command, CommandError, Outcome};
use landport_store::{KeyHash, ShareToken, ShipmentRecord};
use landport_tracker::{Eta, Place, ShipmentDef, ShipmentState, ShipmentStatus, TrackerError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::geojson;
use super::page::{Page, PageQuery};
use super::view::rfc3339;
use super::{check_id, random_id};
use crate::auth::Caller;
use crate::error::{ApiError, Json, Path, Query};
use crate::replicated::now_ms;
use crate::state::ApiState;

/// `POST` body. Places are a geofence id (`"yingkou-port"`) or a point
/// (`{"lat": 40.6, "lon": 122.2}`, or a GeoJSON Point). `route` is a GeoJSON LineString
/// geometry, or a Feature holding one. `deadline` is RFC 3339.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewShipment {
    #[serde(default)]
    id: Option<String>,
    device: String,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    origin: Option<Value>,
    destination: Value,
    #[serde(default)]
    route: Option<Value>,
    #[serde(default)]
    route_corridor_m: Option<f64>,
    #[serde(default)]
    deadline: Option<String>,
    #[serde(default)]
    temp_range_c: Option<[f64; 2]>,
    #[serde(default)]
    max_speed_kmh: Option<f64>,
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::ShipmentStatus>)]
    status: Option<ShipmentStatus>,
}

/// `PATCH` body: the members to change; `null` clears an optional one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentPatch {
    #[serde(default)]
    device: Option<String>,
    #[serde(default, with = "patch_field")]
    reference: Option<Option<String>>,
    #[serde(default, with = "patch_field")]
    origin: Option<Option<Value>>,
    #[serde(default)]
    destination: Option<Value>,
    #[serde(default, with = "patch_field")]
    route: Option<Option<Value>>,
    #[serde(default, with = "patch_field")]
    route_corridor_m: Option<Option<f64>>,
    #[serde(default, with = "patch_field")]
    deadline: Option<Option<String>>,
    #[serde(default, with = "patch_field")]
    temp_range_c: Option<Option<[f64; 2]>>,
    #[serde(default, with = "patch_field")]
    max_speed_kmh: Option<Option<f64>>,
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::ShipmentStatus>)]
    status: Option<ShipmentStatus>,
}

/// Absent = `None` (keep), `null` = `Some(None)` (clear), a value = `Some(Some(v))`.
mod patch_field {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

fn place(name: &str, v: Value) -> Result<Place, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "{name} must be a geofence id, {{\"lat\", \"lon\"}} or a GeoJSON Point"
        ))
    };
    match v {
        Value::String(id) => {
            check_id("geofence", &id)?;
            Ok(Place::Geofence(id))
        }
        Value::Object(m) if m.contains_key("type") => {
            let c = geojson::point(Value::Object(m))
                .map_err(|why| ApiError::bad_request(format!("{name}: {why}")))?;
            Ok(Place::Point { lon: c.x, lat: c.y })
        }
        Value::Object(m) => {
            let num = |k: &str| m.get(k).and_then(Value::as_f64);
            if m.len() == 2
                && let (Some(lat), Some(lon)) = (num("lat"), num("lon"))
            {
                Ok(Place::Point { lon, lat })
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

fn place_json(p: &Place) -> Value {
    match p {
        Place::Geofence(id) => json!(id),
        Place::Point { lon, lat } => json!({"lat": lat, "lon": lon}),
    }
}

/// A LineString geometry, or a Feature holding one (read by `geojson::line_string`).
fn route(v: Value) -> Result<LineString<f64>, ApiError> {
    geojson::line_string(v).map_err(|why| ApiError::bad_request(format!("route: {why}")))
}

fn deadline(s: &str) -> Result<i64, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| ApiError::bad_request(format!("deadline: {s:?} is not an RFC 3339 time")))
}

fn shipment_json(rec: &ShipmentRecord, live: Option<&ShipmentState>) -> Value {
    let d = &rec.def;
    // The tracker's status is the live one (it moves planned -> in_transit -> arrived).
    let status = live.map_or(rec.status, |s| s.status);
    let route = d.route.as_ref().map(|l| {
        json!({"type": "LineString",
            "coordinates": l.0.iter().map(|c| [c.x, c.y]).collect::<Vec<_>>()})
    });
    json!({
        "id": d.id,
        "tenant": rec.tenant,
        "device": d.device,
        "reference": d.reference,
        "origin": d.origin.as_ref().map(place_json),
        "destination": place_json(&d.destination),
        "route": route,
        "route_corridor_m": d.route_corridor_m,
        "deadline": rfc3339(d.deadline_ms),
        "temp_range_c": d.temp_range_c,
        "max_speed_kmh": d.max_speed_kmh,
        "status": status.as_str(),
        "departed_at": rfc3339(live.and_then(|s| s.departed_ms)),
        "arrived_at": rfc3339(live.and_then(|s| s.arrived_ms)),
        "eta": live.and_then(|s| s.eta).map(|e| eta_json(&e, status)),
        "updated_at": rfc3339(Some(rec.updated_ms)),
    })
}

fn eta_json(e: &Eta, status: ShipmentStatus) -> Value {
    json!({
        "eta": rfc3339(Some(e.eta_ms)), "p10": rfc3339(Some(e.p10_ms)),
        "p90": rfc3339(Some(e.p90_ms)), "remaining_m": e.remaining_m,
        "remaining_s": e.remaining_s, "method": e.method.as_str(),
        "computed_at": rfc3339(Some(e.computed_at_ms)), "status": status.as_str(),
    })
}

fn refused(e: TrackerError) -> ApiError {
    match e {
        TrackerError::InvalidGeometry(m) => ApiError::InvalidGeometry(format!("route: {m}")),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Executes a shipment command: the stored shipment and its live state, or the error, with
/// the tracker's refusal worded as before.
async fn execute(
    s: &ApiState,
    command: Command,
) -> Result<(ShipmentRecord, Option<ShipmentState>), ApiError> {
    match s.command(command).await {
        Ok(Outcome::Shipment { record, live }) => Ok((record, live)),
        Ok(other) => Err(ApiError::Internal(format!(
            "a shipment command answered {other:?}"
        ))),
        Err(CommandError::Refused(e)) => Err(refused(e)),
        Err(e) => Err(e.into()),
    }
}

async fn live_state(
    s: &ApiState,
    tenant: &str,
    id: &str,
) -> Result<Option<ShipmentState>, ApiError> {
    Ok(s.live().shipment(tenant, id).map(|v| v.state.clone()))
}

/// `{"shipments": [...], "next": CURSOR | null}` (SPEC 15): schema only, never built.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ShipmentPage {
    shipments: Vec<crate::openapi::Shipment>,
    /// Pass as `?next=` for the following page; null on the last page.
    next: Option<String>,
}

/// `{"shipments": [...], "next": CURSOR | null}`: one page of the shipments, by tenant and id.
#[utoipa::path(
    get,
    path = "/v1/shipments",
    tag = "shipments",
    operation_id = "list_shipments",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of shipments", body = ShipmentPage),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(s): State<ApiState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page: Page = q.page(2)?;
    let scope = caller.scope().map(str::to_owned);
    let (pg, owns) = (page.clone(), s.owner());
    let mut recs = s
        .read(move |st| match owns {
            None => st.list_shipments_page(scope.as_deref(), pg.after_pair(), pg.limit + 1),
            // A shard's: the shipments of its own partition's devices only (cluster mode).
            Some(owns) => super::page::filtered(
                pg.after_pair(),
                pg.limit + 1,
                |after, n| st.list_shipments_page(scope.as_deref(), after, n),
                |r| (r.tenant.clone(), r.def.id.clone()),
                |r| owns(&r.tenant, &r.def.device),
            ),
        })
        .await?;
    let next = page.finish(&mut recs, |r| vec![r.tenant.as_str(), r.def.id.as_str()]);
    let view = s.live();
    let out: Vec<_> = recs
        .iter()
        .map(|r| shipment_json(r, view.shipment(&r.tenant, &r.def.id).map(|v| &v.state)))
        .collect();
    Ok(axum::Json(json!({ "shipments": out, "next": next })).into_response())
}

/// Adds a shipment: 201 with it; 409 when the id is taken.
#[utoipa::path(
    post,
    path = "/v1/shipments",
    tag = "shipments",
    operation_id = "create_shipment",
    request_body = NewShipment,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "created", body = crate::openapi::Shipment),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 409, description = "the id is taken", body = crate::openapi::ErrorBody),
        (status = 413, description = "the body is too large", body = crate::openapi::ErrorBody),
        (status = 415, description = "not `application/json`", body = crate::openapi::ErrorBody),
        (status = 422, description = "over `limits.shipments_active`, named in the body", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(s): State<ApiState>,
    caller: Caller,
    Json(b): Json<NewShipment>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let id = match b.id {
        Some(id) => id,
        None => random_id("shp_")?,
    };
    check_id("shipment", &id)?;
    check_id("device", &b.device)?;
    let def = ShipmentDef {
        id,
        device: b.device,
        reference: b.reference,
        origin: b.origin.map(|o| place("origin", o)).transpose()?,
        destination: place("destination", b.destination)?,
        route: b.route.map(route).transpose()?,
        route_corridor_m: b.route_corridor_m,
        deadline_ms: b.deadline.as_deref().map(deadline).transpose()?,
        temp_range_c: b.temp_range_c,
        max_speed_kmh: b.max_speed_kmh,
    };
    s.check_quota(crate::limits::TenantQuota::ShipmentsActive, &tenant)
        .await?;
    let command = Command::CreateShipment {
        tenant,
        def,
        status: b.status.unwrap_or(ShipmentStatus::Planned),
    };
    let (rec, live) = execute(&s, command).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(shipment_json(&rec, live.as_ref())),
    )
        .into_response())
}

async fn load(s: &ApiState, tenant: &str, id: &str) -> Result<ShipmentRecord, ApiError> {
    let (t, i) = (tenant.to_owned(), id.to_owned());
    s.read(move |st| st.get_shipment(&t, &i))
        .await?
        .ok_or_else(|| ApiError::not_found("shipment", id))
}

/// [`load`] for a read: in cluster mode, another partition's shipment (its device's) is a 404.
pub(crate) async fn load_owned(
    s: &ApiState,
    tenant: &str,
    id: &str,
) -> Result<ShipmentRecord, ApiError> {
    let rec = load(s, tenant, id).await?;
    if !s.owns(tenant, &rec.def.device) {
        return Err(ApiError::not_found("shipment", id));
    }
    Ok(rec)
}

#[utoipa::path(
    get,
    path = "/v1/shipments/{id}",
    tag = "shipments",
    operation_id = "get_shipment",
    params(("id" = String, Path, description = "the shipment id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the shipment", body = crate::openapi::Shipment),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn get_one(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let rec = load_owned(&s, &tenant, &id).await?;
    let live = live_state(&s, &tenant, &id).await?;
    Ok(axum::Json(shipment_json(&rec, live.as_ref())).into_response())
}

/// Changes the members given; `status` may be set to any value (`delivered`, `cancelled`
/// by hand, or back).
#[utoipa::path(
    patch,
    path = "/v1/shipments/{id}",
    tag = "shipments",
    operation_id = "patch_shipment",
    params(("id" = String, Path, description = "the shipment id")),
    request_body = ShipmentPatch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the updated shipment", body = crate::openapi::Shipment),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 413, description = "the body is too large", body = crate::openapi::ErrorBody),
        (status = 415, description = "not `application/json`", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn patch(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(p): Json<ShipmentPatch>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let change = ShipmentChange {
        device: match p.device {
            Some(dev) => {
                check_id("device", &dev)?;
                Some(dev)
            }
            None => None,
        },
        reference: p.reference,
        origin: p
            .origin
            .map(|o| o.map(|o| place("origin", o)).transpose())
            .transpose()?,
        destination: p.destination.map(|d| place("destination", d)).transpose()?,
        route: p.route.map(|r| r.map(route).transpose()).transpose()?,
        route_corridor_m: p.route_corridor_m,
        deadline_ms: p
            .deadline
            .map(|dl| dl.as_deref().map(deadline).transpose())
            .transpose()?,
        temp_range_c: p.temp_range_c,
        max_speed_kmh: p.max_speed_kmh,
        status: p.status,
    };
    let (rec, live) = execute(&s, Command::PatchShipment { tenant, id, change }).await?;
    Ok(axum::Json(shipment_json(&rec, live.as_ref())).into_response())
}

/// Deletes a shipment and its share tokens: 204.
#[utoipa::path(
    delete,
    path = "/v1/shipments/{id}",
    tag = "shipments",
    operation_id = "delete_shipment",
    params(("id" = String, Path, description = "the shipment id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn remove(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    s.command(Command::DeleteShipment { tenant, id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"eta", "p10", "p90", "remaining_m", "remaining_s", "method", "computed_at", "status"}`;
/// the estimate's members are `null` until one is computed (no fix yet, or the shipment is
/// no longer active).
#[utoipa::path(
    get,
    path = "/v1/shipments/{id}/eta",
    tag = "shipments",
    operation_id = "shipment_eta",
    params(("id" = String, Path, description = "the shipment id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the ETA (members null when there is none yet)", body = crate::openapi::Eta),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn eta(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    if s.owner().is_some() {
        load_owned(&s, &tenant, &id).await?;
    }
    let view = s.live();
    let live = view.shipment(&tenant, &id);
    let (eta, status) = (live.and_then(|v| v.eta), live.map(|v| v.state.status));
    // The tracker holds every shipment the store does (API changes reach both at once); the
    // store is asked only when it does not, for the 404 or the stored status.
    let status = match status {
        Some(status) => status,
        None => load(&s, &tenant, &id).await?.status,
    };
    let body = match eta {
        Some(e) => eta_json(&e, status),
        None => json!({"eta": null, "p10": null, "p90": null, "remaining_m": null,
            "remaining_s": null, "method": null, "computed_at": null, "status": status.as_str()}),
    };
    Ok(axum::Json(body).into_response())
}

/// How long a share link lives past the shipment's arrival, or else its deadline (SPEC 15).
pub const SHARE_DEFAULT_TTL_MS: i64 = 7 * 86_400_000;

/// When a share token stops opening its shipment, epoch milliseconds; `None` = not yet known
/// (no explicit expiry, not arrived, no deadline). See the module docs.
fn share_expiry(
    share: &ShareToken,
    rec: &ShipmentRecord,
    live: Option<&ShipmentState>,
) -> Option<i64> {
    if let Some(at) = share.expires_ms {
        return Some(at);
    }
    let status = live.map_or(rec.status, |l| l.status);
    let ended = matches!(
        status,
        ShipmentStatus::Arrived | ShipmentStatus::Delivered | ShipmentStatus::Cancelled
    );
    let from = if ended {
        // the tracker's arrival time; a shipment closed by hand, when it last changed
        Some(live.and_then(|l| l.arrived_ms).unwrap_or(rec.updated_ms))
    } else {
        rec.def.deadline_ms
    };
    from.map(|t| t.saturating_add(SHARE_DEFAULT_TTL_MS))
}

/// `?expires_at=` of `POST /v1/shipments/{id}/share`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShareParams {
    /// When the link stops working, RFC 3339, in the future. Left out: 7 days after the
    /// shipment arrives, else 7 days after its deadline.
    #[param(format = DateTime)]
    expires_at: Option<String>,
}

/// A shipment's share link, without its token (`GET`), or with it, shown once (`POST`):
/// schema only, never built.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct Share {
    /// Only in the answer to `POST`.
    token: Option<String>,
    shipment: String,
    /// `/v1/public/{token}`; only in the answer to `POST`.
    public_url: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    /// Null while it cannot be known yet (no `expires_at`, not arrived, no deadline).
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// Whether `expires_at` has passed: the link no longer opens the shipment.
    expired: bool,
}

fn share_json(
    share: &ShareToken,
    rec: &ShipmentRecord,
    live: Option<&ShipmentState>,
    now: i64,
) -> Value {
    let expires = share_expiry(share, rec, live);
    json!({
        "shipment": share.shipment,
        "created_at": rfc3339(Some(share.created_ms)),
        "expires_at": rfc3339(expires),
        "expired": expires.is_some_and(|at| at <= now),
    })
}

/// `POST /v1/shipments/{id}/share`: a new share token for the shipment, shown once and stored
/// hashed, replacing (revoking) any earlier one: 201 `{"token", "public_url", "expires_at",
/// ...}`.
#[utoipa::path(
    post,
    path = "/v1/shipments/{id}/share",
    tag = "shipments",
    operation_id = "share_shipment",
    params(("id" = String, Path, description = "the shipment id"), ShareParams),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "a share token, shown once; an earlier one is revoked", body = Share),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn share(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ShareParams>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let now = now_ms();
    let expires_ms = match q.expires_at.as_deref().filter(|e| !e.is_empty()) {
        None => None,
        Some(e) => {
            let at = DateTime::parse_from_rfc3339(e)
                .map(|t| t.timestamp_millis())
                .map_err(|_| {
                    ApiError::bad_request(format!("expires_at: {e:?} is not an RFC 3339 time"))
                })?;
            if at <= now {
                return Err(ApiError::bad_request("expires_at: must be in the future"));
            }
            Some(at)
        }
    };
    let token = random_id("st_")?;
    let hash = KeyHash::of(&token);
    let share = ShareToken {
        tenant: tenant.clone(),
        shipment: id.clone(),
        created_ms: now,
        expires_ms,
    };
    let stored = share.clone();
    if !s.write(move |st| st.create_share(&stored, &hash)).await? {
        return Err(ApiError::not_found("shipment", id));
    }
    let rec = load(&s, &tenant, &id).await?;
    let live = live_state(&s, &tenant, &id).await?;
    let mut body = share_json(&share, &rec, live.as_ref(), now);
    body["token"] = json!(token);
    body["public_url"] = json!(format!("/v1/public/{token}"));
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `GET /v1/shipments/{id}/share`: the shipment's share link, without its token; 404 when it
/// has none.
#[utoipa::path(
    get,
    path = "/v1/shipments/{id}/share",
    tag = "shipments",
    operation_id = "get_shipment_share",
    params(("id" = String, Path, description = "the shipment id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the share link (no token: it is stored hashed)", body = Share),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "no such shipment (or another tenant's), or it has no share link", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn get_share(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let rec = load_owned(&s, &tenant, &id).await?;
    let (t, i) = (tenant.clone(), id.clone());
    let share = s
        .read(move |st| st.share_of_shipment(&t, &i))
        .await?
        .ok_or_else(|| ApiError::not_found("share link of shipment", id.clone()))?;
    let live = live_state(&s, &tenant, &id).await?;
    Ok(axum::Json(share_json(&share, &rec, live.as_ref(), now_ms())).into_response())
}

/// `DELETE /v1/shipments/{id}/share`: revokes the shipment's share link at once: 204 (also
/// when it had none).
#[utoipa::path(
    delete,
    path = "/v1/shipments/{id}/share",
    tag = "shipments",
    operation_id = "revoke_shipment_share",
    params(("id" = String, Path, description = "the shipment id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "revoked: the link no longer opens the shipment"),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn revoke_share(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    load(&s, &tenant, &id).await?;
    s.write(move |st| st.revoke_shares(&tenant, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The shipment a share token opens now, with its live state: `None` for an unknown, revoked
/// or expired token (all look the same from outside), or one whose shipment is gone.
pub(crate) async fn open_share(
    s: &ApiState,
    token: &str,
) -> Result<Option<(ShipmentRecord, Option<ShipmentState>)>, ApiError> {
    let hash = KeyHash::of(token);
    let Some(share) = s.read(move |st| st.lookup_share(&hash)).await? else {
        return Ok(None);
    };
    let (t, i) = (share.tenant.clone(), share.shipment.clone());
    let Some(rec) = s.read(move |st| st.get_shipment(&t, &i)).await? else {
        return Ok(None);
    };
    if !s.owns(&rec.tenant, &rec.def.device) {
        return Ok(None);
    }
    let live = live_state(s, &share.tenant, &share.shipment).await?;
    if share_expiry(&share, &rec, live.as_ref()).is_some_and(|at| at <= now_ms()) {
        return Ok(None);
    }
    Ok(Some((rec, live)))
}

/// `GET /v1/public/{token}`, no key: status, and while the shipment is `in_transit` its
/// position and ETA, of the one shipment the token opens, nothing else (not even the device's
/// id). An unknown, revoked or expired token is a 404.
#[utoipa::path(
    get,
    path = "/v1/public/{token}",
    tag = "public",
    operation_id = "public_shipment",
    params(("token" = String, Path, description = "the share token")),
    responses(
        (status = 200, description = "status of the shared shipment; position and ETA while in transit", body = crate::openapi::PublicShipment),
        (status = 404, description = "unknown, revoked or expired token", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn public(
    State(s): State<ApiState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let Some((rec, live)) = open_share(&s, &token).await? else {
        return Err(ApiError::not_found("share token", token));
    };
    let status = live.as_ref().map_or(rec.status, |l| l.status);
    let in_transit = status == ShipmentStatus::InTransit;
    let view = s.live();
    // Before departure and after arrival the vehicle is on other jobs: neither its position
    // nor an ETA (which tells its distance) is this customer's business.
    let position = if in_transit {
        view.device(&rec.tenant, &rec.def.device).and_then(|d| {
            d.fix.map(|f| {
                json!({"lat": f.lat, "lon": f.lon, "ts": rfc3339(d.fix_ts_ms),
                    "speed_kmh": f.speed_kmh, "heading_deg": f.heading_deg})
            })
        })
    } else {
        None
    };
    let eta = if in_transit {
        view.shipment(&rec.tenant, &rec.def.id)
            .and_then(|v| v.eta)
            .map(|e| eta_json(&e, status))
    } else {
        None
    };
    let body = json!({
        "shipment": rec.def.id, "reference": rec.def.reference, "status": status.as_str(),
        "destination": place_json(&rec.def.destination), "deadline": rfc3339(rec.def.deadline_ms),
        "position": position, "eta": eta,
    });
    Ok(axum::Json(body).into_response())
}
