//! `landport run`: wires the components and waits for a signal.
//!
//! Start order: logging, store (recovering the tracker from its snapshot and the readings
//! after it), embedded broker (if configured), MQTT source, decode stage, pipeline, MQTT event
//! outbox, InfluxDB sink (if configured), HTTP. Stop order on SIGINT/SIGTERM: HTTP and the MQTT source
//! stop taking work, the pipeline commits and acknowledges what it has and saves a snapshot;
//! the outbox publishes pending events; then the source disconnects and the sink flushes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use landport_cluster::settings;
use landport_config::{Config, LogFormat};
use landport_ingest::decoder::Decoder;
use landport_ingest::endpoint::auth::{Acl, Authenticator, Principal, Revocations};
use landport_ingest::endpoint::{Endpoint, EndpointAcks, EndpointConfig};
use landport_ingest::mqtt::{MqttSource, MqttSourceConfig};
use landport_pipeline::metrics::Metrics;
use landport_pipeline::{self as pipeline, Pipeline};
use landport_sinks::influx::InfluxSink;
use landport_sinks::outbox;
use landport_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::mqtt_events::MqttEvents;

/// How MQTT arrives: Landport's own endpoint, or the client of an external broker (with the
/// outbox that publishes events there).
enum Ingest {
    Endpoint {
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    },
    Source {
        source_task: tokio::task::JoinHandle<()>,
        source_shutdown: CancellationToken,
        decode_task: tokio::task::JoinHandle<()>,
        outbox_task: tokio::task::JoinHandle<()>,
        outbox_stop: CancellationToken,
    },
}

/// The endpoint's settings from `[mqtt]`.
fn endpoint_config(config: &Config) -> EndpointConfig {
    EndpointConfig {
        max_packet_bytes: config.mqtt.max_packet_bytes as usize,
        receive_maximum: config.mqtt.receive_maximum,
        max_connections: config.mqtt.max_connections as usize,
        max_subscribers: config.mqtt.max_subscribers as usize,
        session_retention: Duration::from_secs(
            u64::from(config.storage.events_retention_days) * 86_400,
        ),
        acl: Acl::new(settings::ingest(config).owntracks),
        ..EndpointConfig::default()
    }
}

/// Who may connect to the endpoint: device credentials and tenant keys from the store, and
/// clients without credentials as `mqtt.anonymous_tenant` when `mqtt.allow_anonymous` says so.
fn mqtt_authenticator(config: &Config, metrics: Arc<Metrics>) -> Result<Arc<dyn Authenticator>> {
    let store = Store::open_reader(&config.storage.path)
        .context("opening the MQTT authenticator's store connection")?;
    let anonymous = config
        .mqtt
        .anonymous_allowed()
        .then(|| config.mqtt.anonymous_tenant.clone());
    Ok(Arc::new(crate::mqtt_auth::StoreAuthenticator::new(
        store, anonymous, metrics,
    )))
}

