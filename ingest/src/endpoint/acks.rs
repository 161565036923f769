//! Acknowledgements of the endpoint: what a connection owes its client, in order.
//!
//! Every QoS 1 (and 3.1.1 QoS 2) PUBLISH a connection reads takes a slot in its [`AckQueue`],
//! in arrival order. A publish that goes to the pipeline carries a [`PubAckToken`] naming its
//! slot; the pipeline settles it once the reading is durable (or drops it: not durable).
//! A publish the endpoint answers itself (refused by the ACL) has its slot filled at once.
//! The connection's writer sends the PUBACKs of the filled prefix of the queue only, so they
//! go out in the order the publishes came (MQTT 3.1.1 §4.6, 5 §4.6) whatever settles first,
//! and all the acks one commit releases leave in one write.
//!
//! [`EndpointAcks`] is the endpoint's side of the pipeline's
//! [`Acknowledger`](landport_pipeline::Acknowledger): it settles tokens and hands dead letters
//! to the subscribers of `rejected` topics.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use landport_pipeline::{Acknowledger, DeadLetter};
use tokio::sync::{Notify, broadcast};

use super::codec::{Outgoing, Version};

/// What a slot is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckKind {
    /// QoS 1: PUBACK (with a reason code in 5).
    PubAck,
    /// 3.1.1 QoS 2: PUBREC, then PUBCOMP when the client's PUBREL comes.
    PubRec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Pending,
    /// Answer with this reason code (0 = success).
    Ready(u8),
    /// The pipeline dropped the message without making it durable: the connection closes,
    /// and the client sends it again.
    Abandoned,
}

#[derive(Debug)]
struct Slot {
    pkid: u16,
    kind: AckKind,
    state: SlotState,
}

/// A connection's acknowledgements and other packets waiting for its writer. Shared by the
/// connection's reader (adds slots, queues control packets), the tokens (fill slots) and the
/// writer (takes what is ready); see [`ConnShared`].
#[derive(Debug, Default)]
pub(crate) struct AckQueue {
    slots: VecDeque<Slot>,
    /// The number of the slot at the front (slots are numbered in arrival order).
    front: u64,
    /// Encoded control packets (CONNACK, SUBACK, PINGRESP, ...), sent with the next write.
    pub(crate) control: BytesMut,
    /// Packet ids of the client's PUBACKs for our publishes, for the writer's window.
    pub(crate) client_acks: Vec<u16>,
    /// The connection is to end once what is queued is written (a protocol error, a
    /// takeover, a slot abandoned).
    pub(crate) closing: bool,
}

impl AckQueue {
    /// Takes a slot for a publish; returns its number.
    pub(crate) fn push(&mut self, pkid: u16, kind: AckKind, ready: Option<u8>) -> u64 {
        self.slots.push_back(Slot {
            pkid,
            kind,
            state: ready.map_or(SlotState::Pending, SlotState::Ready),
        });
        self.front + self.slots.len() as u64 - 1
    }

    fn settle(&mut self, n: u64, state: SlotState) {
        if let Some(i) = n.checked_sub(self.front)
            && let Some(slot) = self.slots.get_mut(i as usize)
        {
            slot.state = state;
        }
    }

    /// Encodes the answers of the ready prefix into `buf`; returns how many. An abandoned slot
    /// at the front marks the connection closing.
    pub(crate) fn take_ready(&mut self, version: Version, buf: &mut BytesMut) -> usize {
        let mut n = 0;
        while let Some(slot) = self.slots.front() {
            match slot.state {
                SlotState::Pending => break,
                SlotState::Abandoned => {
                    self.closing = true;
                    break;
                }
                SlotState::Ready(reason) => {
                    match slot.kind {
                        AckKind::PubAck => Outgoing::PubAck {
                            pkid: slot.pkid,
                            reason,
                        },
                        AckKind::PubRec => Outgoing::PubRec { pkid: slot.pkid },
                    }
                    .encode(version, buf);
                    self.slots.pop_front();
                    self.front += 1;
                    n += 1;
                }
            }
        }
        n
    }

    /// Slots not answered yet.
    #[cfg(test)]
    pub(crate) fn outstanding(&self) -> usize {
        self.slots.len()
    }
}

