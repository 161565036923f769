//! [`Config`]: the whole file, and how it is loaded and validated.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::validate::Problems;
use crate::{
    AuthConfig, ConfigError, HttpConfig, InfluxDbConfig, IngestConfig, LimitsConfig, LogConfig,
    MapConfig, MqttConfig, ReportsConfig, StorageConfig, TrackerSettings, load,
};

/// The whole Landport config. Every section may be left out of the file (its defaults apply),
/// except that a missing `[influxdb]` means no InfluxDB sink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[http]`: the API server.
    pub http: HttpConfig,
    /// `[mqtt]`: the embedded broker and the ingestor's client.
    pub mqtt: MqttConfig,
    /// `[storage]`: the embedded store.
    pub storage: StorageConfig,
    /// `[influxdb]`: the InfluxDB sink; `None` = no sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub influxdb: Option<InfluxDbConfig>,
    /// `[auth]`: the admin key.
    pub auth: AuthConfig,
    /// `[ingest]`: what the ingestor accepts.
    pub ingest: IngestConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[tracker]`: defaults of the event rules and the ETA model.
    pub tracker: TrackerSettings,
    /// `[map]`: the live map page.
    pub map: MapConfig,
    /// `[limits]`: per-tenant quotas and the per-key request rate.
    pub limits: LimitsConfig,
    /// `[webhooks]`: delivery of events to the tenants' webhooks.
    pub webhooks: crate::WebhooksConfig,
    /// `[reports]`: trips, stops, visits and shipment records.
    pub reports: ReportsConfig,
    /// `[tls]`: the certificate of the TLS listeners (`mqtt.tls_listen`, `http.tls`).
    pub tls: crate::TlsConfig,
    /// `[cluster]`: scale-out on NATS; `None` = a single node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::ClusterConfig>,
}

impl Config {
    /// Loads the config the service runs with: the file at `path` (or the defaults when
    /// `None`), then the process's `LANDPORT_*` environment overrides, then
    /// [`Config::validate`].
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        // A non-UTF-8 variable cannot be one of ours unless it is misspelled; one with our
        // prefix is reported rather than silently dropped.
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            match (name.into_string(), value.into_string()) {
                (Ok(name), Ok(value)) => env.push((name, value)),
                (Ok(name), Err(_)) if is_override_name(&name) => {
                    return Err(ConfigError::Override {
                        var: name,
                        path: String::new(),
                        reason: "value is not valid UTF-8".to_string(),
                    });
                }
                _ => {}
            }
        }
        Config::load_with_env(path, env)
    }

    /// [`Config::load`] with the environment given instead of read from the process.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        let config = load::parse(path, &text, env)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text and applies the `LANDPORT_*` overrides found in `env` (other variables
    /// are ignored), without validating: call [`Config::validate`] next.
    ///
    /// ```
    /// let env = [("LANDPORT_HTTP__LISTEN".to_string(), "0.0.0.0:9000".to_string())];
    /// let config = landport_config::Config::from_toml_str("[storage]\nretention_days = 7", env)?;
    /// assert_eq!(config.http.listen.port(), 9000);
    /// assert_eq!(config.storage.retention_days, 7);
    /// # Ok::<(), landport_config::ConfigError>(())
    /// ```
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        load::parse(None, text, env)
    }

    /// Checks the rules types cannot express. Returns every problem found
    /// ([`ConfigError::Invalid`]), each naming its field path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        self.http.validate(&mut p);
        self.limits.validate(&mut p);
        self.mqtt.validate(&mut p);
        self.tls.validate(&mut p);
        self.mqtt
            .validate_access(self.tls.files().is_some(), &mut p);
        p.check(
            !self.http.tls || self.tls.files().is_some(),
            "http.tls",
            "needs [tls] cert and key (the server certificate to present)",
        );
        self.storage.validate(&mut p);
        if let Some(influxdb) = &self.influxdb {
            influxdb.validate(&mut p);
        }
        self.auth.validate(&mut p);
        self.ingest.validate(&mut p);
        self.log.validate(&mut p);
        crate::sections::tracker::validate(&self.tracker, &mut p);
        self.map.validate(&mut p);
        self.reports.validate(&mut p);
        self.webhooks.validate(&mut p);
        if let Some(cluster) = &self.cluster {
            cluster.validate(&mut p);
        }
        let problems = p.into_vec();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// A one-line description for logs and `check-config`, without secrets.
    pub fn summary(&self) -> String {
        let mqtt = if let Some(c) = &self.cluster {
            format!(
                "none of its own (cluster mode: instance {}, {} partitions, NATS {})",
                c.instance_id, c.partitions, c.nats_url
            )
        } else if self.mqtt.embedded {
            let tls = self
                .mqtt
                .tls_listen
                .map(|a| format!(" and {a} (TLS)"))
                .unwrap_or_default();
            let access = if self.mqtt.anonymous_allowed() {
                format!("anonymous clients as tenant {}", self.mqtt.anonymous_tenant)
            } else {
                "credentials required".to_owned()
            };
            format!("endpoint on {}{tls}, {access}", self.mqtt.listen)
        } else {
            format!("broker {}", self.mqtt.broker_url())
        };
        let influxdb = match &self.influxdb {
            None => "off".to_string(),
            Some(i) => format!("{} {}", i.api, i.url),
        };
        let auth = if self.auth.admin_key.is_some() {
            "admin key set"
        } else {
            "demo mode (no admin key)"
        };
        format!(
            "{} {}; mqtt {mqtt}; storage {} ({} days); influxdb {influxdb}; {auth}; log {} {}",
            if self.http.tls { "https" } else { "http" },
            self.http.listen,
            self.storage.path.display(),
            self.storage.retention_days,
            self.log.level,
            self.log.format,
        )
    }
}

fn is_override_name(name: &str) -> bool {
    name.get(..crate::ENV_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(crate::ENV_PREFIX))
}
