//! A shard: one partition's complete Landport core (pipeline, store, read side, webhook
//! engine, router), run by the instance that holds the partition's lease.
//!
//! Taking a partition over rebuilds it from NATS, whoever owned it before and however that
//! owner ended:
//! 1. the partition's newest snapshot ([`crate::snapshot`]), if any, as the shard's store
//!    (history, registry, events, webhook deliveries, the tracker's own snapshots), recovered
//!    as a single node recovers after `kill -9`; else a fresh store in
//!    `{storage.path}/partitions/p{n}`;
//! 2. the registry log applied from where the store left it to its end (every shard holds the
//!    whole registry);
//! 3. the partition's telemetry replayed from after the snapshot's stream position (or the
//!    stream's start) up to the last message the durable consumer delivered: everything an
//!    owner committed and acknowledged (and what it took but had not acknowledged yet), so the
//!    history (tracks, events, reports) and the live state are what they were. Event ids are
//!    deterministic, so the replayed events have the ids they had; the webhook engine and the
//!    event outbox go on from the snapshot's cursors (at least once: what the dead owner
//!    delivered after its snapshot goes again, with the same ids), or, with no snapshot,
//!    start past the replayed events;
//! 4. then the live consumer, after that message: what the old owner took but never
//!    acknowledged is delivered again (after the consumer's ack wait) and only acknowledged,
//!    as it is stored already. The owner saves a new snapshot every
//!    `cluster.snapshot_seconds`, which bounds the next takeover's replay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use landport_config::Config;
use landport_ingest::decoder::Decoder;
use landport_pipeline::metrics::Metrics;
use landport_pipeline::{Pipeline, PipelineError};
use landport_store::Store;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::source::{self, LeaseClock, ShardAck, ShardAcker};
use crate::{settings, snapshot};

/// What every shard of an instance shares.
#[derive(Clone)]
pub struct ShardContext {
    pub config: Arc<Config>,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub stream: stream::Stream,
    /// The object store of partition snapshots.
    pub snapshots: async_nats::jetstream::object_store::ObjectStore,
    pub metrics: Arc<Metrics>,
}

impl ShardContext {
    /// The deployment's number of partitions.
    pub fn partitions(&self) -> u32 {
        self.config.cluster.as_ref().map_or(1, |c| c.partitions)
    }

    /// Where partition `p`'s store lives on this instance.
    pub fn dir(&self, p: u32) -> PathBuf {
        self.config
            .storage
            .path
            .join("partitions")
            .join(format!("p{p}"))
    }
}

/// A running shard.
pub struct Shard {
    pub partition: u32,
    pub lease: LeaseClock,
    /// Stops taking messages; the pipeline then commits, acknowledges and ends.
    stop: CancellationToken,
    /// Stops the pipeline (after the source has stopped).
    pipeline_stop: CancellationToken,
    source: JoinHandle<()>,
    pipeline: JoinHandle<Result<(), PipelineError>>,
    webhooks_stop: CancellationToken,
    webhooks: JoinHandle<()>,
    outbox_stop: CancellationToken,
    outbox: JoinHandle<()>,
    events_committed: Arc<Notify>,
    /// The shard's router and the tasks serving it.
    pub router: axum::Router,
    /// Stops the registry applier and the request service.
    serve_stop: CancellationToken,
    serving: Vec<JoinHandle<()>>,
    snapshots: JoinHandle<()>,
    /// What the shard was built with (its last snapshot goes to `ctx.snapshots`).
    ctx: ShardContext,
    /// The stream sequence of the last message fed to the pipeline.
    fed: Arc<AtomicU64>,
    /// The InfluxDB sink, if configured, and what stops it.
    influx: Option<(
        JoinHandle<Result<(), landport_sinks::influx::SinkError>>,
        CancellationToken,
    )>,
}

