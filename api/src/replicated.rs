//! Request-scoped determinism for cluster mode's shards.
//!
//! In cluster mode every registry write is an entry of a replicated log that every shard (a
//! partition's complete core, with its own store and its own router) applies through its
//! router. For every shard to write the same rows, what a write handler would otherwise take
//! from the machine comes from the entry instead: the entry carries a random seed
//! ([`SEED_HEADER`], 32 bytes in hex) and the submitter's server time ([`NOW_HEADER`], epoch
//! milliseconds). While such a request runs, `fill` derives its "random" bytes from the seed
//! (SHA-256 of seed || a per-request counter, as big-endian u64: a hash keyed by 256 secret
//! bits, one block per call in the order the handler asks, which is the same on every shard)
//! and `now_ms` answers the entry's time. Ids, keys, device passwords, webhook secrets, share
//! tokens and creation/change times come out identical on every shard.
//!
//! The headers are honored only by an [`ApiState`] built for a shard
//! ([`ApiState::trust_replication_headers`]): a normal server ignores them, so no client can
//! choose its own key or token. In a shard they come from the registry log only (the cluster's
//! HTTP front never forwards them).
//!
//! A replicated request also skips the per-key rate (it was held where the request came in;
//! a 429 on one shard and not another would make the shards diverge).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::ApiState;

/// Header of a replicated entry: its seed, 32 bytes in hex (64 characters).
pub const SEED_HEADER: &str = "x-landport-seed";
/// Header of a replicated entry: the submitter's server time, epoch milliseconds.
pub const NOW_HEADER: &str = "x-landport-now";
/// Header of a replicated entry: the SHA-256 of the caller's key, in hex, which a shard
/// authenticates the entry by. The registry log keeps this instead of the key itself, so that
/// reading the log does not give anyone a key to call the API with.
pub const KEY_HASH_HEADER: &str = "x-landport-key-hash";

/// What a replicated request's randomness and time come from.
struct Env {
    seed: [u8; 32],
    now_ms: i64,
    /// Blocks of randomness handed out so far.
    counter: AtomicU64,
}

tokio::task_local! {
    static ENV: Env;
}

/// Server time, epoch milliseconds: the entry's time while a replicated request runs, the
/// clock otherwise. Call it on the request's task (not inside a `spawn_blocking` closure,
/// which does not see the request).
pub(crate) fn now_ms() -> i64 {
    ENV.try_with(|e| e.now_ms)
        .unwrap_or_else(|_| landport_pipeline::now_ms())
}

/// The entry's time while a replicated request runs.
pub(crate) fn replicated_now() -> Option<i64> {
    ENV.try_with(|e| e.now_ms).ok()
}

/// Whether the running request is a replicated entry.
pub(crate) fn is_replicated() -> bool {
    ENV.try_with(|_| ()).is_ok()
}

/// Fills `buf` with random bytes: derived from the entry's seed while a replicated request
/// runs (see the module docs), from the OS's random source otherwise.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), ApiError> {
    let derived = ENV.try_with(|e| {
        for chunk in buf.chunks_mut(32) {
            let n = e.counter.fetch_add(1, Ordering::Relaxed);
            let mut h = Sha256::new();
            h.update(e.seed);
            h.update(n.to_be_bytes());
            let block = h.finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    });
    if derived.is_ok() {
        return Ok(());
    }
    getrandom::fill(buf)
        .map_err(|e| ApiError::Internal(format!("the OS random source failed: {e}")))
}

/// Middleware of the `/v1` routes: runs a request carrying both replication headers inside
/// their [`Env`], when the state trusts them; otherwise the request runs as it came (the
/// headers ignored). A shard refuses a request with only one of them, or a malformed one.
pub(crate) async fn scope(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if !s.trusts_replication_headers() {
        return next.run(req).await;
    }
    let seed = req.headers().get(SEED_HEADER);
    let now = req.headers().get(NOW_HEADER);
    if seed.is_none() && now.is_none() {
        return next.run(req).await;
    }
    let env = match (seed, now) {
        (Some(seed), Some(now)) => parse(seed.as_bytes(), now.as_bytes()),
        _ => Err(format!(
            "a replicated request carries both {SEED_HEADER} and {NOW_HEADER}"
        )),
    };
    match env {
        Ok(env) => ENV.scope(env, next.run(req)).await,
        Err(m) => ApiError::bad_request(m).into_response(),
    }
}

fn parse(seed: &[u8], now: &[u8]) -> Result<Env, String> {
    let mut out = [0u8; 32];
    if seed.len() != 64 {
        return Err(format!("{SEED_HEADER}: not 32 bytes in hex"));
    }
    for (i, pair) in seed.chunks(2).enumerate() {
        let hi = hex_digit(pair[0]);
        let lo = hex_digit(pair[1]);
        match (hi, lo) {
            (Some(hi), Some(lo)) => out[i] = (hi << 4) | lo,
            _ => return Err(format!("{SEED_HEADER}: not 32 bytes in hex")),
        }
    }
    let now_ms = std::str::from_utf8(now)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|ms| *ms >= 0)
        .ok_or_else(|| format!("{NOW_HEADER}: not epoch milliseconds"))?;
    Ok(Env {
        seed: out,
        now_ms,
        counter: AtomicU64::new(0),
    })
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[tokio::test]
    async fn inside_an_entry_randomness_and_time_come_from_it_in_order() {
        let run = || async {
            let env = parse(SEED.as_bytes(), b"1795400000000").unwrap();
            ENV.scope(env, async {
                let mut a = [0u8; 16];
                let mut b = [0u8; 40];
                fill(&mut a).unwrap();
                fill(&mut b).unwrap();
                (a, b, now_ms(), is_replicated())
            })
            .await
        };
        let (a1, b1, now1, rep) = run().await;
        let (a2, b2, now2, _) = run().await;
        assert!(rep);
        assert_eq!((a1, b1, now1), (a2, b2, now2));
        assert_eq!(now1, 1_795_400_000_000);
        assert_ne!(a1[..], b1[..16], "each call draws new bytes");
        let mut h = Sha256::new();
        h.update(parse(SEED.as_bytes(), b"0").unwrap().seed);
        h.update(0u64.to_be_bytes());
        assert_eq!(a1[..], h.finalize()[..16], "SHA-256 of seed || counter");
    }

    #[test]
    fn outside_an_entry_randomness_and_time_are_the_machines() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        fill(&mut a).unwrap();
        fill(&mut b).unwrap();
        assert_ne!(a, b);
        assert!(!is_replicated());
        assert!(replicated_now().is_none());
        assert!((now_ms() - landport_pipeline::now_ms()).abs() < 60_000);
    }

    #[test]
    fn malformed_headers_are_refused_naming_the_header() {
        assert!(parse(b"abc", b"1").err().unwrap().contains(SEED_HEADER));
        let bad_hex = SEED.replace('0', "g");
        assert!(parse(bad_hex.as_bytes(), b"1").is_err());
        assert!(
            parse(SEED.as_bytes(), b"-5")
                .err()
                .unwrap()
                .contains(NOW_HEADER)
        );
        assert!(parse(SEED.as_bytes(), b"soon").is_err());
    }
}
