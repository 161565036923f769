//! # landport-ingest
//!
//! Everything between the MQTT broker and the tracker. Data flows one way: an MQTT publish is
//! classified by its topic ([`topic`]), its payload decoded and validated into
//! [`Reading`](landport_tracker::Reading)s or typed rejections ([`decode`]), and the readings
//! go on to the tracker, the store and the sinks.
//!
//! Layout:
//! - [`topic`]: topic -> format and device ([`topic::TopicKind`]), and the topics Landport
//!   publishes to.
//! - [`decode`]: the decoders of outside bytes (native JSON, SenML, OwnTracks) and
//!   [`decode::Rejection`], one code per reason for metrics.
//!
//! These two are the crate's pure front: no I/O, no tokio, no clock (the caller passes `now`),
//! so they are unit-tested, property-tested, fuzzed (`ingest/fuzz`) and benched
//! (`benches/decode.rs`) alone. The MQTT source, the pipeline, the store and the sinks are
//! thin drivers around them.

pub mod decode;
pub mod mqtt;
// Moved to landport-pipeline; re-exported so paths in this crate and its users stay put.
pub use landport_pipeline::{backoff, log_limit, metrics};
pub mod pipeline;
pub mod topic;