/// What a starting shard has started so far, to stop again if a later step fails.
#[derive(Default)]
struct Started {
    pipeline_stop: CancellationToken,
    pipeline: Option<JoinHandle<Result<(), PipelineError>>>,
    serve_stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Shard {
    /// Builds partition `p`'s shard from NATS (see the module docs) and starts it.
    /// `registry(router, dir, stop)` starts applying the registry log to the shard (until
    /// `stop`) and returns its task once the shard has caught up with the log. The shard
    /// answers requests over NATS only once it is rebuilt. If a step fails, what was started
    /// is stopped again: a half-built shard neither answers nor ingests.
    pub async fn start(
        ctx: &ShardContext,
        p: u32,
        lease: LeaseClock,
        registry: impl AsyncFnOnce(axum::Router, &Path, CancellationToken) -> Result<JoinHandle<()>>,
    ) -> Result<Shard> {
        let mut started = Started::default();
        match Self::build(ctx, p, lease, registry, &mut started).await {
            Ok(shard) => Ok(shard),
            Err(e) => {
                started.serve_stop.cancel();
                started.pipeline_stop.cancel();
                for t in started.tasks {
                    t.abort();
                }
                if let Some(pipeline) = started.pipeline {
                    let _ = pipeline.await;
                }
                Err(e)
            }
        }
    }

    async fn build(
        ctx: &ShardContext,
        p: u32,
        lease: LeaseClock,
        registry: impl AsyncFnOnce(axum::Router, &Path, CancellationToken) -> Result<JoinHandle<()>>,
        started: &mut Started,
    ) -> Result<Shard> {
        let config = &ctx.config;
        let dir = ctx.dir(p);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("clearing {} for a rebuild", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // 1. The newest snapshot, if any: the replay starts after the stream position it covers.
        let covered = snapshot::restore(&ctx.snapshots, p, &dir.join(landport_store::DB_FILE))
            .await?
            .unwrap_or(0);
        let synchronous = settings::synchronous(config);
        let mut store = Store::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
        store.set_synchronous(synchronous)?;
        let core = landport_pipeline::recover(
            &mut store,
            config.tracker.clone(),
            config.ingest.auto_register,
            ctx.metrics.clone(),
        )?;
        let replaying = Arc::new(AtomicBool::new(true));
        let acker = ShardAcker::new(ctx.client.clone(), lease.clone(), replaying.clone());
        let (decoded_tx, decoded) = mpsc::channel(1024);
        // The store writer wakes the event outbox after each commit that stored events.
        let events_committed = Arc::new(Notify::new());
        let (pipeline, tracker, events) = Pipeline::new(
            core,
            store,
            acker,
            decoded,
            events_committed.clone(),
            settings::pipeline(config),
            ctx.metrics.clone(),
        );
        let pipeline_stop = started.pipeline_stop.clone();
        let pipeline = tokio::spawn(pipeline.run(pipeline_stop.clone()));
        started.pipeline = Some(pipeline);

        let api = landport_api::ApiState::with_limits(
            &dir,
            tracker,
            events.clone(),
            config.auth.admin_key.as_ref().map(|k| k.expose()),
            settings::api_limits(config),
        )?
        // Every shard applies every registry entry: the same ids, keys and times everywhere.
        .trust_replication_headers()
        // Every shard stores every device; it answers only for those of its partition.
        .with_owns(owns(p, ctx.partitions()))
        .with_reader_cpu_percent(config.http.reader_cpu_percent);
        api.set_synchronous(synchronous)?;
        let router = shard_router(ctx, api);

        // 2. The registry, applied up to its end (and later entries as they come).
        let serve_stop = started.serve_stop.clone();
        let applier = registry(router.clone(), &dir, serve_stop.clone()).await?;
        started.tasks.push(applier);

        // 3. The replay.
        let consumer = source::partition_consumer(&ctx.stream, p).await?;
        // Up to the last message the consumer delivered, not just its ack floor: messages
        // above the floor may be acknowledged one by one (the floor is where every message
        // before is acknowledged), and an acknowledged message is never delivered again. What
        // was delivered and not acknowledged comes again later and is then only acknowledged.
        let floor = consumer
            .get_info()
            .await
            .context("the partition consumer's position")?
            .delivered
            .stream_sequence;
        let decoder = Decoder::new(settings::ingest(config));
        let replayed = replay(ctx, p, covered, floor, &decoder, &decoded_tx).await?;
        replaying.store(false, Ordering::Relaxed);
        ctx.metrics.cluster.replayed.inc_by(replayed);
        tracing::info!(
            partition = p,
            snapshot = covered,
            replayed,
            upto = floor,
            "partition rebuilt"
        );

        // Rebuilt: now it answers.
        let serve = tokio::spawn({
            let (client, router, stop) = (ctx.client.clone(), router.clone(), serve_stop.clone());
            async move {
                if let Err(e) = crate::serve::serve_shard(client, p, router, stop).await {
                    tracing::error!(partition = p, error = %e, "serving the partition's requests");
                }
            }
        });
        started.tasks.push(serve);

        // Where the webhook engine and the event outbox go on from. From a snapshot: from its
        // own cursors, so the events after them are delivered (again, if the dead owner had
        // delivered them since: at least once, with the same ids, which receivers drop; never
        // lost). Without one (the partition's first owner died before its first snapshot),
        // nothing tells what was delivered: they start past the replayed events, which their
        // first owner delivered as it went.
        let mut webhooks_store = Store::open(&dir)?;
        webhooks_store.set_synchronous(synchronous)?;
        let mut outbox_store = Store::open(&dir)?;
        outbox_store.set_synchronous(synchronous)?;
        if covered == 0 {
            let newest = webhooks_store.skip_webhook_fan_out_to_newest()?;
            outbox_store.set_cursor(landport_sinks::outbox::CURSOR, newest)?;
        }
        let outbox_stop = CancellationToken::new();
        let outbox = tokio::spawn(landport_sinks::outbox::run(
            outbox_store,
            crate::events::NatsEvents(ctx.client.clone()),
            events_committed.clone(),
            outbox_stop.clone(),
            ctx.metrics.clone(),
        ));
        let webhooks_stop = CancellationToken::new();
        let webhooks = tokio::spawn(landport_sinks::webhooks::run(
            webhooks_store,
            settings::webhooks(config),
            events.subscribe(),
            webhooks_stop.clone(),
            ctx.metrics.clone(),
        ));

        // InfluxDB, if configured: the partition's own sink, tailing its store from its own
        // cursor (a restored snapshot's; writes of a point already there overwrite it).
        let influx = match &config.influxdb {
            Some(influx) => {
                let sink = landport_sinks::influx::InfluxSink::new(
                    settings::influx_sink(influx),
                    &dir,
                    ctx.metrics.clone(),
                )
                .context("influxdb")?;
                let stop = CancellationToken::new();
                Some((tokio::spawn(sink.run(stop.clone())), stop))
            }
            None => None,
        };

        // 4. Live, and a snapshot now and then.
        let stop = CancellationToken::new();
        let feed = Feed {
            gate: Arc::new(tokio::sync::Mutex::new(())),
            fed: Arc::new(AtomicU64::new(floor.max(covered))),
            decoded: decoded_tx,
        };
        let source = tokio::spawn(live(
            consumer,
            decoder,
            feed.clone(),
            lease.clone(),
            stop.clone(),
        ));
        let fed = feed.fed.clone();
        let snapshots = tokio::spawn(snapshots(
            ctx.clone(),
            p,
            feed,
            covered,
            lease.clone(),
            stop.clone(),
        ));
        let pipeline = started.pipeline.take().expect("spawned above");
        Ok(Shard {
            partition: p,
            lease,
            stop,
            pipeline_stop,
            source,
            pipeline,
            webhooks_stop,
            webhooks,
            outbox_stop,
            outbox,
            events_committed,
            router,
            serve_stop,
            serving: std::mem::take(&mut started.tasks),
            snapshots,
            ctx: ctx.clone(),
            fed,
            influx,
        })
    }

    /// Stops the shard: no more messages, the pipeline commits and acknowledges what it took
    /// (while the lease is valid), the webhook engine queues what was committed; then, still
    /// the owner, it saves a last snapshot, so that the next owner replays nothing.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.source.await;
        let _ = self.snapshots.await;
        self.pipeline_stop.cancel();
        match self.pipeline.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(partition = self.partition, error = %e, "shard pipeline"),
            Err(e) => {
                tracing::error!(partition = self.partition, error = %e, "shard pipeline task")
            }
        }
        self.webhooks_stop.cancel();
        self.events_committed.notify_one();
        self.outbox_stop.cancel();
        let _ = tokio::join!(self.webhooks, self.outbox);
        self.serve_stop.cancel();
        for t in self.serving {
            let _ = t.await;
        }
        if let Some((sink, stop)) = self.influx {
            stop.cancel();
            if let Ok(Err(e)) = sink.await {
                tracing::error!(partition = self.partition, error = %e, "InfluxDB sink");
            }
        }
        let (p, seq) = (self.partition, self.fed.load(Ordering::Relaxed));
        if self.lease.valid() && seq > 0 {
            let copy = self.ctx.dir(p).with_extension("snapshot");
            let (dir, to) = (self.ctx.dir(p), copy.clone());
            let copied = tokio::task::spawn_blocking(move || -> Result<()> {
                let _ = std::fs::remove_file(&to);
                Store::open(&dir)?.copy_to(&to)?;
                Ok(())
            })
            .await
            .map_err(anyhow::Error::new)
            .and_then(|r| r);
            let saved = match copied {
                Ok(()) => tokio::time::timeout(
                    Duration::from_secs(30),
                    snapshot::save(&self.ctx.snapshots, p, seq, &copy),
                )
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("NATS did not take it in 30 s"))),
                Err(e) => Err(e),
            };
            match saved {
                Ok(()) => tracing::info!(partition = p, upto = seq, "last snapshot saved"),
                Err(e) => tracing::warn!(partition = p, error = format!("{e:#}"), "last snapshot"),
            }
            let _ = std::fs::remove_file(&copy);
        }
    }

    /// Whether the shard's pipeline has ended by itself (a failure: the instance gives the
    /// partition up).
    pub fn failed(&self) -> bool {
        self.pipeline.is_finished() || self.source.is_finished()
    }
}