/// Sets up `tracing` from `[log]`; `RUST_LOG` wins over `log.level`.
pub fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs the service until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    if config.cluster.is_some() {
        // Cluster mode: telemetry from the NATS cluster's stream, partitions as shards.
        return landport_cluster::node::run(config, wait_for_signal()).await;
    }
    if config.mqtt.embedded_buffer_mb.is_some() {
        tracing::warn!(
            "mqtt.embedded_buffer_mb is no longer used: Landport's own MQTT endpoint keeps no \
             backlog (it stops reading a client that is ahead of the store instead)"
        );
    }
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();

    let synchronous = settings::synchronous(&config);
    let mut store = Store::open(&config.storage.path)
        .with_context(|| format!("opening the store in {}", config.storage.path.display()))?;
    store
        .set_synchronous(synchronous)
        .context("storage.synchronous")?;
    let core = pipeline::recover(
        &mut store,
        config.tracker.clone(),
        config.ingest.auto_register,
        metrics.clone(),
    )
    .context("recovering the tracker state")?;

    // The store writer wakes the outbox after each commit that stored events.
    let events_committed = Arc::new(Notify::new());
    let pipeline_config = settings::pipeline(&config);
    let ready = Arc::new(AtomicBool::new(false));
    // Device credentials replaced or revoked through the API (`/v1/devices/{id}/credentials`):
    // the endpoint disconnects the sessions authenticated with them.
    let revocations: Revocations = tokio::sync::broadcast::channel(64).0;
    let (ingest, mut pipeline_task, tracker, events) = if config.mqtt.embedded {
        // Landport's own MQTT endpoint: publishes go from each connection, decoded, straight
        // to the pipeline; subscribers are fed from the event log.
        let (decoded_tx, decoded) = tokio::sync::mpsc::channel(1024);
        let acks = EndpointAcks::new();
        let (pipeline, tracker, events) = Pipeline::new(
            core,
            store,
            acks.clone(),
            decoded,
            events_committed.clone(),
            pipeline_config,
            metrics.clone(),
        );
        let pipeline_task = tokio::spawn(pipeline.run(shutdown.clone()));
        let sessions =
            Store::open(&config.storage.path).context("opening the MQTT sessions' store")?;
        sessions
            .set_synchronous(synchronous)
            .context("storage.synchronous")?;
        let stop = CancellationToken::new();
        let endpoint = Endpoint::new(
            endpoint_config(&config),
            mqtt_authenticator(&config, metrics.clone())?,
            Decoder::new(settings::ingest(&config)),
            decoded_tx,
            &acks,
            sessions,
            &events,
            metrics.clone(),
            stop.clone(),
        );
        let listener = tokio::net::TcpListener::bind(config.mqtt.listen)
            .await
            .with_context(|| format!("binding the MQTT endpoint on {}", config.mqtt.listen))?;
        tracing::info!(listen = %listener.local_addr()?, "MQTT endpoint up");
        if let Some(tls_listen) = config.mqtt.tls_listen {
            let (cert, key) = config.tls.files().context("mqtt.tls_listen needs [tls]")?;
            let acceptor = landport_api::tls::acceptor(cert, key, false)?;
            let tls_listener = tokio::net::TcpListener::bind(tls_listen)
                .await
                .with_context(|| format!("binding MQTT over TLS on {tls_listen}"))?;
            tracing::info!(listen = %tls_listener.local_addr()?, "MQTT over TLS up");
            tokio::spawn(crate::mqtt_tls::serve(
                endpoint.clone(),
                tls_listener,
                acceptor,
                stop.clone(),
            ));
        }
        endpoint.watch_revocations(revocations.subscribe());
        let task = tokio::spawn(endpoint.serve(listener));
        metrics.mqtt_connected.set(1);
        ready.store(true, Ordering::Relaxed);
        (
            Ingest::Endpoint { stop, task },
            pipeline_task,
            tracker,
            events,
        )
    } else {
        let (host, port) = config
            .mqtt
            .broker_host_port()
            .context("mqtt.url: cannot tell host and port")?;
        let tls = match config.mqtt.broker() {
            Ok(b) if b.tls => Some(landport_api::tls::client_config(
                config.mqtt.ca_file.as_deref(),
            )?),
            _ => None,
        };
        let source_config = MqttSourceConfig {
            username: config.mqtt.credentials().map(|(u, _)| u.to_owned()),
            password: config.mqtt.credentials().map(|(_, p)| p.to_owned()),
            tls,
            ..MqttSourceConfig::new(
                host,
                port,
                config.mqtt.client_id.clone(),
                config.mqtt.keep_alive_seconds,
            )
        };
        // The decoded messages' channel is as deep as the source's own.
        let source_capacity = source_config.channel_capacity;
        let (source, client, inbox) =
            MqttSource::new(source_config).context("configuring the MQTT source")?;
        let stats = source.stats();
        // The source outlives the pipeline: acknowledgements of the last batch still go out
        // through its event loop.
        let source_shutdown = CancellationToken::new();
        let source_task = tokio::spawn(source.run(source_shutdown.clone()));
        // Between the source and the pipeline: topics read, payloads decoded and validated. It
        // ends when the source closes its channel, or the pipeline stops taking messages.
        let (decoded_tx, decoded) = tokio::sync::mpsc::channel(source_capacity);
        let decode_task =
            tokio::spawn(Decoder::new(settings::ingest(&config)).run(inbox, decoded_tx));

        let outbox_store =
            Store::open(&config.storage.path).context("opening the outbox's store")?;
        outbox_store
            .set_synchronous(synchronous)
            .context("storage.synchronous")?;
        let (pipeline, tracker, events) = Pipeline::new(
            core,
            store,
            client.clone(),
            decoded,
            events_committed.clone(),
            pipeline_config,
            metrics.clone(),
        );
        let pipeline_task = tokio::spawn(pipeline.run(shutdown.clone()));
        // Its own token: it stops after the pipeline has committed the last batch.
        let outbox_stop = CancellationToken::new();
        let outbox_task = tokio::spawn(outbox::run(
            outbox_store,
            MqttEvents(client),
            events_committed.clone(),
            outbox_stop.clone(),
            metrics.clone(),
        ));
        // Readiness: connected to the broker while the pipeline runs.
        let (ready, metrics, shutdown) = (ready.clone(), metrics.clone(), shutdown.clone());
        let readiness_stats = stats.clone();
        tokio::spawn(async move {
            let stats = readiness_stats;
            let mut reconnects = 0;
            while !shutdown.is_cancelled() {
                let up = stats.ready();
                ready.store(up, Ordering::Relaxed);
                metrics.mqtt_connected.set(i64::from(up));
                let now = stats.reconnects();
                metrics
                    .mqtt_reconnects
                    .inc_by(now.saturating_sub(reconnects));
                reconnects = now;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            ready.store(false, Ordering::Relaxed);
        });
        (
            Ingest::Source {
                source_task,
                source_shutdown,
                decode_task,
                outbox_task,
                outbox_stop,
            },
            pipeline_task,
            tracker,
            events,
        )
    };

    let sink_task = match &config.influxdb {
        Some(influx) => {
            let sink = InfluxSink::new(
                settings::influx_sink(influx),
                &config.storage.path,
                metrics.clone(),
            )
            .context("influxdb")?;
            tracing::info!(
                url = influx.url,
                api = influx.api.as_str(),
                "InfluxDB sink on"
            );
            // Its own token: it stops after the pipeline has committed the last batch.
            let stop = CancellationToken::new();
            Some((tokio::spawn(sink.run(stop.clone())), stop))
        }
        None => None,
    };

    // Webhooks: the delivery engine tails the event log from its own cursor, woken by the
    // pipeline's committed events; it stops after the pipeline, like the outbox.
    let webhooks_store =
        Store::open(&config.storage.path).context("opening the webhooks' store")?;
    webhooks_store
        .set_synchronous(synchronous)
        .context("storage.synchronous")?;
    let webhooks_stop = CancellationToken::new();
    let webhooks_task = tokio::spawn(landport_sinks::webhooks::run(
        webhooks_store,
        settings::webhooks(&config),
        events.subscribe(),
        webhooks_stop.clone(),
        metrics.clone(),
    ));

    // Cleared for good when the pipeline fails.
    let ready_off = ready.clone();

    let http_runtime = http_runtime().context("starting the HTTP runtime")?;
    let limits = settings::api_limits(&config);
    let api = landport_api::ApiState::with_limits(
        &config.storage.path,
        tracker,
        events,
        config.auth.admin_key.as_ref().map(|k| k.expose()),
        limits,
    )
    .context("opening the API's store connections")?
    .with_reader_cpu_percent(config.http.reader_cpu_percent);
    api.set_synchronous(synchronous)
        .context("storage.synchronous")?;
    let map = landport_api::web::MapSettings {
        tile_url: config.map.tile_url.clone(),
        tile_attribution: config.map.tile_attribution.clone(),
    };
    let router = landport_api::router_with_api(
        landport_api::AppState {
            metrics: metrics.clone(),
            ready,
        },
        api.clone(),
    )
    .merge(landport_api::web::router(map, api));
    let router = landport_api::with_webhook_policy(
        router,
        landport_api::WebhookPolicy {
            allow_private_targets: config.webhooks.allow_private_targets,
        },
    );
    let router = landport_api::with_report_settings(router, settings::reports(&config));
    let router = landport_api::on_credential_revoked(
        router,
        landport_api::CredentialRevoked::new(move |what| {
            let principal = match what {
                landport_api::Revoked::Device { tenant, device } => Principal::Device {
                    tenant: tenant.to_owned(),
                    device: device.to_owned(),
                },
                landport_api::Revoked::TenantKey { tenant } => Principal::Tenant {
                    tenant: tenant.to_owned(),
                },
            };
            // No receiver (an external broker: nobody connects with these credentials) is
            // not an error.
            let _ = revocations.send(principal);
        }),
    );
    let router = landport_api::request_timeout(router, config.http.request_timeout());
    let serve_settings = landport_api::ServeSettings {
        header_read_timeout: config.http.header_read_timeout(),
        max_connections: config.http.max_connections,
    };
    // HTTPS on the same listener with `http.tls` (the certificate is read now: a bad one
    // stops the start with the field named).
    let https = match (config.http.tls, config.tls.files()) {
        (true, Some((cert, key))) => Some(landport_api::tls::acceptor(cert, key, true)?),
        _ => None,
    };
    // Bound and served on the HTTP runtime, so connections are driven by its threads.
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let (listen, http_shutdown) = (config.http.listen, shutdown.clone());
    let http_task = http_runtime.spawn(async move {
        match landport_api::bind(listen).await {
            Ok(listener) => {
                let _ = bound_tx.send(listener.local_addr());
                landport_api::serve_with_tls(listener, router, http_shutdown, serve_settings, https)
                    .await
            }
            Err(e) => {
                let _ = bound_tx.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    });
    let local = bound_rx
        .await
        .context("the HTTP runtime stopped")?
        .context("binding HTTP")?;
    tracing::info!(listen = %local, "HTTP up");

    let failure = supervise(wait_for_signal(), &mut pipeline_task).await;
    match &failure {
        None => tracing::info!("shutting down: flushing the pipeline"),
        Some(e) => {
            // Not ready from now on, and a non-zero exit for the supervisor to restart us:
            // a process that no longer ingests must not look healthy.
            ready_off.store(false, Ordering::Relaxed);
            tracing::error!(error = %e, "the pipeline stopped; shutting down");
        }
    }
    shutdown.cancel();
    let _ = http_task.await;
    if failure.is_none() {
        match pipeline_task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "pipeline stopped with an error"),
            Err(e) => tracing::error!(error = %e, "pipeline task failed"),
        }
    }
    match ingest {
        Ingest::Endpoint { stop, task } => {
            // The pipeline has acknowledged its last commit: the connections write those
            // PUBACKs and close.
            stop.cancel();
            let _ = task.await;
            // Give the writers a moment for their last acks.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ingest::Source {
            source_task,
            source_shutdown,
            decode_task,
            outbox_task,
            outbox_stop,
        } => {
            // What the last commit stored goes out too: the outbox looks once more, publishes
            // what is pending and waits (a few seconds at most) for its PUBACKs.
            events_committed.notify_one();
            outbox_stop.cancel();
            if let Err(e) = outbox_task.await {
                tracing::error!(error = %e, "event outbox task failed");
            }
            // The pipeline and the outbox have dropped their client handles; the source sends
            // the last acknowledgements and disconnects.
            source_shutdown.cancel();
            let _ = source_task.await;
            let _ = decode_task.await;
        }
    }
    // What the last commit stored is queued; attempts in flight get a moment.
    webhooks_stop.cancel();
    if let Err(e) = webhooks_task.await {
        tracing::error!(error = %e, "webhook engine task failed");
    }
    if let Some((task, stop)) = sink_task {
        stop.cancel();
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "InfluxDB sink stopped with an error"),
            Err(e) => tracing::error!(error = %e, "InfluxDB sink task failed"),
        }
    }
    match failure {
        None => {
            tracing::info!("stopped");
            Ok(())
        }
        Some(e) => Err(e),
    }
}

