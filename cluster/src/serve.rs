//! A shard's side of HTTP over NATS: the owner of partition `p` answers the requests the
//! instances' fronts send to `lp.http.{p}` through the shard's own (single-node) router.
//!
//! Every owner of `p` subscribes in the queue group [`QUEUE_GROUP`], so during a handover,
//! when the old and the new owner both listen for a moment, each request is answered once.
//! Requests run concurrently, at most [`MAX_IN_FLIGHT`] at once per shard (past it, the
//! subscription is not read: NATS buffers, then the front times out and says so).

use std::sync::Arc;

use async_nats::HeaderMap;
use axum::Router;
use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::StreamExt;
use landport_api::auth::TenantSlot;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::wire::{WireRequest, WireResponse};

/// The queue group of the shards' subscriptions.
pub const QUEUE_GROUP: &str = "shard";

/// Requests of one shard running at once.
pub const MAX_IN_FLIGHT: usize = 64;

/// How long requests still running at a stop may take to answer.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The response header naming the tenant of the request's key (`*`: the admin key), which
/// fronts learn to route a key's single-device reads to the device's partition.
pub const TENANT_HEADER: &str = "x-landport-tenant";

/// The subject on which partition `partition` answers HTTP requests.
pub fn subject(partition: u32) -> String {
    format!("lp.http.{partition}")
}

/// Answers requests to partition `partition` with `router` (the shard's own API router)
/// until `stop`, then lets those under way finish (for a short while).
pub async fn serve_shard(
    client: async_nats::Client,
    partition: u32,
    router: Router,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut sub = client
        .queue_subscribe(subject(partition), QUEUE_GROUP.to_owned())
        .await
        .map_err(|e| anyhow::anyhow!("subscribing to {}: {e}", subject(partition)))?;
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut running = JoinSet::new();
    loop {
        let msg = tokio::select! {
            m = sub.next() => match m {
                Some(m) => m,
                None => break,
            },
            _ = stop.cancelled() => break,
        };
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = stop.cancelled() => break,
        };
        while running.try_join_next().is_some() {}
        let Some(reply) = msg.reply.clone() else {
            tracing::debug!(
                partition,
                "an HTTP request without a reply subject, dropped"
            );
            continue;
        };
        let (client, router) = (client.clone(), router.clone());
        running.spawn(async move {
            let max = client.server_info().max_payload;
            let res = answer(router, msg.headers.as_ref(), msg.payload, max).await;
            let (h, p) = res.to_nats();
            if let Err(e) = client.publish_with_headers(reply, h, p).await {
                tracing::warn!(partition, error = %e, "answering an HTTP request over NATS");
            }
            drop(slot);
        });
    }
    let _ = sub.unsubscribe().await;
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    let _ = client.flush().await;
    Ok(())
}

/// The answer to one request message: the router's response, with [`TENANT_HEADER`] when the
/// request carried a valid key; a 400 for a message that is no request; a 507 when the
/// response would not fit in one NATS message of `max_payload` bytes (0: unknown, no check).
pub async fn answer(
    router: Router,
    headers: Option<&HeaderMap>,
    payload: Bytes,
    max_payload: usize,
) -> WireResponse {
    let req = match WireRequest::from_nats(headers, payload).and_then(|w| w.to_http()) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("not an HTTP request over NATS: {e}"),
            );
        }
    };
    let slot = TenantSlot::default();
    let mut req = req;
    req.extensions_mut().insert(slot.clone());
    let res = match router.oneshot(req).await {
        Ok(res) => res,
        Err(e) => match e {},
    };
    let mut res = match WireResponse::from_http(res).await {
        Ok(res) => res,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &format!("reading the shard's response: {e}"),
            );
        }
    };
    if let Some(tenant) = slot.get() {
        res.headers.push((TENANT_HEADER.to_owned(), tenant));
    }
    let size = message_size(&res);
    if max_payload > 0 && size > max_payload {
        return error(
            StatusCode::INSUFFICIENT_STORAGE,
            "response_too_large",
            &format!(
                "the answer is {size} bytes, more than one NATS message may carry \
                 (the server's max_payload, {max_payload} bytes): ask for less \
                 (a smaller bbox, a lower limit, a shorter range)"
            ),
        );
    }
    res
}

/// Bytes of the NATS message carrying `res`: its payload and (an upper bound of) its headers.
fn message_size(res: &WireResponse) -> usize {
    let headers: usize = res.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    // "NATS/1.0\r\n", the status header, the closing "\r\n".
    res.body.len() + headers + 64
}

fn error(status: StatusCode, code: &str, message: &str) -> WireResponse {
    WireResponse::json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{METHOD, PATH};
    use axum::routing::get;

    fn router() -> Router {
        Router::new()
            .route("/small", get(|| async { "ok" }))
            .route("/big", get(|| async { "x".repeat(10_000) }))
    }

    fn request(path: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(METHOD, "GET");
        h.insert(PATH, path);
        h
    }

    #[tokio::test]
    async fn a_request_runs_through_the_router() {
        let res = answer(router(), Some(&request("/small")), Bytes::new(), 1 << 20).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.body, Bytes::from("ok"));
        // No key, no tenant.
        assert_eq!(res.header(TENANT_HEADER), None);
    }

    #[tokio::test]
    async fn a_malformed_message_is_a_400_not_a_panic() {
        let res = answer(router(), None, Bytes::from("junk"), 1 << 20).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST);
        let mut h = request("/small");
        h.insert(METHOD, "G E T");
        assert_eq!(
            answer(router(), Some(&h), Bytes::new(), 0).await.status,
            StatusCode::BAD_REQUEST
        );
        let h = request("not a uri \u{7f}");
        assert_eq!(
            answer(router(), Some(&h), Bytes::new(), 0).await.status,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn an_answer_over_the_max_payload_is_replaced_by_an_error_saying_so() {
        let res = answer(router(), Some(&request("/big")), Bytes::new(), 4096).await;
        assert_eq!(res.status, StatusCode::INSUFFICIENT_STORAGE);
        let v: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
        assert_eq!(v["error"]["code"], "response_too_large");
        assert!(v["error"]["message"].as_str().unwrap().contains("4096"));
        let res = answer(router(), Some(&request("/big")), Bytes::new(), 1 << 20).await;
        assert_eq!(res.status, StatusCode::OK);
    }
}
