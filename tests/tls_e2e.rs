//! End to end: TLS (SPEC 12) with a CA and a server certificate generated in the test.
//!
//! - MQTT over TLS on `mqtt.tls_listen`: `mosquitto_pub --cafile` (3.1.1 and 5) publishes
//!   readings that get stored; plain MQTT to the TLS port, or a client trusting another CA,
//!   fails and ingest goes on.
//! - HTTPS with `http.tls = true`: a client trusting the CA gets `/healthz`; plain HTTP to
//!   the port gets no answer.
//! - `mqtts://` to an external Mosquitto with a TLS listener: with `mqtt.ca_file` Landport
//!   connects and ingests; without it the private CA is not trusted and it stays not ready.

mod support;
#[path = "../ingest/tests/support_mqtt/mod.rs"]
mod support_mqtt;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Landport, free_port, http_get, stored_readings, wait_for};

const WAIT: Duration = Duration::from_secs(30);
const ADMIN: &str = "tls-e2e-admin-key-0123456789abcdef0123456789";
const T0: i64 = 1_795_400_000_000;

/// PEM files of a CA and of a server certificate it signed for `localhost` and 127.0.0.1.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_certs(dir: &Path, name: &str) -> Certs {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("Landport test CA {name}"));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let mut server =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.use_authority_key_identifier_extension = true;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &issuer).unwrap();

    let certs = Certs {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&certs.ca, ca_cert.pem()).unwrap();
    std::fs::write(&certs.cert, cert.pem()).unwrap();
    std::fs::write(&certs.key, key.serialize_pem()).unwrap();
    certs
}

