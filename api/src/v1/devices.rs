//! `GET/POST /v1/devices`, `GET/PATCH/DELETE /v1/devices/{id}`: the registry in the store,
//! live state from the tracker. Writes are [`Command`]s: this module parses and checks the
//! request, the pipeline stores and applies it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use landport_pipeline::command::DeviceChange;
use landport_pipeline::{Command, Outcome};
use landport_store::DeviceRecord;
use landport_tracker::device::DeviceProfile;
use landport_tracker::{DeviceView, LiveView};
use serde::Deserialize;
use serde_json::json;

use super::check_id;
use super::page::{Page, PageQuery};
use super::view::device_json;
use crate::auth::Caller;
use crate::error::{ApiError, Json, Path, Query};
use crate::limits::TenantQuota;
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

/// The longest device name, characters.
const MAX_NAME_CHARS: usize = 256;

fn check_name(name: Option<&str>) -> Result<(), ApiError> {
    if name.is_some_and(|n| n.chars().count() > MAX_NAME_CHARS) {
        return Err(ApiError::bad_request(format!(
            "name is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(())
}

fn check_kind(kind: &str) -> Result<(), ApiError> {
    if kind.chars().count() > 64 {
        return Err(ApiError::bad_request("kind is longer than 64 characters"));
    }
    Ok(())
}

/// `{"devices": [...], "next": CURSOR | null}`: one page of the registered devices and those
/// the tracker knows from telemetry (auto-registered), by tenant and id.
#[utoipa::path(
    get,
    path = "/v1/devices",
    tag = "devices",
    operation_id = "list_devices",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of devices", body = crate::openapi::DevicePage),
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
    let page = q.page(2)?;
    let scope = caller.scope().map(str::to_owned);
    let (sc, pg, owns) = (scope.clone(), page.clone(), s.owner());
    let registry = s
        .read(move |st| match owns {
            None => st.list_devices_page(sc.as_deref(), pg.after_pair(), pg.limit + 1),
            // A shard's: its own partition's only (cluster mode).
            Some(owns) => super::page::filtered(
                pg.after_pair(),
                pg.limit + 1,
                |after, n| st.list_devices_page(sc.as_deref(), after, n),
                |r| (r.tenant.clone(), r.id.clone()),
                |r| owns(&r.tenant, &r.id),
            ),
        })
        .await?;
    let view = s.live();
    // The page is the first `limit + 1` keys after the cursor of both sources: the store's
    // page holds every registered one among them, `live_after` every live one.
    let mut keys: Vec<(String, String)> = live_after(&view, scope.as_deref(), &page, &s);
    keys.extend(registry.iter().map(|r| (r.tenant.clone(), r.id.clone())));
    keys.sort_unstable();
    keys.dedup();
    keys.truncate(page.limit + 1);
    let next = page.finish(&mut keys, |(t, i)| vec![t.as_str(), i.as_str()]);
    let devices: Vec<_> = keys
        .iter()
        .map(|(t, id)| {
            let reg = registry.iter().find(|r| r.tenant == *t && r.id == *id);
            let live = view.device(t, id);
            device_json(t, id, reg, live.as_deref())
        })
        .collect();
    Ok(axum::Json(json!({ "devices": devices, "next": next })).into_response())
}

/// The first `limit + 1` keys `(tenant, id)` after the page's cursor of the live devices of
/// `scope` (`None` = every tenant), unsorted.
fn live_after(
    view: &LiveView,
    scope: Option<&str>,
    page: &Page,
    s: &ApiState,
) -> Vec<(String, String)> {
    let tenants: Vec<&str> = match scope {
        Some(one) => vec![one],
        None => view.tenants().collect(),
    };
    let mut keys: Vec<(String, String)> = Vec::new();
    let first_tenant = page.after.as_ref().map(|a| a[0].as_str());
    for t in tenants {
        if first_tenant.is_some_and(|f| t < f) {
            continue;
        }
        for d in view.devices(t) {
            if page.is_after(&[t, &d.id]) && s.owns(t, &d.id) {
                keys.push((t.to_owned(), d.id.clone()));
            }
        }
        if keys.len() > 4 * (page.limit + 1) {
            keep_first(&mut keys, page.limit + 1);
        }
    }
    keep_first(&mut keys, page.limit + 1);
    keys
}

/// Keeps the `n` smallest keys (in no particular order), in time linear in `keys`.
fn keep_first(keys: &mut Vec<(String, String)>, n: usize) {
    if keys.len() > n {
        keys.select_nth_unstable(n);
        keys.truncate(n);
    }
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
        (status = 422, description = "over `limits.devices`, named in the body", body = crate::openapi::ErrorBody),
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
    check_name(body.name.as_deref())?;
    s.check_quota(TenantQuota::Devices, &tenant).await?;
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
    if (reg.is_none() && live.is_none()) || !s.owns(&tenant, &id) {
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
    check_name(body.name.as_deref())?;
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
    revoked: Option<axum::Extension<super::CredentialRevoked>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    s.command(Command::DeleteDevice {
        tenant: tenant.clone(),
        id: id.clone(),
    })
    .await?;
    // Its MQTT credential went with it: cut the sessions that used it.
    super::CredentialRevoked::tell(
        revoked.as_ref(),
        super::Revoked::Device {
            tenant: &tenant,
            device: &id,
        },
    );
    Ok(StatusCode::NO_CONTENT)
}
