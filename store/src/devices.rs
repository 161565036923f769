//! The device registry (live state comes from the tracker, not from here).

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params, params_from_iter};

use super::{Store, StoreError};

/// A registered device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    pub tenant: String,
    pub id: String,
    pub name: String,
    /// `truck`, `sensor`, or anything else the user chose.
    pub kind: String,
    /// Free-form settings (JSON object), e.g. an offline timeout or a vehicle profile.
    pub profile: serde_json::Value,
    /// When it was registered, server clock, epoch milliseconds.
    pub created_ms: i64,
}

const COLUMNS: &str = "tenant, id, name, kind, profile, created_ms";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(DeviceRecord, String)> {
    Ok((
        DeviceRecord {
            tenant: row.get(0)?,
            id: row.get(1)?,
            name: row.get(2)?,
            kind: row.get(3)?,
            profile: serde_json::Value::Null,
            created_ms: row.get(5)?,
        },
        row.get(4)?,
    ))
}

fn decode((mut device, profile): (DeviceRecord, String)) -> Result<DeviceRecord, StoreError> {
    device.profile = serde_json::from_str(&profile)?;
    Ok(device)
}

fn get(conn: &Connection, tenant: &str, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM devices WHERE tenant = ?1 AND id = ?2"
    ))?
    .query_row(params![tenant, id], from_row)
    .optional()?
    .map(decode)
    .transpose()
}

fn update(conn: &Connection, device: &DeviceRecord) -> Result<bool, StoreError> {
    let profile = serde_json::to_string(&device.profile)?;
    Ok(conn
        .prepare_cached(
            "UPDATE devices SET name = ?3, kind = ?4, profile = ?5
             WHERE tenant = ?1 AND id = ?2",
        )?
        .execute(params![
            device.tenant,
            device.id,
            device.name,
            device.kind,
            profile
        ])?
        > 0)
}

impl Store {
    /// Registers a device in `device.tenant`; [`StoreError::AlreadyExists`] when the tenant
    /// has one with that id.
    pub fn insert_device(&mut self, device: &DeviceRecord) -> Result<(), StoreError> {
        let profile = serde_json::to_string(&device.profile)?;
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO devices ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?
            .execute(params![
                device.tenant,
                device.id,
                device.name,
                device.kind,
                profile,
                device.created_ms
            ])
            .map_err(|e| StoreError::conflict(e, "device", &device.id))?;
        Ok(())
    }

    /// Replaces the name, kind and profile of a device of `device.tenant` (`created_ms` is
    /// kept); `false` when the tenant has no device with that id.
    pub fn update_device(&mut self, device: &DeviceRecord) -> Result<bool, StoreError> {
        update(&self.conn, device)
    }

    /// Reads a device of `tenant`, lets `change` make the new record from it and writes that
    /// back, in one transaction (as [`Store::update_shipment_with`]). `Ok(None)` and nothing
    /// written when the tenant has no device `id`; `change`'s error and nothing written when
    /// it refuses. `change` must keep the tenant and id.
    pub fn update_device_with<E: From<StoreError>>(
        &mut self,
        tenant: &str,
        id: &str,
        change: impl FnOnce(DeviceRecord) -> Result<DeviceRecord, E>,
    ) -> Result<Option<DeviceRecord>, E> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let Some(old) = get(&tx, tenant, id)? else {
            return Ok(None);
        };
        let new = change(old)?;
        if new.tenant != tenant || new.id != id {
            return Err(StoreError::Corrupt {
                table: "devices",
                reason: format!(
                    "a change of {tenant}/{id} moved it to {}/{}",
                    new.tenant, new.id
                ),
            }
            .into());
        }
        update(&tx, &new)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(Some(new))
    }

    pub fn get_device(&self, tenant: &str, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        get(&self.conn, tenant, id)
    }

    /// The devices of `tenant` (`None` = every tenant: admin only), by tenant and id.
    pub fn list_devices(&self, tenant: Option<&str>) -> Result<Vec<DeviceRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM devices {} ORDER BY tenant, id",
            super::tenant_scope(tenant)
        ))?;
        let rows = stmt.query_map(params_from_iter(tenant), from_row)?;
        rows.map(|row| decode(row?)).collect()
    }

    /// At most `limit` devices of `tenant` (`None` = every tenant) after the `(tenant, id)` key
    /// `after`, by tenant and id: one page of a list.
    pub fn list_devices_page(
        &self,
        tenant: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let (scope, params) = super::page_scope(tenant, after);
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM devices {scope} ORDER BY tenant, id LIMIT {limit}"
        ))?;
        let rows = stmt.query_map(params_from_iter(params), from_row)?;
        rows.map(|row| decode(row?)).collect()
    }

    /// How many devices `tenant` has registered.
    pub fn count_devices(&self, tenant: &str) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM devices WHERE tenant = ?1")?
            .query_row(params![tenant], |row| row.get(0))?)
    }

    /// `false` when the tenant has no device with that id. Its history stays until retention.
    pub fn delete_device(&mut self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM devices WHERE tenant = ?1 AND id = ?2")?
            .execute(params![tenant, id])?
            > 0)
    }
}
