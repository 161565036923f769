//! Webhooks (SPEC 13): their definitions, and the outbox of their deliveries.
//!
//! # The outbox
//!
//! The event log (`events`) is written by the pipeline in the same transaction as the readings
//! that produced the events, so an event that exists is an event to deliver: the event log is
//! the outbox's commit. The delivery engine (landport-sinks) turns the events after its cursor
//! ([`FANOUT_CURSOR`]) into one `webhook_deliveries` row per matching webhook
//! ([`Store::webhook_fan_out`]), in one transaction with the cursor's move: a crash before it
//! leaves the cursor where it was, and the unique index on live rows `(webhook, event_seq)`
//! makes a repeated fan-out harmless. Then each row is `pending` until a 2xx marks it
//! `delivered`, or its retry window runs out (or the webhook answers 410) and marks it
//! `failed`. Rows are never deleted by the engine while pending; done rows are pruned with
//! event retention ([`Store::prune_webhook_deliveries`]).
//!
//! # Rules of a definition
//!
//! Pure checks shared by the API (at create) and the engine (at every connection): event type
//! patterns ([`check_patterns`], [`pattern_matches`]), target URLs ([`check_target`]) and the
//! addresses a delivery may never reach ([`forbidden_ip`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use landport_tracker::EventType;
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::telemetry::limit_to_sql;
use super::{Store, StoreError};

/// The engine's cursor (in `cursors`) over event seqs: every event up to it has its deliveries.
pub const FANOUT_CURSOR: &str = "webhooks";

/// A webhook as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub tenant: String,
    /// `wh_` + 32 hex digits.
    pub id: String,
    /// Where deliveries are posted (`https://...`, or `http://` where private targets are
    /// allowed).
    pub url: String,
    /// Event type patterns (`geofence.*`, `shipment.arrived`, `*`); see [`pattern_matches`].
    pub events: Vec<String>,
    pub description: String,
    /// `false` once disabled (by a 410 Gone, or by a PATCH): nothing is sent, deliveries wait.
    pub enabled: bool,
    /// Why it was disabled, if it was.
    pub disabled_reason: Option<String>,
    /// `whsec_` + base64 of the key.
    pub secret: String,
    /// The secret before the last rotation, which still signs until `previous_until_ms`.
    pub previous_secret: Option<String>,
    pub previous_until_ms: Option<i64>,
    /// The event seq when it was created: it gets the events after it.
    pub start_seq: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Its health (see [`WebhookHealth`]); filled by reads, ignored by inserts.
    pub health: WebhookHealth,
}

/// How a webhook's deliveries are going.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookHealth {
    /// When a delivery last succeeded (server clock, epoch ms).
    pub last_success_ms: Option<i64>,
    /// When an attempt last failed.
    pub last_failure_ms: Option<i64>,
    /// The HTTP status of the last attempt (none: it got no answer).
    pub last_status: Option<u16>,
    /// Why the last failed attempt failed.
    pub last_error: Option<String>,
    /// Failed attempts in a row (0 after a success).
    pub failures: u64,
    /// Deliveries waiting.
    pub pending: u64,
    /// Deliveries given up on (kept).
    pub failed: u64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One delivery as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub tenant: String,
    pub webhook: String,
    pub event_id: String,
    pub event_type: String,
    /// Made by a replay rather than by the event's arrival.
    pub replay: bool,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// When it was queued (or re-queued by a retry): its retry window starts here.
    pub queued_ms: i64,
    /// When it is due (pending only).
    pub next_ms: Option<i64>,
    pub last_attempt_ms: Option<i64>,
    /// When it was delivered or given up.
    pub done_ms: Option<i64>,
}

/// A delivery due now, with what sending it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub id: i64,
    pub webhook: String,
    pub tenant: String,
    /// The event id: the `webhook-id` header.
    pub event_id: String,
    /// The stored envelope, sent as is; `None` when retention deleted the event.
    pub body: Option<String>,
    pub attempts: u32,
    pub queued_ms: i64,
}

/// The webhook fields the engine needs to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_until_ms: Option<i64>,
    pub start_seq: i64,
}

/// What one attempt came to, as [`Store::record_webhook_attempts`] writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub delivery: i64,
    pub webhook: String,
    pub at_ms: i64,
    /// The HTTP status, when one came back.
    pub status: Option<u16>,
    /// Why it failed (a non-2xx status, a timeout, a refused address...); `None` = delivered.
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; tried again at this time.
    RetryAt(i64),
    /// Failed for the last time.
    GaveUp,
    /// 410 Gone: this delivery fails and the webhook is disabled.
    Gone,
}

