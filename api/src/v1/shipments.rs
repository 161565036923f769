//! `GET/POST /v1/shipments`, `GET/PATCH/DELETE /v1/shipments/{id}`,
//! `GET /v1/shipments/{id}/eta`, `POST /v1/shipments/{id}/share` and the public
//! `GET /v1/public/{token}`.
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
use landport_pipeline::{Command, CommandError, Outcome, now_ms};
use landport_store::{KeyHash, ShareToken, ShipmentRecord};
use landport_tracker::{Eta, Place, ShipmentDef, ShipmentState, ShipmentStatus, TrackerError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::geojson;
use super::view::rfc3339;
use super::{check_id, random_id};
use crate::auth::Caller;
use crate::error::{ApiError, Json, Path};
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

/// `{"shipments": [...]}`, by tenant and id.
#[utoipa::path(
    get,
    path = "/v1/shipments",
    tag = "shipments",
    operation_id = "list_shipments",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the shipments", body = crate::openapi::ShipmentList),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn list(State(s): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    let scope = caller.scope().map(str::to_owned);
    let recs = s
        .read(move |st| st.list_shipments(scope.as_deref()))
        .await?;
    let keys: Vec<(String, String)> = recs
        .iter()
        .map(|r| (r.tenant.clone(), r.def.id.clone()))
        .collect();
    let view = s.live();
    let out: Vec<_> = recs
        .iter()
        .zip(&keys)
        .map(|(r, (t, i))| shipment_json(r, view.shipment(t, i).map(|v| &v.state)))
        .collect();
    Ok(axum::Json(json!({ "shipments": out })).into_response())
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
    let rec = load(&s, &tenant, &id).await?;
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

/// `POST /v1/shipments/{id}/share`: a new share token for the shipment, shown once and stored
/// hashed: 201 `{"token", "public_url"}`.
#[utoipa::path(
    post,
    path = "/v1/shipments/{id}/share",
    tag = "shipments",
    operation_id = "share_shipment",
    params(("id" = String, Path, description = "the shipment id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "a share token, shown once", body = crate::openapi::ShareCreated),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn share(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let token = random_id("st_")?;
    let hash = KeyHash::of(&token);
    let share = ShareToken {
        tenant,
        shipment: id.clone(),
        created_ms: now_ms(),
        expires_ms: None,
    };
    if !s.write(move |st| st.create_share(&share, &hash)).await? {
        return Err(ApiError::not_found("shipment", id));
    }
    let body = json!({"token": token, "shipment": id,
        "public_url": format!("/v1/public/{token}")});
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `GET /v1/public/{token}`, no key: status, position and ETA of the one shipment the token
/// opens, nothing else (not even the device's id). An unknown token is a 404.
#[utoipa::path(
    get,
    path = "/v1/public/{token}",
    tag = "public",
    operation_id = "public_shipment",
    params(("token" = String, Path, description = "the share token")),
    responses(
        (status = 200, description = "status, position and ETA of the shared shipment", body = crate::openapi::PublicShipment),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn public(
    State(s): State<ApiState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let hash = KeyHash::of(&token);
    let not_found = || ApiError::not_found("share token", token.clone());
    let share = s
        .read(move |st| st.lookup_share(&hash))
        .await?
        .ok_or_else(not_found)?;
    let (t, i) = (share.tenant.clone(), share.shipment.clone());
    let rec = s
        .read(move |st| st.get_shipment(&t, &i))
        .await?
        .ok_or_else(not_found)?;
    let view = s.live();
    let live = view.shipment(&share.tenant, &share.shipment);
    let (state, eta) = (live.map(|v| v.state.status), live.and_then(|v| v.eta));
    let device = view.device(&share.tenant, &rec.def.device);
    let status = state.unwrap_or(rec.status);
    let position = device.and_then(|d| {
        d.fix.map(|f| {
            json!({"lat": f.lat, "lon": f.lon, "ts": rfc3339(d.fix_ts_ms),
                "speed_kmh": f.speed_kmh, "heading_deg": f.heading_deg})
        })
    });
    let body = json!({
        "shipment": rec.def.id, "reference": rec.def.reference, "status": status.as_str(),
        "destination": place_json(&rec.def.destination), "deadline": rfc3339(rec.def.deadline_ms),
        "position": position, "eta": eta.map(|e| eta_json(&e, status)),
    });
    Ok(axum::Json(body).into_response())
}
