//! Cluster mode: the registry log position of a shard's store.
//!
//! In cluster mode each partition's store is a complete single-node store (a "shard") and
//! every registry write (tenants, keys, devices, geofences, shipments, webhooks...) reaches it
//! as an entry of the replicated registry log, a JetStream stream, applied in stream order.
//! The store remembers the stream sequence of the last entry it applied, so that a shard that
//! restarts (or a new owner of the partition that kept the directory) resumes after it.
//!
//! The sequence is written after the entry's own transaction, not inside it (the entry is
//! applied through the HTTP router, which commits on its own), so a crash between the two
//! applies that entry again on restart: the cluster crate makes that harmless (ids, keys and
//! times of an entry are derived from it, so a repeated create is a conflict, not a copy).

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

impl Store {
    /// The stream sequence of the last registry entry this store applied; 0 when none.
    pub fn registry_applied_seq(&self) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .conn
            .prepare_cached("SELECT applied_seq FROM cluster_registry WHERE id = 1")?
            .query_row([], |row| row.get(0))
            .optional()?;
        Ok(seq.map_or(0, |s| u64::try_from(s).unwrap_or(0)))
    }

    /// Records that the registry entry at stream sequence `seq` is applied (durable when this
    /// returns, with `synchronous = FULL`; with `NORMAL`, a power loss may forget the last
    /// few, which are then applied again). It may move backwards (a test replaying entries).
    pub fn set_registry_applied_seq(&mut self, seq: u64, now_ms: i64) -> Result<(), StoreError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(
                "INSERT INTO cluster_registry (id, applied_seq, updated_ms) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET applied_seq = excluded.applied_seq,
                     updated_ms = excluded.updated_ms",
            )?
            .execute(params![seq, now_ms])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_applied_seq_starts_at_zero_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.registry_applied_seq().unwrap(), 0);
        store.set_registry_applied_seq(41, 1_000).unwrap();
        store.set_registry_applied_seq(42, 2_000).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.registry_applied_seq().unwrap(), 42);
        assert_eq!(store.reader().unwrap().registry_applied_seq().unwrap(), 42);
    }

    #[test]
    fn the_applied_seq_may_move_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.set_registry_applied_seq(9, 1_000).unwrap();
        store.set_registry_applied_seq(3, 2_000).unwrap();
        assert_eq!(store.registry_applied_seq().unwrap(), 3);
    }
}