/// State shared by one connection's reader, writer and tokens.
#[derive(Debug)]
pub(crate) struct ConnShared {
    /// Held for a push, a settle or a take, never across `.await`.
    pub(crate) queue: Mutex<AckQueue>,
    /// Wakes the writer; permits coalesce, so many settles cost one wake-up.
    pub(crate) wake: Notify,
}

impl ConnShared {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ConnShared {
            queue: Mutex::new(AckQueue::default()),
            wake: Notify::new(),
        })
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, AckQueue> {
        // Every change under it is a single field write or push: a panic leaves it whole.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Acknowledges one publish to its client once the pipeline made it durable. Dropping it
/// unacknowledged closes the connection at that point of its acks, so the client sends that
/// publish (and those after it) again.
#[derive(Debug)]
pub struct PubAckToken {
    shared: Arc<ConnShared>,
    n: u64,
    settled: bool,
}

impl PubAckToken {
    pub(crate) fn new(shared: Arc<ConnShared>, n: u64) -> Self {
        PubAckToken {
            shared,
            n,
            settled: false,
        }
    }

    /// The publish is durable: its PUBACK may go.
    pub fn ack(mut self) {
        self.settle(SlotState::Ready(0));
    }

    fn settle(&mut self, state: SlotState) {
        if !self.settled {
            self.settled = true;
            self.shared.lock().settle(self.n, state);
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for PubAckToken {
    fn drop(&mut self) {
        self.settle(SlotState::Abandoned);
    }
}

/// The endpoint as the pipeline's [`Acknowledger`]: settles [`PubAckToken`]s and hands dead
/// letters to the subscribers of `landport/{tenant}/{device}/rejected` (QoS 0, live only:
/// they are not stored). Cheap to clone.
#[derive(Debug, Clone)]
pub struct EndpointAcks {
    dead_letters: broadcast::Sender<Arc<DeadLetter>>,
}

impl EndpointAcks {
    /// Dead letters not yet taken by a slow subscriber's session beyond this are skipped for
    /// it (QoS 0).
    const DEAD_LETTER_BUFFER: usize = 1_024;

    pub fn new() -> Self {
        EndpointAcks {
            dead_letters: broadcast::channel(Self::DEAD_LETTER_BUFFER).0,
        }
    }

    /// Where the sessions read dead letters from.
    pub(crate) fn dead_letters(&self) -> broadcast::Sender<Arc<DeadLetter>> {
        self.dead_letters.clone()
    }
}

impl Default for EndpointAcks {
    fn default() -> Self {
        Self::new()
    }
}

impl Acknowledger for EndpointAcks {
    type Ack = PubAckToken;

    async fn ack(&self, ack: PubAckToken) {
        ack.ack();
    }

    fn dead_letter(&self, letter: DeadLetter) {
        // Err only when nobody subscribes: nothing to do.
        let _ = self.dead_letters.send(Arc::new(letter));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubacks_leave_in_arrival_order_whatever_settles_first() {
        let shared = ConnShared::new();
        let (a, b, c) = {
            let mut q = shared.lock();
            (
                q.push(1, AckKind::PubAck, None),
                q.push(2, AckKind::PubAck, None),
                q.push(3, AckKind::PubAck, Some(0x87)),
            )
        };
        let (ta, tb) = (
            PubAckToken::new(shared.clone(), a),
            PubAckToken::new(shared.clone(), b),
        );
        let _ = c;
        tb.ack();
        let mut buf = BytesMut::new();
        assert_eq!(shared.lock().take_ready(Version::V5, &mut buf), 0);
        ta.ack();
        assert_eq!(shared.lock().take_ready(Version::V5, &mut buf), 3);
        assert_eq!(
            &buf[..],
            &[0x40, 2, 0, 1, 0x40, 2, 0, 2, 0x40, 3, 0, 3, 0x87][..]
        );
        assert_eq!(shared.lock().outstanding(), 0);
    }

    #[test]
    fn a_dropped_token_closes_the_connection_at_its_place() {
        let shared = ConnShared::new();
        let n = shared.lock().push(1, AckKind::PubAck, None);
        let m = shared.lock().push(2, AckKind::PubRec, None);
        PubAckToken::new(shared.clone(), m).ack();
        drop(PubAckToken::new(shared.clone(), n));
        let mut buf = BytesMut::new();
        let mut q = shared.lock();
        assert_eq!(q.take_ready(Version::V311, &mut buf), 0);
        assert!(q.closing);
    }
}
