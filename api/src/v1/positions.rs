//! `GET /v1/positions?bbox=` (GeoJSON FeatureCollection) and
//! `GET /v1/devices/nearby?lat=&lon=&radius_m=&limit=`, both from the tracker's spatial index.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use landport_tracker::{DeviceView, LiveView, TenantView};
use serde::Deserialize;
#[cfg(test)]
use serde::Serialize;
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
    let mut found = in_bbox(&s.live(), caller.scope(), bbox);
    if s.owner().is_some() {
        // Only a partition's own devices have positions on its shard; kept explicit.
        for group in &mut found {
            group.retain(|t, d| s.owns(t, &d.id));
        }
    }
    // Each chunk passes the readers' CPU budget first: while ingest is busy, a box waits
    // rather than take ingest's CPU (see `budget`).
    let chunks = futures_util::stream::unfold(
        (collection_chunks(found, CHUNK_BYTES), s),
        |(mut chunks, s)| async move {
            s.reader_budget().admit().await;
            let chunk = chunks.next()?;
            Some((
                Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(chunk)),
                (chunks, s),
            ))
        },
    );
    let body = axum::body::Body::from_stream(chunks);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The body of `GET /v1/positions`: the FeatureCollection (JSON) of the devices of `scope`
/// (`None`: every tenant) whose latest position is in `bbox`, from the read side, in one
/// buffer. The handler streams the same bytes in chunks ([`collection_chunks`]); this is for
/// the bench that compares a request with serializing the same collection alone.
pub fn positions_json(live: &Arc<LiveView>, scope: Option<&str>, bbox: [f64; 4]) -> Vec<u8> {
    collection_chunks(in_bbox(live, scope, bbox), usize::MAX)
        .next()
        .unwrap_or_default()
}

/// The devices of `scope` (`None`: every tenant) whose latest position is in `bbox`, by
/// tenant, each tenant's sorted by id.
fn in_bbox(live: &Arc<LiveView>, scope: Option<&str>, bbox: [f64; 4]) -> Vec<Group> {
    groups(live, scope, |_, view| Some(view.in_bbox_slots(bbox)))
}

/// A [`Group`] per tenant of `scope` (`None`: every tenant) in `live`, of the local slots
/// `slots(tenant, its view)` picks (`None`: leave the tenant out). Slots are read in place
/// (see [`Group`]): a hundred readers write nothing the pipeline shares.
pub(crate) fn groups(
    live: &Arc<LiveView>,
    scope: Option<&str>,
    mut slots: impl FnMut(&str, &TenantView) -> Option<Vec<u32>>,
) -> Vec<Group> {
    let tenants: Vec<&str> = match scope {
        Some(one) => vec![one],
        None => live.tenants().collect(),
    };
    tenants
        .into_iter()
        .filter_map(|t| {
            let slots = slots(t, live.tenant(t)?)?;
            Some(Group::slots(t, live.clone(), slots))
        })
        .collect()
}

/// One tenant's devices in a FeatureCollection, in order.
pub(crate) struct Group {
    tenant: Arc<str>,
    devices: Devices,
}

/// Where a [`Group`]'s devices are read from.
enum Devices {
    /// Local slots of the tenant's part of a view, read in place
    /// ([`TenantView::device_at`]): a reader writes nothing the pipeline shares, not even a
    /// device's reference count, and holds the whole view, which the pipeline frees.
    Slots(Arc<LiveView>, Vec<u32>),
    /// Devices of their own (the tests' writer oracle).
    #[cfg(test)]
    Owned(Vec<DeviceView>),
}

/// A [`Group`]'s devices, resolved once per chunk.
enum Source<'a> {
    Slots(Option<&'a TenantView>, &'a [u32]),
    #[cfg(test)]
    Owned(&'a [DeviceView]),
}

impl Source<'_> {
    fn len(&self) -> usize {
        match self {
            Source::Slots(_, slots) => slots.len(),
            #[cfg(test)]
            Source::Owned(ds) => ds.len(),
        }
    }

    fn get(&self, i: usize) -> Option<&DeviceView> {
        match self {
            Source::Slots(view, slots) => (*view)?.device_at(*slots.get(i)?),
            #[cfg(test)]
            Source::Owned(ds) => ds.get(i),
        }
    }
}

