//! Named cursors of the consumers that tail the store (the InfluxDB sink over telemetry
//! rowids, the MQTT event publisher over event seqs).
//!
//! A consumer reads a page after its cursor, delivers it, waits for the far side to confirm,
//! and only then calls [`Store::set_cursor`], in a transaction of its own. The cursor is not
//! moved inside [`Store::commit`]: the delivery it records happens outside the database, after
//! the commit, so moving it with the data would mark rows delivered that never were. A crash
//! between delivery and `set_cursor` delivers the page again (at-least-once), and both far
//! sides absorb that: InfluxDB overwrites a point with the same series and time, MQTT
//! consumers drop an event id they have seen.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

impl Store {
    /// The value of a cursor; 0 when it was never set.
    pub fn cursor(&self, name: &str) -> Result<i64, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT value FROM cursors WHERE name = ?1")?;
        Ok(stmt
            .query_row(params![name], |row| row.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// Sets a cursor (durable when this returns). It may move backwards, e.g. to re-send.
    pub fn set_cursor(&mut self, name: &str, value: i64) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO cursors (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )?;
        stmt.execute(params![name, value])?;
        Ok(())
    }
}
