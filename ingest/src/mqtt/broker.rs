//! The embedded broker: rumqttd in-process, so that `landport run` works with nothing else
//! installed (SPEC §2: 127.0.0.1:1883 by default).
//!
//! rumqttd runs its router on one thread and each listener on another, each with its own
//! current-thread tokio runtime; none of that touches the caller's runtime.
//!
//! What rumqttd does, and what that means for us (measured against rumqttd 0.20):
//! - **No shutdown.** rumqttd has no API to stop a broker: it lives until the process exits.
//!   Dropping [`EmbeddedBroker`] leaves it running. Start one per process (tests: one per test,
//!   each on its own port).
//! - **Bind errors are only logged** by rumqttd's listener thread. We therefore check the
//!   address ourselves first (a bind-and-release probe), then wait until an MQTT CONNECT gets a
//!   CONNACK before [`EmbeddedBroker::start`] returns. Port 0 picks a free port the same way;
//!   another process could take it between our probe and rumqttd's bind (then `start` fails
//!   with a timeout, never silently).
//! - **Sessions live in memory.** `clean_session = false` sessions (our source's) survive a
//!   reconnect but not a restart of the process. rumqttd acknowledges a publish once it has
//!   logged it in memory, so a crash of the process (kill -9, OOM) loses what devices had
//!   published and the pipeline had not yet committed: the backlog, normally a fraction of a
//!   second. A graceful shutdown drains it first. Where a crash must lose nothing, use an
//!   external broker with persistent sessions (the kill -9 test runs against Mosquitto).
//! - **Acks are taken in order.** rumqttd matches each PUBACK to its oldest un-acked message,
//!   whatever the packet id says (MQTT 3.1.1 §4.6 makes clients ack in order). Acked out of
//!   order, a message would count as acked while the pipeline still holds it, and be lost on a
//!   crash. The source therefore sends PUBACKs strictly in arrival order (`mqtt::ack_order`).
//! - **Redelivery is from a log.** rumqttd keeps messages in a per-filter in-memory commit log
//!   (`segment_bytes` x `segments_in_memory`) and, when a persistent session comes back,
//!   resends from its oldest un-acked message onward. A subscriber that falls further behind
//!   than the log holds (a long backpressure stall) loses the oldest messages: size the log
//!   for the stall you want to survive.
//! - **QoS is the subscription's.** A QoS 0 publish reaches our QoS 1 subscription as QoS 1
//!   (with a token to ack), unlike MQTT's min(publish, subscription).
//! - **At most 100 un-acked QoS 1 messages per subscriber** (rumqttd's `MAX_INFLIGHT`, not
//!   configurable): the pipeline must acknowledge in batches smaller than that, or time-bound
//!   ones, or it will wait for messages the broker won't send.
//! - **Topics nobody subscribes to** get a log of their own (`dynamic_filters`); without that
//!   rumqttd disconnects whoever publishes to them, which would cut off our event publisher
//!   while nobody listens. `initialized_filters` pre-creates one shared log for our event and
//!   dead-letter topics so they don't grow one log per device.
//! - **Overruns are reported.** rumqttd raises a `cursor_jump` alert when a subscriber's next
//!   message has already left the in-memory log. We ask for its alerts every second and count
//!   those ([`EmbeddedBroker::overruns`]; `/metrics` has it), and log each at `error`: that
//!   subscriber (normally Landport's own ingest) has lost messages.
//! - **MQTT 3.1.1 only** here (one v4 listener); no TLS, no websockets, no auth.
//! - rumqttd logs every accepted connection at `info` under the `rumqttd` target; a log filter
//!   of `rumqttd=warn` quiets it.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::MqttError;

