//! One client connection: CONNECT and authentication, then a reader (this task) and a
//! writer (its own task) over any byte stream (TCP, TLS).
//!
//! ```text
//! socket -> reader: Framer -> PUBLISH: ACL, slot in AckQueue, decode -> [bounded] -> pipeline
//!                           SUBSCRIBE: ACL, Subscriptions (the session's Tail reads them)
//! pipeline -> PubAckToken::ack -> AckQueue (slot filled) -> Notify -> writer -> socket
//! Tail (event log, dead letters) -> [bounded] -> writer -> PUBLISH to the subscriber
//! ```
//!
//! Backpressure: each QoS 1 publish holds one of `receive_maximum` permits from the moment
//! it is read until its PUBACK is written; without a permit, or while the pipeline's channel
//! is full, the reader stops reading the socket. Nothing read is ever dropped: it is either
//! in the pipeline (acknowledged once durable) or refused with a reason.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use landport_pipeline::log_limit::KeyedLogLimiter;
use landport_pipeline::metrics::Metrics;
use landport_pipeline::{DeadLetter, Decoded, Refusal, now_ms};
use landport_store::MqttSession;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::EndpointConfig;
use super::acks::{AckKind, ConnShared, PubAckToken};
use super::auth::{AuthError, Authenticator, Principal};
use super::codec::{
    CodecError, Connect, Frame, Framer, Incoming, Outgoing, Publish, ServerLimits, Version,
    publish_size,
};
use super::session::{Delivery, Registry, SessionStore, Subscriptions, Tail};
use crate::decoder::Decoder;

/// What every connection shares.
pub(crate) struct Context {
    pub(crate) config: EndpointConfig,
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) decoder: Decoder,
    pub(crate) pipeline: mpsc::Sender<Decoded<PubAckToken>>,
    pub(crate) sessions: SessionStore,
    pub(crate) registry: Registry,
    /// Changes after each commit that stored events (the tails wait on it).
    pub(crate) head: watch::Receiver<u64>,
    pub(crate) dead_letters: broadcast::Sender<Arc<DeadLetter>>,
    pub(crate) metrics: Arc<Metrics>,
    /// Held for one check, never across `.await`.
    pub(crate) log_limit: Mutex<KeyedLogLimiter>,
    pub(crate) next_id: AtomicU64,
    /// One permit per connection being served (`EndpointConfig::max_connections`).
    pub(crate) slots: Arc<Semaphore>,
    /// One permit per session tailing the event log (`EndpointConfig::max_subscribers`).
    pub(crate) tails: Arc<Semaphore>,
    /// Cancelled when the endpoint stops: every connection flushes its acks and closes.
    pub(crate) stop: CancellationToken,
}

impl Context {
    /// Counts and logs (rate-limited) a session refused a subscriber slot.
    fn subscriber_limit_reached(&self, principal: &Principal) {
        self.metrics.deny("subscriber_limit");
        let allowed = self
            .log_limit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow("subscriber_limit");
        if let Some(suppressed) = allowed {
            tracing::warn!(
                ?principal,
                max = self.config.max_subscribers,
                suppressed,
                "MQTT subscription refused: mqtt.max_subscribers reached"
            );
        }
    }

    /// Logs a refusal, at most one line per kind every 10 s.
    fn log_denied(&self, what: &'static str, principal: &Principal, topic: &str) {
        let allowed = self
            .log_limit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(what);
        if let Some(suppressed) = allowed {
            tracing::warn!(
                ?principal,
                topic,
                suppressed,
                "MQTT {what} refused by the ACL"
            );
        }
    }
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// DISCONNECT from the client; `will` true when a 5 client asked for its will anyway.
    Disconnect { will: bool },
    /// Anything else from the client's side: the will is published.
    Abnormal(String),
    /// Another connection took the client id.
    TakenOver,
    /// The credentials it connected with were revoked (no will: it has lost its rights).
    Revoked,
    /// The endpoint is stopping.
    Shutdown,
}

/// 3.1.1 CONNACK return codes / 5 reason codes.
fn connack_code(version: Version, e: AuthError) -> u8 {
    match (version, e) {
        (Version::V311, AuthError::BadCredentials) => 4,
        (Version::V311, AuthError::NotAuthorized) => 5,
        (Version::V311, AuthError::Unavailable) => 3,
        (Version::V5, AuthError::BadCredentials) => 0x86,
        (Version::V5, AuthError::NotAuthorized) => 0x87,
        (Version::V5, AuthError::Unavailable) => 0x88,
    }
}

