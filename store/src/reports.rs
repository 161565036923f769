//! Reads for the reports of SPEC 14: a device's history streamed row by row, geofence visits
//! paired from the stored `geofence.entered` / `geofence.exited` events, and a shipment's
//! events (departure, ETAs, arrival).
//!
//! The history of a month at 1 Hz is millions of rows: [`Store::for_each_reading`] hands them
//! to the caller one at a time from SQLite's cursor (the `(tenant, device, ts_ms)` index gives
//! them in time order), so nothing collects them. Keep the callback quick, or run it on a
//! connection of its own ([`Store::reader`]): the read transaction lasts until it returns.

use std::collections::HashMap;

use landport_tracker::Fix;
use landport_tracker::{Event, EventType, Reading, TimestampMs};
use rusqlite::{Row, params};

use super::{Store, StoreError};

/// The columns [`reading_from_row`] decodes (the same as the track query's).
const READING_COLUMNS: &str = "ts_ms, seq, lat, lon, speed_kmh, heading_deg, accuracy_m, \
                               temp_c, weight_kg, battery_pct";

/// Decodes [`READING_COLUMNS`].
fn reading_from_row(row: &Row<'_>) -> rusqlite::Result<Reading> {
    let lat: Option<f64> = row.get(2)?;
    let lon: Option<f64> = row.get(3)?;
    let fix = match (lat, lon) {
        (Some(lat), Some(lon)) => Some(Fix {
            lat,
            lon,
            speed_kmh: row.get(4)?,
            heading_deg: row.get(5)?,
            accuracy_m: row.get(6)?,
        }),
        _ => None,
    };
    Ok(Reading {
        ts_ms: row.get(0)?,
        seq: row.get::<_, Option<i64>>(1)?.map(|s| s as u64),
        fix,
        temp_c: row.get(7)?,
        weight_kg: row.get(8)?,
        battery_pct: row.get(9)?,
    })
}

/// A stay of a device in a geofence, from its stored events.
#[derive(Debug, Clone, PartialEq)]
pub struct Visit {
    pub device: String,
    pub geofence: String,
    /// The `geofence.entered` event's time (the estimated crossing), epoch milliseconds.
    pub entered_ms: TimestampMs,
    /// The `geofence.exited` event's time; `None` while the device is still inside.
    pub exited_ms: Option<TimestampMs>,
}

/// Which visits [`Store::geofence_visits`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitFilter<'a> {
    pub tenant: &'a str,
    /// Visits that overlap `[from_ms, to_ms]` (entered by `to_ms`, not exited before
    /// `from_ms`).
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    pub geofence: Option<&'a str>,
    pub device: Option<&'a str>,
}

