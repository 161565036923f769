//! `[limits]`: per-tenant quotas and the per-key request rate (SPEC 15).

use serde::{Deserialize, Serialize};

use crate::validate::Problems;

/// The `[limits]` section. Quotas are per tenant; the rate is per API key (and per share token
/// on the public routes). Over a quota the API answers 422, over the rate 429 with
/// `retry-after`, each naming the limit (`limits.devices`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Registered devices per tenant.
    pub devices: u64,
    /// Geofences per tenant.
    pub geofences: u64,
    /// Vertices per geofence, every ring of every polygon counted (a Point counts 1). It bounds
    /// the work of validating one fence.
    pub geofence_vertices: u64,
    /// Shipments per tenant that are neither delivered nor cancelled.
    pub shipments_active: u64,
    /// Webhooks per tenant (for the webhooks of SPEC 13).
    pub webhooks: u64,
    /// Open live streams (`/v1/stream`) per tenant.
    pub sse_connections: u64,
    /// Sustained requests per second per API key (or share token).
    pub requests_per_second: u32,
    /// Requests a key may make at once above the sustained rate.
    pub burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
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

impl LimitsConfig {
    /// The most vertices `geofence_vertices` may be: validation is O(n log n), but a fence's
    /// point tests and its JSON grow with it.
    pub const MAX_GEOFENCE_VERTICES: u64 = 1_000_000;

    pub(crate) fn validate(&self, p: &mut Problems) {
        for (value, path) in [
            (self.devices, "limits.devices"),
            (self.geofences, "limits.geofences"),
            (self.shipments_active, "limits.shipments_active"),
            (self.webhooks, "limits.webhooks"),
            (self.sse_connections, "limits.sse_connections"),
        ] {
            p.check(value >= 1, path, "must be at least 1");
        }
        p.check(
            (4..=Self::MAX_GEOFENCE_VERTICES).contains(&self.geofence_vertices),
            "limits.geofence_vertices",
            format!(
                "must be 4..={} (a polygon ring needs 4 positions)",
                Self::MAX_GEOFENCE_VERTICES
            ),
        );
        p.check(
            self.requests_per_second >= 1,
            "limits.requests_per_second",
            "must be at least 1",
        );
        p.check(
            self.burst >= self.requests_per_second.max(1),
            "limits.burst",
            "must be at least limits.requests_per_second",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, ConfigError};

    fn problems(toml: &str) -> Vec<String> {
        match Config::from_toml_str(toml, []).unwrap().validate() {
            Ok(()) => vec![],
            Err(ConfigError::Invalid(v)) => v.into_iter().map(|f| f.path).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn defaults_are_the_ones_of_spec_15() {
        let c = Config::default();
        let l = &c.limits;
        assert_eq!(
            (
                l.devices,
                l.geofences,
                l.geofence_vertices,
                l.shipments_active
            ),
            (100_000, 10_000, 10_000, 100_000)
        );
        assert_eq!((l.webhooks, l.sse_connections), (20, 100));
        assert_eq!((l.requests_per_second, l.burst), (100, 200));
        assert_eq!(c.http.request_timeout_seconds, 30);
        assert_eq!(c.http.max_connections, 10_000);
    }

    #[test]
    fn bad_limits_are_refused_naming_the_field() {
        assert_eq!(problems("[limits]\ndevices = 0"), ["limits.devices"]);
        assert_eq!(
            problems("[limits]\ngeofence_vertices = 3"),
            ["limits.geofence_vertices"]
        );
        assert_eq!(
            problems("[limits]\nrequests_per_second = 50\nburst = 10"),
            ["limits.burst"]
        );
        assert_eq!(
            problems("[http]\nrequest_timeout_seconds = 0\nmax_connections = 0"),
            ["http.request_timeout_seconds", "http.max_connections"]
        );
        assert!(problems("[limits]\nsse_connections = 5\nburst = 300").is_empty());
    }

    #[test]
    fn limits_take_environment_overrides() {
        let env = [("LANDPORT_LIMITS__DEVICES".to_owned(), "7".to_owned())];
        assert_eq!(Config::from_toml_str("", env).unwrap().limits.devices, 7);
    }
}
