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

pub(crate) mod pdf;
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

/// Page cache of a report's connection, KiB: it reads its rows once, in index order.
const REPORT_CACHE_KIB: u32 = 4 * 1024;

/// A new read-only connection for one report, with a small page cache.
fn own_reader(st: &Store) -> Result<Store, StoreError> {
    let conn = st.reader()?;
    conn.set_cache_size_kib(REPORT_CACHE_KIB)?;
    Ok(conn)
}

/// Runs `f` on a store connection of its own, on a blocking thread: a report's long read
/// holds neither the API's shared reader nor an async worker.
async fn on_own_reader<R: Send + 'static>(
    s: &ApiState,
    f: impl FnOnce(&Store) -> Result<R, ApiError> + Send + 'static,
) -> Result<R, ApiError> {
    let conn = s.read(own_reader).await?;
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
    #[param(required = true, format = DateTime)]
    from: Option<String>,
    /// End of the range (required), at most `reports.max_days` after `from`.
    #[param(required = true, format = DateTime)]
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

/// What the stops and trips endpoints share: the request checked, the device found (404
/// otherwise), its history in the range segmented on a reader of the request's own, and each
/// segment turned into a row by `row` (with the tenant's geofence labels), in order.
async fn device_segments<T: Send + 'static>(
    s: &ApiState,
    ext: Option<Extension<ReportSettings>>,
    caller: &Caller,
    id: String,
    q: &SegmentParams,
    headers: &HeaderMap,
    mut row: impl FnMut(Segment, &mut FenceLabels) -> Option<T> + Send + 'static,
) -> Result<(Format, Vec<T>), ApiError> {
    let settings = settings(ext);
    let tenant = caller.tenant()?.to_owned();
    let (from_ms, to_ms, seg, format) = segment_request(q, headers, &settings)?;
    if !s.owns(&tenant, &id) {
        return Err(ApiError::not_found("device", id));
    }
    let live = s.live().device(&tenant, &id).is_some();
    let rows = on_own_reader(s, move |st| {
        device_known(st, live, &tenant, &id)?;
        let mut labels = FenceLabels::load(st, &tenant)?;
        let found = segments(st, &tenant, &id, from_ms, to_ms, seg)?;
        Ok(found
            .into_iter()
            .filter_map(|x| row(x, &mut labels))
            .collect())
    })
    .await?;
    Ok((format, rows))
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
    let name = id.clone();
    let (format, rows) = device_segments(&s, ext, &caller, id, &q, &headers, |x, labels| match x {
        Segment::Stop(stop) => {
            let fence = labels.at(stop.lon, stop.lat);
            Some((stop, fence))
        }
        Segment::Trip(_) => None,
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
    let name = id.clone();
    let (format, trips) =
        device_segments(&s, ext, &caller, id, &q, &headers, |x, labels| match x {
            Segment::Trip(t) => Some(trip_json(&t, labels)),
            Segment::Stop(_) => None,
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

/// Query of the geofence visits report.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VisitParams {
    /// Start of the range (required): RFC 3339 or epoch milliseconds.
    #[param(required = true, format = DateTime)]
    from: Option<String>,
    /// End of the range (required), at most `reports.max_days` after `from`.
    #[param(required = true, format = DateTime)]
    to: Option<String>,
    /// Only visits of this geofence.
    geofence: Option<String>,
    /// Only visits of this device.
    device: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// The tenant's geofence visits that overlap the range, from the stored `geofence.entered`
/// and `geofence.exited` events, in order of entry. `exited_at` is null while the device is
/// still inside; `dwell_s` runs to the exit, or to now.
#[utoipa::path(
    get,
    path = "/v1/reports/geofence-visits",
    tag = "reports",
    operation_id = "geofence_visits",
    params(VisitParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"visits\": [...]}`, or CSV with a header row (`device,geofence,entered_at,exited_at,dwell_s`)",
            content(
                (schema::VisitList = "application/json"),
                (String = "text/csv"),
            )),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 422, description = "from and to further apart than reports.max_days", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn geofence_visits(
    State(s): State<ApiState>,
    ext: Option<Extension<ReportSettings>>,
    caller: Caller,
    Query(q): Query<VisitParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let settings = settings(ext);
    let tenant = caller.tenant()?.to_owned();
    let format = format(q.format.as_deref(), &headers, false)?;
    let (from_ms, to_ms) = range(q.from.as_deref(), q.to.as_deref(), &settings)?;
    let now = landport_pipeline::now_ms();
    let (geofence, device) = (q.geofence.clone(), q.device.clone());
    let visits = on_own_reader(&s, move |st| {
        Ok(st.geofence_visits(&landport_store::VisitFilter {
            tenant: &tenant,
            from_ms,
            to_ms,
            geofence: geofence.as_deref(),
            device: device.as_deref(),
        })?)
    })
    .await?;
    let dwell = |v: &landport_store::Visit| {
        (v.exited_ms.unwrap_or(now.max(v.entered_ms)) - v.entered_ms) as f64 / 1000.0
    };
    match format {
        Format::Csv => {
            let mut w = csv_writer();
            w.write_record(["device", "geofence", "entered_at", "exited_at", "dwell_s"])
                .map_err(csv_err)?;
            for v in &visits {
                w.write_record([
                    v.device.clone(),
                    v.geofence.clone(),
                    rfc3339_string(Some(v.entered_ms)).unwrap_or_default(),
                    rfc3339_string(v.exited_ms).unwrap_or_default(),
                    dwell(v).to_string(),
                ])
                .map_err(csv_err)?;
            }
            Ok(csv_response("geofence-visits", csv_done(w)?))
        }
        _ => {
            let visits: Vec<Value> = visits
                .iter()
                .map(|v| {
                    json!({"device": v.device, "geofence": v.geofence,
                        "entered_at": rfc3339(Some(v.entered_ms)), "exited_at": rfc3339(v.exited_ms),
                        "dwell_s": dwell(v)})
                })
                .collect();
            Ok(axum::Json(json!({ "visits": visits })).into_response())
        }
    }
}

/// Query of the shipment record.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShipmentReportParams {
    /// Start of the record: RFC 3339 or epoch milliseconds; default the departure.
    #[param(format = DateTime)]
    from: Option<String>,
    /// End of the record; default the arrival, or now while under way.
    #[param(format = DateTime)]
    to: Option<String>,
    /// `json` (default), `csv` (the readings) or `pdf` (the printable record).
    format: Option<String>,
}

/// One ETA as announced: when, and what.
#[derive(Debug, Clone)]
pub(crate) struct Prediction {
    pub(crate) predicted_ms: i64,
    pub(crate) eta_ms: i64,
    pub(crate) p10_ms: Option<i64>,
    pub(crate) p90_ms: Option<i64>,
}

/// Everything the record shows, in the API's terms (JSON and PDF are made from it).
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) shipment: String,
    pub(crate) reference: Option<String>,
    pub(crate) device: String,
    pub(crate) status: String,
    pub(crate) origin: Option<Value>,
    pub(crate) destination: Value,
    pub(crate) deadline_ms: Option<i64>,
    pub(crate) temp_range_c: Option<[f64; 2]>,
    pub(crate) from_ms: Option<i64>,
    pub(crate) to_ms: Option<i64>,
    pub(crate) departed_ms: Option<i64>,
    pub(crate) arrived_ms: Option<i64>,
    pub(crate) planned_m: Option<f64>,
    pub(crate) driven_m: f64,
    pub(crate) etas: Vec<Prediction>,
    pub(crate) cold: landport_tracker::reports::ColdChainRecord,
    /// Temperature over time for the chart: per time bucket, (ts, min, max).
    pub(crate) temp_series: Vec<(i64, f64, f64)>,
    /// The route driven, thinned for the plot: (lon, lat).
    pub(crate) route: Vec<(f64, f64)>,
}

impl Record {
    pub(crate) fn late_by_s(&self) -> Option<f64> {
        match (self.arrived_ms, self.deadline_ms) {
            (Some(a), Some(d)) => Some(((a - d) as f64 / 1000.0).max(0.0)),
            _ => None,
        }
    }

    fn json(&self) -> Value {
        let t = self.cold.temperature.map(|t| {
            json!({"readings": t.readings, "min_c": t.min_c, "max_c": t.max_c,
                "mean_c": round(t.mean_c, 3), "covered_s": t.covered_s,
                "time_in_range_pct": t.time_in_range_pct.map(|p| round(p, 3))})
        });
        let etas: Vec<Value> = self
            .etas
            .iter()
            .map(|p| {
                json!({"predicted_at": rfc3339(Some(p.predicted_ms)), "eta": rfc3339(Some(p.eta_ms)),
                    "p10": rfc3339(p.p10_ms), "p90": rfc3339(p.p90_ms),
                    "error_s": self.arrived_ms.map(|a| (p.eta_ms - a) as f64 / 1000.0)})
            })
            .collect();
        let excursions: Vec<Value> = self
            .cold
            .excursions
            .iter()
            .map(|e| {
                json!({"begin": rfc3339(Some(e.begin_ms)), "end": rfc3339(e.end_ms),
                    "duration_s": e.duration_s(), "peak_c": e.peak_c})
            })
            .collect();
        let gaps: Vec<Value> = self
            .cold
            .gaps
            .iter()
            .map(|g| {
                json!({"from": rfc3339(Some(g.from_ms)), "to": rfc3339(Some(g.to_ms)),
                    "duration_s": g.duration_s()})
            })
            .collect();
        json!({
            "shipment": self.shipment, "reference": self.reference, "device": self.device,
            "status": self.status, "origin": self.origin, "destination": self.destination,
            "deadline": rfc3339(self.deadline_ms), "temp_range_c": self.temp_range_c,
            "from": rfc3339(self.from_ms), "to": rfc3339(self.to_ms),
            "departed_at": rfc3339(self.departed_ms), "arrived_at": rfc3339(self.arrived_ms),
            "planned_distance_m": self.planned_m.map(|m| round(m, 1)),
            "driven_distance_m": round(self.driven_m, 1),
            "eta_history": etas, "actual_arrival": rfc3339(self.arrived_ms),
            "late_by_s": self.late_by_s(),
            "temperature": t, "excursions": excursions, "gaps": gaps,
            "verdict": self.cold.verdict.as_str(),
        })
    }
}

fn place_json(p: &landport_tracker::Place) -> Value {
    match p {
        landport_tracker::Place::Geofence(id) => json!(id),
        landport_tracker::Place::Point { lon, lat } => json!({"lat": lat, "lon": lon}),
    }
}

/// Buckets of the chart and the route plot: enough for a page, bounded for any range.
const CHART_BUCKETS: i64 = 400;
const ROUTE_BUCKETS: i64 = 1000;

fn parse_data_time(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp_millis())
}

/// Builds the record: the shipment, its events, then one pass over its device's readings
/// (without `scan`, only its range and the figures from events: the CSV streams the
/// readings itself).
#[allow(clippy::too_many_arguments)]
fn build_record(
    st: &Store,
    tenant: &str,
    id: &str,
    from: Option<i64>,
    to: Option<i64>,
    settings: &ReportSettings,
    now: i64,
    scan: bool,
) -> Result<Record, ApiError> {
    use landport_tracker::EventType as E;
    use landport_tracker::ShipmentStatus;
    use landport_tracker::reports::{ColdChain, ColdChainSettings};
    let rec = st
        .get_shipment(tenant, id)?
        .ok_or_else(|| ApiError::not_found("shipment", id))?;
    let def = &rec.def;
    let events = st.shipment_events(
        tenant,
        id,
        &[
            E::ShipmentDeparted,
            E::ShipmentArrived,
            E::ShipmentEtaChanged,
        ],
    )?;
    let departed_ms = events
        .iter()
        .find(|e| e.kind == E::ShipmentDeparted)
        .map(|e| e.ts_ms);
    let arrived_ms = events
        .iter()
        .find(|e| e.kind == E::ShipmentArrived)
        .map(|e| e.ts_ms);
    let mut etas = Vec::new();
    for e in &events {
        if !matches!(e.kind, E::ShipmentDeparted | E::ShipmentEtaChanged) {
            continue;
        }
        if let Some(eta_ms) = parse_data_time(&e.data["eta"]) {
            etas.push(Prediction {
                // the time of the reading it came from (a departure's event time is the
                // estimated crossing, its ETA's the reading's)
                predicted_ms: parse_data_time(&e.data["computed_at"]).unwrap_or(e.ts_ms),
                eta_ms,
                p10_ms: parse_data_time(&e.data["p10"]),
                p90_ms: parse_data_time(&e.data["p90"]),
            });
        }
    }
    let from_ms = from.or(departed_ms);
    let to_ms = to.or(arrived_ms).or(from_ms.map(|_| now));
    let planned_m = def.route.as_ref().map(|r| {
        r.0.windows(2)
            .map(|w| landport_tracker::geodesy::distance_m((w[0].x, w[0].y), (w[1].x, w[1].y)))
            .sum()
    });
    let gap_ms = i64::try_from(settings.gap_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let cold_settings = ColdChainSettings {
        range_c: def.temp_range_c,
        gap_ms,
    };
    let mut driven_m = 0.0;
    let mut temp_series: Vec<(i64, f64, f64)> = Vec::new();
    let mut route: Vec<(f64, f64)> = Vec::new();
    let cold = match (from_ms, to_ms) {
        (Some(f), Some(t)) if !scan => {
            check_range(f, t, settings)?;
            landport_tracker::reports::ColdChainRecord::nothing_recorded()
        }
        (Some(f), Some(t)) => {
            check_range(f, t, settings)?;
            let mut cold = ColdChain::new(cold_settings, f, t);
            let span = (t - f).max(1);
            let (mut last_fix, mut last_ts): (Option<(f64, f64)>, Option<i64>) = (None, None);
            let (mut route_bucket, mut temp_bucket) = (-1i64, -1i64);
            st.for_each_reading(tenant, &def.device, f, t, |r| {
                if last_ts == Some(r.ts_ms) {
                    return Ok::<(), ApiError>(()); // a duplicate time: the first counts
                }
                last_ts = Some(r.ts_ms);
                cold.push(r.ts_ms, r.temp_c)
                    .map_err(|e| ApiError::Internal(format!("history out of order: {e}")))?;
                if let Some(fx) = r.fix {
                    let p = (fx.lon, fx.lat);
                    if let Some(q) = last_fix {
                        driven_m += landport_tracker::geodesy::distance_m(q, p);
                    }
                    last_fix = Some(p);
                    let b = (r.ts_ms - f) * ROUTE_BUCKETS / span;
                    if b != route_bucket {
                        route_bucket = b;
                        route.push(p);
                    } else if let Some(end) = route.last_mut() {
                        *end = p;
                    }
                }
                if let Some(tc) = r.temp_c.filter(|t| t.is_finite()) {
                    let b = (r.ts_ms - f) * CHART_BUCKETS / span;
                    match temp_series.last_mut() {
                        Some(last) if b == temp_bucket => {
                            last.1 = last.1.min(tc);
                            last.2 = last.2.max(tc);
                        }
                        _ => {
                            temp_bucket = b;
                            temp_series.push((r.ts_ms, tc, tc));
                        }
                    }
                }
                Ok(())
            })?;
            cold.finish()
        }
        // Not under way and no range asked for: nothing recorded yet.
        _ => landport_tracker::reports::ColdChainRecord::nothing_recorded(),
    };
    Ok(Record {
        shipment: def.id.clone(),
        reference: def.reference.clone(),
        device: def.device.clone(),
        // The user's delivered / cancelled stand; else what the events say happened (the
        // registry row can lag the tracker's departure and arrival).
        status: match (rec.status, departed_ms, arrived_ms) {
            (ShipmentStatus::Planned | ShipmentStatus::InTransit, _, Some(_)) => "arrived",
            (ShipmentStatus::Planned, Some(_), None) => "in_transit",
            (other, _, _) => other.as_str(),
        }
        .to_owned(),
        origin: def.origin.as_ref().map(place_json),
        destination: place_json(&def.destination),
        deadline_ms: def.deadline_ms,
        temp_range_c: def.temp_range_c,
        from_ms,
        to_ms,
        departed_ms,
        arrived_ms,
        planned_m,
        driven_m,
        etas,
        cold,
        temp_series,
        route,
    })
}

/// The shipment's record (SPEC 14): departure and arrival, planned against driven
/// distance, every ETA announced (what was predicted when) against the actual arrival, the
/// temperature summary, each excursion, the gaps without readings longer than
/// `reports.gap_seconds`, and the verdict: `excursion` when the temperature left
/// `temp_range_c`, else `incomplete` when readings are missing, else `compliant`. It covers
/// departure to arrival (or now) unless `from`/`to` say otherwise. `?format=csv` gives its
/// readings, `?format=pdf` a printable audit document.
#[utoipa::path(
    get,
    path = "/v1/shipments/{id}/report",
    tag = "reports",
    operation_id = "shipment_report",
    params(("id" = String, Path, description = "the shipment id"), ShipmentReportParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the record; as CSV, its readings with a header row (`ts,lat,lon,speed_kmh,temp_c,in_range`); as PDF, the printable record",
            content(
                (schema::ShipmentReport = "application/json"),
                (String = "text/csv"),
                (String = "application/pdf"),
            )),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 422, description = "the record's range is longer than reports.max_days", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn shipment_report(
    State(s): State<ApiState>,
    ext: Option<Extension<ReportSettings>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ShipmentReportParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let settings = settings(ext);
    let tenant = caller.tenant()?.to_owned();
    let format = format(q.format.as_deref(), &headers, true)?;
    if s.owner().is_some() {
        // Cluster mode: only the partition of the shipment's device has its readings.
        super::shipments::load_owned(&s, &tenant, &id).await?;
    }
    let from = q
        .from
        .as_deref()
        .map(|f| parse_time("from", Some(f)))
        .transpose()?;
    let to =
        q.to.as_deref()
            .map(|t| parse_time("to", Some(t)))
            .transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        check_range(f, t, &settings)?;
    }
    let now = landport_pipeline::now_ms();
    let name = id.clone();
    match format {
        Format::Csv => {
            // The range and the device first (404 and 422 come back as such), then the
            // readings stream out as they are read: a month of them is never in memory.
            let (t2, i2) = (tenant.clone(), id.clone());
            let r = on_own_reader(&s, move |st| {
                build_record(st, &t2, &i2, from, to, &settings, now, false)
            })
            .await?;
            let conn = s.read(own_reader).await?;
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::task::spawn_blocking(move || {
                let sink = ChunkSender {
                    tx: tx.clone(),
                    buf: Vec::new(),
                };
                if let Err(e) = write_readings_csv(&conn, &tenant, &r, sink) {
                    tracing::warn!(error = %e, shipment = %r.shipment, "shipment readings CSV cut short");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            });
            let body = axum::body::Body::from_stream(futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) },
            ));
            let mut res = body.into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) =
                HeaderValue::from_str(&format!("attachment; filename=\"{name}-readings.csv\""))
            {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(res)
        }
        Format::Pdf => {
            let bytes = on_own_reader(&s, move |st| {
                let r = build_record(st, &tenant, &id, from, to, &settings, now, true)?;
                Ok(pdf::render(&r, now))
            })
            .await?;
            let mut res = bytes.into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pdf"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}-record.pdf\""))
            {
                res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(res)
        }
        Format::Json => {
            let r = on_own_reader(&s, move |st| {
                build_record(st, &tenant, &id, from, to, &settings, now, true)
            })
            .await?;
            Ok(axum::Json(r.json()).into_response())
        }
    }
}

