//! The MQTT source: a driver ([`MqttSource::run`]) that owns rumqttc's event loops, and a cheap
//! handle ([`MqttClient`]) the pipeline uses to acknowledge and to publish.
//!
//! Two connections to the same broker:
//! - **subscriber** (`client_id`): persistent session, manual acks, QoS 1 subscriptions (made
//!   again on every CONNACK whose `session_present` is false, and on the first one of this
//!   process whatever it says: a previous run may have died between CONNECT and SUBACK, and
//!   the broker can't tell us). Each PUBLISH becomes an
//!   [`Inbound`] on a bounded channel; `send().await` on a full channel parks the event loop,
//!   which stops reading the socket: the broker keeps the rest (backpressure).
//! - **publisher** (`{client_id}-pub`): events and dead letters. Kept apart because rumqttc
//!   serves a connection's outgoing requests only from inside `poll()`: with one connection,
//!   a parked subscriber would block the pipeline's publishes, the pipeline would stop
//!   draining the inbound channel, and nothing would ever unpark (a deadlock); and a full
//!   outgoing QoS 1 window would hold back our PUBACKs.
//!
//! Acknowledgements. An [`AckToken`] carries the packet id, the *generation* of the
//! connection the message came on, and its place among that connection's messages. Settled
//! tokens (acked, or dropped without an ack) reach the driver through an unbounded channel, so
//! [`MqttClient::ack`] never waits on a parked event loop; its length is bounded by the
//! broker's in-flight window, since a token exists only for a message the broker waits on.
//! The driver then
//! - sends PUBACKs in the order the messages arrived, whatever order the pipeline acks in
//!   (`ack_order`: MQTT 3.1.1 §4.6 requires it, and rumqttd loses messages without it);
//! - drops acks of an older connection: the broker resends those messages on a resumed session
//!   (with new tokens), and on a lost session an old packet id may name another message;
//! - reconnects when a dropped token would hold later acks back forever, so that the broker
//!   sends the dropped message (and those after it) again.
//!
//! The generation check and rumqttc's request queue are kept consistent under one mutex
//! (see `AckGate`).
//!
//! Our own publishes. [`MqttClient::publish`] returns once rumqttc has the publish queued,
//! which says nothing about the broker. [`MqttClient::publish_confirmed`] also returns a
//! [`Confirmation`] that resolves when the broker's PUBACK for that publish arrives: the
//! publisher's driver pairs rumqttc's `Outgoing::Publish(pkid)` events with the publishes
//! queued, in queue order, and each `PubAck(pkid)` with its publish (`publish_acks`). On a
//! connection loss the driver drops every publish still queued or in flight from rumqttc
//! (which would otherwise re-send some and, on a new session, silently drop others) and
//! tells their confirmations `NotAcknowledged`: whoever waits publishes again (see
//! `PublishBook`).

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU16;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rumqttc::{
    AsyncClient, ClientError, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet,
    Publish, QoS, Request, Subscribe, SubscribeFilter, SubscribeReasonCode,
};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::MqttError;
use super::ack_order::{AckOrder, Action, Outcome, Settled};
use super::publish_acks::PublishAcks;
use super::stats::MqttStats;
use crate::backoff::Backoff;
use crate::log_limit::LogLimiter;

/// The topics Landport reads (SPEC §4).
pub const DEFAULT_SUBSCRIPTIONS: [&str; 3] = [
    "landport/+/+/telemetry",
    "landport/+/+/senml",
    "owntracks/+/+",
];

/// Settings of one source: [`MqttSourceConfig::new`] with what the config file says (broker,
/// client id, keep-alive: `landport-config` owns their defaults) and the source's own
/// tunables at their defaults.
#[derive(Debug, Clone)]
pub struct MqttSourceConfig {
    /// Broker host name or IP (IPv6 without brackets). The caller parses the broker URL
    /// (`landport_config::BrokerUrl`, the one parser) and passes host and port in.
    pub host: String,
    /// Broker TCP port.
    pub port: u16,
    /// Client id of the subscribing connection; the broker keeps our session under it. The
    /// publisher connection uses `{client_id}-pub`. No `+ # / $` (rumqttd refuses them).
    pub client_id: String,
    /// Broker login, if it wants one.
    pub username: Option<String>,
    /// Needs `username` (MQTT 3.1.1 has no password without a user name).
    pub password: Option<String>,
    /// MQTT keep-alive, whole seconds: what the CONNECT packet carries, so every value is one
    /// rumqttc takes. The range Landport allows is one rule, `landport-config`'s
    /// `MqttConfig::KEEP_ALIVE_SECONDS` (5..=65535, `mqtt.keep_alive_seconds`); the source has
    /// none of its own. A subscriber parked by backpressure for more than 1.5x this is dropped
    /// by the broker; it then reconnects and gets the un-acked messages again.
    pub keep_alive_seconds: NonZeroU16,
    /// Topic filters, each subscribed with QoS 1.
    pub subscriptions: Vec<String>,
    /// Capacity of the inbound channel (messages). Small is fine: the broker holds the rest.
    pub channel_capacity: usize,
    /// Most un-acked QoS 1 publishes *we* send (events, dead letters) at a time.
    pub max_inflight: u16,
    /// Largest packet either connection reads or writes, in bytes. rumqttc drops the
    /// connection on a larger one, and the broker redelivers it (QoS 1) after the reconnect: a
    /// loop. So the broker must refuse anything larger first (embedded: its own limit is
    /// below this; mosquitto: `max_packet_size` / `message_size_limit`).
    pub max_packet_bytes: usize,
    /// First reconnect delay ceiling; it doubles per failure ...
    pub reconnect_initial: Duration,
    /// ... up to this. Each delay is drawn uniformly below the ceiling (full jitter).
    pub reconnect_max: Duration,
    /// On shutdown, how long to keep the connections up for the last acks and publishes.
    pub shutdown_grace: Duration,
    /// Connect over TLS with this rustls client configuration (an `mqtts://` URL; its roots
    /// are the public CAs or `mqtt.ca_file`); `None`: plain TCP.
    pub tls: Option<std::sync::Arc<rumqttc::tokio_rustls::rustls::ClientConfig>>,
}

