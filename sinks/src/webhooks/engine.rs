//! The delivery engine's driver: one task that owns a store connection (used on blocking
//! threads, one short batch of work per turn of its loop) and spawns one task per attempt.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use landport_pipeline::metrics::{Metrics, WebhookLabel};
use landport_store::{
    AttemptOutcome, AttemptRecord, DueDelivery, PendingStats, Store, StoreError, WebhookTarget,
    check_target,
};
use landport_tracker::Event;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::resolve::GuardedResolver;
use super::schedule::after_failure;
use super::sign::signature_header;

/// Events read per fan-out transaction.
const FANOUT_PAGE: usize = 1_000;
/// The engine looks at the store at least this often (replays and retries queued by the API,
/// and retries coming due, need no wake-up).
const POLL: Duration = Duration::from_secs(1);
/// The per-webhook gauges are refreshed this often.
const STATS_EVERY: Duration = Duration::from_secs(2);
/// Done deliveries older than `keep_done` are pruned this often.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// After a stop, attempts in flight get this long to finish.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How much of a receiver's answer is kept in `last_error`.
const ERROR_MAX_CHARS: usize = 300;

/// How the engine runs (from the config's `[webhooks]`; the engine has no defaults of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// How long a delivery is retried after it was queued.
    pub retry_window: Duration,
    /// Loopback, private, link-local and metadata targets and `http://` allowed (tests, labs).
    pub allow_private_targets: bool,
    /// Attempts in flight at once, in all.
    pub max_concurrency: usize,
    /// Attempts in flight at once per webhook.
    pub max_concurrency_per_webhook: usize,
    /// A receiver's time to answer.
    pub timeout: Duration,
    /// Delivered and failed deliveries are kept this long (the event retention).
    pub keep_done: Duration,
}

