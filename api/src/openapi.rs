//! The OpenAPI 3.1 document of the API (SPEC 6), served without a key at `GET /openapi.json`.
//!
//! It is generated from the code (utoipa): each `/v1` handler carries a `#[utoipa::path]`
//! annotation and is listed in [`crate::v1::Doc`]; request bodies and query parameters derive
//! `ToSchema` / `IntoParams` where they are defined. The handlers build their responses with
//! `serde_json::json!`, so the response shapes are described here by schema-only types (never
//! constructed) that mirror `v1::view`, `v1::geojson` and `v1::shipments`.
//!
//! The operational endpoints (`/healthz`, `/readyz`, `/metrics`) are described by the
//! annotated stubs below rather than on their handlers in `lib.rs`, which keeps this
//! document's code in one place. `api/tests/openapi.rs` checks that every route the router
//! registers is documented, and every documented operation is routed.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The whole document: the operational endpoints, this one, and the `/v1` operations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Landport API",
        description = "Live logistics telemetry: devices, geofences, shipments, ETAs and events. \
            Authenticate with `Authorization: Bearer KEY`; errors are \
            `{\"error\": {\"code\", \"message\"}}`; times are RFC 3339 UTC; coordinates are \
            degrees, `[lon, lat]` in GeoJSON.",
    ),
    paths(healthz, readyz, metrics, openapi_json),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerScheme),
    tags(
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "tenants", description = "Tenants and their API keys (admin)"),
        (name = "devices", description = "The device registry and live state"),
        (name = "geofences", description = "Geofences as GeoJSON Features"),
        (name = "shipments", description = "Shipments, ETAs and share links"),
        (name = "events", description = "The event log and the live stream"),
        (name = "public", description = "Shared shipments, no key"),
        (name = "reports", description = "Trips, stops, geofence visits and shipment records (JSON, CSV, PDF)"),
        (name = "webhooks", description = "Webhooks: signed, retried, replayable event delivery"),
    )
)]
struct ApiDoc;

/// Adds the `bearer` security scheme the authenticated operations refer to.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key: a tenant's, or an admin key (acts on every tenant)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi().merge_from(crate::v1::Doc::openapi());
        add_limit_responses(&mut doc);
        doc
    })
}

/// Every `/v1` operation may answer 408 (over `http.request_timeout_seconds`) and 429 (over the
/// key's or share link's `limits.requests_per_second`, with `retry-after`): added here once
/// rather than on each handler.
fn add_limit_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder};
    let error = || {
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build()
    };
    let timeout = ResponseBuilder::new()
        .description("the request took longer than http.request_timeout_seconds (code `timeout`)")
        .content("application/json", error())
        .build();
    let too_many = ResponseBuilder::new()
        .description(
            "over a rate (`limits.requests_per_second` per key or share link) or a cap \
             (`limits.sse_connections`), named in the body's `limit`; retry after `retry-after` \
             seconds",
        )
        .header(
            "retry-after",
            HeaderBuilder::new()
                .description(Some("seconds to wait"))
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::Integer)
                        .build(),
                ))
                .build(),
        )
        .content("application/json", error())
        .build();
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let r = &mut op.responses.responses;
            r.entry("408".to_owned())
                .or_insert_with(|| RefOr::T(timeout.clone()));
            r.entry("429".to_owned())
                .or_insert_with(|| RefOr::T(too_many.clone()));
        }
    }
}

/// `GET /openapi.json`: the document, no key needed.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "this document (OpenAPI 3.1)", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| {
        // Serializing a tree of plain maps, strings and numbers cannot fail.
        serde_json::to_string(document()).unwrap_or_default()
    });
    ([(header::CONTENT_TYPE, "application/json")], body.as_str()).into_response()
}

/// `GET /healthz` (handler: `crate::healthz`).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "the process is up: `{\"status\": \"ok\"}`", body = Status))
)]
#[allow(dead_code)]
fn healthz() {}

/// `GET /readyz` (handler: `crate::readyz`).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "connected to the broker, pipeline running: `{\"status\": \"ready\"}`", body = Status),
        (status = 503, description = "not ready (code `not_ready`)", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn readyz() {}

/// `GET /metrics` (handler: `crate::metrics`).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses((status = 200, description = "Prometheus / OpenMetrics text", content_type = "application/openmetrics-text", body = String))
)]
#[allow(dead_code)]
fn metrics() {}

// Schema-only types: they describe the JSON the handlers build and are never constructed.

/// `{"status": "ok" | "ready"}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Status {
    status: String,
}

/// Every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong: a stable machine-readable `code` and a human-readable `message`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorDetail {
    /// `bad_request`, `invalid_geometry`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `timeout`, `payload_too_large`,
    /// `unsupported_media_type`, `limit_exceeded`, `too_many_requests`, `unavailable`,
    /// `internal`, `not_ready`.
    #[schema(example = "not_found")]
    code: String,
    message: String,
    /// With `limit_exceeded` and `too_many_requests`: the limit, as its config key
    /// (`limits.devices`, `limits.requests_per_second`, ...).
    #[schema(example = "limits.devices")]
    limit: Option<String>,
}

/// A shipment's status.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum ShipmentStatus {
    Planned,
    InTransit,
    Arrived,
    Delivered,
    Cancelled,
}

/// A tenant (`POST /v1/tenants`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Tenant {
    id: String,
    name: String,
    /// RFC 3339 UTC.
    #[schema(format = DateTime)]
    created_at: String,
}

