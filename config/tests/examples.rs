//! Every file in `config/examples/` loads and validates.

use std::path::Path;

use landport_config::{Config, InfluxApi, LogFormat};

fn load(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    Config::load_with_env(Some(&path), []).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_example_loads_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("examples folder")
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    for name in &names {
        load(name);
    }
}

#[test]
fn minimal_is_the_defaults() {
    assert_eq!(load("minimal.toml"), Config::default());
}

#[test]
fn production_uses_an_external_broker_influxdb_v2_an_admin_key_and_json_logs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/production.toml");
    // The file leaves the admin key to the environment, as it advises.
    let key = (
        "LANDPORT_AUTH__ADMIN_KEY",
        "5f0c2a9e8b7d4c1e3a6f9b2d8e4c7a1f",
    );
    let c = Config::load_with_env(Some(&path), [(key.0.to_owned(), key.1.to_owned())]).unwrap();
    assert!(!c.mqtt.embedded);
    assert_eq!(
        c.mqtt.broker_host_port(),
        Some(("mosquitto.internal".to_string(), 1883))
    );
    assert_eq!(c.influxdb.as_ref().map(|i| i.api), Some(InfluxApi::V2));
    assert!(c.auth.admin_key.is_some());
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.storage.synchronous, landport_config::Synchronous::Full);
}

#[test]
fn the_placeholder_admin_key_of_the_docs_is_refused() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/production.toml");
    let key = (
        "LANDPORT_AUTH__ADMIN_KEY",
        "change-me-to-a-long-random-key-please",
    );
    let e = Config::load_with_env(Some(&path), [(key.0.to_owned(), key.1.to_owned())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("auth.admin_key: is the placeholder"), "{e}");
}

#[test]
fn influxdb1_uses_the_v1_api() {
    let c = load("influxdb1.toml");
    let i = c.influxdb.expect("[influxdb] set");
    assert_eq!(i.api, InfluxApi::V1);
    assert_eq!(i.database, "landport");
}

/// docs/configuration.md's "A complete file" loads and is the defaults: a user who copies it
/// gets no surprise, and every key it shows sits in its section.
#[test]
fn the_documented_complete_file_is_the_defaults() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .unwrap();
    let (_, after) = doc
        .split_once("## A complete file")
        .expect("docs/configuration.md has \"A complete file\"");
    let toml = after
        .split_once("```toml\n")
        .and_then(|(_, t)| t.split_once("\n```"))
        .map(|(t, _)| t)
        .expect("a toml block");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("landport.toml");
    std::fs::write(&path, toml).unwrap();
    let c = Config::load_with_env(Some(&path), []).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c, Config::default());
}
