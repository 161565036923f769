//! Persistent MQTT sessions of Landport's own endpoint (landport-ingest's `endpoint`).
//!
//! A client that connects with a persistent session (3.1.1 `clean_session = false`, 5 a
//! session expiry above 0) keeps its subscriptions and its place in the event log across a
//! disconnect and a restart of Landport: one row per client id. `cursor` is the event `seq`
//! up to which the client has everything its subscriptions match (QoS 1: acknowledged); on
//! reconnect it gets the events after it, up to what retention kept. `owner` names who the
//! session belongs to (the endpoint's principal, e.g. `tenant:acme`): a client id reused by
//! someone else starts a new session instead of inheriting another's subscriptions.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

/// One stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSession {
    /// The MQTT client id it is kept under.
    pub client_id: String,
    /// Who it belongs to (the endpoint's rendering of the principal).
    pub owner: String,
    /// Topic filters with their granted QoS (0 or 1), in the order subscribed.
    pub subscriptions: Vec<(String, u8)>,
    /// Event seq delivered (QoS 1: acknowledged) up to.
    pub cursor: i64,
    /// Seconds the session outlives a disconnect; `None` = until retention (3.1.1).
    pub expiry_seconds: Option<u32>,
    /// Server time of the last disconnect, epoch ms; `None` while connected.
    pub disconnected_ms: Option<i64>,
}

impl Store {
    /// The session stored under `client_id`, if any.
    pub fn mqtt_session(&self, client_id: &str) -> Result<Option<MqttSession>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT owner, subscriptions, cursor, expiry_seconds, disconnected_ms
             FROM mqtt_sessions WHERE client_id = ?1",
        )?;
        let row = stmt
            .query_row(params![client_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })
            .optional()?;
        let Some((owner, subs, cursor, expiry, disconnected_ms)) = row else {
            return Ok(None);
        };
        Ok(Some(MqttSession {
            client_id: client_id.to_owned(),
            owner,
            subscriptions: serde_json::from_str(&subs)?,
            cursor,
            expiry_seconds: expiry.map(|e| e.clamp(0, i64::from(u32::MAX)) as u32),
            disconnected_ms,
        }))
    }

    /// Stores `session` (replacing the one under its client id).
    pub fn save_mqtt_session(&mut self, session: &MqttSession) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO mqtt_sessions
                 (client_id, owner, subscriptions, cursor, expiry_seconds, disconnected_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (client_id) DO UPDATE SET
                 owner = excluded.owner, subscriptions = excluded.subscriptions,
                 cursor = excluded.cursor, expiry_seconds = excluded.expiry_seconds,
                 disconnected_ms = excluded.disconnected_ms",
        )?;
        stmt.execute(params![
            session.client_id,
            session.owner,
            serde_json::to_string(&session.subscriptions)?,
            session.cursor,
            session.expiry_seconds.map(i64::from),
            session.disconnected_ms,
        ])?;
        Ok(())
    }

    /// Moves a stored session's cursor (no-op for an unknown client id).
    pub fn set_mqtt_session_cursor(
        &mut self,
        client_id: &str,
        cursor: i64,
    ) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("UPDATE mqtt_sessions SET cursor = ?2 WHERE client_id = ?1")?;
        stmt.execute(params![client_id, cursor])?;
        Ok(())
    }

    /// Forgets the session under `client_id` (a clean start, or an expired session).
    pub fn delete_mqtt_session(&mut self, client_id: &str) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM mqtt_sessions WHERE client_id = ?1")?;
        stmt.execute(params![client_id])?;
        Ok(())
    }

    /// Deletes the sessions that expired by `now_ms` (disconnected longer than their expiry),
    /// and those disconnected before `oldest_ms` whatever their expiry (older than the event
    /// retention: nothing is left to resume). Returns how many went.
    pub fn prune_mqtt_sessions(
        &mut self,
        now_ms: i64,
        oldest_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "DELETE FROM mqtt_sessions WHERE disconnected_ms IS NOT NULL AND (
                 disconnected_ms < ?2
                 OR (expiry_seconds IS NOT NULL AND disconnected_ms + expiry_seconds * 1000 < ?1))",
        )?;
        Ok(stmt.execute(params![now_ms, oldest_ms])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> MqttSession {
        MqttSession {
            client_id: id.into(),
            owner: "tenant:acme".into(),
            subscriptions: vec![("landport/acme/+/events".into(), 1)],
            cursor: 0,
            expiry_seconds: Some(60),
            disconnected_ms: None,
        }
    }

    #[test]
    fn a_session_survives_reopening_the_store_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.mqtt_session("app").unwrap(), None);
        store.save_mqtt_session(&session("app")).unwrap();
        store.set_mqtt_session_cursor("app", 42).unwrap();
        drop(store);
        let mut store = Store::open(dir.path()).unwrap();
        let mut s = store.mqtt_session("app").unwrap().unwrap();
        assert_eq!(s.cursor, 42);
        assert_eq!(s.subscriptions, session("app").subscriptions);
        // Connected sessions never expire; a disconnected one after its expiry.
        assert_eq!(store.prune_mqtt_sessions(i64::MAX / 2, 0).unwrap(), 0);
        s.disconnected_ms = Some(1_000);
        store.save_mqtt_session(&s).unwrap();
        assert_eq!(store.prune_mqtt_sessions(60_000, 0).unwrap(), 0);
        assert_eq!(store.prune_mqtt_sessions(61_001, 0).unwrap(), 1);
        assert_eq!(store.mqtt_session("app").unwrap(), None);
        // Without an expiry (3.1.1), only retention ends it.
        let mut forever = session("gw");
        forever.expiry_seconds = None;
        forever.disconnected_ms = Some(1_000);
        store.save_mqtt_session(&forever).unwrap();
        assert_eq!(store.prune_mqtt_sessions(i64::MAX / 2, 0).unwrap(), 0);
        assert_eq!(store.prune_mqtt_sessions(i64::MAX / 2, 2_000).unwrap(), 1);
        store.save_mqtt_session(&forever).unwrap();
        store.delete_mqtt_session("gw").unwrap();
        assert_eq!(store.mqtt_session("gw").unwrap(), None);
    }
}
