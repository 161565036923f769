//! End to end: who may connect to Landport's own MQTT endpoint and what each may publish and
//! subscribe to (SPEC 12), with the real binary and rumqttc's MQTT 3.1.1 and 5 clients.
//!
//! - A device credential (`POST /v1/devices/{id}/credentials`, username `{tenant}/{device}`)
//!   publishes its own `telemetry` and `senml` and subscribes to its own `events` and
//!   `rejected`, nothing else.
//! - A tenant key (username `{tenant}`) reaches anything under `landport/{tenant}/`.
//! - Without credentials, on a loopback listener, a client acts as `mqtt.anonymous_tenant`;
//!   with `allow_anonymous = false` it is refused.
//! - Wrong or revoked credentials are refused at CONNECT (never taken as anonymous); revoking
//!   a credential also cuts the sessions connected with it.
//! - Denied publishes are PUBACK 0x87 (5) or acknowledged and dropped (3.1.1); denied
//!   subscriptions SUBACK failure. Denials are counted in `/metrics`.
//! - `check-config` and `run` refuse a listener other hosts can reach unless
//!   `mqtt.allow_anonymous` is set explicitly.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Landport, free_port, http, metric, stored_readings, wait_for};
use tokio::sync::mpsc;
use tokio::time::timeout;

const ADMIN: &str = "mqtt-acl-e2e-admin-key-0123456789abcdef";
const T0: i64 = 1_795_400_000_000;
/// How long a reply (CONNACK, PUBACK, SUBACK, a message) may take.
const WAIT: Duration = Duration::from_secs(15);

// ----- an MQTT client of either version, driven on its own task ---------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V311,
    V5,
}

const VERSIONS: [Version; 2] = [Version::V311, Version::V5];

/// What the client's event loop saw, as plain values for both versions.
#[derive(Debug)]
enum Seen {
    /// CONNACK's return / reason code (0 = accepted).
    ConnAck(u8),
    /// A PUBACK's reason code (always 0 in 3.1.1).
    PubAck(u8),
    /// A SUBACK's codes: the granted QoS, or 0x80 and up for a refusal.
    SubAck(Vec<u8>),
    Publish(String, Vec<u8>),
    /// The connection ended (the server closed it, or refused the CONNECT).
    Closed(String),
}