impl Group {
    /// `slots` of `tenant` in `live` (as its `*_slots` queries return them).
    pub(crate) fn slots(tenant: &str, live: Arc<LiveView>, slots: Vec<u32>) -> Group {
        Group {
            tenant: Arc::from(tenant),
            devices: Devices::Slots(live, slots),
        }
    }

    #[cfg(test)]
    fn owned(tenant: &str, devices: Vec<DeviceView>) -> Group {
        Group {
            tenant: Arc::from(tenant),
            devices: Devices::Owned(devices),
        }
    }

    fn source(&self) -> Source<'_> {
        match &self.devices {
            Devices::Slots(live, slots) => Source::Slots(live.tenant(&self.tenant), slots),
            #[cfg(test)]
            Devices::Owned(ds) => Source::Owned(ds),
        }
    }

    /// Keeps the devices for which `keep(tenant, device)` holds.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str, &DeviceView) -> bool) {
        let tenant = &*self.tenant;
        match &mut self.devices {
            Devices::Slots(live, slots) => {
                let view = live.tenant(tenant);
                slots.retain(|&l| {
                    view.and_then(|v| v.device_at(l))
                        .is_some_and(|d| keep(tenant, d))
                })
            }
            #[cfg(test)]
            Devices::Owned(ds) => ds.retain(|d| keep(tenant, d)),
        }
    }

    /// `true` if no device of the group has a position.
    pub(crate) fn no_position(&self) -> bool {
        let source = self.source();
        (0..source.len()).all(|i| source.get(i).is_none_or(|d| d.fix.is_none()))
    }
}

/// Most bytes of Features buffered before a chunk of the body goes out. A province box is
/// ~3 MB: built whole, every request mapped, faulted in and unmapped a fresh 3 MB buffer
/// (~11 % of its CPU time) and twenty readers held 60 MB; in chunks, a request holds 64 KiB
/// and a slow client holds back its own request only.
const CHUNK_BYTES: usize = 64 * 1024;

/// A FeatureCollection of these devices (those without a position are left out) as chunks of
/// about `chunk` bytes, each written when asked for: their concatenation is the document.
pub(crate) fn collection_chunks(groups: Vec<Group>, chunk: usize) -> Chunks {
    Chunks {
        groups,
        at: (0, 0),
        chunk,
        written: 0,
        started: false,
        done: false,
    }
}

/// See [`collection_chunks`].
pub(crate) struct Chunks {
    groups: Vec<Group>,
    /// The next device: (group, index in it).
    at: (usize, usize),
    chunk: usize,
    /// Features written so far.
    written: usize,
    /// The header went out.
    started: bool,
    done: bool,
}

impl Iterator for Chunks {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        let mut out = Vec::with_capacity(self.chunk.min(CHUNK_BYTES) + 1024);
        if !self.started {
            out.extend_from_slice(br#"{"type":"FeatureCollection","features":["#);
            self.started = true;
        }
        while out.len() < self.chunk {
            let Some(group) = self.groups.get(self.at.0) else {
                out.extend_from_slice(b"]}");
                self.done = true;
                break;
            };
            let source = group.source();
            while out.len() < self.chunk {
                let i = self.at.1;
                if i >= source.len() {
                    self.at = (self.at.0 + 1, 0);
                    break;
                }
                self.at.1 += 1;
                let Some(d) = source.get(i).filter(|d| d.fix.is_some()) else {
                    continue;
                };
                if self.written > 0 {
                    out.push(b',');
                }
                self.written += 1;
                write_feature(&mut out, &group.tenant, d);
            }
        }
        Some(out)
    }
}

