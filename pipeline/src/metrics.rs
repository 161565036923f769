//! The service's internal counters, rendered as Prometheus text at `/metrics`.
//!
//! Every stage counts what it did (received, accepted, rejected with a reason, events by
//! type, lag, queue depths); the HTTP layer only renders.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The label of [`Metrics::rejected`]: a rejection's reason code. Label sets are typed
/// structs of `&'static str`: counting allocates nothing (a `Vec<(String, String)>` label set
/// allocated three times per increment).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// The label of [`Metrics::events`]: an event's type (`geofence.entered`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct EventTypeLabel {
    pub r#type: &'static str,
}

/// The label of [`Metrics::mqtt_denied`]: what the MQTT endpoint refused (`connect`,
/// `publish`, `subscribe`, `connection_limit`, `subscriber_limit`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: &'static str,
}

/// All counters and gauges. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// MQTT messages taken in by the pipeline.
    pub messages_in: Counter,
    /// Readings applied as the newest of their device.
    pub readings_accepted: Counter,
    /// Readings older than their device's latest: stored, not tracked.
    pub readings_late: Counter,
    /// Readings dropped as duplicates.
    pub readings_duplicate: Counter,
    /// Rejected messages or records, by reason code.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Events emitted, by type.
    pub events: Family<EventTypeLabel, Counter>,
    /// Seconds from a message's arrival to its batch being durable (latest batch).
    pub pipeline_lag_seconds: Gauge<f64, AtomicU64>,
    /// Readings stored but not yet written to InfluxDB.
    pub sink_queue_depth: Gauge,
    /// Events stored but not yet published to MQTT.
    pub outbox_depth: Gauge,
    /// Store commits and their failures (each failure is retried).
    pub commits: Counter,
    pub commit_errors: Counter,
    /// 1 while the MQTT source is connected.
    pub mqtt_connected: Gauge,
    pub mqtt_reconnects: Counter,
    /// What Landport's MQTT endpoint refused by its ACL or credentials, by action.
    pub mqtt_denied: Family<ActionLabel, Counter>,
    /// Clients connected to Landport's MQTT endpoint now.
    pub mqtt_clients: Gauge,
    /// PUBLISH packets above `mqtt.max_packet_bytes` the endpoint refused.
    pub mqtt_oversize: Counter,
    /// InfluxDB write attempts that failed (retried).
    pub sink_errors: Counter,
    /// Lines written to InfluxDB.
    pub sink_lines: Counter,
    /// Rows given up by the InfluxDB sink's spool bound (still in the store, not in InfluxDB).
    pub sink_dropped_rows: Counter,
    /// Lines InfluxDB refused on their own, skipped.
    pub sink_refused_lines: Counter,
    /// Times the InfluxDB sink stepped over stored events it could not decode.
    pub sink_undecodable_skips: Counter,
    /// Tracker deadlines found due that no rule could advance (each a bug, skipped instead of
    /// spinning the ingest task).
    pub tracker_stalled_timers: Counter,
    /// MQTT connects the endpoint's authenticator refused, by reason (see
    /// [`Metrics::auth_denied`]).
    pub mqtt_auth_denied: Family<ReasonLabel, Counter>,
    /// Webhook deliveries (SPEC 13): see [`WebhookMetrics`].
    pub webhooks: WebhookMetrics,
    /// Cluster mode (SPEC 16): see [`ClusterMetrics`].
    pub cluster: ClusterMetrics,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("landport");
        let m = Metrics {
            messages_in: Counter::default(),
            readings_accepted: Counter::default(),
            readings_late: Counter::default(),
            readings_duplicate: Counter::default(),
            rejected: Family::default(),
            events: Family::default(),
            pipeline_lag_seconds: Gauge::default(),
            sink_queue_depth: Gauge::default(),
            outbox_depth: Gauge::default(),
            commits: Counter::default(),
            commit_errors: Counter::default(),
            mqtt_connected: Gauge::default(),
            mqtt_reconnects: Counter::default(),
            mqtt_denied: Family::default(),
            mqtt_clients: Gauge::default(),
            mqtt_oversize: Counter::default(),
            sink_errors: Counter::default(),
            sink_lines: Counter::default(),
            tracker_stalled_timers: Counter::default(),
            mqtt_auth_denied: Family::default(),
            sink_dropped_rows: Counter::default(),
            sink_refused_lines: Counter::default(),
            sink_undecodable_skips: Counter::default(),
            webhooks: WebhookMetrics::default(),
            cluster: ClusterMetrics::default(),
            registry: Registry::default(),
        };
        registry.register(
            "messages_in",
            "MQTT messages taken in",
            m.messages_in.clone(),
        );
        registry.register(
            "readings_accepted",
            "Readings applied to live state",
            m.readings_accepted.clone(),
        );
        registry.register(
            "readings_late",
            "Readings older than the device's latest (stored only)",
            m.readings_late.clone(),
        );
        registry.register(
            "readings_duplicate",
            "Duplicate readings dropped",
            m.readings_duplicate.clone(),
        );
        registry.register(
            "rejected",
            "Rejected messages or records, by reason",
            m.rejected.clone(),
        );
        registry.register("events", "Events emitted, by type", m.events.clone());
        registry.register(
            "pipeline_lag_seconds",
            "Arrival to durable, latest batch",
            m.pipeline_lag_seconds.clone(),
        );
        registry.register(
            "sink_queue_depth",
            "Readings not yet written to InfluxDB",
            m.sink_queue_depth.clone(),
        );
        registry.register(
            "outbox_depth",
            "Events not yet published to MQTT",
            m.outbox_depth.clone(),
        );
        registry.register(
            "store_commits",
            "Store transactions committed",
            m.commits.clone(),
        );
        registry.register(
            "store_commit_errors",
            "Store transactions that failed and were retried",
            m.commit_errors.clone(),
        );
        registry.register(
            "mqtt_connected",
            "1 while connected to the broker",
            m.mqtt_connected.clone(),
        );
        registry.register(
            "mqtt_reconnects",
            "Reconnections to the broker",
            m.mqtt_reconnects.clone(),
        );
        registry.register(
            "influxdb_errors",
            "Failed InfluxDB writes (retried)",
            m.sink_errors.clone(),
        );
        registry.register(
            "influxdb_lines",
            "Lines written to InfluxDB",
            m.sink_lines.clone(),
        );
        registry.register(
            "tracker_stalled_timers",
            "Tracker deadlines due that no rule could advance, skipped (a bug: report it)",
            m.tracker_stalled_timers.clone(),
        );
        registry.register(
            "influxdb_dropped_rows",
            "Rows the InfluxDB sink gave up past influxdb.spool_max_bytes (still in the store)",
            m.sink_dropped_rows.clone(),
        );
        registry.register(
            "influxdb_refused_lines",
            "Lines InfluxDB refused on their own (skipped)",
            m.sink_refused_lines.clone(),
        );
        registry.register(
            "influxdb_undecodable_skips",
            "Times the InfluxDB sink stepped over stored events it could not decode",
            m.sink_undecodable_skips.clone(),
        );
        registry.register(
            "mqtt_denied",
            "MQTT connects, publishes and subscribes the endpoint refused (credentials, ACL)",
            m.mqtt_denied.clone(),
        );
        registry.register(
            "mqtt_clients",
            "Clients connected to the MQTT endpoint",
            m.mqtt_clients.clone(),
        );
        registry.register(
            "mqtt_oversize",
            "PUBLISH packets above mqtt.max_packet_bytes refused by the MQTT endpoint",
            m.mqtt_oversize.clone(),
        );
        m.webhooks.register(&mut registry);
        m.cluster.register(&mut registry);
        registry.register(
            "mqtt_auth_denied",
            "MQTT connects refused by the authenticator, by reason (no_credentials, \
             unknown_user, bad_password, unavailable)",
            m.mqtt_auth_denied.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Counts one rejection under its reason code.
    pub fn reject(&self, code: &'static str) {
        self.rejected
            .get_or_create(&ReasonLabel { reason: code })
            .inc();
    }

    /// Counts one refusal of the MQTT endpoint (`connect`, `publish`, `subscribe`).
    pub fn deny(&self, action: &'static str) {
        self.mqtt_denied
            .get_or_create(&ActionLabel { action })
            .inc();
    }

    /// Counts one event under its type.
    pub fn event(&self, kind: &'static str) {
        self.events
            .get_or_create(&EventTypeLabel { r#type: kind })
            .inc();
    }

    /// How many rejections were counted under `code`.
    pub fn rejected_count(&self, code: &'static str) -> u64 {
        self.rejected
            .get_or_create(&ReasonLabel { reason: code })
            .get()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::new();
        m.messages_in.inc();
        m.reject("invalid_json");
        m.reject("invalid_json");
        m.event("geofence.entered");
        let text = m.render();
        assert!(text.contains("landport_messages_in_total 1"), "{text}");
        assert!(
            text.contains("landport_rejected_total{reason=\"invalid_json\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("landport_events_total{type=\"geofence.entered\"} 1"),
            "{text}"
        );
    }
}

// ----- webhooks (SPEC 13) -----------------------------------------------------------------

/// The labels of a webhook's gauges: the webhook id and its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct WebhookLabel {
    pub webhook: String,
    pub tenant: String,
}

/// The label of [`WebhookMetrics::deliveries`]: `delivered`, `failed` (given up, or 410) or
/// `retried` (an attempt failed and another is scheduled).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// What the webhook delivery engine (landport-sinks) reports.
#[derive(Debug)]
pub struct WebhookMetrics {
    /// Deliveries waiting, per webhook (refreshed from the store every few seconds).
    pub pending: Family<WebhookLabel, Gauge>,
    /// Age of each webhook's oldest waiting delivery, seconds.
    pub oldest_pending_seconds: Family<WebhookLabel, Gauge<f64, AtomicU64>>,
    /// Attempts by outcome.
    pub deliveries: Family<OutcomeLabel, Counter>,
    /// Seconds from a delivery being queued (the event's fan-out, a replay or a retry) to its
    /// successful attempt.
    pub latency_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        WebhookMetrics {
            pending: Family::default(),
            oldest_pending_seconds: Family::default(),
            deliveries: Family::default(),
            latency_seconds: prometheus_client::metrics::histogram::Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                1800.0, 3600.0,
            ]),
        }
    }
}