enum Handle {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

struct Client {
    handle: Handle,
    seen: mpsc::UnboundedReceiver<Seen>,
}

/// Connects; `Ok` once CONNACK accepted it, `Err(code)` with the refusal's code.
async fn connect(
    v: Version,
    port: u16,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> Result<Client, u8> {
    let (tx, seen) = mpsc::unbounded_channel();
    let handle = match v {
        Version::V311 => {
            let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
            o.set_keep_alive(Duration::from_secs(30));
            if let Some((u, p)) = login {
                o.set_credentials(u, p);
            }
            let (client, mut lp) = rumqttc::AsyncClient::new(o, 64);
            tokio::spawn(async move {
                use rumqttc::{ConnectionError, Event, Packet};
                loop {
                    let s = match lp.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(c))) => Seen::ConnAck(c.code as u8),
                        Ok(Event::Incoming(Packet::PubAck(_))) => Seen::PubAck(0),
                        Ok(Event::Incoming(Packet::SubAck(s))) => Seen::SubAck(
                            s.return_codes
                                .iter()
                                .map(|c| match c {
                                    rumqttc::SubscribeReasonCode::Success(q) => *q as u8,
                                    rumqttc::SubscribeReasonCode::Failure => 0x80,
                                })
                                .collect(),
                        ),
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            Seen::Publish(p.topic.clone(), p.payload.to_vec())
                        }
                        Ok(_) => continue,
                        Err(ConnectionError::ConnectionRefused(code)) => Seen::ConnAck(code as u8),
                        Err(e) => Seen::Closed(e.to_string()),
                    };
                    let end =
                        matches!(s, Seen::Closed(_)) || matches!(s, Seen::ConnAck(c) if c != 0);
                    if tx.send(s).is_err() || end {
                        return;
                    }
                }
            });
            Handle::V311(client)
        }
        Version::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(client_id, "127.0.0.1", port);
            o.set_keep_alive(Duration::from_secs(30));
            if let Some((u, p)) = login {
                o.set_credentials(u, p);
            }
            let (client, mut lp) = rumqttc::v5::AsyncClient::new(o, 64);
            tokio::spawn(async move {
                use rumqttc::v5::mqttbytes::v5::PubAckReason;
                use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, SubscribeReasonCode};
                use rumqttc::v5::{ConnectionError, Event};
                // The wire codes (MQTT 5, 3.2.2.2 and 3.4.2.1).
                let puback = |r: PubAckReason| match r {
                    PubAckReason::Success => 0,
                    PubAckReason::NoMatchingSubscribers => 0x10,
                    PubAckReason::ImplementationSpecificError => 0x83,
                    PubAckReason::NotAuthorized => 0x87,
                    PubAckReason::TopicNameInvalid => 0x90,
                    PubAckReason::PacketIdentifierInUse => 0x91,
                    PubAckReason::QuotaExceeded => 0x97,
                    PubAckReason::PayloadFormatInvalid => 0x99,
                    PubAckReason::UnspecifiedError => 0x80,
                };
                let connack = |c: ConnectReturnCode| match c {
                    ConnectReturnCode::Success => 0,
                    ConnectReturnCode::BadUserNamePassword => 0x86,
                    ConnectReturnCode::NotAuthorized => 0x87,
                    ConnectReturnCode::ServerUnavailable => 0x88,
                    _ => 0x80,
                };
                loop {
                    let s = match lp.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(c))) => Seen::ConnAck(connack(c.code)),
                        Ok(Event::Incoming(Packet::PubAck(p))) => Seen::PubAck(puback(p.reason)),
                        Ok(Event::Incoming(Packet::SubAck(s))) => Seen::SubAck(
                            s.return_codes
                                .iter()
                                .map(|c| match c {
                                    SubscribeReasonCode::Success(q) => *q as u8,
                                    SubscribeReasonCode::NotAuthorized => 0x87,
                                    _ => 0x80,
                                })
                                .collect(),
                        ),
                        Ok(Event::Incoming(Packet::Publish(p))) => Seen::Publish(
                            String::from_utf8_lossy(&p.topic).into_owned(),
                            p.payload.to_vec(),
                        ),
                        Ok(_) => continue,
                        Err(ConnectionError::ConnectionRefused(code)) => {
                            Seen::ConnAck(connack(code))
                        }
                        Err(e) => Seen::Closed(e.to_string()),
                    };
                    let end =
                        matches!(s, Seen::Closed(_)) || matches!(s, Seen::ConnAck(c) if c != 0);
                    if tx.send(s).is_err() || end {
                        return;
                    }
                }
            });
            Handle::V5(client)
        }
    };
    let mut client = Client { handle, seen };
    match client.next().await {
        Seen::ConnAck(0) => Ok(client),
        Seen::ConnAck(code) => Err(code),
        other => panic!("{v:?} {client_id}: expected a CONNACK, got {other:?}"),
    }
}

impl Client {
    async fn next(&mut self) -> Seen {
        match timeout(WAIT, self.seen.recv()).await {
            Ok(Some(s)) => s,
            Ok(None) => Seen::Closed("event loop ended".into()),
            Err(_) => panic!("nothing from the server within {WAIT:?}"),
        }
    }

    /// Publishes at QoS 1; the PUBACK's reason code.
    async fn publish(&mut self, topic: &str, payload: &str) -> u8 {
        match &self.handle {
            Handle::V311(c) => c
                .publish(
                    topic,
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    payload.as_bytes().to_vec(),
                )
                .await
                .unwrap(),
            Handle::V5(c) => c
                .publish(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    payload.as_bytes().to_vec(),
                )
                .await
                .unwrap(),
        }
        loop {
            match self.next().await {
                Seen::PubAck(code) => return code,
                Seen::Publish(..) => continue,
                other => panic!("publish to {topic}: expected a PUBACK, got {other:?}"),
            }
        }
    }

    /// Subscribes at QoS 1; the SUBACK's code for the filter.
    async fn subscribe(&mut self, filter: &str) -> u8 {
        match &self.handle {
            Handle::V311(c) => c
                .subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .await
                .unwrap(),
            Handle::V5(c) => c
                .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .await
                .unwrap(),
        }
        loop {
            match self.next().await {
                Seen::SubAck(codes) => return codes[0],
                Seen::Publish(..) => continue,
                other => panic!("subscribe to {filter}: expected a SUBACK, got {other:?}"),
            }
        }
    }

