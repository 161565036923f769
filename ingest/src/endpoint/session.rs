//! Sessions: who is connected under which client id, what a session subscribes to, and the
//! tail of the event log that feeds its subscriptions.
//!
//! - [`Registry`]: one live connection per client id; a second CONNECT with the same id
//!   takes the session over (the first connection is closed, and its state saved, before the
//!   second goes on).
//! - [`SessionStore`]: persistent sessions in the store (`mqtt_sessions`): subscriptions and
//!   the event cursor survive a disconnect and a restart.
//! - [`Tail`]: per subscribed session, reads the event log after the session's position
//!   (its own read connection to the store), keeps what its filters match, and hands it to
//!   the connection's writer through a bounded channel: a slow subscriber slows only its own
//!   tail, and a persistent session that was away reads what it missed from the store, like
//!   any other page. Dead letters (not stored) come live from a broadcast, QoS 0.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use landport_pipeline::DeadLetter;
use landport_pipeline::topics::events_topic;
use landport_store::{EventFilter, MqttSession, Store, StoreError};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::auth::Principal;

/// One message for a subscriber, from its [`Tail`] to its connection's writer.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// An event (`seq` set) or a dead letter (`seq` none, QoS 0).
    Message {
        seq: Option<i64>,
        topic: String,
        payload: Bytes,
        qos: u8,
    },
    /// Nothing for this session up to `seq`: its cursor may move there.
    Progress(i64),
}

/// The live connections, by client id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Held for a lookup and an insert or remove, never across `.await`.
    live: Mutex<HashMap<String, Live>>,
}

#[derive(Debug)]
struct Live {
    id: u64,
    /// Who it authenticated as (revoked credentials end it).
    principal: Principal,
    /// Cancelled to take the session over, or to end it when its credentials are revoked
    /// (`revoked` set first).
    kick: CancellationToken,
    revoked: Arc<AtomicBool>,
    /// Becomes true once that connection has ended and saved its session.
    done: watch::Receiver<bool>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers connection `id` under `client_id`, first ending the connection there (if
    /// any) and waiting (up to 5 s) for it to save its session.
    pub(crate) async fn take(
        &self,
        client_id: &str,
        id: u64,
        principal: Principal,
        kick: CancellationToken,
        revoked: Arc<AtomicBool>,
        done: watch::Receiver<bool>,
    ) {
        let live = Live {
            id,
            principal,
            kick,
            revoked,
            done,
        };
        let previous = self.lock().insert(client_id.to_owned(), live);
        if let Some(mut prev) = previous {
            prev.kick.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), prev.done.wait_for(|d| *d)).await;
        }
    }

    /// Ends every connection authenticated as `principal` (its credentials were revoked);
    /// returns how many.
    pub(crate) fn revoke(&self, principal: &Principal) -> usize {
        let live = self.lock();
        let mut n = 0;
        for l in live.values().filter(|l| l.principal == *principal) {
            l.revoked.store(true, Ordering::Relaxed);
            l.kick.cancel();
            n += 1;
        }
        n
    }

    /// Removes connection `id` (unless another has taken its client id since).
    pub(crate) fn release(&self, client_id: &str, id: u64) {
        let mut live = self.lock();
        if live.get(client_id).is_some_and(|l| l.id == id) {
            live.remove(client_id);
        }
    }
}

/// The store connection that keeps persistent sessions; shared by every connection, used
/// from blocking threads only.
#[derive(Debug, Clone)]
pub(crate) struct SessionStore {
    /// Held for one short statement, on a blocking thread, never across `.await`.
    store: Arc<Mutex<Store>>,
    dir: PathBuf,
}

impl SessionStore {
    pub(crate) fn new(store: Store) -> Self {
        SessionStore {
            dir: store.dir().to_owned(),
            store: Arc::new(Mutex::new(store)),
        }
    }

