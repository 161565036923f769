//! Tracker snapshots: the state the tracker needs to resume without re-firing events.
//!
//! A snapshot is opaque bytes (the pipeline chooses the encoding) plus `applied_rowid`: every
//! telemetry row with a rowid up to it had been applied to that state, and none after. On
//! restart the pipeline restores the newest snapshot it can decode and replays
//! [`Store::readings_after`] its `applied_rowid`. The last two are kept, so that a snapshot
//! this build cannot decode (or a bug in the newest) can fall back on the one before; replay
//! from the older one is longer but gives the same events.

use rusqlite::{TransactionBehavior, params};

use super::{Store, StoreError};

/// How many snapshots are kept.
const KEPT_SNAPSHOTS: i64 = 2;

impl Store {
    /// Stores a snapshot taken after applying every telemetry row up to `applied_rowid`
    /// (usually [`Committed::last_rowid`](super::Committed::last_rowid) of the last commit),
    /// and drops all but the newest two, in one transaction.
    pub fn save_snapshot(&mut self, bytes: &[u8], applied_rowid: i64) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("INSERT INTO snapshots (applied_rowid, bytes) VALUES (?1, ?2)")?
            .execute(params![applied_rowid, bytes])?;
        tx.prepare_cached(
            "DELETE FROM snapshots WHERE id <= (SELECT max(id) FROM snapshots) - ?1",
        )?
        .execute(params![KEPT_SNAPSHOTS])?;
        tx.commit()?;
        Ok(())
    }

    /// The newest snapshot and its `applied_rowid`, if any.
    pub fn load_snapshot(&self) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        Ok(self.snapshots(1)?.pop())
    }

    /// The kept snapshots (at most two), newest first.
    pub fn load_snapshots(&self) -> Result<Vec<(Vec<u8>, i64)>, StoreError> {
        self.snapshots(KEPT_SNAPSHOTS)
    }

    fn snapshots(&self, limit: i64) -> Result<Vec<(Vec<u8>, i64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT bytes, applied_rowid FROM snapshots ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