/// Serves one client over `stream` until it goes or the endpoint stops.
pub(crate) async fn serve<S>(ctx: Arc<Context>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(1024);
    let mut framer = Framer::new(ctx.config.max_packet_bytes);
    let first = tokio::time::timeout(
        ctx.config.connect_timeout,
        read_connect(&mut rd, &mut buf, &mut framer),
    )
    .await;
    let connect = match first {
        Ok(Ok(c)) => c,
        Ok(Err(CodecError::UnsupportedVersion(level))) => {
            tracing::debug!(%peer, level, "MQTT: unsupported protocol level");
            // 3.1.1's "unacceptable protocol version".
            let _ = wr.write_all(&connack_refusal(Version::V311, 1)).await;
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "MQTT: no valid CONNECT");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "MQTT: no CONNECT in time");
            return;
        }
    };
    framer.set_version(connect.version);
    let version = connect.version;
    let refuse = |code: u8| connack_refusal(version, code);
    // 3.1.1: an empty client id only with a clean session.
    if connect.client_id.is_empty() && !connect.clean && version == Version::V311 {
        let _ = wr.write_all(&refuse(2)).await;
        return;
    }
    if version == Version::V5 && connect.will.as_ref().is_some_and(|w| w.qos > 1) {
        let _ = wr.write_all(&refuse(0x9B)).await;
        return;
    }
    let auth = ctx.authenticator.clone();
    let (user, pass) = (connect.username.clone(), connect.password.clone());
    let principal =
        tokio::task::spawn_blocking(move || auth.authenticate(user.as_deref(), pass.as_deref()))
            .await
            .unwrap_or(Err(AuthError::Unavailable));
    let principal = match principal {
        Ok(p) => p,
        Err(e) => {
            ctx.metrics.deny("connect");
            let user = connect.username.as_deref().unwrap_or("");
            let allowed = ctx
                .log_limit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .allow("connect");
            if let Some(suppressed) = allowed {
                tracing::warn!(%peer, user, ?e, suppressed, "MQTT CONNECT refused");
            }
            let _ = wr.write_all(&refuse(connack_code(version, e))).await;
            return;
        }
    };

    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let assigned = connect
        .client_id
        .is_empty()
        .then(|| format!("landport-auto-{id}"));
    let client_id = assigned
        .clone()
        .unwrap_or_else(|| connect.client_id.clone());
    let kick = ctx.stop.child_token();
    let revoked = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = watch::channel(false);
    ctx.registry
        .take(
            &client_id,
            id,
            principal.clone(),
            kick.clone(),
            revoked.clone(),
            done_rx,
        )
        .await;

    let mut conn =
        Connection::start(&ctx, connect, principal, client_id.clone(), assigned, wr).await;
    ctx.metrics.mqtt_clients.inc();
    let end = match &mut conn {
        Some(c) => c.read_loop(&ctx, rd, buf, framer, &kick, &revoked).await,
        None => End::Shutdown,
    };
    if let Some(c) = conn {
        c.finish(&ctx, end).await;
    }
    ctx.metrics.mqtt_clients.dec();
    ctx.registry.release(&client_id, id);
    let _ = done_tx.send(true);
}

/// Reads until the first packet, which must be a CONNECT.
async fn read_connect<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    framer: &mut Framer,
) -> Result<Connect, CodecError> {
    loop {
        match framer.next(buf)? {
            Frame::Packet(Incoming::Connect(c)) => return Ok(c),
            Frame::Packet(_) | Frame::Oversize { .. } => {
                return Err(CodecError::Malformed(
                    "the first packet must be CONNECT".into(),
                ));
            }
            Frame::Incomplete => {}
        }
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(CodecError::Malformed("closed before CONNECT".into())),
            Ok(_) => {}
        }
    }
}

