//! `[ingest]`: what the ingestor accepts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use landport_tracker::check_id;

use crate::validate::Problems;

/// The `[ingest]` section, for the decoders, validation and the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Accept telemetry from devices not registered to the topic's tenant (registering them).
    pub auto_register: bool,
    /// Largest MQTT payload accepted; larger ones are rejected (`payload_too_large`).
    pub max_payload_bytes: usize,
    /// Readings whose `ts` is more than this ahead of now are rejected; see
    /// [`IngestConfig::max_future`].
    pub max_future_seconds: u64,
    /// Tenant of OwnTracks users not in `owntracks_tenants`.
    pub owntracks_default_tenant: String,
    /// OwnTracks user -> tenant id (`[ingest.owntracks_tenants]`, `alice = "acme"`).
    pub owntracks_tenants: BTreeMap<String, String>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            auto_register: false,
            max_payload_bytes: 64 * 1024,
            max_future_seconds: 24 * 60 * 60,
            owntracks_default_tenant: "default".to_string(),
            owntracks_tenants: BTreeMap::new(),
        }
    }
}

impl IngestConfig {
    /// Largest payload MQTT can carry at all (its maximum packet size).
    pub const MQTT_MAX_PAYLOAD_BYTES: usize = 268_435_455;

    /// `max_future_seconds` as a [`Duration`].
    pub fn max_future(&self) -> Duration {
        Duration::from_secs(self.max_future_seconds)
    }

    /// The tenant of OwnTracks user `user` (`owntracks/{user}/{device}`).
    pub fn owntracks_tenant(&self, user: &str) -> &str {
        self.owntracks_tenants
            .get(user)
            .map_or(&self.owntracks_default_tenant, String::as_str)
    }

    pub(crate) fn validate(&self, p: &mut Problems) {
        p.check(
            (1..=Self::MQTT_MAX_PAYLOAD_BYTES).contains(&self.max_payload_bytes),
            "ingest.max_payload_bytes",
            format!(
                "must be between 1 and {} (the MQTT maximum)",
                Self::MQTT_MAX_PAYLOAD_BYTES
            ),
        );
        // The one id rule (landport_tracker::check_id): these become topic levels and ids.
        let id = |p: &mut Problems, what: &str, id: &str, path: &str| {
            if let Err(e) = check_id(id) {
                p.push(path, format!("{what} {id:?} {}", e.reason()));
            }
        };
        id(
            p,
            "tenant id",
            &self.owntracks_default_tenant,
            "ingest.owntracks_default_tenant",
        );
        for (user, tenant) in &self.owntracks_tenants {
            let path = format!("ingest.owntracks_tenants.{user}");
            id(p, "OwnTracks user", user, &path);
            id(p, "tenant id", tenant, &path);
        }
    }
}
