//! Shipment rules for a fix: departure, arrival, route corridor (deviated, rejoined), ETA
//! (changed) and late risk.

use serde_json::json;

use super::{RuleCtx, Transition, uncertain};
use crate::device::DeviceState;
use crate::eta;
use crate::event::{EventType, format_rfc3339};
use crate::geodesy;
use crate::reading::Fix;
use crate::shipment::{Place, ShipmentDef, ShipmentState, ShipmentStatus};
use crate::tracker::plans::{ShipmentPlan, remaining};

/// Departure, arrival, route corridor and ETA for one shipment carried by a device that just
/// reported a fix at `ctx.ts`; `transitions` are the fence transitions that fix confirmed.
pub(in crate::tracker) fn eval_shipment_fix(
    ctx: &mut RuleCtx,
    d: &DeviceState,
    sh: &mut ShipmentState,
    plan: &ShipmentPlan,
    fix: &Fix,
    transitions: &[Transition],
) {
    let settings = ctx.settings;
    let ts = ctx.ts;
    if !sh.status.is_active() {
        return;
    }
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
            if inside && !sh.at_destination {
                arrive_at = Some(ts);
            }
            sh.at_destination = inside;
        }
        Place::Geofence(_) => {
            for t in transitions {
                if Some(t.slot) == plan.destination_slot && t.entered {
                    arrive_at = Some(t.crossing_ms);
                }
            }
        }
    }
    let sid = sh.def.id.clone();
    if let (Some(at), ShipmentStatus::Planned) = (depart_at, sh.status) {
        sh.status = ShipmentStatus::InTransit;
        sh.departed_ms = Some(at);
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
    if let (Some(route), ShipmentStatus::InTransit) = (&plan.route, sh.status) {
        let p = route.project(fix.lon, fix.lat);
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

    // ETA.
    let Some((remaining_m, method)) = remaining(settings, plan, fix) else {
        return;
    };
    let under_way = sh.status != ShipmentStatus::Planned;
    let e = eta::estimate(remaining_m, method, &d.speed, &settings.eta, ts, under_way);
    sh.eta = Some(e);
    if sh.status != ShipmentStatus::InTransit {
        return;
    }
    match sh.announced_eta_ms {
        None => sh.announced_eta_ms = Some(e.eta_ms),
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
