//! `POST /v1/tenants`, `POST /v1/tenants/{id}/keys`, `DELETE /v1/tenants/{id}/keys/{key_id}`:
//! admin only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use landport_store::{KeyHash, Tenant};
use serde::Deserialize;
use serde_json::json;

use super::view::rfc3339;
use super::{check_id, random_id};
use crate::auth::Caller;
use crate::error::{ApiError, Json, Path};
use crate::replicated::now_ms;
use crate::state::ApiState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    id: String,
    name: String,
}

#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    operation_id = "create_tenant",
    request_body = NewTenant,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "created", body = crate::openapi::Tenant),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 403, description = "a tenant key on an admin-only endpoint", body = crate::openapi::ErrorBody),
        (status = 409, description = "the id is taken", body = crate::openapi::ErrorBody),
        (status = 413, description = "the body is too large", body = crate::openapi::ErrorBody),
        (status = 415, description = "not `application/json`", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(s): State<ApiState>,
    caller: Caller,
    Json(body): Json<NewTenant>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    check_id("tenant", &body.id)?;
    let tenant = Tenant {
        id: body.id,
        name: body.name,
        created_ms: now_ms(),
    };
    let out = json!({"id": tenant.id, "name": tenant.name,
        "created_at": rfc3339(Some(tenant.created_ms))});
    s.write(move |st| st.create_tenant(&tenant)).await?;
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

/// A new key for the tenant: `{"id", "key"}`. The key is shown here once; only its hash is
/// stored.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/keys",
    tag = "tenants",
    operation_id = "create_key",
    params(("id" = String, Path, description = "the tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "the new key, shown once", body = crate::openapi::KeyCreated),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 403, description = "a tenant key on an admin-only endpoint", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn create_key(
    State(s): State<ApiState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let key_id = random_id("key_")?;
    let key = random_id("lp_")? + &random_id("")?;
    let hash = KeyHash::of(&key);
    s.key_created(&hash);
    let (t, kid, now) = (tenant.clone(), key_id.clone(), now_ms());
    let created = s
        .write(move |st| st.create_api_key(&t, &kid, &hash, now))
        .await?;
    if !created {
        return Err(ApiError::not_found("tenant", tenant));
    }
    let out = json!({"id": key_id, "tenant": tenant, "key": key});
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/tenants/{id}/keys/{key_id}",
    tag = "tenants",
    operation_id = "revoke_key",
    params(("id" = String, Path, description = "the tenant id"), ("key_id" = String, Path, description = "the key id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 403, description = "a tenant key on an admin-only endpoint", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn revoke_key(
    State(s): State<ApiState>,
    caller: Caller,
    revoked_hook: Option<axum::Extension<super::CredentialRevoked>>,
    Path((tenant, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    s.forget_key(&tenant, &key_id);
    let (t, kid, now) = (tenant.clone(), key_id.clone(), now_ms());
    let revoked = s.write(move |st| st.revoke_api_key(&t, &kid, now)).await?;
    s.forget_key(&tenant, &key_id);
    if revoked {
        // MQTT sessions that logged in with a key of this tenant are cut.
        super::CredentialRevoked::tell(
            revoked_hook.as_ref(),
            super::Revoked::TenantKey { tenant: &tenant },
        );
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("api key", key_id))
    }
}