/// The HTTP side's threads run under Linux's `SCHED_IDLE` policy: they get the CPU time that
/// ingest's threads leave, and a thread of ingest that wakes takes the core from them at once.
/// With 20 province-box readers and 100 live maps on two cores, ingest kept 0.70-0.71x of its
/// rate alone this way, against 0.53x at nice 10 in the same sitting (BENCHMARKS.md, "the read
/// side"): at nice 10 the readers still got ~10 % of the weight, and every handoff along
/// ingest's chain of threads waited behind them. The cost, by design: while ingest keeps
/// every core busy, HTTP answers (health probes too) slow down first. Where the policy cannot
/// be set, the threads fall back to [`HTTP_NICE`].
const HTTP_NICE: i32 = 19;

/// A runtime owned by async code: dropped, it lets its threads go without blocking (a plain
/// `Runtime` may not be dropped inside another runtime), on every path out of `run`.
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for OwnedRuntime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("taken only on drop")
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The runtime that serves HTTP: its own worker and blocking threads, under `SCHED_IDLE`, and
/// [`http_workers`] of them.
fn http_runtime() -> std::io::Result<OwnedRuntime> {
    let workers = http_workers(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("landport-http")
        .on_thread_start(|| {
            if let Err(e) = lower_this_threads_priority() {
                tracing::debug!(error = ?e, "could not lower the HTTP thread's priority");
            }
        })
        .enable_all()
        .build()?;
    Ok(OwnedRuntime(Some(rt)))
}

/// HTTP worker threads on a machine of `cores`: half of them, at least one. Ingest is a chain
/// of threads handing messages on (MQTT, decode, pipeline, store writer), each waking the next:
/// with as many HTTP workers as cores, readers held every core and each wake-up along that
/// chain had to take one back. Measured with 20 province-box readers and 100 live maps on two
/// cores (interleaved runs, same sitting): one worker kept ingest at 0.80-0.84x of its rate
/// alone, two at 0.44-0.69x (BENCHMARKS.md, "the read side").
fn http_workers(cores: usize) -> usize {
    (cores / 2).max(1)
}

/// Moves the calling thread to `SCHED_IDLE` (Linux; per thread), or else to nice
/// [`HTTP_NICE`].
fn lower_this_threads_priority() -> Result<(), thread_priority::Error> {
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle).is_ok() {
            return Ok(());
        }
    }
    // The crate maps 0..=99 onto nice 19..=-20 (rounding towards the lower priority).
    let crossplatform = (99 * (19 - HTTP_NICE) / 39) as u8;
    let value = ThreadPriorityValue::try_from(crossplatform)
        .map_err(|_| thread_priority::Error::Priority("HTTP_NICE out of -20..=19"))?;
    thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(value))
}