    /// Runs `f` with the store on a blocking thread.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || {
            let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s)
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(StoreError::Thread("MQTT session")),
        }
    }

    pub(crate) async fn load(&self, client_id: String) -> Result<Option<MqttSession>, StoreError> {
        self.with(move |s| s.mqtt_session(&client_id)).await
    }

    pub(crate) async fn save(&self, session: MqttSession) -> Result<(), StoreError> {
        self.with(move |s| s.save_mqtt_session(&session)).await
    }

    pub(crate) async fn set_cursor(
        &self,
        client_id: String,
        cursor: i64,
    ) -> Result<(), StoreError> {
        self.with(move |s| s.set_mqtt_session_cursor(&client_id, cursor))
            .await
    }

    pub(crate) async fn delete(&self, client_id: String) -> Result<(), StoreError> {
        self.with(move |s| s.delete_mqtt_session(&client_id)).await
    }

    pub(crate) async fn head(&self) -> Result<i64, StoreError> {
        self.with(|s| s.event_seq_max()).await
    }

    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

/// What a session subscribes to, shared by its connection (which changes it) and its tail
/// (which reads it).
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    /// Held for a copy or an edit, never across `.await`.
    filters: Mutex<Vec<(String, u8)>>,
    /// Signalled on each change.
    pub(crate) changed: Notify,
}