fn reading(i: i64) -> String {
    format!(r#"{{"ts":{},"lat":41.0,"lon":122.5}}"#, T0 + i * 1000)
}

/// `mosquitto_pub` with `args`, QoS 1; whether it exited 0, and what it said. It gives up
/// after 10 s of no answer.
fn mosquitto_pub(args: &[&str]) -> (bool, String) {
    let out = Command::new("mosquitto_pub")
        .args(["-q", "1", "-i", "tls-e2e", "--quiet"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running mosquitto_pub (apt-get install mosquitto-clients)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `landport run` on `config`, not waited for (its `/readyz` may be HTTPS).
fn spawn_landport(dir: &Path, config: &str, http: SocketAddr, mqtt_port: u16) -> Landport {
    let path = dir.join("landport.toml");
    std::fs::write(&path, config).unwrap();
    let log = dir.join("landport.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_landport"))
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    Landport {
        child,
        http,
        mqtt_port,
        data_dir: dir.join("data"),
        config: path,
        log,
    }
}

fn https_client(ca: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_and_https_with_a_generated_ca() {
    if !support_mqtt::require("mosquitto_pub") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = make_certs(dir, "ours");
    let stranger = make_certs(dir, "other");
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (mqtt, mqtts) = (free_port(), free_port());
    let config = format!(
        "[http]\nlisten = \"{http}\"\ntls = true\n\
         [mqtt]\nembedded = true\nlisten = \"127.0.0.1:{mqtt}\"\ntls_listen = \"127.0.0.1:{mqtts}\"\n\
         [tls]\ncert = {:?}\nkey = {:?}\n\
         [storage]\npath = {:?}\n\
         [ingest]\nauto_register = true\n\
         [auth]\nadmin_key = \"{ADMIN}\"\n",
        certs.cert,
        certs.key,
        dir.join("data")
    );
    let mut lp = spawn_landport(dir, &config, http, mqtt);

    // HTTPS: ready, and /healthz, for a client that trusts the CA.
    let client = https_client(&certs.ca);
    let base = format!("https://localhost:{}", http.port());
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(Some(status)) = lp.child.try_wait() {
            panic!(
                "landport exited with {status}:\n{}",
                std::fs::read_to_string(&lp.log).unwrap_or_default()
            );
        }
        match client.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status() == 200 => break,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no HTTPS /readyz within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), r#"{"status":"ok"}"#);
    // A client that trusts another CA refuses the certificate; plain HTTP gets no answer.
    assert!(
        https_client(&stranger.ca)
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
    assert_eq!(
        http_get(http, "/healthz"),
        None,
        "plain HTTP on the HTTPS port"
    );

    // MQTT over TLS, 3.1.1 and 5.
    let port = mqtts.to_string();
    let ca = certs.ca.to_str().unwrap();
    for (i, v) in [(1, "mqttv311"), (2, "mqttv5")] {
        let payload = reading(i);
        let (ok, err) = mosquitto_pub(&[
            "-h",
            "localhost",
            "-p",
            &port,
            "--cafile",
            ca,
            "-V",
            v,
            "-t",
            "landport/default/tls-truck/telemetry",
            "-m",
            &payload,
        ]);
        assert!(ok, "mosquitto_pub -V {v} over TLS: {err}");
    }
    wait_for("2 readings over TLS", WAIT, || {
        (stored_readings(&lp.data_dir, "default", "tls-truck") == 2).then_some(())
    });

    // Plain MQTT to the TLS port, and TLS with the wrong CA: refused, nothing stored.
    let plain_payload = reading(3);
    let (ok, _) = mosquitto_pub(&[
        "-h",
        "localhost",
        "-p",
        &port,
        "-t",
        "landport/default/plain/telemetry",
        "-m",
        &plain_payload,
    ]);
    assert!(!ok, "plain MQTT was accepted on the TLS port");
    let (ok, _) = mosquitto_pub(&[
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        stranger.ca.to_str().unwrap(),
        "-t",
        "landport/default/stranger/telemetry",
        "-m",
        &plain_payload,
    ]);
    assert!(!ok, "a client trusting another CA connected");
    // A raw TCP client sending garbage is dropped without an answer.
    {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", mqtts)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x1e\x00\x00")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        // rustls may answer a TLS alert record (0x15); never an MQTT CONNACK (0x20).
        assert!(n == 0 || buf[0] == 0x15, "answered {:?}", &buf[..n]);
    }
    // Ingest goes on over TLS and over the plain loopback listener.
    let payload = reading(4);
    let (ok, err) = mosquitto_pub(&[
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        ca,
        "-t",
        "landport/default/tls-truck/telemetry",
        "-m",
        &payload,
    ]);
    assert!(ok, "{err}");
    let payload = reading(5);
    let (ok, err) = mosquitto_pub(&[
        "-h",
        "127.0.0.1",
        "-p",
        &mqtt.to_string(),
        "-t",
        "landport/default/tls-truck/telemetry",
        "-m",
        &payload,
    ]);
    assert!(ok, "{err}");
    wait_for("4 readings", WAIT, || {
        (stored_readings(&lp.data_dir, "default", "tls-truck") == 4).then_some(())
    });
    assert_eq!(stored_readings(&lp.data_dir, "default", "plain"), 0);
    assert_eq!(stored_readings(&lp.data_dir, "default", "stranger"), 0);

    // A device credential made over HTTPS, used over MQTT over TLS (the README's example).
    let post = |path: &str, key: &str, body: Option<serde_json::Value>| {
        let mut req = client
            .post(format!("{base}{path}"))
            .bearer_auth(key.to_owned());
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        req.send()
    };
    let r = post(
        "/v1/tenants",
        ADMIN,
        Some(serde_json::json!({"id": "acme", "name": "Acme"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let key: serde_json::Value = post("/v1/tenants/acme/keys", ADMIN, None)
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let r = post(
        "/v1/devices",
        &key,
        Some(serde_json::json!({"id": "truck-9"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let cred: serde_json::Value = post("/v1/devices/truck-9/credentials", &key, None)
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let (user, password) = (
        cred["username"].as_str().unwrap(),
        cred["password"].as_str().unwrap(),
    );
    let payload = reading(6);
    let with = |password: &str| {
        mosquitto_pub(&[
            "-h",
            "localhost",
            "-p",
            &port,
            "--cafile",
            ca,
            "-u",
            user,
            "-P",
            password,
            "-t",
            "landport/acme/truck-9/telemetry",
            "-m",
            &payload,
        ])
    };
    let (ok, err) = with(password);
    assert!(ok, "{err}");
    assert!(!with("lpd_wrong").0, "a wrong password connected");
    wait_for("the device's reading over TLS", WAIT, || {
        (stored_readings(&lp.data_dir, "acme", "truck-9") == 1).then_some(())
    });
    assert!(lp.child.try_wait().unwrap().is_none(), "landport died");
}

/// A Mosquitto with only a TLS listener, presenting `certs`; killed on drop.
struct TlsMosquitto {
    child: Child,
    port: u16,
}

impl TlsMosquitto {
    fn start(dir: &Path, certs: &Certs) -> TlsMosquitto {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        // `user root`: run as root (as in containers); otherwise mosquitto switches to the
        // `mosquitto` user, which cannot read our temp dir.
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\ncertfile {}\nkeyfile {}\n\
                 allow_anonymous true\npersistence false\nuser root\n\
                 log_dest file {}\n",
                certs.cert.display(),
                certs.key.display(),
                dir.join("mosquitto.log").display()
            ),
        )
        .unwrap();
        let bin = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or("mosquitto");
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto (apt-get install mosquitto)");
        wait_for("mosquitto's TLS listener", WAIT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "mosquitto exited ({status}): {}",
                    std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default()
                );
            }
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        TlsMosquitto { child, port }
    }
}

impl Drop for TlsMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mqtts_to_an_external_broker_with_a_private_ca() {
    if !support_mqtt::require("mosquitto") || !support_mqtt::require("mosquitto_pub") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = make_certs(dir, "broker");
    let broker = TlsMosquitto::start(dir, &certs);

    // Without ca_file the private CA is not trusted: never connected, never ready.
    let untrusting = dir.join("untrusting");
    std::fs::create_dir(&untrusting).unwrap();
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = |data: &Path, ca: Option<&Path>| {
        format!(
            "[http]\nlisten = \"{http}\"\n\
             [mqtt]\nembedded = false\nurl = \"mqtts://localhost:{}\"\n{}\n\
             [storage]\npath = {:?}\n\
             [ingest]\nauto_register = true\n",
            broker.port,
            ca.map(|p| format!("ca_file = {p:?}")).unwrap_or_default(),
            data.join("data")
        )
    };
    let lp = spawn_landport(&untrusting, &config(&untrusting, None), http, broker.port);
    wait_for("the certificate error in the log", WAIT, || {
        let log = std::fs::read_to_string(&lp.log).unwrap_or_default();
        log.contains("UnknownIssuer").then_some(())
    });
    let (status, _) = wait_for("HTTP up", WAIT, || http_get(http, "/readyz"));
    assert_eq!(status, 503, "ready without trusting the broker");
    drop(lp);

    // With the CA: connected (ready means connected) and ingesting.
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let trusting = dir.join("trusting");
    std::fs::create_dir(&trusting).unwrap();
    let config = format!(
        "[http]\nlisten = \"{http}\"\n\
         [mqtt]\nembedded = false\nurl = \"mqtts://localhost:{}\"\nca_file = {:?}\n\
         [storage]\npath = {:?}\n\
         [ingest]\nauto_register = true\n",
        broker.port,
        certs.ca,
        trusting.join("data")
    );
    let lp = Landport::start(&trusting, &config, http, broker.port);
    let payload = reading(1);
    let (ok, err) = mosquitto_pub(&[
        "-h",
        "localhost",
        "-p",
        &broker.port.to_string(),
        "--cafile",
        certs.ca.to_str().unwrap(),
        "-t",
        "landport/acme/far-truck/telemetry",
        "-m",
        &payload,
    ]);
    assert!(ok, "{err}");
    wait_for("the reading through mqtts://", WAIT, || {
        (stored_readings(&lp.data_dir, "acme", "far-truck") == 1).then_some(())
    });
}

#[test]
fn a_certificate_or_key_that_cannot_be_used_stops_the_start_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = make_certs(dir, "start");
    let other = make_certs(dir, "mismatch");
    for (cert, key, field) in [
        (&certs.key, &certs.key, "tls.cert"),
        (&certs.cert, &certs.cert, "tls.key"),
        (&certs.cert, &other.key, "tls.cert / tls.key"),
    ] {
        let config = dir.join("bad.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{}\"\ntls = true\n\
                 [mqtt]\nlisten = \"127.0.0.1:{}\"\n\
                 [tls]\ncert = {cert:?}\nkey = {key:?}\n\
                 [storage]\npath = {:?}\n",
                free_port(),
                free_port(),
                dir.join("data")
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_landport"))
            .args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{field}: started anyway: {text}");
        assert!(text.contains(field), "{field}: {text}");
    }
}