/// Settings of the embedded broker. Defaults in [`EmbeddedBrokerConfig::default`].
#[derive(Debug, Clone)]
pub struct EmbeddedBrokerConfig {
    /// Where to listen (SPEC: `mqtt.listen`, default 127.0.0.1:1883). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Most concurrent client connections; a client over the limit gets no CONNACK.
    pub max_connections: usize,
    /// Largest payload accepted, in bytes (the topic may add up to 64 KiB more). Above Landport's
    /// own 64 KiB limit on purpose: an oversized payload should reach our decoder and come back
    /// as a `payload_too_large` rejection, not as a dropped connection.
    pub max_payload_bytes: usize,
    /// Packets rumqttd reads from one connection before handing them to its router.
    pub max_buffered_packets_per_connection: usize,
    /// Size of one in-memory commit-log segment per topic filter, in bytes (>= 1 KiB).
    pub segment_bytes: usize,
    /// Segments kept per filter; older ones are dropped (see the module docs).
    pub segments_in_memory: usize,
    /// How long a new TCP connection may take to send its CONNECT (at most 65.535 s).
    pub connect_timeout: Duration,
    /// How long [`EmbeddedBroker::start`] waits for the broker to answer.
    pub startup_timeout: Duration,
    /// Filters whose commit log exists from the start and is shared by all matching topics.
    pub initialized_filters: Vec<String>,
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        EmbeddedBrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            max_connections: 10_000,
            max_payload_bytes: 1024 * 1024,
            max_buffered_packets_per_connection: 500,
            segment_bytes: 8 * 1024 * 1024,
            segments_in_memory: 8,
            connect_timeout: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(5),
            initialized_filters: vec![
                "landport/+/+/events".to_owned(),
                "landport/+/+/rejected".to_owned(),
            ],
        }
    }
}

/// The largest packet the broker accepts: the payload, a topic of up to 65,535 bytes, and the
/// fixed header, packet id and lengths.
fn max_packet_bytes(max_payload_bytes: usize) -> usize {
    max_payload_bytes.saturating_add(65_535 + 16)
}

impl EmbeddedBrokerConfig {
    /// Checks every value rumqttd would panic on or misbehave with; errors name the field.
    pub fn validate(&self) -> Result<(), MqttError> {
        let field = |name: &str| format!("mqtt.embedded_broker.{name}");
        if self.max_connections == 0 {
            return Err(MqttError::config(
                field("max_connections"),
                "must be at least 1",
            ));
        }
        if !(1024..=256 * 1024 * 1024).contains(&self.max_payload_bytes) {
            return Err(MqttError::config(
                field("max_payload_bytes"),
                "must be 1 KiB..=256 MiB",
            ));
        }
        if self.max_buffered_packets_per_connection == 0 {
            return Err(MqttError::config(
                field("max_buffered_packets_per_connection"),
                "must be at least 1",
            ));
        }
        // rumqttd panics below 1 KiB.
        if self.segment_bytes < 1024 {
            return Err(MqttError::config(
                field("segment_bytes"),
                "must be at least 1024",
            ));
        }
        if self.segments_in_memory == 0 {
            return Err(MqttError::config(
                field("segments_in_memory"),
                "must be at least 1",
            ));
        }
        if self.connect_timeout.is_zero() || self.connect_timeout.as_millis() > u128::from(u16::MAX)
        {
            return Err(MqttError::config(
                field("connect_timeout"),
                "must be 1 ms..=65.535 s (rumqttd holds it in a u16 of milliseconds)",
            ));
        }
        if self.startup_timeout.is_zero() {
            return Err(MqttError::config(
                field("startup_timeout"),
                "must be more than 0",
            ));
        }
        for (i, f) in self.initialized_filters.iter().enumerate() {
            if !rumqttc::valid_filter(f) {
                return Err(MqttError::config(
                    field(&format!("initialized_filters[{i}]")),
                    format!("{f:?} is not a valid MQTT topic filter"),
                ));
            }
        }
        Ok(())
    }

