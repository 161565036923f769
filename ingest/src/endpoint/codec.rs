//! MQTT bytes <-> the endpoint's packets, for 3.1.1 and 5; pure (no I/O).
//!
//! Framing is ours ([`Framer`]): it reads the fixed header itself, so a PUBLISH larger than
//! the packet limit is never buffered: its topic and packet id are read, then the body is
//! skipped as it arrives ([`Frame::Oversize`]), keeping a short excerpt for the dead letter.
//! A complete frame is then decoded by rumqttc's `mqttbytes` (`rumqttc::mqttbytes::v4` and
//! `rumqttc::v5::mqttbytes::v5`, the client's own codec, already a dependency) into
//! [`Incoming`], one shape for both versions. What the endpoint sends is encoded here by
//! hand ([`Outgoing`]): a handful of small packets, the hot one (PUBACK) four bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

/// The protocol version a connection speaks, from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5 (protocol level 5).
    V5,
}

/// A client's CONNECT, both versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: Version,
    pub client_id: String,
    /// 3.1.1 clean session / 5 clean start.
    pub clean: bool,
    /// Seconds; 0 = no keep-alive.
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub will: Option<Will>,
    /// 5: seconds the session outlives the connection (absent = 0: ends with it). 3.1.1:
    /// `u32::MAX` when the session is persistent (`clean = false`), else 0.
    pub session_expiry_seconds: u32,
    /// 5: most QoS 1 publishes the client takes unacknowledged (65,535 when absent).
    pub receive_maximum: u16,
    /// 5: the largest packet the client takes, bytes (absent = no limit).
    pub max_packet_bytes: Option<u32>,
}

/// A will message: published for the client when its connection ends abnormally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
}

/// One packet from a client, both versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Connect(Connect),
    Publish(Publish),
    /// The client acknowledges a QoS 1 publish of ours (an event).
    PubAck {
        pkid: u16,
    },
    /// QoS 2 of 3.1.1: the client releases a publish we answered with PUBREC.
    PubRel {
        pkid: u16,
    },
    /// QoS 2 acks of a publish of ours: we never send QoS 2; ignored.
    PubRec {
        pkid: u16,
    },
    PubComp {
        pkid: u16,
    },
    Subscribe {
        pkid: u16,
        filters: Vec<(String, u8)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    /// 5: the reason code (0x04: "send my will anyway"); 3.1.1: 0.
    Disconnect {
        reason: u8,
    },
    /// 5: enhanced authentication, which the endpoint does not offer.
    Auth,
}

/// A client's PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Empty when a 5 client sends a topic alias alone (`topic_alias`).
    pub topic: String,
    pub qos: u8,
    pub pkid: u16,
    pub payload: Bytes,
    /// 5: the topic alias it carries.
    pub topic_alias: Option<u16>,
}

/// Why bytes from a client could not be read; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("protocol level {0} is not MQTT 3.1.1 (4) or 5")]
    UnsupportedVersion(u8),
    #[error("a {kind} packet of {len} bytes is above the limit of {max} bytes")]
    TooLarge {
        kind: &'static str,
        len: usize,
        max: usize,
    },
}

/// What [`Framer::next`] found in the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete packet.
    Packet(Incoming),
    /// A PUBLISH above the packet limit, fully read past (3.1.1). Its payload here is only
    /// the first [`EXCERPT_BYTES`] bytes.
    Oversize { publish: Publish, len: usize },
    /// More bytes are needed.
    Incomplete,
}

/// Bytes of an oversize publish's payload kept for its dead letter.
pub const EXCERPT_BYTES: usize = 256;

/// An oversize PUBLISH being skipped.
#[derive(Debug)]
struct Skipping {
    publish: Publish,
    len: usize,
    /// Body bytes still to drop.
    left: usize,
}

/// Cuts a client's byte stream into packets. One per connection: it remembers a body it is
/// skipping across reads.
#[derive(Debug)]
pub struct Framer {
    version: Version,
    /// The largest packet taken, bytes (fixed header included).
    max_packet_bytes: usize,
    skipping: Option<Skipping>,
}

impl Framer {
    /// A framer for the first packet (CONNECT), before the version is known.
    pub fn new(max_packet_bytes: usize) -> Self {
        Framer {
            version: Version::V311,
            max_packet_bytes,
            skipping: None,
        }
    }

