//! Landport's own MQTT endpoint (SPEC section 12): devices connect here and publish straight
//! into the pipeline; subscribers get events and dead letters from the store's event log.
//!
//! MQTT 3.1.1 and 5, QoS 0 and 1 (3.1.1 QoS 2 is taken as PUBREC-after-durable; 5 clients
//! are told Maximum QoS 1). A QoS 1 PUBACK leaves only once the pipeline has committed the
//! reading; under load the endpoint stops reading sockets and withholds acks, and never
//! drops a message it read. See `docs/mqtt.md` for the behaviour a client sees.
//!
//! Layout:
//! - [`auth`]: who a connecting client is ([`auth::Principal`], decided by an
//!   [`auth::Authenticator`] the binary backs with the store) and what it may publish and
//!   subscribe to (the ACL, pure functions).
//! - [`codec`]: bytes <-> packets (pure): our framing (an oversize publish is skipped, never
//!   buffered), rumqttc's `mqttbytes` decoders, hand-written encoders for what we send.
//! - `acks`: the per-connection queue that keeps PUBACKs in arrival order, the
//!   [`PubAckToken`] the pipeline settles, and [`EndpointAcks`], the pipeline's
//!   [`Acknowledger`](landport_pipeline::Acknowledger).
//! - `connection`: one client: CONNECT, the reader (this connection's task) and the writer
//!   (its own task, one write for everything ready).
//! - `session`: client ids (takeover), persistent sessions in the store, and the tail of the
//!   event log that feeds a session's subscriptions.
//!
//! ```text
//! Endpoint::serve (accept) -> connection reader -> decode -> [bounded] -> pipeline -> store
//!                             connection writer <- PubAckToken (after the commit) <-'
//!                             connection writer <- session Tail <- event log (store), dead letters
//! ```

pub mod auth;
pub mod codec;

mod acks;
mod connection;
mod session;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use landport_pipeline::Decoded;
use landport_pipeline::log_limit::KeyedLogLimiter;
use landport_pipeline::metrics::Metrics;
use landport_store::Store;
use landport_tracker::Event;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use acks::{EndpointAcks, PubAckToken};

use crate::decoder::Decoder;
use auth::Authenticator;
use connection::Context;
use session::{Registry, SessionStore};

/// Settings of the endpoint (from `[mqtt]`).
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Largest packet taken, bytes (fixed header included); advertised to 5 clients as
    /// Maximum Packet Size. A larger PUBLISH from a 3.1.1 client is skipped unread,
    /// acknowledged and dead-lettered; a 5 client gets DISCONNECT 0x95.
    pub max_packet_bytes: usize,
    /// QoS 1 publishes a client may have unacknowledged (5: Receive Maximum). Reads stop
    /// while a client has this many waiting for their commit.
    pub receive_maximum: u16,
    /// Most QoS 1 events sent to a subscriber and not yet acknowledged (also capped by the
    /// client's own Receive Maximum).
    pub max_inflight_out: u16,
    /// Topic aliases a 5 client may set (Topic Alias Maximum).
    pub topic_alias_maximum: u16,
    /// How long a new connection has to send its CONNECT.
    pub connect_timeout: Duration,
    /// Connections served at once, over every listener. One more is closed as soon as it is
    /// accepted (counted as `landport_mqtt_denied_total{action="connection_limit"}`), so that
    /// no number of clients can take every file descriptor and all memory.
    pub max_connections: usize,
    /// Sessions with subscriptions at once. Each tails the event log on a store connection of
    /// its own; a session's first SUBSCRIBE over this many is refused (5: 0x97 Quota
    /// exceeded, 3.1.1: 0x80), and so is the CONNECT of a resumed session that has
    /// subscriptions (5: 0x97, 3.1.1: server unavailable); counted as
    /// `landport_mqtt_denied_total{action="subscriber_limit"}`.
    pub max_subscribers: usize,
    /// A persistent session without an expiry of its own (3.1.1) is forgotten this long after
    /// its last disconnect: the events it would resume from are gone by then
    /// (`storage.events_retention_days`).
    pub session_retention: Duration,
    /// Who may publish and subscribe where (with the OwnTracks user-to-tenant map, so that
    /// tenants may publish their users' OwnTracks topics).
    pub acl: auth::Acl,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            max_packet_bytes: 1024 * 1024,
            receive_maximum: 1024,
            max_inflight_out: 100,
            topic_alias_maximum: 16,
            connect_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_subscribers: 1_000,
            session_retention: Duration::from_secs(90 * 86_400),
            acl: auth::Acl::landport_only(),
        }
    }
}

