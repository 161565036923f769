//! The end-to-end bench's load generator and baseline subscriber.
//!
//! - [`publish`]: N simulated trucks (`{tenant}/truck-{i}`) publishing native readings over
//!   several MQTT connections, at full speed or a fixed total rate, for a count or a duration.
//!   Each reading's `ts` is its send time in epoch ms, so a receiver can measure latency.
//! - [`drain`]: a bare subscriber that counts what arrives on a topic filter (QoS 1, acked at
//!   once, or a fixed delay later to mimic acks after a commit), and optionally reads `ts`
//!   back out of each message for latency percentiles. It is the baseline Landport's ingest
//!   rate is compared with (SPEC 9).
//! - [`watch`]: polls a Prometheus counter on `/metrics` until it reaches a target.
//! - [`serde_baseline`]: the province box's same-run baseline for scripts/bench-api.
//!
//! Layout: `payload` (trucks and their JSON, pure), `pacing` (rate math, pure), `latency`
//! (percentiles, pure), `publish` and `drain` (the MQTT drivers), `scrape` (`/metrics`).
//! The drivers use `rumqttc` directly, not Landport's own MQTT module: the bench measures
//! Landport from the outside.

mod drain;
pub mod latency;
pub mod pacing;
pub mod payload;
pub(crate) mod publish;
pub mod scrape;
mod serde_baseline;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow};
use landport_config::BrokerUrl;
use rumqttc::MqttOptions;

pub use drain::{Drain, DrainConfig, DrainReport, drain};
pub use publish::{LoadConfig, LoadReport, Stop, publish};
pub use scrape::{WatchConfig, WatchReport, watch};
pub use serde_baseline::{SerdeBaseline, serde_baseline};

/// Now, epoch milliseconds.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Now, epoch milliseconds with a fractional part (microsecond resolution).
fn unix_ms_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// `--broker`: `mqtt://host:port`, `tcp://host:port` or `host:port` (port 1883 when left out)
/// -> host, port (IPv6 without brackets), read by Landport's one broker-URL parser,
/// [`BrokerUrl::parse_with_default_scheme`].
pub fn parse_broker(url: &str) -> Result<(String, u16)> {
    let broker = BrokerUrl::parse_with_default_scheme(url).map_err(|e| anyhow!("--broker: {e}"))?;
    Ok((broker.host, broker.port))
}

/// Options shared by the publisher and subscriber connections: a clean session (nothing is
/// left behind on the broker) and room for bursts in the request channel.
pub(crate) fn mqtt_options(client_id: &str, host: &str, port: u16) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20);
    options
}

/// A client id unique to this process and purpose.
pub(crate) fn client_id(prefix: &str, purpose: &str) -> String {
    format!("{prefix}-{purpose}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_give_host_and_port() {
        let hp = |u| parse_broker(u).unwrap();
        assert_eq!(hp("mqtt://127.0.0.1:1884"), ("127.0.0.1".into(), 1884));
        assert_eq!(hp("tcp://broker:1885/"), ("broker".into(), 1885));
        assert_eq!(hp("localhost:1886"), ("localhost".into(), 1886));
        assert_eq!(hp("mqtt://broker"), ("broker".into(), 1883));
        assert!(parse_broker("mqtts://broker:8883").is_err());
        assert!(parse_broker("mqtt://:1883").is_err());
        assert!(parse_broker("mqtt://broker:x").is_err());
        assert_eq!(hp("[::1]:1887"), ("::1".into(), 1887));
        let e = parse_broker("mqtts://broker:8883").unwrap_err().to_string();
        assert!(e.starts_with("--broker: TLS"), "{e}");
    }
}
