//! Shipment rules for a fix: departure, arrival, route corridor (deviated, rejoined), ETA
//! (changed) and late risk.

use serde_json::json;

use super::{RuleCtx, Transition, uncertain};
use crate::device::DeviceState;
use crate::eta::{self, RouteTimes};
use crate::eta_history::EtaHistory;
use crate::event::{EventType, format_rfc3339};
use crate::geodesy;
use crate::reading::Fix;
use crate::shipment::{Place, ShipmentDef, ShipmentState, ShipmentStatus};
use crate::tracker::plans::{ShipmentPlan, ahead, eta_now, route_projection};

/// Departure, arrival, route corridor and ETA for one shipment carried by a device that just
/// reported a fix at `ctx.ts`; `transitions` are the fence transitions that fix confirmed.
pub(in crate::tracker) fn eval_shipment_fix(
    ctx: &mut RuleCtx,
    d: &DeviceState,
    sh: &mut ShipmentState,
    plan: &ShipmentPlan,
    fix: &Fix,
    transitions: &[Transition],
    history: &mut EtaHistory,
) {
    let settings = ctx.settings;
    let ts = ctx.ts;
    if !sh.status.is_active() {
        return;
    }
    // Progress along the planned route (windowed, so it does not jump between legs).
    let proj = plan.route.as_ref().map(|route| {
        if sh.eta_trip.route_m != Some(route.length_m()) {
            sh.eta_trip.start_over(route.length_m());
        }
        let p = route_projection(settings, route, sh, fix, ts);
        sh.eta_trip.progress_m = Some(p.along_m);
        p
    });
    // Route-aware arrival (SPEC section 17): with a planned route, the destination counts
    // only near the route's end; a pass through it earlier on is not an arrival.
    let near_end = match (&plan.route, proj) {
        (Some(route), Some(p)) => {
            let corridor = sh.def.route_corridor_m.unwrap_or(settings.route_corridor_m);
            route.length_m() - p.along_m <= corridor.max(2.0 * settings.place_radius_m)
        }
        _ => true,
    };
    let here = (fix.lon, fix.lat);
    let r = settings.place_radius_m;
    let mut depart_at = None;
    let mut arrive_at = None;
    match &sh.def.origin {
        Some(Place::Point { lon, lat }) => {
            let inside = geodesy::distance_m(here, (*lon, *lat)) <= r;
            if sh.at_origin && !inside {
                depart_at = Some(ts);
            }
            sh.at_origin = inside;
        }
        Some(Place::Geofence(_)) => {
            for t in transitions {
                if Some(t.slot) == plan.origin_slot && !t.entered {
                    depart_at = Some(t.crossing_ms);
                }
            }
        }
        None => match sh.anchor {
            None => sh.anchor = Some([fix.lon, fix.lat]),
            Some([lon, lat]) => {
                if geodesy::distance_m(here, (lon, lat)) > r {
                    depart_at = Some(ts);
                }
            }
        },
    }
    match &sh.def.destination {
        Place::Point { lon, lat } => {
            let inside = geodesy::distance_m(here, (*lon, *lat)) <= r;
            // Without a route: on entering. With one: the first fix inside near its end.
            if inside && (!sh.at_destination || plan.route.is_some()) && near_end {
                arrive_at = Some(ts);
            }
            sh.at_destination = inside;
        }
        Place::Geofence(_) => {
            for t in transitions {
                if Some(t.slot) == plan.destination_slot && t.entered && near_end {
                    arrive_at = Some(t.crossing_ms);
                }
            }
            // Entered earlier in the route, still inside now that the route is done.
            if arrive_at.is_none()
                && plan.route.is_some()
                && near_end
                && d.memberships
                    .iter()
                    .any(|m| Some(m.slot) == plan.destination_slot && m.inside)
            {
                arrive_at = Some(ts);
            }
        }
    }
    let sid = sh.def.id.clone();
    // Where `shipment.departed` went in `ctx.out`, to add the first ETA to it below.
    let mut departed_event = None;
    if let (Some(at), ShipmentStatus::Planned) = (depart_at, sh.status) {
        sh.status = ShipmentStatus::InTransit;
        sh.departed_ms = Some(at);
        departed_event = Some(ctx.out.len());
        ctx.emit(
            ctx.event(EventType::ShipmentDeparted, &d.id)
                .at(at)
                .shipment(sid.as_str())
                .geofence(origin_id(&sh.def))
                .data(json!({ "reference": sh.def.reference })),
        );
    }
    if let Some(at) = arrive_at
        && (sh.status == ShipmentStatus::InTransit || depart_at.is_none())
    {
        sh.status = ShipmentStatus::Arrived;
        sh.arrived_ms = Some(at);
        sh.eta = None;
        history.record_arrival(&sh.eta_trip.samples, &sh.eta_trip.parts, at);
        let late_by_s = sh
            .def
            .deadline_ms
            .map(|dl| ((at - dl) as f64 / 1000.0).max(0.0));
        let dest = match &sh.def.destination {
            Place::Geofence(id) => Some(id.as_str()),
            Place::Point { .. } => None,
        };
        ctx.emit(
            ctx.event(EventType::ShipmentArrived, &d.id)
                .at(at)
                .shipment(sid.as_str())
                .geofence(dest)
                .data(json!({ "reference": sh.def.reference, "late_by_s": late_by_s })),
        );
        return;
    }

    // Route corridor.
    let confirm_ms = settings.confirm_seconds as i64 * 1000;
    if let (Some(p), ShipmentStatus::InTransit) = (proj, sh.status) {
        let corridor = sh.def.route_corridor_m.unwrap_or(settings.route_corridor_m);
        let off = p.off_route_m > corridor;
        let unsure = uncertain(fix.accuracy_m, || (p.off_route_m - corridor).abs());
        if off == sh.deviated {
            if !unsure {
                sh.route_pending_since_ms = None;
            }
        } else if !unsure {
            let since = *sh.route_pending_since_ms.get_or_insert(ts);
            if ts - since >= confirm_ms {
                sh.deviated = off;
                sh.route_pending_since_ms = None;
                let kind = if off {
                    EventType::RouteDeviated
                } else {
                    EventType::RouteRejoined
                };
                ctx.emit(
                    ctx.event(kind, &d.id)
                        .at(since)
                        .shipment(sid.as_str())
                        .data(
                            json!({ "off_route_m": p.off_route_m, "corridor_m": corridor,
                            "along_m": p.along_m }),
                        ),
                );
            }
        }
    }

    // ETA: refresh the route's learned times now and then, fold this fix into the trip's
    // pace, estimate, and keep the first raw estimate of each progress bucket.
    if let Some(route) = &plan.route
        && sh.eta_trip.needs_times(route, ts)
    {
        sh.eta_trip.times = Some(RouteTimes::build(route, history, ts));
    }
    let under_way = sh.status != ShipmentStatus::Planned;
    if under_way && let Some(a) = ahead(settings, plan, sh, proj, fix) {
        sh.eta_trip
            .note_progress(ts, a.remaining_m, (fix.lon, fix.lat));
        let v = sh.eta_trip.planning_mps(&d.speed, &settings.eta, ts);
        sh.eta_trip.observe(ts, &a, v);
    }
    let Some((e, raw, _)) = eta_now(settings, plan, sh, d, proj, history) else {
        return;
    };
    if under_way {
        sh.eta_trip.sample(e.remaining_m, ts, raw);
    }
    sh.eta = Some(e);
    if sh.status != ShipmentStatus::InTransit {
        return;
    }
    match sh.announced_eta_ms {
        // The first ETA is announced too, so that the shipment's record can show what was
        // predicted when (SPEC 14): in the `shipment.departed` of this fix, or, when the
        // shipment was under way before an ETA could be computed, as a
        // `shipment.eta_changed` with no `previous`.
        None => {
            sh.announced_eta_ms = Some(e.eta_ms);
            let first = json!({ "eta": format_rfc3339(e.eta_ms),
                "p10": format_rfc3339(e.p10_ms), "p90": format_rfc3339(e.p90_ms),
                "remaining_m": e.remaining_m, "method": e.method.as_str(),
                "computed_at": format_rfc3339(e.computed_at_ms) });
            match departed_event.and_then(|i| ctx.out.get_mut(i)) {
                Some(departed) => {
                    if let (Some(data), serde_json::Value::Object(eta)) =
                        (departed.data.as_object_mut(), first)
                    {
                        data.extend(eta);
                    }
                }
                None => {
                    let mut data = first;
                    data["previous"] = serde_json::Value::Null;
                    ctx.emit(
                        ctx.event(EventType::ShipmentEtaChanged, &d.id)
                            .at(ts)
                            .shipment(sid.as_str())
                            .discriminator(e.eta_ms)
                            .data(data),
                    );
                }
            }
        }
        Some(prev) if eta::changed_enough(prev, &e, &settings.eta) => {
            sh.announced_eta_ms = Some(e.eta_ms);
            ctx.emit(
                ctx.event(EventType::ShipmentEtaChanged, &d.id)
                    .at(ts)
                    .shipment(sid.as_str())
                    .discriminator(e.eta_ms)
                    .data(
                        json!({ "eta": format_rfc3339(e.eta_ms), "previous": format_rfc3339(prev),
                        "p10": format_rfc3339(e.p10_ms), "p90": format_rfc3339(e.p90_ms),
                        "remaining_m": e.remaining_m, "method": e.method.as_str() }),
                    ),
            );
        }
        Some(_) => {}
    }
    if let Some(deadline) = sh.def.deadline_ms {
        let late = e.eta_ms > deadline;
        if late && !sh.late_risk {
            sh.late_risk = true;
            ctx.emit(
                ctx.event(EventType::ShipmentLateRisk, &d.id)
                    .at(ts)
                    .shipment(sid.as_str())
                    .data(json!({ "eta": format_rfc3339(e.eta_ms), "deadline": format_rfc3339(deadline),
                        "late_by_s": (e.eta_ms - deadline) as f64 / 1000.0,
                        "p10": format_rfc3339(e.p10_ms), "p90": format_rfc3339(e.p90_ms) })),
            );
        } else if !late {
            sh.late_risk = false;
        }
    }
}

fn origin_id(def: &ShipmentDef) -> Option<&str> {
    match &def.origin {
        Some(Place::Geofence(id)) => Some(id),
        _ => None,
    }
}
