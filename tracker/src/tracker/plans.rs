//! Shipment plans: what the shipment rules derive from a shipment's definition and the
//! tenant's fences, rebuilt when either changes.

use crate::fence_index::FenceIndex;
use crate::geodesy;
use crate::geofence::Shape;
use crate::reading::Fix;
use crate::route::Route;
use crate::settings::TrackerSettings;
use crate::shipment::{EtaMethod, Place, ShipmentState};

/// Derived from a shipment definition and the tenant's fences; rebuilt when either changes.
#[derive(Debug, Clone, Default)]
pub(super) struct ShipmentPlan {
    pub(super) route: Option<Route>,
    pub(super) origin_slot: Option<u32>,
    pub(super) destination_slot: Option<u32>,
    /// Point the direct ETA aims at: the destination point, or its geofence's centre.
    pub(super) destination_lonlat: Option<(f64, f64)>,
}

/// Distance still to go, along the planned route when there is one.
pub(super) fn remaining(
    settings: &TrackerSettings,
    plan: &ShipmentPlan,
    fix: &Fix,
) -> Option<(f64, EtaMethod)> {
    if let Some(route) = &plan.route {
        let p = route.project(fix.lon, fix.lat);
        let to_end = (route.length_m() - p.along_m).max(0.0);
        return Some((to_end + p.off_route_m, EtaMethod::Route));
    }
    let dest = plan.destination_lonlat?;
    let straight = geodesy::distance_m((fix.lon, fix.lat), dest);
    Some((straight * settings.eta.detour_factor, EtaMethod::Direct))
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
