//! `POST/DELETE /v1/devices/{id}/credentials`: the MQTT password of a registered device
//! (SPEC 12).
//!
//! `POST` makes a new password (256 random bits, hex, after an `lpd_` prefix that secret
//! scanners can match), answers it once as `{"username": "{tenant}/{device}", "password":
//! "..."}` and stores only its SHA-256 (see `landport_store`'s `credentials` module for why a
//! plain hash). A device has one credential: a new `POST` replaces the old one, which stops
//! working at once (rotate by posting, then configuring the device). `DELETE` revokes it.
//!
//! Replacing or revoking also tells the MQTT endpoint, through the hook the binary installs
//! with [`crate::on_credential_revoked`] ([`CredentialRevoked`]), so that sessions already
//! connected with the old password are cut, not only new connects refused.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use landport_store::{CredentialSet, KeyHash};
use serde_json::json;

use crate::auth::Caller;
use crate::error::{ApiError, Path};
use crate::replicated::now_ms;
use crate::state::ApiState;

/// A credential that no longer authenticates, as told to [`CredentialRevoked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked<'a> {
    /// The device's credential was replaced or revoked, or the device deleted.
    Device { tenant: &'a str, device: &'a str },
    /// One of the tenant's API keys was revoked: MQTT sessions that logged in with a key of
    /// the tenant are cut (those whose key is still valid may connect again at once).
    TenantKey { tenant: &'a str },
}

/// Told what was revoked (a device's credential replaced or revoked, a device deleted, a
/// tenant key revoked), so that the MQTT endpoint disconnects the sessions that authenticated
/// with it. The binary installs it ([`crate::on_credential_revoked`]); without one (tests of
/// the API alone, an external broker) nothing is connected with these credentials and
/// nothing needs cutting.
#[derive(Clone)]
pub struct CredentialRevoked(Arc<RevokedHook>);

/// Called with what was revoked.
type RevokedHook = dyn Fn(Revoked<'_>) + Send + Sync;

impl CredentialRevoked {
    pub fn new(hook: impl Fn(Revoked<'_>) + Send + Sync + 'static) -> Self {
        CredentialRevoked(Arc::new(hook))
    }

    /// Tells the hook, if one is installed.
    pub(crate) fn tell(hook: Option<&axum::Extension<CredentialRevoked>>, what: Revoked<'_>) {
        if let Some(axum::Extension(hook)) = hook {
            (hook.0)(what);
        }
    }
}

/// Bytes of randomness in a device password: 256 bits.
const PASSWORD_RANDOM_BYTES: usize = 32;

/// `lpd_` and [`PASSWORD_RANDOM_BYTES`] random bytes in lower-case hex.
fn new_password() -> Result<String, ApiError> {
    let mut buf = [0u8; PASSWORD_RANDOM_BYTES];
    crate::replicated::fill(&mut buf)?;
    let mut s = String::with_capacity(4 + 2 * PASSWORD_RANDOM_BYTES);
    s.push_str("lpd_");
    for b in buf {
        s.push_str(&format!("{b:02x}"));
    }
    Ok(s)
}

/// Makes the device's MQTT credential, replacing any it had: 201 with the username and the
/// password, shown this once.
#[utoipa::path(
    post,
    path = "/v1/devices/{id}/credentials",
    tag = "devices",
    operation_id = "create_device_credential",
    params(("id" = String, Path, description = "the device id (a registered device)")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "the new credential; any previous one no longer works", body = crate::openapi::DeviceCredential),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "no such registered device (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(s): State<ApiState>,
    caller: Caller,
    revoked: Option<Extension<CredentialRevoked>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let password = new_password()?;
    let hash = KeyHash::of(&password);
    let (t, d, now) = (tenant.clone(), id.clone(), now_ms());
    let set = s
        .write(move |st| st.set_device_credential(&t, &d, &hash, now))
        .await?;
    match set {
        CredentialSet::NoSuchDevice => return Err(ApiError::not_found("device", id)),
        CredentialSet::Created => {}
        CredentialSet::Replaced => CredentialRevoked::tell(
            revoked.as_ref(),
            Revoked::Device {
                tenant: &tenant,
                device: &id,
            },
        ),
    }
    let out = json!({"username": format!("{tenant}/{id}"), "password": password});
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

/// Revokes the device's MQTT credential: new connects with it are refused and sessions
/// connected with it are cut. 204.
#[utoipa::path(
    delete,
    path = "/v1/devices/{id}/credentials",
    tag = "devices",
    operation_id = "delete_device_credential",
    params(("id" = String, Path, description = "the device id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "revoked"),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "the device has no credential, or no such device (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn remove(
    State(s): State<ApiState>,
    caller: Caller,
    revoked: Option<Extension<CredentialRevoked>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let (t, d) = (tenant.clone(), id.clone());
    let existed = s
        .write(move |st| st.delete_device_credential(&t, &d))
        .await?;
    if !existed {
        return Err(ApiError::not_found("device credential", id));
    }
    CredentialRevoked::tell(
        revoked.as_ref(),
        Revoked::Device {
            tenant: &tenant,
            device: &id,
        },
    );
    Ok(StatusCode::NO_CONTENT)
}
