//! The load generator: simulated trucks publishing over several MQTT connections.
//!
//! Each connection is a rumqttc client plus a driver task polling its event loop (counting
//! PUBACKs). Devices are dealt round-robin to connections (device `i` to connection
//! `i % connections`); a connection publishes for its devices in turn. The clock starts once
//! every connection has its CONNACK and stops when the last connection has had every QoS 1
//! message acknowledged (QoS 0: has flushed everything and its DISCONNECT).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use super::latency::LatencySummary;
use super::pacing::{self, SLICE};
use super::payload::{MALFORMED_LAT, Truck, write_reading};
use super::{client_id, mqtt_options, unix_ms};

/// How long to wait for the last acknowledgements once everything is sent.
const ACK_TIMEOUT: Duration = Duration::from_secs(120);
/// Requests (publishes) rumqttc queues ahead of its event loop per connection.
const REQUEST_CHANNEL_CAPACITY: usize = 1_000;
/// How many publishes between looks at the clock for a duration limit within one burst
/// (full speed, or a paced sender catching up).
const CLOCK_EVERY: u64 = 256;

/// What to publish, where, how fast.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Broker host and port.
    pub host: String,
    pub port: u16,
    /// Tenant in the topic: `{topic_prefix}/{tenant}/truck-{i}/telemetry`.
    pub tenant: String,
    /// First topic level; `landport` for Landport, anything else for a baseline run that
    /// Landport does not subscribe to.
    pub topic_prefix: String,
    /// Number of trucks.
    pub devices: u64,
    /// Index of the first truck (`truck-{first_device}`).
    pub first_device: u64,
    /// QoS of every publish (0 or 1).
    pub qos: QoS,
    /// Total readings per second over all connections; `None` = as fast as the broker takes
    /// them.
    pub rate_per_s: Option<f64>,
    /// When to stop.
    pub stop: Stop,
    /// Concurrent MQTT connections (at least 1).
    pub connections: u64,
    /// One reading in this many (per connection) is deliberately malformed (lat 95), for the
    /// dead-letter latency probe; `None` = none.
    pub malformed_every: Option<u64>,
    /// Un-acknowledged QoS 1 publishes allowed per connection.
    pub inflight: u16,
    /// Seed of the trucks' starting points and wanderings.
    pub seed: u64,
    /// Prefix of the MQTT client ids.
    pub client_id_prefix: String,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            tenant: "bench".into(),
            topic_prefix: "landport".into(),
            devices: 1_000,
            first_device: 0,
            qos: QoS::AtLeastOnce,
            rate_per_s: None,
            stop: Stop::Count(10_000),
            connections: 4,
            malformed_every: None,
            inflight: 1_000,
            seed: 1,
            client_id_prefix: "landport-loadgen".into(),
        }
    }
}

/// When a load run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this many readings in total.
    Count(u64),
    /// After this long.
    Duration(Duration),
}

/// What a load run did. Rates are readings per second.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Readings published (malformed ones included).
    pub sent: u64,
    /// Of those, deliberately malformed.
    pub malformed: u64,
    pub devices: u64,
    pub connections: u64,
    pub qos: u8,
    pub target_rate_per_s: Option<f64>,
    /// From the start (all connected) to the last acknowledgement or flush.
    pub elapsed_seconds: f64,
    pub rate_per_s: f64,
    /// Epoch ms of the start and the end.
    pub start_unix_ms: i64,
    pub end_unix_ms: i64,
    /// QoS 1: from a publish leaving the client (written to the socket) to its PUBACK, over
    /// every publish of every connection. With Landport's own endpoint a PUBACK means the
    /// reading is committed to its store.
    pub puback_latency: Option<LatencySummary>,
}

