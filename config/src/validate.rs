//! The collector that [`Config::validate`](crate::Config::validate) fills, and small checks
//! shared by the sections.

use crate::FieldError;

/// Every problem found so far; validation goes on after the first.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<FieldError>);

impl Problems {
    pub(crate) fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// Records `reason` against `path` unless `ok`.
    pub(crate) fn check(&mut self, ok: bool, path: &str, reason: impl Into<String>) {
        if !ok {
            self.push(path, reason);
        }
    }

    /// `value` must be a finite number greater than zero.
    pub(crate) fn positive(&mut self, value: f64, path: &str) {
        self.check(
            value.is_finite() && value > 0.0,
            path,
            "must be a number greater than 0",
        );
    }

    pub(crate) fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

/// Splits `scheme://host[:port][/]` into its parts; `None` if it has another shape.
/// The scheme is lowercased; the port is `None` when absent. IPv6 hosts are written in brackets
/// (`[::1]`) and returned without them.
pub(crate) fn split_url(url: &str) -> Option<(String, String, Option<u16>)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+')
    {
        return None;
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
        None => None,
    };
    Some((scheme.to_ascii_lowercase(), host.to_string(), port))
}

/// Whether `url` is an `http://` or `https://` URL with a host (and a valid port, if any).
/// A path is allowed.
pub(crate) fn is_http_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
        && split_url(&format!("http://{authority}")).is_some()
        && !path.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_url_reads_host_and_port() {
        assert_eq!(
            split_url("mqtt://broker.example:1884"),
            Some(("mqtt".into(), "broker.example".into(), Some(1884)))
        );
        assert_eq!(
            split_url("TCP://10.0.0.1/"),
            Some(("tcp".into(), "10.0.0.1".into(), None))
        );
        assert_eq!(
            split_url("mqtt://[::1]:1883"),
            Some(("mqtt".into(), "::1".into(), Some(1883)))
        );
    }

    #[test]
    fn split_url_rejects_other_shapes() {
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
            assert_eq!(split_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_urls() {
        assert!(is_http_url("http://127.0.0.1:8086"));
        assert!(is_http_url(
            "https://eu-central-1-1.aws.cloud2.influxdata.com/"
        ));
        assert!(!is_http_url("ftp://x"));
        assert!(!is_http_url("http://"));
        assert!(!is_http_url("127.0.0.1:8086"));
        assert!(!is_http_url("http://:8086"));
        assert!(!is_http_url("http://host:/"));
        assert!(!is_http_url("http://host/a b"));
    }
}