    /// From now on, packets are of `version`.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// Takes the next packet from the front of `buf`, if it is all there.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Frame, CodecError> {
        if let Some(s) = &mut self.skipping {
            let n = s.left.min(buf.len());
            let keep = (EXCERPT_BYTES - s.publish.payload.len().min(EXCERPT_BYTES)).min(n);
            if keep > 0 {
                let mut excerpt = BytesMut::from(&s.publish.payload[..]);
                excerpt.extend_from_slice(&buf[..keep]);
                s.publish.payload = excerpt.freeze();
            }
            buf.advance(n);
            s.left -= n;
            if s.left > 0 {
                return Ok(Frame::Incomplete);
            }
            let s = self.skipping.take().expect("checked above");
            return Ok(Frame::Oversize {
                publish: s.publish,
                len: s.len,
            });
        }
        let Some((header_len, remaining)) = fixed_header(buf)? else {
            return Ok(Frame::Incomplete);
        };
        let kind = buf[0] >> 4;
        let len = header_len + remaining;
        if len > self.max_packet_bytes {
            if kind != 3 || self.version == Version::V5 {
                return Err(CodecError::TooLarge {
                    kind: packet_name(kind),
                    len,
                    max: self.max_packet_bytes,
                });
            }
            return self.start_skipping(buf, header_len, remaining);
        }
        if buf.len() < len {
            buf.reserve(len - buf.len());
            return Ok(Frame::Incomplete);
        }
        let frame = buf.split_to(len);
        decode(self.version, frame).map(Frame::Packet)
    }

    /// Reads an oversize PUBLISH's topic and packet id (once they are in `buf`) and starts
    /// skipping its body.
    fn start_skipping(
        &mut self,
        buf: &mut BytesMut,
        header_len: usize,
        remaining: usize,
    ) -> Result<Frame, CodecError> {
        let qos = (buf[0] >> 1) & 0b11;
        let Some(topic_len) = buf
            .get(header_len..header_len + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        else {
            return Ok(Frame::Incomplete);
        };
        let var_len = 2 + topic_len + if qos > 0 { 2 } else { 0 };
        if var_len > remaining {
            return Err(CodecError::Malformed("topic longer than the packet".into()));
        }
        if buf.len() < header_len + var_len {
            return Ok(Frame::Incomplete);
        }
        let first = buf[0];
        buf.advance(header_len);
        let mut var = buf.split_to(var_len).freeze();
        var.advance(2);
        let topic = String::from_utf8(var.split_to(topic_len).to_vec())
            .map_err(|_| CodecError::Malformed("topic is not UTF-8".into()))?;
        let pkid = if qos > 0 { var.get_u16() } else { 0 };
        if qos > 2 || (qos > 0 && pkid == 0) {
            return Err(CodecError::Malformed("bad QoS or packet id 0".into()));
        }
        let _ = first;
        self.skipping = Some(Skipping {
            publish: Publish {
                topic,
                qos,
                pkid,
                payload: Bytes::new(),
                topic_alias: None,
            },
            len: header_len + remaining,
            left: remaining - var_len,
        });
        self.next(buf)
    }
}

/// The fixed header at the front of `buf`: its length and the remaining length; `None` when
/// not all of it is there yet.
fn fixed_header(buf: &[u8]) -> Result<Option<(usize, usize)>, CodecError> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((2 + i, remaining)));
        }
    }
    Err(CodecError::Malformed(
        "remaining length over 4 bytes".into(),
    ))
}

fn packet_name(kind: u8) -> &'static str {
    match kind {
        1 => "CONNECT",
        3 => "PUBLISH",
        8 => "SUBSCRIBE",
        10 => "UNSUBSCRIBE",
        _ => "control",
    }
}

fn malformed(e: impl std::fmt::Debug) -> CodecError {
    CodecError::Malformed(format!("{e:?}"))
}

/// Decodes one complete frame.
fn decode(version: Version, frame: BytesMut) -> Result<Incoming, CodecError> {
    if frame[0] >> 4 == 1 {
        return decode_connect(frame);
    }
    match version {
        Version::V311 => decode_v4(frame),
        Version::V5 => decode_v5(frame),
    }
}