/// A connection past its CONNACK.
struct Connection {
    version: Version,
    principal: Principal,
    client_id: String,
    keep_alive: Option<Duration>,
    will: Option<super::codec::Will>,
    /// The session outlives the connection (saved in the store).
    persistent: bool,
    /// A stored session to forget when the connection ends (5: resumed with expiry 0).
    forget_at_end: bool,
    expiry_seconds: Option<u32>,
    shared: Arc<ConnShared>,
    inflight: Arc<Semaphore>,
    receive_maximum: u16,
    subscriptions: Arc<Subscriptions>,
    cursor: Arc<AtomicI64>,
    deliveries: Option<mpsc::Sender<Delivery>>,
    tail_stop: CancellationToken,
    tail_started: bool,
    /// Its share of `EndpointConfig::max_subscribers`, held while it has subscriptions.
    tail_slot: Option<OwnedSemaphorePermit>,
    /// Ends the reader when the writer has ended (socket error, closing).
    writer_done: CancellationToken,
    writer: tokio::task::JoinHandle<()>,
    /// 5 topic aliases the client set, by alias - 1.
    aliases: Vec<Option<String>>,
}

impl Connection {
    /// Sets up the session, sends the CONNACK and starts the writer. `None` when the store
    /// failed (the client got a "server unavailable" CONNACK).
    async fn start<W>(
        ctx: &Arc<Context>,
        connect: Connect,
        principal: Principal,
        client_id: String,
        assigned: Option<String>,
        mut wr: WriteHalf<W>,
    ) -> Option<Connection>
    where
        W: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let version = connect.version;
        let owner = format!("{principal:?}");
        let stored = if assigned.is_some() {
            Ok(None)
        } else {
            ctx.sessions.load(client_id.clone()).await
        };
        let head = ctx.sessions.head().await;
        let (stored, head) = match (stored, head) {
            (Ok(s), Ok(h)) => (s, h),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "MQTT: loading the session failed");
                let code = if version == Version::V5 { 0x88 } else { 3 };
                let _ = wr.write_all(&connack_refusal(version, code)).await;
                return None;
            }
        };
        let now = now_ms();
        let resumable = stored.filter(|s| {
            s.owner == owner
                && !s.disconnected_ms.is_some_and(|d| {
                    s.expiry_seconds
                        .is_some_and(|e| d + i64::from(e) * 1000 < now)
                })
        });
        let had_row = resumable.is_some();
        let (subscriptions, cursor, present) = match resumable {
            Some(s) if !connect.clean => (s.subscriptions, s.cursor, true),
            _ => (Vec::new(), head, false),
        };
        // A resumed session with subscriptions tails the event log at once: it needs a
        // subscriber slot, or the client is told the server is full (and may come back).
        let tail_slot = if subscriptions.is_empty() {
            None
        } else {
            match ctx.tails.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    ctx.subscriber_limit_reached(&principal);
                    let code = if version == Version::V5 { 0x97 } else { 3 };
                    let _ = wr.write_all(&connack_refusal(version, code)).await;
                    return None;
                }
            }
        };
        let persistent = connect.session_expiry_seconds > 0;
        let expiry_seconds = (version == Version::V5 && connect.session_expiry_seconds != u32::MAX)
            .then_some(connect.session_expiry_seconds);
        let saved = if persistent {
            ctx.sessions
                .save(MqttSession {
                    client_id: client_id.clone(),
                    owner,
                    subscriptions: subscriptions.clone(),
                    cursor,
                    expiry_seconds,
                    disconnected_ms: None,
                })
                .await
        } else if had_row && connect.clean {
            ctx.sessions.delete(client_id.clone()).await
        } else {
            Ok(())
        };
        if let Err(e) = saved {
            tracing::warn!(error = %e, "MQTT: saving the session failed");
        }

        let limits = ServerLimits {
            receive_maximum: ctx.config.receive_maximum,
            max_packet_bytes: ctx.config.max_packet_bytes as u32,
            topic_alias_maximum: ctx.config.topic_alias_maximum,
            assigned_client_id: assigned,
        };
        let mut b = BytesMut::new();
        Outgoing::ConnAck {
            session_present: present,
            code: 0,
            limits: Some(&limits),
        }
        .encode(version, &mut b);
        if wr.write_all(&b).await.is_err() {
            return None;
        }

        let shared = ConnShared::new();
        let inflight = Arc::new(Semaphore::new(usize::from(ctx.config.receive_maximum)));
        let cursor = Arc::new(AtomicI64::new(cursor));
        let (dtx, drx) = mpsc::channel(64);
        let writer_done = CancellationToken::new();
        let out_window = usize::from(connect.receive_maximum.min(ctx.config.max_inflight_out));
        let writer = tokio::spawn(write_loop(
            wr,
            Writer {
                version,
                shared: shared.clone(),
                inflight: inflight.clone(),
                deliveries: drx,
                out_window,
                client_max_packet: connect.max_packet_bytes.map_or(usize::MAX, |m| m as usize),
                cursor: cursor.clone(),
                stop: ctx.stop.clone(),
            },
            writer_done.clone(),
        ));
        let mut conn = Connection {
            version,
            principal,
            client_id,
            keep_alive: (connect.keep_alive > 0)
                .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500)),
            will: connect.will,
            persistent,
            forget_at_end: !persistent && present,
            expiry_seconds,
            shared,
            inflight,
            receive_maximum: ctx.config.receive_maximum,
            subscriptions: Subscriptions::with(subscriptions),
            cursor,
            deliveries: Some(dtx),
            tail_stop: CancellationToken::new(),
            tail_started: false,
            tail_slot,
            writer_done,
            writer,
            aliases: vec![None; usize::from(ctx.config.topic_alias_maximum)],
        };
        if !conn.subscriptions.is_empty() {
            conn.start_tail(ctx);
        }
        Some(conn)
    }

    /// Starts the session's tail of the event log (once).
    fn start_tail(&mut self, ctx: &Arc<Context>) {
        if self.tail_started {
            return;
        }
        let Some(out) = self.deliveries.clone() else {
            return;
        };
        self.tail_started = true;
        let tail = Tail {
            subscriptions: self.subscriptions.clone(),
            store_dir: ctx.sessions.dir().to_owned(),
            position: self.cursor.load(Ordering::Relaxed),
            head: ctx.head.clone(),
            dead_letters: ctx.dead_letters.subscribe(),
            out,
            cursor: self.cursor.clone(),
            persist: self
                .persistent
                .then(|| (ctx.sessions.clone(), self.client_id.clone())),
        };
        tokio::spawn(tail.run(self.tail_stop.clone()));
    }

    /// Queues a control packet for the writer.
    fn send(&self, packet: Outgoing<'_>) {
        let mut q = self.shared.lock();
        packet.encode(self.version, &mut q.control);
        drop(q);
        self.shared.wake.notify_one();
    }

    /// Queues a 5 DISCONNECT (3.1.1: nothing) and has the writer close after it.
    fn close_with(&self, reason: u8, text: &str) {
        let mut q = self.shared.lock();
        Outgoing::Disconnect { reason, text }.encode(self.version, &mut q.control);
        q.closing = true;
        drop(q);
        self.shared.wake.notify_one();
    }

    async fn read_loop<S>(
        &mut self,
        ctx: &Arc<Context>,
        mut rd: ReadHalf<S>,
        mut buf: BytesMut,
        mut framer: Framer,
        kick: &CancellationToken,
        revoked: &AtomicBool,
    ) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // The last read filled all the room it had.
        let mut filled = false;
        loop {
            loop {
                let frame = match framer.next(&mut buf) {
                    Ok(Frame::Incomplete) => break,
                    Ok(f) => f,
                    Err(e) => {
                        let reason = match e {
                            CodecError::TooLarge { .. } => {
                                ctx.metrics.mqtt_oversize.inc();
                                0x95
                            }
                            _ => 0x81,
                        };
                        tracing::debug!(client_id = self.client_id, error = %e, "MQTT: closing");
                        self.close_with(reason, &e.to_string());
                        return End::Abnormal(e.to_string());
                    }
                };
                let step = match frame {
                    Frame::Packet(p) => self.handle(ctx, p, kick).await,
                    Frame::Oversize { publish, len } => {
                        self.oversize(ctx, publish, len, kick).await
                    }
                    Frame::Incomplete => unreachable!("handled above"),
                };
                if let Err(end) = step {
                    return end;
                }
            }
            // Room to read into: small for a quiet device (many connect), doubling up to
            // 64 KiB while reads fill it (a gateway publishing at full speed).
            if buf.capacity() - buf.len() < 512 {
                let room = if filled {
                    (buf.capacity() * 2).min(64 * 1024)
                } else {
                    4096
                };
                buf.reserve(room);
            }
            let free = buf.capacity() - buf.len();
            let read = async {
                match self.keep_alive {
                    Some(t) => tokio::time::timeout(t, rd.read_buf(&mut buf)).await,
                    None => Ok(rd.read_buf(&mut buf).await),
                }
            };
            let n = tokio::select! {
                r = read => r,
                () = kick.cancelled() => {
                    return if ctx.stop.is_cancelled() {
                        End::Shutdown
                    } else if revoked.load(Ordering::Relaxed) {
                        self.close_with(0x87, "credentials revoked");
                        End::Revoked
                    } else {
                        self.close_with(0x8E, "session taken over");
                        End::TakenOver
                    };
                }
                () = self.writer_done.cancelled() => return End::Abnormal("connection lost".into()),
            };
            match n {
                Ok(Ok(0)) => return End::Abnormal("closed by the client".into()),
                Ok(Ok(n)) => filled = n == free,
                Ok(Err(e)) => return End::Abnormal(e.to_string()),
                Err(_) => {
                    self.close_with(0x8D, "keep alive timeout");
                    return End::Abnormal("keep-alive timeout".into());
                }
            }
        }
    }

    async fn handle(
        &mut self,
        ctx: &Arc<Context>,
        packet: Incoming,
        kick: &CancellationToken,
    ) -> Result<(), End> {
        match packet {
            Incoming::Publish(p) => self.publish(ctx, p, kick).await,
            Incoming::PubAck { pkid } => {
                self.shared.lock().client_acks.push(pkid);
                self.shared.wake.notify_one();
                Ok(())
            }
            Incoming::PubRel { pkid } => {
                // The publish was durable before its PUBREC: nothing is held for it.
                self.send(Outgoing::PubComp { pkid });
                Ok(())
            }
            Incoming::PubRec { .. } | Incoming::PubComp { .. } => Ok(()),
            Incoming::Subscribe { pkid, filters } => {
                let mut codes = Vec::with_capacity(filters.len());
                // A session's first subscription takes a subscriber slot (its tail of the
                // event log holds a store connection); with none left, every filter is
                // refused (5: 0x97 Quota exceeded).
                if self.tail_slot.is_none() {
                    match ctx.tails.clone().try_acquire_owned() {
                        Ok(slot) => self.tail_slot = Some(slot),
                        Err(_) => {
                            ctx.subscriber_limit_reached(&self.principal);
                            let code = if self.version == Version::V5 {
                                0x97
                            } else {
                                0x80
                            };
                            codes.resize(filters.len(), code);
                            self.send(Outgoing::SubAck {
                                pkid,
                                codes: &codes,
                            });
                            return Ok(());
                        }
                    }
                }
                for (filter, qos) in filters {
                    codes.push(self.subscribe(ctx, filter, qos));
                }
                if self.subscriptions.is_empty() && !self.tail_started {
                    // Nothing granted: the slot goes back.
                    self.tail_slot = None;
                }
                // Stored before the SUBACK: a persistent session's subscription survives a
                // crash right after the client was told it has it (an acknowledgement means
                // durable, as for readings).
                self.save_session(ctx).await;
                self.send(Outgoing::SubAck {
                    pkid,
                    codes: &codes,
                });
                if !self.subscriptions.is_empty() {
                    self.start_tail(ctx);
                }
                Ok(())
            }
            Incoming::Unsubscribe { pkid, filters } => {
                for f in &filters {
                    self.subscriptions.remove(f);
                }
                self.save_session(ctx).await;
                self.send(Outgoing::UnsubAck {
                    pkid,
                    count: filters.len(),
                });
                Ok(())
            }
            Incoming::PingReq => {
                self.send(Outgoing::PingResp);
                Ok(())
            }
            Incoming::Disconnect { reason } => Err(End::Disconnect {
                will: reason == 0x04,
            }),
            Incoming::Auth => {
                self.close_with(0x8C, "enhanced authentication is not supported");
                Err(End::Abnormal("AUTH packet".into()))
            }
            Incoming::Connect(_) => {
                self.close_with(0x82, "a second CONNECT");
                Err(End::Abnormal("a second CONNECT".into()))
            }
        }
    }

    /// One filter of a SUBSCRIBE: the SUBACK code.
    fn subscribe(&self, ctx: &Context, filter: String, qos: u8) -> u8 {
        let v5 = self.version == Version::V5;
        let ours = filter.split('/').next() == Some("landport") && rumqttc::valid_filter(&filter);
        if !ours {
            ctx.metrics.deny("subscribe");
            ctx.log_denied("subscribe", &self.principal, &filter);
            return if v5 && !rumqttc::valid_filter(&filter) {
                0x8F
            } else {
                0x80
            };
        }
        if !ctx.config.acl.may_subscribe(&self.principal, &filter) {
            ctx.metrics.deny("subscribe");
            ctx.log_denied("subscribe", &self.principal, &filter);
            return if v5 { 0x87 } else { 0x80 };
        }
        let granted = qos.min(1);
        self.subscriptions.add(filter, granted);
        granted
    }

    async fn save_session(&self, ctx: &Context) {
        if !self.persistent {
            return;
        }
        let session = MqttSession {
            client_id: self.client_id.clone(),
            owner: format!("{:?}", self.principal),
            subscriptions: self.subscriptions.get(),
            cursor: self.cursor.load(Ordering::Relaxed),
            expiry_seconds: self.expiry_seconds,
            disconnected_ms: None,
        };
        if let Err(e) = ctx.sessions.save(session).await {
            tracing::warn!(error = %e, "MQTT: saving the session failed");
        }
    }

    async fn publish(
        &mut self,
        ctx: &Arc<Context>,
        mut p: Publish,
        kick: &CancellationToken,
    ) -> Result<(), End> {
        if self.version == Version::V5 {
            if p.qos > 1 {
                self.close_with(0x9B, "QoS 2 is not supported (Maximum QoS 1)");
                return Err(End::Abnormal("QoS 2 from a 5 client".into()));
            }
            if let Some(alias) = p.topic_alias {
                let slot = usize::from(alias)
                    .checked_sub(1)
                    .and_then(|i| self.aliases.get_mut(i));
                let Some(slot) = slot else {
                    self.close_with(0x94, "topic alias out of range");
                    return Err(End::Abnormal("bad topic alias".into()));
                };
                if p.topic.is_empty() {
                    match slot {
                        Some(t) => p.topic = t.clone(),
                        None => {
                            self.close_with(0x82, "unknown topic alias");
                            return Err(End::Abnormal("unknown topic alias".into()));
                        }
                    }
                } else {
                    *slot = Some(p.topic.clone());
                }
            }
        }
        let kind = if p.qos == 2 {
            AckKind::PubRec
        } else {
            AckKind::PubAck
        };
        if !ctx.config.acl.may_publish(&self.principal, &p.topic) {
            ctx.metrics.deny("publish");
            ctx.log_denied("publish", &self.principal, &p.topic);
            if p.qos > 0 {
                // 5: PUBACK 0x87. 3.1.1 has no negative ack: acknowledged and dropped, so
                // the client does not send it again and again.
                let reason = if self.version == Version::V5 { 0x87 } else { 0 };
                self.shared.lock().push(p.pkid, kind, Some(reason));
                self.shared.wake.notify_one();
            }
            return Ok(());
        }
        let ack = self.slot(p.pkid, p.qos, kind, kick).await?;
        let msg = ctx.decoder.decode_parts(p.topic, p.payload, now_ms(), ack);
        self.to_pipeline(ctx, msg, kick).await
    }

    /// A QoS 1/2 publish's place in the ack queue, holding one permit of the window; `None`
    /// for QoS 0.
    async fn slot(
        &mut self,
        pkid: u16,
        qos: u8,
        kind: AckKind,
        kick: &CancellationToken,
    ) -> Result<Option<PubAckToken>, End> {
        if qos == 0 {
            return Ok(None);
        }
        match self.inflight.clone().try_acquire_owned() {
            Ok(permit) => permit.forget(),
            Err(_) if self.version == Version::V5 => {
                self.close_with(0x93, "receive maximum exceeded");
                return Err(End::Abnormal(format!(
                    "more than {} unacknowledged publishes",
                    self.receive_maximum
                )));
            }
            Err(_) => {
                // 3.1.1 has no window of its own: stop reading until acks free a permit.
                tokio::select! {
                    permit = self.inflight.clone().acquire_owned() => match permit {
                        Ok(p) => p.forget(),
                        Err(_) => return Err(End::Shutdown),
                    },
                    () = kick.cancelled() => return Err(End::Shutdown),
                    () = self.writer_done.cancelled() => {
                        return Err(End::Abnormal("connection lost".into()));
                    }
                }
            }
        }
        let n = self.shared.lock().push(pkid, kind, None);
        Ok(Some(PubAckToken::new(self.shared.clone(), n)))
    }

    /// Hands a message to the pipeline; waits (not reading the socket) while its channel is
    /// full.
    async fn to_pipeline(
        &self,
        ctx: &Context,
        msg: Decoded<PubAckToken>,
        kick: &CancellationToken,
    ) -> Result<(), End> {
        tokio::select! {
            sent = ctx.pipeline.send(msg) => sent.map_err(|_| End::Shutdown),
            () = kick.cancelled() => Err(End::Shutdown),
            () = self.writer_done.cancelled() => Err(End::Abnormal("connection lost".into())),
        }
    }

    /// A 3.1.1 PUBLISH above the packet limit, skipped unread: acknowledged (so the client
    /// goes on instead of sending it again after each reconnect) and dead-lettered to the
    /// device's `rejected` topic through the pipeline, which counts and reports it.
    async fn oversize(
        &mut self,
        ctx: &Arc<Context>,
        p: Publish,
        len: usize,
        kick: &CancellationToken,
    ) -> Result<(), End> {
        ctx.metrics.mqtt_oversize.inc();
        let kind = if p.qos == 2 {
            AckKind::PubRec
        } else {
            AckKind::PubAck
        };
        if !ctx.config.acl.may_publish(&self.principal, &p.topic) {
            ctx.metrics.deny("publish");
            ctx.log_denied("publish", &self.principal, &p.topic);
            if p.qos > 0 {
                self.shared.lock().push(p.pkid, kind, Some(0));
                self.shared.wake.notify_one();
            }
            return Ok(());
        }
        let ack = self.slot(p.pkid, p.qos, kind, kick).await?;
        let refusal = Refusal {
            code: "packet_too_large",
            message: format!(
                "MQTT packet of {len} bytes is above the endpoint's limit of {} bytes \
                 (mqtt.max_packet_bytes); the payload was not read",
                ctx.config.max_packet_bytes
            ),
        };
        let msg = ctx
            .decoder
            .refuse_parts(p.topic, p.payload, now_ms(), refusal, ack);
        self.to_pipeline(ctx, msg, kick).await
    }

    /// After the reader ended: the will, the session's state, the writer.
    async fn finish(mut self, ctx: &Arc<Context>, end: End) {
        let publish_will = matches!(end, End::Abnormal(_) | End::Disconnect { will: true });
        tracing::debug!(client_id = self.client_id, ?end, "MQTT: connection ended");
        if publish_will && let Some(will) = self.will.take() {
            if ctx.config.acl.may_publish(&self.principal, &will.topic) {
                let msg: Decoded<PubAckToken> =
                    ctx.decoder
                        .decode_parts(will.topic, will.payload, now_ms(), None);
                // The client is gone: nothing to acknowledge, but the reading is taken in
                // like any other (unless Landport is stopping and the pipeline is gone).
                let _ = tokio::time::timeout(Duration::from_secs(5), ctx.pipeline.send(msg)).await;
            } else {
                ctx.metrics.deny("publish");
                ctx.log_denied("publish", &self.principal, &will.topic);
            }
        }
        self.tail_stop.cancel();
        // Let the writer flush what is ready (acks of the last commit) and close.
        {
            let mut q = self.shared.lock();
            q.closing = true;
        }
        self.shared.wake.notify_one();
        self.deliveries = None;
        let grace = if matches!(end, End::Shutdown) {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(500)
        };
        if tokio::time::timeout(grace, &mut self.writer).await.is_err() {
            self.writer.abort();
        }
        if self.persistent {
            let session = MqttSession {
                client_id: self.client_id.clone(),
                owner: format!("{:?}", self.principal),
                subscriptions: self.subscriptions.get(),
                cursor: self.cursor.load(Ordering::Relaxed),
                expiry_seconds: self.expiry_seconds,
                disconnected_ms: Some(now_ms()),
            };
            if let Err(e) = ctx.sessions.save(session).await {
                tracing::warn!(error = %e, "MQTT: saving the session failed");
            }
        } else if self.forget_at_end
            && let Err(e) = ctx.sessions.delete(self.client_id.clone()).await
        {
            tracing::warn!(error = %e, "MQTT: forgetting the session failed");
        }
    }
}

