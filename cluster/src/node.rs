//! One Landport instance in cluster mode (`landport run` with `[cluster]`): connects to NATS,
//! makes sure the stream and buckets exist, takes its share of the partitions' leases and runs
//! a [`Shard`] for each, and serves the HTTP front that answers any request from any
//! partition.
//!
//! The lease loop ticks every third of `cluster.lease_seconds`: it renews what it holds (a
//! lease it cannot renew is lost: its shard stops at once), claims free partitions up to its
//! share (a shard is built for each, in the background, so renewals go on meanwhile), and
//! gives back its excess when another instance has joined (the shard is stopped gracefully,
//! then the lease deleted, so the next owner rebuilds from a partition that is all
//! acknowledged). On SIGINT/SIGTERM every shard stops gracefully and every lease is given back,
//! so the others take over at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream;
use landport_config::{ClusterConfig, Config};
use landport_pipeline::metrics::Metrics;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::leases::Leases;
use crate::registry::{Replicator, ShardApplier};
use crate::shard::{Shard, ShardContext};
use crate::source::{self, LeaseClock};

/// How long the instance keeps trying to reach NATS at start before it gives up.
const CONNECT_FOR: Duration = Duration::from_secs(30);

/// Connects to the NATS cluster (any of the URLs; the client fails over among them and
/// reconnects for ever once connected).
pub async fn connect(cluster: &ClusterConfig) -> Result<async_nats::Client> {
    let urls: Vec<async_nats::ServerAddr> = cluster
        .nats_urls()
        .iter()
        .map(|u| u.parse())
        .collect::<Result<_, _>>()
        .context("cluster.nats_url")?;
    let deadline = tokio::time::Instant::now() + CONNECT_FOR;
    loop {
        let attempt = async_nats::ConnectOptions::new()
            .name(format!("landport-{}", cluster.instance_id))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(urls.clone());
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(client)) => {
                if client.connection_state() == async_nats::connection::State::Connected {
                    return Ok(client);
                }
                // Connecting in the background: wait for it a moment.
                for _ in 0..50 {
                    if client.connection_state() == async_nats::connection::State::Connected {
                        return Ok(client);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if tokio::time::Instant::now() > deadline {
                    anyhow::bail!("cannot reach NATS at {}", cluster.nats_url);
                }
            }
            Ok(Err(e)) if tokio::time::Instant::now() > deadline => {
                return Err(e)
                    .with_context(|| format!("connecting to NATS at {}", cluster.nats_url));
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Runs `step` until it succeeds, for at most [`CONNECT_FOR`] (with a growing pause between
/// tries); its last error, naming `what`, after that.
async fn retrying<T, F: Future<Output = Result<T>>>(
    what: &str,
    mut step: impl FnMut() -> F,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + CONNECT_FOR;
    let mut pause = Duration::from_millis(200);
    loop {
        match step().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(error = format!("{e:#}"), "setting up {what}: trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.context(format!("setting up {what}"))),
        }
    }
}

/// Replicas of the streams and buckets: `cluster.replicas`, or 3 when the NATS cluster has at
/// least 3 servers (the client hears of every server's client URL), else 1.
fn replicas(cluster: &ClusterConfig, client: &async_nats::Client) -> usize {
    if let Some(r) = cluster.replicas {
        return usize::from(r);
    }
    let servers = client.server_info().connect_urls.len().max(1);
    if servers >= 3 { 3 } else { 1 }
}

/// Runs the instance until `signal`.
pub async fn run(config: Config, signal: impl Future<Output = ()>) -> Result<()> {
    let config = Arc::new(config);
    let cluster = config
        .cluster
        .clone()
        .context("cluster mode needs [cluster]")?;
    let metrics = Metrics::new();
    let client = connect(&cluster).await?;
    let js = jetstream::new(client.clone());
    let replicas = replicas(&cluster, &client);
    let retention = Duration::from_secs(u64::from(config.storage.retention_days) * 86_400);
    // What Landport keeps in NATS, created by the first instance to come. Instances started
    // together ask JetStream at once, which may time out while it is busy: each step is tried
    // again for a while.
    let stream = retrying("the stream LANDPORT", || {
        source::ensure_stream(&js, retention, replicas)
    })
    .await?;
    let ttl = Duration::from_secs(cluster.lease_seconds);
    let mut leases = retrying("the lease bucket", || {
        Leases::open(
            &client,
            &js,
            &cluster.instance_id,
            cluster.partitions,
            ttl,
            replicas,
        )
    })
    .await?;
    retrying("the registry log", || {
        crate::registry::ensure_stream(&js, replicas)
    })
    .await?;
    let replicator = Arc::new(
        Replicator::start(
            client.clone(),
            js.clone(),
            &cluster.instance_id,
            cluster.partitions,
        )
        .await
        .context("the registry log")?,
    );
    tracing::info!(
        instance = cluster.instance_id,
        partitions = cluster.partitions,
        replicas,
        nats = cluster.nats_url,
        "cluster mode: connected to NATS"
    );
    let partitions = cluster.partitions;
    let snapshots = retrying("the snapshot bucket", || {
        crate::snapshot::open(&js, replicas)
    })
    .await?;
    let ctx = ShardContext {
        config: config.clone(),
        client: client.clone(),
        js: js.clone(),
        stream,
        snapshots,
        metrics: metrics.clone(),
    };

    // The HTTP front.
    let ready = Arc::new(AtomicBool::new(true));
    let map = landport_api::web::MapSettings {
        tile_url: config.map.tile_url.clone(),
        tile_attribution: config.map.tile_attribution.clone(),
    };
    let local = landport_api::router(landport_api::AppState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    })
    .merge(landport_api::openapi_router())
    .merge(crate::front::map_pages(
        map,
        &config.storage.path.join("front"),
    )?);
    let front = crate::front::router(
        client.clone(),
        cluster.partitions,
        replicator.clone(),
        crate::front::FrontSettings {
            timeout: Duration::from_millis(cluster.request_timeout_ms),
            local: Some(local),
            sse_connections: config.limits.sse_connections,
            partition_of: Some(Arc::new(move |tenant: &str, device: &str| {
                crate::partition::partition(tenant, device, partitions)
            })),
            ..Default::default()
        },
    );
    let front = landport_api::request_timeout(front, config.http.request_timeout());
    let https = match (config.http.tls, config.tls.files()) {
        (true, Some((cert, key))) => Some(landport_api::tls::acceptor(cert, key, true)?),
        _ => None,
    };
    let listener = landport_api::bind(config.http.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "HTTP up");
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(landport_api::serve_with_tls(
        listener,
        front,
        http_stop.clone(),
        landport_api::ServeSettings {
            header_read_timeout: config.http.header_read_timeout(),
            max_connections: config.http.max_connections,
        },
        https,
    ));

    let mut shards: HashMap<u32, Shard> = HashMap::new();
    let mut clocks: HashMap<u32, LeaseClock> = HashMap::new();
    let mut starting: JoinSet<(u32, Result<Shard>)> = JoinSet::new();
    let mut stopping: JoinSet<u32> = JoinSet::new();
    let mut releasing: std::collections::HashSet<u32> = Default::default();
    let mut tick = tokio::time::interval((ttl / 3).max(Duration::from_millis(500)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = tick.tick() => {
                let changes = leases.tick().await;
                for lease in changes.renewed {
                    if let Some(c) = clocks.get(&lease.partition) {
                        c.extend(lease.valid_until);
                    }
                }
                for p in changes.lost {
                    metrics.cluster.leases_lost.inc();
                    if let Some(c) = clocks.remove(&p) {
                        c.end();
                    }
                    if let Some(shard) = shards.remove(&p) {
                        stopping.spawn(async move {
                            shard.stop().await;
                            p
                        });
                    }
                }
                for lease in changes.gained {
                    let p = lease.partition;
                    let clock = LeaseClock::new(lease.valid_until);
                    clocks.insert(p, clock.clone());
                    tracing::info!(partition = p, "lease taken: rebuilding the partition");
                    let ctx = ctx.clone();
                    starting.spawn(async move {
                        let began = tokio::time::Instant::now();
                        // Its own task, so that a panic (async-nats unwraps inside its object
                        // store's download) is this partition's error, not a lost partition.
                        let metrics = ctx.metrics.clone();
                        let started = tokio::spawn(async move {
                            start_shard(&ctx, p, clock).await
                        })
                        .await
                        .unwrap_or_else(|e| {
                            Err(anyhow::anyhow!("building the partition failed: {e}"))
                        });
                        metrics
                            .cluster
                            .takeover_seconds
                            .observe(began.elapsed().as_secs_f64());
                        (p, started)
                    });
                }
                for p in changes.to_release {
                    if releasing.contains(&p) {
                        continue;
                    }
                    if let Some(shard) = shards.remove(&p) {
                        releasing.insert(p);
                        tracing::info!(partition = p, "giving the partition to a joining instance");
                        stopping.spawn(async move {
                            shard.stop().await;
                            p
                        });
                    }
                }
                // A shard whose pipeline failed gives its partition up.
                let failed: Vec<u32> =
                    shards.iter().filter(|(_, s)| s.failed()).map(|(p, _)| *p).collect();
                for p in failed {
                    if let Some(shard) = shards.remove(&p) {
                        tracing::error!(partition = p, "shard failed: giving the partition up");
                        releasing.insert(p);
                        stopping.spawn(async move {
                            shard.stop().await;
                            p
                        });
                    }
                }
                metrics.cluster.partitions_live.set(shards.len() as i64);
                metrics.mqtt_connected.set(i64::from(
                    client.connection_state() == async_nats::connection::State::Connected,
                ));
            }
            Some(done) = starting.join_next() => {
                let Ok((p, started)) = done else { continue };
                match started {
                    Ok(shard) if clocks.contains_key(&p) => {
                        tracing::info!(partition = p, "partition live");
                        shards.insert(p, shard);
                        metrics.cluster.partitions_live.set(shards.len() as i64);
                    }
                    Ok(shard) => {
                        // The lease lapsed while it was being built.
                        stopping.spawn(async move {
                            shard.stop().await;
                            p
                        });
                    }
                    Err(e) => {
                        tracing::error!(partition = p, error = format!("{e:#}"), "building the partition");
                        clocks.remove(&p);
                        leases.release(p).await;
                    }
                }
            }
            Some(done) = stopping.join_next() => {
                if let Ok(p) = done
                    && releasing.remove(&p)
                {
                    clocks.remove(&p);
                    leases.release(p).await;
                }
            }
        }
    }

    tracing::info!("shutting down: stopping the shards and giving their partitions back");
    ready.store(false, Ordering::Relaxed);
    starting.abort_all();
    for (_, shard) in shards.drain() {
        stopping.spawn(async move {
            let p = shard.partition;
            shard.stop().await;
            p
        });
    }
    while stopping.join_next().await.is_some() {}
    leases.release_all().await;
    http_stop.cancel();
    let _ = http.await;
    let _ = client.flush().await;
    tracing::info!("stopped");
    Ok(())
}

/// Builds and starts partition `p`'s shard, with its registry applier.
async fn start_shard(ctx: &ShardContext, p: u32, clock: LeaseClock) -> Result<Shard> {
    let (client, js) = (ctx.client.clone(), ctx.js.clone());
    Shard::start(
        ctx,
        p,
        clock,
        async move |router: axum::Router, dir: &std::path::Path, stop: CancellationToken| {
            let applier = ShardApplier::start(client, js, p, dir, router, stop);
            applier.caught_up().await?;
            Ok(applier.into_task())
        },
    )
    .await
}
