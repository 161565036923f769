//! `[http]`: the HTTP API and the live map.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::validate::Problems;

/// The `[http]` section, for the API server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the API, the live map and `/metrics` listen on. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// A request must be answered within this long, or it gets 408 (the live streams are
    /// exempt: they last as long as the viewer stays).
    pub request_timeout_seconds: u64,
    /// A client must send a request's headers within this long after connecting or after its
    /// previous response, or the connection is closed: this is both the header read timeout
    /// (slowloris) and the idle timeout of a kept-alive connection.
    pub header_read_timeout_seconds: u64,
    /// Connections open at once; further ones wait in the listen queue until one closes.
    pub max_connections: usize,
    /// Serve HTTPS instead of HTTP on `listen`, with the certificate of `[tls]`.
    pub tls: bool,
    /// While ingest is busy (its store writer or pipeline working half the time or more),
    /// the large reads (position boxes, live maps' positions) may use this much CPU, in
    /// percent of one core, and wait beyond it; 0 = no limit. Readers never slow ingest.
    pub reader_cpu_percent: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            request_timeout_seconds: 30,
            header_read_timeout_seconds: 10,
            max_connections: 10_000,
            tls: false,
            reader_cpu_percent: 10,
        }
    }
}

impl HttpConfig {
    /// `request_timeout_seconds` as a `Duration`.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }

    /// `header_read_timeout_seconds` as a `Duration`.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_seconds)
    }

    pub(crate) fn validate(&self, p: &mut Problems) {
        for (value, path) in [
            (self.request_timeout_seconds, "http.request_timeout_seconds"),
            (
                self.header_read_timeout_seconds,
                "http.header_read_timeout_seconds",
            ),
        ] {
            p.check(
                (1..=86_400).contains(&value),
                path,
                "must be 1..=86400 seconds",
            );
        }
        p.check(
            (1..=1_000_000).contains(&self.max_connections),
            "http.max_connections",
            "must be 1..=1000000",
        );
        p.check(
            self.reader_cpu_percent <= 100_000,
            "http.reader_cpu_percent",
            "must be 0 (no limit) to 100000 (percent of one core)",
        );
    }
}
