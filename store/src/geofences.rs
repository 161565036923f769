//! Geofence definitions, as [`GeofenceDef`] JSON.

use landport_tracker::GeofenceDef;
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params, params_from_iter};

use super::{Store, StoreError};

/// A stored geofence. Its id is `def.id`.
#[derive(Debug, Clone, PartialEq)]
pub struct GeofenceRecord {
    pub tenant: String,
    pub def: GeofenceDef,
    /// When it was created or last replaced, server clock, epoch milliseconds.
    pub updated_ms: i64,
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<(String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn decode((tenant, def, updated_ms): (String, String, i64)) -> Result<GeofenceRecord, StoreError> {
    Ok(GeofenceRecord {
        tenant,
        def: serde_json::from_str(&def)?,
        updated_ms,
    })
}

impl Store {
    /// Adds a geofence (`POST`); [`StoreError::AlreadyExists`] when the tenant has one with
    /// that id.
    pub fn insert_geofence(&mut self, fence: &GeofenceRecord) -> Result<(), StoreError> {
        let def = serde_json::to_string(&fence.def)?;
        self.conn
            .prepare_cached(
                "INSERT INTO geofences (tenant, id, def, updated_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![fence.tenant, fence.def.id, def, fence.updated_ms])
            .map_err(|e| StoreError::conflict(e, "geofence", &fence.def.id))?;
        Ok(())
    }

    /// Creates or replaces a geofence (`PUT`); `true` when it was created.
    pub fn put_geofence(&mut self, fence: &GeofenceRecord) -> Result<bool, StoreError> {
        let def = serde_json::to_string(&fence.def)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let replaced = tx
            .prepare_cached(
                "UPDATE geofences SET def = ?3, updated_ms = ?4 WHERE tenant = ?1 AND id = ?2",
            )?
            .execute(params![fence.tenant, fence.def.id, def, fence.updated_ms])?
            > 0;
        if !replaced {
            tx.prepare_cached(
                "INSERT INTO geofences (tenant, id, def, updated_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![fence.tenant, fence.def.id, def, fence.updated_ms])?;
        }
        tx.commit()?;
        Ok(!replaced)
    }

    pub fn get_geofence(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<GeofenceRecord>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT tenant, def, updated_ms FROM geofences WHERE tenant = ?1 AND id = ?2",
            )?
            .query_row(params![tenant, id], from_row)
            .optional()?
            .map(decode)
            .transpose()
    }

    /// The geofences of `tenant` (`None` = every tenant: admin, and the pipeline when it
    /// builds the tracker without a snapshot), by tenant and id.
    pub fn list_geofences(&self, tenant: Option<&str>) -> Result<Vec<GeofenceRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT tenant, def, updated_ms FROM geofences {} ORDER BY tenant, id",
            super::tenant_scope(tenant)
        ))?;
        let rows = stmt.query_map(params_from_iter(tenant), from_row)?;
        rows.map(|row| decode(row?)).collect()
    }

    /// At most `limit` geofences of `tenant` (`None` = every tenant) after the `(tenant, id)`
    /// key `after`, by tenant and id: one page of a list.
    pub fn list_geofences_page(
        &self,
        tenant: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<GeofenceRecord>, StoreError> {
        let (scope, params) = super::page_scope(tenant, after);
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT tenant, def, updated_ms FROM geofences {scope} ORDER BY tenant, id LIMIT {limit}"
        ))?;
        let rows = stmt.query_map(params_from_iter(params), from_row)?;
        rows.map(|row| decode(row?)).collect()
    }

    /// How many geofences `tenant` has.
    pub fn count_geofences(&self, tenant: &str) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM geofences WHERE tenant = ?1")?
            .query_row(params![tenant], |row| row.get(0))?)
    }

    /// `false` when the tenant has no geofence with that id.
    pub fn delete_geofence(&mut self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM geofences WHERE tenant = ?1 AND id = ?2")?
            .execute(params![tenant, id])?
            > 0)
    }
}
