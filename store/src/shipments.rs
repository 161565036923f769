//! Shipments ([`ShipmentDef`] JSON plus a status column) and their share tokens.
//!
//! A share token is a secret in a public URL (`/v1/public/{token}`), stored hashed like an API
//! key ([`KeyHash`]). It opens one shipment of one tenant, and goes when the shipment does. A
//! shipment has at most one: making a new one revokes the old ([`Store::create_share`]), and
//! [`Store::revoke_shares`] revokes it. Its expiry is stored when explicit; the default rule
//! (from the shipment's arrival or deadline) is the API's, applied on each look-up.

use landport_tracker::{ShipmentDef, ShipmentStatus};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params, params_from_iter};

use super::{KeyHash, Store, StoreError};

/// A stored shipment. Its id is `def.id`, its device `def.device`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShipmentRecord {
    pub tenant: String,
    pub def: ShipmentDef,
    pub status: ShipmentStatus,
    /// When it was created or last changed, server clock, epoch milliseconds.
    pub updated_ms: i64,
}

/// What a share token opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareToken {
    pub tenant: String,
    pub shipment: String,
    /// When it was made, server clock, epoch milliseconds.
    pub created_ms: i64,
    /// When it stops opening the shipment, epoch milliseconds, when set explicitly; `None` =
    /// the default rule of the API (7 days after the shipment's arrival, else its deadline).
    pub expires_ms: Option<i64>,
}

const SHARE_COLUMNS: &str = "tenant, shipment, created_ms, expires_ms";

fn share_from_row(row: &Row<'_>) -> rusqlite::Result<ShareToken> {
    Ok(ShareToken {
        tenant: row.get(0)?,
        shipment: row.get(1)?,
        created_ms: row.get(2)?,
        expires_ms: row.get(3)?,
    })
}

const COLUMNS: &str = "tenant, def, status, updated_ms";

type RawShipment = (String, String, String, i64);

fn from_row(row: &Row<'_>) -> rusqlite::Result<RawShipment> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn decode((tenant, def, status, updated_ms): RawShipment) -> Result<ShipmentRecord, StoreError> {
    Ok(ShipmentRecord {
        tenant,
        def: serde_json::from_str(&def)?,
        status: parse_status(&status)?,
        updated_ms,
    })
}

fn parse_status(status: &str) -> Result<ShipmentStatus, StoreError> {
    // through serde, so that a status added to the tracker needs no change here
    serde_json::from_value(serde_json::Value::String(status.to_owned())).map_err(|_| {
        StoreError::Corrupt {
            table: "shipments",
            reason: format!("unknown status {status:?}"),
        }
    })
}

fn get(conn: &Connection, tenant: &str, id: &str) -> Result<Option<ShipmentRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM shipments WHERE tenant = ?1 AND id = ?2"
    ))?
    .query_row(params![tenant, id], from_row)
    .optional()?
    .map(decode)
    .transpose()
}

fn update(conn: &Connection, shipment: &ShipmentRecord) -> Result<bool, StoreError> {
    let def = serde_json::to_string(&shipment.def)?;
    Ok(conn
        .prepare_cached(
            "UPDATE shipments SET device = ?3, def = ?4, status = ?5, updated_ms = ?6
             WHERE tenant = ?1 AND id = ?2",
        )?
        .execute(params![
            shipment.tenant,
            shipment.def.id,
            shipment.def.device,
            def,
            shipment.status.as_str(),
            shipment.updated_ms
        ])?
        > 0)
}

