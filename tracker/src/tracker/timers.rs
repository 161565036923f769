//! Timers: what happens when nothing arrives. Each device has at most one registered
//! deadline (server time) in a min-heap; `on_timer` fires what is due (offline, dwell,
//! excursions outlasting their grace period) and guards against deadlines no rule can advance.

use std::cmp::Reverse;

use serde_json::json;

use super::rules::{self, RuleCtx};
use super::{NO_TIMER, Tracker, touch};
use crate::event::{Event, EventType, format_rfc3339};
use crate::reading::TimestampMs;

impl Tracker {
    /// Server time at which `on_timer` next has something to do (it may find nothing, if the
    /// device reported meanwhile).
    pub fn next_deadline(&self) -> Option<TimestampMs> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Fires what is due at server time `now_ms`: offline devices, dwells, excursions that
    /// outlasted their grace period.
    pub fn on_timer(&mut self, now_ms: TimestampMs, out: &mut Vec<Event>) {
        let mut due: Vec<(TimestampMs, usize)> = Vec::new();
        loop {
            while let Some(&Reverse((deadline, slot))) = self.timers.peek() {
                if deadline > now_ms {
                    break;
                }
                self.timers.pop();
                let slot = slot as usize;
                if self.timer_at[slot] != deadline {
                    continue;
                }
                self.timer_at[slot] = NO_TIMER;
                // A registered deadline may be earlier than the device's real one (see
                // `arm_timer`): what is due is processed in the order of the real deadlines,
                // so a tracker restored from a snapshot, whose registrations are exact, fires
                // the same events in the same order.
                match self.device_deadline(slot) {
                    Some(real) if real <= now_ms => due.push((real, slot)),
                    _ => self.arm_timer(slot),
                }
            }
            if due.is_empty() {
                return;
            }
            due.sort_unstable();
            for (_, slot) in due.drain(..) {
                let fired = out.len();
                self.device_timers(slot, now_ms, out);
                if out.len() > fired {
                    touch(&mut self.changed_at, &mut self.change_seq, slot);
                }
                // Guard: a deadline still due after its device's timers ran is one no rule
                // can advance (the rules and `device_deadline` disagree: a bug). Re-arming it
                // would spin this loop forever on the ingest task; instead the device is left
                // unarmed until its next reading and the stall is counted for the caller to
                // log and export.
                match self.device_deadline(slot) {
                    Some(t) if t <= now_ms => self.stalled_timers += 1,
                    _ => self.arm_timer(slot),
                }
            }
        }
    }

    /// How many times `on_timer` met a deadline it could not advance (each a bug, guarded).
    pub fn stalled_timers(&self) -> u64 {
        self.stalled_timers
    }

    /// Registers the device's earliest deadline if it is earlier than the one registered.
    /// Lazily: a later deadline (each reading postpones "offline") is not registered until the
    /// earlier one comes due, so the heap does not fill with one stale entry per reading.
    pub(super) fn arm_timer(&mut self, slot: usize) {
        let Some(deadline) = self.device_deadline(slot) else {
            return;
        };
        if deadline < self.timer_at[slot] {
            self.timer_at[slot] = deadline;
            self.timers.push(Reverse((deadline, slot as u32)));
        }
    }

    /// Earliest server time at which something about this device becomes due.
    fn device_deadline(&self, slot: usize) -> Option<TimestampMs> {
        let d = &self.devices[slot];
        if d.removed {
            return None;
        }
        let (last_ts, received) = (d.last_ts_ms?, d.last_received_ms?);
        // Server time at which device time reaches `t`.
        let at = |t: TimestampMs| received.saturating_add(t.saturating_sub(last_ts));
        let mut best = NO_TIMER;
        if d.online {
            best = best.min(received + self.settings.offline_after_seconds as i64 * 1000);
        }
        let fences = &self.tenants[d.tenant as usize].fences;
        for m in &d.memberships {
            if m.inside
                && m.announced
                && !m.dwell_fired
                && let Some(dwell) = fences.get(m.slot).and_then(|f| f.def().dwell_seconds)
            {
                best = best.min(at(m.crossing_ms + dwell as i64 * 1000));
            }
        }
        // Only the excursions `device_timers` can fire: those with a range to fire against.
        let grace = self.settings.temp_grace_seconds as i64 * 1000;
        let own = d
            .excursion
            .as_ref()
            .filter(|_| d.profile.temp_range_c.is_some());
        let carried = d
            .shipments
            .iter()
            .filter_map(|&s| self.shipments[s as usize].as_ref())
            .filter(|s| s.def.temp_range_c.is_some())
            .filter_map(|s| s.excursion.as_ref());
        for e in own.into_iter().chain(carried) {
            if !e.fired {
                best = best.min(at(e.begin_ms + grace));
            }
        }
        #[cfg(test)]
        if let Some((stuck, t)) = self.stuck_deadline
            && stuck == slot
        {
            best = best.min(t);
        }
        (best != NO_TIMER).then_some(best)
    }

    /// Fires what is due for one device at server time `now_ms`.
    fn device_timers(&mut self, slot: usize, now_ms: TimestampMs, out: &mut Vec<Event>) {
        let Tracker {
            settings,
            tenants,
            devices,
            shipments,
            change_seq,
            changed_at,
            ..
        } = self;
        let d = &mut devices[slot];
        let (Some(last_ts), Some(received)) = (d.last_ts_ms, d.last_received_ms) else {
            return;
        };
        if d.removed {
            return;
        }
        let tenant = &tenants[d.tenant as usize];
        // Device time now, by the offset seen at the latest reading.
        let device_now = last_ts.saturating_add(now_ms - received);
        let mut ctx = RuleCtx {
            settings,
            tenant: &tenant.name,
            fences: &tenant.fences,
            ts: device_now,
            out,
        };

        let offline_ms = settings.offline_after_seconds as i64 * 1000;
        if d.online && now_ms - received >= offline_ms {
            d.online = false;
            touch(changed_at, change_seq, slot);
            ctx.emit(
                ctx.event(EventType::DeviceOffline, &d.id)
                    .at(last_ts + offline_ms)
                    .data(json!({ "last_seen": format_rfc3339(last_ts),
                        "offline_after_seconds": settings.offline_after_seconds })),
            );
        }
        for m in d.memberships.iter_mut() {
            rules::fences::fire_dwell_if_due(&mut ctx, &d.id, m);
        }
        if let Some(e) = d.excursion.as_mut()
            && let Some(range) = d.profile.temp_range_c
        {
            rules::cargo::fire_excursion_if_due(&mut ctx, &d.id, None, e, range);
        }
        for &s in &d.shipments {
            if let Some(sh) = shipments[s as usize].as_mut()
                && let (Some(e), Some(range)) = (sh.excursion.as_mut(), sh.def.temp_range_c)
            {
                rules::cargo::fire_excursion_if_due(&mut ctx, &d.id, Some(&sh.def.id), e, range);
            }
        }
    }
}
