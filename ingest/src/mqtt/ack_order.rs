//! The order PUBACKs go out in. Pure: settled tokens in, actions out; no I/O, no clock.
//!
//! MQTT 3.1.1 §4.6 requires a client to send PUBACKs in the order it received the PUBLISHes,
//! and brokers rely on it: rumqttd treats an ack as "everything up to here is done" and, on
//! a resumed session, sends again only what follows the newest ack, so an un-acked message
//! followed by acked ones would be lost. The pipeline may settle tokens in any order; this
//! holds each ack back until every earlier message of the same connection is acked.
//!
//! A token dropped without an ack (abandoned) leaves a hole that no later ack may pass. The
//! only MQTT way to get such a message again is a new session, so once an ack arrives that the
//! hole holds back, we ask for a reconnect: the broker then resends every un-acked message
//! (with new tokens), and the acks held back here are dropped (their messages come again too;
//! the pipeline drops the duplicates). Abandoned tokens at shutdown leave holes that no later
//! ack bumps into, so they cost nothing.

use std::collections::BTreeMap;

use rumqttc::QoS;

/// A token the pipeline acked or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Subscriber connection the message came on.
    pub generation: u64,
    /// Its place among that connection's QoS 1/2 messages, from 0.
    pub seq: u64,
    pub pkid: u16,
    pub qos: QoS,
    /// Acked (true) or dropped without an ack (false).
    pub acked: bool,
}

/// What to do next, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send the PUBACK (PUBREC for QoS 2) for `pkid`, if `generation` is still current.
    Release {
        generation: u64,
        pkid: u16,
        qos: QoS,
    },
    /// Drop the connection so the broker resends what we could not ack.
    Reconnect { generation: u64 },
}

/// What [`AckOrder::settle`] made of one token, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// From an older connection: dropped (the broker resends its message).
    Stale,
    /// Acked; released now or held for earlier ones.
    Acked,
    /// Dropped without an ack.
    Abandoned,
}

/// Ack ordering for the current subscriber connection.
#[derive(Debug, Default)]
pub(crate) struct AckOrder {
    generation: u64,
    /// The next seq whose ack may go out.
    next_seq: u64,
    /// Acks waiting for earlier ones: seq -> (pkid, qos).
    held: BTreeMap<u64, (u16, QoS)>,
    /// The lowest abandoned seq: nothing at or after it can be released on this connection.
    hole: Option<u64>,
    /// A reconnect was asked for on this connection; everything else of it is moot.
    reconnecting: bool,
}

