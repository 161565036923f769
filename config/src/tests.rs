//! Unit tests of the schema, overrides and validation, through the public API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, [])
}

fn parse_env(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, env(pairs))
}

fn err(text: &str) -> String {
    parse(text).expect_err("should not parse").to_string()
}

fn problems(config: &Config) -> Vec<String> {
    match config.validate() {
        Ok(()) => Vec::new(),
        Err(e) => e.problems(),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let c = parse("").expect("empty file");
    assert_eq!(c, Config::default());
    assert_eq!(c.http.listen, addr("127.0.0.1:8080"));
    assert!(c.mqtt.embedded);
    assert_eq!(c.mqtt.listen, addr("127.0.0.1:1883"));
    assert_eq!(c.mqtt.url, None);
    assert_eq!(c.mqtt.broker_url(), "mqtt://127.0.0.1:1883");
    assert_eq!(c.mqtt.client_id, "landport-ingest");
    assert_eq!(c.mqtt.keep_alive(), Duration::from_secs(30));
    assert_eq!(c.mqtt.credentials(), None);
    assert_eq!(c.storage.path, PathBuf::from("./landport-data"));
    assert_eq!(c.storage.retention_days, 30);
    assert_eq!(c.influxdb, None);
    assert_eq!(c.auth.admin_key, None);
    assert!(!c.ingest.auto_register);
    assert_eq!(c.ingest.max_payload_bytes, 65536);
    assert_eq!(c.ingest.max_future(), Duration::from_secs(86400));
    assert_eq!(c.ingest.owntracks_tenant("anyone"), "default");
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.tracker.confirm(), Duration::from_secs(30));
    assert_eq!(c.tracker.offline_after(), Duration::from_secs(300));
    assert_eq!(c.tracker.route_corridor_m, 500.0);
    assert_eq!(c.tracker.overspeed_limit_kmh(), None);
    assert_eq!(c.tracker.temp_grace(), Duration::from_secs(300));
    assert_eq!(c.tracker.weight_change_kg, 200.0);
    assert_eq!(c.tracker.place_radius_m, 300.0);
    assert_eq!(c.tracker.eta.detour_factor, 1.3);
    assert_eq!(c.tracker.eta.default_speed_kmh, 50.0);
    assert_eq!(c.tracker.eta.min_speed_kmh, 5.0);
    assert_eq!(c.tracker.eta.change_min(), Duration::from_secs(300));
    assert_eq!(c.tracker.eta.change_fraction, 0.1);
    assert_eq!(
        c.map.tile_url,
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    );
    assert!(c.map.tile_attribution.contains("OpenStreetMap"));
    assert_eq!(c.validate().ok(), Some(()));
}

#[test]
fn a_partial_section_keeps_the_defaults_of_the_other_keys() {
    let c = parse("[tracker]\nconfirm_seconds = 0\n[tracker.eta]\nmin_speed_kmh = 2.5").unwrap();
    assert_eq!(c.tracker.confirm(), Duration::ZERO);
    assert_eq!(c.tracker.offline_after_seconds, 300);
    assert_eq!(c.tracker.eta.min_speed_kmh, 2.5);
    assert_eq!(c.tracker.eta.detour_factor, 1.3);
}

#[test]
fn http_section() {
    let c = parse("[http]\nlisten = \"[::]:9000\"").unwrap();
    assert_eq!(c.http.listen, addr("[::]:9000"));
}

#[test]
fn mqtt_section() {
    let c = parse(
        r#"
        [mqtt]
        embedded = false
        url = "tcp://mosquitto.internal:1884"
        username = "landport"
        password = "s3cret"
        client_id = "ingest-eu-1"
        keep_alive_seconds = 60
        "#,
    )
    .unwrap();
    assert!(!c.mqtt.embedded);
    assert_eq!(c.mqtt.broker_url(), "tcp://mosquitto.internal:1884");
    assert_eq!(
        c.mqtt.broker_host_port(),
        Some(("mosquitto.internal".to_string(), 1884))
    );
    assert_eq!(c.mqtt.credentials(), Some(("landport", "s3cret")));
    assert_eq!(c.mqtt.client_id, "ingest-eu-1");
    assert_eq!(c.mqtt.keep_alive(), Duration::from_secs(60));
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "Debug leaks the password"
    );
    assert_eq!(problems(&c), Vec::<String>::new());
}

