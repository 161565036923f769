//! Device credentials for Landport's MQTT endpoint (SPEC 12): one password per registered
//! device, kept as its SHA-256 hash ([`KeyHash`]).
//!
//! The API makes the password (256 random bits), shows it once and stores only the hash. A
//! plain, unsalted SHA-256 is the right hash here, as for API keys: the secret is random, not
//! chosen by a person, so there is nothing a dictionary or a brute-force search over the hash
//! could find (2^256 candidates), and a slow password hash (argon2, bcrypt) would only make
//! every MQTT CONNECT cost tens of milliseconds of CPU, which a flood of connects would turn
//! into a denial of service. The check compares the hashes in constant time.
//!
//! A device has at most one credential: setting a new one replaces the old (the old password
//! stops working at once). Deleting the device (or its tenant) deletes its credential too (a
//! trigger of the migration that made the table), so a device registered again later under the
//! same id does not inherit an old password.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{KeyHash, Store, StoreError};

/// What [`Store::set_device_credential`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSet {
    /// The tenant has no registered device with that id: nothing stored.
    NoSuchDevice,
    /// The device had no credential; it has this one now.
    Created,
    /// The device's old credential was replaced (it no longer authenticates).
    Replaced,
}

impl Store {
    /// Gives the registered device `tenant`/`device` the credential whose hash is `hash`,
    /// replacing any it had, in one transaction.
    pub fn set_device_credential(
        &mut self,
        tenant: &str,
        device: &str,
        hash: &KeyHash,
        now_ms: i64,
    ) -> Result<CredentialSet, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let registered = tx
            .prepare_cached("SELECT 1 FROM devices WHERE tenant = ?1 AND id = ?2")?
            .exists(params![tenant, device])?;
        if !registered {
            return Ok(CredentialSet::NoSuchDevice);
        }
        let had = tx
            .prepare_cached("SELECT 1 FROM device_credentials WHERE tenant = ?1 AND device = ?2")?
            .exists(params![tenant, device])?;
        tx.prepare_cached(
            "INSERT INTO device_credentials (tenant, device, hash, created_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, device) DO UPDATE SET hash = excluded.hash,
                                                         created_ms = excluded.created_ms",
        )?
        .execute(params![tenant, device, hash.0, now_ms])?;
        tx.commit()?;
        Ok(if had {
            CredentialSet::Replaced
        } else {
            CredentialSet::Created
        })
    }

    /// Revokes the credential of `tenant`/`device`; `false` when it had none.
    pub fn delete_device_credential(
        &mut self,
        tenant: &str,
        device: &str,
    ) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM device_credentials WHERE tenant = ?1 AND device = ?2")?
            .execute(params![tenant, device])?
            > 0)
    }

    /// When the credential of `tenant`/`device` was set (server clock, epoch milliseconds), or
    /// `None` when it has none.
    pub fn device_credential_created_ms(
        &self,
        tenant: &str,
        device: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT created_ms FROM device_credentials WHERE tenant = ?1 AND device = ?2",
            )?
            .query_row(params![tenant, device], |row| row.get(0))
            .optional()?)
    }

    /// Whether `password` is the current credential of `tenant`/`device`: authentication.
    /// `false` for a device without one (or unknown). The hashes are compared in constant
    /// time.
    pub fn check_device_credential(
        &self,
        tenant: &str,
        device: &str,
        password: &[u8],
    ) -> Result<bool, StoreError> {
        // Hashed first, whether or not the device has a credential, so that the time taken
        // does not tell which devices have one.
        let offered = KeyHash::of_bytes(password);
        let stored: Option<Vec<u8>> = self
            .conn
            .prepare_cached(
                "SELECT hash FROM device_credentials WHERE tenant = ?1 AND device = ?2",
            )?
            .query_row(params![tenant, device], |row| row.get(0))
            .optional()?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        Ok(constant_time_eq(&stored, &offered.0))
    }
}

impl KeyHash {
    /// Hashes a secret given as bytes (an MQTT password is binary data).
    pub fn of_bytes(secret: &[u8]) -> KeyHash {
        use sha2::{Digest, Sha256};
        KeyHash(Sha256::digest(secret).into())
    }
}