/// A CONNECT of either version: the protocol level decides which decoder reads it.
fn decode_connect(mut frame: BytesMut) -> Result<Incoming, CodecError> {
    let (header_len, _) = fixed_header(&frame)?.ok_or_else(|| malformed("short CONNECT"))?;
    // Protocol name ("MQTT", length-prefixed), then the level.
    let level = *frame
        .get(header_len + 6)
        .ok_or_else(|| malformed("short CONNECT"))?;
    match level {
        4 => match v4::Packet::read(&mut frame, usize::MAX).map_err(malformed)? {
            v4::Packet::Connect(c) => Ok(Incoming::Connect(Connect {
                version: Version::V311,
                session_expiry_seconds: if c.clean_session { 0 } else { u32::MAX },
                client_id: c.client_id,
                clean: c.clean_session,
                keep_alive: c.keep_alive,
                username: c.login.as_ref().map(|l| l.username.clone()),
                password: c.login.map(|l| l.password.into_bytes()),
                will: c.last_will.map(|w| Will {
                    topic: w.topic,
                    payload: w.message,
                    qos: w.qos as u8,
                }),
                receive_maximum: u16::MAX,
                max_packet_bytes: None,
            })),
            _ => Err(malformed("not a CONNECT")),
        },
        5 => match v5::Packet::read(&mut frame, None).map_err(malformed)? {
            v5::Packet::Connect(c, will, login) => {
                let props = c.properties.as_ref();
                let will = match will {
                    None => None,
                    Some(w) => Some(Will {
                        topic: String::from_utf8(w.topic.to_vec())
                            .map_err(|_| malformed("will topic is not UTF-8"))?,
                        payload: w.message,
                        qos: w.qos as u8,
                    }),
                };
                Ok(Incoming::Connect(Connect {
                    version: Version::V5,
                    client_id: c.client_id,
                    clean: c.clean_start,
                    keep_alive: c.keep_alive,
                    username: login
                        .as_ref()
                        .map(|l| l.username.clone())
                        .filter(|u| !u.is_empty()),
                    password: login
                        .map(|l| l.password.into_bytes())
                        .filter(|p| !p.is_empty()),
                    will,
                    session_expiry_seconds: props
                        .and_then(|p| p.session_expiry_interval)
                        .unwrap_or(0),
                    receive_maximum: props
                        .and_then(|p| p.receive_maximum)
                        .unwrap_or(u16::MAX)
                        .max(1),
                    max_packet_bytes: props.and_then(|p| p.max_packet_size),
                }))
            }
            _ => Err(malformed("not a CONNECT")),
        },
        other => Err(CodecError::UnsupportedVersion(other)),
    }
}

fn decode_v4(mut frame: BytesMut) -> Result<Incoming, CodecError> {
    Ok(
        match v4::Packet::read(&mut frame, usize::MAX).map_err(malformed)? {
            v4::Packet::Publish(p) => Incoming::Publish(Publish {
                topic: p.topic,
                qos: p.qos as u8,
                pkid: p.pkid,
                payload: p.payload,
                topic_alias: None,
            }),
            v4::Packet::PubAck(a) => Incoming::PubAck { pkid: a.pkid },
            v4::Packet::PubRel(a) => Incoming::PubRel { pkid: a.pkid },
            v4::Packet::PubRec(a) => Incoming::PubRec { pkid: a.pkid },
            v4::Packet::PubComp(a) => Incoming::PubComp { pkid: a.pkid },
            v4::Packet::Subscribe(s) => Incoming::Subscribe {
                pkid: s.pkid,
                filters: s
                    .filters
                    .into_iter()
                    .map(|f| (f.path, f.qos as u8))
                    .collect(),
            },
            v4::Packet::Unsubscribe(u) => Incoming::Unsubscribe {
                pkid: u.pkid,
                filters: u.topics,
            },
            v4::Packet::PingReq => Incoming::PingReq,
            v4::Packet::Disconnect => Incoming::Disconnect { reason: 0 },
            v4::Packet::Connect(_) => unreachable!("CONNECT is decoded by decode_connect"),
            other => return Err(malformed(format!("a client may not send {other:?}"))),
        },
    )
}

