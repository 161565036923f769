//! Telemetry history and the commit of the pipeline (readings and events in one transaction).
//!
//! # Duplicates
//!
//! SPEC 11: a reading is a duplicate when a stored one has the same tenant, device and `ts`,
//! and the same `seq` *when both carry one*. That relation is not an equivalence — `(t, 5)`
//! matches `(t, none)`, which matches `(t, 6)`, yet `(t, 5)` and `(t, 6)` are both kept — so no
//! unique key can express it: a key `(tenant, device, ts, seq or sentinel)` would keep a
//! reading with a seq beside one without. So each reading is first looked up
//! (`DUPLICATE_OF`: same tenant, device and ts, and either seq NULL or both equal) and
//! inserted only when that finds nothing, which implements the rule exactly. The lookup uses
//! the index the track query needs anyway (`tenant, device, ts_ms`): one more B-tree probe, no
//! extra index. It is race-free because the commit holds SQLite's write lock from its first
//! statement (`BEGIN IMMEDIATE`) to its end. When readings that duplicate one another arrive,
//! the first one stored wins. (A look-up plus a plain `INSERT ... VALUES` costs about 40 %
//! less CPU than one `INSERT ... SELECT ... WHERE NOT EXISTS`, which SQLite runs with a
//! statement journal.)
//!
//! Most readings need no look-up at all: a reading is a duplicate only of one with the same
//! `ts`, so one newer than everything stored for its device cannot be one. The writer's
//! connection remembers the newest `ts` it knows stored per device ([`NewestStored`]) and
//! looks up only readings at or before it (late readings, redeliveries after a crash, a
//! device seen for the first time). The look-up was as costly as the insert itself (a
//! second descent of the same index), and in-order readings are nearly all of ingest.

use std::collections::HashMap;

use landport_tracker::{Event, Fix, Reading, TimestampMs};
use rusqlite::{Row, Transaction, TransactionBehavior, params};

use super::{Store, StoreError};

/// Rows deleted per transaction by [`Store::prune_telemetry`].
pub const PRUNE_CHUNK_ROWS: usize = 10_000;

/// One accepted reading, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryRow {
    pub tenant: String,
    pub device: String,
    /// The shipment the device carried when the reading arrived, if any (an InfluxDB tag).
    pub shipment: Option<String>,
    pub reading: Reading,
    /// Server time when the reading was received, epoch milliseconds; retention goes by it.
    pub received_ms: TimestampMs,
}

/// What one [`Store::commit`] added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Committed {
    /// Readings stored (the rest were duplicates).
    pub readings: usize,
    /// Events stored (the rest had ids already stored).
    pub events: usize,
    /// The highest telemetry rowid ever assigned, after this commit: every reading given to
    /// this and earlier commits has a rowid at most this. Save it with the tracker snapshot.
    pub last_rowid: i64,
    /// The highest event seq ever assigned, after this commit. Seqs only grow, but may skip
    /// numbers: an insert that conflicts on the id may spend one.
    pub last_event_seq: i64,
}

/// Finds a stored reading that the reading `(?1 tenant, ?2 device, ?3 ts_ms, ?4 seq)` would
/// duplicate.
const DUPLICATE_OF: &str = "
SELECT 1 FROM telemetry
WHERE tenant = ?1 AND device = ?2 AND ts_ms = ?3 AND (seq IS NULL OR ?4 IS NULL OR seq = ?4)";

/// The newest stored `ts` of the device `(?1 tenant, ?2 device)`, NULL when it has none.
const NEWEST_OF: &str = "SELECT max(ts_ms) FROM telemetry WHERE tenant = ?1 AND device = ?2";