impl Subscriptions {
    pub(crate) fn with(filters: Vec<(String, u8)>) -> Arc<Self> {
        Arc::new(Subscriptions {
            filters: Mutex::new(filters),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, u8)>> {
        self.filters.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self) -> Vec<(String, u8)> {
        self.lock().clone()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Adds or replaces (same filter) one subscription.
    pub(crate) fn add(&self, filter: String, qos: u8) {
        let mut f = self.lock();
        match f.iter_mut().find(|(x, _)| *x == filter) {
            Some(slot) => slot.1 = qos,
            None => f.push((filter, qos)),
        }
        drop(f);
        self.changed.notify_one();
    }

    pub(crate) fn remove(&self, filter: &str) {
        self.lock().retain(|(x, _)| x != filter);
        self.changed.notify_one();
    }
}

/// The highest QoS among `filters` matching `topic`, if any matches.
pub(crate) fn matching_qos(filters: &[(String, u8)], topic: &str) -> Option<u8> {
    filters
        .iter()
        .filter(|(f, _)| rumqttc::matches(topic, f))
        .map(|(_, q)| *q)
        .max()
}

/// The one tenant every filter names (`landport/{tenant}/...` with a literal tenant), so the
/// tail reads only that tenant's events; `None` when they span tenants.
fn tenant_scope(filters: &[(String, u8)]) -> Option<String> {
    let mut scope: Option<&str> = None;
    for (f, _) in filters {
        let t = f.split('/').nth(1)?;
        if t == "+" || t == "#" || scope.is_some_and(|s| s != t) {
            return None;
        }
        scope = Some(t);
    }
    scope.map(str::to_owned)
}

/// Events read from the store at a time.
const PAGE: usize = 256;

/// The tail of the event log for one session.
pub(crate) struct Tail {
    pub(crate) subscriptions: Arc<Subscriptions>,
    /// Read connection to the store.
    pub(crate) store_dir: PathBuf,
    /// The event seq it has read up to.
    pub(crate) position: i64,
    /// Changes after each commit that stored events.
    pub(crate) head: watch::Receiver<u64>,
    pub(crate) dead_letters: broadcast::Receiver<Arc<DeadLetter>>,
    pub(crate) out: mpsc::Sender<Delivery>,
    /// What the client has (acknowledged) up to: saved for persistent sessions.
    pub(crate) cursor: Arc<AtomicI64>,
    /// `Some` for a persistent session: where to save `cursor`, under which client id.
    pub(crate) persist: Option<(SessionStore, String)>,
}

impl Tail {
    /// Runs until `stop` or the connection goes.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let store = match Store::open_reader(&self.store_dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "MQTT session: opening the event log failed");
                return;
            }
        };
        let mut saved = self.cursor.load(Ordering::Relaxed);
        let mut save_tick = tokio::time::interval(Duration::from_secs(1));
        save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let filters = self.subscriptions.get();
            let page = if filters.is_empty() {
                Vec::new()
            } else {
                let filter = EventFilter {
                    tenant: tenant_scope(&filters),
                    after_seq: self.position,
                    ..EventFilter::default()
                };
                match store.events_after(&filter, PAGE) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "MQTT session: reading the event log failed");
                        Vec::new()
                    }
                }
            };
            let full = page.len() == PAGE;
            let mut last_matched = true;
            for (seq, event) in page {
                let topic = events_topic(&event.tenant, &event.device);
                self.position = seq;
                last_matched = false;
                if let Some(qos) = matching_qos(&filters, &topic) {
                    let payload = Bytes::from(serde_json::to_vec(&event).unwrap_or_default());
                    let d = Delivery::Message {
                        seq: Some(seq),
                        topic,
                        payload,
                        qos,
                    };
                    tokio::select! {
                        sent = self.out.send(d) => if sent.is_err() { return },
                        () = stop.cancelled() => return,
                    }
                    last_matched = true;
                }
            }
            if !last_matched {
                let _ = self.out.try_send(Delivery::Progress(self.position));
            }
            if full {
                continue;
            }
            // Caught up: wait for a commit, a dead letter, a new subscription or a save.
            loop {
                tokio::select! {
                    changed = self.head.changed() => {
                        if changed.is_err() { return; }
                        break;
                    }
                    () = self.subscriptions.changed.notified() => break,
                    letter = self.dead_letters.recv() => match letter {
                        Ok(l) => {
                            let filters = self.subscriptions.get();
                            if let Some(qos) = matching_qos(&filters, &l.topic) {
                                let _ = qos; // dead letters go at QoS 0
                                let d = Delivery::Message {
                                    seq: None,
                                    topic: l.topic.clone(),
                                    payload: Bytes::from(l.payload.clone()),
                                    qos: 0,
                                };
                                // QoS 0: a subscriber too slow for it misses it.
                                let _ = self.out.try_send(d);
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = save_tick.tick() => {
                        self.save(&mut saved).await;
                    }
                    () = stop.cancelled() => return,
                    () = self.out.closed() => return,
                }
            }
        }
    }

    async fn save(&self, saved: &mut i64) {
        let now = self.cursor.load(Ordering::Relaxed);
        if now == *saved {
            return;
        }
        if let Some((store, client_id)) = &self.persist
            && let Err(e) = store.set_cursor(client_id.clone(), now).await
        {
            tracing::warn!(error = %e, "MQTT session: saving the cursor failed");
            return;
        }
        *saved = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(f: &[&str]) -> Vec<(String, u8)> {
        f.iter().map(|s| ((*s).to_owned(), 1)).collect()
    }

    #[test]
    fn the_tail_reads_one_tenant_when_every_filter_names_it() {
        assert_eq!(
            tenant_scope(&subs(&[
                "landport/acme/+/events",
                "landport/acme/t1/rejected"
            ])),
            Some("acme".into())
        );
        assert_eq!(tenant_scope(&subs(&["landport/+/+/events"])), None);
        assert_eq!(
            tenant_scope(&subs(&["landport/acme/#", "landport/globex/#"])),
            None
        );
        assert_eq!(tenant_scope(&subs(&["landport/#"])), None);
    }

    #[test]
    fn the_best_qos_of_the_matching_filters_wins() {
        let f = vec![
            ("landport/acme/#".to_owned(), 0),
            ("landport/acme/+/events".to_owned(), 1),
        ];
        assert_eq!(matching_qos(&f, "landport/acme/t1/events"), Some(1));
        assert_eq!(matching_qos(&f, "landport/acme/t1/rejected"), Some(0));
        assert_eq!(matching_qos(&f, "landport/globex/t1/events"), None);
    }
}
