//! `[cluster]`: scale-out on NATS (SPEC 16). Present, it turns cluster mode on: telemetry comes
//! from the NATS cluster's JetStream stream instead of Landport's own MQTT endpoint or an
//! external broker, and this instance owns some of the deployment's partitions.

use serde::{Deserialize, Serialize};

use crate::validate::Problems;

/// The `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The NATS servers, comma-separated `nats://host:port` URLs (the client fails over among
    /// them).
    pub nats_url: String,
    /// How many partitions the deployment has: the `N` of the NATS mapping
    /// `{{partition(N,1,2)}}`. Fixed for a deployment: every instance and the NATS config must
    /// agree.
    pub partitions: u32,
    /// This instance's name, unique in the deployment (a Landport id: letters, digits, `-`, `_`).
    pub instance_id: String,
    /// A partition's lease lasts this long without renewal; an instance that dies loses its
    /// partitions to the others after at most this long. Seconds.
    pub lease_seconds: u64,
    /// How long a request fanned out to the partitions' owners may take. Milliseconds.
    pub request_timeout_ms: u64,
    /// How often an owner saves its partitions' snapshots to NATS (a copy of the shard's
    /// store and the stream position it covers): a takeover replays only what came after the
    /// newest. Seconds.
    pub snapshot_seconds: u64,
    /// Replicas of Landport's JetStream streams and buckets; unset: 3 when the NATS cluster
    /// has at least 3 servers, else 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u8>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            partitions: 16,
            instance_id: String::new(),
            lease_seconds: 10,
            request_timeout_ms: 5_000,
            snapshot_seconds: 60,
            replicas: None,
        }
    }
}

impl ClusterConfig {
    /// Most partitions a deployment may have.
    pub const MAX_PARTITIONS: u32 = 1024;

    /// The NATS URLs, trimmed.
    pub fn nats_urls(&self) -> Vec<&str> {
        self.nats_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    pub(crate) fn validate(&self, p: &mut Problems) {
        let urls = self.nats_urls();
        p.check(
            !urls.is_empty(),
            "cluster.nats_url",
            "must name at least one nats:// URL",
        );
        for u in urls {
            let ok = url::Url::parse(u)
                .ok()
                .is_some_and(|url| url.scheme() == "nats" && url.host_str().is_some());
            p.check(
                ok,
                "cluster.nats_url",
                format!("{u:?} is not a nats://host:port URL"),
            );
        }
        p.check(
            (1..=Self::MAX_PARTITIONS).contains(&self.partitions),
            "cluster.partitions",
            format!("must be 1..={}", Self::MAX_PARTITIONS),
        );
        match landport_tracker::check_id(&self.instance_id) {
            Ok(()) => {}
            Err(e) => p.push("cluster.instance_id", format!("{e}")),
        }
        p.check(
            (3..=3600).contains(&self.lease_seconds),
            "cluster.lease_seconds",
            "must be 3..=3600",
        );
        p.check(
            (100..=600_000).contains(&self.request_timeout_ms),
            "cluster.request_timeout_ms",
            "must be 100..=600000",
        );
        p.check(
            (1..=86_400).contains(&self.snapshot_seconds),
            "cluster.snapshot_seconds",
            "must be 1..=86400",
        );
        if let Some(r) = self.replicas {
            p.check(
                (1..=5).contains(&r),
                "cluster.replicas",
                "must be 1..=5 (JetStream's limit)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, ConfigError};

    fn load(toml: &str) -> Result<Config, ConfigError> {
        let c = Config::from_toml_str(toml, Vec::new())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn absent_means_single_node_and_present_takes_the_defaults() {
        assert_eq!(load("").unwrap().cluster, None);
        let c = load("[cluster]\ninstance_id = \"lp-1\"\n")
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(
            (
                c.partitions,
                c.lease_seconds,
                c.request_timeout_ms,
                c.replicas
            ),
            (16, 10, 5_000, None)
        );
        assert_eq!(c.nats_urls(), ["nats://127.0.0.1:4222"]);
    }

    #[test]
    fn several_urls_are_split_and_trimmed() {
        let c = load(
            "[cluster]\ninstance_id = \"a\"\nnats_url = \"nats://10.0.0.1:4222, nats://10.0.0.2:4222\"\n",
        )
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(
            c.nats_urls(),
            ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
        );
    }

    #[test]
    fn each_bad_value_is_named() {
        let err = load(
            "[cluster]\nnats_url = \"http://x:1, \"\npartitions = 0\ninstance_id = \"a b\"\n\
             lease_seconds = 1\nrequest_timeout_ms = 5\nreplicas = 7\nsnapshot_seconds = 0\n",
        )
        .unwrap_err()
        .to_string();
        for field in [
            "cluster.nats_url",
            "cluster.partitions",
            "cluster.instance_id",
            "cluster.lease_seconds",
            "cluster.request_timeout_ms",
            "cluster.replicas",
            "cluster.snapshot_seconds",
        ] {
            assert!(err.contains(field), "{field} missing from: {err}");
        }
    }

    #[test]
    fn the_summary_says_cluster_mode_and_no_mqtt_of_its_own() {
        let c = load("[cluster]\ninstance_id = \"lp-a\"\npartitions = 8\n").unwrap();
        let summary = c.summary();
        assert!(
            summary.contains("mqtt none of its own (cluster mode: instance lp-a, 8 partitions"),
            "{summary}"
        );
    }

    #[test]
    fn an_instance_id_is_required() {
        let err = load("[cluster]\n").unwrap_err().to_string();
        assert!(err.contains("cluster.instance_id"), "{err}");
    }
}