impl MqttSourceConfig {
    /// A source of `client_id` on the broker at `host:port`, no login, with this keep-alive.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        client_id: impl Into<String>,
        keep_alive_seconds: NonZeroU16,
    ) -> Self {
        MqttSourceConfig {
            host: host.into(),
            port,
            client_id: client_id.into(),
            username: None,
            password: None,
            keep_alive_seconds,
            subscriptions: DEFAULT_SUBSCRIPTIONS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            channel_capacity: 1024,
            max_inflight: 100,
            // 1 MiB of payload (the embedded broker's limit) + the longest topic + headers.
            max_packet_bytes: 1024 * 1024 + 65_535 + 64,
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            tls: None,
        }
    }
}

impl MqttSourceConfig {
    /// Checks every value rumqttc or tokio would panic on; errors name the field (`mqtt.*`).
    pub fn validate(&self) -> Result<(), MqttError> {
        let err = |f: &str, r: &str| Err(MqttError::config(format!("mqtt.{f}"), r));
        if self.host.trim().is_empty() {
            return err("host", "must not be empty");
        }
        if self.port == 0 {
            return err("port", "must be 1..=65535");
        }
        if self.client_id.is_empty() || self.client_id.len() > 64 {
            return err("client_id", "must be 1..=64 bytes");
        }
        if self
            .client_id
            .chars()
            .any(|c| matches!(c, '+' | '#' | '/' | '$') || c.is_control() || c.is_whitespace())
        {
            return err(
                "client_id",
                "must not hold + # / $, spaces or control characters",
            );
        }
        if self.password.is_some() && self.username.is_none() {
            return err("password", "needs a username (MQTT 3.1.1)");
        }
        if self.subscriptions.is_empty() {
            return err("subscriptions", "must not be empty");
        }
        for (i, f) in self.subscriptions.iter().enumerate() {
            if !rumqttc::valid_filter(f) {
                return Err(MqttError::config(
                    format!("mqtt.subscriptions[{i}]"),
                    format!("{f:?} is not a valid MQTT topic filter"),
                ));
            }
        }
        if self.channel_capacity == 0 {
            return err("channel_capacity", "must be at least 1");
        }
        if self.max_inflight == 0 {
            return err("max_inflight", "must be at least 1");
        }
        if !(1024..=268_435_455).contains(&self.max_packet_bytes) {
            return err(
                "max_packet_bytes",
                "must be 1 KiB..=256 MiB (the MQTT maximum)",
            );
        }
        if self.reconnect_initial.is_zero() || self.reconnect_max < self.reconnect_initial {
            return err(
                "reconnect_max",
                "needs 0 < reconnect_initial <= reconnect_max",
            );
        }
        Ok(())
    }

    fn options(&self, client_id: String, manual_acks: bool) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, self.host.clone(), self.port);
        o.set_keep_alive(Duration::from_secs(self.keep_alive_seconds.get().into()))
            .set_clean_session(false)
            .set_manual_acks(manual_acks)
            .set_inflight(self.max_inflight)
            .set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes);
        if let Some(user) = &self.username {
            o.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        }
        if let Some(tls) = &self.tls {
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        o
    }
}

/// One message from the broker.
#[derive(Debug)]
pub struct Inbound {
    /// The topic it was published to.
    pub topic: String,
    /// Its payload, as the device sent it.
    pub payload: Bytes,
    /// 0 or 1 (2 only if a broker ignores our QoS 1 subscription).
    pub qos: u8,
    /// `Some` for QoS 1 and 2: give it to [`MqttClient::ack`] once the message is durable.
    /// Dropping it instead is safe but costly: the broker gets the message (and every one
    /// after it on this connection) again after a forced reconnect; see [`AckToken`].
    pub ack: Option<AckToken>,
    /// Server time it arrived, epoch milliseconds.
    pub received_ms: i64,
}

/// Acknowledges one QoS 1 message, once (not `Clone`). Give it to [`MqttClient::ack`] when
/// the message is durable. Acks go to the broker in the order the messages arrived, so an
/// ack waits for every earlier message's. Dropping a token un-acked means "not done": once a
/// later ack would have to wait for it, the source reconnects and the broker sends the
/// message again. Tokens dropped at shutdown cost nothing.
#[derive(Debug)]
pub struct AckToken {
    pkid: u16,
    qos: QoS,
    /// The subscriber connection it came on; acks of an older one are dropped.
    generation: u64,
    /// Its place among that connection's QoS 1/2 messages.
    seq: u64,
    /// Where the ack, or on drop the abandonment, goes. `None` once settled.
    settle: Option<mpsc::UnboundedSender<Settled>>,
}