fn decode_v5(mut frame: BytesMut) -> Result<Incoming, CodecError> {
    // A DISCONNECT or AUTH without a body means reason 0x00 (5 §3.14.2.1, §3.15.2.1);
    // rumqttc's reader wants a body.
    match &frame[..] {
        [0xE0, 0] => return Ok(Incoming::Disconnect { reason: 0 }),
        [0xF0, 0] => return Ok(Incoming::Auth),
        _ => {}
    }
    Ok(
        match v5::Packet::read(&mut frame, None).map_err(malformed)? {
            v5::Packet::Publish(p) => Incoming::Publish(Publish {
                topic: String::from_utf8(p.topic.to_vec())
                    .map_err(|_| malformed("topic is not UTF-8"))?,
                qos: p.qos as u8,
                pkid: p.pkid,
                payload: p.payload,
                topic_alias: p.properties.and_then(|p| p.topic_alias),
            }),
            v5::Packet::PubAck(a) => Incoming::PubAck { pkid: a.pkid },
            v5::Packet::PubRel(a) => Incoming::PubRel { pkid: a.pkid },
            v5::Packet::PubRec(a) => Incoming::PubRec { pkid: a.pkid },
            v5::Packet::PubComp(a) => Incoming::PubComp { pkid: a.pkid },
            v5::Packet::Subscribe(s) => Incoming::Subscribe {
                pkid: s.pkid,
                filters: s
                    .filters
                    .into_iter()
                    .map(|f| (f.path, f.qos as u8))
                    .collect(),
            },
            v5::Packet::Unsubscribe(u) => Incoming::Unsubscribe {
                pkid: u.pkid,
                filters: u.filters,
            },
            v5::Packet::PingReq(_) => Incoming::PingReq,
            v5::Packet::Disconnect(d) => Incoming::Disconnect {
                reason: d.reason_code as u8,
            },
            v5::Packet::Auth(_) => Incoming::Auth,
            v5::Packet::Connect(..) => unreachable!("CONNECT is decoded by decode_connect"),
            other => return Err(malformed(format!("a client may not send {other:?}"))),
        },
    )
}

/// What the endpoint's CONNACK tells a 5 client about the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerLimits {
    /// Receive Maximum: QoS 1 publishes the client may have unacknowledged.
    pub receive_maximum: u16,
    /// Maximum Packet Size, bytes.
    pub max_packet_bytes: u32,
    /// Topic Alias Maximum (0 = none).
    pub topic_alias_maximum: u16,
    /// Assigned Client Identifier, when the client sent an empty one.
    pub assigned_client_id: Option<String>,
}

/// One packet the endpoint sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing<'a> {
    /// `code` is the 3.1.1 return code or the 5 reason code, as fits `version`.
    ConnAck {
        session_present: bool,
        code: u8,
        limits: Option<&'a ServerLimits>,
    },
    /// `reason` is 5's reason code (0 = success); 3.1.1 has none.
    PubAck {
        pkid: u16,
        reason: u8,
    },
    PubRec {
        pkid: u16,
    },
    PubComp {
        pkid: u16,
    },
    SubAck {
        pkid: u16,
        codes: &'a [u8],
    },
    UnsubAck {
        pkid: u16,
        count: usize,
    },
    PingResp,
    /// 5 only.
    Disconnect {
        reason: u8,
        text: &'a str,
    },
    Publish {
        topic: &'a str,
        qos: u8,
        pkid: u16,
        payload: &'a [u8],
    },
}

/// A variable byte integer (the remaining length, a property length).
fn put_varint(buf: &mut BytesMut, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        buf.put_u8(b);
        if n == 0 {
            break;
        }
    }
}

fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s.as_bytes());
}

