//! Reading stored events by cursor (`GET /v1/events`, the MQTT outbox, SSE catch-up).
//!
//! Events are written by [`Store::commit`](super::Store::commit). Each has a `seq`, assigned in
//! commit order and never reused: the cursor. The envelope is kept as JSON (`body`) so that
//! fields added to [`Event`] later need no migration; tenant, device, shipment, geofence, type
//! and ts are copied into columns for the filters.

use landport_tracker::{Event, EventType};
use rusqlite::ToSql;

use super::telemetry::limit_to_sql;
use super::{Store, StoreError};

/// Which events [`Store::events_after`] returns. `Default` is every event of every tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only this tenant's events; `None` = every tenant (admin keys and the MQTT outbox only).
    pub tenant: Option<String>,
    /// Only events with a seq greater than this (the cursor; 0 = from the start).
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

    /// The highest event seq ever assigned (0 for none): where a consumer that only wants new
    /// events starts.
    pub fn event_seq_max(&self) -> Result<i64, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ifnull((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
        )?;
        Ok(stmt.query_row([], |row| row.get(0))?)
    }
}