/// The highest telemetry rowid and event seq ever assigned (0 for none).
const SEQUENCES: &str =
    "SELECT ifnull((SELECT seq FROM sqlite_sequence WHERE name = 'telemetry'), 0),
            ifnull((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)";

/// The highest event seq ever assigned (0 for none).
const EVENTS_SEQ: &str =
    "SELECT ifnull((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)";

/// Devices [`NewestStored`] remembers at most; past that it starts over (a device it
/// forgot costs one look-up, as every reading did before). About 100 bytes each.
const NEWEST_STORED_MAX_DEVICES: usize = 200_000;

/// Per device, a `ts` at or after the newest of its stored readings, as this connection
/// knows it: a reading with a later `ts` cannot be a duplicate, and [`Store::commit`]
/// stores it without looking. Never below the truth, which is what makes skipping safe:
/// - an entry is made from the store itself (`max(ts_ms)`, inside the commit's write
///   transaction) and raised by each reading this connection inserts;
/// - a commit that fails leaves entries raised by readings it did not store: too high only
///   means looking when there was no need;
/// - retention deletes only lower the truth;
/// - another connection inserting readings would raise it behind our back: every commit
///   first compares the telemetry rowid counter with the one its last commit left, and
///   forgets everything when they differ.
#[derive(Debug, Default)]
pub(crate) struct NewestStored {
    /// Key: [`NewestStored::key`] of (tenant, device).
    ts_ms: HashMap<Box<[u8]>, TimestampMs>,
    /// The telemetry rowid counter (`sqlite_sequence`) after this connection's last
    /// commit; `None` before the first.
    telemetry_seq: Option<i64>,
    /// Where keys are built for look-ups, so a look-up allocates nothing.
    scratch: Vec<u8>,
}

impl NewestStored {
    /// The tenant's length, the tenant, the device: unambiguous for any strings.
    fn key(scratch: &mut Vec<u8>, tenant: &str, device: &str) {
        scratch.clear();
        scratch.extend_from_slice(&(tenant.len() as u64).to_le_bytes());
        scratch.extend_from_slice(tenant.as_bytes());
        scratch.extend_from_slice(device.as_bytes());
    }

    /// Whether a reading of `(tenant, device)` at `ts_ms` may duplicate a stored one, so
    /// must be looked up. Reads the device's newest stored `ts` on first sight.
    fn may_be_stored(
        &mut self,
        tx: &Transaction<'_>,
        tenant: &str,
        device: &str,
        ts_ms: TimestampMs,
    ) -> Result<bool, StoreError> {
        Self::key(&mut self.scratch, tenant, device);
        let newest = match self.ts_ms.get(self.scratch.as_slice()) {
            Some(&newest) => Some(newest),
            None => {
                let newest: Option<TimestampMs> = tx
                    .prepare_cached(NEWEST_OF)?
                    .query_row(params![tenant, device], |row| row.get(0))?;
                if let Some(newest) = newest {
                    self.remember(newest);
                }
                newest
            }
        };
        Ok(newest.is_some_and(|newest| ts_ms <= newest))
    }

    /// Records that a reading of the device whose key was built last was stored at `ts_ms`.
    fn stored(&mut self, ts_ms: TimestampMs) {
        match self.ts_ms.get_mut(self.scratch.as_slice()) {
            Some(newest) => *newest = (*newest).max(ts_ms),
            None => self.remember(ts_ms),
        }
    }

    /// A first entry for the device whose key was built last (starting over when full).
    fn remember(&mut self, ts_ms: TimestampMs) {
        if self.ts_ms.len() >= NEWEST_STORED_MAX_DEVICES {
            self.ts_ms.clear();
        }
        self.ts_ms.insert(self.scratch.as_slice().into(), ts_ms);
    }
}

const INSERT_READING: &str = "
INSERT INTO telemetry (tenant, device, shipment, ts_ms, seq, lat, lon, speed_kmh, heading_deg,
                       accuracy_m, temp_c, weight_kg, battery_pct, received_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

const READING_COLUMNS: &str = "ts_ms, seq, lat, lon, speed_kmh, heading_deg, accuracy_m, \
                               temp_c, weight_kg, battery_pct";

/// `seq` is a `u64` and SQLite integers are `i64`: stored bit-for-bit (values past `i64::MAX`
/// become negative), which keeps equality and the round trip exact.
fn seq_to_sql(seq: Option<u64>) -> Option<i64> {
    seq.map(|s| s as i64)
}

/// Decodes the [`READING_COLUMNS`] starting at column `at`.
fn reading_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<Reading> {
    let lat: Option<f64> = row.get(at + 2)?;
    let lon: Option<f64> = row.get(at + 3)?;
    let fix = match (lat, lon) {
        (Some(lat), Some(lon)) => Some(Fix {
            lat,
            lon,
            speed_kmh: row.get(at + 4)?,
            heading_deg: row.get(at + 5)?,
            accuracy_m: row.get(at + 6)?,
        }),
        _ => None,
    };
    Ok(Reading {
        ts_ms: row.get(at)?,
        seq: row.get::<_, Option<i64>>(at + 1)?.map(|s| s as u64),
        fix,
        temp_c: row.get(at + 7)?,
        weight_kg: row.get(at + 8)?,
        battery_pct: row.get(at + 9)?,
    })
}

impl Store {
    /// Stores readings and events in one transaction, skipping events whose id is already
    /// stored and duplicate readings: a reading is dropped when a stored one (or an earlier one
    /// of the same call) has the same tenant, device and `ts_ms`, and the same `seq` unless
    /// either has none (SPEC 11; the first stored wins). Pass the readings in the order the
    /// tracker applied them: replay after a restart follows rowid order.
    ///
    /// When this returns `Ok`, everything is durable against a process crash; acknowledge the
    /// MQTT messages only then. On `Err` nothing was stored.
    pub fn commit(
        &mut self,
        readings: &[TelemetryRow],
        events: &[Event],
    ) -> Result<Committed, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let newest = &mut self.newest_stored;
        let mut committed = Committed::default();
        {
            // Under the write lock: nobody else can insert readings until this commits.
            (committed.last_rowid, committed.last_event_seq) = tx
                .prepare_cached(SEQUENCES)?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            if newest.telemetry_seq != Some(committed.last_rowid) {
                newest.ts_ms.clear();
            }
            let mut duplicate_of = tx.prepare_cached(DUPLICATE_OF)?;
            let mut insert = tx.prepare_cached(INSERT_READING)?;
            for row in readings {
                let r = &row.reading;
                let seq = seq_to_sql(r.seq);
                if newest.may_be_stored(&tx, &row.tenant, &row.device, r.ts_ms)?
                    && duplicate_of.exists(params![row.tenant, row.device, r.ts_ms, seq])?
                {
                    continue;
                }
                let fix = r.fix.as_ref();
                let inserted = insert.execute(params![
                    row.tenant,
                    row.device,
                    row.shipment,
                    r.ts_ms,
                    seq,
                    fix.map(|f| f.lat),
                    fix.map(|f| f.lon),
                    fix.and_then(|f| f.speed_kmh),
                    fix.and_then(|f| f.heading_deg),
                    fix.and_then(|f| f.accuracy_m),
                    r.temp_c,
                    r.weight_kg,
                    r.battery_pct,
                    row.received_ms,
                ])?;
                committed.readings += inserted;
                if inserted > 0 {
                    // AUTOINCREMENT: the counter moves to each new rowid, so after the last
                    // insert it is that insert's rowid.
                    committed.last_rowid = tx.last_insert_rowid();
                }
                newest.stored(r.ts_ms);
            }
            if !events.is_empty() {
                committed.events += super::events::insert_events(&tx, events, now_ms())?;
                // An id already stored may have spent a seq: ask the counter.
                committed.last_event_seq = tx
                    .prepare_cached(EVENTS_SEQ)?
                    .query_row([], |row| row.get(0))?;
            }
        }
        // Set before the outcome is known: if the commit fails, the next one finds the
        // counter lower than this and starts over.
        newest.telemetry_seq = Some(committed.last_rowid);
        tx.commit()?;
        Ok(committed)
    }

    /// Up to `limit` stored readings with a rowid greater than `after_rowid`, in rowid order,
    /// with their rowids: the InfluxDB sink's tail, and the replay after a snapshot.
    pub fn readings_after(
        &self,
        after_rowid: i64,
        limit: usize,
    ) -> Result<Vec<(i64, TelemetryRow)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, tenant, device, shipment, received_ms, {READING_COLUMNS}
             FROM telemetry WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![after_rowid, limit_to_sql(limit)], |row| {
            Ok((
                row.get(0)?,
                TelemetryRow {
                    tenant: row.get(1)?,
                    device: row.get(2)?,
                    shipment: row.get(3)?,
                    received_ms: row.get(4)?,
                    reading: reading_from_row(row, 5)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` readings of one device of one tenant with `from_ms <= ts <= to_ms` (device
    /// time, epoch milliseconds, both ends included), oldest first; readings with the same `ts`
    /// in the order they were stored. Includes readings without a position.
    pub fn track(
        &self,
        tenant: &str,
        device: &str,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {READING_COLUMNS} FROM telemetry
             WHERE tenant = ?1 AND device = ?2 AND ts_ms >= ?3 AND ts_ms <= ?4
             ORDER BY ts_ms, id LIMIT ?5"
        ))?;
        let rows = stmt.query_map(
            params![tenant, device, from_ms, to_ms, limit_to_sql(limit)],
            |row| reading_from_row(row, 0),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The highest telemetry rowid ever assigned (0 for none); rowids are never reused.
    pub fn telemetry_rowid_max(&self) -> Result<i64, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ifnull((SELECT seq FROM sqlite_sequence WHERE name = 'telemetry'), 0)",
        )?;
        Ok(stmt.query_row([], |row| row.get(0))?)
    }

    /// Retention: deletes readings *received* before `older_than_ms` (server clock), and returns
    /// how many. Works from the oldest rowid up in transactions of [`PRUNE_CHUNK_ROWS`] rows, so
    /// another connection's writer waits for one chunk at most, and stops at the first chunk
    /// holding a reading received at or after the cutoff: rowids follow arrival, so the rest is
    /// newer (a reading behind the first newer one, e.g. after the server clock stepped back,
    /// waits for a later prune).
    ///
    /// Retention may overtake a consumer's cursor (InfluxDB down longer than the retention) or
    /// the last snapshot: rows it deletes are no longer delivered or replayed.
    pub fn prune_telemetry(&mut self, older_than_ms: TimestampMs) -> Result<usize, StoreError> {
        let mut deleted = 0;
        let mut after = 0i64;
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (last, newest): (Option<i64>, Option<i64>) = tx
                .prepare_cached(
                    "SELECT max(id), max(received_ms) FROM
                     (SELECT id, received_ms FROM telemetry WHERE id > ?1 ORDER BY id LIMIT ?2)",
                )?
                .query_row(params![after, limit_to_sql(PRUNE_CHUNK_ROWS)], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            let (Some(last), Some(newest)) = (last, newest) else {
                break; // no rows left; `tx` rolls back its reads
            };
            deleted += tx
                .prepare_cached(
                    "DELETE FROM telemetry WHERE id > ?1 AND id <= ?2 AND received_ms < ?3",
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
}

/// The server clock, epoch milliseconds (when events are stored, for their retention).
fn now_ms() -> TimestampMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// SQLite's `LIMIT` takes an `i64`; a negative one means no limit, so clamp instead of wrap.
pub(super) fn limit_to_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(device: &str, reading: Reading) -> TelemetryRow {
        TelemetryRow {
            tenant: "acme".into(),
            device: device.into(),
            shipment: None,
            reading,
            received_ms: 1_000,
        }
    }

    #[test]
    fn the_duplicate_check_uses_the_device_index() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let plan: Vec<String> = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {DUPLICATE_OF}"))
            .unwrap()
            .query_map(params!["acme", "d", 1, 2], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|l| l.contains("telemetry_by_device_ts")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|l| l.starts_with("SCAN telemetry")),
            "{plan:?}"
        );
    }

    #[test]
    fn a_seq_past_i64_max_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let r = Reading::at(5).with_seq(u64::MAX);
        store.commit(&[row("d", r)], &[]).unwrap();
        assert_eq!(store.track("acme", "d", 0, 10, 10).unwrap(), vec![r]);
        // a reading without a seq is a duplicate of it, and so is one with the same seq
        let again = store
            .commit(&[row("d", Reading::at(5)), row("d", r)], &[])
            .unwrap();
        assert_eq!(again.readings, 0);
    }

    #[test]
    fn a_reading_another_connection_stored_is_still_a_duplicate() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = Store::open(tmp.path()).unwrap();
        let mut other = Store::open(tmp.path()).unwrap();
        writer.commit(&[row("d", Reading::at(10))], &[]).unwrap();
        // Behind the writer's back: a newer reading of the same device.
        other.commit(&[row("d", Reading::at(20))], &[]).unwrap();
        let again = writer.commit(&[row("d", Reading::at(20))], &[]).unwrap();
        assert_eq!(
            again.readings, 0,
            "the writer must look, not trust what it knew"
        );
        // Also when the other connection's reading came between two event-only commits.
        writer.commit(&[], &[]).unwrap();
        other.commit(&[row("d", Reading::at(30))], &[]).unwrap();
        writer.commit(&[], &[]).unwrap();
        assert_eq!(
            writer
                .commit(&[row("d", Reading::at(30))], &[])
                .unwrap()
                .readings,
            0
        );
        assert_eq!(writer.track("acme", "d", 0, 100, 10).unwrap().len(), 3);
    }

    #[test]
    fn a_failed_commit_leaves_its_readings_to_be_stored_by_the_next() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        store.commit(&[row("d", Reading::at(10))], &[]).unwrap();
        store
            .conn
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON telemetry WHEN NEW.ts_ms = 30
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let batch = [row("d", Reading::at(20)), row("d", Reading::at(30))];
        assert!(store.commit(&batch, &[]).is_err());
        store.conn.execute_batch("DROP TRIGGER refuse").unwrap();
        assert_eq!(store.commit(&batch, &[]).unwrap().readings, 2);
        assert_eq!(store.commit(&batch, &[]).unwrap().readings, 0);
    }

    proptest::proptest! {
        /// Whatever the order, lateness and repetition of readings over several commits,
        /// what is stored is what SPEC 11's rule, applied one reading at a time to
        /// everything stored before it, keeps.
        #[test]
        fn what_is_stored_follows_spec_11_like_a_look_up_of_every_reading(
            commits in proptest::collection::vec(
                proptest::collection::vec((0u8..3, 0i64..12, proptest::option::of(0u64..3)), 0..12),
                1..8,
            ),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let mut store = Store::open(tmp.path()).unwrap();
            let mut model: Vec<(String, i64, Option<u64>)> = Vec::new();
            for batch in &commits {
                let rows: Vec<TelemetryRow> = batch
                    .iter()
                    .map(|&(d, ts, seq)| {
                        let r = Reading { seq, ..Reading::at(ts) };
                        row(&format!("d{d}"), r)
                    })
                    .collect();
                let mut expected = 0;
                for r in &rows {
                    let dup = model.iter().any(|(d, ts, seq)| {
                        *d == r.device
                            && *ts == r.reading.ts_ms
                            && (seq.is_none() || r.reading.seq.is_none() || *seq == r.reading.seq)
                    });
                    if !dup {
                        model.push((r.device.clone(), r.reading.ts_ms, r.reading.seq));
                        expected += 1;
                    }
                }
                let committed = store.commit(&rows, &[]).unwrap();
                proptest::prop_assert_eq!(committed.readings, expected);
                proptest::prop_assert_eq!(committed.last_rowid, store.telemetry_rowid_max().unwrap());
            }
            let stored: Vec<(String, i64, Option<u64>)> = store
                .readings_after(0, 1_000)
                .unwrap()
                .into_iter()
                .map(|(_, r)| (r.device, r.reading.ts_ms, r.reading.seq))
                .collect();
            proptest::prop_assert_eq!(stored, model);
        }
    }

    #[test]
    fn a_huge_limit_does_not_mean_none() {
        assert_eq!(limit_to_sql(usize::MAX), i64::MAX);
    }
}
