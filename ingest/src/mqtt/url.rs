//! Broker URLs: `mqtt://host:port` and `tcp://host:port` (SPEC §3 `mqtt.url`, and
//! `landport simulate --broker`). Plain TCP only: TLS and websocket schemes are refused by name
//! rather than silently connecting in the clear.

use std::fmt;
use std::str::FromStr;

use super::MqttError;

/// The port MQTT over plain TCP listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 1883;

/// Where a broker listens: host name or IP literal, and TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address, without brackets for IPv6 (`::1`).
    pub host: String,
    /// TCP port, 1..=65535.
    pub port: u16,
}

impl BrokerUrl {
    /// Parses `mqtt://host[:port][/]` or `tcp://host[:port][/]`; the port defaults to 1883.
    /// IPv6 literals go in brackets (`mqtt://[::1]:1884`). Errors name the config field
    /// `mqtt.url` and say what is wrong.
    pub fn parse(url: &str) -> Result<BrokerUrl, MqttError> {
        let fail = |reason: &str| MqttError::InvalidUrl {
            field: "mqtt.url",
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = url.trim();
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            return Err(fail("expected mqtt://HOST:PORT or tcp://HOST:PORT"));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => {}
            "mqtts" | "ssl" | "tls" | "ws" | "wss" => {
                return Err(fail(
                    "TLS and websocket brokers are not supported; use mqtt:// or tcp://",
                ));
            }
            _ => return Err(fail("unknown scheme; use mqtt:// or tcp://")),
        }
        // One optional trailing slash; any other path, query or fragment is a mistake.
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(fail("a broker URL has no path, query or fragment"));
        }
        if authority.contains('@') {
            return Err(fail(
                "credentials do not go in the URL; set mqtt.username and mqtt.password",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return Err(fail("unclosed '[' in an IPv6 address"));
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(fail("not an IPv6 address inside [...]"));
            }
            match after {
                "" => (host, None),
                p => match p.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None => return Err(fail("expected ':PORT' after ']'")),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(fail("IPv6 addresses go in brackets: mqtt://[::1]:1883"));
                }
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(fail("missing host"));
        }
        if !host.contains(':')
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(fail("the host holds characters no host name has"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(fail("port must be 1..=65535")),
                Ok(p) => p,
            },
        };
        Ok(BrokerUrl {
            host: host.to_owned(),
            port,
        })
    }
}

impl FromStr for BrokerUrl {
    type Err = MqttError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BrokerUrl::parse(s)
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
        }
    }
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
    fn bad_urls_say_what_is_wrong_and_name_the_field() {
        assert!(err("127.0.0.1:1883").contains("expected mqtt://HOST:PORT"));
        assert!(err("http://x:1").contains("unknown scheme"));
        assert!(err("mqtts://x:8883").contains("TLS"));
        assert!(err("ws://x:80").contains("websocket"));
        assert!(err("mqtt://:1883").contains("missing host"));
        assert!(err("mqtt://x:0").contains("1..=65535"));
        assert!(err("mqtt://x:65536").contains("1..=65535"));
        assert!(err("mqtt://x:abc").contains("1..=65535"));
        assert!(err("mqtt://x:1883/topic").contains("no path"));
        assert!(err("mqtt://u:p@x:1883").contains("mqtt.username"));
        assert!(err("mqtt://b ad:1").contains("characters"));
        assert!(err("mqtt://x:1/a").starts_with("mqtt.url: "));
    }

    #[test]
    fn display_round_trips() {
        for url in ["mqtt://a.b:1", "mqtt://[::1]:1883"] {
            assert_eq!(BrokerUrl::parse(url).unwrap().to_string(), url);
        }
    }
}
