//! `GET/POST /v1/devices`, `GET/PATCH/DELETE /v1/devices/{id}`: the registry in the store,
//! live state from the tracker. Writes are [`Command`]s: this module parses and checks the
//! request, the pipeline stores and applies it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use landport_pipeline::command::DeviceChange;
use landport_pipeline::{Command, Outcome};
use landport_store::DeviceRecord;
use landport_tracker::DeviceView;
use landport_tracker::device::DeviceProfile;
use serde::Deserialize;
use serde_json::json;

use super::check_id;
use super::view::device_json;
use crate::auth::Caller;
use crate::error::{ApiError, Json, Path};
use crate::state::ApiState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    /// The device's own temperature range and speed limit.
    #[serde(default)]
    profile: Option<Profile>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    profile: Option<Profile>,
}

/// [`DeviceProfile`] as the API takes it (unknown fields refused).
#[derive(Deserialize, Clone, Copy, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Profile {
    #[serde(default)]
    temp_range_c: Option<[f64; 2]>,
    #[serde(default)]
    max_speed_kmh: Option<f64>,
}

impl Profile {
    fn check(self) -> Result<DeviceProfile, ApiError> {
        if let Some([lo, hi]) = self.temp_range_c
            && !(lo.is_finite() && hi.is_finite() && lo <= hi)
        {
            return Err(ApiError::bad_request(
                "profile.temp_range_c must be [min, max] with min <= max",
            ));
        }
        if let Some(v) = self.max_speed_kmh
            && !(v > 0.0 && v.is_finite())
        {
            return Err(ApiError::bad_request(
                "profile.max_speed_kmh must be a positive number",
            ));
        }
        Ok(DeviceProfile {
            temp_range_c: self.temp_range_c,
            max_speed_kmh: self.max_speed_kmh,
        })
    }
}

fn check_kind(kind: &str) -> Result<(), ApiError> {
    if kind.chars().count() > 64 {
        return Err(ApiError::bad_request("kind is longer than 64 characters"));
    }
    Ok(())
}

/// `{"devices": [...]}`: registered devices and those the tracker knows from telemetry
/// (auto-registered), by tenant and id.
#[utoipa::path(
    get,
    path = "/v1/devices",
    tag = "devices",
    operation_id = "list_devices",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the devices", body = crate::openapi::DeviceList),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn list(State(s): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    let scope = caller.scope().map(str::to_owned);
    let sc = scope.clone();
    let registry = s.read(move |st| st.list_devices(sc.as_deref())).await?;
    let live = live_devices(&s, scope);
    let mut all: BTreeMap<(String, String), RegisteredAndLive> = BTreeMap::new();
    for r in registry {
        let key = (r.tenant.clone(), r.id.clone());
        all.entry(key).or_default().0 = Some(r);
    }
    for (t, v) in live {
        let key = (t, v.id.clone());
        all.entry(key).or_default().1 = Some(v);
    }
    let devices: Vec<_> = all
        .iter()
        .map(|((t, id), (r, v))| device_json(t, id, r.as_ref(), v.as_deref()))
        .collect();
    Ok(axum::Json(json!({ "devices": devices })).into_response())
}

/// A device's registry record and live state; either may be missing.
type RegisteredAndLive = (Option<DeviceRecord>, Option<Arc<DeviceView>>);

/// Live views of the devices of `scope` (`None` = every tenant), with their tenant, from the
/// read side.
fn live_devices(s: &ApiState, scope: Option<String>) -> Vec<(String, Arc<DeviceView>)> {
    let live = s.live();
    let tenants: Vec<String> = match scope {
        Some(one) => vec![one],
        None => live.tenants().map(str::to_owned).collect(),
    };
    tenants
        .into_iter()
        .flat_map(|ten| {
            live.devices(&ten)
                .into_iter()
                .map(move |v| (ten.clone(), v))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Registers a device (telemetry from it is accepted from then on): 201 with the device.
#[utoipa::path(
    post,
    path = "/v1/devices",
    tag = "devices",
    operation_id = "create_device",
    request_body = NewDevice,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "registered", body = crate::openapi::Device),
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
    Json(body): Json<NewDevice>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    check_id("device", &body.id)?;
    let kind = body.kind.unwrap_or_default();
    check_kind(&kind)?;
    let profile = body.profile.map(Profile::check).transpose()?;
    let command = Command::RegisterDevice {
        tenant,
        name: body.name.unwrap_or_else(|| body.id.clone()),
        id: body.id,
        kind,
        profile,
    };
    let (rec, live) = device_outcome(s.command(command).await?)?;
    let out = device_json(&rec.tenant, &rec.id, Some(&rec), live.as_ref());
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

/// The device a command stored and its live state.
fn device_outcome(out: Outcome) -> Result<(DeviceRecord, Option<DeviceView>), ApiError> {
    match out {
        Outcome::Device { record, live } => Ok((record, live)),
        other => Err(ApiError::Internal(format!(
            "a device command answered {other:?}"
        ))),
    }
}

#[utoipa::path(
    get,
    path = "/v1/devices/{id}",
    tag = "devices",
    operation_id = "get_device",
    params(("id" = String, Path, description = "the device id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the device", body = crate::openapi::Device),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
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
    let (reg, live) = load(&s, &tenant, &id).await?;
    if reg.is_none() && live.is_none() {
        return Err(ApiError::not_found("device", id));
    }
    Ok(axum::Json(device_json(&tenant, &id, reg.as_ref(), live.as_ref())).into_response())
}

async fn load(
    s: &ApiState,
    tenant: &str,
    id: &str,
) -> Result<(Option<DeviceRecord>, Option<DeviceView>), ApiError> {
    let (t, i) = (tenant.to_owned(), id.to_owned());
    let reg = s.read(move |st| st.get_device(&t, &i)).await?;
    let live = s.live().device(tenant, id).map(|d| (*d).clone());
    Ok((reg, live))
}

/// Changes the name, kind or profile of a registered device.
#[utoipa::path(
    patch,
    path = "/v1/devices/{id}",
    tag = "devices",
    operation_id = "patch_device",
    params(("id" = String, Path, description = "the device id")),
    request_body = DevicePatch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the updated device", body = crate::openapi::Device),
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
    Json(body): Json<DevicePatch>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let profile = body.profile.map(Profile::check).transpose()?;
    if let Some(k) = &body.kind {
        check_kind(k)?;
    }
    let command = Command::UpdateDevice {
        tenant: tenant.clone(),
        id: id.clone(),
        change: DeviceChange {
            name: body.name,
            kind: body.kind,
            profile,
        },
    };
    let (rec, live) = device_outcome(s.command(command).await?)?;
    Ok(axum::Json(device_json(&tenant, &id, Some(&rec), live.as_ref())).into_response())
}

/// Unregisters a device and forgets its live state (history stays until retention): 204.
#[utoipa::path(
    delete,
    path = "/v1/devices/{id}",
    tag = "devices",
    operation_id = "delete_device",
    params(("id" = String, Path, description = "the device id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
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
    s.command(Command::DeleteDevice { tenant, id }).await?;
    Ok(StatusCode::NO_CONTENT)
}
