//! `/v1/webhooks` (SPEC 13): a tenant's webhooks, their deliveries, replays and retries.
//!
//! Webhooks touch no live state, so these handlers write the store directly through the API's
//! connections (on blocking threads), like tenants and keys; the delivery engine
//! (landport-sinks) reads what they wrote. The secret is shown in full only in the answers to
//! create and rotate; it is stored as given, since it must sign every delivery.
//!
//! Target URLs are checked at create and PATCH ([`landport_store::check_target`]): `https://`
//! only, and no literal loopback, private, link-local or metadata address (422
//! `target_refused`), unless the binary installed a [`WebhookPolicy`] allowing private targets.
//! Names are checked by the engine after each DNS resolution.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::DateTime;
use landport_store::{
    DeliveryQuery, DeliveryRecord, DeliveryStatus, WebhookHealth, WebhookRecord, check_patterns,
    check_target,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{Page, PageQuery};
use super::random_id;
use crate::auth::Caller;
use crate::error::{ApiError, Json, Path, Query};
use crate::state::ApiState;

/// What target URLs the API accepts: installed by the binary from `[webhooks]`
/// ([`crate::with_webhook_policy`]); absent, private targets are refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// `webhooks.allow_private_targets`.
    pub allow_private_targets: bool,
}

/// How long the secret before a rotation keeps signing.
const ROTATION_OVERLAP_MS: i64 = 24 * 3600 * 1000;
/// Random bytes of a secret (Standard Webhooks: 24 to 64).
const SECRET_BYTES: usize = 32;
/// The longest description, characters.
const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Events queued by one replay at most.
pub const MAX_REPLAY_EVENTS: usize = 100_000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `https://...` (`http://` and private addresses only with
    /// `webhooks.allow_private_targets`).
    url: String,
    /// Event types or patterns with `*` (`geofence.*`, `shipment.arrived`); default `["*"]`.
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    /// `true` enables a webhook (one a 410 disabled too); `false` pauses it (its deliveries
    /// wait).
    #[serde(default)]
    enabled: Option<bool>,
}

/// `POST /v1/webhooks/{id}/replay`: the event-time range to send again, both ends included.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRange {
    /// RFC 3339 (or epoch milliseconds).
    #[schema(value_type = String, format = DateTime)]
    from: Value,
    /// RFC 3339 (or epoch milliseconds), not before `from`.
    #[schema(value_type = String, format = DateTime)]
    to: Value,
}

