//! `[storage]`: the embedded store.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::validate::Problems;

/// How hard a commit of the embedded store insists on reaching the disk (SQLite's
/// `PRAGMA synchronous`, in WAL mode). Every connection that writes uses it.
///
/// Either way a commit survives the death of the process (panic, `kill -9`, the OOM killer):
/// it is in the operating system's page cache before it returns. They differ when the machine
/// itself stops (power cut, kernel panic, a VM killed by its host):
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// The WAL is flushed to disk (`fsync`) only at checkpoints. A power cut may roll back the
    /// commits since the last checkpoint (at most the last ~40 MiB of WAL, typically the last
    /// seconds of readings, events and API writes; MQTT messages acknowledged in that window
    /// are lost, since the broker has forgotten them). The database is never corrupted.
    #[default]
    Normal,
    /// Every commit is flushed to disk before it returns (one `fsync` per commit, so per
    /// batch of readings): a power cut loses nothing that was committed, so nothing that was
    /// acknowledged. Costs ingest throughput on disks with slow flushes (measure yours).
    Full,
}

impl Synchronous {
    /// The name used in the config file: `"normal"` or `"full"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
        }
    }
}

impl fmt::Display for Synchronous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[storage]` section, for the embedded store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the embedded store, created when missing. A relative path is relative to
    /// the working directory of the service, not to the config file.
    pub path: PathBuf,
    /// Telemetry history older than this many days is deleted. Devices, geofences,
    /// shipments and tenants are kept.
    pub retention_days: u32,
    /// Stored events older than this many days (by when they were stored) are deleted, on the
    /// telemetry's retention schedule (at start, then hourly).
    pub events_retention_days: u32,
    /// What a commit waits for: see [`Synchronous`].
    pub synchronous: Synchronous,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("./landport-data"),
            retention_days: 30,
            events_retention_days: 90,
            synchronous: Synchronous::Normal,
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
        p.check(
            self.events_retention_days >= 1,
            "storage.events_retention_days",
            "must be at least 1",
        );
    }
}
