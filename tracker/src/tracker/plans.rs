//! Shipment plans: what the shipment rules derive from a shipment's definition and the
//! tenant's fences, rebuilt when either changes.

use crate::device::DeviceState;
use crate::eta::{self, Ahead};
use crate::eta_history::EtaHistory;
use crate::fence_index::FenceIndex;
use crate::geodesy;
use crate::geofence::Shape;
use crate::reading::{Fix, TimestampMs};
use crate::route::{Projection, Route};
use crate::settings::TrackerSettings;
use crate::shipment::{Eta, EtaMethod, Place, ShipmentState, ShipmentStatus};

/// Derived from a shipment definition and the tenant's fences; rebuilt when either changes.
#[derive(Debug, Clone, Default)]
pub(super) struct ShipmentPlan {
    pub(super) route: Option<Route>,
    pub(super) origin_slot: Option<u32>,
    pub(super) destination_slot: Option<u32>,
    /// Point the direct ETA aims at: the destination point, or its geofence's centre.
    pub(super) destination_lonlat: Option<(f64, f64)>,
}

/// Behind the last progress, a fix may still project this far back (GPS noise, a route
/// drawn roughly), metres.
const BACK_WINDOW_M: f64 = 1_000.0;
/// Ahead of the last progress, a fix may project this far plus [`MAX_SPEED_MPS`] times the
/// time since, metres.
const AHEAD_WINDOW_M: f64 = 2_000.0;
const MAX_SPEED_MPS: f64 = 70.0;
/// Within the window, the earliest part of the route within this much of the nearest
/// distance is taken (a later pass through the same place must wait its turn), metres.
const WINDOW_SLACK_M: f64 = 100.0;
/// A first fix near both the start and a later part of the route (a round trip) is taken to
/// be at the earliest part within this much of the nearest distance, metres.
const FIRST_FIX_SLACK_M: f64 = 200.0;

/// Where `fix` (at `ts`) is along the shipment's planned route: searched in a window around
/// its progress so far, so progress cannot jump to a parallel or returning leg; re-found on
/// the whole route only when the window holds nothing within the corridor and the route
/// elsewhere is much nearer (the vehicle rejoined further on, or the route changed).
pub(super) fn route_projection(
    settings: &TrackerSettings,
    route: &Route,
    sh: &ShipmentState,
    fix: &Fix,
    ts: TimestampMs,
) -> Projection {
    let trip = &sh.eta_trip;
    let progress = trip
        .progress_m
        .filter(|_| trip.route_m == Some(route.length_m()));
    let Some(p) = progress else {
        return route.project_earliest(fix.lon, fix.lat, FIRST_FIX_SLACK_M);
    };
    let since_s = trip
        .last_ts_ms()
        .map_or(f64::INFINITY, |t| ((ts - t) as f64 / 1000.0).max(0.0));
    let ahead = AHEAD_WINDOW_M + MAX_SPEED_MPS * since_s;
    let near = route.project_between(
        fix.lon,
        fix.lat,
        p - BACK_WINDOW_M,
        p + ahead,
        WINDOW_SLACK_M,
    );
    let corridor = sh.def.route_corridor_m.unwrap_or(settings.route_corridor_m);
    if near.off_route_m <= corridor {
        return near;
    }
    let all = route.project(fix.lon, fix.lat);
    if all.off_route_m <= corridor && all.off_route_m < 0.5 * near.off_route_m {
        all
    } else {
        near
    }
}

/// What lies ahead of the shipment: along the planned route from `proj` when there is one
/// (the learned part from the shipment's route times), else the straight distance to the
/// destination times the detour factor.
pub(super) fn ahead(
    settings: &TrackerSettings,
    plan: &ShipmentPlan,
    sh: &ShipmentState,
    proj: Option<Projection>,
    fix: &Fix,
) -> Option<Ahead> {
    if let (Some(route), Some(p)) = (&plan.route, proj) {
        let to_end = (route.length_m() - p.along_m).max(0.0);
        let off = if p.off_route_m.is_finite() {
            p.off_route_m
        } else {
            0.0
        };
        let (known_s, unknown_m) = match &sh.eta_trip.times {
            Some(t) => t.at(route, p.along_m),
            None => (0.0, to_end),
        };
        return Some(Ahead {
            remaining_m: to_end + off,
            method: EtaMethod::Route,
            known_s,
            unknown_m: unknown_m + off,
        });
    }
    let dest = plan.destination_lonlat?;
    let straight = geodesy::distance_m((fix.lon, fix.lat), dest);
    Some(Ahead::unlearned(
        straight * settings.eta.detour_factor,
        EtaMethod::Direct,
    ))
}

/// The shipment's ETA as of its device's latest fix, from its trip state as it stands (no
/// state changes: the read side uses it before the next fix), with the raw times to go and
/// the progress bucket.
pub(super) fn eta_now(
    settings: &TrackerSettings,
    plan: &ShipmentPlan,
    sh: &ShipmentState,
    d: &DeviceState,
    proj: Option<Projection>,
    history: &EtaHistory,
) -> Option<(Eta, eta::RawParts, usize)> {
    let fix = d.fix?;
    let proj = match (&plan.route, proj) {
        (Some(route), None) => Some(route_projection(settings, route, sh, &fix, d.fix_ts_ms)),
        (_, p) => p,
    };
    let a = ahead(settings, plan, sh, proj, &fix)?;
    let under_way = sh.status != ShipmentStatus::Planned;
    let k = if under_way { sh.eta_trip.k() } else { 1.0 };
    let v = if under_way {
        sh.eta_trip
            .planning_mps(&d.speed, &settings.eta, d.fix_ts_ms)
    } else {
        d.speed.planning_mps(&settings.eta)
    };
    let raw = eta::raw_parts(&a, k, v, history.learned_weight());
    let b = sh.eta_trip.bucket(a.remaining_m);
    let e = eta::estimate(&a, raw.raw_s, history.calibration(b), d.fix_ts_ms);
    Some((e, raw, b))
}

pub(super) fn plan_for(fences: &FenceIndex, sh: &ShipmentState) -> ShipmentPlan {
    let slot = |p: &Place| match p {
        Place::Geofence(id) => fences.slot_of(id),
        Place::Point { .. } => None,
    };
    let destination_lonlat = match &sh.def.destination {
        Place::Point { lon, lat } => Some((*lon, *lat)),
        Place::Geofence(id) => fences
            .slot_of(id)
            .and_then(|s| fences.get(s))
            .map(|g| shape_centre(&g.def().shape)),
    };
    ShipmentPlan {
        route: None,
        origin_slot: sh.def.origin.as_ref().and_then(slot),
        destination_slot: slot(&sh.def.destination),
        destination_lonlat,
    }
}

/// A representative point of a shape, the aim of a direct ETA.
fn shape_centre(shape: &Shape) -> (f64, f64) {
    use geo::Centroid;
    match shape {
        Shape::Circle { center, .. } => (center.x(), center.y()),
        Shape::Area(mp) => mp
            .centroid()
            .map(|c| (c.x(), c.y()))
            .unwrap_or((f64::NAN, f64::NAN)),
        Shape::Corridor { line, .. } => line
            .centroid()
            .map(|c| (c.x(), c.y()))
            .unwrap_or((f64::NAN, f64::NAN)),
    }
}
