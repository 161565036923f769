//! # landport-sinks
//!
//! What tails the store to the outside. The pipeline (landport-pipeline) commits readings and
//! events to the store and knows nothing of the sinks; each sink reads what was committed
//! after a cursor of its own, hands it to its destination, and moves the cursor only past
//! what the destination confirmed: at least once, across restarts, never holding up ingest.
//!
//! ```text
//! store (telemetry, events) --cursor influx_telemetry / influx_events--> influx  --> InfluxDB
//!       (events)            --cursor mqtt_events-----------------------> outbox  --> MQTT broker
//! ```
//!
//! Layout:
//! - [`influx`]: the InfluxDB sink (line protocol, v1 and v2 write APIs, retries, the spool
//!   bound).
//! - [`outbox`]: the MQTT event outbox: stored events to `landport/{tenant}/{device}/events`,
//!   through an [`outbox::EventPublisher`] (the binary wires in the MQTT client), woken by the
//!   pipeline's store writer when it commits events.
//! - [`webhooks`]: the webhook delivery engine (SPEC 13): stored events fanned out to the
//!   tenants' webhooks (the outbox rows written with the fan-out cursor), signed, retried,
//!   through a DNS-guarded HTTP client.
//!
//! Both retry with the one [`Backoff`](landport_pipeline::Backoff) and count into the one
//! metrics registry ([`landport_pipeline::metrics`]).

pub mod influx;
pub mod outbox;
pub mod webhooks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A seed for a [`Backoff`](landport_pipeline::Backoff)'s jitter, different for each call and
/// process.
fn seed() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32) ^ CALLS.fetch_add(1, Ordering::Relaxed)
}