impl AckOrder {
    /// Takes one settled token while `current` is the subscriber's connection generation,
    /// and appends what to do to `out`.
    pub(crate) fn settle(&mut self, s: Settled, current: u64, out: &mut Vec<Action>) -> Outcome {
        if s.generation != current {
            return Outcome::Stale;
        }
        if self.generation != current {
            *self = AckOrder {
                generation: current,
                ..AckOrder::default()
            };
        }
        let outcome = if s.acked {
            Outcome::Acked
        } else {
            Outcome::Abandoned
        };
        if self.reconnecting || s.seq < self.next_seq {
            // Moot, or settled twice (can't happen: tokens are not Clone).
            return outcome;
        }
        if s.acked {
            self.held.insert(s.seq, (s.pkid, s.qos));
            while let Some(&(pkid, qos)) = self.held.get(&self.next_seq) {
                if self.hole.is_some_and(|h| self.next_seq >= h) {
                    break;
                }
                self.held.remove(&self.next_seq);
                self.next_seq += 1;
                out.push(Action::Release {
                    generation: current,
                    pkid,
                    qos,
                });
            }
        } else {
            self.hole = Some(self.hole.map_or(s.seq, |h| h.min(s.seq)));
        }
        if let Some(h) = self.hole
            && self.held.keys().next_back().is_some_and(|&last| last > h)
        {
            self.reconnecting = true;
            self.held.clear();
            out.push(Action::Reconnect {
                generation: current,
            });
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q1: QoS = QoS::AtLeastOnce;

    fn ack(seq: u64) -> Settled {
        Settled {
            generation: 1,
            seq,
            pkid: seq as u16 + 100,
            qos: Q1,
            acked: true,
        }
    }

    fn drop_(seq: u64) -> Settled {
        Settled {
            acked: false,
            ..ack(seq)
        }
    }

    /// Feeds `tokens` at generation 1; returns the pkids released (minus 100) and whether a
    /// reconnect was asked for.
    fn run(order: &mut AckOrder, tokens: &[Settled]) -> (Vec<u64>, bool) {
        let mut out = Vec::new();
        for t in tokens {
            order.settle(*t, 1, &mut out);
        }
        let mut released = Vec::new();
        let mut reconnect = false;
        for a in out {
            match a {
                Action::Release {
                    pkid, generation, ..
                } => {
                    assert!(!reconnect, "a release after the reconnect");
                    assert_eq!(generation, 1);
                    released.push(u64::from(pkid) - 100);
                }
                Action::Reconnect { .. } => reconnect = true,
            }
        }
        (released, reconnect)
    }

    #[test]
    fn acks_in_order_go_out_at_once() {
        let mut o = AckOrder::default();
        assert_eq!(
            run(&mut o, &[ack(0), ack(1), ack(2)]),
            (vec![0, 1, 2], false)
        );
    }

    #[test]
    fn an_ack_waits_for_every_earlier_one() {
        let mut o = AckOrder::default();
        assert_eq!(run(&mut o, &[ack(2), ack(1)]), (vec![], false));
        assert_eq!(run(&mut o, &[ack(0)]), (vec![0, 1, 2], false));
        assert_eq!(run(&mut o, &[ack(4)]), (vec![], false));
        assert_eq!(run(&mut o, &[ack(3)]), (vec![3, 4], false));
    }

    #[test]
    fn a_dropped_token_forces_a_reconnect_only_once_a_later_ack_waits_on_it() {
        let mut o = AckOrder::default();
        // Acks before the hole still go out.
        assert_eq!(run(&mut o, &[ack(0), drop_(1)]), (vec![0], false));
        assert_eq!(run(&mut o, &[ack(2)]), (vec![], true));
        // Afterwards everything of this connection is moot.
        assert_eq!(run(&mut o, &[ack(3), drop_(4)]), (vec![], false));
    }

    #[test]
    fn dropped_tokens_at_the_end_cost_nothing() {
        // Shutdown: the last batch is acked, the messages behind it are dropped.
        let mut o = AckOrder::default();
        assert_eq!(
            run(&mut o, &[drop_(3), drop_(2), ack(0), ack(1)]),
            (vec![0, 1], false)
        );
    }

    #[test]
    fn an_ack_held_before_the_drop_also_forces_the_reconnect() {
        let mut o = AckOrder::default();
        assert_eq!(run(&mut o, &[ack(2)]), (vec![], false));
        assert_eq!(run(&mut o, &[drop_(1)]), (vec![], true));
        // The ack before the hole comes too late: its message is sent again as well.
        assert_eq!(run(&mut o, &[ack(0)]), (vec![], false));
    }

    #[test]
    fn tokens_of_an_older_connection_are_stale_and_a_new_one_starts_fresh() {
        let mut o = AckOrder::default();
        let mut out = Vec::new();
        assert_eq!(o.settle(ack(0), 2, &mut out), Outcome::Stale);
        assert!(out.is_empty());
        // Connection 2 numbers its messages from 0 again.
        let s = Settled {
            generation: 2,
            ..ack(0)
        };
        assert_eq!(o.settle(s, 2, &mut out), Outcome::Acked);
        assert_eq!(
            out,
            [Action::Release {
                generation: 2,
                pkid: 100,
                qos: Q1
            }]
        );
        // A reconnect on connection 2 does not carry over to connection 3.
        let mut out = Vec::new();
        for s in [drop_(1), ack(2)] {
            o.settle(Settled { generation: 2, ..s }, 2, &mut out);
        }
        assert_eq!(out, [Action::Reconnect { generation: 2 }]);
        let mut out = Vec::new();
        o.settle(
            Settled {
                generation: 3,
                ..ack(0)
            },
            3,
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }
}
