//! Reports and history (SPEC 14): a device's trips and stops, geofence visits, and a
//! shipment's record (ETA history against the real arrival, temperature summary, excursions,
//! gaps, verdict). JSON by default; `?format=csv` (or `Accept: text/csv`) gives CSV with a
//! header row; `?format=pdf` gives the shipment record as a printable PDF ([`pdf`]).
//!
//! Every report reads a time range `from`..`to` (RFC 3339 or epoch milliseconds, both
//! required, at most `reports.max_days` apart: 422 naming the limit past it). The history is
//! streamed from the store row by row into the tracker's detectors
//! ([`landport_tracker::reports`]), on a store connection of the request's own on a
//! blocking thread, so a month of readings neither sits in memory nor holds up other reads.
//!
//! The `[reports]` settings reach the handlers as an axum extension ([`ReportSettings`],
//! which the binary adds to the router); without one the defaults apply.

pub(crate) mod schema;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use landport_store::{Store, StoreError};
use landport_tracker::fence_index::FenceIndex;
use landport_tracker::geofence::Geofence;
use landport_tracker::reports::{Segment, SegmentSettings, Segmenter, Stop, Trip, TripEnd};
use serde::Deserialize;
use serde_json::{Value, json};

use super::view::{rfc3339, rfc3339_string};
use crate::auth::Caller;
use crate::error::{ApiError, Path, Query};
use crate::state::ApiState;

/// The `[reports]` settings the handlers use (the config's section, in the API's terms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportSettings {
    /// `from` and `to` at most this many days apart.
    pub max_days: u32,
    /// A stop: within this distance of where it stopped, metres.
    pub stop_radius_m: f64,
    /// A trip: at least this distance, metres.
    pub min_trip_m: f64,
    /// A shipment record's gap: longer than this without a reading, seconds.
    pub gap_seconds: u64,
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            max_days: 31,
            stop_radius_m: 100.0,
            min_trip_m: 500.0,
            gap_seconds: 900,
        }
    }
}

/// A stop lasts at least this long unless the request says otherwise (`min_duration_s`).
const DEFAULT_MIN_STOP_S: f64 = 300.0;

/// The settings in force: the router's extension, else the defaults.
fn settings(ext: Option<Extension<ReportSettings>>) -> ReportSettings {
    ext.map(|Extension(s)| s).unwrap_or_default()
}

/// What a report is answered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv,
    Pdf,
}

/// `?format=` wins; else `Accept: text/csv` (or `application/pdf` where a PDF is offered);
/// else JSON.
fn format(q: Option<&str>, headers: &HeaderMap, pdf: bool) -> Result<Format, ApiError> {
    let offered = if pdf {
        "json, csv or pdf"
    } else {
        "json or csv"
    };
    match q {
        Some("json") => return Ok(Format::Json),
        Some("csv") => return Ok(Format::Csv),
        Some("pdf") if pdf => return Ok(Format::Pdf),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format must be {offered}, got {other:?}"
            )));
        }
        None => {}
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let wants = |media: &str| accept.split(',').any(|m| m.trim().starts_with(media));
    Ok(if wants("text/csv") {
        Format::Csv
    } else if pdf && wants("application/pdf") {
        Format::Pdf
    } else {
        Format::Json
    })
}

/// RFC 3339, or epoch milliseconds (as the track endpoint takes them).
fn parse_time(name: &str, s: Option<&str>) -> Result<i64, ApiError> {
    let Some(s) = s else {
        return Err(ApiError::bad_request(format!(
            "{name} is required: an RFC 3339 time or epoch milliseconds"
        )));
    };
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be an RFC 3339 time or epoch milliseconds, got {s:?}"
            ))
        })
}

/// Checks a range: `from` not after `to`, at most `reports.max_days` apart (422 naming it).
fn check_range(from_ms: i64, to_ms: i64, s: &ReportSettings) -> Result<(), ApiError> {
    if from_ms > to_ms {
        return Err(ApiError::bad_request("from is after to"));
    }
    let max_ms = i64::from(s.max_days) * 86_400_000;
    if to_ms.saturating_sub(from_ms) > max_ms {
        return Err(ApiError::LimitExceeded {
            limit: "reports.max_days",
            message: format!(
                "from and to are {:.1} days apart; a report covers at most {} days (reports.max_days)",
                to_ms.saturating_sub(from_ms) as f64 / 86_400_000.0,
                s.max_days
            ),
        });
    }
    Ok(())
}

