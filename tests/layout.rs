//! The crates' dependencies point down the chain ingest -> pipeline -> store -> sinks | api
//! only (docs/architecture.md): read from `cargo metadata`, so a new arrow the wrong way fails
//! here rather than in review. Only normal dependencies count: a test may use any crate.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Each workspace crate's normal (non-dev) dependencies on other workspace crates.
fn workspace_deps() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null()) // normal, not dev or build
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .filter(|n| ours.contains(n))
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn no_crate_reaches_back_up_the_chain() {
    let deps = workspace_deps();
    let of = |name: &str| deps.get(name).unwrap_or_else(|| panic!("no crate {name}"));
    // What each crate may depend on (besides crates outside the workspace).
    let allowed: &[(&str, &[&str])] = &[
        ("landport-tracker", &[]),
        ("landport-config", &["landport-tracker"]),
        ("landport-store", &["landport-tracker"]),
        ("landport-pipeline", &["landport-tracker", "landport-store"]),
        (
            "landport-ingest",
            &["landport-tracker", "landport-store", "landport-pipeline"],
        ),
        (
            "landport-sinks",
            &["landport-tracker", "landport-store", "landport-pipeline"],
        ),
        (
            "landport-api",
            &["landport-tracker", "landport-store", "landport-pipeline"],
        ),
    ];
    for (name, may) in allowed {
        let extra: Vec<&String> = of(name)
            .iter()
            .filter(|d| !may.contains(&d.as_str()))
            .collect();
        assert!(extra.is_empty(), "{name} depends on {extra:?}");
    }
    for (name, never, why) in [
        (
            "landport-api",
            "landport-ingest",
            "the API reads the pipeline's read side and the store, never ingest",
        ),
        (
            "landport-api",
            "landport-sinks",
            "the API reads the store, not what tails it",
        ),
        (
            "landport-pipeline",
            "landport-ingest",
            "ingest hands the pipeline decoded messages; the pipeline never reaches back",
        ),
        (
            "landport-pipeline",
            "landport-sinks",
            "the sinks tail the store; the pipeline does not know they exist",
        ),
        (
            "landport-ingest",
            "landport-sinks",
            "ingest stops at decoded readings; the sinks start at the store",
        ),
        (
            "landport-sinks",
            "landport-ingest",
            "the sinks take the MQTT client through a trait the binary implements",
        ),
    ] {
        assert!(
            !of(name).contains(never),
            "{name} depends on {never}: {why}"
        );
    }
}
