//! `Authorization: Bearer KEY`: the admin key, or a tenant's key looked up by its hash.
//!
//! A tenant key acts on its own tenant only. An admin key acts on every tenant: its lists
//! cover all of them unless the query names one with `?tenant=ID`, and endpoints on a single
//! resource (`/v1/devices/{id}`, creating one, ...) need that `?tenant=`. A tenant key's
//! `?tenant=` is ignored.
//!
//! Each valid key is held to `limits.requests_per_second` (429 with `retry-after` past it);
//! unknown keys are remembered briefly, so repeating one costs no store read.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use landport_store::KeyHash;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::ApiState;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin key, with the tenant the query names, if any.
    Admin { tenant: Option<String> },
    /// A key of this tenant.
    Tenant(String),
}

impl Caller {
    /// The tenant a list covers: `None` = every tenant (an admin naming none).
    pub fn scope(&self) -> Option<&str> {
        match self {
            Caller::Admin { tenant } => tenant.as_deref(),
            Caller::Tenant(t) => Some(t),
        }
    }

    /// The one tenant a request acts on.
    pub fn tenant(&self) -> Result<&str, ApiError> {
        self.scope().ok_or_else(|| {
            ApiError::bad_request("an admin key must name the tenant: add ?tenant=ID")
        })
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin { .. } => Ok(()),
            Caller::Tenant(_) => Err(ApiError::Forbidden),
        }
    }
}

/// Cluster mode: where the [`Caller`] extractor notes whose key a request carried, so that
/// the shard that answered can tell the instance's front (`x-landport-tenant`), which routes
/// the key's later single-device reads to the device's partition. Put it in the request's
/// extensions before running the router; it holds the tenant of a tenant key, or
/// [`TenantSlot::ADMIN`] for the admin key (whose tenant is the request's `?tenant=`).
#[derive(Debug, Clone, Default)]
pub struct TenantSlot(Arc<Mutex<Option<String>>>);

impl TenantSlot {
    /// What an admin key notes: not an id (ids never hold `*`).
    pub const ADMIN: &'static str = "*";

    /// The tenant noted, if an extractor ran and the key was valid.
    pub fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(parts: &Parts, tenant: &str) {
        if let Some(slot) = parts.extensions.get::<TenantSlot>() {
            *slot.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(tenant.to_owned());
        }
    }
}

#[derive(Deserialize)]
struct TenantParam {
    tenant: Option<String>,
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        // A replicated registry entry names its caller by the key's hash (the log never holds
        // the key); honored only where the replication headers are.
        let replicated_hash = (state.trusts_replication_headers()
            && crate::replicated::is_replicated())
        .then(|| parts.headers.get(crate::replicated::KEY_HASH_HEADER))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(KeyHash::from_hex);
        let hash = match replicated_hash {
            Some(hash) => hash,
            None => KeyHash::of(bearer(parts)?),
        };
        Self::of_hash(parts, state, hash).await
    }
}

/// The bearer key of a request: 401 without one.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|k| !k.is_empty())
        .ok_or(ApiError::Unauthorized)
}

impl Caller {
    /// The caller a key's hash stands for.
    async fn of_hash(parts: &Parts, state: &ApiState, hash: KeyHash) -> Result<Caller, ApiError> {
        if let Some(admin) = state.admin_key()
            && hashes_equal(admin, &hash)
        {
            let tenant = axum::extract::Query::<TenantParam>::try_from_uri(&parts.uri)
                .map_err(ApiError::from)?
                .0
                .tenant
                .filter(|t| !t.is_empty());
            state.check_rate(&hash, "this key")?;
            TenantSlot::set(parts, TenantSlot::ADMIN);
            return Ok(Caller::Admin { tenant });
        }
        match state.key_tenant(hash).await? {
            Some(tenant) => {
                state.check_rate(&hash, "this key")?;
                TenantSlot::set(parts, &tenant);
                Ok(Caller::Tenant(tenant))
            }
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// Compares two hashes in time independent of where they differ. Comparing hashes rather
/// than keys already hides the key's bytes; this hides the hash's too.
fn hashes_equal(a: &KeyHash, b: &KeyHash) -> bool {
    a.0.iter()
        .zip(b.0.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_compare_by_every_byte() {
        assert!(hashes_equal(&KeyHash::of("a"), &KeyHash::of("a")));
        assert!(!hashes_equal(&KeyHash::of("a"), &KeyHash::of("b")));
    }
}
