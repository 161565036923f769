//! The MQTT topics the service publishes to: the events of a device (the event outbox,
//! landport-sinks) and the dead letters of its refused messages (the pipeline). One
//! definition; ingest's `topic` module re-exports them beside the topics it reads.

/// Where a refused message's notice goes: `landport/{tenant}/{device}/rejected`.
pub fn rejected_topic(tenant: &str, device: &str) -> String {
    format!("landport/{tenant}/{device}/rejected")
}

/// Where this device's events are published: `landport/{tenant}/{device}/events`.
pub fn events_topic(tenant: &str, device: &str) -> String {
    format!("landport/{tenant}/{device}/events")
}
