//! # landport-api
//!
//! The HTTP side of Landport (axum): the operational endpoints `GET /healthz` (the process is
//! up), `GET /readyz` (connected to the broker and the pipeline running: send traffic) and
//! `GET /metrics` (Prometheus text), and the REST API under `/v1` (SPEC 6).
//!
//! Layout: `error` (the one [`ApiError`], and JSON/Query/Path extractors whose rejections are
//! `ApiError`s), `auth` (the bearer-key extractor [`auth::Caller`]), `state` ([`ApiState`]: the
//! API's own store connections, the tracker handle, the admin key), `v1` (handlers, one file
//! per resource, GeoJSON in `v1::geojson`).
//!
//! The API never reaches into the pipeline's locks and never runs on its task: it reads the
//! metrics, the store through its own connections (on blocking threads), and live state from
//! the read side the pipeline publishes; writes go as commands through the pipeline's
//! [`TrackerHandle`](landport_pipeline::TrackerHandle), run between batches. It depends on
//! landport-pipeline and the store, not on ingest.
//!
//! Wiring (the binary): [`router`] serves the operational endpoints alone; [`router_with_api`]
//! adds `/v1`. [`ApiState::new`] opens the API's own store connections (after the binary has
//! opened and migrated the store) and keeps the pipeline's tracker handle and event stream:
//!
//! ```no_run
//! # use std::sync::{Arc, atomic::AtomicBool};
//! # fn wire(
//! #     storage_path: &std::path::Path,
//! #     admin_key: Option<&str>,
//! #     metrics: Arc<landport_pipeline::metrics::Metrics>,
//! #     ready: Arc<AtomicBool>,
//! #     tracker: landport_pipeline::TrackerHandle,
//! #     events: tokio::sync::broadcast::Sender<Arc<landport_tracker::Event>>,
//! # ) -> Result<axum::Router, landport_store::StoreError> {
//! let api = landport_api::ApiState::new(storage_path, tracker, events, admin_key)?;
//! let router = landport_api::router_with_api(landport_api::AppState { metrics, ready }, api);
//! # Ok(router)
//! # }
//! ```

pub mod auth;
mod budget;
pub mod error;
pub mod limits;
mod openapi;
pub mod replicated;
mod state;
pub mod tls;
mod v1;
pub use v1::ReportSettings;
pub use v1::WebhookPolicy;
pub use v1::positions::positions_json;
/// Server-sent events framed once and shared (also cluster mode's live stream).
pub use v1::sse;
pub use v1::stream_topics;
pub use v1::{CredentialRevoked, Revoked};
pub mod web;

pub use error::ApiError;
pub use limits::Limits;
pub use state::{ApiState, Owns};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use landport_pipeline::metrics::Metrics;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    /// Set by the binary when the broker connection and the pipeline are up.
    pub ready: Arc<AtomicBool>,
}

