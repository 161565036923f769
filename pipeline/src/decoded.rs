//! What the pipeline takes in and gives back at its edge with ingest.
//!
//! - [`Decoded`]: one message as ingest decoded it (landport-ingest's decode stage builds
//!   them): the device its topic names, the readings that passed validation, the refusals, and
//!   the handle to acknowledge it by. The pipeline never sees a payload's format.
//! - [`Intake`]: applies a [`Decoded`] to the [`Core`]: counts it, refuses a device that is not
//!   registered, turns refusals into dead letters (counted by code, logged rate-limited).
//! - [`Acknowledger`]: where the pipeline hands what a commit made durable: the batch's
//!   acknowledgements and its dead letters (the MQTT client in service; landport-ingest
//!   implements it).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use landport_tracker::{Reading, TimestampMs};
use serde_json::json;

use crate::core::{Core, DeadLetter, Output};
use crate::log_limit::KeyedLogLimiter;
use crate::metrics::Metrics;
use crate::topics::rejected_topic;

/// Bytes of a refused payload quoted in its dead letter.
const EXCERPT_BYTES: usize = 256;

/// One message, decoded and validated by ingest, for the pipeline to apply; `A` acknowledges
/// it (ingest's `AckToken` in service).
#[derive(Debug)]
pub struct Decoded<A> {
    /// The topic it came on (logged and quoted with a refusal).
    pub topic: String,
    /// Its payload as the device sent it, for the excerpt in a dead letter.
    pub payload: Bytes,
    /// Server time it arrived, epoch milliseconds: its readings' `received_ms`.
    pub received_ms: TimestampMs,
    /// What the decoders made of it.
    pub content: Content,
    /// Released once what it carried is durable (QoS 1); `None` for QoS 0.
    pub ack: Option<A>,
}

/// What a message held, as ingest decoded it.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Nothing to apply, and nothing wrong: a topic of Landport's own output, or OwnTracks'
    /// own subtopics.
    Ignored,
    /// The topic could not be read: counted and logged; there is no device to dead-letter to.
    Unreadable(Refusal),
    /// A device's message. The device is checked against the registry when it is applied,
    /// on the pipeline's task: an unregistered device's readings and refusals are dropped for
    /// one `unregistered_device` refusal.
    Device {
        tenant: String,
        device: String,
        /// The readings that passed validation, in the order they came.
        readings: Vec<Reading>,
        /// Why the whole payload, or some of its records, were refused.
        refusals: Vec<Refusal>,
    },
}

/// Why ingest refused a message or a record of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The reason's code: the `landport_rejected_total{reason}` label and the dead letter's
    /// `code`.
    pub code: &'static str,
    /// What was wrong, for people: the dead letter's `reason`.
    pub message: String,
}

/// Where the pipeline hands what a commit made durable, in commit order. Implemented by
/// ingest's MQTT client in service.
pub trait Acknowledger: Send + Sync + 'static {
    /// The handle a message is acknowledged by.
    type Ack: Send + 'static;

    /// Acknowledges one message: its readings and the events they caused are committed.
    fn ack(&self, ack: Self::Ack) -> impl Future<Output = ()> + Send;

    /// Publishes one dead letter. Never waits: dead letters do not hold acknowledgements
    /// back, so one the broker cannot take now is dropped (the refusal is already counted).
    fn dead_letter(&self, letter: DeadLetter);
}

/// Applies decoded messages to a [`Core`], counting what comes in and what is refused.
pub struct Intake {
    metrics: Arc<Metrics>,
    log_limit: KeyedLogLimiter,
}

impl Intake {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Intake {
            metrics,
            log_limit: KeyedLogLimiter::new(Duration::from_secs(10)),
        }
    }

    /// Applies one message to `core`: its rows, events and dead letters go to `out`.
    pub fn apply<A>(&mut self, core: &mut Core, msg: &Decoded<A>, out: &mut Output) {
        self.metrics.messages_in.inc();
        match &msg.content {
            Content::Ignored => {}
            Content::Unreadable(r) => self.refuse(None, msg, r.code, &r.message, out),
            Content::Device {
                tenant,
                device,
                readings,
                refusals,
            } => {
                let dev = Some((tenant.as_str(), device.as_str()));
                // Refused before anything else: an unregistered device's payload is not
                // worth a word more.
                if !core.accepts(tenant, device) {
                    let why = format!("device {device:?} is not registered to tenant {tenant:?}");
                    return self.refuse(dev, msg, "unregistered_device", &why, out);
                }
                for r in refusals {
                    self.refuse(dev, msg, r.code, &r.message, out);
                }
                // Registration was checked above, on this same task: apply cannot refuse.
                let _ = core.apply(tenant, device, readings, msg.received_ms, out);
            }
        }
    }

    /// Counts, logs (rate-limited) and dead-letters one refusal.
    fn refuse<A>(
        &mut self,
        device: Option<(&str, &str)>,
        msg: &Decoded<A>,
        code: &'static str,
        message: &str,
        out: &mut Output,
    ) {
        self.metrics.reject(code);
        let topic = msg.topic.as_str();
        if let Some(suppressed) = self.log_limit.allow(code) {
            tracing::warn!(reason = code, topic, suppressed, "rejected: {message}");
        }
        // A topic we could not read has no device to answer on: counted and logged only.
        let Some((tenant, device)) = device else {
            return;
        };
        let end = msg.payload.len().min(EXCERPT_BYTES);
        let notice = json!({
            "reason": message,
            "code": code,
            "topic": topic,
            "payload_excerpt": String::from_utf8_lossy(&msg.payload[..end]),
        });
        out.dead_letters.push(DeadLetter {
            topic: rejected_topic(tenant, device),
            payload: serde_json::to_vec(&notice).unwrap_or_default(),
        });
    }
}
