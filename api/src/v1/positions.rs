//! `GET /v1/positions?bbox=` (GeoJSON FeatureCollection) and
//! `GET /v1/devices/nearby?lat=&lon=&radius_m=&limit=`, both from the tracker's spatial index.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use landport_tracker::{DeviceView, LiveView};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::view::{device_json, rfc3339_string};
use crate::auth::Caller;
use crate::error::{ApiError, Query};
use crate::state::ApiState;

/// Largest `limit` of `nearby`.
const MAX_NEARBY: usize = 1_000;
/// Largest `radius_m` of `nearby`: half the Earth's circumference.
const MAX_RADIUS_M: f64 = 20_037_508.0;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BboxParams {
    bbox: Option<String>,
}

/// `bbox=minLon,minLat,maxLon,maxLat`, degrees; `minLon > maxLon` crosses the antimeridian.
fn parse_bbox(s: &str) -> Result<[f64; 4], ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(format!(
            "bbox must be minLon,minLat,maxLon,maxLat in degrees: {why}"
        ))
    };
    let parts: Vec<&str> = s.split(',').collect();
    if parts.len() != 4 {
        return Err(bad(&format!("got {} values", parts.len())));
    }
    let mut b = [0.0; 4];
    for (slot, p) in b.iter_mut().zip(&parts) {
        *slot = p
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad(&format!("{p:?} is not a number")))?;
    }
    let [min_lon, min_lat, max_lon, max_lat] = b;
    if !(-180.0..=180.0).contains(&min_lon) || !(-180.0..=180.0).contains(&max_lon) {
        return Err(bad("longitudes must be in [-180, 180]"));
    }
    if !(-90.0..=90.0).contains(&min_lat) || !(-90.0..=90.0).contains(&max_lat) {
        return Err(bad("latitudes must be in [-90, 90]"));
    }
    if min_lat > max_lat {
        return Err(bad("minLat is above maxLat"));
    }
    Ok(b)
}

/// Latest positions inside the box: a FeatureCollection of Points, Feature `id` = device id.
#[utoipa::path(
    get,
    path = "/v1/positions",
    tag = "devices",
    operation_id = "positions",
    params(BboxParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "latest positions as Points; Feature `id` is the device id", body = crate::openapi::FeatureCollection),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn positions(
    State(s): State<ApiState>,
    caller: Caller,
    Query(q): Query<BboxParams>,
) -> Result<Response, ApiError> {
    let bbox =
        parse_bbox(q.bbox.as_deref().ok_or_else(|| {
            ApiError::bad_request("bbox=minLon,minLat,maxLon,maxLat is required")
        })?)?;
    let body = positions_json(&s.live(), caller.scope(), bbox);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The body of `GET /v1/positions`: the FeatureCollection (JSON) of the devices of `scope`
/// (`None`: every tenant) whose latest position is in `bbox`, from the read side. Public for
/// the bench that compares a request with serializing the same collection alone.
pub fn positions_json(live: &LiveView, scope: Option<&str>, bbox: [f64; 4]) -> Vec<u8> {
    let found = per_tenant(live, scope.map(str::to_owned), |ten| {
        live.in_bbox(ten, bbox)
    });
    let features: Vec<PositionFeature<'_>> = found
        .iter()
        .filter_map(|(tenant, d)| PositionFeature::new(tenant, d))
        .collect();
    // Serializing plain structs into a Vec cannot fail.
    serde_json::to_vec(&PositionCollection::new(features)).unwrap_or_default()
}

// The FeatureCollection as borrowed, typed structs rather than `json!` trees: a 10,000-device
// box built a `serde_json::Value` map per Feature, which cost ~6.7 us and ~1.7 KB of
// short-lived heap per Feature (BENCHMARKS.md, "Where the time goes").

#[derive(Serialize)]
pub(crate) struct PositionCollection<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    features: Vec<PositionFeature<'a>>,
}

#[derive(Serialize)]
pub(crate) struct PositionFeature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    geometry: PointGeometry,
    properties: PositionProperties<'a>,
}

#[derive(Serialize)]
struct PointGeometry {
    #[serde(rename = "type")]
    kind: &'static str,
    coordinates: [f64; 2],
}

/// Absent values are `null`, as in the other device shapes.
#[derive(Serialize)]
struct PositionProperties<'a> {
    tenant: &'a str,
    online: bool,
    ts: Option<String>,
    speed_kmh: Option<f64>,
    heading_deg: Option<f64>,
    accuracy_m: Option<f64>,
    temp_c: Option<f64>,
    weight_kg: Option<f64>,
    battery_pct: Option<f64>,
    geofences: &'a [String],
}

