//! `[storage]`: the embedded store.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::validate::Problems;

/// The `[storage]` section, for the embedded store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the embedded store, created when missing. A relative path is relative to
    /// the working directory of the service, not to the config file.
    pub path: PathBuf,
    /// Telemetry history older than this many days is deleted. Events, devices, geofences,
    /// shipments and tenants are kept.
    pub retention_days: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("./landport-data"),
            retention_days: 30,
        }
    }
}

impl StorageConfig {
    pub(crate) fn validate(&self, p: &mut Problems) {
        p.check(
            !self.path.as_os_str().is_empty(),
            "storage.path",
            "must not be empty",
        );
        p.check(
            self.retention_days >= 1,
            "storage.retention_days",
            "must be at least 1",
        );
    }
}
