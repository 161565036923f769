//! Publishes stored events to `landport/{tenant}/{device}/events`, tailing the events table
//! from a persisted cursor: at least once, in order, across restarts.

use std::future::Future;

use super::*;
use crate::mqtt::MqttError;

/// The name of the outbox's cursor in the store.
pub const CURSOR: &str = "mqtt_events";
const PAGE: usize = 1_000;

/// Where the outbox sends events: the broker through [`MqttClient`] in service; tests
/// record them.
pub trait EventPublisher: Send + Sync + 'static {
    /// Publishes one event (QoS 1, retained as the MQTT client does it); `Ok` means
    /// handed over (see [`MqttClient::publish`]).
    fn publish_event(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<(), MqttError>> + Send;
}

impl EventPublisher for MqttClient {
    async fn publish_event(&self, topic: &str, payload: Vec<u8>) -> Result<(), MqttError> {
        self.publish(topic, payload, true).await
    }
}

/// Saves how far the outbox got; a failure only means a re-send after a restart.
fn save(store: &mut Store, cursor: i64) {
    if let Err(e) = store.set_cursor(CURSOR, cursor) {
        tracing::error!(error = %e, "saving the outbox cursor failed");
    }
}

pub async fn run(
    mut store: Store,
    broker: impl EventPublisher,
    notify: Arc<Notify>,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let mut cursor = store.cursor(CURSOR).unwrap_or(0);
    loop {
        let filter = EventFilter {
            after_seq: cursor,
            ..EventFilter::default()
        };
        let page = match store.events_after(&filter, PAGE) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "reading the event outbox failed");
                Vec::new()
            }
        };
        if let Ok(max) = store.event_seq_max() {
            metrics.outbox_depth.set((max - cursor).max(0));
        }
        let mut published = false;
        for (seq, e) in &page {
            let payload = serde_json::to_vec(e).unwrap_or_default();
            let mut backoff = Duration::from_millis(100);
            loop {
                let topic = crate::topic::events_topic(&e.tenant, &e.device);
                match broker.publish_event(&topic, payload.clone()).await {
                    Ok(()) => break,
                    Err(err) => {
                        if stop.is_cancelled() {
                            // Keep what this page already handed over: not sent again.
                            if published {
                                save(&mut store, cursor);
                            }
                            return;
                        }
                        tracing::warn!(error = %err, "publishing an event failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
            cursor = *seq;
            published = true;
        }
        if published {
            save(&mut store, cursor);
            if page.len() == PAGE {
                continue;
            }
        }
        if stop.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