    /// The next message received, as (topic, payload).
    async fn message(&mut self) -> (String, Value) {
        loop {
            match self.next().await {
                Seen::Publish(topic, payload) => {
                    return (topic, serde_json::from_slice(&payload).unwrap());
                }
                Seen::PubAck(_) | Seen::SubAck(_) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// Waits for the server to end the connection; panics if it stays up past [`WAIT`].
    async fn closed(&mut self) -> String {
        loop {
            match self.next().await {
                Seen::Closed(why) => return why,
                _ => continue,
            }
        }
    }
}

// ----- the service ---------------------------------------------------------------------------

struct Service {
    _tmp: tempfile::TempDir,
    lp: Landport,
    /// acme's and globex's tenant keys.
    acme: String,
    globex: String,
    /// acme's truck-1's MQTT password.
    truck: String,
}

impl Service {
    /// Landport with its own endpoint on loopback (`mqtt_extra` added to `[mqtt]`), tenants
    /// acme and globex with a key each, a registered `truck-1` in both, and a credential for
    /// acme's.
    fn start(mqtt_extra: &str) -> Service {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let http_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mqtt = free_port();
        let config = format!(
            "[http]\nlisten = \"{http_addr}\"\n\
             [mqtt]\nembedded = true\nlisten = \"127.0.0.1:{mqtt}\"\n{mqtt_extra}\n\
             [storage]\npath = \"{}\"\n\
             [ingest]\nauto_register = true\n\
             [auth]\nadmin_key = \"{ADMIN}\"\n",
            dir.join("data").display()
        );
        let lp = Landport::start(dir, &config, http_addr, mqtt);
        let mut keys = Vec::new();
        for tenant in ["acme", "globex"] {
            let (s, v) = http(
                http_addr,
                "POST",
                "/v1/tenants",
                Some(ADMIN),
                Some(&json!({"id": tenant, "name": tenant})),
            );
            assert_eq!(s, 201, "{v}");
            let (s, v) = http(
                http_addr,
                "POST",
                &format!("/v1/tenants/{tenant}/keys"),
                Some(ADMIN),
                None,
            );
            assert_eq!(s, 201, "{v}");
            let key = v["key"].as_str().unwrap().to_owned();
            let (s, v) = http(
                http_addr,
                "POST",
                "/v1/devices",
                Some(&key),
                Some(&json!({"id": "truck-1"})),
            );
            assert_eq!(s, 201, "{v}");
            keys.push(key);
        }
        let mut svc = Service {
            _tmp: tmp,
            lp,
            globex: keys.pop().unwrap(),
            acme: keys.pop().unwrap(),
            truck: String::new(),
        };
        svc.truck = svc.new_credential("truck-1");
        svc
    }

    fn port(&self) -> u16 {
        self.lp.mqtt_port
    }

    fn call(&self, method: &str, path: &str, key: &str) -> (u16, Value) {
        http(self.lp.http, method, path, Some(key), None)
    }

    /// A new credential of acme's `device`: its password.
    fn new_credential(&self, device: &str) -> String {
        let (s, v) = self.call(
            "POST",
            &format!("/v1/devices/{device}/credentials"),
            &self.acme,
        );
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["username"], format!("acme/{device}"));
        v["password"].as_str().unwrap().to_owned()
    }

    /// Readings stored for `tenant`/`device`.
    fn stored(&self, tenant: &str, device: &str) -> usize {
        stored_readings(&self.lp.data_dir, tenant, device)
    }

    /// Waits until `tenant`/`device` has `n` readings stored.
    fn wait_stored(&self, tenant: &str, device: &str, n: usize) {
        wait_for(&format!("{n} readings of {tenant}/{device}"), WAIT, || {
            (self.stored(tenant, device) >= n).then_some(())
        });
    }

    fn metric(&self, name: &str) -> f64 {
        metric(&self.lp.metrics(), name)
    }
}

/// A native reading at `T0 + i` seconds.
fn reading(i: i64) -> String {
    format!(r#"{{"ts":{},"lat":41.0,"lon":122.5}}"#, T0 + i * 1000)
}

fn senml(i: i64) -> String {
    format!(
        r#"[{{"bn":"x:","bt":{},"n":"temp","u":"Cel","v":-18.5}}]"#,
        (T0 + i * 1000) / 1000
    )
}

const DENIED_PUBLISH: &str = r#"landport_mqtt_denied_total{action="publish"}"#;
const DENIED_SUBSCRIBE: &str = r#"landport_mqtt_denied_total{action="subscribe"}"#;

/// What a refused publish looks like: PUBACK 0x87 in 5; in 3.1.1, which has no negative
/// acknowledgement, a PUBACK (the message is dropped, not stored).
fn refused_puback(v: Version) -> u8 {
    match v {
        Version::V311 => 0,
        Version::V5 => 0x87,
    }
}

fn is_refusal(suback: u8) -> bool {
    suback >= 0x80
}

// ----- the rules -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_publishes_its_own_telemetry_and_senml_and_nothing_else() {
    let svc = Service::start("");
    let mut i = 0;
    let mut mine = 0;
    for v in VERSIONS {
        let mut c = connect(
            v,
            svc.port(),
            &format!("truck-{v:?}"),
            Some(("acme/truck-1", &svc.truck)),
        )
        .await
        .unwrap_or_else(|code| panic!("{v:?}: refused with {code:#x}"));
        i += 1;
        assert_eq!(
            c.publish("landport/acme/truck-1/telemetry", &reading(i))
                .await,
            0,
            "{v:?}"
        );
        mine += 1;
        svc.wait_stored("acme", "truck-1", mine);
        i += 1;
        assert_eq!(
            c.publish("landport/acme/truck-1/senml", &senml(i)).await,
            0,
            "{v:?}"
        );
        mine += 1;
        svc.wait_stored("acme", "truck-1", mine);

        let denied_before = svc.metric(DENIED_PUBLISH);
        for topic in [
            "landport/acme/truck-2/telemetry",
            "landport/globex/truck-1/telemetry",
            "landport/acme/truck-1/events",
            "owntracks/acme/truck-1",
        ] {
            i += 1;
            assert_eq!(
                c.publish(topic, &reading(i)).await,
                refused_puback(v),
                "{v:?} {topic}"
            );
        }
        // In order on one connection: once the next allowed reading is stored, the refused
        // ones would have been too.
        i += 1;
        assert_eq!(
            c.publish("landport/acme/truck-1/telemetry", &reading(i))
                .await,
            0
        );
        mine += 1;
        svc.wait_stored("acme", "truck-1", mine);
        assert_eq!(svc.stored("acme", "truck-2"), 0, "{v:?}");
        assert_eq!(svc.stored("globex", "truck-1"), 0, "{v:?}");
        assert_eq!(svc.stored("acme", "truck-1"), mine, "{v:?}");
        assert_eq!(svc.metric(DENIED_PUBLISH), denied_before + 4.0, "{v:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_subscribes_to_its_own_events_and_rejections_only() {
    let svc = Service::start("");
    for v in VERSIONS {
        let mut c = connect(
            v,
            svc.port(),
            &format!("sub-{v:?}"),
            Some(("acme/truck-1", &svc.truck)),
        )
        .await
        .unwrap();
        let denied_before = svc.metric(DENIED_SUBSCRIBE);
        let refused = [
            "landport/acme/truck-1/+",
            "landport/acme/truck-1/#",
            "landport/acme/truck-1/telemetry",
            "landport/acme/truck-2/events",
            "landport/acme/+/events",
            "landport/acme/#",
            "landport/globex/truck-1/events",
            "#",
            "$SYS/#",
        ];
        for filter in refused {
            let code = c.subscribe(filter).await;
            assert!(is_refusal(code), "{v:?} {filter}: SUBACK {code:#x}");
        }
        assert_eq!(
            svc.metric(DENIED_SUBSCRIBE),
            denied_before + refused.len() as f64,
            "{v:?}"
        );
        assert_eq!(
            c.subscribe("landport/acme/truck-1/events").await,
            1,
            "{v:?}"
        );
        assert_eq!(
            c.subscribe("landport/acme/truck-1/rejected").await,
            1,
            "{v:?}"
        );
        // The allowed subscription works: a bad reading's rejection arrives.
        c.publish(
            "landport/acme/truck-1/telemetry",
            r#"{"ts": "yesterday-ish"}"#,
        )
        .await;
        let (topic, body) = c.message().await;
        assert_eq!(topic, "landport/acme/truck-1/rejected", "{v:?}: {body}");
        assert_eq!(body["topic"], "landport/acme/truck-1/telemetry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_key_reaches_anything_under_its_tenant_and_nothing_else() {
    let svc = Service::start("");
    let mut i = 0;
    for (n, v) in VERSIONS.into_iter().enumerate() {
        let mut c = connect(
            v,
            svc.port(),
            &format!("acme-{v:?}"),
            Some(("acme", &svc.acme)),
        )
        .await
        .unwrap_or_else(|code| panic!("{v:?}: refused with {code:#x}"));
        for filter in [
            "landport/+/#",
            "landport/#",
            "landport/globex/#",
            "#",
            "+/acme/#",
        ] {
            let code = c.subscribe(filter).await;
            assert!(is_refusal(code), "{v:?} {filter}: SUBACK {code:#x}");
        }
        assert_eq!(c.subscribe("landport/acme/#").await, 1, "{v:?}");
        i += 1;
        assert_eq!(
            c.publish("landport/acme/van-9/telemetry", &reading(i))
                .await,
            0
        );
        svc.wait_stored("acme", "van-9", n + 1);
        i += 1;
        assert_eq!(
            c.publish("landport/globex/van-9/telemetry", &reading(i))
                .await,
            refused_puback(v),
            "{v:?}"
        );
        // Its subscription to the whole tenant sees its devices' rejections.
        c.publish("landport/acme/van-9/telemetry", "not json").await;
        loop {
            let (topic, body) = c.message().await;
            // Events of the tenant's devices (device.online, ...) may come first.
            if topic == "landport/acme/van-9/rejected" {
                assert_eq!(body["code"], "invalid_json", "{body}");
                break;
            }
        }
    }
    assert_eq!(svc.stored("globex", "van-9"), 0);
    // The other tenant's key with this tenant's name is refused outright.
    for v in VERSIONS {
        let code = connect(v, svc.port(), "mixup", Some(("acme", &svc.globex)))
            .await
            .err();
        assert_eq!(
            code,
            Some(match v {
                Version::V311 => 4,
                Version::V5 => 0x86,
            }),
            "{v:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_loopback_a_client_without_credentials_acts_as_the_anonymous_tenant() {
    let svc = Service::start("anonymous_tenant = \"public\"");
    let mut i = 0;
    for (n, v) in VERSIONS.into_iter().enumerate() {
        let mut c = connect(v, svc.port(), &format!("anon-{v:?}"), None)
            .await
            .unwrap_or_else(|code| panic!("{v:?}: refused with {code:#x}"));
        i += 1;
        assert_eq!(
            c.publish("landport/public/phone-1/telemetry", &reading(i))
                .await,
            0
        );
        svc.wait_stored("public", "phone-1", n + 1);
        i += 1;
        assert_eq!(
            c.publish("landport/acme/truck-1/telemetry", &reading(i))
                .await,
            refused_puback(v)
        );
        assert!(is_refusal(c.subscribe("landport/acme/#").await), "{v:?}");
        assert_eq!(c.subscribe("landport/public/#").await, 1, "{v:?}");
    }
    assert_eq!(svc.stored("acme", "truck-1"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_missing_ones_are_refused_at_connect() {
    let svc = Service::start("allow_anonymous = false");
    let bad_password = r#"landport_mqtt_auth_denied_total{reason="bad_password"}"#;
    let unknown_user = r#"landport_mqtt_auth_denied_total{reason="unknown_user"}"#;
    let no_credentials = r#"landport_mqtt_auth_denied_total{reason="no_credentials"}"#;
    for v in VERSIONS {
        let (bad, anonymous) = match v {
            Version::V311 => (4, 5),
            Version::V5 => (0x86, 0x87),
        };
        let before = (
            svc.metric(bad_password),
            svc.metric(unknown_user),
            svc.metric(no_credentials),
        );
        for (user, password) in [
            ("acme/truck-1", "lpd_0000"),
            ("acme/truck-1", svc.acme.as_str()),
            ("acme/truck-2", svc.truck.as_str()),
            ("globex/truck-1", svc.truck.as_str()),
            ("acme", svc.truck.as_str()),
            ("globex", svc.acme.as_str()),
        ] {
            let got = connect(v, svc.port(), "wrong", Some((user, password)))
                .await
                .err();
            assert_eq!(got, Some(bad), "{v:?} {user}");
        }
        for user in ["acme/truck-1/telemetry", "acme/+", "#"] {
            let got = connect(v, svc.port(), "odd", Some((user, &svc.truck)))
                .await
                .err();
            assert_eq!(got, Some(bad), "{v:?} {user}");
        }
        let got = connect(v, svc.port(), "nobody", None).await.err();
        assert_eq!(got, Some(anonymous), "{v:?}: anonymous access is off");
        assert_eq!(svc.metric(bad_password), before.0 + 6.0, "{v:?}");
        assert_eq!(svc.metric(unknown_user), before.1 + 3.0, "{v:?}");
        assert_eq!(svc.metric(no_credentials), before.2 + 1.0, "{v:?}");
        // The right ones still work.
        connect(v, svc.port(), "right", Some(("acme/truck-1", &svc.truck)))
            .await
            .unwrap();
        connect(v, svc.port(), "right-t", Some(("acme", &svc.acme)))
            .await
            .unwrap();
    }
    let log = std::fs::read_to_string(&svc.lp.log).unwrap();
    assert!(log.contains("MQTT connect refused"), "{log}");
    assert!(!log.contains(&svc.truck), "a password reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_credential_is_refused_and_its_live_sessions_are_cut() {
    let svc = Service::start("");
    let user = "acme/truck-1";
    let mut sessions = Vec::new();
    for v in VERSIONS {
        sessions.push(
            connect(
                v,
                svc.port(),
                &format!("live-{v:?}"),
                Some((user, &svc.truck)),
            )
            .await
            .unwrap(),
        );
    }
    // A tenant-key session is not the device's: it stays.
    let mut tenant = connect(
        Version::V311,
        svc.port(),
        "tenant",
        Some(("acme", &svc.acme)),
    )
    .await
    .unwrap();
    let (s, v) = svc.call("DELETE", "/v1/devices/truck-1/credentials", &svc.acme);
    assert_eq!(s, 204, "{v}");
    for (c, v) in sessions.iter_mut().zip(VERSIONS) {
        let why = c.closed().await;
        eprintln!("{v:?} session ended: {why}");
    }
    for v in VERSIONS {
        let got = connect(v, svc.port(), "again", Some((user, &svc.truck)))
            .await
            .err();
        assert!(got.is_some(), "{v:?}: a revoked credential connected");
    }
    assert_eq!(
        tenant
            .publish("landport/acme/truck-1/telemetry", &reading(1))
            .await,
        0
    );
    svc.wait_stored("acme", "truck-1", 1);

    // A new credential works, and replacing it cuts the sessions of the one it replaces.
    let first = svc.new_credential("truck-1");
    let mut c = connect(Version::V5, svc.port(), "rotated", Some((user, &first)))
        .await
        .unwrap();
    let second = svc.new_credential("truck-1");
    c.closed().await;
    assert!(
        connect(Version::V5, svc.port(), "old", Some((user, &first)))
            .await
            .is_err()
    );
    connect(Version::V5, svc.port(), "new", Some((user, &second)))
        .await
        .unwrap();

    // A revoked tenant key: its sessions are cut and it is refused from then on.
    let (s, v) = http(
        svc.lp.http,
        "POST",
        "/v1/tenants/acme/keys",
        Some(ADMIN),
        None,
    );
    assert_eq!(s, 201, "{v}");
    let (key_id, key) = (v["id"].as_str().unwrap(), v["key"].as_str().unwrap());
    let mut c = connect(Version::V311, svc.port(), "keyed", Some(("acme", key)))
        .await
        .unwrap();
    let (s, v) = http(
        svc.lp.http,
        "DELETE",
        &format!("/v1/tenants/acme/keys/{key_id}"),
        Some(ADMIN),
        None,
    );
    assert_eq!(s, 204, "{v}");
    c.closed().await;
    assert_eq!(
        connect(Version::V311, svc.port(), "keyed", Some(("acme", key)))
            .await
            .err(),
        Some(4)
    );
}

// ----- the anonymous rule at start --------------------------------------------------------

#[test]
fn an_exposed_listener_is_refused_unless_allow_anonymous_is_set() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = format!(
        "[http]\nlisten = \"127.0.0.1:{}\"\n[storage]\npath = \"{}\"\n",
        free_port(),
        dir.join("data").display()
    );
    let path = dir.join("exposed.toml");
    let run = |args: &[&str], mqtt: &str| {
        std::fs::write(&path, format!("{base}[mqtt]\n{mqtt}\n")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_landport"))
            .args(args)
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout),
        )
    };
    let exposed = format!("listen = \"0.0.0.0:{}\"", free_port());
    for args in [&["check-config"][..], &["run", "--config"][..]] {
        let (ok, out) = run(args, &exposed);
        assert!(!ok, "{args:?} accepted it: {out}");
        assert!(out.contains("mqtt.allow_anonymous"), "{args:?}: {out}");
    }
    for setting in ["allow_anonymous = false", "allow_anonymous = true"] {
        let (ok, out) = run(&["check-config"], &format!("{exposed}\n{setting}"));
        assert!(ok, "{setting}: {out}");
    }
}
