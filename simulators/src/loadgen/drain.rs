//! The baseline: a bare subscriber that only counts (and, if asked, reads `ts` back for
//! latency). rumqttc acknowledges each QoS 1 message as soon as it is read, so this is as
//! fast as a broker can deliver to one rumqttc connection. With `ack_delay` it acknowledges
//! each message that long after it arrived instead (in order): the broker then sees a
//! subscriber that acks after a commit, as Landport does, but does no work.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, Publish, QoS, SubscribeReasonCode};
use serde::Serialize;

use super::latency::{LatencySummary, extract_ts_ms};
use super::{client_id, mqtt_options, unix_ms, unix_ms_f64};

/// How long to wait for the CONNACK and SUBACK.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to subscribe to and when to stop.
#[derive(Debug, Clone)]
pub struct DrainConfig {
    /// Broker host and port.
    pub host: String,
    pub port: u16,
    /// Topic filter, e.g. `landport/+/+/telemetry`.
    pub filter: String,
    /// Subscription QoS (0 or 1).
    pub qos: QoS,
    /// Stop once this many messages have arrived; `None` = only on a timeout.
    pub expect: Option<u64>,
    /// Give up if the first message has not come after this long.
    pub first_timeout: Duration,
    /// Stop when no message has come for this long after the last one.
    pub idle_timeout: Duration,
    /// Read each message's epoch-ms `ts` and report latency percentiles (receive time - ts).
    pub latency: bool,
    /// Prefix of the MQTT client id.
    pub client_id_prefix: String,
    /// Acknowledge each QoS 1 message this long after it arrived instead of at once (in
    /// arrival order): a subscriber that acks only once a message is durable, as Landport
    /// does, without Landport's own work. For telling a broker's handling of late acks from
    /// the subscriber's speed.
    pub ack_delay: Option<Duration>,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            filter: "landport/+/+/telemetry".into(),
            qos: QoS::AtLeastOnce,
            expect: None,
            first_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(5),
            latency: false,
            client_id_prefix: "landport-loadgen".into(),
            ack_delay: None,
        }
    }
}

/// What a drain saw. Rates are messages per second.
#[derive(Debug, Clone, Serialize)]
pub struct DrainReport {
    pub received: u64,
    /// Epoch ms of the first and last message (0 when none came).
    pub first_unix_ms: i64,
    pub last_unix_ms: i64,
    /// From the first message to the last.
    pub elapsed_seconds: f64,
    /// `received / elapsed_seconds` (0 with fewer than two messages).
    pub rate_per_s: f64,
    /// `expect` was set and not reached before a timeout.
    pub incomplete: bool,
    /// Receive time minus `ts`, when `latency` was asked for and some message had a `ts`.
    pub latency: Option<LatencySummary>,
    /// Messages without an epoch-ms `ts` (when `latency` was asked for).
    pub without_ts: u64,
    /// Each latency sample as (`ts`, epoch ms; latency, ms), in arrival order: for looking at
    /// when the slow ones happened. Not in the JSON report.
    #[serde(skip)]
    pub samples: Vec<(i64, f64)>,
}

/// A subscribed drain, ready to [`run`](Drain::run). Split from running so a caller can tell
/// the publisher to start only once the subscription is in place.
pub struct Drain {
    config: DrainConfig,
    /// Kept so the event loop's request channel stays open (it ends the loop when dropped);
    /// with `ack_delay`, the late acks go through it.
    client: AsyncClient,
    eventloop: EventLoop,
}

impl Drain {
    /// Connects and subscribes; returns once the broker has granted the subscription.
    pub async fn connect(config: DrainConfig) -> Result<Drain> {
        let id = client_id(&config.client_id_prefix, "drain");
        let mut options = mqtt_options(&id, &config.host, config.port);
        options.set_manual_acks(config.ack_delay.is_some());
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        client.subscribe(config.filter.clone(), config.qos).await?;
        let subscribed = async {
            loop {
                match eventloop.poll().await.context("MQTT connection")? {
                    Event::Incoming(Packet::SubAck(ack)) => {
                        if ack
                            .return_codes
                            .iter()
                            .any(|c| matches!(c, SubscribeReasonCode::Failure))
                        {
                            bail!("the broker refused the subscription to {}", config.filter);
                        }
                        return Ok(());
                    }
                    _ => continue,
                }
            }
        };
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribed)
            .await
            .with_context(|| {
                format!(
                    "subscribing to {} on {}:{}",
                    config.filter, config.host, config.port
                )
            })??;
        Ok(Drain {
            config,
            client,
            eventloop,
        })
    }

    /// Counts messages until `expect` is reached or a timeout passes.
    pub async fn run(mut self) -> Result<DrainReport> {
        let c = &self.config;
        let started = Instant::now();
        let mut received = 0u64;
        let mut without_ts = 0u64;
        let mut samples = Vec::new();
        let (mut first, mut last) = (None::<(Instant, i64)>, None::<(Instant, i64)>);
        let done = |n: u64| c.expect.is_some_and(|e| n >= e);
        // With `ack_delay`: (due, message) to a task that acks each when due, in order.
        let late_acks = c.ack_delay.map(|delay| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Publish)>();
            let client = self.client.clone();
            tokio::spawn(async move {
                while let Some((due, p)) = rx.recv().await {
                    tokio::time::sleep_until(due.into()).await;
                    if client.ack(&p).await.is_err() {
                        return;
                    }
                }
            });
            (delay, tx)
        });
        while !done(received) {
            let deadline = match last {
                None => started + c.first_timeout,
                Some((at, _)) => at + c.idle_timeout,
            };
            let event = match tokio::time::timeout_at(deadline.into(), self.eventloop.poll()).await
            {
                Err(_) => break,
                Ok(event) => event.context("MQTT connection")?,
            };
            if let Event::Incoming(Packet::Publish(p)) = event {
                let now = (Instant::now(), unix_ms());
                if let Some((delay, tx)) = &late_acks
                    && p.qos != QoS::AtMostOnce
                {
                    let mut ack = Publish::new("", p.qos, Vec::<u8>::new());
                    ack.pkid = p.pkid;
                    let _ = tx.send((now.0 + *delay, ack));
                }
                received += 1;
                first.get_or_insert(now);
                last = Some(now);
                if c.latency {
                    match extract_ts_ms(&p.payload) {
                        Some(ts) => samples.push((ts, unix_ms_f64() - ts as f64)),
                        None => without_ts += 1,
                    }
                }
            }
        }
        let (elapsed_seconds, first_unix_ms, last_unix_ms) = match (first, last) {
            (Some((f, fu)), Some((l, lu))) => ((l - f).as_secs_f64(), fu, lu),
            _ => (0.0, 0, 0),
        };
        Ok(DrainReport {
            received,
            first_unix_ms,
            last_unix_ms,
            elapsed_seconds,
            rate_per_s: if received > 1 && elapsed_seconds > 0.0 {
                received as f64 / elapsed_seconds
            } else {
                0.0
            },
            incomplete: c.expect.is_some() && !done(received),
            latency: LatencySummary::of(&mut samples.iter().map(|s| s.1).collect::<Vec<_>>()),
            without_ts,
            samples,
        })
    }
}

/// Connects, subscribes and counts: [`Drain::connect`] then [`Drain::run`].
pub async fn drain(config: DrainConfig) -> Result<DrainReport> {
    Drain::connect(config).await?.run().await
}
