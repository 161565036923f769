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
    /// At least [`AuthConfig::MIN_ADMIN_KEY_CHARS`] characters, and not a placeholder (SPEC 15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_key: Option<Secret>,
}

impl AuthConfig {
    /// Shortest admin key accepted (SPEC 15): e.g. `openssl rand -hex 32` gives 64.
    pub const MIN_ADMIN_KEY_CHARS: usize = 32;

    /// Fewest different characters an admin key may have: `aaaa...` or `abababab...` is not a
    /// secret. 32 random hex digits have 14 different ones on average; fewer than 8 happens
    /// about once in 10^7 draws.
    pub const MIN_ADMIN_KEY_DISTINCT_CHARS: usize = 8;

    /// Prefixes of the placeholders that example files and docs use (compared ignoring case).
    pub const PLACEHOLDER_PREFIXES: &[&str] = &["change-me", "changeme", "change_me"];

    pub(crate) fn validate(&self, p: &mut Problems) {
        if let Some(key) = &self.admin_key {
            let key = key.expose();
            let long_enough = key.chars().count() >= Self::MIN_ADMIN_KEY_CHARS;
            p.check(
                long_enough,
                "auth.admin_key",
                format!(
                    "must be at least {} characters, e.g. from `openssl rand -hex 32` (leave it \
                     out for demo mode)",
                    Self::MIN_ADMIN_KEY_CHARS
                ),
            );
            p.check(
                !key.chars().any(|c| c.is_whitespace() || c.is_control()),
                "auth.admin_key",
                "must not contain whitespace",
            );
            let lower = key.to_ascii_lowercase();
            p.check(
                !Self::PLACEHOLDER_PREFIXES
                    .iter()
                    .any(|prefix| lower.starts_with(prefix)),
                "auth.admin_key",
                "is the placeholder of an example: set a random key of your own",
            );
            let mut distinct: Vec<char> = key.chars().collect();
            distinct.sort_unstable();
            distinct.dedup();
            p.check(
                !long_enough || distinct.len() >= Self::MIN_ADMIN_KEY_DISTINCT_CHARS,
                "auth.admin_key",
                format!(
                    "has fewer than {} different characters: not a random key",
                    Self::MIN_ADMIN_KEY_DISTINCT_CHARS
                ),
            );
        }
    }
}
