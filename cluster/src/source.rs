//! A partition's telemetry, from the JetStream stream `LANDPORT` into a shard's pipeline.
//!
//! NATS's subject mapping puts a device's publishes on `lp.{partition}.{tenant}.{device}.{kind}`
//! (`kind`: `telemetry` or `senml`); the shard reads them back as the MQTT topic
//! `landport/{tenant}/{device}/{kind}` through the same decoders as a single node. Each message
//! is acknowledged to JetStream only after the pipeline's store commit ([`ShardAcker`]), and
//! only while this instance's lease on the partition is valid.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use landport_ingest::decoder::Decoder;
use landport_pipeline::{Acknowledger, Content, DeadLetter, Decoded};
use tokio::time::Instant;

/// The stream every partition's telemetry is in.
pub const STREAM: &str = "LANDPORT";

/// The durable consumer of partition `p`: it holds the partition's acknowledged position,
/// which outlives any one owner.
pub fn consumer_name(p: u32) -> String {
    format!("part-{p}")
}

/// The subjects of partition `p`.
pub fn partition_filter(p: u32) -> String {
    format!("lp.{p}.>")
}

/// The MQTT topic a partitioned subject stands for: `lp.3.acme.truck-1.telemetry` ->
/// `landport/acme/truck-1/telemetry`; `None` for anything else.
pub fn topic_of(subject: &str) -> Option<String> {
    let mut parts = subject.split('.');
    if parts.next() != Some("lp") {
        return None;
    }
    parts.next()?.parse::<u32>().ok()?;
    let (tenant, device, kind) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || tenant.is_empty() || device.is_empty() {
        return None;
    }
    // NATS's MQTT gateway writes a `.` of a topic level as `//` (crate::partition::subject_token).
    let (tenant, device) = (tenant.replace("//", "."), device.replace("//", "."));
    Some(format!("landport/{tenant}/{device}/{kind}"))
}

/// The NATS subject of an MQTT topic (what the NATS MQTT gateway's subscribers see):
/// `landport/acme/truck-1/rejected` -> `landport.acme.truck-1.rejected`.
pub fn subject_of(topic: &str) -> String {
    topic.replace('/', ".")
}

/// Creates the stream if it is absent: `lp.>`, file storage, kept `retention`.
pub async fn ensure_stream(
    js: &jetstream::Context,
    retention: Duration,
    replicas: usize,
) -> Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: STREAM.to_owned(),
        subjects: vec!["lp.>".to_owned()],
        max_age: retention,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .context("creating the JetStream stream LANDPORT")
}