#[test]
fn mqtt_url_defaults_to_the_embedded_broker_reached_over_loopback() {
    let c = parse("[mqtt]\nlisten = \"0.0.0.0:1884\"").unwrap();
    assert_eq!(c.mqtt.broker_url(), "mqtt://127.0.0.1:1884");
    assert_eq!(
        c.mqtt.broker_host_port(),
        Some(("127.0.0.1".to_string(), 1884))
    );
    let c = parse("[mqtt]\nurl = \"mqtt://broker\"").unwrap();
    assert_eq!(
        c.mqtt.broker_host_port(),
        Some(("broker".to_string(), 1883))
    );
}

#[test]
fn a_bad_broker_url_names_mqtt_url_and_says_why() {
    let problem = |url: &str| {
        let c = parse(&format!("[mqtt]\nembedded = false\nurl = {url:?}")).unwrap();
        let got = problems(&c);
        assert_eq!(got.len(), 1, "{url}: {got:?}");
        got[0].clone()
    };
    for (url, why) in [
        ("mqtt://x:1/a", "no path"),
        ("wss://x:443", "websocket"),
        ("mqtt://u:p@x:1883", "mqtt.username"),
        ("mqtt://::1:1883", "brackets"),
        ("mqtt://x:0", "1..=65535"),
        ("broker:1883", "expected mqtt://HOST:PORT"),
    ] {
        let got = problem(url);
        assert!(
            got.starts_with("mqtt.url: must be an mqtt://, tcp:// or mqtts:// URL"),
            "{got}"
        );
        assert!(got.contains(why), "{url}: {got}");
        assert!(got.ends_with(&format!("got {url:?}")), "{got}");
    }
    let c = parse("[mqtt]\nembedded = false\nurl = \"tcp://[::1]:1884\"").unwrap();
    assert_eq!(problems(&c), Vec::<String>::new());
    assert_eq!(
        c.mqtt.broker(),
        Ok(BrokerUrl {
            host: "::1".into(),
            port: 1884,
            tls: false,
        })
    );
}

#[test]
fn an_empty_username_means_no_credentials() {
    let c = parse("[mqtt]\nusername = \"\"\npassword = \"\"").unwrap();
    assert_eq!(c.mqtt.credentials(), None);
    assert_eq!(problems(&c), Vec::<String>::new());
}

#[test]
fn storage_section() {
    let c = parse("[storage]\npath = \"/var/lib/landport\"\nretention_days = 365").unwrap();
    assert_eq!(c.storage.path, PathBuf::from("/var/lib/landport"));
    assert_eq!(c.storage.retention_days, 365);
    assert_eq!(c.storage.events_retention_days, 90);
    assert_eq!(c.storage.synchronous, Synchronous::Normal);
    let c = parse("[storage]\nevents_retention_days = 7\nsynchronous = \"full\"").unwrap();
    assert_eq!(c.storage.events_retention_days, 7);
    assert_eq!(c.storage.synchronous, Synchronous::Full);
    let e = err("[storage]\nsynchronous = \"off\"");
    assert!(
        e.contains("storage.synchronous: unknown variant `off`"),
        "{e}"
    );
    let c = parse("[storage]\nevents_retention_days = 0").unwrap();
    assert_eq!(
        problems(&c),
        ["storage.events_retention_days: must be at least 1"]
    );
}

#[test]
fn influxdb_section_present_means_a_sink_with_defaults_for_missing_keys() {
    let c = parse("[influxdb]\ntoken = \"t0k\"").unwrap();
    let i = c.influxdb.as_ref().expect("section present");
    assert_eq!(i.url, "http://127.0.0.1:8086");
    assert_eq!(i.api, InfluxApi::V2);
    assert_eq!(i.org, "landport");
    assert_eq!(i.bucket, "telemetry");
    assert_eq!(i.token.expose(), "t0k");
    assert_eq!(i.database, "landport");
    assert_eq!(i.batch_max_lines, 5000);
    assert_eq!(i.flush_interval(), Duration::from_secs(1));
    assert_eq!(i.spool_max_bytes, 1_073_741_824);
    assert_eq!(problems(&c), Vec::<String>::new());
}