/// A new API key: `key` is shown only here, the store keeps its hash.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct KeyCreated {
    id: String,
    tenant: String,
    key: String,
}

/// A device's last fix.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Position {
    /// Degrees.
    lat: f64,
    /// Degrees.
    lon: f64,
    /// RFC 3339 UTC.
    #[schema(format = DateTime)]
    ts: Option<String>,
    speed_kmh: Option<f64>,
    heading_deg: Option<f64>,
    accuracy_m: Option<f64>,
}

/// A device: registry entry and live state.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Device {
    id: String,
    tenant: String,
    name: Option<String>,
    /// `truck` or `sensor`.
    kind: Option<String>,
    /// Whether it is in the registry (devices may also be seen without being registered).
    registered: bool,
    online: bool,
    /// RFC 3339 UTC.
    #[schema(format = DateTime)]
    last_seen: Option<String>,
    position: Option<Position>,
    temp_c: Option<f64>,
    weight_kg: Option<f64>,
    battery_pct: Option<f64>,
    /// Ids of the geofences it is inside now.
    geofences: Vec<String>,
    /// Geodesic distance in metres (`/v1/devices/nearby` only).
    distance_m: Option<f64>,
}

/// `{"devices": [...]}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct DeviceList {
    devices: Vec<Device>,
}

/// `{"devices": [...], "next": CURSOR | null}`: a page of a list (SPEC 15).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct DevicePage {
    devices: Vec<Device>,
    /// Pass as `?next=` for the following page; null on the last page.
    next: Option<String>,
}

/// A GeoJSON geometry (RFC 7946): `coordinates` nest `[lon, lat]` positions in degrees.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Geometry {
    /// `Point`, `LineString`, `Polygon` or `MultiPolygon`.
    #[schema(rename = "type")]
    kind: String,
    /// Positions nested per the geometry type (any JSON array).
    #[schema(value_type = Vec<Value>)]
    coordinates: Value,
}

/// A GeoJSON Feature (RFC 7946). Geofences: `properties` hold `name`, `kind`,
/// `confirm_seconds`, `dwell_seconds`, and `radius_m` (Point) or `corridor_m` (LineString).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Feature {
    /// Always `Feature`.
    #[schema(rename = "type")]
    kind: String,
    /// The geofence or device id.
    id: String,
    geometry: Geometry,
    #[schema(value_type = Object)]
    properties: Value,
}

/// A GeoJSON FeatureCollection.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct FeatureCollection {
    /// Always `FeatureCollection`.
    #[schema(rename = "type")]
    kind: String,
    features: Vec<Feature>,
}

/// `{"geofences": [Feature, ...], "next": CURSOR | null}`: a page of a list (SPEC 15).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct GeofenceList {
    geofences: Vec<Feature>,
    /// Pass as `?next=` for the following page; null on the last page.
    next: Option<String>,
}

/// A shipment's ETA; the members are null until there is one.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Eta {
    /// RFC 3339 UTC.
    #[schema(format = DateTime)]
    eta: Option<String>,
    #[schema(format = DateTime)]
    p10: Option<String>,
    #[schema(format = DateTime)]
    p90: Option<String>,
    remaining_m: Option<f64>,
    remaining_s: Option<f64>,
    /// `route` or `direct`.
    method: Option<String>,
    #[schema(format = DateTime)]
    computed_at: Option<String>,
    status: ShipmentStatus,
}

/// A shipment. Places (`origin`, `destination`) are a geofence id or `{"lat", "lon"}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Shipment {
    id: String,
    tenant: String,
    device: String,
    reference: Option<String>,
    /// A geofence id (string) or `{"lat", "lon"}`.
    origin: Option<Value>,
    /// A geofence id (string) or `{"lat", "lon"}`.
    destination: Value,
    /// The planned route, a GeoJSON LineString geometry.
    route: Option<Geometry>,
    route_corridor_m: Option<f64>,
    #[schema(format = DateTime)]
    deadline: Option<String>,
    /// `[min, max]`, °C.
    temp_range_c: Option<[f64; 2]>,
    max_speed_kmh: Option<f64>,
    status: ShipmentStatus,
    #[schema(format = DateTime)]
    departed_at: Option<String>,
    #[schema(format = DateTime)]
    arrived_at: Option<String>,
    eta: Option<Eta>,
    #[schema(format = DateTime)]
    updated_at: Option<String>,
}

/// `{"shipments": [...]}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ShipmentList {
    shipments: Vec<Shipment>,
}

/// The public view of a shared shipment: no device id, no tenant; position and ETA only while
/// it is `in_transit` (SPEC 15).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct PublicShipment {
    shipment: String,
    reference: Option<String>,
    status: ShipmentStatus,
    /// A geofence id (string) or `{"lat", "lon"}`.
    destination: Value,
    #[schema(format = DateTime)]
    deadline: Option<String>,
    position: Option<Position>,
    eta: Option<Eta>,
}

/// `{"events": [...], "next": CURSOR}`: pass `next` as `since` for the following page.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct EventPage {
    #[schema(value_type = Vec<Object>)]
    events: Value,
    /// An opaque cursor.
    next: String,
}

/// A device's new MQTT credential (SPEC 12): connect with `username` and `password`, shown
/// only here (the store keeps its hash). A new one replaces the old.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct DeviceCredential {
    /// `{tenant}/{device}`.
    username: String,
    password: String,
}
