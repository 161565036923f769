//! # landport-ingest
//!
//! Outside bytes -> readings: everything between the MQTT broker and the pipeline
//! (landport-pipeline), and nothing after it. Data flows one way: an MQTT publish is
//! classified by its topic ([`topic`]), its payload decoded and validated into
//! [`Reading`](landport_tracker::Reading)s or typed rejections ([`decode`]), and the result
//! goes to the pipeline as a decoded message ([`decoder`]), with the handle that acknowledges
//! it to the broker once the pipeline has made it durable.
//!
//! Layout:
//! - [`topic`]: topic -> format and device ([`topic::TopicKind`]), and the topics Landport
//!   publishes to.
//! - [`decode`]: the decoders of outside bytes (native JSON, SenML, OwnTracks) and
//!   [`decode::Rejection`], one code per reason for metrics.
//! - [`decoder`]: the decode stage (MQTT message -> [`Decoded`](landport_pipeline::Decoded)
//!   for the pipeline), and the MQTT client as the pipeline's
//!   [`Acknowledger`](landport_pipeline::Acknowledger) (PUBACKs, dead letters).
//! - [`endpoint`]: Landport's own MQTT endpoint (3.1.1 and 5): devices publish straight into
//!   the pipeline, a PUBACK leaves once the reading is durable; subscribers get events and
//!   dead letters from the store's event log.
//! - [`mqtt`]: the MQTT source for external brokers (rumqttc: subscriber with manual acks,
//!   publisher).
//!
//! `topic` and `decode` are the crate's pure front: no I/O, no tokio, no clock (the caller
//! passes `now`), so they are unit-tested, property-tested, fuzzed (`ingest/fuzz`) and benched
//! (`benches/decode.rs`) alone. The MQTT source and the decode stage are thin drivers around
//! them. What comes after (tracker, store, acknowledgement order, sinks) is the pipeline's
//! and the sinks' (landport-pipeline, landport-sinks); this crate depends on the pipeline for
//! its message types, never the other way.

pub mod decode;
pub mod decoder;
pub mod endpoint;
pub mod mqtt;
// Moved to landport-pipeline; re-exported so paths in this crate and its users stay put.
pub use landport_pipeline::{backoff, log_limit, metrics};
pub mod topic;
