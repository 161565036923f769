//! Geofence rules: entry and exit with their confirmation window and accuracy test, the
//! estimated crossing time, and dwell.

use serde_json::json;

use super::{RuleCtx, Scratch, Transition, uncertain};
use crate::device::{DeviceState, Membership, NearFences};
use crate::event::{EventType, format_rfc3339};
use crate::geofence::GeofenceDef;
use crate::reading::{Fix, TimestampMs};

/// Geofence transitions for one fix at `ctx.ts`: candidates from the R-tree plus the fences
/// the device is already in (or pending on), exact tests, accuracy, confirmation window,
/// crossing time. `generation` is the tenant's fence generation (see `NearFences`); confirmed
/// transitions are left in `scratch.transitions` for the shipment rules.
pub(in crate::tracker) fn eval_fences(
    ctx: &mut RuleCtx,
    generation: u64,
    d: &mut DeviceState,
    fix: &Fix,
    prev: Option<(Fix, TimestampMs)>,
    scratch: &mut Scratch,
) {
    let fences = ctx.fences;
    let ts = ctx.ts;
    let Scratch { slots, transitions } = scratch;
    if !d.near.covers(generation, fix.lon, fix.lat) {
        d.near.generation = generation;
        d.near.bbox = NearFences::box_around(fix.lon, fix.lat);
        d.near.slots.clear();
        fences.candidates_in_box(d.near.bbox, &mut d.near.slots);
    }
    slots.clear();
    slots.extend_from_slice(&d.near.slots);
    if slots.is_empty() && d.memberships.is_empty() {
        return;
    }
    slots.extend(d.memberships.iter().map(|m| m.slot));
    slots.sort_unstable();
    slots.dedup();
    let accuracy = fix.accuracy_m.filter(|a| *a > 0.0);
    for &slot in slots.iter() {
        let idx = d.memberships.iter().position(|m| m.slot == slot);
        let Some(fence) = fences.get(slot) else {
            if let Some(i) = idx {
                d.memberships.swap_remove(i);
            }
            continue;
        };
        let def = fence.def();
        let inside_now = fence.contains(fix.lon, fix.lat);
        let confirm_ms = def.confirm_seconds.unwrap_or(ctx.settings.confirm_seconds) as i64 * 1000;
        let Some(i) = idx else {
            if !inside_now {
                continue;
            }
            if uncertain(accuracy, || fence.boundary_distance_m(fix.lon, fix.lat)) {
                continue;
            }
            // Outside -> inside begins. A device's very first fix has no old side: it is inside
            // at once, and the entry is announced once the window has held.
            let first_fix = prev.is_none();
            let crossing = crossing_time(prev, fix, ts, |lon, lat| {
                fence.boundary_distance_m(lon, lat)
            });
            d.memberships.push(Membership {
                slot,
                inside: first_fix,
                announced: false,
                crossing_ms: crossing,
                pending_since_ms: Some(ts),
                pending_crossing_ms: crossing,
                dwell_fired: false,
            });
            let i = d.memberships.len() - 1;
            if confirm_ms == 0 {
                confirm(ctx, &d.id, &mut d.memberships[i], def, transitions);
            }
            continue;
        };
        let m = &mut d.memberships[i];
        let unsure = || uncertain(accuracy, || fence.boundary_distance_m(fix.lon, fix.lat));
        match (m.inside, inside_now) {
            (false, false) => {
                // A pending entry whose device is outside again: abandoned.
                if !unsure() {
                    d.memberships.swap_remove(i);
                }
                continue;
            }
            (false, true) => {
                // A pending entry holding: confirm once the window has passed.
                let since = m.pending_since_ms.unwrap_or(ts);
                if ts - since >= confirm_ms && !unsure() {
                    confirm(ctx, &d.id, m, def, transitions);
                }
                continue;
            }
            (true, true) => {
                if !m.announced {
                    // First-fix visit: announce once it has held for the window.
                    let since = m.pending_since_ms.unwrap_or(ts);
                    if ts - since >= confirm_ms && !unsure() {
                        confirm(ctx, &d.id, m, def, transitions);
                    }
                } else if m.pending_since_ms.is_some() && !unsure() {
                    // Back inside before a pending exit held: jitter, forget it.
                    m.pending_since_ms = None;
                }
                continue;
            }
            (true, false) => {
                if unsure() {
                    continue;
                }
                if !m.announced {
                    // Left before its first-fix visit was announced: nothing to say.
                    d.memberships.swap_remove(i);
                    continue;
                }
            }
        }
        // Confirmed inside, observed outside.
        if m.pending_since_ms.is_none() {
            m.pending_since_ms = Some(ts);
            m.pending_crossing_ms = crossing_time(prev, fix, ts, |lon, lat| {
                fence.boundary_distance_m(lon, lat)
            });
        }
        if ts - m.pending_since_ms.unwrap_or(ts) >= confirm_ms {
            let m = d.memberships.swap_remove(i);
            let duration_s = (m.pending_crossing_ms - m.crossing_ms) as f64 / 1000.0;
            ctx.emit(
                ctx.event(EventType::GeofenceExited, &d.id)
                    .at(m.pending_crossing_ms)
                    .geofence(def.id.as_str())
                    .discriminator(m.pending_since_ms.unwrap_or(ts))
                    .data(json!({ "name": def.name, "kind": def.kind,
                        "entered_at": format_rfc3339(m.crossing_ms), "duration_s": duration_s })),
            );
            transitions.push(Transition {
                slot,
                entered: false,
                crossing_ms: m.pending_crossing_ms,
            });
        }
    }
    for m in d.memberships.iter_mut() {
        fire_dwell_if_due(ctx, &d.id, m);
    }
}

