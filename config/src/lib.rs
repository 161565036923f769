//! The Landport config file: its schema, defaults, environment overrides and validation.
//!
//! The binary loads one [`Config`] at start-up with [`Config::load`] and hands each runtime
//! component only its own section: the API gets [`HttpConfig`], [`AuthConfig`] and
//! [`MapConfig`], the ingestor [`MqttConfig`] and [`IngestConfig`], the store
//! [`StorageConfig`], the sink `Option<InfluxDbConfig>`, the tracker's own [`TrackerSettings`], the
//! logger [`LogConfig`]. No component reads the file or the environment itself.
//!
//! ```toml
//! [http]
//! listen = "0.0.0.0:8080"
//! [storage]
//! retention_days = 90
//! [influxdb]                 # absent = no InfluxDB sink
//! url = "http://influxdb:8086"
//! token = "..."
//! ```
//!
//! # Loading
//! 1. The file is parsed as TOML (a missing file is an error; no file at all means defaults).
//! 2. Environment overrides are applied: `LANDPORT_SECTION__KEY=value` sets `section.key`,
//!    `__` separating path segments, case-insensitively (`LANDPORT_HTTP__LISTEN=0.0.0.0:9000`,
//!    `LANDPORT_TRACKER__ETA__DETOUR_FACTOR=1.2`; `LANDPORT_INFLUXDB__URL=...` creates the
//!    `[influxdb]` section). See [`mod@env`] for how values are read.
//! 3. The result is deserialized: every struct denies unknown keys, and missing keys take the
//!    section's `Default` impl, the one place defaults are written down.
//! 4. [`Config::validate`] checks what types cannot, collecting every problem.
//!
//! Every error names the field path (`http.lisen: unknown key, expected `listen``), with the
//! file and line when the problem is in the file, or the variable when it came from the
//! environment; see [`ConfigError`]. Nothing here panics on bad input.
//!
//! # Layout
//! - `config.rs`: [`Config`], loading and validation entry points.
//! - `load.rs`: text + overrides -> `Config`, mapping serde errors to field paths and lines.
//! - [`mod@env`]: environment overrides.
//! - `sections/`: one file per section struct, each with its `Default` and its checks.
//! - `error.rs`: [`ConfigError`]; `secret.rs`: [`Secret`], a string `Debug` does not print.
//! - [`urls`]: the one URL parser (the `url` crate): [`BrokerUrl`] for `mqtt.url` (and the
//!   simulators' `--broker`), HTTP base URLs for `influxdb.url` and `map.tile_url`.
//!
//! Units are part of key names (`_seconds`, `_ms`, `_m`, `_kmh`, `_kg`, `_bytes`); sections
//! with times also offer [`std::time::Duration`] accessors (`TrackerSettings::offline_after`).

mod config;
pub mod env;
mod error;
mod load;
mod secret;
mod sections;
pub mod urls;
mod validate;

pub use config::Config;
pub use env::ENV_PREFIX;
pub use error::{ConfigError, FieldError, SourceLocation};
pub use landport_tracker::{EtaSettings, TrackerSettings};
pub use secret::Secret;
pub use sections::auth::AuthConfig;
pub use sections::cluster::ClusterConfig;
pub use sections::http::HttpConfig;
pub use sections::influxdb::{InfluxApi, InfluxDbConfig};
pub use sections::ingest::IngestConfig;
pub use sections::limits::LimitsConfig;
pub use sections::log::{LogConfig, LogFormat};
pub use sections::map::MapConfig;
pub use sections::mqtt::MqttConfig;
pub use sections::reports::ReportsConfig;
pub use sections::storage::{StorageConfig, Synchronous};
pub use sections::tls::TlsConfig;
pub use sections::webhooks::WebhooksConfig;
pub use urls::{BrokerUrl, BrokerUrlError, DEFAULT_MQTT_PORT, DEFAULT_MQTTS_PORT};

#[cfg(test)]
mod tests;
