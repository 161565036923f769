//! `GET/POST /v1/geofences`, `GET/PUT/DELETE /v1/geofences/{id}`,
//! `GET /v1/geofences/{id}/devices`. A write is a [`Command`] carrying the geofence validated
//! and prepared here, once (`geojson::prepare`: vertex cap first, then
//! [`Geofence::new`](landport_tracker::geofence::Geofence::new) on a blocking thread, off the
//! async workers and the pipeline's task); the pipeline stores it, then puts it into the
//! tracker as it is. Bodies up to [`crate::MAX_GEOFENCE_BODY_BYTES`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use landport_pipeline::{Command, Outcome};
use landport_store::GeofenceRecord;
use serde_json::json;

use super::geojson::{FeatureIn, feature, prepare};
use super::page::PageQuery;
use super::view::device_json;
use super::{check_id, random_id};
use crate::auth::Caller;
use crate::error::{ApiError, Json, Path, Query};
use crate::limits::TenantQuota;
use crate::state::ApiState;

/// `{"geofences": [Feature, ...], "next": CURSOR | null}`: one page, by tenant and id.
#[utoipa::path(
    get,
    path = "/v1/geofences",
    tag = "geofences",
    operation_id = "list_geofences",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of geofences", body = crate::openapi::GeofenceList),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(s): State<ApiState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page(2)?;
    let scope = caller.scope().map(str::to_owned);
    let pg = page.clone();
    let mut fences = s
        .read(move |st| st.list_geofences_page(scope.as_deref(), pg.after_pair(), pg.limit + 1))
        .await?;
    let next = page.finish(&mut fences, |r| vec![r.tenant.as_str(), r.def.id.as_str()]);
    let features: Vec<_> = fences.iter().map(feature).collect();
    Ok(axum::Json(json!({ "geofences": features, "next": next })).into_response())
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
        (status = 422, description = "over a limit (`limits.geofences`, `limits.geofence_vertices`), named in the body", body = crate::openapi::ErrorBody),
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
    let def = body.into_def(id, s.limits().geofence_vertices)?;
    s.check_quota(TenantQuota::Geofences, &tenant).await?;
    let fence = prepare(def).await?;
    let (rec, _) = geofence_outcome(s.command(Command::CreateGeofence { tenant, fence }).await?)?;
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
        (status = 422, description = "over a limit (`limits.geofences`, `limits.geofence_vertices`), named in the body", body = crate::openapi::ErrorBody),
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
    let def = body.into_def(id.clone(), s.limits().geofence_vertices)?;
    if let Err(over) = s.check_quota(TenantQuota::Geofences, &tenant).await {
        // At the quota, replacing one is still allowed.
        let (t, i) = (tenant.clone(), id.clone());
        if s.read(move |st| st.get_geofence(&t, &i)).await?.is_none() {
            return Err(over);
        }
    }
    let fence = prepare(def).await?;
    let (rec, created) =
        geofence_outcome(s.command(Command::PutGeofence { tenant, fence }).await?)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(feature(&rec))).into_response())
}

/// The geofence a command stored, and whether it was created.
fn geofence_outcome(out: Outcome) -> Result<(GeofenceRecord, bool), ApiError> {
    match out {
        Outcome::Geofence { record, created } => Ok((record, created)),
        other => Err(ApiError::Internal(format!(
            "a geofence command answered {other:?}"
        ))),
    }
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
    s.command(Command::DeleteGeofence { tenant, id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"devices": [...], "next": CURSOR | null}`: one page of the devices inside the geofence
/// now, by id.
#[utoipa::path(
    get,
    path = "/v1/geofences/{id}/devices",
    tag = "geofences",
    operation_id = "geofence_devices",
    params(("id" = String, Path, description = "the geofence id"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of the devices inside it now", body = crate::openapi::DevicePage),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
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
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page(1)?;
    let tenant = caller.tenant()?.to_owned();
    let (t, i) = (tenant.clone(), id.clone());
    if s.read(move |st| st.get_geofence(&t, &i)).await?.is_none() {
        return Err(ApiError::not_found("geofence", id));
    }
    let view = s.live();
    let mut inside: Vec<String> = view
        .devices_in_geofence(&tenant, &id)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| page.is_after(&[d]) && s.owns(&tenant, d))
        .collect();
    inside.sort_unstable();
    inside.truncate(page.limit + 1);
    let next = page.finish(&mut inside, |d| vec![d.as_str()]);
    let live: Vec<_> = inside
        .iter()
        .filter_map(|d| view.device(&tenant, d))
        .collect();
    let (t, ids) = (tenant.clone(), inside.clone());
    let registry = s
        .read(move |st| {
            ids.iter()
                .filter_map(|i| st.get_device(&t, i).transpose())
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let devices: Vec<_> = live
        .iter()
        .map(|v| {
            let reg = registry.iter().find(|r| r.id == v.id);
            device_json(&tenant, &v.id, reg, Some(v))
        })
        .collect();
    Ok(axum::Json(json!({ "devices": devices, "next": next })).into_response())
}
