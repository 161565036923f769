//! Who owns which partition: leases in JetStream KV.
//!
//! The bucket `LANDPORT_LEASES` has `max_age` = `cluster.lease_seconds`, so an entry that is
//! not renewed in time disappears on its own: key `p{n}` -> the id of the instance that owns
//! partition `n`. Taken with `create` (fails if someone holds it), renewed with `update` at the
//! revision this instance last wrote (fails if it changed hands), given back with a delete.
//! The leases are read one key at a time (`p0`..`p{N-1}`, direct gets that any replica
//! answers), not listed: a listing needs a consumer, which JetStream cannot create while it
//! elects leaders after a node died.
//!
//! Which instances are alive is asked over core NATS, not JetStream: every instance answers
//! `lpinst.who` with its id, and a tick gathers the answers for a moment. It only sets the
//! shares; who may act as an owner is the leases' business alone.
//!
//! Every instance runs the same [`plan`] over what it sees: the live instances share the
//! partitions evenly (in the order of their ids, the first `partitions % live` get one more),
//! an instance under its share claims free partitions, and one over it gives back its excess
//! once every partition has an owner (so a joining instance gets its share from the others,
//! and none is left unowned while it moves). A lease that cannot be renewed is lost at once:
//! its shard stops taking and acknowledging messages ([`Lease::valid_until`]) before the
//! bucket could let another instance claim it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

/// The subject every instance answers with its id.
pub const WHO_SUBJECT: &str = "lpinst.who";
/// How long a tick gathers the instances' answers.
const WHO_WAIT: Duration = Duration::from_millis(300);
/// How long one KV operation of a tick may take.
const KV_TIMEOUT: Duration = Duration::from_secs(2);
/// The bucket of partition leases.
pub const LEASES_BUCKET: &str = "LANDPORT_LEASES";

/// The key of partition `p`'s lease.
pub fn lease_key(p: u32) -> String {
    format!("p{p}")
}

/// What one instance sees at a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub partitions: u32,
    /// This instance's id.
    pub me: String,
    /// The live instances (those that answered), this one among them.
    pub live: BTreeSet<String>,
    /// Partition -> the instance holding its lease.
    pub owners: BTreeMap<u32, String>,
}

/// What an instance does at a tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Free partitions to try to take.
    pub claim: Vec<u32>,
    /// Partitions of its own to give back.
    pub release: Vec<u32>,
}

/// This instance's share of the partitions: `partitions / live`, one more for the first
/// `partitions % live` instances in id order.
pub fn share(view: &View) -> usize {
    let n = view.live.len().max(1);
    let p = view.partitions as usize;
    let rank = view
        .live
        .iter()
        .position(|i| *i == view.me)
        .unwrap_or(n - 1);
    p / n + usize::from(rank < p % n)
}

/// What to do at this tick (see the module docs). Claims start at a place that depends on the
/// instance's rank, so instances starting together mostly try different partitions.
pub fn plan(view: &View) -> Plan {
    let target = share(view);
    let mine: Vec<u32> = view
        .owners
        .iter()
        .filter(|(_, o)| **o == view.me)
        .map(|(p, _)| *p)
        .collect();
    let mut plan = Plan::default();
    if mine.len() < target {
        let n = view.partitions;
        let rank = view.live.iter().position(|i| *i == view.me).unwrap_or(0) as u32;
        let start = if view.live.is_empty() {
            0
        } else {
            rank * n / view.live.len() as u32
        };
        plan.claim = (0..n)
            .map(|i| (start + i) % n)
            .filter(|p| !view.owners.contains_key(p))
            .take(target - mine.len())
            .collect();
    } else if mine.len() > target && view.owners.len() == view.partitions as usize {
        // Every partition is held: give back the excess for an instance under its share.
        plan.release = mine[target..].to_vec();
    }
    plan
}

/// A lease this instance holds.
#[derive(Debug, Clone)]
pub struct Lease {
    pub partition: u32,
    revision: u64,
    /// Until when this instance may act as the owner: a renewal sent at `t` that succeeds
    /// makes the lease certain until `t + ttl` on the server's clock; two thirds of that is
    /// kept as the margin for clock rates and message delays.
    pub valid_until: Instant,
}

