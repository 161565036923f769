//! Stored events: written with the readings by [`Store::commit`](super::Store::commit), read by
//! cursor (`GET /v1/events`, the MQTT outbox, the InfluxDB sink), pruned by age.
//!
//! Each event has two numbers, both assigned in commit order and never reused:
//!
//! - `seq`, over every tenant: the cursor of the sinks and of admin keys
//!   ([`Store::events_after`]);
//! - `tenant_seq`, its number among its own tenant's events (1, 2, 3, ...): the cursor of a
//!   tenant's `GET /v1/events` ([`Store::tenant_events_after`]). A tenant paging its events
//!   sees only its own numbers, so the gaps of the global `seq` cannot tell it how many events
//!   other tenants had. Each tenant's last number is kept in `event_counters`, so retention
//!   deleting a tenant's every event does not make numbers start again at 1.
//!
//! The envelope is kept as JSON (`body`) so that fields added to [`Event`] later need no
//! migration; tenant, device, shipment, geofence, type and ts are copied into columns for the
//! filters. `stored_ms` (server clock) is what retention ([`Store::prune_events`]) goes by.

use landport_tracker::{Event, EventType, TimestampMs};
use rusqlite::{Connection, OptionalExtension, ToSql, TransactionBehavior, params};

use super::telemetry::limit_to_sql;
use super::{Store, StoreError};

/// Rows deleted per transaction by [`Store::prune_events`].
pub const PRUNE_EVENTS_CHUNK_ROWS: usize = 10_000;

/// Inserts one event unless one with its id is stored (a replay: same readings, same ids):
/// `ON CONFLICT (id)` only, so any other constraint still fails the commit loudly.
const INSERT_EVENT: &str = "
INSERT INTO events (id, tenant, device, shipment, geofence, type, ts_ms, body, tenant_seq,
                    stored_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,
        ifnull((SELECT last FROM event_counters WHERE tenant = ?2), 0) + 1, ?9)
ON CONFLICT (id) DO NOTHING";

/// Moves a tenant's counter to the number the event just inserted took.
const BUMP_COUNTER: &str = "
INSERT INTO event_counters (tenant, last) VALUES (?1, 1)
ON CONFLICT (tenant) DO UPDATE SET last = last + 1";

/// Stores `events` inside the caller's transaction (the commit's), numbering each within its
/// tenant; returns how many were new. `stored_ms` is the server time of the commit.
pub(super) fn insert_events(
    conn: &Connection,
    events: &[Event],
    stored_ms: TimestampMs,
) -> Result<usize, StoreError> {
    let mut insert = conn.prepare_cached(INSERT_EVENT)?;
    let mut bump = conn.prepare_cached(BUMP_COUNTER)?;
    let mut stored = 0;
    for event in events {
        let body = serde_json::to_string(event)?;
        let added = insert.execute(params![
            event.id,
            event.tenant,
            event.device,
            event.shipment,
            event.geofence,
            event.kind.as_str(),
            event.ts_ms,
            body,
            stored_ms,
        ])?;
        if added > 0 {
            bump.execute(params![event.tenant])?;
            stored += added;
        }
    }
    Ok(stored)
}

/// Which events [`Store::events_after`] returns. `Default` is every event of every tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only this tenant's events; `None` = every tenant (admin keys and the MQTT outbox only).
    pub tenant: Option<String>,
    /// Only events with a seq greater than this (the cursor; 0 = from the start). For
    /// [`Store::tenant_events_after`], the tenant's own event number instead.
    pub after_seq: i64,
    pub kind: Option<EventType>,
    pub device: Option<String>,
    pub shipment: Option<String>,
}

impl EventFilter {
    /// Every event of one tenant after the cursor.
    pub fn tenant(tenant: &str, after_seq: i64) -> EventFilter {
        EventFilter {
            tenant: Some(tenant.to_owned()),
            after_seq,
            ..EventFilter::default()
        }
    }
}

