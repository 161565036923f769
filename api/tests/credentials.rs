//! `POST/DELETE /v1/devices/{id}/credentials` (SPEC 12) through the router: a registered
//! device gets a random password shown once and stored hashed; a new one replaces the old;
//! DELETE revokes; other tenants' and unknown devices are 404; replacing and revoking tell
//! the revocation hook (the MQTT endpoint's).

mod support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use landport_api::{CredentialRevoked, Revoked, on_credential_revoked};
use landport_store::Store;
use serde_json::{Value, json};
use support::TestApi;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-key-for-the-credential-tests";

struct App {
    api: TestApi,
    router: Router,
    /// What the revocation hook was told, in order.
    revoked: Arc<Mutex<Vec<(String, String)>>>,
}

impl App {
    fn new() -> App {
        let api = TestApi::new(ADMIN);
        let revoked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let seen = revoked.clone();
        let router = on_credential_revoked(
            api.router(),
            CredentialRevoked::new(move |what| {
                let pair = match what {
                    Revoked::Device { tenant, device } => (tenant.to_owned(), device.to_owned()),
                    Revoked::TenantKey { tenant } => (tenant.to_owned(), "*key*".to_owned()),
                };
                seen.lock().unwrap().push(pair);
            }),
        );
        App {
            api,
            router,
            revoked,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"));
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v)
    }