/// The devices partition `p` answers for: those NATS maps to it.
fn owns(p: u32, partitions: u32) -> landport_api::Owns {
    Arc::new(move |tenant: &str, device: &str| {
        crate::partition::partition(tenant, device, partitions) == p
    })
}

/// A seed for the backoff's jitter: the sub-second part of the clock is enough to keep
/// instances from retrying in step.
fn lease_seed() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// The shard's router: the single-node API over its store and read side.
fn shard_router(ctx: &ShardContext, api: landport_api::ApiState) -> axum::Router {
    let config = &ctx.config;
    let router = landport_api::router_with_api(
        landport_api::AppState {
            metrics: ctx.metrics.clone(),
            ready: Arc::new(AtomicBool::new(true)),
        },
        api,
    );
    let router = landport_api::with_webhook_policy(
        router,
        landport_api::WebhookPolicy {
            allow_private_targets: config.webhooks.allow_private_targets,
        },
    );
    let router = landport_api::with_report_settings(router, settings::reports(config));
    landport_api::request_timeout(router, config.http.request_timeout())
}

/// Replays partition `p` from after `after` (the position its snapshot covers; 0: the start
/// of the stream) up to `floor` (the last message delivered) into the pipeline, and waits until all of it is committed. Returns how many
/// messages it replayed.
async fn replay(
    ctx: &ShardContext,
    p: u32,
    after: u64,
    floor: u64,
    decoder: &Decoder,
    decoded: &mpsc::Sender<landport_pipeline::Decoded<ShardAck>>,
) -> Result<u64> {
    let mut n = 0;
    if floor > after {
        let ordered = ctx
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: source::partition_filter(p),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ..Default::default()
            })
            .await
            .context("the replay consumer")?;
        let mut messages = ordered.messages().await.context("the replay")?;
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(|e| anyhow::anyhow!("the replay: {e}"))?;
            let seq = source::sequence(&msg)?;
            if seq > floor {
                break;
            }
            let d = source::decode(decoder, &msg, ShardAck::Replayed);
            decoded
                .send(d)
                .await
                .map_err(|_| anyhow::anyhow!("the shard pipeline stopped during the replay"))?;
            n += 1;
            if seq == floor {
                break;
            }
        }
    }
    let (done, committed) = oneshot::channel();
    decoded
        .send(source::ack_only(ShardAck::Marker(done)))
        .await
        .map_err(|_| anyhow::anyhow!("the shard pipeline stopped during the replay"))?;
    committed
        .await
        .context("the shard pipeline stopped during the replay")?;
    Ok(n)
}