impl Store {
    /// Up to `limit` events matching `filter`, in seq order, with their seqs. The next page
    /// starts after the last seq returned; an empty page means caught up.
    pub fn events_after(
        &self,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<(i64, Event)>, StoreError> {
        let kind = filter.kind.map(EventType::as_str);
        let limit = limit_to_sql(limit);
        let conditions: Vec<(&str, &str)> = [
            ("tenant", filter.tenant.as_deref()),
            ("type", kind),
            ("device", filter.device.as_deref()),
            ("shipment", filter.shipment.as_deref()),
        ]
        .into_iter()
        .filter_map(|(column, value)| Some((column, value?)))
        .collect();
        let mut sql = String::from("SELECT seq, body FROM events WHERE seq > ?");
        let mut args: Vec<&dyn ToSql> = vec![&filter.after_seq];
        for (column, value) in &conditions {
            sql.push_str(" AND ");
            sql.push_str(column);
            sql.push_str(" = ?");
            args.push(value);
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        args.push(&limit);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(args.as_slice())?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let body: String = row.get(1)?;
            out.push((seq, serde_json::from_str(&body)?));
        }
        Ok(out)
    }

    /// Up to `limit` events of the filter's tenant (`filter.tenant` must be set) matching
    /// `filter`, after the tenant's own event number `filter.after_seq`, in order, with those
    /// numbers: the cursor of a tenant key's `GET /v1/events`, which reveals nothing about other
    /// tenants (see the module docs). An empty page means caught up.
    pub fn tenant_events_after(
        &self,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<(i64, Event)>, StoreError> {
        let Some(tenant) = filter.tenant.as_deref() else {
            return Err(StoreError::Corrupt {
                table: "events",
                reason: "tenant_events_after needs a tenant".to_owned(),
            });
        };
        let kind = filter.kind.map(EventType::as_str);
        let (device, shipment) = (filter.device.as_deref(), filter.shipment.as_deref());
        let limit = limit_to_sql(limit);
        let mut sql = String::from("SELECT tenant_seq, body FROM events WHERE tenant = ?");
        let mut args: Vec<&dyn ToSql> = vec![&tenant];
        // One equality at most besides the tenant picks its index (tenant, column, tenant_seq);
        // the others filter what it finds.
        for (column, value) in [
            ("type", &kind),
            ("device", &device),
            ("shipment", &shipment),
        ] {
            if let Some(value) = value {
                sql.push_str(" AND ");
                sql.push_str(column);
                sql.push_str(" = ?");
                args.push(value);
            }
        }
        sql.push_str(" AND tenant_seq > ? ORDER BY tenant_seq LIMIT ?");
        args.push(&filter.after_seq);
        args.push(&limit);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(args.as_slice())?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let number: i64 = row.get(0)?;
            let body: String = row.get(1)?;
            out.push((number, serde_json::from_str(&body)?));
        }
        Ok(out)
    }

    /// The last event number of `tenant` (0 for none): where a tenant that only wants new
    /// events starts [`Store::tenant_events_after`].
    pub fn tenant_event_seq_max(&self, tenant: &str) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT last FROM event_counters WHERE tenant = ?1")?
            .query_row(params![tenant], |row| row.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// Retention: deletes events *stored* before `older_than_ms` (server clock) and returns
    /// how many, like [`Store::prune_telemetry`]: from the oldest seq up in transactions of
    /// [`PRUNE_EVENTS_CHUNK_ROWS`] rows, stopping at the first chunk that holds a newer event.
    /// Retention may overtake a sink's cursor (the broker or InfluxDB down for longer): what it
    /// deletes is no longer delivered.
    pub fn prune_events(&mut self, older_than_ms: TimestampMs) -> Result<usize, StoreError> {
        let mut deleted = 0;
        let mut after = 0i64;
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (last, newest): (Option<i64>, Option<i64>) = tx
                .prepare_cached(
                    "SELECT max(seq), max(stored_ms) FROM
                     (SELECT seq, stored_ms FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
                )?
                .query_row(
                    params![after, limit_to_sql(PRUNE_EVENTS_CHUNK_ROWS)],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?;
            let (Some(last), Some(newest)) = (last, newest) else {
                break; // no rows left; `tx` rolls back its reads
            };
            deleted += tx
                .prepare_cached(
                    "DELETE FROM events WHERE seq > ?1 AND seq <= ?2 AND stored_ms < ?3",
                )?
                .execute(params![after, last, older_than_ms])?;
            tx.commit()?;
            after = last;
            if newest >= older_than_ms {
                break;
            }
        }
        Ok(deleted)
    }

    /// The highest event seq ever assigned (0 for none): where a consumer that only wants new
    /// events starts.
    pub fn event_seq_max(&self) -> Result<i64, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ifnull((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
        )?;
        Ok(stmt.query_row([], |row| row.get(0))?)
    }
}
