//! The live state readings and API commands are applied to: the tracker and the device
//! registry (for `ingest.auto_register = false`), with the counters of what was applied. Pure
//! and synchronous: the pipeline task owns one `Core` and drives it; the decoders in front of
//! it (landport-ingest) hand it readings, never bytes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use landport_store::TelemetryRow;
use landport_tracker::{Applied, Event, Reading, TimestampMs, Tracker};

use crate::log_limit::KeyedLogLimiter;
use crate::metrics::Metrics;

/// What a batch of messages produced, to be made durable together.
#[derive(Debug, Default)]
pub struct Output {
    /// Accepted readings (current and late), in the order the tracker applied them.
    pub rows: Vec<TelemetryRow>,
    pub events: Vec<Event>,
    /// Rejections to publish to `landport/{tenant}/{device}/rejected`.
    pub dead_letters: Vec<DeadLetter>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.events.is_empty() && self.dead_letters.is_empty()
    }
}

/// A rejection notice for the dead-letter topic.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Why [`Core::apply`] took nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The device is not registered to the tenant and auto-registration is off.
    Unregistered,
}

/// The tracker and the registry, and what applying readings to them counts.
pub struct Core {
    tracker: Tracker,
    /// Accept readings from devices not registered to their tenant.
    auto_register: bool,
    /// Devices registered through the API, by tenant (looked up by `&str`, no allocation per
    /// reading).
    registered: HashMap<String, HashSet<String>>,
    metrics: Arc<Metrics>,
    log_limit: KeyedLogLimiter,
    scratch: Vec<Reading>,
}

