//! # landport-pipeline
//!
//! The service core that every reader and writer of live state goes through, below the
//! decoders (landport-ingest) and above the store:
//! - [`core`]: the tracker and the device registry, and applying decoded readings to them
//!   (rows, events, counters);
//! - [`command`]: [`Command`], every API write to live state as data, and the one function
//!   that validates, stores and applies it;
//! - [`handle`]: [`TrackerHandle`], commands that run on the pipeline's task, and server time;
//! - [`read_side`]: the immutable view of live state the pipeline publishes for readers;
//! - [`metrics`]: the one Prometheus registry the components count into;
//! - [`log_limit`]: rate-limited logging;
//! - [`backoff`]: the one retry delay (exponential, full jitter) of every reconnect and retry;
//! - [`topics`]: the MQTT topics the service publishes to.
//!
//! The HTTP API depends on this crate and the store, not on ingest. (The pipeline's driver,
//! which wires the MQTT source, the store writer and the outbox around a `Core`, still lives
//! in `landport-ingest::pipeline`; see docs/architecture.md.)

pub mod backoff;
pub mod command;
pub mod core;
pub mod handle;
pub mod log_limit;
pub mod metrics;
pub mod read_side;
pub mod topics;

pub use backoff::Backoff;
pub use command::{Command, CommandError, Outcome};
pub use core::{Core, DeadLetter, Output, Refused};
pub use handle::{Job, TrackerHandle, now_ms};
pub use read_side::{LiveReader, ReadSide};