/// What the writer task works with.
struct Writer {
    version: Version,
    shared: Arc<ConnShared>,
    inflight: Arc<Semaphore>,
    deliveries: mpsc::Receiver<Delivery>,
    /// Most QoS 1 publishes of ours unacknowledged by the client (its receive maximum, at
    /// most `mqtt.max_inflight_out`).
    out_window: usize,
    /// The client's Maximum Packet Size (5); larger events are skipped for it.
    client_max_packet: usize,
    /// The event seq the client has (acknowledged) up to.
    cursor: Arc<AtomicI64>,
    stop: CancellationToken,
}

/// One of our publishes to the client, until its PUBACK (or at once for QoS 0 and progress).
struct OutSlot {
    pkid: u16,
    seq: Option<i64>,
    acked: bool,
}

/// Writes what the connection owes its client: acks (many per write when a commit released
/// many), control packets, deliveries. Ends when the connection is closing and all that is
/// ready is written, on a socket error, or when the endpoint stops.
async fn write_loop<W>(mut wr: WriteHalf<W>, mut w: Writer, done: CancellationToken)
where
    W: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _done = done.drop_guard();
    let mut buf = BytesMut::with_capacity(4096);
    let mut out: std::collections::VecDeque<OutSlot> = std::collections::VecDeque::new();
    let mut unacked = 0usize;
    let mut next_pkid: u16 = 0;
    let mut pending: Option<Delivery> = None;
    let mut deliveries_open = true;
    loop {
        let (released, closing) = {
            let mut q = w.shared.lock();
            let released = q.take_ready(w.version, &mut buf);
            buf.extend_from_slice(&q.control);
            q.control.clear();
            for pkid in q.client_acks.drain(..) {
                if let Some(s) = out.iter_mut().find(|s| s.pkid == pkid && !s.acked) {
                    s.acked = true;
                    unacked -= 1;
                }
            }
            (released, q.closing)
        };
        while out.front().is_some_and(|s| s.acked) {
            if let Some(seq) = out.pop_front().and_then(|s| s.seq) {
                w.cursor.store(seq, Ordering::Relaxed);
            }
        }
        // Deliveries, while the client's window has room.
        loop {
            if unacked >= w.out_window {
                break;
            }
            let d = match pending.take() {
                Some(d) => d,
                None => match w.deliveries.try_recv() {
                    Ok(d) => d,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        deliveries_open = false;
                        break;
                    }
                },
            };
            match d {
                Delivery::Progress(seq) => {
                    if out.is_empty() {
                        w.cursor.store(seq, Ordering::Relaxed);
                    } else {
                        out.push_back(OutSlot {
                            pkid: 0,
                            seq: Some(seq),
                            acked: true,
                        });
                    }
                }
                Delivery::Message {
                    seq,
                    topic,
                    payload,
                    qos,
                } => {
                    let fits =
                        publish_size(w.version, &topic, qos, payload.len()) <= w.client_max_packet;
                    let pkid = if qos > 0 && fits {
                        next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                        next_pkid
                    } else {
                        0
                    };
                    if fits {
                        Outgoing::Publish {
                            topic: &topic,
                            qos,
                            pkid,
                            payload: &payload,
                        }
                        .encode(w.version, &mut buf);
                    }
                    let acked = pkid == 0;
                    if !acked {
                        unacked += 1;
                    }
                    if acked && out.is_empty() {
                        if let Some(seq) = seq {
                            w.cursor.store(seq, Ordering::Relaxed);
                        }
                    } else {
                        out.push_back(OutSlot { pkid, seq, acked });
                    }
                }
            }
        }
        if released > 0 {
            // Before the write: a client that sees the PUBACK may send at once, and its next
            // publish must find the permit.
            w.inflight.add_permits(released);
        }
        if !buf.is_empty() {
            if wr.write_all(&buf).await.is_err() {
                return;
            }
            buf.clear();
            if buf.capacity() > 1 << 20 {
                buf = BytesMut::with_capacity(4096);
            }
        }
        if closing {
            let _ = wr.shutdown().await;
            return;
        }
        tokio::select! {
            () = w.shared.wake.notified() => {}
            d = w.deliveries.recv(), if deliveries_open && pending.is_none() && unacked < w.out_window => {
                match d {
                    Some(d) => pending = Some(d),
                    None => deliveries_open = false,
                }
            }
            () = w.stop.cancelled() => {
                // Landport is stopping: what the last commit released goes out, then a
                // DISCONNECT (5).
                w.shared.lock().take_ready(w.version, &mut buf);
                Outgoing::Disconnect { reason: 0x8B, text: "server shutting down" }
                    .encode(w.version, &mut buf);
                let _ = wr.write_all(&buf).await;
                let _ = wr.shutdown().await;
                return;
            }
        }
    }
}

/// A CONNACK that refuses the connection with `code` (its meaning depends on `version`).
fn connack_refusal(version: Version, code: u8) -> BytesMut {
    let mut b = BytesMut::new();
    Outgoing::ConnAck {
        session_present: false,
        code,
        limits: None,
    }
    .encode(version, &mut b);
    b
}
