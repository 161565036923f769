//! The REST API under `/v1` (SPEC 6): tenants and keys, devices and their tracks, geofences,
//! positions, shipments (ETA, share tokens, the public view), the event list, and the live
//! SSE stream.
//!
//! Each handler authenticates ([`Caller`](crate::auth::Caller)), reads or writes the store
//! through the API's own connections, then reads or updates the live tracker through the
//! pipeline's handle. Writes go to the store first, so the tracker never holds what the store
//! would lose in a restart.

mod credentials;
mod devices;
mod events;
mod geofences;
mod geojson;
pub(crate) mod page;
pub(crate) mod positions;
pub use credentials::{CredentialRevoked, Revoked};
pub(crate) mod positions_feed;
pub(crate) mod reports;
pub use reports::ReportSettings;
pub(crate) mod shipments;
pub mod sse;
mod stream;
pub use stream::topics as stream_topics;
mod tenants;
mod track;
mod view;
mod webhooks;
pub use webhooks::WebhookPolicy;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::middleware;
use axum::routing::{delete, get, post};

use crate::error::ApiError;
use crate::state::ApiState;

/// The `/v1` routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/tenants", post(tenants::create))
        .route("/v1/tenants/{id}/keys", post(tenants::create_key))
        .route(
            "/v1/tenants/{id}/keys/{key_id}",
            delete(tenants::revoke_key),
        )
        .route("/v1/devices", get(devices::list).post(devices::create))
        .route("/v1/devices/nearby", get(positions::nearby))
        .route("/v1/devices/{id}/track", get(track::track))
        .route("/v1/devices/{id}/trips", get(reports::trips))
        .route("/v1/devices/{id}/stops", get(reports::stops))
        .route("/v1/reports/geofence-visits", get(reports::geofence_visits))
        .route(
            "/v1/devices/{id}/credentials",
            post(credentials::create).delete(credentials::remove),
        )
        .route(
            "/v1/devices/{id}",
            get(devices::get_one)
                .patch(devices::patch)
                .delete(devices::remove),
        )
        .route(
            "/v1/geofences",
            get(geofences::list)
                .post(geofences::create)
                .layer(DefaultBodyLimit::max(crate::MAX_GEOFENCE_BODY_BYTES)),
        )
        .route(
            "/v1/geofences/{id}",
            get(geofences::get_one)
                .put(geofences::put)
                .delete(geofences::remove)
                .layer(DefaultBodyLimit::max(crate::MAX_GEOFENCE_BODY_BYTES)),
        )
        .route("/v1/geofences/{id}/devices", get(geofences::devices_inside))
        .route("/v1/positions", get(positions::positions))
        .route("/v1/events", get(events::list))
        .route("/v1/stream", get(stream::stream))
        .route(
            "/v1/shipments",
            get(shipments::list).post(shipments::create),
        )
        .route(
            "/v1/shipments/{id}",
            get(shipments::get_one)
                .patch(shipments::patch)
                .delete(shipments::remove),
        )
        .route("/v1/shipments/{id}/eta", get(shipments::eta))
        .route("/v1/shipments/{id}/report", get(reports::shipment_report))
        .route(
            "/v1/shipments/{id}/share",
            get(shipments::get_share)
                .post(shipments::share)
                .delete(shipments::revoke_share),
        )
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get_one)
                .patch(webhooks::patch)
                .delete(webhooks::remove),
        )
        .route(
            "/v1/webhooks/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/webhooks/{id}/replay", post(webhooks::replay))
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(webhooks::retry),
        )
        // No key: the token is the credential.
        .route(
            "/v1/public/{token}",
            get(shipments::public).layer(middleware::from_fn_with_state(state.clone(), token_rate)),
        )
        // Cluster mode's shards: a registry-log entry runs with its seed and time.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::replicated::scope,
        ))
        .with_state(state)
}

/// Holds a share-token route (`/v1/public/{token}`, `/track/{token}`) to the per-key rate,
/// keyed by the token: 429 with `retry-after` past it.
pub(crate) async fn token_rate(
    State(s): State<ApiState>,
    axum::extract::Path(token): axum::extract::Path<String>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    // Hashed apart from API keys, so that a token and a key never share a budget.
    let hash = landport_store::KeyHash::of(&format!("share:{token}"));
    match s.check_rate(&hash, "this share link") {
        Ok(()) => next.run(req).await,
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

/// The `/v1` operations of the OpenAPI document (merged into [`crate::openapi`]'s): one entry
/// per handler registered in [`router`]; `api/tests/openapi.rs` fails when they drift apart.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    tenants::create,
    tenants::create_key,
    tenants::revoke_key,
    devices::list,
    devices::create,
    positions::nearby,
    track::track,
    reports::trips,
    reports::stops,
    reports::geofence_visits,
    reports::shipment_report,
    devices::get_one,
    devices::patch,
    devices::remove,
    credentials::create,
    credentials::remove,
    geofences::list,
    geofences::create,
    geofences::get_one,
    geofences::put,
    geofences::remove,
    geofences::devices_inside,
    positions::positions,
    events::list,
    stream::stream,
    shipments::list,
    shipments::create,
    shipments::get_one,
    shipments::patch,
    shipments::remove,
    shipments::eta,
    shipments::share,
    shipments::get_share,
    shipments::revoke_share,
    shipments::public,
    webhooks::create,
    webhooks::list,
    webhooks::get_one,
    webhooks::patch,
    webhooks::remove,
    webhooks::rotate_secret,
    webhooks::deliveries,
    webhooks::replay,
    webhooks::retry,
))]
pub(crate) struct Doc;

/// Checks an id the user chose (tenant, device, geofence, shipment) against the one id rule,
/// [`landport_tracker::check_id`], which MQTT topics and the config file use too: an id the API
/// accepts is one whose readings ingest accepts.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    landport_tracker::check_id(id).map_err(|e| {
        ApiError::bad_request(format!(
            "{what} id {id:?} {}: ids are 1 to {} characters from A-Z a-z 0-9 . _ -",
            e.reason(),
            landport_tracker::id::MAX_ID_CHARS
        ))
    })
}

/// `prefix` and 16 random bytes in hex (128 bits: unguessable; a replicated entry's are
/// derived from its seed, see [`crate::replicated`]).
pub(crate) fn random_id(prefix: &str) -> Result<String, ApiError> {
    let mut buf = [0u8; 16];
    crate::replicated::fill(&mut buf)?;
    let mut s = String::with_capacity(prefix.len() + 32);
    s.push_str(prefix);
    for b in buf {
        s.push_str(&format!("{b:02x}"));
    }
    Ok(s)
}
