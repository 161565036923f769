//! Runs the fuzz targets' bodies (`ingest/fuzz/src/lib.rs`) over the seed corpus
//! (`ingest/fuzz/seeds/`), so that they stay runnable on stable Rust without libFuzzer. Every
//! body runs over every seed: a SenML seed is also a malformed native payload, and so on.

#[path = "../fuzz/src/lib.rs"]
mod fuzz_bodies;

use std::path::Path;

type Body = fn(&[u8]);

const BODIES: [(&str, Body); 4] = [
    ("native", fuzz_bodies::native),
    ("senml", fuzz_bodies::senml),
    ("owntracks", fuzz_bodies::owntracks),
    ("topic", fuzz_bodies::topic),
];

fn seeds() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut seeds = Vec::new();
    for (target, _) in BODIES {
        let dir = root.join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("seed entry").path();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seeds.push((
                format!(
                    "{target}/{}",
                    path.file_name().unwrap_or_default().to_string_lossy()
                ),
                bytes,
            ));
        }
    }
    seeds.sort();
    seeds
}

#[test]
fn every_fuzz_body_passes_on_every_seed() {
    let seeds = seeds();
    assert!(
        seeds.len() >= 20,
        "seed corpus went missing: {} seeds",
        seeds.len()
    );
    for (name, bytes) in &seeds {
        for (target, body) in BODIES {
            let run = std::panic::catch_unwind(|| body(bytes));
            assert!(run.is_ok(), "fuzz body {target} failed on seed {name}");
        }
    }
}

#[test]
fn every_fuzz_body_passes_on_cut_and_flipped_seeds() {
    // Cheap mutations, the kind a fuzzer starts with: every prefix of the small seeds, and each
    // byte flipped in turn.
    for (name, bytes) in seeds().iter().filter(|(_, b)| b.len() <= 512) {
        for (target, body) in BODIES {
            for cut in 0..=bytes.len() {
                let run = std::panic::catch_unwind(|| body(&bytes[..cut]));
                assert!(
                    run.is_ok(),
                    "fuzz body {target} failed on {name} cut at {cut}"
                );
            }
            for i in 0..bytes.len() {
                let mut flipped = bytes.clone();
                flipped[i] ^= 0x20;
                let run = std::panic::catch_unwind(|| body(&flipped));
                assert!(
                    run.is_ok(),
                    "fuzz body {target} failed on {name} with byte {i} flipped"
                );
            }
        }
    }
}