impl AckToken {
    fn settle(&mut self, acked: bool) {
        if let Some(tx) = self.settle.take() {
            // Err only if the driver has stopped: then there is no connection to ack on.
            let _ = tx.send(Settled {
                generation: self.generation,
                seq: self.seq,
                pkid: self.pkid,
                qos: self.qos,
                acked,
            });
        }
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        self.settle(false);
    }
}

/// The generation of the subscriber connection, and the rule that guards it: a PUBACK enters
/// rumqttc's request queue only while holding `generation` and only if its token is of the
/// current generation; the driver bumps the generation and purges queued PUBACKs
/// (`EventLoop::clean`) while holding it too. So no PUBACK of an older connection is ever
/// written to a newer one.
#[derive(Debug, Default)]
struct AckGate {
    /// Held only for a check and a non-blocking `try_ack` / `clean`, never across `.await`.
    generation: Mutex<u64>,
    /// Signalled after each event-loop step, so a forwarder facing a full request queue
    /// knows when to try again.
    progressed: Notify,
}

impl AckGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        // A panic while holding it can't leave the number half-written.
        self.generation.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a publish's PUBACK is told to; `None` for publishes nobody waits on.
type AckWaiter = Option<oneshot::Sender<()>>;

/// Our publishes on the publisher connection, from rumqttc's request queue to their PUBACK:
/// shared by the handles, which queue them, and the publisher's driver, which sees them
/// written and acknowledged (see `publish_acks`).
#[derive(Debug, Default)]
struct PublishBook {
    /// Held only for the book-keeping together with a non-blocking `try_publish` (handles) or
    /// `EventLoop::clean` (driver), never across `.await`: the entries must be in the request
    /// queue's order, and a connection loss must find the queue and the entries alike.
    state: Mutex<BookState>,
    /// Notified (every waiter) after each step of the publisher's event loop and when it
    /// stops, so a handle facing a full request queue knows when to try again.
    progressed: Notify,
}

#[derive(Debug, Default)]
struct BookState {
    acks: PublishAcks<AckWaiter>,
    /// The publisher's loop has ended: nothing more can be published.
    closed: bool,
}

impl PublishBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, BookState> {
        // Every change under it is a single push or pop: a panic can't leave it half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a publish did not enter rumqttc's queue.
enum Refused {
    /// The queue is full; the payload and waiter, to try again.
    Full(Vec<u8>, AckWaiter),
    Closed,
}

/// Resolves once the broker has acknowledged one QoS 1 publish (its PUBACK arrived): `Ok`,
/// or `Err(MqttError::NotAcknowledged)` once it never will (the connection was lost or the
/// source stopped first): publish it again. From [`MqttClient::publish_confirmed`].
#[derive(Debug)]
#[must_use = "a confirmation says when the broker has the publish"]
pub struct Confirmation(Option<oneshot::Receiver<()>>);

impl Confirmation {
    /// One that is confirmed already: for publishers whose hand-over is the confirmation
    /// (test doubles).
    pub fn confirmed() -> Self {
        Confirmation(None)
    }

    /// One that resolves when `rx` gets its value, and fails (not acknowledged) when its
    /// sender is dropped: for publishers of one's own (test doubles).
    pub fn from_receiver(rx: oneshot::Receiver<()>) -> Self {
        Confirmation(Some(rx))
    }

    /// The outcome if it is known, without waiting.
    pub fn try_result(&mut self) -> Option<Result<(), MqttError>> {
        let Some(rx) = self.0.as_mut() else {
            return Some(Ok(()));
        };
        match rx.try_recv() {
            Ok(()) => {
                self.0 = None;
                Some(Ok(()))
            }
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(MqttError::NotAcknowledged)),
        }
    }
}