/// A required `from`..`to`.
fn range(from: Option<&str>, to: Option<&str>, s: &ReportSettings) -> Result<(i64, i64), ApiError> {
    let from_ms = parse_time("from", from)?;
    let to_ms = parse_time("to", to)?;
    check_range(from_ms, to_ms, s)?;
    Ok((from_ms, to_ms))
}

/// Runs `f` on a store connection of its own, on a blocking thread: a report's long read
/// holds neither the API's shared reader nor an async worker.
async fn on_own_reader<R: Send + 'static>(
    s: &ApiState,
    f: impl FnOnce(&Store) -> Result<R, ApiError> + Send + 'static,
) -> Result<R, ApiError> {
    let conn = s.read(|st| st.reader()).await?;
    match tokio::task::spawn_blocking(move || f(&conn)).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::Internal(format!("report task failed: {e}"))),
    }
}

/// 404 unless the tenant has the device registered, live, or in its history.
fn device_known(st: &Store, live: bool, tenant: &str, id: &str) -> Result<(), ApiError> {
    if live || st.get_device(tenant, id)?.is_some() || st.has_history(tenant, id)? {
        Ok(())
    } else {
        Err(ApiError::not_found("device", id))
    }
}

/// The tenant's geofences, to name the one a stop or a trip's end is in.
pub(crate) struct FenceLabels {
    index: FenceIndex,
    scratch: Vec<u32>,
}

impl FenceLabels {
    pub(crate) fn load(st: &Store, tenant: &str) -> Result<FenceLabels, StoreError> {
        let mut index = FenceIndex::new();
        for rec in st.list_geofences(Some(tenant))? {
            // Stored fences passed validation when they were created.
            if let Ok(g) = Geofence::trusted(rec.def) {
                let _ = index.upsert_prepared(g);
            }
        }
        Ok(FenceLabels {
            index,
            scratch: Vec::new(),
        })
    }

    /// The id of the geofence containing the point (the first by id when several do).
    pub(crate) fn at(&mut self, lon: f64, lat: f64) -> Option<String> {
        self.scratch.clear();
        self.index.fences_containing(lon, lat, &mut self.scratch);
        self.scratch
            .iter()
            .filter_map(|s| self.index.get(*s).map(|g| g.id()))
            .min()
            .map(str::to_owned)
    }
}

/// Streams the device's fixes of the range through the segmenter.
fn segments(
    st: &Store,
    tenant: &str,
    device: &str,
    from_ms: i64,
    to_ms: i64,
    settings: SegmentSettings,
) -> Result<Vec<Segment>, ApiError> {
    let mut seg = Segmenter::new(settings);
    let mut out = Vec::new();
    st.for_each_reading(tenant, device, from_ms, to_ms, |r| {
        if let Some(f) = r.fix {
            seg.push(r.ts_ms, f.lon, f.lat, f.speed_kmh, &mut out)
                .map_err(|e| ApiError::Internal(format!("history out of order: {e}")))?;
        }
        Ok::<(), ApiError>(())
    })?;
    seg.finish(&mut out);
    Ok(out)
}

/// Rounds for output: what a report shows needs no more than this.
fn round(v: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (v * k).round() / k
}

fn stop_json(s: &Stop, fence: Option<String>) -> Value {
    json!({
        "start": rfc3339(Some(s.start_ms)),
        "end": rfc3339(Some(s.end_ms)),
        "lat": s.lat,
        "lon": s.lon,
        "duration_s": s.duration_s(),
        "geofence": fence,
    })
}

fn end_json(e: &TripEnd, fence: Option<String>) -> Value {
    json!({"ts": rfc3339(Some(e.ts_ms)), "lat": e.lat, "lon": e.lon, "geofence": fence})
}