/// Writes one device's Feature, byte for byte what `serde_json` makes of [`PositionFeature`]
/// (the tests hold the two equal). Written by hand because this is the API's largest answer:
/// the derived serializer escaped every constant key and allocated per Feature, and a
/// province box cost 1.4-1.7x serializing the same collection once as a `serde_json::Value`
/// (BENCHMARKS.md). A device without a position writes nothing.
pub(crate) fn write_feature(out: &mut Vec<u8>, tenant: &str, d: &DeviceView) {
    let Some(f) = d.fix else {
        return;
    };
    out.extend_from_slice(br#"{"type":"Feature","id":"#);
    write_str(out, &d.id);
    out.extend_from_slice(br#","geometry":{"type":"Point","coordinates":["#);
    write_f64(out, f.lon);
    out.push(b',');
    write_f64(out, f.lat);
    out.extend_from_slice(br#"]},"properties":{"tenant":"#);
    write_str(out, tenant);
    out.extend_from_slice(if d.online {
        br#","online":true,"ts":"#
    } else {
        br#","online":false,"ts":"#
    });
    write_ts(out, d.fix_ts_ms);
    for (key, v) in [
        (&br#","speed_kmh":"#[..], f.speed_kmh),
        (br#","heading_deg":"#, f.heading_deg),
        (br#","accuracy_m":"#, f.accuracy_m),
        (br#","temp_c":"#, d.temp_c),
        (br#","weight_kg":"#, d.weight_kg),
        (br#","battery_pct":"#, d.battery_pct),
    ] {
        out.extend_from_slice(key);
        match v {
            Some(v) => write_f64(out, v),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.extend_from_slice(br#","geofences":["#);
    for (i, g) in d.geofences.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, g);
    }
    out.extend_from_slice(b"]}}");
}

/// `ms` as [`rfc3339_string`] writes it, as a JSON string (`null` for none): the common
/// years without a `String` per Feature (chrono's formatter and the allocation were ~a third
/// of a province box's writing).
fn write_ts(out: &mut Vec<u8>, ms: Option<i64>) {
    match ms.and_then(rfc3339_millis) {
        Some(ts) => {
            out.push(b'"');
            out.extend_from_slice(&ts);
            out.push(b'"');
        }
        None => match rfc3339_string(ms) {
            Some(ts) => write_str(out, &ts),
            None => out.extend_from_slice(b"null"),
        },
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of Unix time `ms` for the years 0-9999 (chrono's
/// `SecondsFormat::Millis` with `Z`; other years are left to chrono).
fn rfc3339_millis(ms: i64) -> Option<[u8; 24]> {
    let (days, t) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Days since 1970-01-01 -> proleptic Gregorian date (H. Hinnant's civil_from_days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9_999).contains(&year) {
        return None;
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, t / 3_600_000);
    put(14, 2, t / 60_000 % 60);
    put(17, 2, t / 1_000 % 60);
    put(20, 3, t % 1_000);
    Some(b)
}

/// A JSON string, escaped as `serde_json` escapes it.
fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A number as `serde_json` writes an `f64` (its formatter; `null` when not finite).
fn write_f64(out: &mut Vec<u8>, v: f64) {
    use serde_json::ser::{CompactFormatter, Formatter};
    if v.is_finite() {
        let _ = CompactFormatter.write_f64(out, v);
    } else {
        out.extend_from_slice(b"null");
    }
}

// The FeatureCollection as borrowed, typed structs: what the hand-written writer above must
// produce, kept as its oracle in the tests.

#[cfg(test)]
#[derive(Serialize)]
pub(crate) struct PositionCollection<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    features: Vec<PositionFeature<'a>>,
}

#[cfg(test)]
#[derive(Serialize)]
pub(crate) struct PositionFeature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    geometry: PointGeometry,
    properties: PositionProperties<'a>,
}

#[cfg(test)]
#[derive(Serialize)]
struct PointGeometry {
    #[serde(rename = "type")]
    kind: &'static str,
    coordinates: [f64; 2],
}

/// Absent values are `null`, as in the other device shapes.
#[cfg(test)]
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

#[cfg(test)]
impl<'a> PositionCollection<'a> {
    pub(crate) fn new(features: Vec<PositionFeature<'a>>) -> Self {
        PositionCollection {
            kind: "FeatureCollection",
            features,
        }
    }
}

#[cfg(test)]
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
    let live = s.live();
    let mut found: Vec<(String, (Arc<DeviceView>, f64))> = per_tenant(&live, scope, |ten| {
        live.nearby(ten, lon, lat, radius_m, limit)
    });
    // Cluster mode: only a partition's own devices have positions on its shard; kept explicit.
    found.retain(|(t, (d, _))| s.owns(t, &d.id));
    // Across tenants (admin), merge and cut again.
    found.sort_by(|a, b| a.1.1.total_cmp(&b.1.1));
    found.truncate(limit);
    // The registry rows of the devices found only (at most `limit`), not the whole registry.
    let keys: Vec<(String, String)> = found
        .iter()
        .map(|(tenant, (d, _))| (tenant.clone(), d.id.clone()))
        .collect();
    let registry = s
        .read(move |st| {
            keys.iter()
                .filter_map(|(t, id)| st.get_device(t, id).transpose())
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
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
    use landport_tracker::Fix;
    use landport_tracker::device::DeviceProfile;
    use landport_tracker::tracker::DeviceSlot;
    use proptest::prelude::*;

    use super::*;

    fn number() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            Just(None),
            any::<f64>().prop_map(Some),
            (-1e6f64..1e6).prop_map(Some),
            Just(Some(0.1 + 0.2)),
            Just(Some(-0.0)),
            Just(Some(f64::NAN)),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9._-]{1,12}",
            any::<String>(),
            Just("quote\" back\\ nl\n tab\t \u{1} é 🚚".to_owned()),
        ]
    }

    prop_compose! {
        fn device()(
            id in text(),
            online in any::<bool>(),
            fix in proptest::option::weighted(0.9, (-180.0f64..=180.0, -90.0f64..=90.0, number(), number(), number())),
            ts in proptest::option::of(-62_000_000_000_000i64..300_000_000_000_000),
            temp_c in number(),
            weight_kg in number(),
            battery_pct in number(),
            geofences in proptest::collection::vec(text(), 0..3),
        ) -> DeviceView {
            DeviceView {
                slot: DeviceSlot(0),
                id,
                online,
                last_seen_ms: ts,
                fix: fix.map(|(lon, lat, speed_kmh, heading_deg, accuracy_m)| Fix {
                    lon, lat, speed_kmh, heading_deg, accuracy_m,
                }),
                fix_ts_ms: ts,
                temp_c,
                weight_kg,
                battery_pct,
                geofences,
                profile: DeviceProfile::default(),
            }
        }
    }

    proptest! {
        /// The hand-written writer against serde_json's derived serializer: the same bytes,
        /// whatever the numbers (NaN and infinities become null) and strings (escapes,
        /// control characters, non-ASCII), and the same document whatever the chunk size.
        #[test]
        fn the_body_is_byte_for_byte_what_serde_json_writes(
            tenants in proptest::collection::vec(
                (text(), proptest::collection::vec(device(), 0..6)), 0..4),
            chunk in 1usize..400,
        ) {
            let features: Vec<PositionFeature<'_>> = tenants
                .iter()
                .flat_map(|(t, ds)| ds.iter().filter_map(move |d| PositionFeature::new(t, d)))
                .collect();
            let oracle = serde_json::to_vec(&PositionCollection::new(features)).unwrap();
            let found = || -> Vec<Group> {
                tenants.iter().map(|(t, ds)| Group::owned(t, ds.clone())).collect()
            };
            let chunks: Vec<Vec<u8>> = collection_chunks(found(), chunk).collect();
            let whole: Vec<u8> = chunks.concat();
            prop_assert_eq!(
                String::from_utf8_lossy(&whole),
                String::from_utf8_lossy(&oracle)
            );
            let mut one: Vec<Vec<u8>> = collection_chunks(found(), usize::MAX).collect();
            prop_assert_eq!(one.len(), 1, "one chunk when unbounded");
            prop_assert_eq!(one.pop().unwrap(), whole);
            // Chunks end once they pass the size, so none but the last is much smaller.
            for c in &chunks[..chunks.len() - 1] {
                prop_assert!(c.len() >= chunk);
            }
        }
    }

    proptest! {
        /// The time stamps written without chrono are chrono's, wherever they fall.
        #[test]
        fn time_stamps_are_what_chrono_writes(
            ms in prop_oneof![
                -62_200_000_000_000i64..-62_100_000_000_000,
                -1_000_000i64..1_000_000,
                0i64..4_102_444_800_000,
                253_370_000_000_000i64..253_410_000_000_000,
                any::<i64>(),
            ],
        ) {
            let mut ours = Vec::new();
            write_ts(&mut ours, Some(ms));
            let mut theirs = Vec::new();
            match rfc3339_string(Some(ms)) {
                Some(ts) => write_str(&mut theirs, &ts),
                None => theirs.extend_from_slice(b"null"),
            }
            prop_assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(theirs).unwrap());
        }
    }

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