#[test]
fn influxdb_v1() {
    let c = parse(
        "[influxdb]\napi = \"v1\"\ndatabase = \"fleet\"\nusername = \"u\"\npassword = \"p\"\nflush_interval_ms = 250",
    )
    .unwrap();
    let i = c.influxdb.as_ref().unwrap();
    assert_eq!(i.api, InfluxApi::V1);
    assert_eq!(i.database, "fleet");
    assert_eq!(i.v1_credentials(), Some(("u", "p")));
    assert_eq!(i.flush_interval(), Duration::from_millis(250));
    assert_eq!(problems(&c), Vec::<String>::new());
}

#[test]
fn influxdb_api_must_be_v1_or_v2() {
    let e = err("[influxdb]\napi = \"v3\"");
    assert!(e.contains("influxdb.api: unknown variant `v3`"), "{e}");
}

#[test]
fn auth_section() {
    let c = parse("[auth]\nadmin_key = \"0123456789abcdef0123456789abcdef\"").unwrap();
    assert_eq!(
        c.auth.admin_key.as_ref().map(Secret::expose),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert!(!format!("{c:?}").contains("0123456789abcdef"));
    assert_eq!(problems(&c), Vec::<String>::new());
}

#[test]
fn ingest_section() {
    let c = parse(
        r#"
        [ingest]
        auto_register = true
        max_payload_bytes = 1024
        max_future_seconds = 60
        owntracks_default_tenant = "public"
        [ingest.owntracks_tenants]
        alice = "acme"
        bob = "globex"
        "#,
    )
    .unwrap();
    assert!(c.ingest.auto_register);
    assert_eq!(c.ingest.max_payload_bytes, 1024);
    assert_eq!(c.ingest.max_future(), Duration::from_secs(60));
    assert_eq!(c.ingest.owntracks_tenant("alice"), "acme");
    assert_eq!(c.ingest.owntracks_tenant("bob"), "globex");
    assert_eq!(c.ingest.owntracks_tenant("carol"), "public");
    assert_eq!(problems(&c), Vec::<String>::new());
}

#[test]
fn log_section() {
    let c = parse("[log]\nlevel = \"landport_ingest=debug,info\"\nformat = \"json\"").unwrap();
    assert_eq!(c.log.level, "landport_ingest=debug,info");
    assert_eq!(c.log.format, LogFormat::Json);
    let e = err("[log]\nformat = \"yaml\"");
    assert!(
        e.contains("log.format: unknown variant `yaml`, expected `text` or `json`"),
        "{e}"
    );
}

#[test]
fn tracker_section() {
    let c = parse(
        r#"
        [tracker]
        confirm_seconds = 10
        offline_after_seconds = 120
        route_corridor_m = 250.0
        max_speed_kmh = 90
        temp_grace_seconds = 60
        weight_change_kg = 50.0
        place_radius_m = 150.0
        [tracker.eta]
        detour_factor = 1.5
        default_speed_kmh = 60.0
        min_speed_kmh = 3.0
        change_min_seconds = 120
        change_fraction = 0.2
        "#,
    )
    .unwrap();
    let t = &c.tracker;
    assert_eq!(t.confirm(), Duration::from_secs(10));
    assert_eq!(t.offline_after(), Duration::from_secs(120));
    assert_eq!(t.route_corridor_m, 250.0);
    assert_eq!(
        t.overspeed_limit_kmh(),
        Some(90.0),
        "an integer is accepted for a float"
    );
    assert_eq!(t.temp_grace(), Duration::from_secs(60));
    assert_eq!(t.weight_change_kg, 50.0);
    assert_eq!(t.place_radius_m, 150.0);
    assert_eq!(t.eta.detour_factor, 1.5);
    assert_eq!(t.eta.default_speed_kmh, 60.0);
    assert_eq!(t.eta.min_speed_kmh, 3.0);
    assert_eq!(t.eta.change_min(), Duration::from_secs(120));
    assert_eq!(t.eta.change_fraction, 0.2);
    assert_eq!(problems(&c), Vec::<String>::new());
}

#[test]
fn map_section() {
    let c = parse("[map]\ntile_url = \"/tiles/{z}/{x}/{y}.png\"\ntile_attribution = \"local\"")
        .unwrap();
    assert_eq!(c.map.tile_url, "/tiles/{z}/{x}/{y}.png");
    assert_eq!(problems(&c), Vec::<String>::new());
}

#[test]
fn unknown_key_is_rejected_naming_it_with_its_line() {
    let e = err("[http]\nlisen = \"127.0.0.1:8080\"");
    assert_eq!(
        e,
        "line 2, column 1: http.lisen: unknown key, expected one of `listen`, `request_timeout_seconds`, `header_read_timeout_seconds`, `max_connections`, `tls`, `reader_cpu_percent`"
    );
}

#[test]
fn unknown_section_and_nested_key_are_rejected_naming_them() {
    let e = err("[htp]\nlisten = \"127.0.0.1:8080\"");
    assert!(
        e.starts_with("line 1, column 2: htp: unknown key, expected one of"),
        "{e}"
    );
    let e = err("[tracker.eta]\ndetour = 1.2");
    assert!(e.contains("tracker.eta.detour: unknown key"), "{e}");
}

#[test]
fn wrong_type_names_the_path_and_line() {
    let e = err("[storage]\npath = \"x\"\nretention_days = \"thirty\"");
    assert!(
        e.starts_with("line 3, column 18: storage.retention_days: invalid type: string \"thirty\""),
        "{e}"
    );
    let e = err("[http]\nlisten = \"localhost\"");
    assert!(
        e.starts_with("line 2, column 10: http.listen: invalid socket address"),
        "{e}"
    );
    let e = err("[tracker.eta]\ndetour_factor = true");
    assert!(
        e.contains("tracker.eta.detour_factor: invalid type: boolean"),
        "{e}"
    );
    let e = err("http = 5");
    assert!(
        e.starts_with("line 1, column 8: http: invalid type: integer"),
        "{e}"
    );
    let e = err("[mqtt]\nkeep_alive_seconds = 100000");
    assert!(
        e.contains("mqtt.keep_alive_seconds: invalid value: integer `100000`"),
        "{e}"
    );
}

#[test]
fn keep_alive_is_one_rule_from_5_to_65535_seconds() {
    for ok in [5, 30, 65_535] {
        let c = parse(&format!("[mqtt]\nkeep_alive_seconds = {ok}")).unwrap();
        assert_eq!(problems(&c), Vec::<String>::new(), "{ok}");
        assert_eq!(c.mqtt.keep_alive(), Duration::from_secs(ok));
        assert_eq!(u64::from(c.mqtt.keep_alive_seconds.get()), ok);
    }
    for low in [1, 4] {
        let c = parse(&format!("[mqtt]\nkeep_alive_seconds = {low}")).unwrap();
        assert_eq!(
            problems(&c),
            ["mqtt.keep_alive_seconds: must be between 5 and 65535"],
            "{low}"
        );
    }
    assert!(
        MqttConfig::KEEP_ALIVE_SECONDS.contains(&MqttConfig::default().keep_alive_seconds.get())
    );
    let e = err("[mqtt]\nkeep_alive_seconds = 0");
    assert!(
        e.contains("mqtt.keep_alive_seconds: invalid value: integer `0`"),
        "{e}"
    );
}

#[test]
fn syntax_error_gives_the_line() {
    let e = err("[http]\nlisten = \n");
    assert!(e.starts_with("line 2, column "), "{e}");
    assert!(e.contains("invalid TOML"), "{e}");
}

#[test]
fn loading_a_file_names_it_in_errors() {
    let dir = std::env::temp_dir().join(format!("landport-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[storage]\nretention_days = -1\n").unwrap();
    let e = Config::load_with_env(Some(&file), [])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{}:2:18: storage.retention_days: invalid value",
            file.display()
        )),
        "{e}"
    );
    std::fs::write(&file, "[storage]\nretention_days = 0\n").unwrap();
    let e = Config::load_with_env(Some(&file), []).unwrap_err();
    assert_eq!(e.to_string(), "storage.retention_days: must be at least 1");
    let missing = dir.join("missing.toml");
    let e = Config::load_with_env(Some(&missing), []).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("missing.toml: cannot read config file"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn no_file_means_defaults_and_overrides() {
    let c = Config::load_with_env(None, env(&[("LANDPORT_STORAGE__RETENTION_DAYS", "7")])).unwrap();
    assert_eq!(c.storage.retention_days, 7);
}

#[test]
fn env_overrides_a_key() {
    let c = parse_env(
        "[http]\nlisten = \"127.0.0.1:8080\"",
        &[("LANDPORT_HTTP__LISTEN", "0.0.0.0:9000")],
    )
    .unwrap();
    assert_eq!(c.http.listen, addr("0.0.0.0:9000"));
}

#[test]
fn env_overrides_are_case_insensitive_and_typed() {
    let c = parse_env(
        "",
        &[
            ("landport_storage__retention_days", "90"),
            ("Landport_Ingest__Auto_Register", "true"),
            ("LANDPORT_LOG__FORMAT", "json"),
            ("LANDPORT_TRACKER__MAX_SPEED_KMH", "100"),
        ],
    )
    .unwrap();
    assert_eq!(c.storage.retention_days, 90);
    assert!(c.ingest.auto_register);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.tracker.max_speed_kmh, 100.0);
}

