//! Partition snapshots in NATS: a copy of a shard's store and the stream position it covers,
//! so that a takeover restores the newest and replays only the stream after it, instead of
//! the partition's whole retained stream.
//!
//! The owner of a partition saves one every `cluster.snapshot_seconds`: it stops feeding its
//! pipeline, waits until everything fed is committed (the stream sequence `S` of the last
//! message fed is then covered), copies the store (`VACUUM INTO`: one read transaction),
//! feeds again, and uploads the copy to the JetStream object store `LANDPORT_SNAPSHOTS` as
//! `p{n}` with `S` in its metadata (replacing the previous one). The copy holds everything a
//! single node keeps: history, registry with its applied log position, the tracker's own
//! snapshots, events, webhook deliveries and cursors; a new owner opens it as a store and
//! recovers from it as a single node does after `kill -9`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, object_store};
use tokio::io::AsyncWriteExt;

/// The object store of partition snapshots.
pub const BUCKET: &str = "LANDPORT_SNAPSHOTS";
/// The metadata key of the stream sequence a snapshot covers.
const SEQ: &str = "stream_seq";

/// The name of partition `p`'s snapshot.
pub fn object_name(p: u32) -> String {
    format!("p{p}")
}

/// Opens the bucket, creating it if absent.
pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<object_store::ObjectStore> {
    if let Ok(store) = js.get_object_store(BUCKET).await {
        return Ok(store);
    }
    match js
        .create_object_store(object_store::Config {
            bucket: BUCKET.to_owned(),
            description: Some("Landport's partition snapshots".to_owned()),
            num_replicas: replicas.max(1),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
    {
        Ok(store) => Ok(store),
        // Another instance created it in between.
        Err(created) => js
            .get_object_store(BUCKET)
            .await
            .map_err(|_| anyhow::Error::new(created).context("creating the snapshot bucket")),
    }
}

/// Uploads `file` as partition `p`'s snapshot covering the stream up to `seq`.
pub async fn save(bucket: &object_store::ObjectStore, p: u32, seq: u64, file: &Path) -> Result<()> {
    let mut data = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    bucket
        .put(
            object_store::ObjectMetadata {
                name: object_name(p),
                description: Some(format!("partition {p} up to stream sequence {seq}")),
                metadata: HashMap::from([(SEQ.to_owned(), seq.to_string())]),
                ..Default::default()
            },
            &mut data,
        )
        .await
        .map_err(|e| anyhow::anyhow!("uploading partition {p}'s snapshot: {e}"))?;
    Ok(())
}

/// Downloads partition `p`'s newest snapshot into `file`, returning the stream sequence it
/// covers; `None` when there is none.
pub async fn restore(
    bucket: &object_store::ObjectStore,
    p: u32,
    file: &Path,
) -> Result<Option<u64>> {
    let info = match bucket.info(object_name(p)).await {
        Ok(info) if !info.deleted => info,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::anyhow!("reading partition {p}'s snapshot: {e}")),
    };
    let seq: u64 = info
        .metadata
        .get(SEQ)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("partition {p}'s snapshot has no {SEQ}"))?;
    let mut object = bucket
        .get(object_name(p))
        .await
        .map_err(|e| anyhow::anyhow!("downloading partition {p}'s snapshot: {e}"))?;
    let mut out = tokio::fs::File::create(file)
        .await
        .with_context(|| format!("creating {}", file.display()))?;
    let copied = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::io::copy(&mut object, &mut out),
    )
    .await
    .context("downloading a partition snapshot took over 10 minutes")?
    .with_context(|| format!("downloading partition {p}'s snapshot"))?;
    out.flush().await?;
    out.sync_all().await?;
    tracing::info!(
        partition = p,
        bytes = copied,
        upto = seq,
        "partition snapshot restored"
    );
    Ok(Some(seq))
}
