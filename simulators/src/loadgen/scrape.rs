//! Watching a Prometheus counter on `/metrics` until it reaches a target: how the bench times
//! Landport's ingest (`landport_readings_accepted_total`). A bare HTTP/1.0 GET over a
//! `TcpStream` is all it takes, so no HTTP client is pulled in.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::unix_ms;

/// What to watch, and for how long.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// `http://host:port/path` of the Prometheus text endpoint.
    pub url: String,
    /// Metric name; the values of all its label sets are added up.
    pub metric: String,
    /// Stop when the value reaches this.
    pub target: f64,
    /// Give up after this long.
    pub timeout: Duration,
    /// Time between scrapes.
    pub interval: Duration,
}

/// When the counter reached its target, or where it stood when the watch gave up.
#[derive(Debug, Clone, Serialize)]
pub struct WatchReport {
    pub reached: bool,
    /// The last value scraped.
    pub value: f64,
    /// Epoch ms of the scrape that saw the target reached (or of the last one).
    pub unix_ms: i64,
    /// From the start of the watch to that scrape.
    pub elapsed_seconds: f64,
    pub scrapes: u64,
}

/// Scrapes `config.url` every `config.interval` until `config.metric` >= `config.target`.
/// A scrape that fails (the service not up yet) is retried until the timeout.
pub async fn watch(config: &WatchConfig) -> Result<WatchReport> {
    let (host_port, path) = split_http_url(&config.url)?;
    let (host_port, path) = (host_port.as_str(), path.as_str());
    let start = Instant::now();
    let mut report = WatchReport {
        reached: false,
        value: 0.0,
        unix_ms: unix_ms(),
        elapsed_seconds: 0.0,
        scrapes: 0,
    };
    loop {
        if let Ok(text) = fetch(host_port, path).await {
            report.scrapes += 1;
            report.value = metric_sum(&text, &config.metric).unwrap_or(0.0);
            report.unix_ms = unix_ms();
            report.elapsed_seconds = start.elapsed().as_secs_f64();
            if report.value >= config.target {
                report.reached = true;
                return Ok(report);
            }
        }
        if start.elapsed() >= config.timeout {
            return Ok(report);
        }
        tokio::time::sleep(config.interval).await;
    }
}

/// `http://host[:port]/path` -> (`host:port`, `/path`), read by the `url` crate (port 80 when
/// left out, IPv6 hosts in brackets, a query kept with the path).
pub fn split_http_url(url: &str) -> Result<(String, String)> {
    let parsed = url::Url::parse(url).with_context(|| format!("{url:?}: not a URL"))?;
    if parsed.scheme() != "http" {
        bail!("{url:?}: only http:// URLs are supported");
    }
    let Some(host) = parsed.host() else {
        bail!("{url:?}: no host");
    };
    let port = parsed.port_or_known_default().unwrap_or(80);
    let path = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    // `Host`'s Display puts an IPv6 address in brackets, as `host:port` needs.
    Ok((format!("{host}:{port}"), path))
}

/// The body of `GET path` from `host_port`.
pub async fn fetch(host_port: &str, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(host_port)
        .await
        .with_context(|| format!("connecting to {host_port}"))?;
    // HTTP/1.0: the server closes the connection after the body and never chunks it.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host_port}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("GET {path}: no HTTP header in the response");
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// The sum over all label sets of metric `name` in Prometheus/OpenMetrics text; `None` when
/// it does not appear.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if rest.starts_with('{') {
            rest.rsplit_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None // another metric whose name starts with `name`
        };
        // The sample value is the first field after the name and labels (a timestamp may follow).
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP landport_readings_accepted Readings accepted.
# TYPE landport_readings_accepted counter
landport_readings_accepted_total 1234
landport_readings_accepted_total_extra 99
# TYPE landport_rejected counter
landport_rejected_total{reason=\"lat_out_of_range\"} 10
landport_rejected_total{reason=\"invalid_json\",x=\"}\"} 2 1700000000
landport_pipeline_lag_seconds 0.25
# EOF
";

    #[test]
    fn a_plain_counter_is_read_and_longer_names_are_not_mixed_in() {
        assert_eq!(
            metric_sum(TEXT, "landport_readings_accepted_total"),
            Some(1234.0)
        );
        assert_eq!(
            metric_sum(TEXT, "landport_pipeline_lag_seconds"),
            Some(0.25)
        );
    }

    #[test]
    fn label_sets_are_added_up() {
        assert_eq!(metric_sum(TEXT, "landport_rejected_total"), Some(12.0));
    }

    #[test]
    fn an_absent_metric_is_none() {
        assert_eq!(metric_sum(TEXT, "landport_events_total"), None);
    }

    #[test]
    fn http_urls_split_into_address_and_path() {
        let split = |u| split_http_url(u).unwrap();
        assert_eq!(
            split("http://127.0.0.1:8080/metrics"),
            ("127.0.0.1:8080".into(), "/metrics".into())
        );
        assert_eq!(split("http://h:1"), ("h:1".into(), "/".into()));
        assert_eq!(split("http://h/m?x=1"), ("h:80".into(), "/m?x=1".into()));
        assert_eq!(split("http://[::1]:9/m"), ("[::1]:9".into(), "/m".into()));
        assert!(split_http_url("https://h/metrics").is_err());
        assert!(split_http_url("127.0.0.1:8080/metrics").is_err());
    }
}