    /// The rumqttd configuration these settings stand for, listening on `listen`.
    fn to_rumqttd(&self, listen: SocketAddr) -> rumqttd::Config {
        let connections = rumqttd::ConnectionSettings {
            connection_timeout_ms: u16::try_from(self.connect_timeout.as_millis())
                .unwrap_or(u16::MAX),
            max_payload_size: max_packet_bytes(self.max_payload_bytes),
            max_inflight_count: self.max_buffered_packets_per_connection,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        };
        let server = rumqttd::ServerSettings {
            name: "landport-mqtt-v4".to_owned(),
            listen,
            tls: None,
            next_connection_delay_ms: 0,
            connections,
        };
        rumqttd::Config {
            id: 0,
            router: rumqttd::RouterConfig {
                max_connections: self.max_connections,
                // QoS 0 messages read from a log per round for one subscriber.
                max_outgoing_packet_count: 200,
                max_segment_size: self.segment_bytes,
                max_segment_count: self.segments_in_memory,
                custom_segment: None,
                initialized_filters: Some(self.initialized_filters.clone()),
                shared_subscriptions_strategy: Default::default(),
            },
            v4: Some(HashMap::from([("1".to_owned(), server)])),
            metrics: Some(alert_timers()),
            ..Default::default()
        }
    }
}

/// rumqttd's push intervals: alerts every second. Meters are never read, but rumqttd's timer
/// task needs both set (it unwraps both intervals).
fn alert_timers() -> HashMap<rumqttd::MetricType, rumqttd::MetricSettings> {
    // `MetricSettings` has no public constructor; it deserializes.
    let every = |secs: u64| {
        serde_json::from_value(serde_json::json!({ "push_interval": secs }))
            .expect("MetricSettings is {push_interval}")
    };
    HashMap::from([
        (rumqttd::MetricType::Alerts, every(1)),
        (rumqttd::MetricType::Meters, every(3600)),
    ])
}

/// A running rumqttd. See the module docs for what it can't do (stop, above all).
#[derive(Debug)]
pub struct EmbeddedBroker {
    /// The address it listens on (the chosen port when the config said 0).
    addr: SocketAddr,
    /// The thread that runs `rumqttd::Broker::start`; it ends only if the listener fails.
    thread: JoinHandle<()>,
    /// Cursor jumps seen: times a subscriber lost messages that had left the log.
    overruns: Arc<AtomicU64>,
}