/// Largest request body accepted, bytes; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest body of a geofence (`POST /v1/geofences`, `PUT /v1/geofences/{id}`), bytes.
pub const MAX_GEOFENCE_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The operational endpoints only (`/healthz`, `/readyz`, `/metrics`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The OpenAPI document alone (`/openapi.json`): served by an instance itself in cluster
/// mode, where `/v1` goes to the partitions.
pub fn openapi_router() -> Router {
    Router::new().route("/openapi.json", get(openapi::openapi_json))
}

/// Every route: the operational endpoints and the REST API under `/v1`. Bodies are limited
/// to [`MAX_BODY_BYTES`]; unknown paths get a JSON 404, unknown methods a JSON 405.
pub fn router_with_api(state: AppState, api: ApiState) -> Router {
    router(state)
        .merge(v1::router(api))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(unknown_route)
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Installs the hook told when an MQTT credential stops working (a device's credential replaced
/// or revoked, the device deleted, a tenant key revoked): the binary points it at the MQTT
/// endpoint, which cuts the sessions that authenticated with it.
pub fn on_credential_revoked(router: Router, hook: CredentialRevoked) -> Router {
    router.layer(axum::Extension(hook))
}

/// Installs what webhook target URLs the API accepts (`[webhooks] allow_private_targets`);
/// without it, private targets and `http://` are refused.
pub fn with_webhook_policy(router: Router, policy: WebhookPolicy) -> Router {
    router.layer(axum::Extension(policy))
}

/// Installs the `[reports]` settings (range limit, stop radius, trip length, gap) the report
/// endpoints use; without it, the defaults of SPEC 14.
pub fn with_report_settings(router: Router, settings: ReportSettings) -> Router {
    router.layer(axum::Extension(settings))
}

async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found("route", uri.path())
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        axum::Json(json!({"status": "ready"})).into_response()
    } else {
        let body = json!({"error": {"code": "not_ready",
            "message": "not connected to the MQTT broker yet, or the pipeline is not running"}});
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// How the HTTP server treats connections (SPEC 15): filled by the binary from `[http]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeSettings {
    /// A client must send a request's headers within this long, on a new connection and on a
    /// kept-alive one waiting for its next request (hyper's header read timeout): a slow or
    /// idle client is disconnected after it (slowloris).
    pub header_read_timeout: std::time::Duration,
    /// Connections open at once; past it the server stops accepting (new ones wait in the
    /// kernel's listen queue) until one closes.
    pub max_connections: usize,
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            header_read_timeout: std::time::Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, each connection driven by hyper's HTTP/1
/// server with a timer (the header read timeout of `settings`), at most
/// `settings.max_connections` at once.
///
/// In-flight requests get [`SHUTDOWN_GRACE`] to finish; connections that never end by
/// themselves (an open map's event stream) are then dropped, so a stop never hangs on a
/// browser tab.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
    settings: ServeSettings,
) -> std::io::Result<()> {
    serve_with_tls(listener, router, shutdown, settings, None).await
}

/// The most bytes hyper buffers per connection, and so about the most one write to a socket
/// carries (large bodies come in chunks of this size: a province box, a live map's items).
/// The HTTP threads run under `SCHED_IDLE`, but this kernel (like most servers') does not
/// preempt a thread inside a system call: a write of several MB to a loopback or LAN socket
/// held a core for milliseconds while an ingest thread that had woken waited for it. With
/// 64 KiB writes the wait is tens of microseconds (BENCHMARKS.md, "Session 7").
pub const WRITE_BYTES: usize = 64 * 1024;

/// [`serve`], over TLS when `tls` is given (`http.tls = true`: HTTPS on the same listener,
/// see [`tls`]). A client must finish the TLS handshake within the header read timeout; one
/// that fails it (plain HTTP to the HTTPS port, a certificate it refuses) is dropped.
pub async fn serve_with_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
    settings: ServeSettings,
    tls: Option<tls::TlsAcceptor>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(WRITE_BYTES)
        .keep_alive(true);
    loop {
        // A slot first: at the cap, connections queue in the kernel, not in our memory.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin; a failed
                    // handshake of one client (ECONNABORTED...) is that client's problem.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        if let Some(acceptor) = &tls {
            let (acceptor, http, watcher) = (acceptor.clone(), http.clone(), graceful.watcher());
            let handshake_timeout = settings.header_read_timeout;
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                if let Ok(Ok(stream)) = handshake.await {
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                }
                drop(slot);
            });
            continue;
        }
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // An error here is the client's (reset, timeout, malformed request): not logged.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
    Ok(())
}

/// Fails a request that takes longer than `timeout` with a JSON 408. Applied to every route but
/// the live stream, whose response (headers) starts at once and whose body may last hours: the
/// timeout covers reading the request and computing the response, not streaming its body.
pub fn request_timeout(router: Router, timeout: std::time::Duration) -> Router {
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(res) => res,
                Err(_) => ApiError::Timeout(timeout).into_response(),
            }
        },
    ))
}

/// How long requests still running at shutdown may take.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Binds the HTTP listener, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("binding HTTP on {addr}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn app(ready: bool) -> (Router, Arc<Metrics>) {
        let metrics = Metrics::new();
        let state = AppState {
            metrics: metrics.clone(),
            ready: Arc::new(AtomicBool::new(ready)),
        };
        (router(state), metrics)
    }

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let res = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_is_always_ok_and_readiness_follows_the_flag() {
        let (status, _) = get(app(false).0, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = get(app(false).0, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("not_ready"));
        assert_eq!(get(app(true).0, "/readyz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_render_the_counters() {
        let (router, metrics) = app(true);
        metrics.reject("invalid_json");
        let (status, body) = get(router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("landport_rejected_total{reason=\"invalid_json\"} 1"),
            "{body}"
        );
    }
}