impl Outgoing<'_> {
    /// Appends the packet's bytes to `buf`.
    pub fn encode(&self, version: Version, buf: &mut BytesMut) {
        let v5 = version == Version::V5;
        match *self {
            Outgoing::ConnAck {
                session_present,
                code,
                limits,
            } => {
                let mut props = BytesMut::new();
                if v5 && let Some(l) = limits {
                    props.put_u8(0x21);
                    props.put_u16(l.receive_maximum);
                    props.put_u8(0x24); // Maximum QoS
                    props.put_u8(1);
                    props.put_u8(0x25); // Retain Available
                    props.put_u8(0);
                    props.put_u8(0x27);
                    props.put_u32(l.max_packet_bytes);
                    props.put_u8(0x22);
                    props.put_u16(l.topic_alias_maximum);
                    props.put_u8(0x29); // Subscription Identifiers Available
                    props.put_u8(0);
                    props.put_u8(0x2A); // Shared Subscription Available
                    props.put_u8(0);
                    if let Some(id) = &l.assigned_client_id {
                        props.put_u8(0x12);
                        put_str(&mut props, id);
                    }
                }
                buf.put_u8(0x20);
                if v5 {
                    put_varint(buf, 2 + varint_len(props.len()) + props.len());
                    buf.put_u8(u8::from(session_present));
                    buf.put_u8(code);
                    put_varint(buf, props.len());
                    buf.put_slice(&props);
                } else {
                    buf.put_u8(2);
                    buf.put_u8(u8::from(session_present));
                    buf.put_u8(code);
                }
            }
            Outgoing::PubAck { pkid, reason } => {
                buf.put_u8(0x40);
                if v5 && reason != 0 {
                    buf.put_u8(3);
                    buf.put_u16(pkid);
                    buf.put_u8(reason);
                } else {
                    buf.put_u8(2);
                    buf.put_u16(pkid);
                }
            }
            Outgoing::PubRec { pkid } => {
                buf.put_u8(0x50);
                buf.put_u8(2);
                buf.put_u16(pkid);
            }
            Outgoing::PubComp { pkid } => {
                buf.put_u8(0x70);
                buf.put_u8(2);
                buf.put_u16(pkid);
            }
            Outgoing::SubAck { pkid, codes } => {
                buf.put_u8(0x90);
                put_varint(buf, 2 + usize::from(v5) + codes.len());
                buf.put_u16(pkid);
                if v5 {
                    buf.put_u8(0);
                }
                buf.put_slice(codes);
            }
            Outgoing::UnsubAck { pkid, count } => {
                buf.put_u8(0xB0);
                if v5 {
                    put_varint(buf, 3 + count);
                    buf.put_u16(pkid);
                    buf.put_u8(0);
                    for _ in 0..count {
                        buf.put_u8(0);
                    }
                } else {
                    buf.put_u8(2);
                    buf.put_u16(pkid);
                }
            }
            Outgoing::PingResp => {
                buf.put_u8(0xD0);
                buf.put_u8(0);
            }
            Outgoing::Disconnect { reason, text } => {
                if !v5 {
                    return; // 3.1.1: the server just closes the connection
                }
                buf.put_u8(0xE0);
                let props = if text.is_empty() { 0 } else { 3 + text.len() };
                put_varint(buf, 1 + varint_len(props) + props);
                buf.put_u8(reason);
                put_varint(buf, props);
                if !text.is_empty() {
                    buf.put_u8(0x1F); // Reason String
                    put_str(buf, text);
                }
            }
            Outgoing::Publish {
                topic,
                qos,
                pkid,
                payload,
            } => {
                buf.put_u8(0x30 | (qos << 1));
                let len =
                    2 + topic.len() + if qos > 0 { 2 } else { 0 } + usize::from(v5) + payload.len();
                put_varint(buf, len);
                put_str(buf, topic);
                if qos > 0 {
                    buf.put_u16(pkid);
                }
                if v5 {
                    buf.put_u8(0);
                }
                buf.put_slice(payload);
            }
        }
    }
}