/// Estimated time the device crossed the boundary between its previous fix (old side) and
/// this one (new side), interpolated by their distances to the boundary.
fn crossing_time(
    prev: Option<(Fix, TimestampMs)>,
    fix: &Fix,
    ts: TimestampMs,
    boundary_distance_m: impl Fn(f64, f64) -> f64,
) -> TimestampMs {
    let Some((p, pts)) = prev else {
        return ts;
    };
    let d0 = boundary_distance_m(p.lon, p.lat);
    let d1 = boundary_distance_m(fix.lon, fix.lat);
    if !(d0 + d1 > 0.0) || pts >= ts {
        return ts;
    }
    pts + ((ts - pts) as f64 * d0 / (d0 + d1)).round() as TimestampMs
}

/// Confirms a pending entry (or a first-fix visit) of `device` and announces it.
fn confirm(
    ctx: &mut RuleCtx,
    device: &str,
    m: &mut Membership,
    def: &GeofenceDef,
    transitions: &mut Vec<Transition>,
) {
    let since = m.pending_since_ms.unwrap_or(m.pending_crossing_ms);
    m.inside = true;
    m.announced = true;
    m.crossing_ms = m.pending_crossing_ms;
    m.pending_since_ms = None;
    m.dwell_fired = false;
    ctx.emit(
        ctx.event(EventType::GeofenceEntered, device)
            .at(m.crossing_ms)
            .geofence(def.id.as_str())
            .discriminator(since)
            .data(json!({ "name": def.name, "kind": def.kind })),
    );
    transitions.push(Transition {
        slot: m.slot,
        entered: true,
        crossing_ms: m.crossing_ms,
    });
}

/// Fires `geofence.dwell` for `device` once its confirmed visit has lasted the fence's
/// `dwell_seconds` by device time `ctx.ts`. Its time is the moment the dwell was reached,
/// whether a reading or a timer noticed, so the id is the same either way.
pub(in crate::tracker) fn fire_dwell_if_due(ctx: &mut RuleCtx, device: &str, m: &mut Membership) {
    if !(m.inside && m.announced) || m.dwell_fired {
        return;
    }
    let fences = ctx.fences;
    let Some(def) = fences.get(m.slot).map(|f| f.def()) else {
        return;
    };
    let Some(dwell) = def.dwell_seconds else {
        return;
    };
    let at = m.crossing_ms + dwell as i64 * 1000;
    if ctx.ts >= at {
        m.dwell_fired = true;
        ctx.emit(
            ctx.event(EventType::GeofenceDwell, device)
                .at(at)
                .geofence(def.id.as_str())
                .discriminator(m.crossing_ms)
                .data(
                    json!({ "name": def.name, "kind": def.kind, "dwell_seconds": dwell,
                    "entered_at": format_rfc3339(m.crossing_ms) }),
                ),
        );
    }
}
