//! `landport check-config` on the example files and on a broken one, through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `landport check-config FILE` with no `LANDPORT_*` variables from the test's environment.
fn check_config(file: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_landport"));
    command.arg("check-config").arg(file);
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_ascii_uppercase()
            .starts_with("LANDPORT_")
        {
            command.env_remove(name);
        }
    }
    command.output().expect("run landport")
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/examples")
        .join(name)
}

/// A file in a directory of this test's own under cargo's scratch space for integration tests.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("check_config");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

#[test]
fn a_good_config_exits_zero_with_a_one_line_summary() {
    for name in ["production.toml", "minimal.toml", "influxdb1.toml"] {
        let out = check_config(&example(name));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(stdout.contains("OK"), "{stdout}");
    }
}

#[test]
fn an_invalid_config_exits_two_naming_every_bad_field() {
    let path = temp_file(
        "invalid.toml",
        "[storage]\nretention_days = 0\n[tracker.eta]\ndetour_factor = 0.5\n",
    );
    let out = check_config(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "storage.retention_days: must be at least 1",
            "tracker.eta.detour_factor: must be >= 1"
        ]
    );
}

#[test]
fn an_unknown_key_exits_two_naming_it_and_its_line() {
    let path = temp_file("typo.toml", "[http]\nlisen = \"127.0.0.1:8080\"\n");
    let out = check_config(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("typo.toml:2:1: http.lisen: unknown key"),
        "{stderr}"
    );
}

#[test]
fn environment_overrides_are_checked_too() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_landport"));
    let out = command
        .arg("check-config")
        .arg(example("minimal.toml"))
        .env("LANDPORT_HTTP__LISEN", "0.0.0.0:9000")
        .output()
        .expect("run landport");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("LANDPORT_HTTP__LISEN"), "{stderr}");
}

#[test]
fn a_missing_file_exits_two() {
    let out = check_config(Path::new("/nonexistent/landport.toml"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/landport.toml: cannot read config file"),
        "{stderr}"
    );
}

/// SPEC 15: a short or placeholder admin key is refused by `check-config` and by `run`, naming
/// `auth.admin_key`, before anything starts.
#[test]
fn weak_admin_keys_are_refused_by_check_config_and_at_start() {
    for (name, key, why) in [
        (
            "short-key.toml",
            "0123456789abcdef",
            "must be at least 32 characters",
        ),
        (
            "placeholder-key.toml",
            "change-me-to-a-long-random-key-0123456789",
            "is the placeholder of an example",
        ),
        (
            "repeated-key.toml",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "has fewer than 8 different characters",
        ),
    ] {
        let path = temp_file(name, &format!("[auth]\nadmin_key = \"{key}\"\n"));
        let out = check_config(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("auth.admin_key: {why}")),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains(key), "the key is not echoed: {stderr}");

        // `run` refuses it the same way, before binding anything.
        let out = Command::new(env!("CARGO_BIN_EXE_landport"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env_remove("LANDPORT_AUTH__ADMIN_KEY")
            .output()
            .expect("run landport");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: run started: {stderr}");
        assert!(stderr.contains("auth.admin_key"), "{name}: {stderr}");
    }
    let good = temp_file(
        "good-key.toml",
        "[auth]\nadmin_key = \"5f0c2a9e8b7d4c1e3a6f9b2d8e4c7a1f\"\n",
    );
    assert!(check_config(&good).status.success());
}