/// The lease bucket, and this instance's leases.
pub struct Leases {
    client: async_nats::Client,
    /// Answers [`WHO_SUBJECT`] while this instance runs.
    presence: tokio::task::JoinHandle<()>,
    leases: kv::Store,
    me: String,
    partitions: u32,
    ttl: Duration,
    held: BTreeMap<u32, Lease>,
}

/// What a tick changed.
#[derive(Debug, Default)]
pub struct Changes {
    /// Partitions now owned by this instance: start their shards.
    pub gained: Vec<Lease>,
    /// Partitions this instance no longer owns (a renewal failed): stop their shards now.
    pub lost: Vec<u32>,
    /// Partitions to give back: stop their shards gracefully, then [`Leases::release`].
    pub to_release: Vec<u32>,
    /// The leases still held, renewed: their new validity.
    pub renewed: Vec<Lease>,
}

impl Leases {
    /// Opens (creating if absent) the lease bucket, and starts answering [`WHO_SUBJECT`].
    pub async fn open(
        client: &async_nats::Client,
        js: &jetstream::Context,
        me: &str,
        partitions: u32,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Leases> {
        let leases = open_bucket(
            js,
            kv::Config {
                bucket: LEASES_BUCKET.to_owned(),
                history: 1,
                max_age: ttl,
                num_replicas: replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        let mut who = client
            .subscribe(WHO_SUBJECT)
            .await
            .context("subscribing to the instances' roll call")?;
        let presence = tokio::spawn({
            let (client, me) = (client.clone(), Bytes::from(me.to_owned()));
            async move {
                while let Some(msg) = who.next().await {
                    if let Some(reply) = msg.reply {
                        let _ = client.publish(reply, me.clone()).await;
                    }
                }
            }
        });
        Ok(Leases {
            client: client.clone(),
            presence,
            leases,
            me: me.to_owned(),
            partitions,
            ttl,
            held: BTreeMap::new(),
        })
    }

    /// The validity a successful write sent at `sent` gives.
    fn valid_from(&self, sent: Instant) -> Instant {
        sent + self.ttl * 2 / 3
    }

    /// One tick: heartbeat, renew what is held, look, plan, claim. NATS failing part of it
    /// (a JetStream leader moving after a node died) only skips that part: a lease whose
    /// renewal timed out is kept, and its shard stops acknowledging when its validity runs out
    /// ([`Lease::valid_until`]); it is lost only when the bucket says another revision holds
    /// it (someone else took it, or it lapsed).
    pub async fn tick(&mut self) -> Changes {
        let mut changes = Changes::default();

        // Renew first: a lease about to lapse matters more than a free one.
        let held: Vec<u32> = self.held.keys().copied().collect();
        for p in held {
            let sent = Instant::now();
            let rev = self.held[&p].revision;
            let update = self
                .leases
                .update(lease_key(p), Bytes::from(self.me.clone()), rev);
            match tokio::time::timeout(KV_TIMEOUT, update)
                .await
                .unwrap_or_else(|_| Err(kv::UpdateErrorKind::TimedOut.into()))
            {
                Ok(revision) => {
                    let lease = Lease {
                        partition: p,
                        revision,
                        valid_until: self.valid_from(sent),
                    };
                    self.held.insert(p, lease.clone());
                    changes.renewed.push(lease);
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    tracing::warn!(partition = p, error = %e, "lease lost");
                    self.held.remove(&p);
                    changes.lost.push(p);
                }
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "renewing a lease (kept while valid)");
                }
            }
        }

        let view = match self.view().await {
            Ok(view) => view,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "reading the leases");
                return changes;
            }
        };
        let plan = plan(&view);
        for p in plan.claim {
            let sent = Instant::now();
            let create = self
                .leases
                .create(lease_key(p), Bytes::from(self.me.clone()));
            if let Ok(Ok(revision)) = tokio::time::timeout(KV_TIMEOUT, create).await {
                let lease = Lease {
                    partition: p,
                    revision,
                    valid_until: self.valid_from(sent),
                };
                self.held.insert(p, lease.clone());
                changes.gained.push(lease);
            }
        }
        changes.to_release = plan.release;
        changes
    }

    /// The live instances and the lease holders, as NATS says now.
    pub async fn view(&self) -> Result<View> {
        let live = self.roll_call().await?;
        let mut owners = BTreeMap::new();
        for p in 0..self.partitions {
            let get = self.leases.get(lease_key(p));
            let owner = tokio::time::timeout(KV_TIMEOUT, get)
                .await
                .context("reading a lease: timed out")?
                .context("reading a lease")?;
            if let Some(owner) = owner {
                owners.insert(p, String::from_utf8_lossy(&owner).into_owned());
            }
        }
        // What this instance holds is certain even if a read raced a renewal.
        for p in self.held.keys() {
            owners.insert(*p, self.me.clone());
        }
        Ok(View {
            partitions: self.partitions,
            me: self.me.clone(),
            live,
            owners,
        })
    }

    /// The ids of the instances that answer [`WHO_SUBJECT`] within [`WHO_WAIT`], this one
    /// always among them.
    async fn roll_call(&self) -> Result<BTreeSet<String>> {
        let inbox = self.client.new_inbox();
        let mut answers = self
            .client
            .subscribe(inbox.clone())
            .await
            .context("the roll call")?;
        self.client
            .publish_with_reply(WHO_SUBJECT, inbox, Bytes::new())
            .await
            .context("the roll call")?;
        let mut live = BTreeSet::from([self.me.clone()]);
        let until = Instant::now() + WHO_WAIT;
        while let Ok(Some(msg)) = tokio::time::timeout_at(until, answers.next()).await {
            if let Ok(id) = std::str::from_utf8(&msg.payload) {
                live.insert(id.to_owned());
            }
        }
        let _ = answers.unsubscribe().await;
        Ok(live)
    }

    /// Gives partition `p` back (its shard has stopped): deleted at the revision held, so a
    /// lease that already changed hands is left alone.
    pub async fn release(&mut self, p: u32) {
        if let Some(lease) = self.held.remove(&p) {
            let delete = self
                .leases
                .delete_expect_revision(lease_key(p), Some(lease.revision));
            match tokio::time::timeout(KV_TIMEOUT, delete).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(partition = p, error = %e, "giving back a lease"),
                // NATS is away: the lease lapses by itself.
                Err(_) => tracing::warn!(partition = p, "giving back a lease: timed out"),
            }
        }
    }

    /// Gives every lease back and stops answering the roll call (a clean stop: the others
    /// take over at once instead of after the leases lapse).
    pub async fn release_all(&mut self) {
        self.presence.abort();
        let held: Vec<u32> = self.held.keys().copied().collect();
        for p in held {
            self.release(p).await;
            if !matches!(
                self.client.connection_state(),
                async_nats::connection::State::Connected
            ) {
                // Not connected: the rest would time out one by one; they lapse by
                // themselves.
                self.held.clear();
                break;
            }
        }
    }

    /// The partitions held now.
    pub fn held(&self) -> impl Iterator<Item = u32> + '_ {
        self.held.keys().copied()
    }
}