impl EmbeddedBroker {
    /// Validates `config`, starts rumqttd on its own threads and returns once the broker
    /// answers an MQTT CONNECT, or fails after `startup_timeout`.
    pub async fn start(config: EmbeddedBrokerConfig) -> Result<EmbeddedBroker, MqttError> {
        config.validate()?;
        let addr = reserve_addr(config.listen)?;
        let broker_config = config.to_rumqttd(addr);
        let overruns = Arc::new(AtomicU64::new(0));
        let counter = overruns.clone();
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".to_owned())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(broker_config);
                match broker.alerts() {
                    Ok(link) => watch_alerts(link, counter),
                    Err(e) => tracing::warn!(error = %e, "embedded MQTT broker: no alerts"),
                }
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, %addr, "embedded MQTT broker stopped");
                }
            })
            .map_err(|e| MqttError::Broker {
                addr,
                reason: format!("spawning its thread: {e}"),
            })?;

        let deadline = Instant::now() + config.startup_timeout;
        loop {
            if thread.is_finished() {
                return Err(MqttError::Broker {
                    addr,
                    reason: "its listener stopped at start (see the log for rumqttd's error)"
                        .to_owned(),
                });
            }
            match probe(addr).await {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => {
                    return Err(MqttError::Broker {
                        addr,
                        reason: format!("not answering after {:?}: {e}", config.startup_timeout),
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        tracing::info!(%addr, "embedded MQTT broker listening");
        Ok(EmbeddedBroker {
            addr,
            thread,
            overruns,
        })
    }

    /// How many times a subscriber found its next messages already gone from the broker's
    /// in-memory log (`mqtt.embedded_buffer_mb` was too small for its backlog). Each time is
    /// a loss of messages, of unknown size.
    pub fn overruns(&self) -> u64 {
        self.overruns.load(Ordering::Relaxed)
    }

    /// A shared handle on [`EmbeddedBroker::overruns`], for a metrics loop.
    pub fn overrun_counter(&self) -> Arc<AtomicU64> {
        self.overruns.clone()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// False if rumqttd's listener has stopped (it logs why).
    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }
}

/// Counts and logs rumqttd's `cursor_jump` alerts on a thread of its own, until the broker
/// goes away.
fn watch_alerts(link: rumqttd::alerts::AlertsLink, overruns: Arc<AtomicU64>) {
    let spawned = std::thread::Builder::new()
        .name("mqtt-broker-alerts".to_owned())
        .spawn(move || {
            while let Ok(alerts) = link.router_rx.recv() {
                for alert in alerts {
                    // rumqttd does not export the kind's type; its name is public.
                    if alert.kind.name() == "cursor_jump" {
                        overruns.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            client = alert.client_id,
                            detail = alert.kind.description(),
                            "the embedded MQTT broker dropped messages this subscriber had not \
                             taken yet: its backlog outgrew mqtt.embedded_buffer_mb"
                        );
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "embedded MQTT broker: no alert thread");
    }
}

/// Checks that `listen` can be bound (rumqttd would only log the failure) and, for port 0,
/// picks a free port. The probe socket is closed again before rumqttd binds.
fn reserve_addr(listen: SocketAddr) -> Result<SocketAddr, MqttError> {
    let probe = TcpListener::bind(listen).map_err(|e| MqttError::Broker {
        addr: listen,
        reason: format!("cannot listen: {e}"),
    })?;
    let addr = probe.local_addr().map_err(|e| MqttError::Broker {
        addr: listen,
        reason: format!("cannot read the bound address: {e}"),
    })?;
    drop(probe);
    Ok(addr)
}

/// One MQTT 3.1.1 CONNECT / CONNACK / DISCONNECT exchange: proves the listener *and* the
/// router are up. A clean session, so the broker keeps nothing of it.
async fn probe(addr: SocketAddr) -> Result<(), String> {
    const CLIENT_ID: &[u8] = b"landport-startup-probe";
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut connect = vec![0x10, (12 + CLIENT_ID.len()) as u8];
        // protocol name "MQTT", level 4, flags: clean session, keep-alive 5 s
        connect.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 5]);
        connect.extend_from_slice(&[0, CLIENT_ID.len() as u8]);
        connect.extend_from_slice(CLIENT_ID);
        s.write_all(&connect)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut connack = [0u8; 4];
        s.read_exact(&mut connack)
            .await
            .map_err(|e| format!("read CONNACK: {e}"))?;
        if connack != [0x20, 0x02, 0x00, 0x00] {
            return Err(format!("unexpected CONNACK {connack:02x?}"));
        }
        let _ = s.write_all(&[0xE0, 0x00]).await;
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(1), exchange).await {
        Ok(r) => r,
        Err(_) => Err("no CONNACK within 1 s".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_as_specified() {
        let c = EmbeddedBrokerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:1883");
        assert_eq!(c.max_connections, 10_000);
        assert!(c.max_payload_bytes >= 1024 * 1024);
    }

    #[test]
    fn values_rumqttd_panics_on_are_refused_with_the_field_path() {
        let bad = |f: fn(&mut EmbeddedBrokerConfig), field: &str| {
            let mut c = EmbeddedBrokerConfig::default();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("mqtt.embedded_broker.{field}: ")),
                "{e}"
            );
        };
        bad(|c| c.segment_bytes = 1023, "segment_bytes");
        bad(|c| c.max_connections = 0, "max_connections");
        bad(|c| c.max_payload_bytes = 10, "max_payload_bytes");
        bad(|c| c.segments_in_memory = 0, "segments_in_memory");
        bad(
            |c| c.connect_timeout = Duration::from_secs(70),
            "connect_timeout",
        );
        bad(|c| c.startup_timeout = Duration::ZERO, "startup_timeout");
        bad(
            |c| c.initialized_filters.push("a/#/b".to_owned()),
            "initialized_filters[2]",
        );
    }

    #[test]
    fn an_address_in_use_is_an_error_not_a_log_line() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = reserve_addr(taken.local_addr().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot listen"), "{e}");
    }

    #[test]
    fn port_zero_becomes_a_real_port() {
        let addr = reserve_addr("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(addr.port(), 0);
    }
}