/// How the source and the snapshot task feed a shard's pipeline: `gate` is held while a
/// message is handed over, so holding it pauses the feed; `fed` is the stream sequence of the
/// last message handed over.
#[derive(Clone)]
struct Feed {
    gate: Arc<tokio::sync::Mutex<()>>,
    fed: Arc<AtomicU64>,
    decoded: mpsc::Sender<landport_pipeline::Decoded<ShardAck>>,
}

/// The live consumer: every message after the last one fed, each acknowledged after its
/// commit. A message delivered again (its ack was lost, or came late, or it was replayed) is
/// only acknowledged again.
async fn live(
    consumer: consumer::PullConsumer,
    decoder: Decoder,
    feed: Feed,
    lease: LeaseClock,
    stop: CancellationToken,
) {
    let mut backoff = landport_pipeline::Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(5),
        u64::from(lease_seed()),
    );
    while !stop.is_cancelled() && lease.valid() {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "partition consumer");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                next = messages.next() => next,
            };
            let Some(next) = next else { break };
            let msg = match next {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "partition consumer");
                    break;
                }
            };
            if !lease.valid() {
                return;
            }
            backoff.reset();
            let Ok(seq) = source::sequence(&msg) else {
                continue;
            };
            let _gate = feed.gate.lock().await;
            let d = if seq <= feed.fed.load(Ordering::Relaxed) {
                source::ack_only(ShardAck::Js(Box::new(msg)))
            } else {
                feed.fed.store(seq, Ordering::Relaxed);
                let mut d = source::decode(&decoder, &msg, ShardAck::Replayed);
                d.ack = Some(ShardAck::Js(Box::new(msg)));
                d
            };
            if feed.decoded.send(d).await.is_err() {
                return;
            }
        }
    }
}