    /// A tenant with a key and the registered device `truck-1`.
    async fn tenant(&self, id: &str) -> String {
        let (s, v) = self
            .call(
                "POST",
                "/v1/tenants",
                ADMIN,
                Some(json!({"id": id, "name": id})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (s, v) = self
            .call("POST", &format!("/v1/tenants/{id}/keys"), ADMIN, None)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let key = v["key"].as_str().unwrap().to_owned();
        let (s, v) = self
            .call("POST", "/v1/devices", &key, Some(json!({"id": "truck-1"})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        key
    }

    fn store(&self) -> Store {
        Store::open_reader(self.api.dir.path()).unwrap()
    }

    fn revoked(&self) -> Vec<(String, String)> {
        self.revoked.lock().unwrap().clone()
    }
}

fn pair(t: &str, d: &str) -> (String, String) {
    (t.to_owned(), d.to_owned())
}

#[tokio::test]
async fn a_registered_device_gets_a_random_password_that_only_its_hash_is_kept_of() {
    let app = App::new();
    let key = app.tenant("acme").await;
    let (s, v) = app
        .call("POST", "/v1/devices/truck-1/credentials", &key, None)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["username"], "acme/truck-1");
    let password = v["password"].as_str().unwrap();
    let hex = password.strip_prefix("lpd_").expect(password);
    assert_eq!(hex.len(), 64, "256 bits");
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    let store = app.store();
    assert!(
        store
            .check_device_credential("acme", "truck-1", password.as_bytes())
            .unwrap()
    );
    // A second device's password is another one.
    let (_, v2) = app
        .call("POST", "/v1/devices", &key, Some(json!({"id": "truck-2"})))
        .await;
    assert_eq!(v2["id"], "truck-2");
    let (_, v2) = app
        .call("POST", "/v1/devices/truck-2/credentials", &key, None)
        .await;
    assert_ne!(v2["password"], v["password"]);
    // Nothing was revoked: there was nothing to revoke.
    assert_eq!(app.revoked(), vec![]);
}

#[tokio::test]
async fn a_new_post_replaces_the_old_credential_and_cuts_its_sessions() {
    let app = App::new();
    let key = app.tenant("acme").await;
    let (_, old) = app
        .call("POST", "/v1/devices/truck-1/credentials", &key, None)
        .await;
    let (s, new) = app
        .call("POST", "/v1/devices/truck-1/credentials", &key, None)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let store = app.store();
    let check = |v: &Value| {
        store
            .check_device_credential(
                "acme",
                "truck-1",
                v["password"].as_str().unwrap().as_bytes(),
            )
            .unwrap()
    };
    assert!(!check(&old));
    assert!(check(&new));
    assert_eq!(app.revoked(), vec![pair("acme", "truck-1")]);
}

#[tokio::test]
async fn delete_revokes_once_then_answers_404() {
    let app = App::new();
    let key = app.tenant("acme").await;
    let (s, v) = app
        .call("DELETE", "/v1/devices/truck-1/credentials", &key, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "no credential yet: {v}");
    assert_eq!(v["error"]["code"], "not_found");
    let (_, cred) = app
        .call("POST", "/v1/devices/truck-1/credentials", &key, None)
        .await;
    let (s, _) = app
        .call("DELETE", "/v1/devices/truck-1/credentials", &key, None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(
        !app.store()
            .check_device_credential(
                "acme",
                "truck-1",
                cred["password"].as_str().unwrap().as_bytes()
            )
            .unwrap()
    );
    assert_eq!(app.revoked(), vec![pair("acme", "truck-1")]);
    let (s, _) = app
        .call("DELETE", "/v1/devices/truck-1/credentials", &key, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(app.revoked().len(), 1);
}

#[tokio::test]
async fn unknown_and_other_tenants_devices_are_404() {
    let app = App::new();
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let (_, cred) = app
        .call("POST", "/v1/devices/truck-1/credentials", &acme, None)
        .await;
    for path in [
        "/v1/devices/no-such/credentials",
        "/v1/devices/..%2Fx/credentials",
        "/v1/devices/a%20b/credentials",
    ] {
        let (s, v) = app.call("POST", path, &acme, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
        assert_eq!(v["error"]["code"], "not_found");
    }
    // globex has its own truck-1; acme's credential is not its to revoke or replace.
    let (s, _) = app
        .call("DELETE", "/v1/devices/truck-1/credentials", &globex, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let store = app.store();
    assert!(
        store
            .check_device_credential(
                "acme",
                "truck-1",
                cred["password"].as_str().unwrap().as_bytes()
            )
            .unwrap()
    );
    assert!(
        !store
            .check_device_credential(
                "globex",
                "truck-1",
                cred["password"].as_str().unwrap().as_bytes()
            )
            .unwrap()
    );
    // An admin names the tenant.
    let (s, v) = app
        .call("POST", "/v1/devices/truck-1/credentials", ADMIN, None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = app
        .call(
            "POST",
            "/v1/devices/truck-1/credentials?tenant=globex",
            ADMIN,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["username"], "globex/truck-1");
}

#[tokio::test]
async fn revoking_a_tenant_key_or_deleting_a_device_cuts_their_sessions_too() {
    let app = App::new();
    let key = app.tenant("acme").await;
    let (_, v) = app.call("POST", "/v1/tenants/acme/keys", ADMIN, None).await;
    let key_id = v["id"].as_str().unwrap().to_owned();
    let (s, _) = app
        .call(
            "DELETE",
            &format!("/v1/tenants/acme/keys/{key_id}"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.revoked(), vec![pair("acme", "*key*")]);
    // Revoking it again is a 404 and tells nobody.
    let (s, _) = app
        .call(
            "DELETE",
            &format!("/v1/tenants/acme/keys/{key_id}"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.call("DELETE", "/v1/devices/truck-1", &key, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        app.revoked(),
        vec![pair("acme", "*key*"), pair("acme", "truck-1")]
    );
}

#[tokio::test]
async fn a_deleted_device_loses_its_credential() {
    let app = App::new();
    let key = app.tenant("acme").await;
    let (_, cred) = app
        .call("POST", "/v1/devices/truck-1/credentials", &key, None)
        .await;
    let (s, _) = app.call("DELETE", "/v1/devices/truck-1", &key, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(
        !app.store()
            .check_device_credential(
                "acme",
                "truck-1",
                cred["password"].as_str().unwrap().as_bytes()
            )
            .unwrap()
    );
    let (s, _) = app
        .call("POST", "/v1/devices/truck-1/credentials", &key, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn no_key_is_401() {
    let app = App::new();
    let (s, _) = app
        .call("POST", "/v1/devices/truck-1/credentials", "wrong", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}