/// The HTTP client of the deliveries: the guarded resolver, no redirects, no proxy, the
/// timeout for the whole exchange.
pub fn client(settings: &WebhookSettings) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: settings.allow_private_targets,
        }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .pool_max_idle_per_host(settings.max_concurrency_per_webhook)
        .user_agent(concat!("Landport-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// An attempt's result, as its task returns it.
struct Finished {
    delivery: DueDelivery,
    at_ms: i64,
    status: Option<u16>,
    error: Option<String>,
}

/// What one turn asks of the store.
struct TurnIn {
    fan_out: bool,
    results: Vec<AttemptRecord>,
    in_flight: HashSet<i64>,
    busy: HashMap<String, usize>,
    free: usize,
    per_webhook: usize,
    /// Which webhook is served first this turn (rotates, so none starves the others).
    first: usize,
    now_ms: i64,
    stats: bool,
    prune_before: Option<i64>,
}

/// What the store answered.
#[derive(Default)]
struct TurnOut {
    targets: Vec<WebhookTarget>,
    due: Vec<DueDelivery>,
    next_due: Option<i64>,
    stats: Option<Vec<PendingStats>>,
}

/// One turn's store work, on a blocking thread: record outcomes, fan out new events, pick the
/// due deliveries each webhook has slots for, and find when to look again.
fn turn(store: &mut Store, t: TurnIn) -> Result<TurnOut, StoreError> {
    if !t.results.is_empty() {
        store.record_webhook_attempts(&t.results)?;
    }
    let targets = store.webhook_targets()?;
    if t.fan_out && !targets.is_empty() {
        loop {
            let f = store.webhook_fan_out(&targets, FANOUT_PAGE, t.now_ms)?;
            if f.events < FANOUT_PAGE {
                break;
            }
        }
    }
    let mut out = TurnOut::default();
    let mut free = t.free;
    let n = targets.len();
    for i in 0..n {
        if free == 0 {
            break;
        }
        let target = &targets[(t.first + i) % n];
        let slots = t
            .per_webhook
            .saturating_sub(t.busy.get(&target.id).copied().unwrap_or(0))
            .min(free);
        if slots == 0 {
            continue;
        }
        let due = store
            .due_webhook_deliveries(&target.id, t.now_ms, slots, &|id| t.in_flight.contains(&id))?;
        free -= due.len();
        out.due.extend(due);
    }
    out.next_due = store.next_webhook_due(t.now_ms)?;
    if t.stats {
        out.stats = Some(store.webhook_pending_stats()?);
    }
    if let Some(before) = t.prune_before {
        let n = store.prune_webhook_deliveries(before)?;
        if n > 0 {
            tracing::info!(deleted = n, "pruned old webhook deliveries");
        }
    }
    out.targets = targets;
    Ok(out)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs the engine until `stop`: fans out every event stored after its cursor, then each
/// batch the pipeline commits (`wake`: the pipeline's stream of committed events), and
/// delivers what is due. After `stop` it fans out once more (so what the last commit stored
/// is queued) and gives attempts in flight [`STOP_GRACE`]; unfinished ones stay pending.
pub async fn run(
    store: Store,
    settings: WebhookSettings,
    mut wake: broadcast::Receiver<Arc<Event>>,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let client = match client(&settings) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks are off");
            return;
        }
    };
    let store = Arc::new(Mutex::new(store));
    let mut targets: HashMap<String, Arc<WebhookTarget>> = HashMap::new();
    let mut in_flight: HashSet<i64> = HashSet::new();
    let mut busy: HashMap<String, usize> = HashMap::new();
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut results: Vec<AttemptRecord> = Vec::new();
    let mut fan_out = true;
    let mut wake_open = true;
    let mut first = 0usize;
    let mut last_stats = tokio::time::Instant::now() - STATS_EVERY;
    let mut last_prune = tokio::time::Instant::now();
    let mut seed = crate::seed();
    let mut stopping: Option<tokio::time::Instant> = None;
    loop {
        while let Some(done) = tasks.try_join_next() {
            if let Ok(f) = done {
                settle(
                    f,
                    &settings,
                    &metrics,
                    &mut seed,
                    &mut in_flight,
                    &mut busy,
                    &mut results,
                );
            }
        }
        let now = now_ms();
        let stats = last_stats.elapsed() >= STATS_EVERY;
        let prune = last_prune.elapsed() >= PRUNE_EVERY;
        let dispatch = stopping.is_none();
        // Kept until the store has them: a failed turn records them on the next.
        let recorded = std::mem::take(&mut results);
        let input = TurnIn {
            fan_out,
            results: recorded.clone(),
            in_flight: in_flight.clone(),
            busy: busy.clone(),
            free: if dispatch {
                settings.max_concurrency.saturating_sub(in_flight.len())
            } else {
                0
            },
            per_webhook: settings.max_concurrency_per_webhook,
            first,
            now_ms: now,
            stats,
            prune_before: prune.then(|| {
                now.saturating_sub(
                    i64::try_from(settings.keep_done.as_millis()).unwrap_or(i64::MAX),
                )
            }),
        };
        let db = store.clone();
        let out = tokio::task::spawn_blocking(move || {
            // A std Mutex locked only inside this blocking closure, never across an `.await`.
            turn(
                &mut db.lock().unwrap_or_else(PoisonError::into_inner),
                input,
            )
        })
        .await;
        let out = match out {
            Ok(Ok(out)) => out,
            failed => {
                match failed {
                    Ok(Err(e)) => tracing::error!(
                        error = %e,
                        "the webhook engine's store work failed; trying again"
                    ),
                    Err(e) => tracing::error!(error = %e, "the webhook engine's store task failed"),
                    Ok(Ok(_)) => {}
                }
                if stop.is_cancelled() && stopping.is_none() {
                    stopping = Some(tokio::time::Instant::now() + STOP_GRACE);
                }
                if stopping.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    tasks.abort_all();
                    return;
                }
                // Nothing of this turn was written: the outcomes and the fan-out go again.
                results.extend(recorded);
                fan_out = true;
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.cancelled(), if stopping.is_none() => {}
                }
                continue;
            }
        };
        fan_out = false;
        first = first.wrapping_add(1);
        if stats {
            last_stats = tokio::time::Instant::now();
            if let Some(s) = &out.stats {
                publish_stats(&metrics, s, now);
            }
        }
        if prune {
            last_prune = tokio::time::Instant::now();
        }
        if !out.targets.is_empty() || !targets.is_empty() {
            targets = out
                .targets
                .into_iter()
                .map(|t| (t.id.clone(), Arc::new(t)))
                .collect();
        }
        for d in out.due {
            let Some(target) = targets.get(&d.webhook).cloned() else {
                continue;
            };
            in_flight.insert(d.id);
            *busy.entry(d.webhook.clone()).or_default() += 1;
            let client = client.clone();
            let allow_private = settings.allow_private_targets;
            tasks.spawn(attempt(client, target, d, allow_private));
        }

        if let Some(deadline) = stopping {
            if tasks.is_empty() || tokio::time::Instant::now() >= deadline {
                if !tasks.is_empty() {
                    tracing::info!(
                        in_flight = tasks.len(),
                        "stopping webhooks with deliveries in flight; they go again on the next start"
                    );
                }
                tasks.abort_all();
                // What finished meanwhile is recorded.
                if !results.is_empty() {
                    let db = store.clone();
                    let r = std::mem::take(&mut results);
                    let _ = tokio::task::spawn_blocking(move || {
                        db.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .record_webhook_attempts(&r)
                    })
                    .await;
                }
                return;
            }
        } else if stop.is_cancelled() {
            stopping = Some(tokio::time::Instant::now() + STOP_GRACE);
            fan_out = true; // what the last commit stored is queued
            continue;
        }

        let wait = out
            .next_due
            .map_or(POLL, |t| {
                Duration::from_millis(u64::try_from(t - now).unwrap_or(0))
            })
            .min(POLL);
        let wait = if stopping.is_some() {
            wait.min(Duration::from_millis(50))
        } else {
            wait
        };
        tokio::select! {
            r = wake.recv(), if wake_open && stopping.is_none() => {
                match r {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        // One fan-out for everything committed so far.
                        while wake.try_recv().is_ok() {}
                        fan_out = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => wake_open = false,
                }
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(f) = done {
                    settle(f, &settings, &metrics, &mut seed, &mut in_flight, &mut busy, &mut results);
                }
            }
            _ = tokio::time::sleep(wait) => {
                fan_out = true;
            }
            _ = stop.cancelled(), if stopping.is_none() => {}
        }
    }
}

