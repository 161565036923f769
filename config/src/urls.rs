//! URLs in the config, read by the `url` crate: the one parser of Landport's URLs.
//!
//! - [`BrokerUrl`]: the MQTT broker to connect to, `mqtt://host[:port][/]` or
//!   `tcp://host[:port][/]` (port [`DEFAULT_MQTT_PORT`] when left out, IPv6 literals in brackets),
//!   or over TLS `mqtts://host[:port]` (also `ssl://`; port [`DEFAULT_MQTTS_PORT`]).
//!   Used for `mqtt.url` here, and by the simulators' `--broker` (which also takes a bare
//!   `host[:port]`, see [`BrokerUrl::parse_with_default_scheme`]). Websocket schemes are
//!   refused by name; credentials in the URL are refused too (they go in `mqtt.username` /
//!   `mqtt.password`).
//! - [`is_http_url`]: an `http://` or `https://` base URL (`influxdb.url`, `map.tile_url`).
//!
//! The `url` crate does the parsing (schemes, hosts, IPv6 literals, ports); what is left here
//! is what Landport accepts of it, and error reasons a user can act on. The caller names the
//! config field (`mqtt.url: ...`).

use std::fmt;
use std::str::FromStr;

use url::{Host, Url};

/// The port MQTT over plain TCP listens on unless told otherwise.
pub const DEFAULT_MQTT_PORT: u16 = 1883;

/// The port MQTT over TLS listens on unless told otherwise.
pub const DEFAULT_MQTTS_PORT: u16 = 8883;

/// Where an MQTT broker listens: host name or IP literal, and TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address, without brackets for IPv6 (`::1`).
    pub host: String,
    /// TCP port, 1..=65535.
    pub port: u16,
    /// Connect over TLS (`mqtts://`, `ssl://`).
    pub tls: bool,
}

/// Why a broker URL was refused. Its `Display` is `reason (got "url")`; the caller prefixes the
/// field (`mqtt.url`, `--broker`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (got {url:?})")]
pub struct BrokerUrlError {
    /// The text as given.
    pub url: String,
    /// What is wrong, in words a user can act on.
    pub reason: &'static str,
}

impl BrokerUrl {
    /// Parses `mqtt://host[:port][/]` or `tcp://host[:port][/]` (scheme case-insensitive);
    /// the port defaults to [`DEFAULT_MQTT_PORT`]. IPv6 literals go in brackets
    /// (`mqtt://[::1]:1884`).
    pub fn parse(url: &str) -> Result<BrokerUrl, BrokerUrlError> {
        let fail = |reason: &'static str| BrokerUrlError {
            url: url.to_owned(),
            reason,
        };
        let trimmed = url.trim();
        let authority = authority(trimmed);
        // The url crate's own errors for these say less than we can.
        if !authority.starts_with('[') && authority.matches(':').count() > 1 {
            return Err(fail("IPv6 addresses go in brackets: mqtt://[::1]:1883"));
        }
        if authority.starts_with('[') && !authority.contains(']') {
            return Err(fail("unclosed '[' in an IPv6 address"));
        }
        let parsed = Url::parse(trimmed).map_err(|e| {
            fail(match e {
                url::ParseError::EmptyHost => "missing host",
                url::ParseError::InvalidPort => PORT_RANGE,
                url::ParseError::InvalidIpv6Address => "not an IPv6 address inside [...]",
                url::ParseError::RelativeUrlWithoutBase => EXPECTED,
                _ => "the host holds characters no host name has",
            })
        })?;
        if !parsed.has_authority() {
            return Err(fail(EXPECTED));
        }
        let tls = match parsed.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            "ws" | "wss" => {
                return Err(fail(
                    "websocket brokers are not supported; use mqtt://, tcp:// or mqtts://",
                ));
            }
            _ => return Err(fail("unknown scheme; use mqtt://, tcp:// or mqtts://")),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(fail(
                "credentials do not go in the URL; set mqtt.username and mqtt.password",
            ));
        }
        // One optional trailing slash; any other path, query or fragment is a mistake.
        if !matches!(parsed.path(), "" | "/")
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(fail("a broker URL has no path, query or fragment"));
        }
        let host = match parsed.host() {
            Some(Host::Ipv6(ip)) => ip.to_string(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Domain("")) | None => return Err(fail("missing host")),
            Some(Host::Domain(name)) => {
                // mqtt:// and tcp:// hosts are opaque to the url crate (it percent-encodes
                // what no host name holds instead of refusing it), so check them here.
                if !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                {
                    return Err(fail("the host holds characters no host name has"));
                }
                name.to_owned()
            }
        };
        // `host:` (an empty port) is "no port" to the url crate; to us it is a mistake.
        let port = match parsed.port() {
            _ if authority.ends_with(':') => return Err(fail(PORT_RANGE)),
            Some(0) => return Err(fail(PORT_RANGE)),
            Some(port) => port,
            None if tls => DEFAULT_MQTTS_PORT,
            None => DEFAULT_MQTT_PORT,
        };
        Ok(BrokerUrl { host, port, tls })
    }

    /// As [`BrokerUrl::parse`], and also a bare `host[:port]` (read as `mqtt://host[:port]`),
    /// as the simulators' `--broker` takes it; plain TCP only (the simulators have no TLS
    /// client: a TLS URL is refused rather than connected to in the clear). The config's
    /// `mqtt.url` needs the scheme.
    pub fn parse_with_default_scheme(url: &str) -> Result<BrokerUrl, BrokerUrlError> {
        if url.contains("://") {
            let parsed = BrokerUrl::parse(url)?;
            if parsed.tls {
                return Err(BrokerUrlError {
                    url: url.to_owned(),
                    reason: "TLS is not supported here; use mqtt:// or tcp://",
                });
            }
            Ok(parsed)
        } else {
            BrokerUrl::parse(&format!("mqtt://{}", url.trim())).map_err(|e| BrokerUrlError {
                url: url.to_owned(),
                ..e
            })
        }
    }
}