/// `?status=&since=&limit=&next=` of the deliveries list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesParams {
    /// `pending`, `delivered` or `failed`.
    status: Option<String>,
    /// Only deliveries queued at or after this time (RFC 3339 or epoch milliseconds).
    since: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next` of the previous page.
    next: Option<String>,
}

/// A webhook (schema only, never built): the secret only in the answers to create and rotate.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct Webhook {
    /// `wh_` + 32 hex digits.
    id: String,
    tenant: String,
    url: String,
    events: Vec<String>,
    description: String,
    enabled: bool,
    /// Why it is disabled (a 410 Gone, or a PATCH), when it is.
    disabled_reason: Option<String>,
    /// `whsec_` + base64 of 32 random bytes: shown once.
    secret: Option<String>,
    /// Until when the secret before the last rotation still signs too.
    #[schema(format = DateTime)]
    previous_secret_expires_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    health: Health,
}

/// How a webhook's deliveries go (schema only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct Health {
    /// Deliveries waiting.
    pending: u64,
    /// Deliveries given up (kept; retry them one by one).
    failed: u64,
    /// Failed attempts in a row.
    failures: u64,
    #[schema(format = DateTime)]
    last_success: Option<String>,
    #[schema(format = DateTime)]
    last_failure: Option<String>,
    /// HTTP status of the last attempt; null when it got no answer.
    last_status: Option<u16>,
    last_error: Option<String>,
}

/// A page of webhooks (schema only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct WebhookPage {
    webhooks: Vec<Webhook>,
    /// The cursor of the next page; null on the last.
    next: Option<String>,
}

/// One delivery (schema only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct Delivery {
    /// `dlv_` + a number.
    id: String,
    webhook: String,
    /// The event id: the `webhook-id` header, the same on every try.
    event_id: String,
    event_type: String,
    /// `pending`, `delivered` or `failed`.
    status: String,
    /// Queued by a replay.
    replay: bool,
    attempts: u32,
    /// HTTP status of the last attempt; null when none answered.
    last_status: Option<u16>,
    last_error: Option<String>,
    #[schema(format = DateTime)]
    queued_at: String,
    /// When it is tried next (pending only).
    #[schema(format = DateTime)]
    next_try_at: Option<String>,
    #[schema(format = DateTime)]
    last_attempt_at: Option<String>,
    /// When it was delivered or given up.
    #[schema(format = DateTime)]
    done_at: Option<String>,
}

/// A page of deliveries (schema only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct DeliveryPage {
    deliveries: Vec<Delivery>,
    next: Option<String>,
}

/// The answer to a replay (schema only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct Replayed {
    /// Deliveries queued (stored events of the range matching the webhook's `events`).
    queued: usize,
    /// More events matched than one replay queues (100,000): replay the rest from the last
    /// one's time.
    truncated: bool,
}

/// Server time (a replicated entry's own in cluster mode: [`crate::replicated`]).
fn now_ms() -> i64 {
    crate::replicated::now_ms()
}

fn rfc3339(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |t| {
        json!(landport_tracker::event::format_rfc3339(t))
    })
}

/// An RFC 3339 time, or epoch milliseconds (digits), as epoch milliseconds.
fn parse_time(what: &str, s: &str) -> Result<i64, ApiError> {
    if !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| ApiError::bad_request(format!("{what}: {s:?} is out of range")));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{what}: {s:?} is not an RFC 3339 time or epoch milliseconds"
            ))
        })
}

/// [`parse_time`] of a JSON string, or of a whole non-negative number (epoch milliseconds).
fn parse_time_value(what: &str, v: &Value) -> Result<i64, ApiError> {
    match v {
        Value::String(s) => parse_time(what, s),
        Value::Number(n) => n
            .as_i64()
            .filter(|ms| (0..=999_999_999_999_999).contains(ms))
            .ok_or_else(|| ApiError::bad_request(format!("{what}: {n} is not epoch milliseconds"))),
        other => Err(ApiError::bad_request(format!(
            "{what}: {other} is not an RFC 3339 time or epoch milliseconds"
        ))),
    }
}

fn health_json(h: &WebhookHealth) -> Value {
    json!({
        "pending": h.pending,
        "failed": h.failed,
        "failures": h.failures,
        "last_success": rfc3339(h.last_success_ms),
        "last_failure": rfc3339(h.last_failure_ms),
        "last_status": h.last_status,
        "last_error": h.last_error,
    })
}

fn webhook_json(w: &WebhookRecord, now: i64) -> Value {
    json!({
        "id": w.id,
        "tenant": w.tenant,
        "url": w.url,
        "events": w.events,
        "description": w.description,
        "enabled": w.enabled,
        "disabled_reason": w.disabled_reason,
        "previous_secret_expires_at": rfc3339(w.previous_until_ms.filter(|t| *t > now)),
        "created_at": rfc3339(Some(w.created_ms)),
        "updated_at": rfc3339(Some(w.updated_ms)),
        "health": health_json(&w.health),
    })
}

fn delivery_json(d: &DeliveryRecord) -> Value {
    json!({
        "id": format!("dlv_{}", d.id),
        "webhook": d.webhook,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status.as_str(),
        "replay": d.replay,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "queued_at": rfc3339(Some(d.queued_ms)),
        "next_try_at": rfc3339(d.next_ms),
        "last_attempt_at": rfc3339(d.last_attempt_ms),
        "done_at": rfc3339(d.done_ms),
    })
}

/// A new secret: `whsec_` + base64 of [`SECRET_BYTES`] random bytes (the OS's, or a replicated
/// entry's: [`crate::replicated`]).
fn new_secret() -> Result<String, ApiError> {
    let mut buf = [0u8; SECRET_BYTES];
    crate::replicated::fill(&mut buf)?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(buf)
    ))
}

/// A refused target: 422 `target_refused`, the message saying why.
fn target_refused(message: String) -> Response {
    let body = json!({"error": {"code": "target_refused", "message": message,
        "limit": "webhooks.allow_private_targets"}});
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

/// Checks a target URL: malformed (or not http(s)) is a 400; a scheme or address the policy
/// refuses, the 422.
fn check_url(url: &str, policy: WebhookPolicy) -> Result<Result<(), Response>, ApiError> {
    check_target(url, true).map_err(ApiError::bad_request)?;
    Ok(check_target(url, policy.allow_private_targets)
        .map(|_| ())
        .map_err(target_refused))
}

fn check_events(events: &[String]) -> Result<(), ApiError> {
    check_patterns(events).map_err(ApiError::bad_request)
}

fn check_description(d: &str) -> Result<(), ApiError> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::bad_request(format!(
            "description is longer than {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(())
}

fn policy_of(policy: Option<Extension<WebhookPolicy>>) -> WebhookPolicy {
    policy.map(|Extension(p)| p).unwrap_or_default()
}

/// `POST /v1/webhooks`: a new webhook of the caller's tenant; 201 with its secret, shown once.
/// It gets the events stored after it was created.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    operation_id = "create_webhook",
    params(("tenant" = Option<String>, Query, description = "the tenant (admin keys only)")),
    request_body = NewWebhook,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "the webhook, with its secret (shown once)", body = Webhook),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 413, description = "the body is too large", body = crate::openapi::ErrorBody),
        (status = 415, description = "the body is not application/json", body = crate::openapi::ErrorBody),
        (status = 422, description = "the target is refused (code `target_refused`: not https, or a loopback, private, link-local or metadata address) or the tenant has `limits.webhooks` webhooks (code `limit_exceeded`)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(s): State<ApiState>,
    caller: Caller,
    policy: Option<Extension<WebhookPolicy>>,
    Json(body): Json<NewWebhook>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let events = body.events.unwrap_or_else(|| vec!["*".to_owned()]);
    check_events(&events)?;
    let description = body.description.unwrap_or_default();
    check_description(&description)?;
    if let Err(refused) = check_url(&body.url, policy_of(policy))? {
        return Ok(refused);
    }
    let max = s.limits().webhooks;
    let t = tenant.clone();
    if s.read(move |st| st.count_webhooks(&t)).await? >= max {
        return Err(ApiError::LimitExceeded {
            limit: "limits.webhooks",
            message: format!(
                "limits.webhooks: tenant {tenant:?} has {max} webhooks, the most allowed"
            ),
        });
    }
    let now = now_ms();
    let secret = new_secret()?;
    let record = WebhookRecord {
        tenant,
        id: random_id("wh_")?,
        url: body.url,
        events,
        description,
        enabled: true,
        disabled_reason: None,
        secret: secret.clone(),
        previous_secret: None,
        previous_until_ms: None,
        start_seq: 0,
        created_ms: now,
        updated_ms: now,
        health: WebhookHealth::default(),
    };
    let stored = s.write(move |st| st.insert_webhook(&record)).await?;
    let mut out = webhook_json(&stored, now);
    out["secret"] = json!(secret);
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

/// `GET /v1/webhooks`: a page of the caller's webhooks (an admin naming no tenant: every
/// tenant's), by tenant and id, with their health. No secrets.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    operation_id = "list_webhooks",
    params(PageQuery, ("tenant" = Option<String>, Query, description = "the tenant (admin keys only)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of webhooks", body = WebhookPage),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(s): State<ApiState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page: Page = q.page(2)?;
    let scope = caller.scope().map(str::to_owned);
    let (after, limit) = (page.after.clone(), page.limit);
    let mut items = s
        .read(move |st| {
            let after = after.as_deref().and_then(|a| match a {
                [t, i] => Some((t.as_str(), i.as_str())),
                _ => None,
            });
            st.webhooks(scope.as_deref(), after, limit + 1)
        })
        .await?;
    let next = page.finish(&mut items, |w| vec![w.tenant.as_str(), w.id.as_str()]);
    let now = now_ms();
    let list: Vec<Value> = items.iter().map(|w| webhook_json(w, now)).collect();
    Ok(axum::Json(json!({"webhooks": list, "next": next})).into_response())
}

async fn load(s: &ApiState, tenant: &str, id: &str) -> Result<WebhookRecord, ApiError> {
    let (t, i) = (tenant.to_owned(), id.to_owned());
    s.read(move |st| st.webhook(Some(&t), &i))
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", id))
}

/// `GET /v1/webhooks/{id}`: one webhook with its health (no secret).
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "get_webhook",
    params(("id" = String, Path, description = "the webhook id"), ("tenant" = Option<String>, Query, description = "the tenant (admin keys only)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the webhook", body = Webhook),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn get_one(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?;
    let w = load(&s, tenant, &id).await?;
    Ok(axum::Json(webhook_json(&w, now_ms())).into_response())
}

/// `PATCH /v1/webhooks/{id}`: changes the URL, the events, the description, or enables /
/// pauses it.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "patch_webhook",
    params(("id" = String, Path, description = "the webhook id"), ("tenant" = Option<String>, Query, description = "the tenant (admin keys only)")),
    request_body = WebhookPatch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the webhook as changed", body = Webhook),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 413, description = "the body is too large", body = crate::openapi::ErrorBody),
        (status = 415, description = "the body is not application/json", body = crate::openapi::ErrorBody),
        (status = 422, description = "the new target is refused (code `target_refused`)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn patch(
    State(s): State<ApiState>,
    caller: Caller,
    policy: Option<Extension<WebhookPolicy>>,
    Path(id): Path<String>,
    Json(body): Json<WebhookPatch>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    if let Some(events) = &body.events {
        check_events(events)?;
    }
    if let Some(d) = &body.description {
        check_description(d)?;
    }
    if let Some(url) = &body.url
        && let Err(refused) = check_url(url, policy_of(policy))?
    {
        return Ok(refused);
    }
    let now = now_ms();
    let i = id.clone();
    let changed = s
        .write(move |st| {
            st.update_webhook_with(&tenant, &i, |w| {
                if let Some(url) = body.url {
                    w.url = url;
                }
                if let Some(events) = body.events {
                    w.events = events;
                }
                if let Some(d) = body.description {
                    w.description = d;
                }
                match body.enabled {
                    Some(true) => {
                        w.enabled = true;
                        w.disabled_reason = None;
                    }
                    Some(false) if w.enabled => {
                        w.enabled = false;
                        w.disabled_reason = Some("paused by PATCH".to_owned());
                    }
                    _ => {}
                }
                w.updated_ms = now;
                Ok::<(), ()>(())
            })
        })
        .await?;
    match changed {
        Some(Ok(_)) => {}
        _ => return Err(ApiError::not_found("webhook", id)),
    }
    let tenant = caller.tenant()?;
    let w = load(&s, tenant, &id).await?;
    Ok(axum::Json(webhook_json(&w, now)).into_response())
}

/// `DELETE /v1/webhooks/{id}`: the webhook and its deliveries; 204.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "delete_webhook",
    params(("id" = String, Path, description = "the webhook id"), ("tenant" = Option<String>, Query, description = "the tenant (admin keys only)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted, with its deliveries"),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn remove(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let i = id.clone();
    if !s.write(move |st| st.delete_webhook(&tenant, &i)).await? {
        return Err(ApiError::not_found("webhook", id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/webhooks/{id}/rotate-secret`: a new secret (shown once); the old one keeps