/// The durable pull consumer of partition `p`, created if absent.
pub async fn partition_consumer(stream: &stream::Stream, p: u32) -> Result<consumer::PullConsumer> {
    stream
        .get_or_create_consumer(
            &consumer_name(p),
            consumer::pull::Config {
                durable_name: Some(consumer_name(p)),
                filter_subject: partition_filter(p),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 20_000,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("the consumer of partition {p}"))
}

/// How a shard's pipeline acknowledges what it took in.
#[derive(Debug)]
pub enum ShardAck {
    /// A live message: acknowledged to JetStream after the commit (boxed: it is large, and
    /// the other kinds are small).
    Js(Box<jetstream::Message>),
    /// A message replayed while the shard was rebuilt: its owner of the time acknowledged it.
    Replayed,
    /// Told once everything before it is committed (the end of a replay).
    Marker(tokio::sync::oneshot::Sender<()>),
}

/// Until when the lease lets the shard acknowledge; moved forward by each renewal.
#[derive(Debug, Clone)]
pub struct LeaseClock(Arc<Mutex<Instant>>);

impl LeaseClock {
    pub fn new(until: Instant) -> LeaseClock {
        LeaseClock(Arc::new(Mutex::new(until)))
    }

    pub fn extend(&self, until: Instant) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = until;
    }

    /// Ends it now (the lease was lost).
    pub fn end(&self) {
        self.extend(Instant::now());
    }

    pub fn valid(&self) -> bool {
        Instant::now() < *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The shard pipeline's [`Acknowledger`]: JetStream acks while the lease is valid, dead letters
/// to NATS (where MQTT subscribers of the gateway see them), none while replaying.
pub struct ShardAcker {
    client: async_nats::Client,
    lease: LeaseClock,
    replaying: Arc<AtomicBool>,
}

impl ShardAcker {
    pub fn new(client: async_nats::Client, lease: LeaseClock, replaying: Arc<AtomicBool>) -> Self {
        ShardAcker {
            client,
            lease,
            replaying,
        }
    }
}

impl Acknowledger for ShardAcker {
    type Ack = ShardAck;

    async fn ack(&self, ack: ShardAck) {
        match ack {
            ShardAck::Js(msg) => {
                // Past the lease another instance may own the partition and have rebuilt it
                // from the stream up to its acknowledged position: an ack now could hide a
                // message from it. Left unacknowledged, the message is delivered again.
                if self.lease.valid()
                    && let Err(e) = msg.ack().await
                {
                    tracing::warn!(error = %e, "acknowledging to JetStream");
                }
            }
            ShardAck::Replayed => {}
            ShardAck::Marker(done) => {
                let _ = done.send(());
            }
        }
    }

    fn dead_letter(&self, letter: DeadLetter) {
        if self.replaying.load(Ordering::Relaxed) {
            return;
        }
        let client = self.client.clone();
        let subject = subject_of(&letter.topic);
        tokio::spawn(async move {
            let _ = client.publish(subject, Bytes::from(letter.payload)).await;
        });
    }
}

/// A JetStream message, decoded as a shard's pipeline takes it, acknowledged by `ack`. Its
/// arrival time is the time the stream stored it, so a replay decodes it exactly as its first
/// owner did.
pub fn decode(decoder: &Decoder, msg: &jetstream::Message, ack: ShardAck) -> Decoded<ShardAck> {
    let received_ms = msg
        .info()
        .map(|i| (i.published.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or_else(|_| landport_pipeline::now_ms());
    match topic_of(msg.subject.as_str()) {
        Some(topic) => decoder.decode_parts(topic, msg.payload.clone(), received_ms, Some(ack)),
        None => Decoded {
            topic: msg.subject.to_string(),
            payload: msg.payload.clone(),
            received_ms,
            content: Content::Ignored,
            ack: Some(ack),
        },
    }
}

/// A message that only carries an acknowledgement: released after the next commit.
pub fn ack_only(ack: ShardAck) -> Decoded<ShardAck> {
    Decoded {
        topic: String::new(),
        payload: Bytes::new(),
        received_ms: landport_pipeline::now_ms(),
        content: Content::Ignored,
        ack: Some(ack),
    }
}

/// The stream sequence of a JetStream message.
pub fn sequence(msg: &jetstream::Message) -> Result<u64> {
    msg.info()
        .map(|i| i.stream_sequence)
        .map_err(|e| anyhow::anyhow!("reading a JetStream message's metadata: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partitioned_subject_reads_back_as_its_mqtt_topic() {
        assert_eq!(
            topic_of("lp.12.acme.truck-1.telemetry").as_deref(),
            Some("landport/acme/truck-1/telemetry")
        );
        assert_eq!(
            topic_of("lp.2.acme.dock//7.telemetry").as_deref(),
            Some("landport/acme/dock.7/telemetry")
        );
        assert_eq!(
            topic_of("lp.0.acme.s_9.senml").as_deref(),
            Some("landport/acme/s_9/senml")
        );
        for bad in [
            "lp.x.acme.t.telemetry",
            "lp.1.acme.telemetry",
            "lp.1.a.b.c.d",
            "other.1.a.b.telemetry",
            "lp",
        ] {
            assert_eq!(topic_of(bad), None, "{bad}");
        }
        assert_eq!(
            subject_of("landport/acme/t-1/rejected"),
            "landport.acme.t-1.rejected"
        );
    }

    #[test]
    fn a_lease_clock_is_valid_until_its_end() {
        let c = LeaseClock::new(Instant::now() + Duration::from_secs(60));
        assert!(c.valid());
        c.end();
        assert!(!c.valid());
        c.extend(Instant::now() + Duration::from_secs(1));
        assert!(c.valid());
    }
}