/// Sends what is written to it in chunks of about [`CHUNK_BYTES`] down a bounded channel to
/// the response body: the writer waits while the client is slow, and fails once it is gone.
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<Result<axum::body::Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

const CHUNK_BYTES: usize = 64 * 1024;

impl std::io::Write for ChunkSender {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = axum::body::Bytes::from(std::mem::take(&mut self.buf));
            self.tx.blocking_send(Ok(chunk)).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })?;
        }
        Ok(())
    }
}

/// The record's readings as CSV, read and written one at a time.
fn write_readings_csv(
    st: &Store,
    tenant: &str,
    r: &Record,
    sink: ChunkSender,
) -> Result<(), ApiError> {
    let mut w = csv::Writer::from_writer(sink);
    w.write_record(["ts", "lat", "lon", "speed_kmh", "temp_c", "in_range"])
        .map_err(csv_err)?;
    let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    if let (Some(f), Some(t)) = (r.from_ms, r.to_ms) {
        st.for_each_reading(tenant, &r.device, f, t, |x| {
            let in_range = match (r.temp_range_c, x.temp_c) {
                (Some([lo, hi]), Some(tc)) => (lo <= tc && tc <= hi).to_string(),
                _ => String::new(),
            };
            w.write_record([
                rfc3339_string(Some(x.ts_ms)).unwrap_or_default(),
                num(x.fix.map(|f| f.lat)),
                num(x.fix.map(|f| f.lon)),
                num(x.fix.and_then(|f| f.speed_kmh)),
                num(x.temp_c),
                in_range,
            ])
            .map_err(csv_err)
        })?;
    }
    w.flush()
        .map_err(|e| ApiError::Internal(format!("csv: {e}")))?;
    Ok(())
}