fn trip_json(t: &Trip, labels: &mut FenceLabels) -> Value {
    json!({
        "start": end_json(&t.start, labels.at(t.start.lon, t.start.lat)),
        "end": end_json(&t.end, labels.at(t.end.lon, t.end.lat)),
        "distance_m": round(t.distance_m, 1),
        "duration_s": t.duration_s(),
        "avg_speed_kmh": t.avg_speed_kmh().map(|v| round(v, 2)),
        "max_speed_kmh": t.max_speed_kmh.map(|v| round(v, 2)),
    })
}

/// A CSV response from rows already written.
pub(crate) fn csv_response(name: &str, body: Vec<u8>) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// A CSV writer into memory; its errors are ours (I/O on a `Vec` cannot fail).
pub(crate) fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::Writer::from_writer(Vec::new())
}

pub(crate) fn csv_done(w: csv::Writer<Vec<u8>>) -> Result<Vec<u8>, ApiError> {
    w.into_inner()
        .map_err(|e| ApiError::Internal(format!("csv: {e}")))
}

pub(crate) fn csv_err(e: csv::Error) -> ApiError {
    ApiError::Internal(format!("csv: {e}"))
}

/// Query of the trips and stops reports.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SegmentParams {
    /// Start of the range (required): RFC 3339 or epoch milliseconds, device time.
    from: Option<String>,
    /// End of the range (required), at most `reports.max_days` after `from`.
    to: Option<String>,
    /// A stop lasts at least this long, seconds (default 300).
    min_duration_s: Option<f64>,
    /// `json` (default) or `csv` (`Accept: text/csv` also asks for CSV).
    format: Option<String>,
}

/// Parses the common parts of a trips or stops request.
fn segment_request(
    q: &SegmentParams,
    headers: &HeaderMap,
    s: &ReportSettings,
) -> Result<(i64, i64, SegmentSettings, Format), ApiError> {
    let format = format(q.format.as_deref(), headers, false)?;
    let (from_ms, to_ms) = range(q.from.as_deref(), q.to.as_deref(), s)?;
    let max_s = f64::from(s.max_days) * 86_400.0;
    let min_stop_s = q.min_duration_s.unwrap_or(DEFAULT_MIN_STOP_S);
    if !(0.0..=max_s).contains(&min_stop_s) {
        return Err(ApiError::bad_request(format!(
            "min_duration_s must be a number of seconds in [0, {max_s}]"
        )));
    }
    let seg = SegmentSettings {
        stop_radius_m: s.stop_radius_m,
        min_stop_s,
        min_trip_m: s.min_trip_m,
    };
    Ok((from_ms, to_ms, seg, format))
}

/// The device's stops in the range: places where it stayed within `reports.stop_radius_m`
/// for at least `min_duration_s`, oldest first, with the geofence each is in. A stop going on
/// at either end of the range is cut there.
#[utoipa::path(
    get,
    path = "/v1/devices/{id}/stops",
    tag = "reports",
    operation_id = "device_stops",
    params(("id" = String, Path, description = "the device id"), SegmentParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"stops\": [...]}`, or CSV with a header row (`start,end,lat,lon,duration_s,geofence`)",
            content(
                (schema::StopList = "application/json"),
                (String = "text/csv"),
            )),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 422, description = "from and to further apart than reports.max_days", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn stops(
    State(s): State<ApiState>,
    ext: Option<Extension<ReportSettings>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<SegmentParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let settings = settings(ext);
    let tenant = caller.tenant()?.to_owned();
    let (from_ms, to_ms, seg, format) = segment_request(&q, &headers, &settings)?;
    let live = s.live().device(&tenant, &id).is_some();
    let name = id.clone();
    let rows = on_own_reader(&s, move |st| {
        device_known(st, live, &tenant, &id)?;
        let mut labels = FenceLabels::load(st, &tenant)?;
        let found = segments(st, &tenant, &id, from_ms, to_ms, seg)?;
        Ok(found
            .into_iter()
            .filter_map(|x| match x {
                Segment::Stop(stop) => {
                    let fence = labels.at(stop.lon, stop.lat);
                    Some((stop, fence))
                }
                Segment::Trip(_) => None,
            })
            .collect::<Vec<_>>())
    })
    .await?;
    match format {
        Format::Csv => {
            let mut w = csv_writer();
            w.write_record(["start", "end", "lat", "lon", "duration_s", "geofence"])
                .map_err(csv_err)?;
            for (stop, fence) in &rows {
                w.write_record([
                    rfc3339_string(Some(stop.start_ms)).unwrap_or_default(),
                    rfc3339_string(Some(stop.end_ms)).unwrap_or_default(),
                    stop.lat.to_string(),
                    stop.lon.to_string(),
                    stop.duration_s().to_string(),
                    fence.clone().unwrap_or_default(),
                ])
                .map_err(csv_err)?;
            }
            Ok(csv_response(&format!("{name}-stops"), csv_done(w)?))
        }
        _ => {
            let stops: Vec<Value> = rows
                .iter()
                .map(|(st, f)| stop_json(st, f.clone()))
                .collect();
            Ok(axum::Json(json!({ "stops": stops })).into_response())
        }
    }
}