/// Saves partition `p`'s snapshot every `cluster.snapshot_seconds` while the lease holds
/// (see [`crate::snapshot`]), when messages came since the last one.
async fn snapshots(
    ctx: ShardContext,
    p: u32,
    feed: Feed,
    mut covered: u64,
    lease: LeaseClock,
    stop: CancellationToken,
) {
    let every = Duration::from_secs(
        ctx.config
            .cluster
            .as_ref()
            .map_or(60, |c| c.snapshot_seconds),
    );
    let copy = ctx.dir(p).with_extension("snapshot");
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if !lease.valid() || feed.fed.load(Ordering::Relaxed) == covered {
            continue;
        }
        let began = tokio::time::Instant::now();
        let seq = match copy_committed(&ctx, p, &feed, &copy).await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::warn!(
                    partition = p,
                    error = format!("{e:#}"),
                    "copying the partition"
                );
                continue;
            }
        };
        if !lease.valid() {
            continue;
        }
        match snapshot::save(&ctx.snapshots, p, seq, &copy).await {
            Ok(()) => {
                covered = seq;
                tracing::debug!(
                    partition = p,
                    upto = seq,
                    ms = began.elapsed().as_millis() as u64,
                    "partition snapshot saved"
                );
            }
            Err(e) => tracing::warn!(partition = p, error = format!("{e:#}"), "saving a snapshot"),
        }
        let _ = std::fs::remove_file(&copy);
    }
}

/// Pauses the feed, waits until everything fed is committed, copies the store to `copy`, and
/// returns the stream sequence the copy covers.
async fn copy_committed(ctx: &ShardContext, p: u32, feed: &Feed, copy: &Path) -> Result<u64> {
    let _paused = feed.gate.lock().await;
    let seq = feed.fed.load(Ordering::Relaxed);
    let (done, committed) = oneshot::channel();
    feed.decoded
        .send(source::ack_only(ShardAck::Marker(done)))
        .await
        .map_err(|_| anyhow::anyhow!("the shard pipeline stopped"))?;
    committed.await.context("the shard pipeline stopped")?;
    let _ = std::fs::remove_file(copy);
    let (dir, copy) = (ctx.dir(p), copy.to_owned());
    tokio::task::spawn_blocking(move || -> Result<()> {
        let store = Store::open(&dir)?;
        store.copy_to(&copy)?;
        Ok(())
    })
    .await
    .context("the copy's thread")??;
    Ok(seq)
}
