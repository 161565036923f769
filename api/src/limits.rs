//! Limits of SPEC 15 the API enforces: per-tenant quotas ([`Limits`], checked by the handlers
//! that create: 422 naming the limit), the per-key request rate ([`RateLimiter`], governor's
//! keyed GCRA: 429 with `retry-after`), and the per-tenant cap on live streams
//! ([`StreamSlots`]: 429).
//!
//! The binary fills [`Limits`] from the config's `[limits]` section (the API does not depend on
//! the config crate); [`Limits::default`] holds the same defaults, for tests and embedders.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Gcra};

use crate::error::ApiError;

/// Per-tenant quotas and the per-key rate. Field meanings as in the config's `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Registered devices per tenant.
    pub devices: u64,
    /// Geofences per tenant.
    pub geofences: u64,
    /// Vertices per geofence (every ring counted; a Point counts 1).
    pub geofence_vertices: u64,
    /// Shipments per tenant neither delivered nor cancelled.
    pub shipments_active: u64,
    /// Webhooks per tenant.
    pub webhooks: u64,
    /// Open `/v1/stream` connections per tenant.
    pub sse_connections: u64,
    /// Sustained requests per second per API key or share token.
    pub requests_per_second: u32,
    /// Requests at once above the sustained rate.
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            devices: 100_000,
            geofences: 10_000,
            geofence_vertices: 10_000,
            shipments_active: 100_000,
            webhooks: 20,
            sse_connections: 100,
            requests_per_second: 100,
            burst: 200,
        }
    }
}

/// The per-tenant quotas a create is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantQuota {
    Devices,
    Geofences,
    ShipmentsActive,
}

impl TenantQuota {
    /// The config key naming it, as the 422 says.
    pub fn name(self) -> &'static str {
        match self {
            TenantQuota::Devices => "limits.devices",
            TenantQuota::Geofences => "limits.geofences",
            TenantQuota::ShipmentsActive => "limits.shipments_active",
        }
    }

    /// Its value in `limits`.
    pub fn max(self, limits: &Limits) -> u64 {
        match self {
            TenantQuota::Devices => limits.devices,
            TenantQuota::Geofences => limits.geofences,
            TenantQuota::ShipmentsActive => limits.shipments_active,
        }
    }

    /// The 422 for a tenant that has `count` already.
    pub fn exceeded(self, tenant: &str, max: u64) -> ApiError {
        let what = match self {
            TenantQuota::Devices => "devices",
            TenantQuota::Geofences => "geofences",
            TenantQuota::ShipmentsActive => "active shipments",
        };
        ApiError::LimitExceeded {
            limit: self.name(),
            message: format!(
                "{}: tenant {tenant:?} has {max} {what}, the most allowed",
                self.name()
            ),
        }
    }
}

/// Requests per key, GCRA (governor). Keys are 32-byte hashes (of an API key or a share token).
pub struct RateLimiter {
    gcra: Gcra<[u8; 32], DefaultKeyedStateStore<[u8; 32]>, DefaultClock>,
    clock: DefaultClock,
    /// For the 429's message.
    per_second: u32,
    burst: u32,
    /// Checks since the last sweep of idle keys.
    checks: AtomicU64,
}

/// Keys remembered before idle ones are swept (each costs a few dozen bytes).
const RATE_KEYS_SWEEP_ABOVE: usize = 10_000;

impl RateLimiter {
    pub fn new(limits: &Limits) -> RateLimiter {
        let per_second = NonZeroU32::new(limits.requests_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.burst.max(limits.requests_per_second))
            .unwrap_or(NonZeroU32::MIN);
        let clock = DefaultClock::default();
        RateLimiter {
            gcra: Gcra::dashmap_with_clock(
                Quota::per_second(per_second).allow_burst(burst),
                clock.clone(),
            ),
            clock,
            per_second: per_second.get(),
            burst: burst.get(),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request of `key`: `Ok` if within the rate, else the 429 with the time until
    /// the next request would be allowed (`what` says whose rate: "this key").
    pub fn check(&self, key: &[u8; 32], what: &str) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095
            && self.gcra.len() > RATE_KEYS_SWEEP_ABOVE
        {
            // Forgets keys whose state is the same as a fresh key's: bounded memory.
            self.gcra.retain_recent();
        }
        match self.gcra.check_key(key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(ApiError::TooManyRequests {
                    limit: "limits.requests_per_second",
                    retry_after: wait,
                    message: format!(
                        "limits.requests_per_second: {what} made more than {} requests a second \
                         (burst {}); retry after {} ms",
                        self.per_second,
                        self.burst,
                        wait.as_millis().max(1)
                    ),
                })
            }
        }
    }
}

/// Open live streams per tenant, capped at `limits.sse_connections`.
pub struct StreamSlots {
    open: Mutex<HashMap<String, u64>>,
    max: u64,
}

impl StreamSlots {
    pub fn new(max: u64) -> Arc<StreamSlots> {
        Arc::new(StreamSlots {
            open: Mutex::default(),
            max,
        })
    }

    /// Takes a slot of `tenant` (`""`: an admin's stream over every tenant), released when the
    /// returned guard drops; a 429 naming the limit when the tenant has `max` open.
    pub fn acquire(self: &Arc<Self>, tenant: &str) -> Result<StreamSlot, ApiError> {
        // Held for a map operation only, never across an `.await`.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(tenant.to_owned()).or_default();
        if *n >= self.max {
            return Err(ApiError::TooManyRequests {
                limit: "limits.sse_connections",
                retry_after: Duration::from_secs(5),
                message: format!(
                    "limits.sse_connections: tenant {tenant:?} has {} live streams open, the most \
                     allowed",
                    self.max
                ),
            });
        }
        *n += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            tenant: tenant.to_owned(),
        })
    }

    /// Open streams of `tenant`.
    pub fn open(&self, tenant: &str) -> u64 {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(tenant).copied().unwrap_or(0)
    }
}

/// One open live stream; gives its slot back when dropped.
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    tenant: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_429s_with_a_wait_others_are_unaffected() {
        let limits = Limits {
            requests_per_second: 10,
            burst: 20,
            ..Limits::default()
        };
        let rl = RateLimiter::new(&limits);
        let (a, b) = ([1u8; 32], [2u8; 32]);
        for _ in 0..20 {
            rl.check(&a, "this key").unwrap();
        }
        match rl.check(&a, "this key") {
            Err(ApiError::TooManyRequests { retry_after, .. }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(100))
            }
            other => panic!("{other:?}"),
        }
        rl.check(&b, "this key").unwrap();
    }

    #[test]
    fn stream_slots_are_capped_per_tenant_and_given_back_on_drop() {
        let slots = StreamSlots::new(2);
        let a1 = slots.acquire("a").unwrap();
        let _a2 = slots.acquire("a").unwrap();
        assert!(slots.acquire("a").is_err());
        let _b = slots.acquire("b").unwrap();
        drop(a1);
        assert_eq!(slots.open("a"), 1);
        let _a3 = slots.acquire("a").unwrap();
    }
}
