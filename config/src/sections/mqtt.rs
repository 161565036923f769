//! `[mqtt]`: Landport's own MQTT endpoint and the ingestor's client for external brokers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU16;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Secret;
use crate::urls::{BrokerUrl, BrokerUrlError, DEFAULT_MQTT_PORT};
use crate::validate::Problems;

/// The `[mqtt]` section, for the ingestor (and the embedded broker it may start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Serve MQTT with Landport's own endpoint (`listen`); false = subscribe to the broker at `url`.
    pub embedded: bool,
    /// Address the embedded broker listens on; unused when `embedded = false`.
    pub listen: SocketAddr,
    /// Broker the ingestor connects to, `mqtt://host:port` or `tcp://host:port` (port 1883 when
    /// left out). Absent: the embedded broker at `listen`; see [`MqttConfig::broker_url`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// User name for the broker; absent or empty = connect without credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password for `username`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Whether the embedded endpoint lets clients connect without credentials, acting as the
    /// tenant `anonymous_tenant`. Unset: allowed when `listen` (and `tls_listen`) are loopback
    /// addresses; with a listener other hosts can reach it must be set explicitly (the config
    /// is refused otherwise). See [`MqttConfig::anonymous_allowed`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// The tenant anonymous clients of the embedded endpoint act as.
    pub anonymous_tenant: String,
    /// Address the embedded endpoint serves MQTT over TLS on (e.g. `0.0.0.0:8883`), with the
    /// certificate of `[tls]`; absent = no TLS listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_listen: Option<SocketAddr>,
    /// PEM file of the CA (or CAs) that signed an external `mqtts://` broker's certificate,
    /// when it is not one of the public CAs Landport trusts by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// MQTT client id of the ingestor; with its persistent session the broker keeps QoS 1
    /// messages for this id while the service is down, so it must be stable across restarts.
    pub client_id: String,
    /// MQTT keep-alive interval, seconds, within [`MqttConfig::KEEP_ALIVE_SECONDS`]; see
    /// [`MqttConfig::keep_alive`]. Non-zero by type: MQTT's 0 (no keep-alive) is not offered.
    pub keep_alive_seconds: NonZeroU16,
    /// No longer used: formerly the backlog of the embedded broker (rumqttd), MiB. Landport's
    /// own endpoint keeps no backlog (it stops reading a client instead; see `docs/mqtt.md`).
    /// Accepted and checked, so that existing config files still load; `landport run` warns
    /// when it is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedded_buffer_mb: Option<u32>,
    /// Largest MQTT packet the embedded endpoint takes, bytes (fixed header included), 1 KiB
    /// to 256 MiB; advertised to MQTT 5 clients as Maximum Packet Size. A larger publish is
    /// refused with a dead letter (3.1.1) or a DISCONNECT 0x95 (5).
    pub max_packet_bytes: u32,
    /// QoS 1 publishes a client of the embedded endpoint may have waiting for their commit
    /// (MQTT 5 Receive Maximum), 1 to 65,535; the endpoint stops reading a client that has
    /// this many.
    pub receive_maximum: u16,
    /// Connections the embedded endpoint serves at once, over both listeners (1 to
    /// 1,000,000); one more is closed as soon as it is accepted, and counted.
    pub max_connections: u32,
    /// Sessions with subscriptions the embedded endpoint serves at once (1 to 100,000): each
    /// tails the event log on a store connection of its own. Over it, a session's first
    /// SUBSCRIBE is refused (5: 0x97 Quota exceeded), and counted.
    pub max_subscribers: u32,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            embedded: true,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 1883)),
            url: None,
            username: None,
            password: None,
            allow_anonymous: None,
            anonymous_tenant: "default".to_string(),
            tls_listen: None,
            ca_file: None,
            client_id: "landport-ingest".to_string(),
            keep_alive_seconds: const { NonZeroU16::new(30).unwrap() },
            embedded_buffer_mb: None,
            max_packet_bytes: 1024 * 1024,
            receive_maximum: 1024,
            max_connections: 10_000,
            max_subscribers: 1_000,
        }
    }
}

impl MqttConfig {
    /// The MQTT port when a URL leaves it out.
    pub const DEFAULT_PORT: u16 = DEFAULT_MQTT_PORT;

    /// The keep-alive Landport allows, seconds: the one rule for it. The MQTT source
    /// (`landport-ingest`) takes the checked value as whole seconds and has no rule of its own.
    /// Why at least 5: the broker drops a subscriber that is silent for 1.5x the keep-alive,
    /// and backpressure parks ours (it stops reading) for a moment at times; a shorter
    /// keep-alive turns those moments into reconnects.
    pub const KEEP_ALIVE_SECONDS: RangeInclusive<u16> = 5..=u16::MAX;

    /// The URL the ingestor connects to: `url`, or else the embedded broker at `listen`
    /// (an unspecified listen address such as `0.0.0.0` is reached over loopback).
    pub fn broker_url(&self) -> String {
        match &self.url {
            Some(url) => url.clone(),
            None => {
                let ip = match self.listen.ip() {
                    IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ip => ip,
                };
                format!("mqtt://{}", SocketAddr::new(ip, self.listen.port()))
            }
        }
    }

    /// [`MqttConfig::broker_url`] parsed (see [`BrokerUrl::parse`]). An error only when `url`
    /// is malformed, which [`Config::validate`](crate::Config::validate) rejects.
    pub fn broker(&self) -> Result<BrokerUrl, BrokerUrlError> {
        BrokerUrl::parse(&self.broker_url())
    }