impl Core {
    pub fn new(tracker: Tracker, auto_register: bool, metrics: Arc<Metrics>) -> Self {
        Core {
            tracker,
            auto_register,
            registered: HashMap::new(),
            metrics,
            log_limit: KeyedLogLimiter::new(Duration::from_secs(10)),
            scratch: Vec::new(),
        }
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn tracker_mut(&mut self) -> &mut Tracker {
        &mut self.tracker
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether readings of this device are taken in (registered, or auto-registration on).
    pub fn accepts(&self, tenant: &str, device: &str) -> bool {
        self.auto_register
            || self
                .registered
                .get(tenant)
                .is_some_and(|devices| devices.contains(device))
    }

    /// Marks a device as registered to a tenant (or not), for `auto_register = false`.
    pub fn set_registered(&mut self, tenant: &str, device: &str, registered: bool) {
        if registered {
            self.registered
                .entry(tenant.to_owned())
                .or_default()
                .insert(device.to_owned());
        } else if let Some(devices) = self.registered.get_mut(tenant) {
            devices.remove(device);
        }
    }

    /// Applies one device's readings (a store-and-forward batch in time order), received at
    /// server time `now_ms`: rows for the accepted ones (current and late; duplicates are
    /// dropped) and the events they caused go to `out`.
    pub fn apply(
        &mut self,
        tenant: &str,
        device: &str,
        readings: &[Reading],
        now_ms: TimestampMs,
        out: &mut Output,
    ) -> Result<(), Refused> {
        if !self.accepts(tenant, device) {
            return Err(Refused::Unregistered);
        }
        if readings.is_empty() {
            return Ok(());
        }
        let slot = self.tracker.device_slot(tenant, device);
        self.scratch.clear();
        self.scratch.extend_from_slice(readings);
        self.scratch.sort_by_key(|r| r.ts_ms);
        let first_event = out.events.len();
        for r in &self.scratch {
            match self.tracker.apply(slot, r, now_ms, &mut out.events) {
                Applied::Duplicate => {
                    self.metrics.readings_duplicate.inc();
                    continue;
                }
                Applied::Late => self.metrics.readings_late.inc(),
                Applied::Current => self.metrics.readings_accepted.inc(),
            };
            out.rows.push(TelemetryRow {
                tenant: tenant.to_owned(),
                device: device.to_owned(),
                shipment: self.tracker.device_shipment(slot).map(str::to_owned),
                reading: *r,
                received_ms: now_ms,
            });
        }
        for e in &out.events[first_event..] {
            self.metrics.event(e.kind.as_str());
        }
        Ok(())
    }

    /// Re-applies a stored reading after a restart (no registry check). Events it re-derives
    /// carry the ids they had the first time.
    pub fn replay(&mut self, row: &TelemetryRow, out: &mut Vec<Event>) {
        let slot = self.tracker.device_slot(&row.tenant, &row.device);
        self.tracker.apply(slot, &row.reading, row.received_ms, out);
    }

    /// Fires what is due at `now_ms` (offline, dwell, excursions) and tidies the indexes.
    pub fn tick(&mut self, now_ms: TimestampMs, out: &mut Output) {
        self.fire_timers(now_ms, out);
        self.tracker.maintain();
    }

    /// Server time (epoch ms) at which [`Core::fire_timers`] next has something to do.
    pub fn next_deadline(&self) -> Option<TimestampMs> {
        self.tracker.next_deadline()
    }

    /// Rebuilds the tracker's position indexes where that pays (call it every second or so).
    pub fn maintain(&mut self) {
        self.tracker.maintain();
    }

    /// Fires what is due at `now_ms`: offline, dwell, excursions.
    pub fn fire_timers(&mut self, now_ms: TimestampMs, out: &mut Output) {
        let first = out.events.len();
        let stalled_before = self.tracker.stalled_timers();
        self.tracker.on_timer(now_ms, &mut out.events);
        let stalled = self.tracker.stalled_timers() - stalled_before;
        if stalled > 0 {
            self.metrics.tracker_stalled_timers.inc_by(stalled);
            if let Some(suppressed) = self.log_limit.allow("stalled_timer") {
                tracing::error!(
                    stalled,
                    suppressed,
                    "tracker deadlines due that no rule could advance were skipped (a bug)"
                );
            }
        }
        for e in &out.events[first..] {
            self.metrics.event(e.kind.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use landport_tracker::TrackerSettings;

    use super::*;

    const T0: i64 = 1_795_400_000_000;

    fn fix(t_s: i64) -> Reading {
        Reading::at(T0 + t_s * 1000).with_position(123.0, 41.0)
    }

    #[test]
    fn only_registered_devices_are_applied_unless_auto_register() {
        let mut core = Core::new(
            Tracker::new(TrackerSettings::default()),
            false,
            Metrics::new(),
        );
        let mut out = Output::default();
        assert_eq!(
            core.apply("acme", "t1", &[fix(0)], T0, &mut out),
            Err(Refused::Unregistered)
        );
        core.set_registered("acme", "t1", true);
        assert!(!core.accepts("globex", "t1"), "registration is per tenant");
        core.apply("acme", "t1", &[fix(0)], T0, &mut out).unwrap();
        assert_eq!(out.rows.len(), 1);
        core.set_registered("acme", "t1", false);
        assert!(!core.accepts("acme", "t1"));
        let mut open = Core::new(
            Tracker::new(TrackerSettings::default()),
            true,
            Metrics::new(),
        );
        assert!(open.apply("any", "one", &[fix(0)], T0, &mut out).is_ok());
    }

    #[test]
    fn a_batch_is_applied_in_time_order_duplicates_dropped_late_ones_stored() {
        let mut core = Core::new(
            Tracker::new(TrackerSettings::default()),
            true,
            Metrics::new(),
        );
        let mut out = Output::default();
        core.apply("acme", "t1", &[fix(20), fix(10), fix(10)], T0, &mut out)
            .unwrap();
        let ts: Vec<i64> = out.rows.iter().map(|r| r.reading.ts_ms - T0).collect();
        assert_eq!(ts, [10_000, 20_000], "sorted, the duplicate dropped");
        core.apply("acme", "t1", &[fix(5)], T0, &mut out).unwrap();
        assert_eq!(out.rows.len(), 3, "a late reading is stored");
        assert_eq!(core.metrics().readings_duplicate.get(), 1);
        assert_eq!(core.metrics().readings_late.get(), 1);
        assert_eq!(core.metrics().readings_accepted.get(), 2);
    }
}