impl Store {
    /// Adds a shipment; [`StoreError::AlreadyExists`] when the tenant has one with that id.
    pub fn insert_shipment(&mut self, shipment: &ShipmentRecord) -> Result<(), StoreError> {
        let def = serde_json::to_string(&shipment.def)?;
        self.conn
            .prepare_cached(
                "INSERT INTO shipments (tenant, id, device, def, status, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                shipment.tenant,
                shipment.def.id,
                shipment.def.device,
                def,
                shipment.status.as_str(),
                shipment.updated_ms
            ])
            .map_err(|e| StoreError::conflict(e, "shipment", &shipment.def.id))?;
        Ok(())
    }

    /// Replaces the definition and status of a shipment of `shipment.tenant`; `false` when
    /// the tenant has no shipment with that id.
    pub fn update_shipment(&mut self, shipment: &ShipmentRecord) -> Result<bool, StoreError> {
        update(&self.conn, shipment)
    }

    /// Reads a shipment of `tenant`, lets `change` make the new record from it and writes that
    /// back, in one transaction (`BEGIN IMMEDIATE`: no other connection writes in between, so
    /// concurrent changes of different members all land). `Ok(None)` and nothing written when
    /// the tenant has no shipment `id`; `change`'s error and nothing written when it refuses.
    /// `change` must keep the tenant and id.
    pub fn update_shipment_with<E: From<StoreError>>(
        &mut self,
        tenant: &str,
        id: &str,
        change: impl FnOnce(ShipmentRecord) -> Result<ShipmentRecord, E>,
    ) -> Result<Option<ShipmentRecord>, E> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let Some(old) = get(&tx, tenant, id)? else {
            return Ok(None);
        };
        let new = change(old)?;
        if new.tenant != tenant || new.def.id != id {
            return Err(StoreError::Corrupt {
                table: "shipments",
                reason: format!(
                    "a change of {tenant}/{id} moved it to {}/{}",
                    new.tenant, new.def.id
                ),
            }
            .into());
        }
        update(&tx, &new)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(Some(new))
    }

    /// Sets only the status (the pipeline, when the tracker moves a shipment on); `false` when
    /// the tenant has no shipment with that id.
    pub fn set_shipment_status(
        &mut self,
        tenant: &str,
        id: &str,
        status: ShipmentStatus,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE shipments SET status = ?3, updated_ms = ?4 WHERE tenant = ?1 AND id = ?2",
            )?
            .execute(params![tenant, id, status.as_str(), now_ms])?
            > 0)
    }

    pub fn get_shipment(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<ShipmentRecord>, StoreError> {
        get(&self.conn, tenant, id)
    }

    /// The shipments of `tenant` (`None` = every tenant: admin, and the pipeline when it
    /// builds the tracker without a snapshot), by tenant and id.
    pub fn list_shipments(&self, tenant: Option<&str>) -> Result<Vec<ShipmentRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM shipments {} ORDER BY tenant, id",
            super::tenant_scope(tenant)
        ))?;
        let rows = stmt.query_map(params_from_iter(tenant), from_row)?;
        rows.map(|row| decode(row?)).collect()
    }

    /// At most `limit` shipments of `tenant` (`None` = every tenant) after the `(tenant, id)`
    /// key `after`, by tenant and id: one page of a list.
    pub fn list_shipments_page(
        &self,
        tenant: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<ShipmentRecord>, StoreError> {
        let (scope, params) = super::page_scope(tenant, after);
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM shipments {scope} ORDER BY tenant, id LIMIT {limit}"
        ))?;
        let rows = stmt.query_map(params_from_iter(params), from_row)?;
        rows.map(|row| decode(row?)).collect()
    }

    /// How many shipments of `tenant` are active (neither delivered nor cancelled).
    pub fn count_active_shipments(&self, tenant: &str) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM shipments WHERE tenant = ?1
                 AND status NOT IN ('delivered', 'cancelled')",
            )?
            .query_row(params![tenant], |row| row.get(0))?)
    }

    /// The shipments a device of `tenant` carries or carried, by id.
    pub fn shipments_of_device(
        &self,
        tenant: &str,
        device: &str,
    ) -> Result<Vec<ShipmentRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM shipments WHERE tenant = ?1 AND device = ?2 ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![tenant, device], from_row)?;
        rows.map(|row| decode(row?)).collect()
    }

    /// Deletes a shipment and its share tokens; `false` when the tenant has no shipment with
    /// that id.
    pub fn delete_shipment(&mut self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("DELETE FROM share_tokens WHERE tenant = ?1 AND shipment = ?2")?
            .execute(params![tenant, id])?;
        let existed = tx
            .prepare_cached("DELETE FROM shipments WHERE tenant = ?1 AND id = ?2")?
            .execute(params![tenant, id])?
            > 0;
        tx.commit()?;
        Ok(existed)
    }

    /// Stores the share token of a shipment by its hash, revoking any earlier token of that
    /// shipment (a shipment has one link; making a new one is how it is rotated), in one
    /// transaction. `false` (and nothing stored or revoked) when `share.tenant` has no
    /// shipment `share.shipment`, so a token can only ever open a shipment of the tenant that
    /// made it.
    pub fn create_share(&mut self, share: &ShareToken, hash: &KeyHash) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if get(&tx, &share.tenant, &share.shipment)?.is_none() {
            return Ok(false);
        }
        tx.prepare_cached("DELETE FROM share_tokens WHERE tenant = ?1 AND shipment = ?2")?
            .execute(params![share.tenant, share.shipment])?;
        tx.prepare_cached(
            "INSERT INTO share_tokens (token_hash, tenant, shipment, created_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            hash.0,
            share.tenant,
            share.shipment,
            share.created_ms,
            share.expires_ms
        ])
        .map_err(|e| StoreError::conflict(e, "share token", &hash.to_hex()))?;
        tx.commit()?;
        Ok(true)
    }

    /// What the token with this hash opens (no tenant is known yet: the token decides it).
    /// Expiry is the caller's to check.
    pub fn lookup_share(&self, hash: &KeyHash) -> Result<Option<ShareToken>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {SHARE_COLUMNS} FROM share_tokens WHERE token_hash = ?1"
            ))?
            .query_row(params![hash.0], share_from_row)
            .optional()?)
    }

    /// The share token of a shipment of `tenant` (the newest, should a database from before
    /// one-link-per-shipment hold several), without its secret; `None` when it has none.
    pub fn share_of_shipment(
        &self,
        tenant: &str,
        shipment: &str,
    ) -> Result<Option<ShareToken>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {SHARE_COLUMNS} FROM share_tokens WHERE tenant = ?1 AND shipment = ?2
                 ORDER BY created_ms DESC LIMIT 1"
            ))?
            .query_row(params![tenant, shipment], share_from_row)
            .optional()?)
    }

    /// Revokes every share token of a shipment of `tenant`; `false` when there was none.
    pub fn revoke_shares(&mut self, tenant: &str, shipment: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM share_tokens WHERE tenant = ?1 AND shipment = ?2")?
            .execute(params![tenant, shipment])?
            > 0)
    }

    /// Revokes one share token of `tenant`; `false` when the tenant has no such token.
    pub fn revoke_share(&mut self, tenant: &str, hash: &KeyHash) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM share_tokens WHERE tenant = ?1 AND token_hash = ?2")?
            .execute(params![tenant, hash.0])?
            > 0)
    }
}
