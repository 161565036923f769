//! `[influxdb]`: the optional InfluxDB sink.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Secret;
use crate::urls::is_http_url;
use crate::validate::Problems;

/// Which InfluxDB write API the sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InfluxApi {
    /// InfluxDB 1.x `/write?db=` (uses `database`, and `username`/`password` when set).
    V1,
    /// InfluxDB 2.x, 3.x, Cloud, or anything speaking `/api/v2/write` (uses `org`, `bucket`,
    /// `token`).
    V2,
}

impl InfluxApi {
    /// The name used in the config file: `"v1"` or `"v2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            InfluxApi::V1 => "v1",
            InfluxApi::V2 => "v2",
        }
    }
}

impl fmt::Display for InfluxApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[influxdb]` section, for the InfluxDB sink. The section being absent from the file
/// means no sink: [`Config::influxdb`](crate::Config::influxdb) is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfluxDbConfig {
    /// Base URL of the server, `http://` or `https://`.
    pub url: String,
    /// Write API to use.
    pub api: InfluxApi,
    /// Organization (v2).
    pub org: String,
    /// Bucket (v2).
    pub bucket: String,
    /// API token (v2); required when `api = "v2"`.
    pub token: Secret,
    /// Database (v1).
    pub database: String,
    /// User name (v1, optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password for `username` (v1, optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A batch is written once it holds this many lines of line protocol...
    pub batch_max_lines: usize,
    /// ... or once its oldest line has waited this long; see [`InfluxDbConfig::flush_interval`].
    pub flush_interval_ms: u64,
    /// Bound of the on-disk spool that holds batches while the database is unreachable.
    pub spool_max_bytes: u64,
}

impl Default for InfluxDbConfig {
    fn default() -> Self {
        InfluxDbConfig {
            url: "http://127.0.0.1:8086".to_string(),
            api: InfluxApi::V2,
            org: "landport".to_string(),
            bucket: "telemetry".to_string(),
            token: Secret::default(),
            database: "landport".to_string(),
            username: None,
            password: None,
            batch_max_lines: 5000,
            flush_interval_ms: 1000,
            spool_max_bytes: 1 << 30,
        }
    }
}

impl InfluxDbConfig {
    /// `flush_interval_ms` as a [`Duration`].
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    /// User name and password for v1, when a non-empty user name is set.
    pub fn v1_credentials(&self) -> Option<(&str, &str)> {
        let user = self.username.as_deref().filter(|u| !u.is_empty())?;
        Some((user, self.password.as_ref().map_or("", Secret::expose)))
    }

    pub(crate) fn validate(&self, p: &mut Problems) {
        p.check(
            is_http_url(&self.url),
            "influxdb.url",
            format!("must be an http:// or https:// URL, got {:?}", self.url),
        );
        match self.api {
            InfluxApi::V2 => {
                for (value, path) in [
                    (self.org.as_str(), "influxdb.org"),
                    (self.bucket.as_str(), "influxdb.bucket"),
                    (self.token.expose(), "influxdb.token"),
                ] {
                    p.check(!value.trim().is_empty(), path, "required when api = \"v2\"");
                }
            }
            InfluxApi::V1 => {
                p.check(
                    !self.database.trim().is_empty(),
                    "influxdb.database",
                    "required when api = \"v1\"",
                );
                let has_user = self.username.as_deref().is_some_and(|u| !u.is_empty());
                let has_password = self.password.as_ref().is_some_and(|p| !p.is_empty());
                p.check(
                    has_user || !has_password,
                    "influxdb.password",
                    "set without influxdb.username",
                );
            }
        }
        p.check(
            self.batch_max_lines >= 1,
            "influxdb.batch_max_lines",
            "must be at least 1",
        );
        p.check(
            self.flush_interval_ms >= 1,
            "influxdb.flush_interval_ms",
            "must be at least 1",
        );
        p.check(
            self.spool_max_bytes >= 1,
            "influxdb.spool_max_bytes",
            "must be at least 1",
        );
    }
}
