//! Who may connect to Landport's MQTT endpoint (SPEC 12): the store-backed
//! [`Authenticator`].
//!
//! | CONNECT carries | accepted as | else |
//! | --- | --- | --- |
//! | username `{tenant}/{device}`, password the device's credential | [`Principal::Device`] | bad user name or password |
//! | username `{tenant}`, password one of the tenant's API keys (not revoked) | [`Principal::Tenant`] | bad user name or password |
//! | no username, no password | [`Principal::Anonymous`] as `mqtt.anonymous_tenant`, when `mqtt.allow_anonymous` | not authorized |
//! | anything else (a password without a username, a username with more levels) | | bad user name or password |
//!
//! Wrong credentials never fall back to anonymous access: a device configured with a revoked
//! password is refused even where anonymous clients are welcome, so the mistake shows.
//! Each refusal is counted in `landport_mqtt_auth_denied_total{reason}` and logged, at most one
//! line per reason every 10 s (with how many were held back), so a client retrying a wrong
//! password in a loop cannot flood the log.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use landport_ingest::endpoint::auth::{AuthError, Authenticator, Principal};
use landport_pipeline::log_limit::KeyedLogLimiter;
use landport_pipeline::metrics::Metrics;
use landport_store::{KeyHash, Store, StoreError};

/// Checks CONNECT credentials against the store's device credentials and tenant keys.
pub struct StoreAuthenticator {
    /// A read-only connection of its own. A std Mutex: held for one indexed lookup on the
    /// endpoint's blocking-capable context, never across an `.await`.
    store: Mutex<Store>,
    /// `Some(tenant)`: clients without credentials act as this tenant; `None`: refused.
    anonymous: Option<String>,
    metrics: Arc<Metrics>,
    /// One log line per refusal reason per interval.
    log_limit: Mutex<KeyedLogLimiter>,
}

impl StoreAuthenticator {
    /// `anonymous`: the tenant clients without credentials act as, or `None` to refuse them
    /// (`mqtt.allow_anonymous`, `mqtt.anonymous_tenant`).
    pub fn new(store: Store, anonymous: Option<String>, metrics: Arc<Metrics>) -> Self {
        StoreAuthenticator {
            store: Mutex::new(store),
            anonymous,
            metrics,
            log_limit: Mutex::new(KeyedLogLimiter::new(Duration::from_secs(10))),
        }
    }

    fn decide(&self, username: Option<&str>, password: Option<&[u8]>) -> Result<Principal, Denial> {
        let username = username.filter(|u| !u.is_empty());
        let Some(username) = username else {
            if password.is_some_and(|p| !p.is_empty()) {
                return Err(Denial::UnknownUser);
            }
            return match &self.anonymous {
                Some(tenant) => Ok(Principal::Anonymous {
                    tenant: tenant.clone(),
                }),
                None => Err(Denial::NoCredentials),
            };
        };
        let password = password.unwrap_or_default();
        let mut levels = username.split('/');
        let (tenant, device) = (levels.next().unwrap_or_default(), levels.next());
        if levels.next().is_some()
            || landport_tracker::check_id(tenant).is_err()
            || device.is_some_and(|d| landport_tracker::check_id(d).is_err())
        {
            return Err(Denial::UnknownUser);
        }
        if password.is_empty() {
            return Err(Denial::BadPassword);
        }
        // A std Mutex: one lookup, no `.await` while held.
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        match device {
            Some(device) => {
                if store
                    .check_device_credential(tenant, device, password)
                    .map_err(Denial::Unavailable)?
                {
                    Ok(Principal::Device {
                        tenant: tenant.to_owned(),
                        device: device.to_owned(),
                    })
                } else {
                    Err(Denial::BadPassword)
                }
            }
            None => {
                let found = store
                    .lookup_key_hash(&KeyHash::of_bytes(password))
                    .map_err(Denial::Unavailable)?;
                match found {
                    // A key of another tenant is as wrong as any other password.
                    Some((_key_id, key_tenant)) if key_tenant == tenant => Ok(Principal::Tenant {
                        tenant: tenant.to_owned(),
                    }),
                    _ => Err(Denial::BadPassword),
                }
            }
        }
    }
}

/// Why a CONNECT was refused, as counted and logged.
#[derive(Debug)]
enum Denial {
    NoCredentials,
    UnknownUser,
    BadPassword,
    Unavailable(StoreError),
}

impl Denial {
    fn reason(&self) -> &'static str {
        match self {
            Denial::NoCredentials => "no_credentials",
            Denial::UnknownUser => "unknown_user",
            Denial::BadPassword => "bad_password",
            Denial::Unavailable(_) => "unavailable",
        }
    }

    fn error(&self) -> AuthError {
        match self {
            Denial::NoCredentials => AuthError::NotAuthorized,
            Denial::UnknownUser | Denial::BadPassword => AuthError::BadCredentials,
            Denial::Unavailable(_) => AuthError::Unavailable,
        }
    }
}

