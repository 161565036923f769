//! landport-simulators: traffic for Landport from the outside, over MQTT.
//!
//! - [`loadgen`]: the end-to-end bench's load generator (simulated trucks publishing native
//!   readings at full speed or a fixed rate), the bare-subscriber baseline it is compared
//!   with, and a `/metrics` watcher. Driven by the `landport-loadgen` binary, which
//!   `scripts/bench` runs.
//! - [`fleet`]: a seeded, reproducible fleet of trucks, reefers, warehouse sensors (SenML) and
//!   drivers' phones (OwnTracks) on real routes in Liaoning, with fault injection (jitter,
//!   dropouts, reordering, duplicates, malformed payloads, store-and-forward batches). A
//!   pure core (`Simulation::tick`) and an MQTT driver (`fleet::run`), behind
//!   `landport simulate` and `landport demo`.
//!
//! Everything here talks to a broker with `rumqttc` directly and never uses Landport's MQTT,
//! ingest or pipeline code: a simulator must behave like any other device or client would. The
//! one thing taken from Landport is how `--broker` is read (`landport_config::BrokerUrl`), so
//! that a URL means the same to the simulators as to `mqtt.url`.

pub mod fleet;
pub mod loadgen;