/// Waits for the stop signal, or for the pipeline to end before it: the pipeline runs until
/// asked to stop, so ending by itself (an error, a panic, a dead store writer) is a failure,
/// returned as `Some`.
async fn supervise(
    signal: impl std::future::Future<Output = ()>,
    pipeline: &mut tokio::task::JoinHandle<Result<(), pipeline::PipelineError>>,
) -> Option<anyhow::Error> {
    tokio::select! {
        _ = signal => None,
        end = pipeline => Some(match end {
            Ok(Ok(())) => anyhow::anyhow!("the pipeline stopped by itself"),
            Ok(Err(e)) => anyhow::Error::new(e).context("the pipeline failed"),
            Err(e) if e.is_panic() => anyhow::anyhow!(
                "the pipeline panicked: {}",
                pipeline::panic_message(&*e.into_panic())
            ),
            Err(e) => anyhow::anyhow!("the pipeline task failed: {e}"),
        }),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use std::future::pending;

    use super::*;

    /// The calling thread's scheduling policy (Linux: `SCHED_IDLE` is 5).
    #[cfg(target_os = "linux")]
    fn policy() -> i32 {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").unwrap();
        let line = sched.lines().find(|l| l.starts_with("policy")).unwrap();
        line.split(':').nth(1).unwrap().trim().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn http_threads_run_under_sched_idle_and_ingest_does_not() {
        const SCHED_IDLE: i32 = 5;
        let before = policy();
        let rt = http_runtime().unwrap();
        let (worker, blocking) = rt.block_on(async {
            let worker = tokio::spawn(async { policy() }).await.unwrap();
            let blocking = tokio::task::spawn_blocking(policy).await.unwrap();
            (worker, blocking)
        });
        drop(rt);
        assert_eq!((worker, blocking), (SCHED_IDLE, SCHED_IDLE));
        assert_eq!(policy(), before, "the calling thread keeps its policy");
        assert_ne!(before, SCHED_IDLE);
    }

    #[test]
    fn http_gets_half_the_cores_and_at_least_one() {
        assert_eq!(
            [1, 2, 3, 4, 16].map(http_workers),
            [1, 1, 1, 2, 8],
            "cores -> HTTP workers"
        );
    }

    #[tokio::test]
    async fn a_pipeline_that_panics_or_ends_by_itself_is_a_failure_and_a_signal_is_not() {
        let mut panics: tokio::task::JoinHandle<Result<(), pipeline::PipelineError>> =
            tokio::spawn(async { panic!("tracker bug") });
        let e = supervise(pending(), &mut panics).await.expect("a failure");
        assert!(e.to_string().contains("panicked: tracker bug"), "{e}");

        let mut ends = tokio::spawn(async { Ok(()) });
        let e = supervise(pending(), &mut ends).await.expect("a failure");
        assert!(e.to_string().contains("stopped by itself"), "{e}");

        let mut writer_gone = tokio::spawn(async {
            Err(pipeline::PipelineError::WriterStopped(
                "disk on fire".into(),
            ))
        });
        let e = supervise(pending(), &mut writer_gone)
            .await
            .expect("a failure");
        assert!(
            format!("{e:#}").contains("store writer stopped: disk on fire"),
            "{e:#}"
        );

        let mut runs = tokio::spawn(pending::<Result<(), pipeline::PipelineError>>());
        assert!(supervise(async {}, &mut runs).await.is_none());
        runs.abort();
    }
}