/// signing too for 24 hours, so receivers can switch without missing a delivery.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    operation_id = "rotate_webhook_secret",
    params(("id" = String, Path, description = "the webhook id"), ("tenant" = Option<String>, Query, description = "the tenant (admin keys only)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the webhook with its new secret (shown once)", body = Webhook),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn rotate_secret(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let secret = new_secret()?;
    let now = now_ms();
    let (i, new) = (id.clone(), secret.clone());
    let changed = s
        .write(move |st| {
            st.update_webhook_with(&tenant, &i, |w| {
                // Already this secret: a registry-log entry applied twice (cluster mode; its
                // secret comes from the entry). Keep the old one signing.
                if w.secret == new {
                    return Ok::<(), ()>(());
                }
                w.previous_secret = Some(std::mem::replace(&mut w.secret, new));
                w.previous_until_ms = Some(now + ROTATION_OVERLAP_MS);
                w.updated_ms = now;
                Ok::<(), ()>(())
            })
        })
        .await?;
    let Some(Ok(w)) = changed else {
        return Err(ApiError::not_found("webhook", id));
    };
    let mut out = webhook_json(&w, now);
    out["secret"] = json!(secret);
    Ok(axum::Json(out).into_response())
}

/// `GET /v1/webhooks/{id}/deliveries?status=&since=&limit=&next=`: the webhook's deliveries,
/// oldest first, with attempts, last status and next try.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    operation_id = "list_webhook_deliveries",
    params(("id" = String, Path, description = "the webhook id"), DeliveriesParams, ("tenant" = Option<String>, Query, description = "the tenant (admin keys only)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of deliveries", body = DeliveryPage),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn deliveries(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesParams>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let page = PageQuery {
        limit: q.limit,
        next: q.next.clone(),
    }
    .page(1)?;
    let after_id = match page.after.as_deref() {
        Some([n]) => n
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request("next: not a cursor of this list"))?,
        _ => 0,
    };
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(st) => Some(DeliveryStatus::parse(st).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status: {st:?} is not one of pending, delivered, failed"
            ))
        })?),
    };
    let since_ms = match q.since.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(t) => Some(parse_time("since", t)?),
    };
    load(&s, &tenant, &id).await?;
    let query = DeliveryQuery {
        status,
        since_ms,
        after_id,
        limit: page.limit + 1,
    };
    let i = id.clone();
    let mut items = s
        .read(move |st| st.webhook_deliveries(&tenant, &i, &query))
        .await?;
    let ids: Vec<String> = items.iter().map(|d| d.id.to_string()).collect();
    let next = if items.len() > page.limit {
        items.truncate(page.limit);
        Some(super::page::encode(&[ids[page.limit - 1].as_str()]))
    } else {
        None
    };
    let list: Vec<Value> = items.iter().map(delivery_json).collect();
    Ok(axum::Json(json!({"deliveries": list, "next": next})).into_response())
}

