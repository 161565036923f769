//! How the config becomes each component's settings: shared by the single-node service
//! (`landport run` without `[cluster]`) and every shard of cluster mode, so both build their
//! parts from the config the same way.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use landport_config::{Config, InfluxApi, InfluxDbConfig};
use landport_ingest::decode::Limits;
use landport_ingest::decoder::IngestSettings;
use landport_ingest::topic::OwnTracksTenants;
use landport_pipeline::PipelineConfig;
use landport_sinks::influx::{SinkConfig, WriteApi};

/// The decode stage's settings from `[ingest]`.
pub fn ingest(config: &Config) -> IngestSettings {
    let i = &config.ingest;
    IngestSettings {
        limits: Limits {
            max_payload_bytes: i.max_payload_bytes,
            max_future_ms: i.max_future().as_millis() as i64,
        },
        owntracks: OwnTracksTenants {
            default_tenant: i.owntracks_default_tenant.clone(),
            by_user: i
                .owntracks_tenants
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        },
    }
}

/// The InfluxDB sink's settings from `[influxdb]`.
pub fn influx_sink(c: &InfluxDbConfig) -> SinkConfig {
    let api = match c.api {
        InfluxApi::V1 => WriteApi::V1 {
            database: c.database.clone(),
            credentials: c
                .v1_credentials()
                .map(|(u, p)| (u.to_owned(), p.to_owned())),
        },
        InfluxApi::V2 => WriteApi::V2 {
            org: c.org.clone(),
            bucket: c.bucket.clone(),
            token: c.token.expose().to_owned(),
        },
    };
    // The batching defaults are `InfluxDbConfig::default`'s: the sink has none of its own.
    SinkConfig::new(
        c.url.clone(),
        api,
        NonZeroUsize::new(c.batch_max_lines).unwrap_or(NonZeroUsize::MIN),
        c.flush_interval(),
        c.spool_max_bytes,
    )
}

/// The webhook engine's settings from `[webhooks]` (and the event retention, which done
/// deliveries follow).
pub fn webhooks(config: &Config) -> landport_sinks::webhooks::WebhookSettings {
    let w = &config.webhooks;
    landport_sinks::webhooks::WebhookSettings {
        retry_window: w.retry_window(),
        allow_private_targets: w.allow_private_targets,
        max_concurrency: w.max_concurrency as usize,
        max_concurrency_per_webhook: w.max_concurrency_per_webhook as usize,
        timeout: w.timeout(),
        keep_done: Duration::from_secs(u64::from(config.storage.events_retention_days) * 86_400),
    }
}

/// The store's `synchronous` setting from `[storage]`, for every connection that writes.
pub fn synchronous(config: &Config) -> landport_store::Synchronous {
    match config.storage.synchronous {
        landport_config::Synchronous::Normal => landport_store::Synchronous::Normal,
        landport_config::Synchronous::Full => landport_store::Synchronous::Full,
    }
}

/// The pipeline's settings from `[storage]`. Nothing is acknowledged before it is durable:
/// what is not taken in before stopping is sent again by its client.
pub fn pipeline(config: &Config) -> PipelineConfig {
    PipelineConfig {
        retention: Duration::from_secs(u64::from(config.storage.retention_days) * 86_400),
        events_retention: Duration::from_secs(
            u64::from(config.storage.events_retention_days) * 86_400,
        ),
        drain_on_shutdown: Duration::ZERO,
        ..PipelineConfig::default()
    }
}

/// The API's quotas from `[limits]`.
pub fn api_limits(config: &Config) -> landport_api::Limits {
    let l = &config.limits;
    landport_api::Limits {
        devices: l.devices,
        geofences: l.geofences,
        geofence_vertices: l.geofence_vertices,
        shipments_active: l.shipments_active,
        webhooks: l.webhooks,
        sse_connections: l.sse_connections,
        requests_per_second: l.requests_per_second,
        burst: l.burst,
    }
}

/// The report settings from `[reports]`.
pub fn reports(config: &Config) -> landport_api::ReportSettings {
    let rep = &config.reports;
    landport_api::ReportSettings {
        max_days: rep.max_days,
        stop_radius_m: rep.stop_radius_m,
        min_trip_m: rep.min_trip_m,
        gap_seconds: rep.gap_seconds,
    }
}
