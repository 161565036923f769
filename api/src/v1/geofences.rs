//! `GET/POST /v1/geofences`, `GET/PUT/DELETE /v1/geofences/{id}`,
//! `GET /v1/geofences/{id}/devices`. Stored first, then upserted into the tracker.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use landport_pipeline::now_ms;
use landport_store::GeofenceRecord;
use serde_json::json;

use super::geojson::{FeatureIn, feature};
use super::view::device_json;
use super::{check_id, random_id};
use crate::auth::Caller;
use crate::error::{ApiError, Json, Path};
use crate::state::ApiState;

/// `{"geofences": [Feature, ...]}`, by tenant and id.
#[utoipa::path(
    get,
    path = "/v1/geofences",
    tag = "geofences",
    operation_id = "list_geofences",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the geofences", body = crate::openapi::GeofenceList),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn list(State(s): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    let scope = caller.scope().map(str::to_owned);
    let fences = s
        .read(move |st| st.list_geofences(scope.as_deref()))
        .await?;
    let features: Vec<_> = fences.iter().map(feature).collect();
    Ok(axum::Json(json!({ "geofences": features })).into_response())
}

/// Adds a geofence (id from the Feature, generated when absent): 201 with the stored Feature;
/// 409 when the id is taken.
#[utoipa::path(
    post,
    path = "/v1/geofences",
    tag = "geofences",
    operation_id = "create_geofence",
    request_body = FeatureIn,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "the stored Feature", body = crate::openapi::Feature),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
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
    Json(body): Json<FeatureIn>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let id = match body.id()? {
        Some(id) => id,
        None => random_id("gf_")?,
    };
    check_id("geofence", &id)?;
    let rec = GeofenceRecord {
        tenant,
        def: body.into_def(id)?,
        updated_ms: now_ms(),
    };
    let stored = rec.clone();
    s.write(move |st| st.insert_geofence(&stored)).await?;
    upsert_live(&s, &rec).await?;
    Ok((StatusCode::CREATED, axum::Json(feature(&rec))).into_response())
}

/// Creates or replaces the geofence `{id}`: 201 when created, 200 when replaced. A Feature
/// `id` other than the path's is refused.
#[utoipa::path(
    put,
    path = "/v1/geofences/{id}",
    tag = "geofences",
    operation_id = "put_geofence",
    params(("id" = String, Path, description = "the geofence id")),
    request_body = FeatureIn,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "replaced: the stored Feature", body = crate::openapi::Feature),
        (status = 201, description = "created: the stored Feature", body = crate::openapi::Feature),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 413, description = "the body is too large", body = crate::openapi::ErrorBody),
        (status = 415, description = "not `application/json`", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn put(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<FeatureIn>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    check_id("geofence", &id)?;
    if let Some(fid) = body.id()?
        && fid != id
    {
        return Err(ApiError::bad_request(format!(
            "the Feature id {fid:?} differs from the path's {id:?}"
        )));
    }
    let rec = GeofenceRecord {
        tenant,
        def: body.into_def(id)?,
        updated_ms: now_ms(),
    };
    let stored = rec.clone();
    let created = s.write(move |st| st.put_geofence(&stored)).await?;
    upsert_live(&s, &rec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(feature(&rec))).into_response())
}

async fn upsert_live(s: &ApiState, rec: &GeofenceRecord) -> Result<(), ApiError> {
    let (tenant, def) = (rec.tenant.clone(), rec.def.clone());
    s.tracker(move |ing| ing.tracker_mut().upsert_geofence(&tenant, def))
        .await?
        // Validated before it was stored, so this is a fault of ours.
        .map_err(|e| ApiError::Internal(format!("tracker refused a validated geofence: {e}")))
}

#[utoipa::path(
    get,
    path = "/v1/geofences/{id}",
    tag = "geofences",
    operation_id = "get_geofence",
    params(("id" = String, Path, description = "the geofence id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the stored Feature", body = crate::openapi::Feature),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn get_one(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let i = id.clone();
    match s.read(move |st| st.get_geofence(&tenant, &i)).await? {
        Some(rec) => Ok(axum::Json(feature(&rec)).into_response()),
        None => Err(ApiError::not_found("geofence", id)),
    }
}

/// Deletes a geofence; devices inside simply stop being inside (no exit event): 204.
#[utoipa::path(
    delete,
    path = "/v1/geofences/{id}",
    tag = "geofences",
    operation_id = "delete_geofence",
    params(("id" = String, Path, description = "the geofence id")),
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
    let (t, i) = (tenant.clone(), id.clone());
    if !s.write(move |st| st.delete_geofence(&t, &i)).await? {
        return Err(ApiError::not_found("geofence", id));
    }
    s.tracker(move |ing| ing.tracker_mut().remove_geofence(&tenant, &id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"devices": [...]}`: the devices inside the geofence now, by id.
#[utoipa::path(
    get,
    path = "/v1/geofences/{id}/devices",
    tag = "geofences",
    operation_id = "geofence_devices",
    params(("id" = String, Path, description = "the geofence id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the devices inside it now", body = crate::openapi::DeviceList),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn devices_inside(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let (t, i) = (tenant.clone(), id.clone());
    if s.read(move |st| st.get_geofence(&t, &i)).await?.is_none() {
        return Err(ApiError::not_found("geofence", id));
    }
    let view = s.live();
    let live: Vec<_> = view
        .devices_in_geofence(&tenant, &id)
        .unwrap_or_default()
        .iter()
        .filter_map(|d| view.device(&tenant, d))
        .collect();
    let scope = tenant.clone();
    let registry = s.read(move |st| st.list_devices(Some(&scope))).await?;
    let devices: Vec<_> = live
        .iter()
        .map(|v| {
            let reg = registry.iter().find(|r| r.id == v.id);
            device_json(&tenant, &v.id, reg, Some(v))
        })
        .collect();
    Ok(axum::Json(json!({ "devices": devices })).into_response())
}