    /// Host and port of [`MqttConfig::broker_url`] (IPv6 hosts without brackets). `None` only
    /// when the URL is malformed, which [`Config::validate`](crate::Config::validate) rejects.
    pub fn broker_host_port(&self) -> Option<(String, u16)> {
        self.broker().ok().map(|b| (b.host, b.port))
    }

    /// User name and password to connect with, when a non-empty user name is set
    /// (the password is then `""` if none is set).
    pub fn credentials(&self) -> Option<(&str, &str)> {
        let user = self.username.as_deref().filter(|u| !u.is_empty())?;
        Some((user, self.password.as_ref().map_or("", Secret::expose)))
    }

    /// `keep_alive_seconds` as a [`Duration`].
    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_seconds.get().into())
    }

    pub(crate) fn validate(&self, p: &mut Problems) {
        match &self.url {
            None if !self.embedded => p.push("mqtt.url", "required when embedded = false"),
            None => {}
            Some(url) => {
                if let Err(e) = BrokerUrl::parse(url) {
                    p.push(
                        "mqtt.url",
                        format!(
                            "must be an mqtt://, tcp:// or mqtts:// URL such as \
                             \"mqtt://broker:1883\": {}, got {url:?}",
                            e.reason
                        ),
                    );
                }
            }
        }
        let has_user = self.username.as_deref().is_some_and(|u| !u.is_empty());
        let has_password = self.password.as_ref().is_some_and(|p| !p.is_empty());
        p.check(
            has_user || !has_password,
            "mqtt.password",
            "set without mqtt.username",
        );
        p.check(
            !self.client_id.trim().is_empty(),
            "mqtt.client_id",
            "must not be empty",
        );
        let allowed = Self::KEEP_ALIVE_SECONDS;
        p.check(
            allowed.contains(&self.keep_alive_seconds.get()),
            "mqtt.keep_alive_seconds",
            format!("must be between {} and {}", allowed.start(), allowed.end()),
        );
        if let Some(mb) = self.embedded_buffer_mb {
            p.check(
                (1..=65_536).contains(&mb),
                "mqtt.embedded_buffer_mb",
                "must be between 1 and 65536 (MiB)",
            );
        }
        p.check(
            (1024..=268_435_455).contains(&self.max_packet_bytes),
            "mqtt.max_packet_bytes",
            "must be between 1024 and 268435455 (bytes; the MQTT maximum)",
        );
        p.check(
            self.receive_maximum > 0,
            "mqtt.receive_maximum",
            "must be between 1 and 65535",
        );
        p.check(
            (1..=1_000_000).contains(&self.max_connections),
            "mqtt.max_connections",
            "must be between 1 and 1000000",
        );
        p.check(
            (1..=100_000).contains(&self.max_subscribers),
            "mqtt.max_subscribers",
            "must be between 1 and 100000",
        );
    }
}

/// Access to the embedded endpoint and TLS (SPEC 12): anonymous clients, the TLS listener,
/// the CA of an external `mqtts://` broker.
impl MqttConfig {
    /// Whether the embedded endpoint accepts clients without credentials: `allow_anonymous`
    /// when set, else whether every listener is a loopback address (only this host can
    /// connect: the zero-setup demo).
    pub fn anonymous_allowed(&self) -> bool {
        self.allow_anonymous
            .unwrap_or_else(|| self.listeners_are_loopback())
    }

    /// Whether `listen` and `tls_listen` (when set) are loopback addresses.
    pub fn listeners_are_loopback(&self) -> bool {
        std::iter::once(self.listen)
            .chain(self.tls_listen)
            .all(|a| a.ip().is_loopback())
    }

    /// Checks the keys above; `tls_configured`: whether `[tls]` has a certificate and key.
    pub(crate) fn validate_access(&self, tls_configured: bool, p: &mut Problems) {
        if self.embedded && self.allow_anonymous.is_none() && !self.listeners_are_loopback() {
            let exposed: Vec<String> = std::iter::once(self.listen)
                .chain(self.tls_listen)
                .filter(|a| !a.ip().is_loopback())
                .map(|a| a.to_string())
                .collect();
            p.push(
                "mqtt.allow_anonymous",
                format!(
                    "must be set explicitly when the endpoint listens on an address other hosts \
                     can reach ({}): false = every client needs credentials (device \
                     credentials or a tenant key), true = anyone who reaches the port may \
                     publish and subscribe as tenant {:?}",
                    exposed.join(", "),
                    self.anonymous_tenant
                ),
            );
        }
        if let Err(e) = landport_tracker::check_id(&self.anonymous_tenant) {
            p.push(
                "mqtt.anonymous_tenant",
                format!("tenant id {:?} {}", self.anonymous_tenant, e.reason()),
            );
        }
        if let Some(addr) = self.tls_listen {
            p.check(
                tls_configured,
                "mqtt.tls_listen",
                "needs [tls] cert and key (the server certificate to present)",
            );
            p.check(
                !self.embedded || addr != self.listen || addr.port() == 0,
                "mqtt.tls_listen",
                format!("must differ from mqtt.listen ({})", self.listen),
            );
        }
        if let Some(ca) = &self.ca_file {
            let tls_url = self.broker().is_ok_and(|b| b.tls);
            p.check(
                tls_url && !self.embedded,
                "mqtt.ca_file",
                "is only used to connect to an external mqtts:// broker (embedded = false, \
                 url = \"mqtts://...\")",
            );
            p.check(
                ca.is_file(),
                "mqtt.ca_file",
                format!("{} is not a file", ca.display()),
            );
        }
    }
}
