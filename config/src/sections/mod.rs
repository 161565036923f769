//! One module per config section. Each section struct has a `Default` impl, which is the only
//! place its defaults are written down: `#[serde(default)]` fills missing keys from it.

pub mod auth;
pub mod cluster;
pub mod http;
pub mod influxdb;
pub mod ingest;
pub mod limits;
pub mod log;
pub mod map;
pub mod mqtt;
pub mod reports;
pub mod storage;
pub mod tls;
pub mod tracker;
pub mod webhooks;
