//! `[auth]`: the admin key.

use serde::{Deserialize, Serialize};

use crate::Secret;
use crate::validate::Problems;

/// The `[auth]` section, for the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer key with full rights on every tenant. Absent: demo mode only (no admin key can
    /// create tenants or keys). Better set through `LANDPORT_AUTH__ADMIN_KEY` than in a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_key: Option<Secret>,
}

impl AuthConfig {
    /// Shortest admin key accepted.
    pub const MIN_ADMIN_KEY_CHARS: usize = 16;

    pub(crate) fn validate(&self, p: &mut Problems) {
        if let Some(key) = &self.admin_key {
            let key = key.expose();
            p.check(
                key.chars().count() >= Self::MIN_ADMIN_KEY_CHARS,
                "auth.admin_key",
                format!(
                    "must be at least {} characters (leave it out for demo mode)",
                    Self::MIN_ADMIN_KEY_CHARS
                ),
            );
            p.check(
                !key.chars().any(|c| c.is_whitespace() || c.is_control()),
                "auth.admin_key",
                "must not contain whitespace",
            );
        }
    }
}