impl FromStr for BrokerUrl {
    type Err = BrokerUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BrokerUrl::parse(s)
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

const EXPECTED: &str = "expected mqtt://HOST:PORT or tcp://HOST:PORT";
const PORT_RANGE: &str = "port must be 1..=65535";

/// `host[:port]` as written: the text between `://` (and any `user@`) and the first `/`, `?`
/// or `#`; empty without `://`. Only for telling apart mistakes the url crate reports alike.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

/// Whether `url` is an `http://` or `https://` URL with a host (and a valid port, if any), no
/// credentials, and no whitespace or control characters. A path is allowed.
pub(crate) fn is_http_url(url: &str) -> bool {
    let Ok(parsed) = Url::parse(url) else {
        return false;
    };
    matches!(parsed.scheme(), "http" | "https")
        && parsed.host_str().is_some_and(|h| !h.is_empty())
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.port() != Some(0)
        && !authority(url).ends_with(':')
        // The url crate percent-encodes these; in a config value they are a typo.
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> (String, u16) {
        let u = BrokerUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        (u.host, u.port)
    }

    fn err(url: &str) -> String {
        match BrokerUrl::parse(url) {
            Ok(u) => panic!("{url} parsed as {u:?}"),
            Err(e) => e.to_string(),
        }
    }

    // Cases of the former ingest `BrokerUrl` parser.

    #[test]
    fn mqtt_and_tcp_schemes_give_host_and_port() {
        assert_eq!(ok("mqtt://127.0.0.1:1884"), ("127.0.0.1".into(), 1884));
        assert_eq!(
            ok("tcp://broker.example:8883"),
            ("broker.example".into(), 8883)
        );
        assert_eq!(ok("MQTT://Broker-1.local:1"), ("Broker-1.local".into(), 1));
        assert_eq!(ok("mqtt://localhost:65535/"), ("localhost".into(), 65535));
    }

    #[test]
    fn the_port_defaults_to_1883() {
        assert_eq!(ok("mqtt://localhost"), ("localhost".into(), 1883));
        assert_eq!(ok("tcp://10.0.0.2/"), ("10.0.0.2".into(), 1883));
    }

    #[test]
    fn ipv6_literals_go_in_brackets() {
        assert_eq!(ok("mqtt://[::1]:1884"), ("::1".into(), 1884));
        assert_eq!(ok("mqtt://[fe80::1]"), ("fe80::1".into(), 1883));
        assert!(err("mqtt://::1:1883").contains("brackets"));
        assert!(err("mqtt://[::1").contains("unclosed"));
        assert!(err("mqtt://[nothost]:1").contains("IPv6"));
    }

    #[test]
    fn mqtts_and_ssl_are_tls_on_port_8883_by_default() {
        let u = BrokerUrl::parse("mqtts://broker.example").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("broker.example", 8883, true)
        );
        let u = BrokerUrl::parse("ssl://[::1]:8884").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("::1", 8884, true));
        assert_eq!(u.to_string(), "mqtts://[::1]:8884");
        let u = BrokerUrl::parse("mqtt://broker").unwrap();
        assert!(!u.tls);
        assert_eq!(u.to_string(), "mqtt://broker:1883");
        assert!(err("mqtts://u:p@broker").contains("mqtt.username"));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert!(err("127.0.0.1:1883").contains("expected mqtt://HOST:PORT"));
        assert!(err("broker:1883").contains("expected mqtt://HOST:PORT"));
        assert!(err("http://x:1").contains("unknown scheme"));
        assert!(err("ws://x:80").contains("websocket"));
        assert!(err("wss://x:443").contains("websocket"));
        assert!(err("mqtt://:1883").contains("missing host"));
        assert!(err("mqtt://x:0").contains("1..=65535"));
        assert!(err("mqtt://x:65536").contains("1..=65535"));
        assert!(err("mqtt://x:abc").contains("1..=65535"));
        assert!(err("mqtt://x:").contains("1..=65535"));
        assert!(err("mqtt://x:1883/topic").contains("no path"));
        assert!(err("mqtt://x:1883?a=b").contains("no path"));
        assert!(err("mqtt://u:p@x:1883").contains("mqtt.username"));
        assert!(err("mqtt://b ad:1").contains("characters"));
        assert!(err("mqtt://müller:1").contains("characters"));
        assert!(err("mqtt://x:1/a").ends_with("(got \"mqtt://x:1/a\")"));
    }

    #[test]
    fn display_round_trips() {
        for url in ["mqtt://a.b:1", "mqtt://[::1]:1883"] {
            assert_eq!(BrokerUrl::parse(url).unwrap().to_string(), url);
        }
    }

    // Cases of the former config `split_url` (with the scheme check `mqtt.url` made on top).

    #[test]
    fn reads_host_and_port_as_split_url_did() {
        assert_eq!(
            ok("mqtt://broker.example:1884"),
            ("broker.example".into(), 1884)
        );
        assert_eq!(ok("TCP://10.0.0.1/"), ("10.0.0.1".into(), 1883));
        assert_eq!(ok("mqtt://[::1]:1883"), ("::1".into(), 1883));
    }

    #[test]
    fn refuses_the_shapes_split_url_refused() {
        for bad in [
            "broker:1883",
            "mqtt://",
            "mqtt://:1883",
            "mqtt://host:0",
            "mqtt://host:99999",
            "mqtt://host:port",
            "mqtt://user:pw@host",
            "mqtt://host/topic",
            "mqtt://[::1",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    // Cases of the former ingest `MqttSourceConfig::from_url`.

    #[test]
    fn tcp_url_gives_host_and_port_and_a_bare_host_port_needs_the_scheme() {
        assert_eq!(ok("tcp://broker:1884"), ("broker".into(), 1884));
        assert!(BrokerUrl::parse("broker:1884").is_err());
    }

    // Cases of the former simulators `parse_broker` (`--broker`, bare `host:port` allowed).

    #[test]
    fn with_default_scheme_also_takes_a_bare_host_and_port() {
        let hp = |u| {
            let b = BrokerUrl::parse_with_default_scheme(u).unwrap();
            (b.host, b.port)
        };
        assert_eq!(hp("mqtt://127.0.0.1:1884"), ("127.0.0.1".into(), 1884));
        assert_eq!(hp("tcp://broker:1885/"), ("broker".into(), 1885));
        assert_eq!(hp("localhost:1886"), ("localhost".into(), 1886));
        assert_eq!(hp("mqtt://broker"), ("broker".into(), 1883));
        assert_eq!(hp("broker"), ("broker".into(), 1883));
        assert_eq!(hp("[::1]:1887"), ("::1".into(), 1887));
        assert!(BrokerUrl::parse_with_default_scheme("mqtts://broker:8883").is_err());
        assert!(BrokerUrl::parse_with_default_scheme("mqtt://:1883").is_err());
        assert!(BrokerUrl::parse_with_default_scheme("mqtt://broker:x").is_err());
        assert!(BrokerUrl::parse_with_default_scheme(":1883").is_err());
        let e = BrokerUrl::parse_with_default_scheme("host:x").unwrap_err();
        assert_eq!(e.url, "host:x", "the error quotes what was given");
    }

    // Cases of the former config `is_http_url`.

    #[test]
    fn http_urls() {
        assert!(is_http_url("http://127.0.0.1:8086"));
        assert!(is_http_url(
            "https://eu-central-1-1.aws.cloud2.influxdata.com/"
        ));
        assert!(is_http_url(
            "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
        ));
        assert!(is_http_url("https://{s}.tile.example/{z}/{x}/{y}.png"));
        assert!(is_http_url("http://[::1]:8086"));
        assert!(!is_http_url("ftp://x"));
        assert!(!is_http_url("http://"));
        assert!(!is_http_url("127.0.0.1:8086"));
        assert!(!is_http_url("http://:8086"));
        assert!(!is_http_url("http://host:/"));
        assert!(!is_http_url("http://host:0"));
        assert!(!is_http_url("http://host/a b"));
        assert!(!is_http_url("http://user:pw@host"));
    }
}
