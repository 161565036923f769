//! The event rules, by family, as free functions over split borrows of the tracker, so
//! `apply` can hold a device, its tenant and the shipments at once.
//!
//! Every rule takes a [`RuleCtx`]: what is the same for all the rules run on one reading (or
//! one timer of one device): settings, tenant, time and the output. The device is passed
//! beside it rather than in it, because the rules change the device's state while they name
//! it in events.

use crate::event::{Event, EventDraft, EventType};
use crate::fence_index::FenceIndex;
use crate::reading::TimestampMs;
use crate::settings::TrackerSettings;

pub(super) mod cargo;
pub(super) mod fences;
pub(super) mod shipments;
pub(super) mod speed;

/// What every rule needs besides the state it reads and changes.
pub(super) struct RuleCtx<'a> {
    pub(super) settings: &'a TrackerSettings,
    /// The tenant's name, as events carry it.
    pub(super) tenant: &'a str,
    /// The tenant's geofences.
    pub(super) fences: &'a FenceIndex,
    /// Device time now: the reading's `ts_ms`, or for a timer the device time by the offset
    /// seen at its latest reading.
    pub(super) ts: TimestampMs,
    /// Where the events go, in the order they happen.
    pub(super) out: &'a mut Vec<Event>,
}

impl<'a> RuleCtx<'a> {
    /// Starts an event of this tenant about `device`.
    pub(super) fn event<'b>(&self, kind: EventType, device: &'b str) -> EventDraft<'b>
    where
        'a: 'b,
    {
        Event::build(kind, self.tenant, device)
    }

    pub(super) fn emit(&mut self, event: Event) {
        self.out.push(event);
    }
}

/// A fence transition confirmed during one reading, handed to the shipment rules.
#[derive(Debug, Clone, Copy)]
pub(super) struct Transition {
    pub(super) slot: u32,
    pub(super) entered: bool,
    pub(super) crossing_ms: TimestampMs,
}

/// Buffers `apply` reuses, so the steady state does not allocate.
#[derive(Debug, Clone, Default)]
pub(super) struct Scratch {
    /// Fence slots to test against one fix.
    pub(super) slots: Vec<u32>,
    /// Transitions confirmed by the current reading.
    pub(super) transitions: Vec<Transition>,
}

/// Whether a reading's accuracy circle reaches the boundary, so it can't tell the side.
fn uncertain(accuracy_m: Option<f64>, boundary_distance_m: impl FnOnce() -> f64) -> bool {
    accuracy_m.is_some_and(|a| a > boundary_distance_m())
}
