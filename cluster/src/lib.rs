//! # landport-cluster
//!
//! Scale-out on NATS (cluster mode, `[cluster]`): telemetry arrives in the JetStream stream
//! `LANDPORT`, partitioned by NATS's own subject mapping; each partition is a complete Landport
//! core (pipeline, store, read side) owned by one instance at a time through leases in
//! JetStream KV; any instance answers any HTTP request by routing it to the owner or fanning it
//! out to all partitions over NATS request/reply.

pub mod events;
pub mod front;
pub mod leases;
pub mod node;
pub mod partition;
pub mod registry;
pub mod serve;
pub mod settings;
pub mod shard;
pub mod snapshot;
pub mod source;
pub mod wire;