impl<'a> PositionCollection<'a> {
    pub(crate) fn new(features: Vec<PositionFeature<'a>>) -> Self {
        PositionCollection {
            kind: "FeatureCollection",
            features,
        }
    }
}

impl<'a> PositionFeature<'a> {
    /// `None` for a device without a position.
    pub(crate) fn new(tenant: &'a str, d: &'a DeviceView) -> Option<Self> {
        let f = d.fix?;
        Some(PositionFeature {
            kind: "Feature",
            id: &d.id,
            geometry: PointGeometry {
                kind: "Point",
                coordinates: [f.lon, f.lat],
            },
            properties: PositionProperties {
                tenant,
                online: d.online,
                ts: rfc3339_string(d.fix_ts_ms),
                speed_kmh: f.speed_kmh,
                heading_deg: f.heading_deg,
                accuracy_m: f.accuracy_m,
                temp_c: d.temp_c,
                weight_kg: d.weight_kg,
                battery_pct: d.battery_pct,
                geofences: &d.geofences,
            },
        })
    }
}

/// Runs `f` for the scope's tenant, or every tenant the tracker knows.
fn per_tenant<T>(
    t: &LiveView,
    scope: Option<String>,
    f: impl Fn(&str) -> Vec<T>,
) -> Vec<(String, T)> {
    let tenants: Vec<String> = match scope {
        Some(one) => vec![one],
        None => t.tenants().map(str::to_owned).collect(),
    };
    tenants
        .into_iter()
        .flat_map(|ten| {
            f(&ten)
                .into_iter()
                .map(|x| (ten.clone(), x))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NearbyParams {
    lat: Option<f64>,
    lon: Option<f64>,
    radius_m: Option<f64>,
    limit: Option<usize>,
}

/// `{"devices": [...]}` within `radius_m` (default 1,000) of the point, nearest first, at
/// most `limit` (default 10, at most 1,000), each with its geodesic `distance_m`.
#[utoipa::path(
    get,
    path = "/v1/devices/nearby",
    tag = "devices",
    operation_id = "nearby_devices",
    params(NearbyParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "nearest first, each with `distance_m`", body = crate::openapi::DeviceList),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
        (status = 503, description = "the tracker is not running", body = crate::openapi::ErrorBody),
    )
)]
pub async fn nearby(
    State(s): State<ApiState>,
    caller: Caller,
    Query(q): Query<NearbyParams>,
) -> Result<Response, ApiError> {
    let (Some(lat), Some(lon)) = (q.lat, q.lon) else {
        return Err(ApiError::bad_request("lat and lon are required"));
    };
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(ApiError::bad_request(
            "lat must be in [-90, 90] and lon in [-180, 180]",
        ));
    }
    let radius_m = q.radius_m.unwrap_or(1_000.0);
    if !(radius_m > 0.0 && radius_m <= MAX_RADIUS_M) {
        return Err(ApiError::bad_request(format!(
            "radius_m must be in (0, {MAX_RADIUS_M}]"
        )));
    }
    let limit = q.limit.unwrap_or(10);
    if !(1..=MAX_NEARBY).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be in [1, {MAX_NEARBY}]"
        )));
    }
    let scope = caller.scope().map(str::to_owned);
    let sc = scope.clone();
    let live = s.live();
    let mut found: Vec<(String, (Arc<DeviceView>, f64))> =
        per_tenant(&live, sc, |ten| live.nearby(ten, lon, lat, radius_m, limit));
    // Across tenants (admin), merge and cut again.
    found.sort_by(|a, b| a.1.1.total_cmp(&b.1.1));
    found.truncate(limit);
    let registry = s.read(move |st| st.list_devices(scope.as_deref())).await?;
    let by_key: HashMap<(&str, &str), _> = registry
        .iter()
        .map(|r| ((r.tenant.as_str(), r.id.as_str()), r))
        .collect();
    let devices: Vec<Value> = found
        .iter()
        .map(|(tenant, (d, dist))| {
            let reg = by_key.get(&(tenant.as_str(), d.id.as_str())).copied();
            let mut v = device_json(tenant, &d.id, reg, Some(d));
            v["distance_m"] = json!(dist);
            v
        })
        .collect();
    Ok(axum::Json(json!({ "devices": devices })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbox_parses_and_refuses_what_is_out_of_range() {
        assert_eq!(parse_bbox("1,2,3,4").unwrap(), [1.0, 2.0, 3.0, 4.0]);
        assert!(parse_bbox("170,-10,-170,10").is_ok(), "antimeridian");
        for bad in [
            "1,2,3",
            "a,2,3,4",
            "1,2,3,4,5",
            "-181,0,0,1",
            "0,-91,1,1",
            "0,5,1,4",
            "NaN,0,1,1",
            "",
        ] {
            assert!(parse_bbox(bad).is_err(), "{bad}");
        }
    }
}