impl Future for Confirmation {
    type Output = Result<(), MqttError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(rx) = self.0.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(Ok(())) => {
                self.0 = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(_)) => Poll::Ready(Err(MqttError::NotAcknowledged)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Cheap handle to the source: acknowledge what the pipeline made durable, publish events and
/// dead letters. Clone freely; on shutdown the driver waits (up to `shutdown_grace`) for
/// every clone to be dropped, then sends what is queued and disconnects.
#[derive(Clone, Debug)]
pub struct MqttClient {
    publisher: AsyncClient,
    /// Our publishes until their PUBACK, shared with the publisher's driver.
    book: Arc<PublishBook>,
    stats: Arc<MqttStats>,
    /// Cancels the driver's `clients_gone` when the last clone is dropped.
    _alive: Arc<DropGuard>,
}

impl MqttClient {
    /// Acknowledges a QoS 1 message to the broker. Call it only once the message's readings
    /// are durable: after that the broker forgets it. Never waits for the network. The PUBACK
    /// goes out once every earlier message of the same connection is acked; if that
    /// connection is gone, the ack is dropped (the broker resends the message).
    pub async fn ack(&self, mut token: AckToken) {
        token.settle(true);
    }

    /// Publishes on the publisher connection, QoS 1 (`qos1`) or 0. `Ok` means handed to the
    /// client, no more: it is written as soon as the connection is up, but a connection lost
    /// before the broker's PUBACK drops it (see the module docs). For at-least-once use
    /// [`MqttClient::publish_confirmed`]. It waits while the client's queue is full (broker
    /// down or slow). Errors: an invalid topic, or the driver has stopped.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos1: bool,
    ) -> Result<(), MqttError> {
        self.enqueue(topic, payload, qos(qos1), None).await
    }

    /// Publishes QoS 1 like [`MqttClient::publish`] and returns, once it is queued, a
    /// [`Confirmation`] that resolves when the broker's PUBACK for it arrives, or fails when
    /// it never will (publish it again then: duplicates are possible, losses are not). Many
    /// may be outstanding at once; they resolve in any order.
    pub async fn publish_confirmed(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<Confirmation, MqttError> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(topic, payload, QoS::AtLeastOnce, Some(tx))
            .await?;
        Ok(Confirmation(Some(rx)))
    }

    /// [`MqttClient::publish`] without waiting: `Err(QueueFull)` when the publisher's queue is
    /// full (broker down or slow). For best-effort messages such as dead letters, which must
    /// never hold back the acks queued behind them.
    pub fn try_publish(&self, topic: &str, payload: Vec<u8>, qos1: bool) -> Result<(), MqttError> {
        check_topic(topic)?;
        match self.try_enqueue(topic, payload, qos(qos1), None) {
            Ok(()) => Ok(()),
            Err(Refused::Closed) => Err(MqttError::Closed),
            Err(Refused::Full(..)) => Err(MqttError::QueueFull),
        }
    }

    /// Queues a publish, waiting while the queue is full.
    async fn enqueue(
        &self,
        topic: &str,
        mut payload: Vec<u8>,
        qos: QoS,
        mut waiter: AckWaiter,
    ) -> Result<(), MqttError> {
        check_topic(topic)?;
        loop {
            // Registered before trying, so that progress made in between is not missed.
            let progressed = self.book.progressed.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            match self.try_enqueue(topic, payload, qos, waiter) {
                Ok(()) => return Ok(()),
                Err(Refused::Closed) => return Err(MqttError::Closed),
                Err(Refused::Full(p, w)) => (payload, waiter) = (p, w),
            }
            progressed.await;
        }
    }

    /// Queues a publish and its entry in the book together (see [`PublishBook`]).
    fn try_enqueue(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
        waiter: AckWaiter,
    ) -> Result<(), Refused> {
        let mut book = self.book.lock();
        if book.closed {
            return Err(Refused::Closed);
        }
        book.acks.queued(waiter);
        match self.publisher.try_publish(topic, qos, false, payload) {
            Ok(()) => Ok(()),
            Err(e) => {
                let waiter = book.acks.refused().flatten();
                let payload = match e {
                    ClientError::TryRequest(Request::Publish(p))
                    | ClientError::Request(Request::Publish(p)) => Vec::from(p.payload),
                    ClientError::TryRequest(_) | ClientError::Request(_) => Vec::new(),
                };
                Err(Refused::Full(payload, waiter))
            }
        }
    }

    /// The source's counters.
    pub fn stats(&self) -> &Arc<MqttStats> {
        &self.stats
    }
}

/// The driver: owns both event loops. Spawn [`MqttSource::run`].
pub struct MqttSource {
    cfg: MqttSourceConfig,
    subscriber: EventLoop,
    /// Used by the driver for PUBACKs (via the forwarder) and the final DISCONNECT.
    subscriber_client: AsyncClient,
    publisher: EventLoop,
    publisher_client: AsyncClient,
    inbound: mpsc::Sender<Inbound>,
    /// Given to each token, for its ack or abandonment.
    settle_tx: mpsc::UnboundedSender<Settled>,
    settled: mpsc::UnboundedReceiver<Settled>,
    gate: Arc<AckGate>,
    /// Our publishes until their PUBACK (shared with every [`MqttClient`]).
    book: Arc<PublishBook>,
    stats: Arc<MqttStats>,
    /// Cancelled when the last [`MqttClient`] is dropped.
    clients_gone: CancellationToken,
}

impl std::fmt::Debug for MqttSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSource")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl MqttSource {
    /// Builds the driver, its handle and the inbound channel (bounded by
    /// `channel_capacity`). Nothing connects until [`MqttSource::run`].
    pub fn new(
        cfg: MqttSourceConfig,
    ) -> Result<(MqttSource, MqttClient, mpsc::Receiver<Inbound>), MqttError> {
        cfg.validate()?;
        // Request queues: PUBACKs (bounded by the broker's window) and our publishes.
        let queue = cfg.channel_capacity.max(64);
        let (subscriber_client, subscriber) =
            AsyncClient::new(cfg.options(cfg.client_id.clone(), true), queue);
        let (publisher_client, publisher) =
            AsyncClient::new(cfg.options(format!("{}-pub", cfg.client_id), false), queue);
        let (inbound, rx) = mpsc::channel(cfg.channel_capacity);
        let (settle_tx, settled) = mpsc::unbounded_channel();
        let stats = Arc::new(MqttStats::default());
        let clients_gone = CancellationToken::new();
        let book = Arc::new(PublishBook::default());
        let client = MqttClient {
            publisher: publisher_client.clone(),
            book: book.clone(),
            stats: stats.clone(),
            _alive: Arc::new(clients_gone.clone().drop_guard()),
        };
        let source = MqttSource {
            cfg,
            subscriber,
            subscriber_client,
            publisher,
            publisher_client,
            inbound,
            settle_tx,
            settled,
            gate: Arc::new(AckGate::default()),
            book,
            stats,
            clients_gone,
        };
        Ok((source, client, rx))
    }

