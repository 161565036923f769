//! `landport-loadgen`: the end-to-end bench's driver. Each subcommand prints one JSON report
//! line on stdout; `scripts/bench` combines them.
//!
//! ```text
//! landport-loadgen publish --broker mqtt://127.0.0.1:1883 --devices 10000 --count 200000
//! landport-loadgen drain --broker mqtt://127.0.0.1:1883 --filter 'landport/+/+/rejected' --latency
//! landport-loadgen watch --metrics-url http://127.0.0.1:8080/metrics \
//!     --metric landport_readings_accepted_total --target 200000
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use landport_simulators::loadgen::{
    self, Drain, DrainConfig, LoadConfig, Stop, WatchConfig, parse_broker,
};
use rumqttc::QoS;

/// Load generator, baseline subscriber and metrics watcher for Landport's end-to-end bench.
#[derive(Debug, Parser)]
#[command(name = "landport-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish simulated truck readings (`{prefix}/{tenant}/truck-{i}/telemetry`).
    Publish {
        /// Broker, `mqtt://HOST:PORT`.
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        broker: String,
        /// Number of trucks.
        #[arg(long, default_value_t = 1_000)]
        devices: u64,
        /// Index of the first truck.
        #[arg(long, default_value_t = 0)]
        first_device: u64,
        /// Readings to publish in total.
        #[arg(long, conflicts_with = "duration_seconds")]
        count: Option<u64>,
        /// Publish for this long instead of a count.
        #[arg(long)]
        duration_seconds: Option<f64>,
        /// Total readings per second; full speed when absent.
        #[arg(long)]
        rate: Option<f64>,
        /// QoS of the publishes, 0 or 1.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
        qos: u8,
        /// Concurrent MQTT connections.
        #[arg(long, default_value_t = 4)]
        connections: u64,
        /// Make one reading in N malformed (lat 95), to be dead-lettered.
        #[arg(long)]
        malformed_every: Option<u64>,
        #[arg(long, default_value = "bench")]
        tenant: String,
        /// First topic level.
        #[arg(long, default_value = "landport")]
        topic_prefix: String,
        /// Un-acknowledged QoS 1 publishes per connection.
        #[arg(long, default_value_t = 1_000)]
        inflight: u16,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Subscribe and count what arrives (QoS 1, acknowledged at once or after --ack-delay-ms).
    Drain {
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        broker: String,
        /// Topic filter.
        #[arg(long, default_value = "landport/+/+/telemetry")]
        filter: String,
        /// Subscription QoS, 0 or 1.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
        qos: u8,
        /// Stop after this many messages.
        #[arg(long)]
        expect: Option<u64>,
        /// Give up when nothing has come after this long.
        #[arg(long, default_value_t = 60.0)]
        first_timeout_seconds: f64,
        /// Stop after this long without a message.
        #[arg(long, default_value_t = 5.0)]
        idle_timeout_seconds: f64,
        /// Report latency percentiles from each message's epoch-ms `ts`.
        #[arg(long)]
        latency: bool,
        /// Create this file once subscribed (for scripts to wait on).
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// With --latency: write each sample as `ts_ms latency_ms`, one a line, to this file.
        #[arg(long, requires = "latency")]
        samples_file: Option<PathBuf>,
        /// Acknowledge each message this many milliseconds after it arrived (in order)
        /// instead of at once, like a subscriber that acks after a commit.
        #[arg(long)]
        ack_delay_ms: Option<f64>,
    },
    /// Poll a Prometheus counter until it reaches a target.
    Watch {
        /// `http://HOST:PORT/metrics`.
        #[arg(long)]
        metrics_url: String,
        #[arg(long, default_value = "landport_readings_accepted_total")]
        metric: String,
        #[arg(long)]
        target: f64,
        #[arg(long, default_value_t = 300.0)]
        timeout_seconds: f64,
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
    },
    /// The province box's same-run baseline (scripts/bench-api, SPEC 18): the CPU time of
    /// serializing the FeatureCollection in `file` once with serde_json, from a ready
    /// `serde_json::Value`, as the median of `rounds`.
    SerdeBaseline {
        /// A JSON document (a `GET /v1/positions` body).
        #[arg(long)]
        file: std::path::PathBuf,
        #[arg(long, default_value_t = 40)]
        rounds: u32,
    },
    /// Run rumqttd (the broker Landport embedded before its own endpoint) on `listen`, for
    /// the bench's comparison: a bare subscriber's drain rate from it. Runs until killed.
    #[cfg(feature = "rumqttd-broker")]
    Broker {
        /// `HOST:PORT` to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

/// rumqttd with the settings Landport ran it with (64 MiB of log in 8 MiB segments, 1 MiB
/// packets, 1,000 connections), on `listen`; blocks until its listener fails.
#[cfg(feature = "rumqttd-broker")]
fn rumqttd_broker(listen: std::net::SocketAddr) -> Result<()> {
    use std::collections::HashMap;
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: 1024 * 1024 + 65_536,
        max_inflight_count: 1_000,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "bench-v4".to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    // rumqttd's timer task unwraps both intervals; `MetricSettings` deserializes only.
    let every = |secs: u64| -> Result<rumqttd::MetricSettings> {
        Ok(serde_json::from_value(
            serde_json::json!({ "push_interval": secs }),
        )?)
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 8 * 1024 * 1024,
            max_segment_count: 8,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        metrics: Some(HashMap::from([
            (rumqttd::MetricType::Alerts, every(3600)?),
            (rumqttd::MetricType::Meters, every(3600)?),
        ])),
        ..Default::default()
    };
    rumqttd::Broker::new(config)
        .start()
        .map_err(|e| anyhow::anyhow!("rumqttd on {listen}: {e}"))
}

fn qos(level: u8) -> QoS {
    if level == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

fn seconds(s: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("{what}: {s} is not a duration"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    #[cfg(feature = "rumqttd-broker")]
    if let Command::Broker { listen } = cli.command {
        // rumqttd runs its own runtimes: not inside ours.
        return rumqttd_broker(listen);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli.command))
}

async fn run(command: Command) -> Result<()> {
    let line = match command {
        Command::Publish {
            broker,
            devices,
            first_device,
            count,
            duration_seconds,
            rate,
            qos: level,
            connections,
            malformed_every,
            tenant,
            topic_prefix,
            inflight,
            seed,
        } => {
            let (host, port) = parse_broker(&broker)?;
            let stop = match (count, duration_seconds) {
                (Some(n), _) => Stop::Count(n),
                (None, Some(s)) => Stop::Duration(seconds(s, "--duration-seconds")?),
                (None, None) => bail!("give --count or --duration-seconds"),
            };
            let report = loadgen::publish(LoadConfig {
                host,
                port,
                tenant,
                topic_prefix,
                devices,
                first_device,
                qos: qos(level),
                rate_per_s: rate,
                stop,
                connections,
                malformed_every,
                inflight,
                seed,
                ..LoadConfig::default()
            })
            .await?;
            serde_json::to_string(&report)?
        }
        Command::Drain {
            broker,
            filter,
            qos: level,
            expect,
            first_timeout_seconds,
            idle_timeout_seconds,
            latency,
            ready_file,
            samples_file,
            ack_delay_ms,
        } => {
            let (host, port) = parse_broker(&broker)?;
            let drain = Drain::connect(DrainConfig {
                host,
                port,
                filter,
                qos: qos(level),
                expect,
                first_timeout: seconds(first_timeout_seconds, "--first-timeout-seconds")?,
                idle_timeout: seconds(idle_timeout_seconds, "--idle-timeout-seconds")?,
                latency,
                ack_delay: ack_delay_ms
                    .map(|ms| seconds(ms / 1000.0, "--ack-delay-ms"))
                    .transpose()?,
                ..DrainConfig::default()
            })
            .await?;
            if let Some(path) = ready_file {
                std::fs::write(&path, b"subscribed\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let report = drain.run().await?;
            if let Some(path) = samples_file {
                let mut text = String::new();
                for (ts, latency_ms) in &report.samples {
                    text.push_str(&format!("{ts} {latency_ms:.3}\n"));
                }
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            serde_json::to_string(&report)?
        }
        Command::Watch {
            metrics_url,
            metric,
            target,
            timeout_seconds,
            interval_ms,
        } => {
            let report = loadgen::watch(&WatchConfig {
                url: metrics_url,
                metric,
                target,
                timeout: seconds(timeout_seconds, "--timeout-seconds")?,
                interval: Duration::from_millis(interval_ms),
            })
            .await?;
            serde_json::to_string(&report)?
        }
        Command::SerdeBaseline { file, rounds } => {
            let body =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let value: serde_json::Value = serde_json::from_slice(&body)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            serde_json::to_string(&loadgen::serde_baseline(&value, rounds.max(1))?)?
        }
        #[cfg(feature = "rumqttd-broker")]
        Command::Broker { .. } => unreachable!("handled in main"),
    };
    println!("{line}");
    Ok(())
}