#[test]
fn env_overrides_a_nested_key() {
    let c = parse_env("", &[("LANDPORT_TRACKER__ETA__DETOUR_FACTOR", "1.2")]).unwrap();
    assert_eq!(c.tracker.eta.detour_factor, 1.2);
    assert_eq!(c.tracker.eta.default_speed_kmh, 50.0);
}

#[test]
fn env_override_creates_the_influxdb_section() {
    let c = parse_env(
        "",
        &[
            ("LANDPORT_INFLUXDB__URL", "http://influx.internal:8086"),
            ("LANDPORT_INFLUXDB__TOKEN", "abc"),
        ],
    )
    .unwrap();
    let i = c.influxdb.expect("created");
    assert_eq!(i.url, "http://influx.internal:8086");
    assert_eq!(i.token.expose(), "abc");
    assert_eq!(i.bucket, "telemetry");
}

#[test]
fn env_override_of_a_string_field_keeps_digits_and_words_as_written() {
    let c = parse_env(
        "",
        &[
            ("LANDPORT_MQTT__USERNAME", "1234"),
            ("LANDPORT_MQTT__PASSWORD", "007"),
            (
                "LANDPORT_AUTH__ADMIN_KEY",
                "12345678901234567890123456789012",
            ),
            ("LANDPORT_INGEST__OWNTRACKS_DEFAULT_TENANT", "true"),
            ("LANDPORT_LOG__LEVEL", "nan"),
        ],
    )
    .unwrap();
    assert_eq!(c.mqtt.credentials(), Some(("1234", "007")));
    assert_eq!(
        c.auth.admin_key.as_ref().map(Secret::expose),
        Some("12345678901234567890123456789012")
    );
    assert_eq!(c.ingest.owntracks_default_tenant, "true");
    assert_eq!(c.log.level, "nan");
}