    /// The source's counters (the same as [`MqttClient::stats`]).
    pub fn stats(&self) -> Arc<MqttStats> {
        self.stats.clone()
    }

    /// Runs both connections until `shutdown`, reconnecting with backoff. On shutdown it
    /// stops taking messages in (those not yet handed over stay with the broker), waits up to
    /// `shutdown_grace` for every [`MqttClient`] to be dropped so the last acks and
    /// publishes go out, then disconnects cleanly.
    pub async fn run(self, shutdown: CancellationToken) {
        let MqttSource {
            cfg,
            subscriber,
            subscriber_client,
            publisher,
            publisher_client,
            inbound,
            settle_tx,
            settled,
            gate,
            book,
            stats,
            clients_gone,
        } = self;
        // Set when every MqttClient is gone and the acks settled by then are queued.
        let acks_flushed = CancellationToken::new();
        // Set when the subscriber loop has ended: nothing more can be acked.
        let subscriber_done = CancellationToken::new();
        let seed = seed(&cfg.client_id);

        let forwarder = forward_acks(
            settled,
            subscriber_client.clone(),
            &gate,
            &stats,
            &clients_gone,
            &acks_flushed,
            &subscriber_done,
        );
        let sub = async {
            let mut link = Link {
                name: "subscriber",
                client: subscriber_client,
                backoff: Backoff::new(cfg.reconnect_initial, cfg.reconnect_max, seed),
                log: LogLimiter::new(Duration::from_secs(30)),
                stats: &stats,
            };
            let delivery = Delivery {
                inbound: Some(inbound),
                tokens: TokenMint {
                    generation: *gate.lock(),
                    next_seq: 0,
                    settle: settle_tx,
                },
            };
            drive_subscriber(
                subscriber,
                &mut link,
                &cfg,
                delivery,
                &gate,
                &shutdown,
                &acks_flushed,
            )
            .await;
            stats.set_connected(false);
            subscriber_done.cancel();
        };
        let publ = async {
            let mut link = Link {
                name: "publisher",
                client: publisher_client,
                backoff: Backoff::new(cfg.reconnect_initial, cfg.reconnect_max, seed ^ 0x9e37_79b9),
                log: LogLimiter::new(Duration::from_secs(30)),
                stats: &stats,
            };
            drive_publisher(publisher, &mut link, &cfg, &book, &shutdown, &clients_gone).await;
            stats.set_publisher_connected(false);
            // The event loop is gone with what it held: no PUBACK comes any more.
            let lost = {
                let mut b = book.lock();
                b.closed = true;
                b.acks.lost()
            };
            drop(lost);
            book.progressed.notify_waiters();
        };
        tokio::join!(forwarder, sub, publ);
    }
}

/// What both connection loops share: their name for logs, the client used for the final
/// DISCONNECT, the reconnect backoff, and a limiter for connection-error logs.
struct Link<'a> {
    name: &'static str,
    client: AsyncClient,
    backoff: Backoff,
    log: LogLimiter,
    stats: &'a MqttStats,
}

impl Link<'_> {
    /// Counts and logs (rate-limited) a connection error; returns the delay before the next
    /// attempt.
    fn failed(&mut self, e: &ConnectionError, was_connected: bool) -> Duration {
        self.stats.add_connection_error();
        let delay = self.backoff.next_delay();
        if let Some(suppressed) = self.log.allow() {
            if was_connected {
                tracing::warn!(connection = self.name, error = %e, suppressed, "MQTT connection lost; reconnecting in {delay:?}");
            } else {
                tracing::warn!(connection = self.name, error = %e, suppressed, attempt = self.backoff.attempt(), "MQTT connect failed; retrying in {delay:?}");
            }
        }
        delay
    }

    /// Counts and logs a successful connect; `ever` says whether this is a reconnect.
    fn connected(&mut self, ever: &mut bool, session_present: bool) {
        if *ever {
            self.stats.add_reconnect();
        }
        *ever = true;
        tracing::info!(
            connection = self.name,
            session_present,
            after_failures = self.backoff.attempt(),
            "MQTT connected"
        );
        self.backoff.reset();
        self.log.reset();
    }
}

/// How a loop iteration ended when the loop has to decide what comes next.
enum Step {
    Continue,
    Stop,
}