/// Pending deliveries of one webhook, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingStats {
    pub webhook: String,
    pub tenant: String,
    pub pending: u64,
    /// When the oldest pending one was queued (server clock, epoch ms).
    pub oldest_queued_ms: i64,
}

/// What a fan-out pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOut {
    /// The cursor after it.
    pub cursor: i64,
    /// Events read.
    pub events: usize,
    /// Deliveries queued.
    pub queued: usize,
}

const WEBHOOK_COLUMNS: &str = "tenant, id, url, events, description, enabled, disabled_reason,
    secret, previous_secret, previous_until_ms, start_seq, created_ms, updated_ms,
    last_success_ms, last_failure_ms, last_status, last_error, failures,
    (SELECT count(*) FROM webhook_deliveries d WHERE d.webhook = webhooks.id AND d.status = 'pending'),
    (SELECT count(*) FROM webhook_deliveries d WHERE d.webhook = webhooks.id AND d.status = 'failed')";

fn webhook_from_row(row: &Row<'_>) -> rusqlite::Result<WebhookRecord> {
    let events: String = row.get(3)?;
    Ok(WebhookRecord {
        tenant: row.get(0)?,
        id: row.get(1)?,
        url: row.get(2)?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        description: row.get(4)?,
        enabled: row.get(5)?,
        disabled_reason: row.get(6)?,
        secret: row.get(7)?,
        previous_secret: row.get(8)?,
        previous_until_ms: row.get(9)?,
        start_seq: row.get(10)?,
        created_ms: row.get(11)?,
        updated_ms: row.get(12)?,
        health: WebhookHealth {
            last_success_ms: row.get(13)?,
            last_failure_ms: row.get(14)?,
            last_status: row.get::<_, Option<i64>>(15)?.map(status_from_sql),
            last_error: row.get(16)?,
            failures: row.get::<_, i64>(17)?.max(0) as u64,
            pending: row.get::<_, i64>(18)?.max(0) as u64,
            failed: row.get::<_, i64>(19)?.max(0) as u64,
        },
    })
}

fn status_from_sql(v: i64) -> u16 {
    u16::try_from(v).unwrap_or(0)
}

const DELIVERY_COLUMNS: &str = "id, tenant, webhook, event_id, event_type, replay, status,
    attempts, last_status, last_error, queued_ms, next_ms, last_attempt_ms, done_ms";

fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let status: String = row.get(6)?;
    let status = DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Failed);
    Ok(DeliveryRecord {
        id: row.get(0)?,
        tenant: row.get(1)?,
        webhook: row.get(2)?,
        event_id: row.get(3)?,
        event_type: row.get(4)?,
        replay: row.get(5)?,
        status,
        attempts: row.get::<_, i64>(7)?.clamp(0, i64::from(u32::MAX)) as u32,
        last_status: row.get::<_, Option<i64>>(8)?.map(status_from_sql),
        last_error: row.get(9)?,
        queued_ms: row.get(10)?,
        next_ms: if status == DeliveryStatus::Pending {
            Some(row.get(11)?)
        } else {
            None
        },
        last_attempt_ms: row.get(12)?,
        done_ms: row.get(13)?,
    })
}

/// Which deliveries [`Store::webhook_deliveries`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryQuery {
    pub status: Option<DeliveryStatus>,
    /// Only those queued at or after this (epoch ms).
    pub since_ms: Option<i64>,
    /// Only those with an id above this (the page cursor).
    pub after_id: i64,
    pub limit: usize,
}