#[test]
fn env_override_fills_a_map() {
    let c = parse_env(
        "[ingest.owntracks_tenants]\nalice = \"acme\"",
        &[
            ("LANDPORT_INGEST__OWNTRACKS_TENANTS__BOB", "globex"),
            (
                "LANDPORT_INGEST__OWNTRACKS_TENANTS",
                "{ carol = \"initech\" }",
            ),
        ],
    )
    .unwrap();
    assert_eq!(
        c.ingest.owntracks_tenant("alice"),
        "default",
        "the table was replaced"
    );
    assert_eq!(
        c.ingest.owntracks_tenant("bob"),
        "globex",
        "then bob was added"
    );
    assert_eq!(c.ingest.owntracks_tenant("carol"), "initech");
}

#[test]
fn other_environment_variables_are_ignored() {
    let c = parse_env(
        "",
        &[
            ("PATH", "/usr/bin"),
            ("LANDPORT_CONFIG", "/etc/landport.toml"),
            ("LANDPORTX__HTTP__LISTEN", "nonsense"),
            ("HTTP__LISTEN", "nonsense"),
        ],
    )
    .unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn env_override_of_an_unknown_key_names_the_variable() {
    let e = parse_env("", &[("LANDPORT_HTTP__LISEN", "0.0.0.0:9000")]).unwrap_err();
    assert!(
        matches!(&e, ConfigError::Override { var, path, .. }
        if var == "LANDPORT_HTTP__LISEN" && path == "http.lisen"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "http.lisen: unknown key, expected one of `listen`, `request_timeout_seconds`, `header_read_timeout_seconds`, `max_connections`, `tls`, `reader_cpu_percent` (set by environment variable LANDPORT_HTTP__LISEN)"
    );
    let e = parse_env("", &[("LANDPORT_NOPE__X", "1")])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("nope: unknown key"), "{e}");
    assert!(
        e.ends_with("(set by environment variable LANDPORT_NOPE__X)"),
        "{e}"
    );
}

#[test]
fn bad_override_values_name_the_variable() {
    let e = parse_env("", &[("LANDPORT_STORAGE__RETENTION_DAYS", "thirty")])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("storage.retention_days: invalid type: string \"thirty\""),
        "{e}"
    );
    assert!(
        e.ends_with("(set by environment variable LANDPORT_STORAGE__RETENTION_DAYS)"),
        "{e}"
    );

    let e = parse_env("", &[("LANDPORT_HTTP__LISTEN", "8080")])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("http.listen: invalid socket address"), "{e}");
    assert!(e.contains("LANDPORT_HTTP__LISTEN"), "{e}");

    let e = parse_env("", &[("LANDPORT_HTTP__LISTEN__PORT", "1")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("LANDPORT_HTTP__LISTEN__PORT"), "{e}");
    assert!(e.contains("http.listen"), "{e}");

    let e = parse_env("", &[("LANDPORT_HTTP____LISTEN", "1")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("LANDPORT_HTTP____LISTEN"), "{e}");
    assert!(e.contains("malformed"), "{e}");
}

#[test]
fn a_file_error_is_reported_as_a_file_error_despite_unrelated_overrides() {
    let e = parse_env(
        "[http]\nlisen = \"x\"",
        &[("LANDPORT_STORAGE__PATH", "/tmp/x")],
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::Field { .. }), "{e:?}");
}