/// Turns an attempt's result into the outcome to record, and frees its slot.
fn settle(
    f: Finished,
    settings: &WebhookSettings,
    metrics: &Metrics,
    seed: &mut u64,
    in_flight: &mut HashSet<i64>,
    busy: &mut HashMap<String, usize>,
    results: &mut Vec<AttemptRecord>,
) {
    in_flight.remove(&f.delivery.id);
    if let Some(n) = busy.get_mut(&f.delivery.webhook) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            busy.remove(&f.delivery.webhook);
        }
    }
    let d = &f.delivery;
    let outcome = match (f.status, &f.error) {
        (Some(s), None) if (200..300).contains(&s) => AttemptOutcome::Delivered,
        (Some(410), _) => AttemptOutcome::Gone,
        _ if d.body.is_none() => AttemptOutcome::GaveUp,
        _ => {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            after_failure(
                d.attempts.saturating_add(1),
                f.at_ms,
                d.queued_ms,
                settings.retry_window,
                *seed,
            )
        }
    };
    match outcome {
        AttemptOutcome::Delivered => {
            metrics.webhooks.outcome("delivered");
            metrics
                .webhooks
                .latency_seconds
                .observe((f.at_ms - d.queued_ms).max(0) as f64 / 1000.0);
        }
        AttemptOutcome::RetryAt(_) => metrics.webhooks.outcome("retried"),
        AttemptOutcome::GaveUp | AttemptOutcome::Gone => metrics.webhooks.outcome("failed"),
    }
    if outcome == AttemptOutcome::Gone {
        tracing::warn!(webhook = %d.webhook, tenant = %d.tenant, "a webhook answered 410 Gone; disabled");
    }
    results.push(AttemptRecord {
        delivery: d.id,
        webhook: d.webhook.clone(),
        at_ms: f.at_ms,
        status: f.status,
        error: f.error,
        outcome,
    });
}

/// One attempt: checks the target, signs, posts, and reports what came back.
async fn attempt(
    client: reqwest::Client,
    target: Arc<WebhookTarget>,
    delivery: DueDelivery,
    allow_private: bool,
) -> Finished {
    let start = now_ms();
    let (status, error) = match &delivery.body {
        None => (
            None,
            Some("the event is no longer stored (storage.events_retention_days)".to_owned()),
        ),
        Some(body) => {
            post(
                &client,
                &target,
                &delivery.event_id,
                body,
                allow_private,
                start,
            )
            .await
        }
    };
    Finished {
        delivery,
        at_ms: now_ms(),
        status,
        error,
    }
}

async fn post(
    client: &reqwest::Client,
    target: &WebhookTarget,
    id: &str,
    body: &str,
    allow_private: bool,
    now_ms: i64,
) -> (Option<u16>, Option<String>) {
    // A literal address skips DNS (and so the resolver's check): checked here, every time.
    if let Err(e) = check_target(&target.url, allow_private) {
        return (None, Some(e));
    }
    let timestamp = now_ms.div_euclid(1000);
    let mut secrets = vec![target.secret.as_str()];
    if let (Some(previous), Some(until)) = (&target.previous_secret, target.previous_until_ms)
        && until > now_ms
    {
        secrets.push(previous.as_str());
    }
    let signature = signature_header(secrets, id, timestamp, body.as_bytes());
    let sent = client
        .post(&target.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_owned())
        .send()
        .await;
    match sent {
        Ok(res) => {
            let status = res.status().as_u16();
            if res.status().is_success() {
                (Some(status), None)
            } else {
                (
                    Some(status),
                    Some(format!("the receiver answered {}", res.status())),
                )
            }
        }
        Err(e) => (None, Some(chain(&e))),
    }
}

/// An error with its causes, `: `-separated, cut to [`ERROR_MAX_CHARS`].
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s.chars().take(ERROR_MAX_CHARS).collect()
}

/// Sets the per-webhook gauges from the store's counts (webhooks with none pending drop out).
fn publish_stats(metrics: &Metrics, stats: &[PendingStats], now_ms: i64) {
    let w = &metrics.webhooks;
    w.pending.clear();
    w.oldest_pending_seconds.clear();
    for s in stats {
        let label = WebhookLabel {
            webhook: s.webhook.clone(),
            tenant: s.tenant.clone(),
        };
        w.pending
            .get_or_create(&label)
            .set(i64::try_from(s.pending).unwrap_or(i64::MAX));
        w.oldest_pending_seconds
            .get_or_create(&label)
            .set((now_ms - s.oldest_queued_ms).max(0) as f64 / 1000.0);
    }
}
