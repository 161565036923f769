//! `[webhooks]`: delivery of events to the tenants' webhooks (SPEC 13).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::validate::Problems;

/// The `[webhooks]` section, for the delivery engine (landport-sinks) and the API's checks of
/// target URLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// How long a delivery is retried (exponential backoff, full jitter, at most an hour
    /// between tries) before it is marked `failed`.
    pub retry_hours: u32,
    /// Allow targets on loopback, private, link-local and metadata addresses, and `http://`
    /// URLs: for tests and labs only. Off, such targets are refused at creation and on every
    /// connection (after DNS).
    pub allow_private_targets: bool,
    /// Deliveries in flight at once, over every webhook.
    pub max_concurrency: u32,
    /// Deliveries in flight at once to one webhook: a slow receiver holds at most this many
    /// slots.
    pub max_concurrency_per_webhook: u32,
    /// How long a receiver has to answer a delivery (a 2xx within it is a success).
    pub timeout_seconds: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            retry_hours: 72,
            allow_private_targets: false,
            max_concurrency: 64,
            max_concurrency_per_webhook: 8,
            timeout_seconds: 10,
        }
    }
}

impl WebhooksConfig {
    /// The longest retry window accepted: 30 days.
    pub const MAX_RETRY_HOURS: u32 = 720;

    /// `retry_hours` as a duration.
    pub fn retry_window(&self) -> Duration {
        Duration::from_secs(u64::from(self.retry_hours) * 3600)
    }

    /// `timeout_seconds` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.timeout_seconds))
    }

    pub(crate) fn validate(&self, p: &mut Problems) {
        p.check(
            (1..=Self::MAX_RETRY_HOURS).contains(&self.retry_hours),
            "webhooks.retry_hours",
            format!("must be 1..={}", Self::MAX_RETRY_HOURS),
        );
        p.check(
            (1..=10_000).contains(&self.max_concurrency),
            "webhooks.max_concurrency",
            "must be 1..=10000",
        );
        p.check(
            (1..=self.max_concurrency.max(1)).contains(&self.max_concurrency_per_webhook),
            "webhooks.max_concurrency_per_webhook",
            "must be 1..=webhooks.max_concurrency",
        );
        p.check(
            (1..=10).contains(&self.timeout_seconds),
            "webhooks.timeout_seconds",
            "must be 1..=10 (a delivery succeeds with a 2xx within 10 s)",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, ConfigError};

    fn problems(toml: &str) -> Vec<String> {
        match Config::from_toml_str(toml, []).unwrap().validate() {
            Ok(()) => vec![],
            Err(ConfigError::Invalid(v)) => v.into_iter().map(|f| f.path).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn defaults_retry_for_72_hours_and_refuse_private_targets() {
        let w = Config::default().webhooks;
        assert_eq!(w.retry_hours, 72);
        assert!(!w.allow_private_targets);
        assert_eq!(w.timeout_seconds, 10);
        assert!(w.max_concurrency_per_webhook <= w.max_concurrency);
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        assert_eq!(
            problems("[webhooks]\nretry_hours = 0"),
            ["webhooks.retry_hours"]
        );
        assert_eq!(
            problems("[webhooks]\nmax_concurrency = 4\nmax_concurrency_per_webhook = 5"),
            ["webhooks.max_concurrency_per_webhook"]
        );
        assert_eq!(
            problems("[webhooks]\ntimeout_seconds = 11"),
            ["webhooks.timeout_seconds"]
        );
        assert!(problems("[webhooks]\nallow_private_targets = true\nretry_hours = 1").is_empty());
    }

    #[test]
    fn webhooks_take_environment_overrides() {
        let env = [(
            "LANDPORT_WEBHOOKS__ALLOW_PRIVATE_TARGETS".to_owned(),
            "true".to_owned(),
        )];
        assert!(
            Config::from_toml_str("", env)
                .unwrap()
                .webhooks
                .allow_private_targets
        );
    }
}