/// The subscriber's loop. See the module docs.
async fn drive_subscriber(
    mut el: EventLoop,
    link: &mut Link<'_>,
    cfg: &MqttSourceConfig,
    mut delivery: Delivery,
    gate: &AckGate,
    shutdown: &CancellationToken,
    acks_flushed: &CancellationToken,
) {
    let filters: Vec<SubscribeFilter> = cfg
        .subscriptions
        .iter()
        .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
        .collect();
    let mut connected = false;
    let mut ever_connected = false;
    // Whether this process has seen our SUBACK on the broker's current session.
    let mut session_subscribed = false;
    let mut drain = Drain::default();

    loop {
        let polled = tokio::select! {
            biased;
            _ = shutdown.cancelled(), if !drain.active => {
                // Stop taking messages in; keep the connection for the last acks.
                delivery.inbound = None;
                if !connected {
                    return;
                }
                drain.start(cfg.shutdown_grace);
                continue;
            }
            _ = drain.expired() => {
                tracing::warn!("MQTT subscriber: shutdown grace over; closing with acks pending");
                return;
            }
            _ = acks_flushed.cancelled(), if drain.may_disconnect() => {
                drain.try_disconnect(&link.client);
                continue;
            }
            polled = el.poll() => polled,
        };
        gate.progressed.notify_one();
        drain.progressed();
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connected = true;
                link.stats.set_connected(true);
                link.connected(&mut ever_connected, ack.session_present);
                if ack.session_present && session_subscribed {
                    link.stats.set_subscribed(true);
                } else {
                    // A new session; or a resumed one this process has not seen a SUBACK on
                    // (a previous run may have died between CONNECT and SUBACK, and the
                    // broker can't tell us). Re-subscribing an existing filter replaces it
                    // and keeps the session's queued messages; only retained messages come
                    // again (duplicates, dropped downstream).
                    session_subscribed = false;
                    el.pending
                        .push_front(Request::Subscribe(Subscribe::new_many(filters.clone())));
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused: Vec<&str> = ack
                    .return_codes
                    .iter()
                    .zip(&cfg.subscriptions)
                    .filter(|(c, _)| matches!(c, SubscribeReasonCode::Failure))
                    .map(|(_, f)| f.as_str())
                    .collect();
                if refused.is_empty() {
                    session_subscribed = true;
                    link.stats.set_subscribed(true);
                } else {
                    link.stats.add_subscribe_failure();
                    tracing::error!(?refused, "MQTT broker refused subscriptions");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Step::Stop = delivery.deliver(p, link.stats, shutdown).await {
                    drain.start(cfg.shutdown_grace);
                }
            }
            Ok(Event::Outgoing(Outgoing::PubAck(_) | Outgoing::PubRec(_))) => {
                link.stats.add_acked()
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                if drain.active {
                    return;
                }
                // Else the forwarder asked for a reconnect: the broker closes the connection
                // and the next poll fails, which reconnects.
            }
            Ok(_) => {}
            Err(e) => {
                let was_connected = connected;
                connected = false;
                link.stats.set_connected(false);
                {
                    // See AckGate: no PUBACK of this connection may reach the next one.
                    let mut g = gate.lock();
                    *g += 1;
                    delivery.tokens.generation = *g;
                    delivery.tokens.next_seq = 0;
                    el.clean();
                    // `clean` keeps requests but PUBACKs; a DISCONNECT asked for on this
                    // connection must not end the next one.
                    el.pending
                        .retain(|r| !matches!(r, Request::PubAck(_) | Request::Disconnect(_)));
                }
                if drain.active {
                    return;
                }
                let delay = link.failed(&e, was_connected);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// Makes the tokens of the current subscriber connection.
struct TokenMint {
    generation: u64,
    next_seq: u64,
    settle: mpsc::UnboundedSender<Settled>,
}

impl TokenMint {
    fn token(&mut self, pkid: u16, qos: QoS) -> AckToken {
        let seq = self.next_seq;
        self.next_seq += 1;
        AckToken {
            pkid,
            qos,
            generation: self.generation,
            seq,
            settle: Some(self.settle.clone()),
        }
    }
}

/// Where the subscriber's messages go: the inbound channel (`None` once shutting down), with
/// a token for each QoS 1/2 message.
struct Delivery {
    inbound: Option<mpsc::Sender<Inbound>>,
    tokens: TokenMint,
}

impl Delivery {
    /// Hands one publish to the pipeline, waiting (backpressure) while the channel is full.
    /// `Stop` when the pipeline is gone or shutdown came while waiting; from then on messages
    /// are dropped un-acked (the broker keeps them for the next session).
    async fn deliver(
        &mut self,
        p: Publish,
        stats: &MqttStats,
        shutdown: &CancellationToken,
    ) -> Step {
        let Some(tx) = &self.inbound else {
            return Step::Continue;
        };
        let (qos, ack) = match p.qos {
            QoS::AtMostOnce => (0, None),
            QoS::AtLeastOnce => (1, Some(self.tokens.token(p.pkid, p.qos))),
            QoS::ExactlyOnce => (2, Some(self.tokens.token(p.pkid, p.qos))),
        };
        let msg = Inbound {
            topic: p.topic,
            payload: p.payload,
            qos,
            ack,
            received_ms: now_ms(),
        };
        stats.add_received();
        let step = tokio::select! {
            biased;
            sent = tx.send(msg) => match sent {
                Ok(()) => Step::Continue,
                Err(_) => {
                    tracing::warn!("MQTT inbound channel closed; the source stops taking messages");
                    Step::Stop
                }
            },
            // Dropped un-acked: the broker redelivers it next session.
            _ = shutdown.cancelled() => Step::Stop,
        };
        if let Step::Stop = step {
            self.inbound = None;
        }
        step
    }
}

/// The publisher's loop: keeps the connection up, and tells publishes their PUBACK (see
/// [`PublishBook`]); rumqttc does the rest.
async fn drive_publisher(
    mut el: EventLoop,
    link: &mut Link<'_>,
    cfg: &MqttSourceConfig,
    book: &PublishBook,
    shutdown: &CancellationToken,
    clients_gone: &CancellationToken,
) {
    let mut connected = false;
    let mut ever_connected = false;
    let mut drain = Drain::default();
    loop {
        let polled = tokio::select! {
            biased;
            _ = shutdown.cancelled(), if !drain.active => {
                if !connected {
                    return;
                }
                drain.start(cfg.shutdown_grace);
                continue;
            }
            _ = drain.expired() => {
                tracing::warn!("MQTT publisher: shutdown grace over; closing with publishes pending");
                return;
            }
            _ = clients_gone.cancelled(), if drain.may_disconnect() => {
                drain.try_disconnect(&link.client);
                continue;
            }
            polled = el.poll() => polled,
        };
        drain.progressed();
        book.progressed.notify_waiters();
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connected = true;
                link.stats.set_publisher_connected(true);
                link.connected(&mut ever_connected, ack.session_present);
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                link.stats.add_published();
                let done = book.lock().acks.written(pkid);
                if let Some(Some(tx)) = done {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let done = book.lock().acks.acked(ack.pkid);
                if let Some(Some(tx)) = done {
                    // Err: nobody waits any more (the publisher gave up on it).
                    let _ = tx.send(());
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                if drain.active {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                let was_connected = connected;
                connected = false;
                link.stats.set_publisher_connected(false);
                drop_publishes(&mut el, book);
                if drain.active {
                    return;
                }
                let delay = link.failed(&e, was_connected);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// After a connection error: takes every publish out of rumqttc (in flight, queued, and one
/// parked by a pkid collision) and tells their confirmations they were not acknowledged.
/// rumqttc would re-send those in flight on a resumed session but drop everything on a new
/// one, and a re-send could not be told from a new publish; the publishers send again instead.
fn drop_publishes(el: &mut EventLoop, book: &PublishBook) {
    let lost = {
        let mut b = book.lock();
        // rumqttc moved its in-flight publishes to `pending` already; this also drains the
        // request queue, so that the book and rumqttc agree on "nothing is queued".
        el.clean();
        el.pending.retain(|r| !matches!(r, Request::Publish(_)));
        el.state.collision = None;
        b.acks.lost()
    };
    if !lost.is_empty() {
        let awaited = lost.iter().filter(|w| w.is_some()).count();
        tracing::info!(
            awaited,
            dropped = lost.len() - awaited,
            "MQTT publisher: connection lost before PUBACKs; the awaited publishes are sent again \
             by their publishers, the others (dead letters) are dropped"
        );
    }
}

/// Shutdown of one connection: a deadline, and a DISCONNECT queued behind the last requests
/// once every client handle is gone.
#[derive(Default)]
struct Drain {
    active: bool,
    deadline: Option<tokio::time::Instant>,
    /// The DISCONNECT is in rumqttc's queue.
    queued: bool,
    /// The last try found the queue full; wait for the event loop to move before retrying.
    blocked: bool,
}

impl Drain {
    fn start(&mut self, grace: Duration) {
        self.active = true;
        self.deadline = Some(tokio::time::Instant::now() + grace);
    }

    async fn expired(&self) {
        match self.deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    }

    fn may_disconnect(&self) -> bool {
        self.active && !self.queued && !self.blocked
    }

    /// Queues DISCONNECT *behind* whatever is queued (the last PUBACKs and publishes).
    fn try_disconnect(&mut self, client: &AsyncClient) {
        match client.try_disconnect() {
            Ok(()) => self.queued = true,
            Err(ClientError::TryRequest(_) | ClientError::Request(_)) => self.blocked = true,
        }
    }

    fn progressed(&mut self) {
        self.blocked = false;
    }
}

/// Turns settled tokens into PUBACKs (in arrival order, see [`AckOrder`]) on the subscriber's
/// request queue, and into reconnects. Runs until the subscriber loop ends. Once every
/// [`MqttClient`] is gone it cancels `acks_flushed` after queueing what was settled by then.
async fn forward_acks(
    mut settled: mpsc::UnboundedReceiver<Settled>,
    client: AsyncClient,
    gate: &AckGate,
    stats: &MqttStats,
    clients_gone: &CancellationToken,
    acks_flushed: &CancellationToken,
    subscriber_done: &CancellationToken,
) {
    let mut order = AckOrder::default();
    let mut actions = Vec::new();
    loop {
        let next = tokio::select! {
            biased;
            _ = subscriber_done.cancelled() => return,
            s = settled.recv() => s,
            _ = clients_gone.cancelled(), if !acks_flushed.is_cancelled() => {
                // Everything settled before the last handle went is in the channel now.
                while let Ok(s) = settled.try_recv() {
                    if !settle(s, &mut order, &mut actions, &client, gate, stats, subscriber_done).await {
                        return;
                    }
                }
                acks_flushed.cancel();
                continue;
            }
        };
        // The driver holds a sender for its tokens, so the channel closes only with it.
        let Some(s) = next else { return };
        if !settle(
            s,
            &mut order,
            &mut actions,
            &client,
            gate,
            stats,
            subscriber_done,
        )
        .await
        {
            return;
        }
    }
}

/// One settled token: decides (pure, [`AckOrder`]) and acts. `false` once the subscriber loop
/// has ended.
async fn settle(
    s: Settled,
    order: &mut AckOrder,
    actions: &mut Vec<Action>,
    client: &AsyncClient,
    gate: &AckGate,
    stats: &MqttStats,
    subscriber_done: &CancellationToken,
) -> bool {
    let outcome = {
        let g = gate.lock();
        order.settle(s, *g, actions)
    };
    match outcome {
        Outcome::Stale => stats.add_ack_stale(),
        Outcome::Abandoned => stats.add_ack_abandoned(),
        Outcome::Acked => {}
    }
    for action in actions.drain(..) {
        loop {
            let queued = {
                let g = gate.lock();
                match action {
                    Action::Release { generation, .. } | Action::Reconnect { generation }
                        if generation != *g =>
                    {
                        // The connection is gone already: the broker resends these anyway.
                        Ok(())
                    }
                    Action::Release { pkid, qos, .. } => {
                        let mut p = Publish::new("", qos, Vec::<u8>::new());
                        p.pkid = pkid;
                        client.try_ack(&p)
                    }
                    Action::Reconnect { .. } => {
                        tracing::warn!(
                            "an MQTT message was dropped without an ack; reconnecting so the broker sends it again"
                        );
                        stats.add_forced_reconnect();
                        client.try_disconnect()
                    }
                }
            };
            if queued.is_ok() {
                break;
            }
            // Queue full: the event loop is parked or busy. Wait for it to move.
            tokio::select! {
                _ = gate.progressed.notified() => {}
                _ = subscriber_done.cancelled() => return false,
            }
        }
    }
    true
}

fn qos(qos1: bool) -> QoS {
    if qos1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    }
}

/// A topic one may publish to: 1..=65535 bytes, no wildcard, no NUL (MQTT 3.1.1 §4.7).
fn check_topic(topic: &str) -> Result<(), MqttError> {
    if topic.is_empty()
        || topic.len() > usize::from(u16::MAX)
        || topic.contains('\0')
        || !rumqttc::valid_topic(topic)
    {
        return Err(MqttError::InvalidTopic {
            topic: topic.to_owned(),
        });
    }
    Ok(())
}

/// Server time, epoch milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A jitter seed that differs between processes and between clients.
fn seed(client_id: &str) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(client_id.as_bytes());
    h.write_i64(now_ms());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_config() -> MqttSourceConfig {
        MqttSourceConfig::new(
            "127.0.0.1",
            1883,
            "landport-test",
            NonZeroU16::new(30).unwrap(),
        )
    }

    #[test]
    fn defaults_are_valid_and_subscribe_to_the_spec_topics() {
        let c = test_config();
        c.validate().unwrap();
        assert_eq!(
            c.subscriptions,
            [
                "landport/+/+/telemetry",
                "landport/+/+/senml",
                "owntracks/+/+"
            ]
        );
    }

    #[test]
    fn values_rumqttc_or_tokio_panic_on_are_refused_with_the_field_path() {
        let bad = |f: fn(&mut MqttSourceConfig), field: &str| {
            let mut c = test_config();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(&format!("mqtt.{field}: ")), "{field}: {e}");
            // And `new` refuses it rather than panicking.
            assert!(MqttSource::new(c).is_err());
        };
        bad(|c| c.channel_capacity = 0, "channel_capacity");
        bad(|c| c.max_inflight = 0, "max_inflight");
        // No keep-alive case: sub-second and over-65535 s values, which rumqttc panics on or
        // truncates, are not representable (`NonZeroU16` seconds); the allowed range is the
        // config's rule (`mqtt.keep_alive_seconds`, tested in landport-config).
        bad(|c| c.client_id = String::new(), "client_id");
        bad(|c| c.client_id = "a/b".into(), "client_id");
        bad(|c| c.port = 0, "port");
        bad(|c| c.host = " ".into(), "host");
        bad(|c| c.password = Some("x".into()), "password");
        bad(|c| c.subscriptions.clear(), "subscriptions");
        bad(|c| c.subscriptions.push("a/#/b".into()), "subscriptions[3]");
        bad(|c| c.max_packet_bytes = 10, "max_packet_bytes");
        bad(
            |c| c.reconnect_max = Duration::from_millis(1),
            "reconnect_max",
        );
    }

    #[tokio::test]
    async fn acks_of_an_older_connection_are_dropped_and_dropped_tokens_counted() {
        let (source, client, _rx) = MqttSource::new(test_config()).unwrap();
        let MqttSource {
            subscriber_client,
            settle_tx,
            settled,
            gate,
            stats,
            clients_gone,
            ..
        } = source;
        let mut mint = TokenMint {
            generation: 1,
            next_seq: 0,
            settle: settle_tx,
        };
        let old = mint.token(7, QoS::AtLeastOnce);
        let dropped = mint.token(8, QoS::AtLeastOnce);
        *gate.lock() = 2;
        client.ack(old).await;
        drop(dropped);
        drop(client);
        assert!(clients_gone.is_cancelled());
        let (flushed, done) = (CancellationToken::new(), CancellationToken::new());
        let forwarder = forward_acks(
            settled,
            subscriber_client,
            &gate,
            &stats,
            &clients_gone,
            &flushed,
            &done,
        );
        tokio::select! {
            _ = forwarder => panic!("the forwarder runs until the subscriber is done"),
            _ = flushed.cancelled() => {}
        }
        assert_eq!(stats.acks_stale(), 2);
    }
}
