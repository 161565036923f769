//! The MQTT driver: publishes a [`Simulation`]'s messages to a broker in real time (QoS 1),
//! with a progress display, and sums up what it sent.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::{oneshot, watch};

use super::sim::{FleetConfig, Kind, Message, Scenario, Simulation};
use crate::loadgen::publish::drive;
use crate::loadgen::{client_id, mqtt_options, parse_broker, unix_ms};

/// How long to wait for the last acknowledgements once everything is sent.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// What a run sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Messages published, every kind.
    pub sent: u64,
    pub native: u64,
    pub senml: u64,
    pub owntracks: u64,
    pub malformed: u64,
    pub duplicate: u64,
    /// Store-and-forward batches.
    pub batch: u64,
    /// Messages the broker acknowledged (QoS 1).
    pub acked: u64,
    /// Real time from the first publish to the last acknowledgement.
    pub elapsed_seconds: f64,
}

impl Summary {
    /// Counts one message.
    pub fn count(&mut self, m: &Message) {
        self.sent += 1;
        match m.kind {
            Kind::Native => self.native += 1,
            Kind::Senml => self.senml += 1,
            Kind::OwnTracks => self.owntracks += 1,
            Kind::Malformed => self.malformed += 1,
            Kind::Duplicate => self.duplicate += 1,
            Kind::Batch => self.batch += 1,
        }
    }

    /// Messages per second over the run.
    pub fn rate_per_s(&self) -> f64 {
        if self.elapsed_seconds > 0.0 {
            self.sent as f64 / self.elapsed_seconds
        } else {
            0.0
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {} messages in {:.1} s ({:.1}/s), {} acknowledged: native {}, senml {}, \
             owntracks {}, malformed {}, duplicate {}, batch {}",
            self.sent,
            self.elapsed_seconds,
            self.rate_per_s(),
            self.acked,
            self.native,
            self.senml,
            self.owntracks,
            self.malformed,
            self.duplicate,
            self.batch
        )
    }
}

/// Publishes the fleet `config` describes to `broker_url` (`mqtt://host:port`) at
/// `config.rate_hz` messages per device per second, for `config.duration` (or until Ctrl-C),
/// QoS 1. Simulated time starts at the wall clock and runs `config.time_scale` times as
/// fast. `progress`: draw a progress bar on stderr.
pub async fn run(config: FleetConfig, broker_url: &str, progress: bool) -> Result<Summary> {
    run_with(config, &Scenario::default(), broker_url, None, progress).await
}

/// MQTT credentials the fleet connects with (for Landport's endpoint: the tenant's id and one
/// of its API keys, SPEC 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

/// As [`run`], logged in as `login` when given, with `scenario`'s scripted trucks; when it has history, the simulation starts
/// that long before the wall clock and what the trucks recorded in it is published first, as
/// store-and-forward batches (they go through ingest like any device's), then the fleet goes
/// live.
pub async fn run_with(
    config: FleetConfig,
    scenario: &Scenario,
    broker_url: &str,
    login: Option<Login>,
    progress: bool,
) -> Result<Summary> {
    if config.devices == 0 {
        bail!("need at least one device");
    }
    if !(config.rate_hz > 0.0 && config.rate_hz.is_finite()) {
        bail!("the rate must be above 0 Hz");
    }
    if !(config.time_scale > 0.0 && config.time_scale.is_finite()) {
        bail!("the time scale must be above 0");
    }
    let (host, port) = parse_broker(broker_url)?;
    let mut options = mqtt_options(&client_id("landport", "simulate"), &host, port);
    options.set_inflight(1_000);
    if let Some(l) = login {
        options.set_credentials(l.username, l.password);
    }
    let (client, eventloop) = AsyncClient::new(options, 1_000);
    let (connected_tx, connected_rx) = oneshot::channel();
    let (acked_tx, mut acked_rx) = watch::channel(0u64);
    let driver = tokio::spawn(drive(eventloop, connected_tx, acked_tx));
    if connected_rx.await.is_err() {
        let error = match driver.await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => anyhow!("disconnected before CONNACK"),
            Err(e) => anyhow!(e),
        };
        return Err(error.context(format!("connecting to {host}:{port}")));
    }

    let bar = if progress {
        let bar = match config.duration {
            Some(d) => ProgressBar::new(d.as_secs().max(1)),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} s  {msg}",
            )
            .map_err(|e| anyhow!(e))?,
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let start_ms = scenario.live_from_ms.unwrap_or(0).max(unix_ms());
    let history_ms = i64::try_from(scenario.history.as_millis()).unwrap_or(i64::MAX / 2);
    let mut sim = Simulation::with_scenario(&config, scenario, start_ms - history_ms);
    let mut summary = Summary::default();
    let start = Instant::now();
    for m in sim.history(start_ms) {
        summary.count(&m);
        client
            .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
            .await
            .context("publishing")?;
    }
    let period = Duration::from_secs_f64(1.0 / config.rate_hz);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut ctrl_c => break,
        }
        let elapsed = start.elapsed();
        if config.duration.is_some_and(|d| elapsed >= d) {
            break;
        }
        let sim_ms = start_ms + (elapsed.as_secs_f64() * 1000.0 * config.time_scale) as i64;
        for m in sim.tick(sim_ms) {
            summary.count(&m);
            client
                .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
                .await
                .context("publishing")?;
        }
        bar.set_position(elapsed.as_secs());
        bar.set_message(format!(
            "{} sent, {} acked, {:.0}/s",
            summary.sent,
            *acked_rx.borrow(),
            summary.sent as f64 / elapsed.as_secs_f64().max(1e-3)
        ));
    }

    // Wait for the broker to acknowledge everything, then say goodbye.
    let sent = summary.sent;
    let all_acked = tokio::time::timeout(ACK_TIMEOUT, acked_rx.wait_for(|&n| n >= sent))
        .await
        .is_ok_and(|r| r.is_ok());
    summary.acked = *acked_rx.borrow();
    summary.elapsed_seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), driver).await;
    if !all_acked {
        eprintln!(
            "warning: {} of {sent} messages unacknowledged after {} s",
            sent - summary.acked.min(sent),
            ACK_TIMEOUT.as_secs()
        );
    }
    Ok(summary)
}
