//! Which of our publishes the broker has acknowledged. Pure: rumqttc's events in, the waiters
//! to tell out; no I/O, no clock.
//!
//! rumqttc gives a QoS 1 publish its packet id only when its event loop takes the request off
//! the queue, and reports it then as `Outgoing::Publish(pkid)`; the broker's PUBACK names
//! that pkid. The request queue is FIFO, so the publisher keeps one entry per publish it
//! queues, in queue order (under the same lock as the queueing), and this pairs each
//! `Outgoing::Publish` with the oldest entry, then each PUBACK with the entry of its pkid.
//!
//! rumqttc writes a request once, except that (a) a publish whose pkid is still in flight
//! (a broker acking out of order) waits as a "collision" and is reported when that pkid is
//! acked, after the PUBACK, and (b) after a connection loss it re-sends what was in flight
//! with the same pkids. (a) pairs correctly as it is; the driver prevents (b) by dropping
//! every publish from rumqttc's queues on a connection loss ([`PublishAcks::lost`]), since
//! after a loss rumqttc may also drop them itself (a new session): their waiters learn the
//! publish was lost and publish again. A write of a pkid still in flight is taken as a
//! re-send all the same, and pairs with nothing.

use std::collections::{HashMap, VecDeque};

/// Our publishes from rumqttc's request queue to their PUBACK. `T` is what to tell: the
/// source uses an optional oneshot sender (none for fire-and-forget publishes).
#[derive(Debug)]
pub(crate) struct PublishAcks<T> {
    /// One entry per publish in rumqttc's request queue, oldest first.
    queued: VecDeque<T>,
    /// Written QoS 1 publishes awaiting their PUBACK, by packet id.
    in_flight: HashMap<u16, T>,
}

impl<T> Default for PublishAcks<T> {
    fn default() -> Self {
        PublishAcks {
            queued: VecDeque::new(),
            in_flight: HashMap::new(),
        }
    }
}

impl<T> PublishAcks<T> {
    /// A publish entered rumqttc's request queue (call it in queue order).
    pub(crate) fn queued(&mut self, t: T) {
        self.queued.push_back(t);
    }

    /// The publish just queued with [`PublishAcks::queued`] was refused by the queue (full):
    /// forget it.
    pub(crate) fn refused(&mut self) -> Option<T> {
        self.queued.pop_back()
    }

    /// rumqttc wrote a publish with `pkid` (0 for QoS 0). Returns what to tell now: a QoS 0
    /// publish is done once written; a QoS 1 one waits for [`PublishAcks::acked`].
    pub(crate) fn written(&mut self, pkid: u16) -> Option<T> {
        if pkid != 0 && self.in_flight.contains_key(&pkid) {
            // A re-send of what is in flight (see the module docs).
            return None;
        }
        let t = self.queued.pop_front()?;
        if pkid == 0 {
            return Some(t);
        }
        self.in_flight.insert(pkid, t);
        None
    }

    /// The broker acknowledged `pkid`: returns what to tell, if that pkid was ours in flight.
    pub(crate) fn acked(&mut self, pkid: u16) -> Option<T> {
        self.in_flight.remove(&pkid)
    }

    /// Every publish queued or in flight is gone (the driver dropped them from rumqttc's
    /// queues, or stopped): returns what to tell, oldest queued first, then those in flight.
    pub(crate) fn lost(&mut self) -> Vec<T> {
        let mut in_flight: Vec<(u16, T)> = self.in_flight.drain().collect();
        in_flight.sort_by_key(|(pkid, _)| *pkid);
        self.queued
            .drain(..)
            .chain(in_flight.into_iter().map(|(_, t)| t))
            .collect()
    }

    /// Publishes queued or in flight.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.queued.len() + self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_puback_names_the_publish_queued_in_its_place() {
        let mut p = PublishAcks::default();
        for name in ["a", "b", "c"] {
            p.queued(name);
        }
        assert_eq!(p.written(1), None);
        assert_eq!(p.written(2), None);
        // Acks out of order are fine: each pkid names one publish.
        assert_eq!(p.acked(2), Some("b"));
        assert_eq!(p.written(3), None);
        assert_eq!(p.acked(1), Some("a"));
        assert_eq!(p.acked(3), Some("c"));
        assert_eq!(p.acked(3), None, "acked once");
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn a_pkid_used_again_after_its_ack_names_the_next_publish() {
        let mut p = PublishAcks::default();
        p.queued("a");
        p.queued("b");
        assert_eq!(p.written(1), None);
        // rumqttc reports a collided publish after the ack that frees its pkid.
        assert_eq!(p.acked(1), Some("a"));
        assert_eq!(p.written(1), None);
        assert_eq!(p.acked(1), Some("b"));
    }

    #[test]
    fn a_resend_of_a_publish_in_flight_pairs_with_nothing() {
        let mut p = PublishAcks::default();
        p.queued("a");
        p.queued("b");
        assert_eq!(p.written(1), None);
        assert_eq!(p.written(1), None);
        assert_eq!(p.pending(), 2);
        assert_eq!(p.written(2), None);
        assert_eq!(p.acked(1), Some("a"));
        assert_eq!(p.acked(2), Some("b"));
    }

    #[test]
    fn qos0_is_done_when_written_and_a_refused_publish_is_forgotten() {
        let mut p = PublishAcks::default();
        p.queued("q0");
        p.queued("refused");
        assert_eq!(p.refused(), Some("refused"));
        assert_eq!(p.written(0), Some("q0"));
        assert_eq!(p.written(0), None, "nothing queued");
    }

    #[test]
    fn a_loss_hands_back_everything_queued_and_in_flight() {
        let mut p = PublishAcks::default();
        for name in ["a", "b", "c", "d"] {
            p.queued(name);
        }
        p.written(7);
        p.written(5);
        assert_eq!(p.lost(), ["c", "d", "b", "a"]);
        assert_eq!(p.pending(), 0);
        assert_eq!(p.acked(7), None);
        // The next publish starts afresh.
        p.queued("e");
        assert_eq!(p.written(7), None);
        assert_eq!(p.acked(7), Some("e"));
    }
}
