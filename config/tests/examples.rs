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
    let c = load("production.toml");
    assert!(!c.mqtt.embedded);
    assert_eq!(
        c.mqtt.broker_host_port(),
        Some(("mosquitto.internal".to_string(), 1883))
    );
    assert_eq!(c.influxdb.as_ref().map(|i| i.api), Some(InfluxApi::V2));
    assert!(c.auth.admin_key.is_some());
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn influxdb1_uses_the_v1_api() {
    let c = load("influxdb1.toml");
    let i = c.influxdb.expect("[influxdb] set");
    assert_eq!(i.api, InfluxApi::V1);
    assert_eq!(i.database, "landport");
}