/// The endpoint: serves MQTT clients on any number of listeners or single streams. Cheap
/// to clone.
#[derive(Clone)]
pub struct Endpoint {
    ctx: Arc<Context>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("config", &self.ctx.config)
            .finish()
    }
}

impl Endpoint {
    /// An endpoint that hands publishes, decoded by `decoder`, to the pipeline at `pipeline`
    /// (whose acknowledger is `acks`), authenticates clients with `authenticator`, keeps
    /// persistent sessions in `store` (a writing connection of its own), and feeds
    /// subscribers from the event log, woken by `events` (the pipeline's broadcast of
    /// committed events). Connections close when `stop` is cancelled: cancel it after the
    /// pipeline has acknowledged its last commit.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: EndpointConfig,
        authenticator: Arc<dyn Authenticator>,
        decoder: Decoder,
        pipeline: mpsc::Sender<Decoded<PubAckToken>>,
        acks: &EndpointAcks,
        store: Store,
        events: &broadcast::Sender<Arc<Event>>,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Self {
        let (head_tx, head) = watch::channel(0u64);
        // Every commit that stored events moves `head`; the tails re-read the log then.
        let mut committed = events.subscribe();
        let head_stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::select! {
                    r = committed.recv() => match r {
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            n += 1;
                            head_tx.send_replace(n);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = head_stop.cancelled() => return,
                }
            }
        });
        let sessions = SessionStore::new(store);
        // Expired sessions go at start and then hourly.
        let (prune_store, prune_stop, keep) =
            (sessions.clone(), stop.clone(), config.session_retention);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = prune_stop.cancelled() => return,
                }
                let now = landport_pipeline::now_ms();
                let oldest = now.saturating_sub(keep.as_millis() as i64);
                match prune_store
                    .with(move |s| s.prune_mqtt_sessions(now, oldest))
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(sessions = n, "expired MQTT sessions forgotten"),
                    Err(e) => tracing::warn!(error = %e, "pruning MQTT sessions failed"),
                }
            }
        });
        let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
        let tails = Arc::new(tokio::sync::Semaphore::new(config.max_subscribers));
        let ctx = Context {
            slots,
            tails,
            config,
            authenticator,
            decoder,
            pipeline,
            sessions,
            registry: Registry::default(),
            head,
            dead_letters: acks.dead_letters(),
            metrics,
            log_limit: Mutex::new(KeyedLogLimiter::new(Duration::from_secs(10))),
            next_id: AtomicU64::new(1),
            stop,
        };
        Endpoint { ctx: Arc::new(ctx) }
    }

    /// Accepts clients on `listener` until the endpoint stops.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = self.ctx.stop.cancelled() => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    // PUBACKs are small and latency is the point: no Nagle.
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(self.clone().serve_stream(stream, peer));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, then go on.
                    tracing::warn!(error = %e, "MQTT endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Ends the sessions of every principal announced on `revoked` (device credentials
    /// replaced or revoked through the API): their clients get DISCONNECT 0x87 (5) or a
    /// closed connection (3.1.1), and must connect again with valid credentials.
    pub fn watch_revocations(&self, mut revoked: broadcast::Receiver<auth::Principal>) {
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            loop {
                let principal = tokio::select! {
                    r = revoked.recv() => match r {
                        Ok(p) => p,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "MQTT endpoint: revocations missed");
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = ctx.stop.cancelled() => return,
                };
                let n = ctx.registry.revoke(&principal);
                if n > 0 {
                    tracing::info!(
                        ?principal,
                        sessions = n,
                        "MQTT sessions ended: credentials revoked"
                    );
                }
            }
        });
    }

    /// Serves one client over an accepted stream (plain TCP, or TLS once the handshake is
    /// done) until it disconnects or the endpoint stops.
    pub async fn serve_stream<S>(self, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(_slot) = self.ctx.slots.clone().try_acquire_owned() else {
            // Over `max_connections`: closed before a byte is read (MQTT has no way to say
            // why before CONNECT).
            self.ctx.metrics.deny("connection_limit");
            let allowed = self
                .ctx
                .log_limit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .allow("connection_limit");
            if let Some(suppressed) = allowed {
                tracing::warn!(
                    %peer,
                    max = self.ctx.config.max_connections,
                    suppressed,
                    "MQTT connection refused: mqtt.max_connections reached"
                );
            }
            return;
        };
        connection::serve(self.ctx.clone(), stream, peer).await;
    }
}