/// Compares two byte strings in time independent of where they differ (the lengths are not
/// secret: both are SHA-256 hashes).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceRecord;

    fn store_with_device() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        store
            .insert_device(&DeviceRecord {
                tenant: "acme".into(),
                id: "truck-1".into(),
                name: "Truck 1".into(),
                kind: "truck".into(),
                profile: serde_json::json!({}),
                created_ms: 1,
            })
            .unwrap();
        (tmp, store)
    }

    #[test]
    fn a_credential_authenticates_its_device_only_and_is_stored_hashed() {
        let (_tmp, mut store) = store_with_device();
        let set = store
            .set_device_credential("acme", "truck-1", &KeyHash::of("s3cret"), 10)
            .unwrap();
        assert_eq!(set, CredentialSet::Created);
        assert!(
            store
                .check_device_credential("acme", "truck-1", b"s3cret")
                .unwrap()
        );
        assert!(
            !store
                .check_device_credential("acme", "truck-1", b"s3cret ")
                .unwrap()
        );
        assert!(
            !store
                .check_device_credential("acme", "truck-1", b"")
                .unwrap()
        );
        assert!(
            !store
                .check_device_credential("acme", "truck-2", b"s3cret")
                .unwrap()
        );
        assert!(
            !store
                .check_device_credential("globex", "truck-1", b"s3cret")
                .unwrap()
        );
        assert_eq!(
            store
                .device_credential_created_ms("acme", "truck-1")
                .unwrap(),
            Some(10)
        );
        let raw: Vec<u8> = store
            .conn
            .query_row("SELECT hash FROM device_credentials", [], |r| r.get(0))
            .unwrap();
        assert_eq!(raw, KeyHash::of("s3cret").0);
    }

    #[test]
    fn a_new_credential_replaces_the_old_one() {
        let (_tmp, mut store) = store_with_device();
        store
            .set_device_credential("acme", "truck-1", &KeyHash::of("old"), 10)
            .unwrap();
        let set = store
            .set_device_credential("acme", "truck-1", &KeyHash::of("new"), 20)
            .unwrap();
        assert_eq!(set, CredentialSet::Replaced);
        assert!(
            !store
                .check_device_credential("acme", "truck-1", b"old")
                .unwrap()
        );
        assert!(
            store
                .check_device_credential("acme", "truck-1", b"new")
                .unwrap()
        );
    }

    #[test]
    fn only_a_registered_device_of_the_tenant_gets_a_credential() {
        let (_tmp, mut store) = store_with_device();
        for (tenant, device) in [("acme", "truck-2"), ("globex", "truck-1")] {
            assert_eq!(
                store
                    .set_device_credential(tenant, device, &KeyHash::of("x"), 1)
                    .unwrap(),
                CredentialSet::NoSuchDevice
            );
            assert!(!store.check_device_credential(tenant, device, b"x").unwrap());
        }
    }

    #[test]
    fn revoking_stops_the_credential_and_says_whether_there_was_one() {
        let (_tmp, mut store) = store_with_device();
        assert!(!store.delete_device_credential("acme", "truck-1").unwrap());
        store
            .set_device_credential("acme", "truck-1", &KeyHash::of("pw"), 1)
            .unwrap();
        assert!(!store.delete_device_credential("globex", "truck-1").unwrap());
        assert!(
            store
                .check_device_credential("acme", "truck-1", b"pw")
                .unwrap()
        );
        assert!(store.delete_device_credential("acme", "truck-1").unwrap());
        assert!(
            !store
                .check_device_credential("acme", "truck-1", b"pw")
                .unwrap()
        );
        assert!(!store.delete_device_credential("acme", "truck-1").unwrap());
    }

    #[test]
    fn deleting_the_device_or_its_tenant_deletes_its_credential() {
        let (_tmp, mut store) = store_with_device();
        store
            .set_device_credential("acme", "truck-1", &KeyHash::of("pw"), 1)
            .unwrap();
        assert!(store.delete_device("acme", "truck-1").unwrap());
        assert_eq!(
            store
                .device_credential_created_ms("acme", "truck-1")
                .unwrap(),
            None
        );
        // Registered again under the same id: the old password does not come back.
        store
            .insert_device(&DeviceRecord {
                tenant: "acme".into(),
                id: "truck-1".into(),
                name: "again".into(),
                kind: String::new(),
                profile: serde_json::json!({}),
                created_ms: 2,
            })
            .unwrap();
        assert!(
            !store
                .check_device_credential("acme", "truck-1", b"pw")
                .unwrap()
        );

        store
            .set_device_credential("acme", "truck-1", &KeyHash::of("pw2"), 3)
            .unwrap();
        store.delete_tenant("acme").unwrap();
        assert!(
            !store
                .check_device_credential("acme", "truck-1", b"pw2")
                .unwrap()
        );
    }

    #[test]
    fn hashes_compare_by_every_byte() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
