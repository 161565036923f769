//! # landport-pipeline
//!
//! The service core that every reader and writer of live state goes through, below the
//! decoders (landport-ingest) and above the store:
//! - [`core`]: the tracker and the device registry, and applying decoded readings to them
//!   (rows, events, counters);
//! - [`command`]: [`Command`], every API write to live state as data, and the one function
//!   that validates, stores and applies it;
//! - [`decoded`]: what ingest hands the pipeline ([`Decoded`] messages), how they are applied
//!   to the core ([`Intake`]: counted, refusals dead-lettered), and where durable work goes
//!   ([`Acknowledger`]);
//! - [`driver`]: [`Pipeline`], the task that owns the core: takes decoded messages in
//!   batches, fires timers at the tracker's next deadline, runs commands, commits through
//!   [`writer`] and acknowledges after the commit;
//! - [`recover`](mod@recover): builds the core on start (newest snapshot that restores, the registry,
//!   a replay of what came after);
//! - [`writer`]: the store writer thread (one transaction per batch, then the acks);
//! - [`retention`]: when telemetry is pruned;
//! - [`handle`]: [`TrackerHandle`], commands that run on the pipeline's task, and server time;
//! - [`read_side`]: the immutable view of live state the pipeline publishes for readers;
//! - [`metrics`]: the one Prometheus registry the components count into;
//! - [`log_limit`]: rate-limited logging;
//! - [`backoff`]: the one retry delay (exponential, full jitter) of every reconnect and retry;
//! - [`topics`]: the MQTT topics the service publishes to.
//!
//! It depends on the tracker and the store only: ingest (which depends on this crate) hands it
//! decoded messages and implements [`Acknowledger`]; the sinks tail the store it commits to;
//! the HTTP API reads its read side and sends commands through its handle.

pub mod backoff;
pub mod command;
pub mod core;
pub mod decoded;
pub mod driver;
pub mod handle;
pub mod load;
pub mod log_limit;
pub mod metrics;
pub mod read_side;
pub mod recover;
pub mod retention;
#[cfg(test)]
mod test_support;
pub mod topics;
pub mod writer;

pub use backoff::Backoff;
pub use command::{Command, CommandError, Outcome};
pub use core::{Core, DeadLetter, Output, Refused};
pub use decoded::{Acknowledger, Content, Decoded, Intake, Refusal};
pub use driver::{Clock, Pipeline, PipelineConfig, PipelineError, SystemClock, panic_message};
pub use handle::{Job, TrackerHandle, now_ms};
pub use load::{IngestLoad, IngestStage};
pub use read_side::{LiveReader, ReadSide};
pub use recover::{merge_status, recover};