#[test]
fn validation_names_each_broken_field() {
    let c = parse(
        r#"
        [mqtt]
        embedded = false
        url = "http://broker:1883"
        [storage]
        retention_days = 0
        [influxdb]
        api = "v2"
        [tracker.eta]
        detour_factor = 0.9
        "#,
    )
    .unwrap();
    let got = problems(&c);
    let want = [
        "mqtt.url: must be an mqtt://, tcp:// or mqtts:// URL",
        "storage.retention_days: must be at least 1",
        "influxdb.token: required when api = \"v2\"",
        "tracker.eta.detour_factor: must be >= 1",
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (got, want) in got.iter().zip(want) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
    assert!(matches!(c.validate(), Err(ConfigError::Invalid(p)) if p.len() == 4));
}

#[test]
fn validation_messages() {
    let cases: &[(&str, &str)] = &[
        (
            "[mqtt]\nembedded = false",
            "mqtt.url: required when embedded = false",
        ),
        (
            "[mqtt]\nurl = \"mqtt://\"",
            "mqtt.url: must be an mqtt://, tcp:// or mqtts:// URL",
        ),
        (
            "[mqtt]\npassword = \"x\"",
            "mqtt.password: set without mqtt.username",
        ),
        (
            "[mqtt]\nclient_id = \" \"",
            "mqtt.client_id: must not be empty",
        ),
        (
            "[mqtt]\nkeep_alive_seconds = 1",
            "mqtt.keep_alive_seconds: must be between 5 and 65535",
        ),
        (
            "[mqtt]\nembedded_buffer_mb = 0",
            "mqtt.embedded_buffer_mb: must be between 1 and 65536 (MiB)",
        ),
        ("[storage]\npath = \"\"", "storage.path: must not be empty"),
        (
            "[influxdb]\nurl = \"influx:8086\"\ntoken = \"t\"",
            "influxdb.url: must be an http:// or https:// URL",
        ),
        (
            "[influxdb]\ntoken = \"t\"\nbucket = \"\"",
            "influxdb.bucket: required when api = \"v2\"",
        ),
        (
            "[influxdb]\ntoken = \"t\"\norg = \"\"",
            "influxdb.org: required when api = \"v2\"",
        ),
        (
            "[influxdb]\napi = \"v1\"\ndatabase = \"\"",
            "influxdb.database: required when api = \"v1\"",
        ),
        (
            "[influxdb]\napi = \"v1\"\npassword = \"p\"",
            "influxdb.password: set without influxdb.username",
        ),
        (
            "[influxdb]\ntoken = \"t\"\nbatch_max_lines = 0",
            "influxdb.batch_max_lines: must be at least 1",
        ),
        (
            "[influxdb]\ntoken = \"t\"\nflush_interval_ms = 0",
            "influxdb.flush_interval_ms: must be at least 1",
        ),
        (
            "[influxdb]\ntoken = \"t\"\nspool_max_bytes = 0",
            "influxdb.spool_max_bytes: must be at least 1",
        ),
        (
            "[auth]\nadmin_key = \"short\"",
            "auth.admin_key: must be at least 32 characters",
        ),
        (
            "[auth]\nadmin_key = \"\"",
            "auth.admin_key: must be at least 32 characters",
        ),
        (
            "[auth]\nadmin_key = \"0123456789 abcdef0123456789abcdef\"",
            "auth.admin_key: must not contain whitespace",
        ),
        (
            "[auth]\nadmin_key = \"change-me-to-a-long-random-key-0123456789\"",
            "auth.admin_key: is the placeholder of an example",
        ),
        (
            "[auth]\nadmin_key = \"CHANGEME0123456789abcdefghijklmnopq\"",
            "auth.admin_key: is the placeholder of an example",
        ),
        (
            "[auth]\nadmin_key = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
            "auth.admin_key: has fewer than 8 different characters",
        ),
        (
            "[auth]\nadmin_key = \"abababababababababababababababab\"",
            "auth.admin_key: has fewer than 8 different characters",
        ),
        (
            "[ingest]\nmax_payload_bytes = 0",
            "ingest.max_payload_bytes: must be between 1 and",
        ),
        (
            "[ingest]\nowntracks_default_tenant = \"\"",
            "ingest.owntracks_default_tenant: tenant id \"\" is empty",
        ),
        (
            "[ingest.owntracks_tenants]\nalice = \"a/b\"",
            "ingest.owntracks_tenants.alice: tenant id",
        ),
        (
            "[ingest.owntracks_tenants]\n\"a+b\" = \"acme\"",
            "ingest.owntracks_tenants.a+b: OwnTracks user \"a+b\" holds an MQTT wildcard",
        ),
        ("[log]\nlevel = \"\"", "log.level: must not be empty"),
        (
            "[tracker]\noffline_after_seconds = 0",
            "tracker.offline_after_seconds: must be at least 1",
        ),
        (
            "[tracker]\nroute_corridor_m = 0",
            "tracker.route_corridor_m: must be a number greater than 0",
        ),
        (
            "[tracker]\nmax_speed_kmh = -1",
            "tracker.max_speed_kmh: must be a number >= 0",
        ),
        (
            "[tracker]\nweight_change_kg = nan",
            "tracker.weight_change_kg: must be a number greater than 0",
        ),
        (
            "[tracker]\nplace_radius_m = inf",
            "tracker.place_radius_m: must be a number greater than 0",
        ),
        (
            "[tracker.eta]\ndetour_factor = inf",
            "tracker.eta.detour_factor: must be >= 1",
        ),
        (
            "[tracker.eta]\ndefault_speed_kmh = 0",
            "tracker.eta.default_speed_kmh: must be a number greater than 0",
        ),
        (
            "[tracker.eta]\nmin_speed_kmh = 60",
            "tracker.eta.min_speed_kmh: must not exceed tracker.eta.default_speed_kmh",
        ),
        (
            "[tracker.eta]\nchange_fraction = 1.5",
            "tracker.eta.change_fraction: must be between 0 and 1",
        ),
        (
            "[map]\ntile_url = \"https://tiles.example/{z}/{x}.png\"",
            "map.tile_url: must be an http(s):// URL or a /path",
        ),
        (
            "[map]\ntile_url = \"//cdn/{z}/{x}/{y}.png\"",
            "map.tile_url: must be an http(s):// URL or a /path",
        ),
    ];
    for (text, want) in cases {
        let c = parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
        let got = problems(&c);
        assert_eq!(got.len(), 1, "{text:?}: {got:#?}");
        assert!(
            got[0].starts_with(want),
            "{text:?}: got {:?}, want {want:?}",
            got[0]
        );
    }
}

#[test]
fn invalid_display_joins_every_problem() {
    let c = parse("[storage]\nretention_days = 0\n[log]\nlevel = \"\"").unwrap();
    let e = c.validate().unwrap_err();
    assert_eq!(
        e.to_string(),
        "storage.retention_days: must be at least 1; log.level: must not be empty"
    );
    assert_eq!(e.problems().len(), 2);
}

#[test]
fn a_config_written_back_out_reads_the_same() {
    let mut c = Config {
        influxdb: Some(InfluxDbConfig {
            token: Secret::new("tok"),
            ..InfluxDbConfig::default()
        }),
        ..Config::default()
    };
    c.auth.admin_key = Some(Secret::new("0123456789abcdef0123456789abcdef"));
    c.ingest
        .owntracks_tenants
        .insert("alice".to_string(), "acme".to_string());
    c.mqtt.url = Some("mqtt://broker:1883".to_string());
    let text = toml::to_string(&c).expect("serializes");
    assert_eq!(parse(&text).expect("reads back"), c);
}

#[test]
fn summary_names_the_essentials_without_secrets() {
    let c = parse_env(
        "[influxdb]\ntoken = \"supersecrettoken\"\n[auth]\nadmin_key = \"0123456789abcdef0123456789abcdefXYZ\"",
        &[],
    )
    .unwrap();
    let s = c.summary();
    assert!(s.contains("http 127.0.0.1:8080"), "{s}");
    assert!(s.contains("influxdb v2 http://127.0.0.1:8086"), "{s}");
    assert!(s.contains("admin key set"), "{s}");
    assert!(s.contains("log info text"), "{s}");
    assert!(!s.contains("supersecret") && !s.contains("XYZ"), "{s}");
    assert!(!s.contains('\n'));
}

#[test]
fn the_retired_embedded_buffer_key_still_loads_and_is_checked() {
    let c = parse("[mqtt]\nembedded_buffer_mb = 128").unwrap();
    assert_eq!(c.mqtt.embedded_buffer_mb, Some(128));
    assert_eq!(Config::default().mqtt.embedded_buffer_mb, None);
}

#[test]
fn owntracks_tenants_follow_the_one_id_rule_and_name_the_field() {
    let c = parse(
        "[ingest]\nowntracks_default_tenant = \"a b\"\n\
         [ingest.owntracks_tenants]\nalice = \"lkw-müller\"\n\"bob/x\" = \"acme\"",
    )
    .unwrap();
    let p = problems(&c);
    assert!(
        p.iter()
            .any(|m| m.starts_with("ingest.owntracks_default_tenant:")
                && m.contains("outside A-Z a-z 0-9 . _ -")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.starts_with("ingest.owntracks_tenants.alice:") && m.contains("non-ASCII")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.starts_with("ingest.owntracks_tenants.bob/x:") && m.contains("user")),
        "{p:?}"
    );
    assert_eq!(p.len(), 3, "{p:?}");
}

#[test]
fn the_readers_cpu_share_is_bounded_and_zero_means_no_limit() {
    let mut c = Config::default();
    assert_eq!(c.http.reader_cpu_percent, 10);
    c.http.reader_cpu_percent = 0;
    assert_eq!(problems(&c), Vec::<String>::new());
    c.http.reader_cpu_percent = 100_001;
    assert_eq!(
        problems(&c),
        ["http.reader_cpu_percent: must be 0 (no limit) to 100000 (percent of one core)"]
    );
    assert!(
        err("[http]\nreader_cpu_percent = -5").contains("http.reader_cpu_percent"),
        "{}",
        err("[http]\nreader_cpu_percent = -5")
    );
}