impl Store {
    /// Stores a new webhook; its `start_seq` is set to the newest event seq inside the same
    /// transaction (so the engine, whose cursor is never past it, misses no later event).
    /// Returns the record as stored.
    pub fn insert_webhook(&mut self, w: &WebhookRecord) -> Result<WebhookRecord, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let start_seq: i64 = tx.query_row(
            "SELECT ifnull((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
            [],
            |row| row.get(0),
        )?;
        tx.execute(
            "INSERT INTO webhooks (tenant, id, url, events, description, enabled, disabled_reason,
                 secret, previous_secret, previous_until_ms, start_seq, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                w.tenant,
                w.id,
                w.url,
                serde_json::to_string(&w.events)?,
                w.description,
                w.enabled,
                w.disabled_reason,
                w.secret,
                w.previous_secret,
                w.previous_until_ms,
                start_seq,
                w.created_ms,
                w.updated_ms,
            ],
        )
        .map_err(|e| StoreError::conflict(e, "webhook", &w.id))?;
        tx.commit()?;
        Ok(WebhookRecord {
            start_seq,
            health: WebhookHealth::default(),
            ..w.clone()
        })
    }

    /// One webhook of `tenant` (`None`: of any tenant, for admin keys).
    pub fn webhook(
        &self,
        tenant: Option<&str>,
        id: &str,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1");
        let found = self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![id], webhook_from_row)
            .optional()?;
        Ok(found.filter(|w| tenant.is_none_or(|t| t == w.tenant)))
    }

    /// Up to `limit` webhooks of `tenant` (`None` = every tenant) after the `(tenant, id)` key
    /// `after`, by tenant and id.
    pub fn webhooks(
        &self,
        tenant: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        let (scope, args) = super::page_scope(tenant, after);
        let limit = limit_to_sql(limit);
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks {scope} ORDER BY tenant, id LIMIT {limit}"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), webhook_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many webhooks `tenant` has.
    pub fn count_webhooks(&self, tenant: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM webhooks WHERE tenant = ?1")?
            .query_row(params![tenant], |row| row.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// Reads, changes (with `f`) and writes back one webhook of `tenant` in one transaction;
    /// `Ok(None)` when there is none. `f` may refuse with an error of its own (`Err(e)` is
    /// returned as `Ok(Some(Err(e)))`, nothing written).
    #[allow(clippy::type_complexity)]
    pub fn update_webhook_with<E>(
        &mut self,
        tenant: &str,
        id: &str,
        f: impl FnOnce(&mut WebhookRecord) -> Result<(), E>,
    ) -> Result<Option<Result<WebhookRecord, E>>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ?1 AND id = ?2");
        let Some(mut w) = tx
            .prepare_cached(&sql)?
            .query_row(params![tenant, id], webhook_from_row)
            .optional()?
        else {
            return Ok(None);
        };
        if let Err(e) = f(&mut w) {
            return Ok(Some(Err(e)));
        }
        tx.execute(
            "UPDATE webhooks SET url = ?3, events = ?4, description = ?5, enabled = ?6,
                 disabled_reason = ?7, secret = ?8, previous_secret = ?9, previous_until_ms = ?10,
                 updated_ms = ?11,
                 failures = CASE WHEN ?6 AND NOT enabled THEN 0 ELSE failures END
             WHERE tenant = ?1 AND id = ?2",
            params![
                tenant,
                id,
                w.url,
                serde_json::to_string(&w.events)?,
                w.description,
                w.enabled,
                w.disabled_reason,
                w.secret,
                w.previous_secret,
                w.previous_until_ms,
                w.updated_ms,
            ],
        )?;
        tx.commit()?;
        Ok(Some(Ok(w)))
    }

    /// Deletes a webhook of `tenant` and its deliveries; `false` when there was none.
    pub fn delete_webhook(&mut self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "DELETE FROM webhooks WHERE tenant = ?1 AND id = ?2",
            params![tenant, id],
        )?;
        if n > 0 {
            tx.execute(
                "DELETE FROM webhook_deliveries WHERE webhook = ?1",
                params![id],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// Every enabled webhook, for the engine.
    pub fn webhook_targets(&self) -> Result<Vec<WebhookTarget>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, tenant, url, events, secret, previous_secret, previous_until_ms, start_seq
             FROM webhooks WHERE enabled ORDER BY tenant, id",
        )?;
        let rows = stmt.query_map([], |row| {
            let events: String = row.get(3)?;
            Ok(WebhookTarget {
                id: row.get(0)?,
                tenant: row.get(1)?,
                url: row.get(2)?,
                events: serde_json::from_str(&events).unwrap_or_default(),
                secret: row.get(4)?,
                previous_secret: row.get(5)?,
                previous_until_ms: row.get(6)?,
                start_seq: row.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves the fan-out cursor past every event stored now, so none of them gets a delivery:
    /// a cluster shard rebuilt from the stream, whose replayed events their first owner already
    /// delivered. Returns the cursor.
    pub fn skip_webhook_fan_out_to_newest(&mut self) -> Result<i64, StoreError> {
        let newest = self.event_seq_max()?;
        self.set_cursor(FANOUT_CURSOR, newest)?;
        Ok(newest)
    }

    /// Reads up to `limit` events after the fan-out cursor and queues one delivery per event
    /// and matching webhook of its tenant among `targets` (an event at or before a webhook's
    /// `start_seq` is not its), moving the cursor in the same transaction. See the module docs.
    pub fn webhook_fan_out(
        &mut self,
        targets: &[WebhookTarget],
        limit: usize,
        now_ms: i64,
    ) -> Result<FanOut, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let cursor: i64 = tx
            .prepare_cached("SELECT value FROM cursors WHERE name = ?1")?
            .query_row(params![FANOUT_CURSOR], |row| row.get(0))
            .optional()?
            .unwrap_or(0);
        // Events at or before every target's start match none: a first webhook over a long
        // log starts at its own start, not at the log's beginning.
        let floor = targets.iter().map(|t| t.start_seq).min().unwrap_or(0);
        let from = cursor.max(floor);
        let mut out = FanOut {
            cursor: from,
            ..FanOut::default()
        };
        {
            let mut read = tx.prepare_cached(
                "SELECT seq, id, tenant, type FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO webhook_deliveries (tenant, webhook, event_seq, event_id,
                     event_type, replay, status, attempts, queued_ms, next_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, 'pending', 0, ?6, ?6)",
            )?;
            let mut rows = read.query(params![from, limit_to_sql(limit)])?;
            while let Some(row) = rows.next()? {
                let seq: i64 = row.get(0)?;
                let id: String = row.get(1)?;
                let tenant: String = row.get(2)?;
                let kind: String = row.get(3)?;
                for t in targets {
                    if t.tenant == tenant
                        && seq > t.start_seq
                        && t.events.iter().any(|p| pattern_matches(p, &kind))
                    {
                        out.queued +=
                            insert.execute(params![tenant, t.id, seq, id, kind, now_ms])?;
                    }
                }
                out.cursor = seq;
                out.events += 1;
            }
        }
        if out.cursor != cursor {
            tx.execute(
                "INSERT INTO cursors (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![FANOUT_CURSOR, out.cursor],
            )?;
            tx.commit()?;
        }
        Ok(out)
    }

    /// Up to `limit` pending deliveries of webhook `webhook` due at `now_ms`, oldest due first,
    /// skipping the ids `skip` holds (in flight), with the stored event bodies.
    pub fn due_webhook_deliveries(
        &self,
        webhook: &str,
        now_ms: i64,
        limit: usize,
        skip: &dyn Fn(i64) -> bool,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.id, d.webhook, d.tenant, d.event_id, e.body, d.attempts, d.queued_ms
             FROM webhook_deliveries d LEFT JOIN events e ON e.seq = d.event_seq
             WHERE d.webhook = ?1 AND d.status = 'pending' AND d.next_ms <= ?2
             ORDER BY d.next_ms, d.id",
        )?;
        let mut rows = stmt.query(params![webhook, now_ms])?;
        let mut out = Vec::new();
        while out.len() < limit
            && let Some(row) = rows.next()?
        {
            let id: i64 = row.get(0)?;
            if skip(id) {
                continue;
            }
            out.push(DueDelivery {
                id,
                webhook: row.get(1)?,
                tenant: row.get(2)?,
                event_id: row.get(3)?,
                body: row.get(4)?,
                attempts: row.get::<_, i64>(5)?.clamp(0, i64::from(u32::MAX)) as u32,
                queued_ms: row.get(6)?,
            });
        }
        Ok(out)
    }

    /// When the next pending delivery after `now_ms` is due, if any.
    pub fn next_webhook_due(&self, now_ms: i64) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT min(next_ms) FROM webhook_deliveries WHERE status = 'pending' AND next_ms > ?1",
            )?
            .query_row(params![now_ms], |row| row.get(0))?)
    }

    /// Writes the outcomes of attempts, and each webhook's health, in one transaction. A
    /// delivery deleted meanwhile (its webhook was) is skipped.
    pub fn record_webhook_attempts(
        &mut self,
        attempts: &[AttemptRecord],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE webhook_deliveries SET status = ?2, attempts = attempts + 1,
                     last_status = ?3, last_error = ?4, last_attempt_ms = ?5,
                     next_ms = ifnull(?6, next_ms), done_ms = ?7
                 WHERE id = ?1 AND status = 'pending'",
            )?;
            let mut ok = tx.prepare_cached(
                "UPDATE webhooks SET last_success_ms = ?2, last_status = ?3, failures = 0
                 WHERE id = ?1",
            )?;
            let mut bad = tx.prepare_cached(
                "UPDATE webhooks SET last_failure_ms = ?2, last_status = ?3, last_error = ?4,
                     failures = failures + 1
                 WHERE id = ?1",
            )?;
            let mut gone = tx.prepare_cached(
                "UPDATE webhooks SET enabled = 0, disabled_reason = ?2, updated_ms = ?3 WHERE id = ?1",
            )?;
            for a in attempts {
                let (status, next, done) = match a.outcome {
                    AttemptOutcome::Delivered => (DeliveryStatus::Delivered, None, Some(a.at_ms)),
                    AttemptOutcome::RetryAt(t) => (DeliveryStatus::Pending, Some(t), None),
                    AttemptOutcome::GaveUp | AttemptOutcome::Gone => {
                        (DeliveryStatus::Failed, None, Some(a.at_ms))
                    }
                };
                let http = a.status.map(i64::from);
                let n = update.execute(params![
                    a.delivery,
                    status.as_str(),
                    http,
                    a.error,
                    a.at_ms,
                    next,
                    done
                ])?;
                if n == 0 {
                    continue;
                }
                match a.outcome {
                    AttemptOutcome::Delivered => {
                        ok.execute(params![a.webhook, a.at_ms, http])?;
                    }
                    _ => {
                        bad.execute(params![a.webhook, a.at_ms, http, a.error])?;
                    }
                }
                if a.outcome == AttemptOutcome::Gone {
                    let reason = format!(
                        "the receiver answered 410 Gone at {}",
                        landport_tracker::event::format_rfc3339(a.at_ms)
                    );
                    gone.execute(params![a.webhook, reason, a.at_ms])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deliveries of one webhook of `tenant`, by id.
    pub fn webhook_deliveries(
        &self,
        tenant: &str,
        webhook: &str,
        q: &DeliveryQuery,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE webhook = ?1 AND tenant = ?2 AND (?3 IS NULL OR status = ?3)
               AND id > ?4 AND queued_ms >= ?5
             ORDER BY id LIMIT ?6"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                webhook,
                tenant,
                q.status.map(DeliveryStatus::as_str),
                q.after_id,
                q.since_ms.unwrap_or(i64::MIN),
                limit_to_sql(q.limit)
            ],
            delivery_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One delivery of a webhook of `tenant`.
    pub fn webhook_delivery(
        &self,
        tenant: &str,
        webhook: &str,
        id: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE id = ?1 AND webhook = ?2 AND tenant = ?3"
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![id, webhook, tenant], delivery_from_row)
            .optional()?)
    }

    /// Queues one delivery again (whatever its status), due now, with a fresh retry window.
    pub fn retry_webhook_delivery(
        &mut self,
        tenant: &str,
        webhook: &str,
        id: i64,
        now_ms: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let n = self.conn.execute(
            "UPDATE webhook_deliveries SET status = 'pending', queued_ms = ?4, next_ms = ?4,
                 done_ms = NULL
             WHERE id = ?1 AND webhook = ?2 AND tenant = ?3",
            params![id, webhook, tenant, now_ms],
        )?;
        if n == 0 {
            return Ok(None);
        }
        self.webhook_delivery(tenant, webhook, id)
    }

    /// Queues a delivery to webhook `webhook` of `tenant` for each stored event of the tenant
    /// whose time (`ts`) is in `[from_ms, to_ms]` and whose type matches `patterns`, oldest
    /// first, at most `max` of them. Returns how many, and whether there were more.
    #[allow(clippy::too_many_arguments)]
    pub fn replay_webhook(
        &mut self,
        tenant: &str,
        webhook: &str,
        patterns: &[String],
        from_ms: i64,
        to_ms: i64,
        max: usize,
        now_ms: i64,
    ) -> Result<(usize, bool), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut queued = 0;
        let mut more = false;
        {
            let mut read = tx.prepare_cached(
                "SELECT seq, id, type FROM events
                 WHERE tenant = ?1 AND ts_ms >= ?2 AND ts_ms <= ?3 ORDER BY seq",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO webhook_deliveries (tenant, webhook, event_seq, event_id,
                     event_type, replay, status, attempts, queued_ms, next_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1, 'pending', 0, ?6, ?6)",
            )?;
            let mut rows = read.query(params![tenant, from_ms, to_ms])?;
            while let Some(row) = rows.next()? {
                let kind: String = row.get(2)?;
                if !patterns.iter().any(|p| pattern_matches(p, &kind)) {
                    continue;
                }
                if queued == max {
                    more = true;
                    break;
                }
                let seq: i64 = row.get(0)?;
                let id: String = row.get(1)?;
                insert.execute(params![tenant, webhook, seq, id, kind, now_ms])?;
                queued += 1;
            }
        }
        tx.commit()?;
        Ok((queued, more))
    }

    /// Pending deliveries per webhook, and the oldest one's queue time.
    pub fn webhook_pending_stats(&self) -> Result<Vec<PendingStats>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT webhook, tenant, count(*), min(queued_ms) FROM webhook_deliveries
             WHERE status = 'pending' GROUP BY webhook, tenant",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(PendingStats {
                webhook: row.get(0)?,
                tenant: row.get(1)?,
                pending: row.get::<_, i64>(2)?.max(0) as u64,
                oldest_queued_ms: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes deliveries delivered or given up before `older_than_ms`; returns how many.
    pub fn prune_webhook_deliveries(&mut self, older_than_ms: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM webhook_deliveries WHERE done_ms IS NOT NULL AND done_ms < ?1",
            params![older_than_ms],
        )?)
    }
}

