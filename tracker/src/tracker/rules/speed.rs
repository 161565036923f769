//! Speed rules: the speed of a fix (reported, else derived) and overspeed.

use serde_json::json;

use super::RuleCtx;
use crate::device::DeviceState;
use crate::event::EventType;
use crate::reading::{Fix, TimestampMs};
use crate::shipment::ShipmentState;

/// Overspeed, against the tightest limit of the device's active shipments, else its profile,
/// else the tracker default. One event per episode; the episode ends a little under the limit
/// so a truck hovering at it doesn't flap.
pub(in crate::tracker) fn eval_overspeed(
    ctx: &mut RuleCtx,
    d: &mut DeviceState,
    shipments: &[Option<ShipmentState>],
    speed_kmh: Option<f64>,
) {
    let settings = ctx.settings;
    let Some(speed) = speed_kmh else { return };
    let mut limit: Option<(f64, Option<&str>)> = None;
    for &s in &d.shipments {
        if let Some(sh) = shipments[s as usize]
            .as_ref()
            .filter(|s| s.status.is_active())
            && let Some(l) = sh.def.max_speed_kmh
            && limit.is_none_or(|(cur, _)| l < cur)
        {
            limit = Some((l, Some(&sh.def.id)));
        }
    }
    let limit = limit
        .or(d.profile.max_speed_kmh.map(|l| (l, None)))
        .or((settings.max_speed_kmh > 0.0).then_some((settings.max_speed_kmh, None)));
    let Some((limit, shipment)) = limit else {
        d.overspeeding = false;
        return;
    };
    if speed > limit && !d.overspeeding {
        d.overspeeding = true;
        ctx.emit(
            ctx.event(EventType::DeviceOverspeed, &d.id)
                .at(ctx.ts)
                .shipment(shipment)
                .data(json!({ "speed_kmh": speed, "limit_kmh": limit })),
        );
    } else if speed <= limit - (limit * 0.05).max(2.0) {
        d.overspeeding = false;
    }
}

/// Speed from the previous fix to this one at `ts`, when they are far enough apart in time
/// for GPS jitter not to dominate (for fixes that report none).
pub(in crate::tracker) fn derived_kmh(
    prev: Option<(Fix, TimestampMs)>,
    fix: &Fix,
    ts: TimestampMs,
) -> Option<f64> {
    let (p, pts) = prev?;
    let dt = ts - pts;
    (dt >= 5_000).then(|| haversine_m((p.lon, p.lat), (fix.lon, fix.lat)) / (dt as f64) * 3600.0)
}

/// Great-circle distance in metres; accurate to ~0.5 %, plenty for a speed estimate, and several
/// times cheaper than the geodesic on the hot path.
fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    use geo::{Distance, Haversine, Point};
    Haversine.distance(Point::new(a.0, a.1), Point::new(b.0, b.1))
}
