//! Cargo rules: temperature excursions (against the device's own range and each active
//! shipment's range) and weight changes (load, unload).

use serde_json::json;

use super::RuleCtx;
use crate::device::DeviceState;
use crate::event::{EventType, format_rfc3339};
use crate::shipment::{Excursion, ShipmentState, ShipmentStatus};

/// Temperature against the device's own range and each active shipment's range.
pub(in crate::tracker) fn eval_temperature(
    ctx: &mut RuleCtx,
    d: &mut DeviceState,
    shipments: &mut [Option<ShipmentState>],
    temp: f64,
) {
    if let Some(range) = d.profile.temp_range_c {
        excursion_step(ctx, &d.id, None, &mut d.excursion, range, temp);
    }
    for &s in &d.shipments {
        let Some(sh) = shipments[s as usize].as_mut() else {
            continue;
        };
        let Some(range) = sh.def.temp_range_c else {
            continue;
        };
        if !sh.status.is_active() && sh.excursion.is_none() {
            continue;
        }
        excursion_step(ctx, &d.id, Some(&sh.def.id), &mut sh.excursion, range, temp);
    }
}

/// How far a temperature lies outside `[min, max]` (0 inside).
fn outside_by(range: [f64; 2], temp: f64) -> f64 {
    (range[0] - temp).max(temp - range[1]).max(0.0)
}

/// One reading's temperature `temp` at `ctx.ts` against `range`, for the excursion `state` of
/// `device` (its own, or that of `shipment`): opens, deepens or closes an episode.
fn excursion_step(
    ctx: &mut RuleCtx,
    device: &str,
    shipment: Option<&str>,
    state: &mut Option<Excursion>,
    range: [f64; 2],
    temp: f64,
) {
    let ts = ctx.ts;
    let out_of_range = outside_by(range, temp) > 0.0;
    match (state.as_mut(), out_of_range) {
        (None, false) => {}
        (None, true) => {
            *state = Some(Excursion {
                begin_ms: ts,
                peak_c: temp,
                fired: false,
            });
        }
        (Some(e), true) => {
            if outside_by(range, temp) > outside_by(range, e.peak_c) {
                e.peak_c = temp;
            }
        }
        (Some(e), false) => {
            if e.fired {
                ctx.emit(
                    ctx.event(EventType::TemperatureRecovered, device)
                        .at(ts)
                        .shipment(shipment)
                        .discriminator(e.begin_ms)
                        .data(
                            json!({ "begin": format_rfc3339(e.begin_ms), "end": format_rfc3339(ts),
                            "duration_s": (ts - e.begin_ms) as f64 / 1000.0,
                            "peak_c": e.peak_c, "min_c": range[0], "max_c": range[1] }),
                        ),
                );
            }
            *state = None;
            return;
        }
    }
    if let Some(e) = state.as_mut() {
        fire_excursion_if_due(ctx, device, shipment, e, range);
    }
}

/// Fires `cargo.temperature_excursion` once the episode has lasted the grace period. Its time
/// is the moment the grace period ran out, whether a reading or a timer noticed, so the id is
/// the same either way.
pub(in crate::tracker) fn fire_excursion_if_due(
    ctx: &mut RuleCtx,
    device: &str,
    shipment: Option<&str>,
    e: &mut Excursion,
    range: [f64; 2],
) {
    let device_now = ctx.ts;
    let at = e.begin_ms + ctx.settings.temp_grace_seconds as i64 * 1000;
    if e.fired || device_now < at {
        return;
    }
    e.fired = true;
    ctx.emit(
        ctx.event(EventType::TemperatureExcursion, device)
            .at(at)
            .shipment(shipment)
            .discriminator(e.begin_ms)
            .data(json!({ "begin": format_rfc3339(e.begin_ms), "end": null,
                "duration_s": (device_now - e.begin_ms) as f64 / 1000.0,
                "peak_c": e.peak_c, "min_c": range[0], "max_c": range[1] })),
    );
}

/// Load and unload: a step of at least `weight_change_kg` from the last baseline, reported
/// with the geofence the device is in (preferring places where goods change hands).
pub(in crate::tracker) fn eval_weight(
    ctx: &mut RuleCtx,
    d: &mut DeviceState,
    shipments: &[Option<ShipmentState>],
    w: f64,
) {
    let settings = ctx.settings;
    let ts = ctx.ts;
    let Some(base) = d.weight_baseline_kg else {
        d.weight_baseline_kg = Some(w);
        return;
    };
    let delta = w - base;
    if delta.abs() < settings.weight_change_kg {
        return;
    }
    d.weight_baseline_kg = Some(w);
    let fences = ctx.fences;
    let rank = |kind: &str| match kind {
        "warehouse" | "customer" | "port" | "depot" => 0,
        "restricted" => 2,
        _ => 1,
    };
    let fence = d
        .memberships
        .iter()
        .filter(|m| m.inside)
        .filter_map(|m| fences.get(m.slot).map(|f| f.def()))
        .min_by(|a, b| rank(&a.kind).cmp(&rank(&b.kind)).then(a.id.cmp(&b.id)));
    let shipment = d
        .shipments
        .iter()
        .filter_map(|&s| shipments[s as usize].as_ref())
        .find(|s| s.status.is_active() || s.status == ShipmentStatus::Arrived)
        .map(|s| s.def.id.as_str());
    ctx.emit(
        ctx.event(EventType::WeightChanged, &d.id)
            .at(ts)
            .shipment(shipment)
            .geofence(fence.map(|f| f.id.as_str()))
            .data(json!({ "from_kg": base, "to_kg": w, "delta_kg": delta,
                "direction": if delta > 0.0 { "load" } else { "unload" } })),
    );
}