/// Whether the type pattern `pattern` matches the event type `kind`: `*` stands for any run of
/// characters (none included), everything else for itself.
pub fn pattern_matches(pattern: &str, kind: &str) -> bool {
    let (p, k) = (pattern.as_bytes(), kind.as_bytes());
    // Greedy glob with one backtrack point: linear enough for short patterns.
    let (mut pi, mut ki) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ki < k.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ki));
            pi += 1;
        } else if pi < p.len() && p[pi] == k[ki] {
            pi += 1;
            ki += 1;
        } else if let Some((sp, sk)) = star {
            pi = sp + 1;
            ki = sk + 1;
            star = Some((sp, sk + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Most patterns a webhook may hold.
pub const MAX_PATTERNS: usize = 64;

/// Checks event type patterns: 1 to [`MAX_PATTERNS`] of them, each made of `a-z . _ *` and
/// matching at least one known event type (so that a typo is refused, not silently
/// never delivered). The message names the offending pattern.
pub fn check_patterns(patterns: &[String]) -> Result<(), String> {
    if patterns.is_empty() {
        return Err("events must name at least one event type or pattern (\"*\" for all)".into());
    }
    if patterns.len() > MAX_PATTERNS {
        return Err(format!("events holds more than {MAX_PATTERNS} patterns"));
    }
    for p in patterns {
        if p.is_empty()
            || p.len() > 64
            || !p
                .bytes()
                .all(|c| c.is_ascii_lowercase() || matches!(c, b'.' | b'_' | b'*'))
        {
            return Err(format!(
                "events: {p:?} is not an event type pattern (a-z . _ and * only)"
            ));
        }
        if !EventType::ALL
            .iter()
            .any(|t| pattern_matches(p, t.as_str()))
        {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(format!(
                "events: {p:?} matches no event type; known types: {}",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// Why a delivery may never reach `ip` (unless private targets are allowed), or `None`.
/// IPv4-mapped and -compatible IPv6 addresses are judged as the IPv4 address they carry.
pub fn forbidden_ip(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        // 100.64/10 is carrier-grade NAT: private to the network it is in.
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("a multicast, broadcast or reserved address")
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        Some("an IETF protocol assignment address")
    } else if (a == 198 && (18..20).contains(&b)) || ip.is_documentation() {
        Some("a benchmarking or documentation address")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if (seg[0] & 0xfe00) == 0xfc00 {
        Some("a private (unique local) address")
    } else if (seg[0] & 0xffc0) == 0xfe80 || (seg[0] & 0xffc0) == 0xfec0 {
        Some("a link-local address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if seg[0] == 0 && seg[1] == 0 && seg[2] == 0 && seg[3] == 0 && seg[4] == 0 && seg[5] == 0
    {
        // ::a.b.c.d, the deprecated IPv4-compatible form: judged as the IPv4 address.
        let [a, b] = seg[6].to_be_bytes();
        let [c, d] = seg[7].to_be_bytes();
        forbidden_v4(Ipv4Addr::new(a, b, c, d)).or(Some("an IPv4-compatible address"))
    } else if seg[0] == 0x64 && seg[1] == 0xff9b {
        // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
        let [a, b] = seg[6].to_be_bytes();
        let [c, d] = seg[7].to_be_bytes();
        forbidden_v4(Ipv4Addr::new(a, b, c, d))
    } else if seg[0] == 0x2001 && seg[1] == 0xdb8 {
        Some("a documentation address")
    } else {
        None
    }
}

/// The longest target URL accepted, bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// Checks a webhook's target URL and returns it parsed: `https://` (or `http://` with
/// `allow_private`), a host, no credentials; a literal IP address must not be one that
/// [`forbidden_ip`] refuses (unless `allow_private`). Host names are checked after each DNS
/// resolution by the engine. The message says what is wrong.
pub fn check_target(url: &str, allow_private: bool) -> Result<url::Url, String> {
    if url.len() > MAX_URL_BYTES {
        return Err(format!("url is longer than {MAX_URL_BYTES} bytes"));
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("url {url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => {
            return Err(
                "url must be https:// (http:// only with webhooks.allow_private_targets = true)"
                    .into(),
            );
        }
        other => return Err(format!("url scheme {other:?} is not https")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url must not carry credentials".into());
    }
    let host = match parsed.host() {
        Some(h) => h,
        None => return Err("url has no host".into()),
    };
    if !allow_private {
        let ip = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = ip
            && let Some(why) = forbidden_ip(ip)
        {
            return Err(format!(
                "url points at {ip}, {why}: refused (webhooks.allow_private_targets is off)"
            ));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_with_stars_anywhere() {
        assert!(pattern_matches("*", "geofence.entered"));
        assert!(pattern_matches("geofence.*", "geofence.entered"));
        assert!(!pattern_matches("geofence.*", "shipment.arrived"));
        assert!(pattern_matches("*.arrived", "shipment.arrived"));
        assert!(pattern_matches("shipment.arrived", "shipment.arrived"));
        assert!(!pattern_matches("shipment.arrive", "shipment.arrived"));
        assert!(pattern_matches(
            "*temperature*",
            "cargo.temperature_recovered"
        ));
        assert!(pattern_matches("d*e*.o*", "device.online"));
        assert!(!pattern_matches("device.on", "device.online"));
        assert!(pattern_matches("device.**", "device.online"));
    }

    #[test]
    fn patterns_that_match_no_known_type_are_refused_naming_them() {
        let ok = |v: &[&str]| check_patterns(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&["geofence.*", "shipment.arrived"]).is_ok());
        assert!(ok(&["*"]).is_ok());
        let e = ok(&["geofense.*"]).unwrap_err();
        assert!(e.contains("geofense.*") && e.contains("known types"), "{e}");
        assert!(ok(&[]).is_err());
        assert!(ok(&["Geofence.entered"]).unwrap_err().contains("a-z"));
        assert!(ok(&["geofence.entered; drop"]).is_err());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_link_local_metadata_and_multicast_addresses_are_forbidden() {
        for bad in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(forbidden_ip(ip(bad)).is_some(), "{bad} allowed");
        }
        assert_eq!(
            forbidden_ip(ip("169.254.169.254")),
            Some("a cloud metadata address")
        );
        assert_eq!(
            forbidden_ip(ip("fd00:ec2::254")),
            Some("a cloud metadata address")
        );
        for good in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(forbidden_ip(ip(good)), None, "{good} refused");
        }
    }

    #[test]
    fn targets_must_be_https_to_a_public_address_unless_private_targets_are_allowed() {
        assert!(check_target("https://hooks.example.com/x", false).is_ok());
        for (bad, says) in [
            ("http://hooks.example.com/x", "https"),
            ("https://127.0.0.1/x", "loopback"),
            ("https://10.0.0.7:8443/x", "private"),
            ("https://169.254.169.254/latest/meta-data", "metadata"),
            ("https://[::1]/x", "loopback"),
            ("https://[::ffff:7f00:1]/x", "loopback"),
            ("ftp://example.com/", "scheme"),
            ("https://user:pw@example.com/", "credentials"),
            ("not a url", "not a URL"),
        ] {
            let e = check_target(bad, false).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(check_target("http://127.0.0.1:9000/x", true).is_ok());
        assert!(check_target("ftp://127.0.0.1/", true).is_err());
    }

    fn hook(tenant: &str, id: &str, events: &[&str]) -> WebhookRecord {
        WebhookRecord {
            tenant: tenant.into(),
            id: id.into(),
            url: "https://example.com/h".into(),
            events: events.iter().map(|s| s.to_string()).collect(),
            description: String::new(),
            enabled: true,
            disabled_reason: None,
            secret: "whsec_AAAA".into(),
            previous_secret: None,
            previous_until_ms: None,
            start_seq: 0,
            created_ms: 1,
            updated_ms: 1,
            health: WebhookHealth::default(),
        }
    }

    fn event(tenant: &str, kind: landport_tracker::EventType, n: i64) -> landport_tracker::Event {
        landport_tracker::Event::new(
            kind,
            tenant,
            "d",
            None,
            None,
            1_795_400_000_000 + n,
            0,
            serde_json::json!({}),
        )
    }

    #[test]
    fn fan_out_queues_each_matching_event_once_per_webhook_of_its_tenant_only() {
        use landport_tracker::EventType::*;
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        // An event before the webhook exists is not its.
        store
            .commit(&[], &[event("acme", GeofenceEntered, 0)])
            .unwrap();
        store
            .insert_webhook(&hook("acme", "wh_a", &["geofence.*"]))
            .unwrap();
        store.insert_webhook(&hook("beta", "wh_b", &["*"])).unwrap();
        store
            .commit(
                &[],
                &[
                    event("acme", GeofenceExited, 1),
                    event("acme", ShipmentArrived, 2),
                    event("beta", DeviceOnline, 3),
                ],
            )
            .unwrap();
        let targets = store.webhook_targets().unwrap();
        let f = store.webhook_fan_out(&targets, 1000, 5).unwrap();
        // The event before both webhooks is not even read.
        assert_eq!((f.events, f.queued, f.cursor), (3, 2, 4));
        // Again from an older cursor (a crash before... nothing: it moved with the rows), and
        // a repeat from the start queues nothing twice.
        store.set_cursor(FANOUT_CURSOR, 0).unwrap();
        let f = store.webhook_fan_out(&targets, 1000, 6).unwrap();
        assert_eq!((f.events, f.queued), (3, 0));
        let a = store
            .due_webhook_deliveries("wh_a", 10, 100, &|_| false)
            .unwrap();
        assert_eq!(a.len(), 1);
        assert!(a[0].body.as_deref().unwrap().contains("geofence.exited"));
        let b = store
            .due_webhook_deliveries("wh_b", 10, 100, &|_| false)
            .unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].tenant, "beta");
        // Not yet due, and in-flight ones skipped.
        assert!(
            store
                .due_webhook_deliveries("wh_a", 4, 100, &|_| false)
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .due_webhook_deliveries("wh_a", 10, 100, &|id| id == a[0].id)
                .unwrap()
                .is_empty()
        );
        // Cross-tenant reads see nothing.
        assert!(store.webhook(Some("beta"), "wh_a").unwrap().is_none());
        assert!(
            store
                .webhook_deliveries(
                    "beta",
                    "wh_a",
                    &DeliveryQuery {
                        limit: 10,
                        ..Default::default()
                    }
                )
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn attempts_move_deliveries_and_a_410_disables_the_webhook() {
        use landport_tracker::EventType::*;
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        store.insert_webhook(&hook("acme", "wh_a", &["*"])).unwrap();
        store
            .commit(
                &[],
                &[
                    event("acme", DeviceOnline, 1),
                    event("acme", DeviceOffline, 2),
                ],
            )
            .unwrap();
        let targets = store.webhook_targets().unwrap();
        store.webhook_fan_out(&targets, 1000, 5).unwrap();
        let due = store
            .due_webhook_deliveries("wh_a", 10, 100, &|_| false)
            .unwrap();
        let attempt = |d: &DueDelivery, status, outcome| AttemptRecord {
            delivery: d.id,
            webhook: "wh_a".into(),
            at_ms: 20,
            status: Some(status),
            error: (status != 200).then(|| "bad".to_string()),
            outcome,
        };
        store
            .record_webhook_attempts(&[
                attempt(&due[0], 500, AttemptOutcome::RetryAt(1000)),
                attempt(&due[1], 200, AttemptOutcome::Delivered),
            ])
            .unwrap();
        let w = store.webhook(Some("acme"), "wh_a").unwrap().unwrap();
        assert_eq!((w.health.pending, w.health.last_success_ms), (1, Some(20)));
        assert_eq!(store.next_webhook_due(30).unwrap(), Some(1000));
        let stats = store.webhook_pending_stats().unwrap();
        assert_eq!((stats[0].pending, stats[0].oldest_queued_ms), (1, 5));
        store
            .record_webhook_attempts(&[attempt(&due[0], 410, AttemptOutcome::Gone)])
            .unwrap();
        let w = store.webhook(Some("acme"), "wh_a").unwrap().unwrap();
        assert!(!w.enabled);
        assert!(w.disabled_reason.unwrap().contains("410"));
        assert!(store.webhook_targets().unwrap().is_empty());
        let d = store
            .webhook_delivery("acme", "wh_a", due[0].id)
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.status, d.attempts, d.last_status),
            (DeliveryStatus::Failed, 2, Some(410))
        );
        // A retry queues it again.
        let d = store
            .retry_webhook_delivery("acme", "wh_a", due[0].id, 50)
            .unwrap()
            .unwrap();
        assert_eq!((d.status, d.next_ms), (DeliveryStatus::Pending, Some(50)));
    }

    #[test]
    fn a_replay_queues_the_tenants_matching_events_of_the_range() {
        use landport_tracker::EventType::*;
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        store
            .commit(
                &[],
                &[
                    event("acme", GeofenceEntered, 0),
                    event("acme", DeviceOnline, 1),
                    event("acme", GeofenceExited, 2),
                    event("beta", GeofenceExited, 2),
                    event("acme", GeofenceExited, 9),
                ],
            )
            .unwrap();
        store
            .insert_webhook(&hook("acme", "wh_a", &["geofence.*"]))
            .unwrap();
        let t0 = 1_795_400_000_000;
        let (n, more) = store
            .replay_webhook("acme", "wh_a", &["geofence.*".into()], t0, t0 + 2, 100, 7)
            .unwrap();
        assert_eq!((n, more), (2, false));
        let (n, more) = store
            .replay_webhook("acme", "wh_a", &["geofence.*".into()], t0, t0 + 9, 2, 7)
            .unwrap();
        assert_eq!((n, more), (2, true));
        let all = store
            .webhook_deliveries(
                "acme",
                "wh_a",
                &DeliveryQuery {
                    limit: 100,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(all.len(), 4);
        assert!(
            all.iter()
                .all(|d| d.replay && d.status == DeliveryStatus::Pending)
        );
    }
}
