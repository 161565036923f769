//! The API's one error type, and the extractors that turn axum's rejections into it.
//!
//! Every failure leaves as `{"error": {"code": "...", "message": "..."}}` with its status:
//! bad input is a 4xx that says what is wrong; an internal fault is a generic 500 whose cause
//! goes to the log only (axum's `error-handling` example).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use landport_pipeline::CommandError;
use landport_store::StoreError;
use landport_tracker::TrackerError;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: malformed or out-of-range input; the message says what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// 400: a geometry the tracker refuses (self-intersecting polygon, open ring, ...).
    #[error("{0}")]
    InvalidGeometry(String),
    /// 401: no key, or a key that is not (or no longer) valid.
    #[error("a valid API key is required (Authorization: Bearer KEY)")]
    Unauthorized,
    /// 403: a tenant key on an admin-only endpoint.
    #[error("this endpoint needs an admin key")]
    Forbidden,
    /// 404: missing, or another tenant's: the body depends only on the request.
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    /// 405: the path exists, the method does not.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// 409: the id is taken.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than [`crate::MAX_BODY_BYTES`].
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: a JSON body without `Content-Type: application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 408: the request took longer than `http.request_timeout_seconds`.
    #[error("the request took longer than {0:?}")]
    Timeout(std::time::Duration),
    /// 422: a per-tenant quota of `[limits]` is reached; `limit` names it (`limits.devices`).
    #[error("{message}")]
    LimitExceeded {
        limit: &'static str,
        message: String,
    },
    /// 429: a rate or a concurrency limit (`limit`), with the time after which to retry.
    #[error("{message}")]
    TooManyRequests {
        limit: &'static str,
        retry_after: std::time::Duration,
        message: String,
    },
    /// 503: the pipeline (and so the live tracker) has stopped.
    #[error("the tracker is not running")]
    Unavailable,
    /// 500: a fault of ours; the cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn not_found(what: &'static str, id: impl Into<String>) -> ApiError {
        ApiError::NotFound {
            what,
            id: id.into(),
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::BadRequest(msg.into())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::InvalidGeometry(_) => (StatusCode::BAD_REQUEST, "invalid_geometry"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::LimitExceeded { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "limit_exceeded"),
            ApiError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
            }
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(cause, "internal error answering an API request");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = json!({"error": {"code": code, "message": message}});
        let mut res = match &self {
            ApiError::LimitExceeded { limit, .. } => {
                body["error"]["limit"] = json!(limit);
                (status, axum::Json(body)).into_response()
            }
            ApiError::TooManyRequests {
                limit, retry_after, ..
            } => {
                body["error"]["limit"] = json!(limit);
                // Whole seconds, rounded up (RFC 9110 §10.2.3): never 0, which means "now".
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let mut res = (status, axum::Json(body)).into_response();
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                res
            }
            _ => (status, axum::Json(body)).into_response(),
        };
        if status == StatusCode::REQUEST_TIMEOUT {
            // The client may have sent part of a body we did not read.
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::AlreadyExists { what, id } => {
                ApiError::Conflict(format!("{what} {id:?} already exists"))
            }
            other => ApiError::Internal(format!("store: {other}")),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        match e {
            CommandError::Refused(TrackerError::InvalidGeometry(m)) => {
                ApiError::InvalidGeometry(format!("invalid geometry: {m}"))
            }
            CommandError::Refused(other) => ApiError::BadRequest(other.to_string()),
            CommandError::NotFound { what, id } => ApiError::NotFound { what, id },
            CommandError::Store(e) => e.into(),
            CommandError::Stopped => ApiError::Unavailable,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
                "the body is larger than this endpoint takes ({} bytes; geofences {} bytes)",
                crate::MAX_BODY_BYTES,
                crate::MAX_GEOFENCE_BODY_BYTES
            )),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(r.body_text()),
            // Syntax errors (axum: 400) and type or unknown-field errors (axum: 422) alike.
            _ => ApiError::BadRequest(r.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::BadRequest(r.body_text())
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s (400 / 413 / 415 with a JSON body).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(v))
    }
}

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(v))
    }
}

/// `axum::extract::Path` whose rejections are [`ApiError`]s.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(v) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(v))
    }
}
