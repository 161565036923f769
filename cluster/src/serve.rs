//! A shard's side of HTTP over NATS: the owner of partition `p` answers the requests the
//! instances' fronts send to `lphttp.{p}` through the shard's own (single-node) router.
//!
//! Every owner of `p` subscribes in the queue group [`QUEUE_GROUP`], so during a handover,
//! when the old and the new owner both listen for a moment, each request is answered once.
//! Requests run concurrently, at most [`MAX_IN_FLIGHT`] at once per shard (past it, the
//! subscription is not read: NATS buffers, then the front times out and says so).
//!
//! An answer larger than one NATS message (the server's `max_payload`, 1 MiB by default; a
//! province's positions are megabytes) goes as several: the first carries the status, the
//! headers and [`CHUNKS`] (how many messages in all), the others the rest of the body, in
//! order (one publisher, one subscriber: NATS keeps their order). Past
//! [`MAX_RESPONSE_BYTES`] the answer is a 507 saying so.

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

/// NATS header of the first message of an answer sent in several: how many messages in all.
pub const CHUNKS: &str = "Lp-Chunks";

/// The largest answer sent, bytes (in messages of at most the server's `max_payload`).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The response header naming the tenant of the request's key (`*`: the admin key), which
/// fronts learn to route a key's single-device reads to the device's partition.
pub const TENANT_HEADER: &str = "x-landport-tenant";

/// The subject on which partition `partition` answers HTTP requests. Outside `lp.>`, which
/// the telemetry stream captures (a request there would be stored, and answered by
/// JetStream's publish acknowledgement).
pub fn subject(partition: u32) -> String {
    format!("lphttp.{partition}")
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
            let res = answer(router, msg.headers.as_ref(), msg.payload).await;
            for (h, p) in messages(res, max) {
                if let Err(e) = client.publish_with_headers(reply.clone(), h, p).await {
                    tracing::warn!(partition, error = %e, "answering an HTTP request over NATS");
                    break;
                }
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
/// request carried a valid key; a 400 for a message that is no request.
pub async fn answer(router: Router, headers: Option<&HeaderMap>, payload: Bytes) -> WireResponse {
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
    res
}

/// The NATS messages (headers, payload) carrying `res` when one may hold `max_payload` bytes
/// (0: unknown, one message): one if it fits, else the first with the status, the headers and
/// [`CHUNKS`], then the rest of the body. Past [`MAX_RESPONSE_BYTES`], a 507 saying so.
pub fn messages(res: WireResponse, max_payload: usize) -> Vec<(HeaderMap, Bytes)> {
    let overhead = headers_size(&res) + 64;
    if max_payload == 0 || res.body.len() + overhead <= max_payload {
        return vec![res.to_nats()];
    }
    if res.body.len() > MAX_RESPONSE_BYTES || overhead + 256 > max_payload {
        let size = res.body.len();
        let e = error(
            StatusCode::INSUFFICIENT_STORAGE,
            "response_too_large",
            &format!(
                "the answer is {size} bytes, more than a partition sends \
                 ({MAX_RESPONSE_BYTES} bytes): ask for less \
                 (a smaller bbox, a lower limit, a shorter range)"
            ),
        );
        return vec![e.to_nats()];
    }
    let chunk = max_payload - overhead;
    let n = res.body.len().div_ceil(chunk);
    let mut out = Vec::with_capacity(n);
    let (mut h, _) = res.to_nats();
    h.insert(CHUNKS, n.to_string().as_str());
    out.push((h, res.body.slice(..chunk)));
    let mut at = chunk;
    while at < res.body.len() {
        let end = (at + chunk).min(res.body.len());
        out.push((HeaderMap::new(), res.body.slice(at..end)));
        at = end;
    }
    out
}

/// Bytes of the NATS headers of `res` (an upper bound).
fn headers_size(res: &WireResponse) -> usize {
    // "NATS/1.0\r\n", the status and chunk headers, the closing "\r\n".
    64 + res
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum::<usize>()
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
    use crate::wire::{METHOD, PATH, STATUS};
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
        let res = answer(router(), Some(&request("/small")), Bytes::new()).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.body, Bytes::from("ok"));
        // No key, no tenant.
        assert_eq!(res.header(TENANT_HEADER), None);
    }

    #[tokio::test]
    async fn a_malformed_message_is_a_400_not_a_panic() {
        let res = answer(router(), None, Bytes::from("junk")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST);
        let mut h = request("/small");
        h.insert(METHOD, "G E T");
        assert_eq!(
            answer(router(), Some(&h), Bytes::new()).await.status,
            StatusCode::BAD_REQUEST
        );
        let h = request("not a uri \u{7f}");
        assert_eq!(
            answer(router(), Some(&h), Bytes::new()).await.status,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn an_answer_over_the_max_payload_goes_in_several_messages() {
        let res = answer(router(), Some(&request("/big")), Bytes::new()).await;
        assert_eq!(messages(res.clone(), 1 << 20).len(), 1);
        let msgs = messages(res.clone(), 4096);
        assert_eq!(msgs.len(), 3, "10,000 bytes in messages of 4,096");
        for (i, (h, p)) in msgs.iter().enumerate() {
            assert!(p.len() + 128 <= 4096, "message {i}: {} bytes", p.len());
            // Only the first carries the status (and the headers).
            assert_eq!(h.get(STATUS).is_some(), i == 0, "message {i}");
        }
        assert_eq!(msgs[0].0.get(CHUNKS).map(|v| v.as_str()), Some("3"));
        let first = WireResponse::from_nats(Some(&msgs[0].0), msgs[0].1.clone()).unwrap();
        assert_eq!(first.status, StatusCode::OK);
        let body: Vec<u8> = msgs.iter().flat_map(|(_, p)| p.to_vec()).collect();
        assert_eq!(body, res.body.to_vec());
    }

    #[test]
    fn an_answer_past_the_largest_sent_is_a_507_saying_so() {
        let big = WireResponse {
            status: StatusCode::OK,
            headers: vec![],
            body: Bytes::from(vec![b'x'; MAX_RESPONSE_BYTES + 1]),
        };
        let msgs = messages(big, 1 << 20);
        assert_eq!(msgs.len(), 1);
        let res = WireResponse::from_nats(Some(&msgs[0].0), msgs[0].1.clone()).unwrap();
        assert_eq!(res.status, StatusCode::INSUFFICIENT_STORAGE);
        let v: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
        assert_eq!(v["error"]["code"], "response_too_large");
    }
}