impl Store {
    /// Caps this connection's page cache at `kib` KiB (SQLite's `cache_size`; connections
    /// start with 64 MiB for the writer's sake). A report reads its rows once, in index
    /// order: a small cache costs it nothing and keeps each report's memory small.
    pub fn set_cache_size_kib(&self, kib: u32) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "cache_size", -i64::from(kib))?;
        Ok(())
    }

    /// Calls `f` with each reading of `device` of `tenant` with `from_ms <= ts <= to_ms`
    /// (device time, both ends included), oldest first (readings with the same `ts` in the
    /// order they were stored), without collecting them. Stops at the first error `f`
    /// returns, and returns it.
    pub fn for_each_reading<E: From<StoreError>>(
        &self,
        tenant: &str,
        device: &str,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        mut f: impl FnMut(Reading) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {READING_COLUMNS} FROM telemetry
                 WHERE tenant = ?1 AND device = ?2 AND ts_ms >= ?3 AND ts_ms <= ?4
                 ORDER BY ts_ms, id"
            ))
            .map_err(StoreError::from)?;
        let mut rows = stmt
            .query(params![tenant, device, from_ms, to_ms])
            .map_err(StoreError::from)?;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            f(reading_from_row(row).map_err(StoreError::from)?)?;
        }
        Ok(())
    }

    /// Whether `tenant` has any reading of `device` (registered or not).
    pub fn has_history(&self, tenant: &str, device: &str) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM telemetry WHERE tenant = ?1 AND device = ?2 LIMIT 1")?;
        Ok(stmt.exists(params![tenant, device])?)
    }

    /// The geofence visits of a tenant that overlap a time range, in order of entry, paired
    /// from its `geofence.entered` and `geofence.exited` events in event-time order. An exit
    /// with no stored entry (retention took it) starts no visit; a second entry while a visit
    /// is open (which the tracker does not emit) keeps the first. Reads every entry and exit
    /// up to `to_ms`, one at a time, keeping only the visits still open.
    pub fn geofence_visits(&self, q: &VisitFilter<'_>) -> Result<Vec<Visit>, StoreError> {
        let mut sql = String::from(
            "SELECT device, geofence, type, ts_ms FROM events
             WHERE tenant = ?1 AND type IN ('geofence.entered', 'geofence.exited')
               AND geofence IS NOT NULL AND ts_ms <= ?2",
        );
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&q.tenant, &q.to_ms];
        if let Some(g) = &q.geofence {
            args.push(g);
            sql.push_str(&format!(" AND geofence = ?{}", args.len()));
        }
        if let Some(d) = &q.device {
            args.push(d);
            sql.push_str(&format!(" AND device = ?{}", args.len()));
        }
        sql.push_str(" ORDER BY ts_ms, seq");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(args.as_slice())?;
        let mut open: HashMap<(String, String), TimestampMs> = HashMap::new();
        let mut visits = Vec::new();
        let entered = EventType::GeofenceEntered.as_str();
        while let Some(row) = rows.next()? {
            let device: String = row.get(0)?;
            let geofence: String = row.get(1)?;
            let kind: String = row.get(2)?;
            let ts_ms: TimestampMs = row.get(3)?;
            if kind == entered {
                open.entry((device, geofence)).or_insert(ts_ms);
            } else if let Some(entered_ms) = open.remove(&(device.clone(), geofence.clone()))
                && ts_ms >= q.from_ms
            {
                visits.push(Visit {
                    device,
                    geofence,
                    entered_ms,
                    exited_ms: Some(ts_ms),
                });
            }
        }
        visits.extend(
            open.into_iter()
                .map(|((device, geofence), entered_ms)| Visit {
                    device,
                    geofence,
                    entered_ms,
                    exited_ms: None,
                }),
        );
        visits.sort_by(|a, b| {
            (a.entered_ms, &a.device, &a.geofence).cmp(&(b.entered_ms, &b.device, &b.geofence))
        });
        Ok(visits)
    }

    /// The stored events of one shipment of `tenant` with one of `kinds`, in event-time
    /// order (a shipment has a handful: departure, ETA changes, excursions, arrival).
    pub fn shipment_events(
        &self,
        tenant: &str,
        shipment: &str,
        kinds: &[EventType],
    ) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT type, body FROM events WHERE tenant = ?1 AND shipment = ?2
             ORDER BY ts_ms, tenant_seq",
        )?;
        let mut rows = stmt.query(params![tenant, shipment])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let kind: String = row.get(0)?;
            if kinds.iter().any(|k| k.as_str() == kind) {
                let body: String = row.get(1)?;
                out.push(serde_json::from_str(&body)?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::TelemetryRow;

    const T0: i64 = 1_795_400_000_000;

    fn fence_event(kind: EventType, device: &str, fence: &str, ts: i64) -> Event {
        Event::build(kind, "acme", device)
            .at(ts)
            .geofence(fence)
            .data(json!({}))
    }

    #[test]
    fn readings_stream_in_time_order_within_the_range_only() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let rows: Vec<TelemetryRow> = [5, 1, 3, 9, 7]
            .iter()
            .map(|s| TelemetryRow {
                tenant: "acme".into(),
                device: "t1".into(),
                shipment: None,
                reading: Reading::at(T0 + s * 1000).with_temp(*s as f64),
                received_ms: T0,
            })
            .collect();
        store.commit(&rows, &[]).unwrap();
        let mut seen = Vec::new();
        store
            .for_each_reading::<StoreError>("acme", "t1", T0 + 2000, T0 + 7000, |r| {
                seen.push(r.ts_ms - T0);
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, [3000, 5000, 7000]);
        // another tenant's device of the same name has no history
        assert!(!store.has_history("other", "t1").unwrap());
        assert!(store.has_history("acme", "t1").unwrap());
        // the callback's error stops the scan
        let mut n = 0;
        let err = store.for_each_reading("acme", "t1", T0, T0 + 9000, |_| {
            n += 1;
            Err(StoreError::Thread("stop"))
        });
        assert!(err.is_err());
        assert_eq!(n, 1);
    }

    #[test]
    fn visits_pair_entries_with_exits_and_leave_open_ones_open() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        use EventType::{GeofenceEntered as In, GeofenceExited as Out};
        let events = [
            fence_event(In, "t1", "port", T0),
            fence_event(Out, "t1", "port", T0 + 600_000),
            fence_event(In, "t2", "port", T0 + 100_000),
            fence_event(In, "t1", "depot", T0 + 900_000),
            fence_event(Out, "t3", "port", T0 + 50_000), // entry lost to retention
        ];
        store.commit(&[], &events).unwrap();
        let q = VisitFilter {
            tenant: "acme",
            from_ms: T0,
            to_ms: T0 + 3_600_000,
            geofence: None,
            device: None,
        };
        let v = store.geofence_visits(&q).unwrap();
        let got: Vec<_> = v
            .iter()
            .map(|v| {
                (
                    v.device.as_str(),
                    v.geofence.as_str(),
                    v.entered_ms - T0,
                    v.exited_ms,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("t1", "port", 0, Some(T0 + 600_000)),
                ("t2", "port", 100_000, None),
                ("t1", "depot", 900_000, None),
            ]
        );
        // filters, and a range after the first visit ended
        let q2 = VisitFilter {
            from_ms: T0 + 700_000,
            geofence: Some("port"),
            ..q.clone()
        };
        let v = store.geofence_visits(&q2).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].device, "t2");
        let q3 = VisitFilter {
            device: Some("t1"),
            to_ms: T0 + 500_000,
            ..q.clone()
        };
        let v = store.geofence_visits(&q3).unwrap();
        assert_eq!(
            (v.len(), v[0].exited_ms),
            (1, None),
            "exit after `to` not read"
        );
        let other = VisitFilter {
            tenant: "other",
            ..q
        };
        assert!(store.geofence_visits(&other).unwrap().is_empty());
    }
}