/// Publishes as `config` says; returns when every reading is acknowledged (QoS 1) or flushed.
pub async fn publish(config: LoadConfig) -> Result<LoadReport> {
    if config.connections == 0 || config.devices == 0 {
        bail!("need at least one connection and one device");
    }
    if config.rate_per_s.is_some_and(|r| !(r > 0.0)) {
        bail!("the rate must be above 0");
    }
    let connections = config.connections.min(config.devices);
    // Publish -> PUBACK samples of every connection, ms.
    let latencies: std::sync::Arc<std::sync::Mutex<Vec<f64>>> = Default::default();

    // Connect everything first: the clock measures publishing, not TCP and CONNECT.
    let mut conns = Vec::new();
    for c in 0..connections {
        let id = client_id(&config.client_id_prefix, &format!("pub{c}"));
        let mut options = mqtt_options(&id, &config.host, config.port);
        options.set_inflight(config.inflight.max(1));
        let (client, eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
        let (connected_tx, connected_rx) = oneshot::channel();
        let (acked_tx, acked_rx) = watch::channel(0u64);
        let latencies = latencies.clone();
        let driver = tokio::spawn(drive_measured(
            eventloop,
            connected_tx,
            acked_tx,
            Some(latencies),
        ));
        conns.push((c, client, connected_rx, acked_rx, driver));
    }
    let mut ready = Vec::new();
    for (c, client, connected_rx, acked_rx, driver) in conns {
        if connected_rx.await.is_err() {
            let error = match driver.await {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => anyhow!("disconnected before CONNACK"),
                Err(e) => anyhow!(e),
            };
            return Err(error.context(format!("connecting to {}:{}", config.host, config.port)));
        }
        ready.push((c, client, acked_rx, driver));
    }

    let start = Instant::now();
    let start_unix_ms = unix_ms();
    let mut senders = Vec::new();
    for (c, client, acked_rx, driver) in ready {
        let trucks = (0..config.devices)
            .filter(|i| i % connections == c)
            .map(|i| {
                let n = config.first_device + i;
                let topic = format!(
                    "{}/{}/truck-{n}/telemetry",
                    config.topic_prefix, config.tenant
                );
                (
                    topic,
                    Truck::new(config.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                )
            })
            .collect();
        let plan = Plan {
            total: match config.stop {
                Stop::Count(n) => Some(pacing::share(n, connections, c)),
                Stop::Duration(_) => None,
            },
            duration: match config.stop {
                Stop::Duration(d) => Some(d),
                Stop::Count(_) => None,
            },
            rate_per_s: config.rate_per_s.map(|r| r / connections as f64),
            qos: config.qos,
            malformed_every: config.malformed_every,
        };
        senders.push(tokio::spawn(async move {
            let outcome = async {
                let counts = send(&client, trucks, &plan, start).await?;
                if plan.qos != QoS::AtMostOnce {
                    wait_for_acks(acked_rx, counts.0).await?;
                }
                client.disconnect().await?;
                anyhow::Ok(counts)
            }
            .await;
            if outcome.is_err() {
                driver.abort();
            }
            match (outcome, driver.await) {
                (Ok(counts), Ok(Ok(end))) => Ok((counts, end)),
                // A connection error is the cause of whatever the sender saw.
                (_, Ok(Err(e))) => Err(e),
                (Err(e), _) => Err(e),
                (Ok(_), Err(e)) => Err(e.into()),
            }
        }));
    }

    let (mut sent, mut malformed, mut end) = (0, 0, start);
    for s in senders {
        let ((s, m), e) = s.await??;
        sent += s;
        malformed += m;
        end = end.max(e);
    }
    let elapsed_seconds = (end - start).as_secs_f64();
    Ok(LoadReport {
        sent,
        malformed,
        devices: config.devices,
        connections,
        qos: config.qos as u8,
        target_rate_per_s: config.rate_per_s,
        elapsed_seconds,
        rate_per_s: if elapsed_seconds > 0.0 {
            sent as f64 / elapsed_seconds
        } else {
            0.0
        },
        start_unix_ms,
        end_unix_ms: start_unix_ms + (end - start).as_millis() as i64,
        puback_latency: {
            let mut samples =
                std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
            LatencySummary::of(&mut samples)
        },
    })
}

/// One connection's share of the work.
struct Plan {
    /// Readings to send; `None` = until `duration` is up.
    total: Option<u64>,
    duration: Option<Duration>,
    /// This connection's rate; `None` = full speed.
    rate_per_s: Option<f64>,
    qos: QoS,
    malformed_every: Option<u64>,
}

/// Publishes `plan` for `trucks` in turn; returns (sent, malformed).
async fn send(
    client: &AsyncClient,
    mut trucks: Vec<(String, Truck)>,
    plan: &Plan,
    start: Instant,
) -> Result<(u64, u64)> {
    let total = plan.total.unwrap_or(u64::MAX);
    let (mut sent, mut malformed) = (0u64, 0u64);
    let mut next = 0usize;
    let count = trucks.len();
    loop {
        let elapsed = start.elapsed();
        if sent >= total || plan.duration.is_some_and(|d| elapsed >= d) {
            break;
        }
        let due = plan
            .rate_per_s
            .map_or(total, |r| pacing::due(r, elapsed).min(total));
        while sent < due {
            let (topic, truck) = &mut trucks[next];
            next = (next + 1) % count;
            let mut fields = truck.next_reading(unix_ms());
            sent += 1;
            if pacing::is_malformed(sent, plan.malformed_every) {
                fields.lat = MALFORMED_LAT;
                malformed += 1;
            }
            let mut payload = Vec::with_capacity(256);
            write_reading(&mut payload, &fields);
            client
                .publish(topic.clone(), plan.qos, false, payload)
                .await
                .context("publishing (the connection is gone)")?;
            if sent.is_multiple_of(CLOCK_EVERY)
                && plan.duration.is_some_and(|d| start.elapsed() >= d)
            {
                break;
            }
        }
        if plan.rate_per_s.is_some() {
            let wake = start + pacing::next_slice(start.elapsed(), SLICE);
            tokio::time::sleep_until(wake.into()).await;
        }
    }
    Ok((sent, malformed))
}

/// Waits until `sent` PUBACKs have come back on this connection.
async fn wait_for_acks(mut acked: watch::Receiver<u64>, sent: u64) -> Result<()> {
    let waited = tokio::time::timeout(ACK_TIMEOUT, async {
        // An error means the driver ended: its own error says why.
        let _ = acked.wait_for(|&n| n >= sent).await;
    })
    .await;
    if waited.is_err() {
        bail!(
            "only {} of {sent} publishes acknowledged after {ACK_TIMEOUT:?}",
            *acked.borrow()
        );
    }
    Ok(())
}

/// Polls a connection's event loop: reports the CONNACK, counts PUBACKs, and returns the
/// instant its DISCONNECT went out. Any connection error ends the run: a reconnect in the
/// middle would make the figures meaningless. With `latencies`, each QoS 1 publish's time
/// from leaving the client (rumqttc's `Outgoing::Publish`) to its PUBACK is added to it, ms,
/// once the run is over (one lock per connection).
pub(crate) async fn drive(
    eventloop: EventLoop,
    connected: oneshot::Sender<()>,
    acked: watch::Sender<u64>,
) -> Result<Instant> {
    drive_measured(eventloop, connected, acked, None).await
}

/// [`drive`], adding each publish -> PUBACK time to `latencies`.
pub(crate) async fn drive_measured(
    mut eventloop: EventLoop,
    connected: oneshot::Sender<()>,
    acked: watch::Sender<u64>,
    latencies: Option<std::sync::Arc<std::sync::Mutex<Vec<f64>>>>,
) -> Result<Instant> {
    let mut connected = Some(connected);
    // When each packet id in flight left, by packet id.
    let mut sent_at: Vec<Option<Instant>> = vec![None; usize::from(u16::MAX) + 1];
    let mut samples = Vec::new();
    loop {
        match eventloop.poll().await.context("MQTT connection")? {
            Event::Incoming(Packet::ConnAck(_)) => {
                if let Some(tx) = connected.take() {
                    let _ = tx.send(());
                }
            }
            Event::Outgoing(Outgoing::Publish(pkid)) if pkid > 0 => {
                sent_at[usize::from(pkid)] = Some(Instant::now());
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(t) = sent_at[usize::from(ack.pkid)].take() {
                    samples.push(t.elapsed().as_secs_f64() * 1e3);
                }
                acked.send_modify(|n| *n += 1);
            }
            Event::Outgoing(Outgoing::Disconnect) => {
                if let Some(l) = latencies {
                    l.lock().unwrap_or_else(|p| p.into_inner()).extend(samples);
                }
                return Ok(Instant::now());
            }
            _ => {}
        }
    }
}