/// `POST /v1/webhooks/{id}/replay` `{"from", "to"}`: queues the stored events of the tenant
/// whose event time is in the range (both ends included) and that match the webhook's
/// `events`, to be sent again (new deliveries; same `webhook-id`s as the first time). 202.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/replay",
    tag = "webhooks",
    operation_id = "replay_webhook",
    params(("id" = String, Path, description = "the webhook id"), ("tenant" = Option<String>, Query, description = "the tenant (admin keys only)")),
    request_body = ReplayRange,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "deliveries queued", body = Replayed),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 413, description = "the body is too large", body = crate::openapi::ErrorBody),
        (status = 415, description = "the body is not application/json", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn replay(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(range): Json<ReplayRange>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let from = parse_time_value("from", &range.from)?;
    let to = parse_time_value("to", &range.to)?;
    if to < from {
        return Err(ApiError::bad_request("to: must not be before from"));
    }
    let w = load(&s, &tenant, &id).await?;
    let now = now_ms();
    let (queued, truncated) = s
        .write(move |st| {
            st.replay_webhook(&tenant, &w.id, &w.events, from, to, MAX_REPLAY_EVENTS, now)
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"queued": queued, "truncated": truncated})),
    )
        .into_response())
}

/// `POST /v1/webhooks/{id}/deliveries/{delivery_id}/retry`: queues one delivery again, due at
/// once, with a fresh retry window (a failed one too). 202 with the delivery.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
    tag = "webhooks",
    operation_id = "retry_webhook_delivery",
    params(
        ("id" = String, Path, description = "the webhook id"),
        ("delivery_id" = String, Path, description = "the delivery id (`dlv_...`)"),
        ("tenant" = Option<String>, Query, description = "the tenant (admin keys only)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "queued again", body = Delivery),
        (status = 400, description = "bad input: the message says what is wrong", body = crate::openapi::ErrorBody),
        (status = 401, description = "no key, or a bad one", body = crate::openapi::ErrorBody),
        (status = 404, description = "no such webhook or delivery (or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error (the cause is logged)", body = crate::openapi::ErrorBody),
    )
)]
pub async fn retry(
    State(s): State<ApiState>,
    caller: Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.to_owned();
    let Some(n) = delivery_id
        .strip_prefix("dlv_")
        .and_then(|n| n.parse::<i64>().ok())
    else {
        return Err(ApiError::not_found("delivery", delivery_id));
    };
    let now = now_ms();
    let found = s
        .write(move |st| st.retry_webhook_delivery(&tenant, &id, n, now))
        .await?;
    match found {
        Some(d) => Ok((StatusCode::ACCEPTED, axum::Json(delivery_json(&d))).into_response()),
        None => Err(ApiError::not_found("delivery", delivery_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_times_are_rfc3339_or_epoch_milliseconds_and_nothing_else() {
        let t = 1_795_400_000_000;
        assert_eq!(
            parse_time_value("from", &json!("2026-11-23T02:13:20Z")).unwrap(),
            t
        );
        assert_eq!(parse_time_value("from", &json!(t)).unwrap(), t);
        assert_eq!(parse_time_value("from", &json!(t.to_string())).unwrap(), t);
        for bad in [
            json!(-1),
            json!(1.5),
            json!(null),
            json!("yesterday"),
            json!([1]),
        ] {
            let e = parse_time_value("from", &bad).unwrap_err().to_string();
            assert!(e.starts_with("from: "), "{e}");
        }
    }

    #[test]
    fn secrets_are_whsec_and_32_random_bytes() {
        use base64::Engine as _;
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        let key = base64::engine::general_purpose::STANDARD
            .decode(a.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(key.len(), SECRET_BYTES);
    }
}