/// Opens the bucket, creating it if absent. The stream under it is created here, as a KV
/// bucket's stream (what `create_key_value` would make), because async-nats's
/// `create_key_value` first reads the account's info, whose answer from a 2.9 server it cannot
/// parse; `get_key_value` only needs the stream.
async fn open_bucket(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store> {
    let name = config.bucket.clone();
    if let Ok(store) = js.get_key_value(&name).await {
        return Ok(store);
    }
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: config.history.max(1),
        max_age: config.max_age,
        storage: config.storage,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: config.num_replicas.max(1),
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating the KV bucket {name}"))?;
    js.get_key_value(&name)
        .await
        .with_context(|| format!("opening the KV bucket {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(partitions: u32, me: &str, live: &[&str], owners: &[(u32, &str)]) -> View {
        View {
            partitions,
            me: me.to_owned(),
            live: live.iter().map(|s| s.to_string()).collect(),
            owners: owners.iter().map(|(p, o)| (*p, o.to_string())).collect(),
        }
    }

    /// Runs every instance's plan in turn, claims and releases applied as the buckets would,
    /// until nothing changes; returns the owners.
    fn settle(
        partitions: u32,
        live: &[&str],
        mut owners: BTreeMap<u32, String>,
    ) -> BTreeMap<u32, String> {
        for _ in 0..100 {
            let before = owners.clone();
            for me in live {
                let v = View {
                    partitions,
                    me: me.to_string(),
                    live: live.iter().map(|s| s.to_string()).collect(),
                    owners: owners.clone(),
                };
                let plan = plan(&v);
                for p in plan.release {
                    owners.remove(&p);
                }
                for p in plan.claim {
                    owners.entry(p).or_insert_with(|| me.to_string());
                }
            }
            if owners == before {
                return owners;
            }
        }
        panic!("did not settle: {owners:?}");
    }

    fn counts(owners: &BTreeMap<u32, String>) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for o in owners.values() {
            *c.entry(o.clone()).or_default() += 1;
        }
        c
    }

    #[test]
    fn shares_add_up_to_the_partitions_and_differ_by_at_most_one() {
        for partitions in [1, 4, 16, 17, 100] {
            for n in 1..=7 {
                let live: Vec<String> = (0..n).map(|i| format!("i{i}")).collect();
                let refs: Vec<&str> = live.iter().map(String::as_str).collect();
                let shares: Vec<usize> = refs
                    .iter()
                    .map(|me| share(&view(partitions, me, &refs, &[])))
                    .collect();
                assert_eq!(shares.iter().sum::<usize>(), partitions as usize);
                let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(max - min <= 1, "{partitions} over {n}: {shares:?}");
            }
        }
    }

    #[test]
    fn three_instances_starting_together_own_every_partition_once_and_evenly() {
        let owners = settle(16, &["a", "b", "c"], BTreeMap::new());
        assert_eq!(owners.len(), 16);
        let c = counts(&owners);
        assert_eq!(c.values().copied().collect::<Vec<_>>(), [6, 5, 5]);
    }

    #[test]
    fn a_dead_instances_partitions_go_to_the_others_once_its_leases_lapse() {
        let owners = settle(16, &["a", "b", "c"], BTreeMap::new());
        // "b" died: its heartbeat and leases expire; a and c see only each other.
        let after: BTreeMap<u32, String> = owners.into_iter().filter(|(_, o)| o != "b").collect();
        let owners = settle(16, &["a", "c"], after);
        assert_eq!(owners.len(), 16);
        assert_eq!(
            counts(&owners).values().copied().collect::<Vec<_>>(),
            [8, 8]
        );
    }

    #[test]
    fn a_joining_instance_gets_its_share_from_the_others() {
        let owners = settle(16, &["a", "b"], BTreeMap::new());
        let owners = settle(16, &["a", "b", "c"], owners);
        assert_eq!(owners.len(), 16);
        let c = counts(&owners);
        assert_eq!(c.values().copied().collect::<Vec<_>>(), [6, 5, 5], "{c:?}");
    }

    #[test]
    fn nothing_is_given_back_while_a_partition_is_unowned() {
        // a holds 3 of 4 with b live and partition 3 free: a keeps its three, b claims 3.
        let v = view(4, "a", &["a", "b"], &[(0, "a"), (1, "a"), (2, "a")]);
        assert_eq!(plan(&v), Plan::default());
        let v = view(4, "b", &["a", "b"], &[(0, "a"), (1, "a"), (2, "a")]);
        assert_eq!(plan(&v).claim, [3]);
    }

    #[test]
    fn a_lease_held_by_an_instance_without_a_heartbeat_is_not_claimed_before_it_lapses() {
        let v = view(2, "a", &["a"], &[(1, "ghost")]);
        assert_eq!(plan(&v).claim, [0]);
    }
}