/// The encoded size of an outgoing PUBLISH, bytes (to respect a 5 client's Maximum Packet
/// Size).
pub fn publish_size(version: Version, topic: &str, qos: u8, payload_len: usize) -> usize {
    let len = 2
        + topic.len()
        + if qos > 0 { 2 } else { 0 }
        + usize::from(version == Version::V5)
        + payload_len;
    1 + varint_len(len) + len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_bytes(p: v4::Packet) -> BytesMut {
        let mut b = BytesMut::new();
        p.write(&mut b, usize::MAX).unwrap();
        b
    }

    fn v5_bytes(p: v5::Packet) -> BytesMut {
        let mut b = BytesMut::new();
        p.write(&mut b, None).unwrap();
        b
    }

    fn connect_v4(clean: bool) -> BytesMut {
        let mut c = v4::Connect::new("dev-1");
        c.clean_session = clean;
        c.keep_alive = 30;
        c.set_login("acme/t1", "pw");
        v4_bytes(v4::Packet::Connect(c))
    }

    #[test]
    fn a_311_connect_and_publish_stream_is_cut_at_every_byte_boundary() {
        let mut wire = connect_v4(false);
        for i in 1..=3u16 {
            let mut p = v4::Publish::new(
                "landport/acme/t1/telemetry",
                rumqttc::QoS::AtLeastOnce,
                vec![b'x'; 10],
            );
            p.pkid = i;
            wire.extend_from_slice(&v4_bytes(v4::Packet::Publish(p)));
        }
        let mut f = Framer::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            loop {
                match f.next(&mut buf).unwrap() {
                    Frame::Incomplete => break,
                    Frame::Packet(p) => got.push(p),
                    Frame::Oversize { .. } => panic!("nothing is oversize"),
                }
            }
        }
        assert_eq!(got.len(), 4);
        let Incoming::Connect(c) = &got[0] else {
            panic!()
        };
        assert_eq!(c.version, Version::V311);
        assert!(!c.clean);
        assert_eq!(c.username.as_deref(), Some("acme/t1"));
        assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
        assert_eq!(c.session_expiry_seconds, u32::MAX);
        let Incoming::Publish(p) = &got[3] else {
            panic!()
        };
        assert_eq!((p.pkid, p.qos, p.payload.len()), (3, 1, 10));
    }

    #[test]
    fn an_oversize_311_publish_is_skipped_with_its_topic_and_an_excerpt() {
        let mut p = v4::Publish::new(
            "landport/acme/t1/telemetry",
            rumqttc::QoS::AtLeastOnce,
            vec![b'y'; 5000],
        );
        p.pkid = 7;
        let mut wire = v4_bytes(v4::Packet::Publish(p));
        wire.extend_from_slice(&v4_bytes(v4::Packet::PingReq));
        let mut f = Framer::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(700) {
            buf.extend_from_slice(chunk);
            assert!(buf.len() <= 1400, "the body is never buffered whole");
            loop {
                match f.next(&mut buf).unwrap() {
                    Frame::Incomplete => break,
                    other => got.push(other),
                }
            }
        }
        let Frame::Oversize { publish, len } = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(publish.topic, "landport/acme/t1/telemetry");
        assert_eq!((publish.pkid, publish.qos), (7, 1));
        assert_eq!(publish.payload.len(), EXCERPT_BYTES);
        assert!(*len > 5000);
        assert_eq!(got[1], Frame::Packet(Incoming::PingReq));
    }

    #[test]
    fn an_oversize_publish_from_a_v5_client_or_any_other_big_packet_is_an_error() {
        let mut f = Framer::new(1024);
        f.set_version(Version::V5);
        let p = v5::Publish::new(
            "landport/a/b/telemetry",
            rumqttc::v5::mqttbytes::QoS::AtMostOnce,
            vec![0u8; 2000],
            None,
        );
        let mut buf = v5_bytes(v5::Packet::Publish(p));
        assert!(matches!(f.next(&mut buf), Err(CodecError::TooLarge { .. })));
    }

    #[test]
    fn a_v5_connect_carries_its_properties() {
        let mut props = v5::ConnectProperties::new();
        props.session_expiry_interval = Some(3600);
        props.receive_maximum = Some(10);
        props.max_packet_size = Some(4096);
        let c = v5::Connect {
            keep_alive: 5,
            client_id: "app".into(),
            clean_start: false,
            properties: Some(props),
        };
        let will = v5::LastWill::new(
            "landport/a/b/telemetry",
            "{}",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            None,
        );
        let mut buf = v5_bytes(v5::Packet::Connect(c, Some(will), None));
        let Frame::Packet(Incoming::Connect(c)) = Framer::new(1 << 20).next(&mut buf).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.version, Version::V5);
        assert_eq!(c.session_expiry_seconds, 3600);
        assert_eq!(c.receive_maximum, 10);
        assert_eq!(c.max_packet_bytes, Some(4096));
        assert_eq!(c.will.unwrap().topic, "landport/a/b/telemetry");
    }

    #[test]
    fn what_we_encode_decodes_with_rumqttc() {
        let limits = ServerLimits {
            receive_maximum: 100,
            max_packet_bytes: 1 << 20,
            topic_alias_maximum: 16,
            assigned_client_id: Some("auto-1".into()),
        };
        let mut b = BytesMut::new();
        Outgoing::ConnAck {
            session_present: true,
            code: 0,
            limits: Some(&limits),
        }
        .encode(Version::V5, &mut b);
        Outgoing::PubAck {
            pkid: 9,
            reason: 0x87,
        }
        .encode(Version::V5, &mut b);
        Outgoing::SubAck {
            pkid: 2,
            codes: &[1, 0x80],
        }
        .encode(Version::V5, &mut b);
        Outgoing::Publish {
            topic: "landport/a/b/events",
            qos: 1,
            pkid: 3,
            payload: b"{}",
        }
        .encode(Version::V5, &mut b);
        Outgoing::Disconnect {
            reason: 0x95,
            text: "too big",
        }
        .encode(Version::V5, &mut b);
        let v5::Packet::ConnAck(ack) = v5::Packet::read(&mut b, None).unwrap() else {
            panic!()
        };
        let p = ack.properties.unwrap();
        assert_eq!(
            (p.receive_max, p.max_qos, p.topic_alias_max),
            (Some(100), Some(1), Some(16))
        );
        assert_eq!(p.assigned_client_identifier.as_deref(), Some("auto-1"));
        let v5::Packet::PubAck(a) = v5::Packet::read(&mut b, None).unwrap() else {
            panic!()
        };
        assert_eq!((a.pkid, a.reason), (9, v5::PubAckReason::NotAuthorized));
        let v5::Packet::SubAck(s) = v5::Packet::read(&mut b, None).unwrap() else {
            panic!()
        };
        assert_eq!(s.return_codes.len(), 2);
        let v5::Packet::Publish(p) = v5::Packet::read(&mut b, None).unwrap() else {
            panic!()
        };
        assert_eq!((p.pkid, &p.payload[..]), (3, &b"{}"[..]));
        let left = b.len();
        assert_eq!(left, publish_size_check(&mut b));

        let mut b = BytesMut::new();
        Outgoing::ConnAck {
            session_present: false,
            code: 5,
            limits: None,
        }
        .encode(Version::V311, &mut b);
        Outgoing::PubAck {
            pkid: 4,
            reason: 0x87,
        }
        .encode(Version::V311, &mut b);
        Outgoing::UnsubAck { pkid: 5, count: 2 }.encode(Version::V311, &mut b);
        let v4::Packet::ConnAck(c) = v4::Packet::read(&mut b, usize::MAX).unwrap() else {
            panic!()
        };
        assert_eq!(c.code, v4::ConnectReturnCode::NotAuthorized);
        assert_eq!(
            v4::Packet::read(&mut b, usize::MAX).unwrap(),
            v4::Packet::PubAck(v4::PubAck::new(4))
        );
        assert!(matches!(
            v4::Packet::read(&mut b, usize::MAX).unwrap(),
            v4::Packet::UnsubAck(_)
        ));
    }

    /// Reads the DISCONNECT left in `b` and returns how many bytes it was.
    fn publish_size_check(b: &mut BytesMut) -> usize {
        let n = b.len();
        let v5::Packet::Disconnect(d) = v5::Packet::read(b, None).unwrap() else {
            panic!()
        };
        assert_eq!(d.reason_code, v5::DisconnectReasonCode::PacketTooLarge);
        n
    }

    #[test]
    fn a_v5_disconnect_without_a_body_is_a_normal_one() {
        let mut f = Framer::new(1024);
        f.set_version(Version::V5);
        let mut buf = BytesMut::from(&[0xE0u8, 0][..]);
        assert_eq!(
            f.next(&mut buf).unwrap(),
            Frame::Packet(Incoming::Disconnect { reason: 0 })
        );
    }

    #[test]
    fn publish_size_matches_the_encoding() {
        for (v, qos) in [(Version::V311, 0), (Version::V311, 1), (Version::V5, 1)] {
            let mut b = BytesMut::new();
            let payload = vec![1u8; 300];
            Outgoing::Publish {
                topic: "a/b",
                qos,
                pkid: 1,
                payload: &payload,
            }
            .encode(v, &mut b);
            assert_eq!(b.len(), publish_size(v, "a/b", qos, 300));
        }
    }
}
