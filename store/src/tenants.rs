//! Tenants and their API keys.
//!
//! Keys are stored as SHA-256 hashes ([`KeyHash`]); the key itself is shown to the user once
//! and never reaches the store. A plain, unsalted hash is enough because keys are random
//! secrets with at least 128 bits of entropy (not passwords): nothing can be guessed from the
//! hash, and an unsalted hash can be looked up by index on every request.

use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use super::{Store, StoreError};

/// SHA-256 of an API key or a share token: what the store keeps instead of the secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Hashes a secret (the bearer key or share token exactly as the client sends it).
    pub fn of(secret: &str) -> KeyHash {
        KeyHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Lower-case hex, for logs and tests.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads [`KeyHash::to_hex`]'s form back; `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<KeyHash> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(KeyHash(out))
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    /// Display name, e.g. `Acme Logistics`.
    pub name: String,
    /// When it was created, server clock, epoch milliseconds.
    pub created_ms: i64,
}

/// An API key as listed: never the key, nor its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub tenant: String,
    pub created_ms: i64,
    /// When it was revoked (server clock, epoch milliseconds); a revoked key no longer
    /// authenticates.
    pub revoked_ms: Option<i64>,
}

fn tenant_from_row(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: row.get(0)?,
        name: row.get(1)?,
        created_ms: row.get(2)?,
    })
}

impl Store {
    /// Creates a tenant; [`StoreError::AlreadyExists`] when the id is taken.
    pub fn create_tenant(&mut self, tenant: &Tenant) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT INTO tenants (id, name, created_ms) VALUES (?1, ?2, ?3)")?
            .execute(params![tenant.id, tenant.name, tenant.created_ms])
            .map_err(|e| StoreError::conflict(e, "tenant", &tenant.id))?;
        Ok(())
    }

    pub fn get_tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, name, created_ms FROM tenants WHERE id = ?1")?
            .query_row(params![id], tenant_from_row)
            .optional()?)
    }

    /// Every tenant, by id.
    pub fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, name, created_ms FROM tenants ORDER BY id")?;
        let rows = stmt.query_map([], tenant_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Renames a tenant; `false` when there is none with that id.
    pub fn rename_tenant(&mut self, id: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("UPDATE tenants SET name = ?2 WHERE id = ?1")?
            .execute(params![id, name])?
            > 0)
    }

    /// Deletes a tenant with its keys, devices, geofences, shipments and share tokens, in one
    /// transaction; `false` when there was no such tenant. Its telemetry goes with retention;
    /// its events stay (admin lists still show them).
    pub fn delete_tenant(&mut self, id: &str) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for table in [
            "api_keys",
            "devices",
            "geofences",
            "shipments",
            "share_tokens",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE tenant = ?1"),
                params![id],
            )?;
        }
        let existed = tx.execute("DELETE FROM tenants WHERE id = ?1", params![id])? > 0;
        tx.commit()?;
        Ok(existed)
    }

    /// Stores a new key of `tenant` by its hash; `false` (and nothing stored) when there is no
    /// such tenant, [`StoreError::AlreadyExists`] when the key id or the hash is taken.
    pub fn create_api_key(
        &mut self,
        tenant: &str,
        key_id: &str,
        hash: &KeyHash,
        created_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "INSERT INTO api_keys (id, tenant, hash, created_ms)
                 SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?2)",
            )?
            .execute(params![key_id, tenant, hash.0, created_ms])
            .map_err(|e| StoreError::conflict(e, "api key", key_id))?
            > 0)
    }

    /// The `(key id, tenant)` of the unrevoked key with this hash: authentication.
    pub fn lookup_key_hash(&self, hash: &KeyHash) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, tenant FROM api_keys WHERE hash = ?1 AND revoked_ms IS NULL",
            )?
            .query_row(params![hash.0], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    /// The keys of a tenant, revoked ones included, oldest first.
    pub fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, tenant, created_ms, revoked_ms FROM api_keys WHERE tenant = ?1
             ORDER BY created_ms, id",
        )?;
        let rows = stmt.query_map(params![tenant], |row| {
            Ok(ApiKey {
                id: row.get(0)?,
                tenant: row.get(1)?,
                created_ms: row.get(2)?,
                revoked_ms: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a key of `tenant`; `false` when the tenant has no such unrevoked key.
    pub fn revoke_api_key(
        &mut self,
        tenant: &str,
        key_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE api_keys SET revoked_ms = ?3
                 WHERE tenant = ?1 AND id = ?2 AND revoked_ms IS NULL",
            )?
            .execute(params![tenant, key_id, now_ms])?
            > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_sha256() {
        // FIPS 180-2 test vector
        assert_eq!(
            KeyHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