impl WebhookMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "webhook_pending",
            "Webhook deliveries waiting, per webhook",
            self.pending.clone(),
        );
        registry.register(
            "webhook_oldest_pending_seconds",
            "Age of the oldest waiting delivery, per webhook",
            self.oldest_pending_seconds.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, failed, retried)",
            self.deliveries.clone(),
        );
        registry.register(
            "webhook_delivery_latency_seconds",
            "Queued to delivered, per successful delivery",
            self.latency_seconds.clone(),
        );
    }

    /// Counts one attempt's outcome.
    pub fn outcome(&self, outcome: &'static str) {
        self.deliveries
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}

// ----- cluster mode (SPEC 16) -------------------------------------------------------------

/// What an instance in cluster mode (landport-cluster) reports.
#[derive(Debug)]
pub struct ClusterMetrics {
    /// Partitions whose shard runs on this instance (live, not being rebuilt).
    pub partitions_live: Gauge,
    /// Seconds from taking a partition's lease to its shard being live (registry applied,
    /// stream replayed).
    pub takeover_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Stream messages replayed while rebuilding partitions.
    pub replayed: Counter,
    /// Partition leases lost (not renewed in time): their shards stopped at once.
    pub leases_lost: Counter,
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        ClusterMetrics {
            partitions_live: Gauge::default(),
            takeover_seconds: prometheus_client::metrics::histogram::Histogram::new([
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
            ]),
            replayed: Counter::default(),
            leases_lost: Counter::default(),
        }
    }
}

impl ClusterMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "cluster_partitions_live",
            "Partitions whose shard runs on this instance",
            self.partitions_live.clone(),
        );
        registry.register(
            "cluster_takeover_seconds",
            "Lease taken to shard live: registry applied and the partition's stream replayed",
            self.takeover_seconds.clone(),
        );
        registry.register(
            "cluster_replayed_messages",
            "Stream messages replayed while rebuilding partitions",
            self.replayed.clone(),
        );
        registry.register(
            "cluster_leases_lost",
            "Partition leases not renewed in time (their shards stopped at once)",
            self.leases_lost.clone(),
        );
    }
}

// ----- MQTT endpoint authentication (SPEC 12) ---------------------------------------------

impl Metrics {
    /// Counts one CONNECT the authenticator refused: `no_credentials` (anonymous access is
    /// off), `unknown_user` (a username that is neither `{tenant}` nor `{tenant}/{device}`,
    /// or a password without one), `bad_password` (wrong, revoked, or another tenant's key),
    /// `unavailable` (the store could not be read).
    pub fn auth_denied(&self, reason: &'static str) {
        self.mqtt_auth_denied
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}