impl Authenticator for StoreAuthenticator {
    fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<Principal, AuthError> {
        self.decide(username, password).map_err(|denial| {
            let reason = denial.reason();
            self.metrics.auth_denied(reason);
            let allowed = self
                .log_limit
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .allow(reason);
            if let Some(suppressed) = allowed {
                // The username says who tried; the password never reaches the log.
                let user = username.map(|u| u.chars().take(130).collect::<String>());
                match &denial {
                    Denial::Unavailable(e) => tracing::warn!(
                        reason,
                        username = user,
                        error = %e,
                        suppressed,
                        "MQTT connect refused: the credentials could not be checked"
                    ),
                    _ => {
                        tracing::info!(reason, username = user, suppressed, "MQTT connect refused")
                    }
                }
            }
            denial.error()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use landport_store::DeviceRecord;

    struct Fixture {
        _dir: tempfile::TempDir,
        auth: StoreAuthenticator,
        metrics: Arc<Metrics>,
    }

    /// Tenant `acme` with key `acme-key` and device `truck-1` with password `truck-pw`;
    /// tenant `globex` with key `globex-key`.
    fn fixture(anonymous: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        for (tenant, key) in [("acme", "acme-key"), ("globex", "globex-key")] {
            store
                .create_tenant(&landport_store::Tenant {
                    id: tenant.into(),
                    name: tenant.into(),
                    created_ms: 0,
                })
                .unwrap();
            store
                .create_api_key(tenant, &format!("key_{tenant}"), &KeyHash::of(key), 0)
                .unwrap();
        }
        store
            .insert_device(&DeviceRecord {
                tenant: "acme".into(),
                id: "truck-1".into(),
                name: "truck-1".into(),
                kind: String::new(),
                profile: serde_json::json!({}),
                created_ms: 0,
            })
            .unwrap();
        store
            .set_device_credential("acme", "truck-1", &KeyHash::of("truck-pw"), 0)
            .unwrap();
        let metrics = Metrics::new();
        let auth = StoreAuthenticator::new(
            store.reader().unwrap(),
            anonymous.map(str::to_owned),
            metrics.clone(),
        );
        Fixture {
            _dir: dir,
            auth,
            metrics,
        }
    }

    fn denied(f: &Fixture, reason: &str) -> u64 {
        let text = f.metrics.render();
        let line = format!("landport_mqtt_auth_denied_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |n| n.parse().unwrap())
    }

    #[test]
    fn a_device_credential_authenticates_as_that_device() {
        let f = fixture(None);
        assert_eq!(
            f.auth.authenticate(Some("acme/truck-1"), Some(b"truck-pw")),
            Ok(Principal::Device {
                tenant: "acme".into(),
                device: "truck-1".into()
            })
        );
        for (user, pw) in [
            ("acme/truck-1", &b"wrong"[..]),
            ("acme/truck-1", b""),
            ("acme/truck-2", b"truck-pw"),
            ("globex/truck-1", b"truck-pw"),
            // A tenant key is not a device's password.
            ("acme/truck-1", b"acme-key"),
        ] {
            assert_eq!(
                f.auth.authenticate(Some(user), Some(pw)),
                Err(AuthError::BadCredentials),
                "{user}"
            );
        }
        assert_eq!(denied(&f, "bad_password"), 5);
    }

    #[test]
    fn a_tenant_key_authenticates_as_its_tenant_only() {
        let f = fixture(None);
        assert_eq!(
            f.auth.authenticate(Some("acme"), Some(b"acme-key")),
            Ok(Principal::Tenant {
                tenant: "acme".into()
            })
        );
        assert_eq!(
            f.auth.authenticate(Some("globex"), Some(b"acme-key")),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            f.auth.authenticate(Some("acme"), Some(b"truck-pw")),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            f.auth.authenticate(Some("acme"), None),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(denied(&f, "bad_password"), 3);
    }

    #[test]
    fn anonymous_clients_act_as_the_anonymous_tenant_when_allowed() {
        let f = fixture(Some("default"));
        let anon = Ok(Principal::Anonymous {
            tenant: "default".into(),
        });
        assert_eq!(f.auth.authenticate(None, None), anon);
        assert_eq!(f.auth.authenticate(Some(""), None), anon);
        assert_eq!(f.auth.authenticate(Some(""), Some(b"")), anon);
        // Wrong credentials are refused, not taken as anonymous.
        assert_eq!(
            f.auth.authenticate(Some("acme"), Some(b"nope")),
            Err(AuthError::BadCredentials)
        );
        let f = fixture(None);
        assert_eq!(
            f.auth.authenticate(None, None),
            Err(AuthError::NotAuthorized)
        );
        assert_eq!(denied(&f, "no_credentials"), 1);
    }

    #[test]
    fn malformed_usernames_are_unknown_users() {
        let f = fixture(Some("default"));
        for user in [
            "acme/truck-1/x",
            "/truck-1",
            "acme/",
            "a+b",
            "acme/#",
            "ac me",
            "acme/..",
        ] {
            assert_eq!(
                f.auth.authenticate(Some(user), Some(b"truck-pw")),
                Err(AuthError::BadCredentials),
                "{user}"
            );
        }
        // A password without a username (MQTT 5 allows it) says nothing of who it is.
        assert_eq!(
            f.auth.authenticate(None, Some(b"acme-key")),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(denied(&f, "unknown_user"), 8);
    }

    #[test]
    fn a_revoked_credential_or_key_is_refused() {
        let f = fixture(None);
        // Revoke through a writer on the same store.
        let mut writer = Store::open(f._dir.path()).unwrap();
        assert!(writer.delete_device_credential("acme", "truck-1").unwrap());
        assert!(writer.revoke_api_key("acme", "key_acme", 1).unwrap());
        assert_eq!(
            f.auth.authenticate(Some("acme/truck-1"), Some(b"truck-pw")),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            f.auth.authenticate(Some("acme"), Some(b"acme-key")),
            Err(AuthError::BadCredentials)
        );
    }
}