/// The device's trips in the range: the movements between its stops (and the range's ends)
/// of at least `reports.min_trip_m` along the readings, oldest first.
#[utoipa::path(
    get,
    path = "/v1/devices/{id}/trips",
    tag = "reports",
    operation_id = "device_trips",
    params(("id" = String, Path, description = "the device id"), SegmentParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"trips\": [...]}`, or CSV with a header row (`start_ts,start_lat,start_lon,start_geofence,end_ts,end_lat,end_lon,end_geofence,distance_m,duration_s,avg_speed_kmh,max_speed_kmh`)",
            content(
                (schema::TripList = "application/json"),
                (String = "text/csv"),
            )),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 422, description = "from and to further apart than reports.max_days", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn trips(
    State(s): State<ApiState>,
    ext: Option<Extension<ReportSettings>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<SegmentParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let settings = settings(ext);
    let tenant = caller.tenant()?.to_owned();
    let (from_ms, to_ms, seg, format) = segment_request(&q, &headers, &settings)?;
    let live = s.live().device(&tenant, &id).is_some();
    let name = id.clone();
    let trips = on_own_reader(&s, move |st| {
        device_known(st, live, &tenant, &id)?;
        let mut labels = FenceLabels::load(st, &tenant)?;
        let found = segments(st, &tenant, &id, from_ms, to_ms, seg)?;
        Ok(found
            .into_iter()
            .filter_map(|x| match x {
                Segment::Trip(t) => Some(trip_json(&t, &mut labels)),
                Segment::Stop(_) => None,
            })
            .collect::<Vec<_>>())
    })
    .await?;
    match format {
        Format::Csv => {
            let mut w = csv_writer();
            w.write_record([
                "start_ts",
                "start_lat",
                "start_lon",
                "start_geofence",
                "end_ts",
                "end_lat",
                "end_lon",
                "end_geofence",
                "distance_m",
                "duration_s",
                "avg_speed_kmh",
                "max_speed_kmh",
            ])
            .map_err(csv_err)?;
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            for t in &trips {
                let mut row = Vec::with_capacity(12);
                for end in ["start", "end"] {
                    for k in ["ts", "lat", "lon", "geofence"] {
                        row.push(text(&t[end][k]));
                    }
                }
                for k in ["distance_m", "duration_s", "avg_speed_kmh", "max_speed_kmh"] {
                    row.push(text(&t[k]));
                }
                w.write_record(&row).map_err(csv_err)?;
            }
            Ok(csv_response(&format!("{name}-trips"), csv_done(w)?))
        }
        _ => Ok(axum::Json(json!({ "trips": trips })).into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_the_query_then_accept() {
        let mut h = HeaderMap::new();
        assert_eq!(format(None, &h, false).unwrap(), Format::Json);
        h.insert(header::ACCEPT, HeaderValue::from_static("text/csv"));
        assert_eq!(format(None, &h, false).unwrap(), Format::Csv);
        assert_eq!(format(Some("json"), &h, false).unwrap(), Format::Json);
        assert!(format(Some("pdf"), &h, false).is_err());
        assert_eq!(format(Some("pdf"), &h, true).unwrap(), Format::Pdf);
        assert!(format(Some("xml"), &h, true).is_err());
    }
}
