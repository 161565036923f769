//! The province box's same-run baseline (SPEC 18, scripts/bench-api): what it costs to
//! serialize the very FeatureCollection `GET /v1/positions` answered, once, with serde_json
//! from a ready `serde_json::Value`. Landport's CPU per request is compared with it.

use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct SerdeBaseline {
    /// Bytes `serde_json::to_vec` wrote.
    pub bytes: usize,
    pub rounds: u32,
    /// This thread's CPU time (user + system) over all rounds, per serialization.
    pub cpu_us_per_serialization: u64,
    /// Wall-clock time of the median round.
    pub wall_us_median: u64,
}

/// Serializes `value` `rounds` times (at least 1 s of CPU in all, so that the kernel's
/// 10 ms accounting of CPU time does not decide the figure).
pub fn serde_baseline(value: &serde_json::Value, rounds: u32) -> Result<SerdeBaseline> {
    let mut bytes = serde_json::to_vec(value)?.len();
    let cpu0 = thread_cpu_ms()?;
    let mut walls = Vec::new();
    while walls.len() < rounds as usize || thread_cpu_ms()? - cpu0 < 1_000 {
        let t = Instant::now();
        bytes = std::hint::black_box(serde_json::to_vec(value)?).len();
        walls.push(t.elapsed().as_micros() as u64);
    }
    let cpu_ms = thread_cpu_ms()? - cpu0;
    walls.sort_unstable();
    Ok(SerdeBaseline {
        bytes,
        rounds: walls.len() as u32,
        cpu_us_per_serialization: cpu_ms * 1_000 / walls.len() as u64,
        wall_us_median: walls[walls.len() / 2],
    })
}

/// The calling thread's CPU time (utime + stime of `/proc/thread-self/stat`, in the kernel's
/// USER_HZ of 100 ticks a second), in ms.
fn thread_cpu_ms() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")
        .context("reading /proc/thread-self/stat (Linux)")?;
    // Fields after the command name, which may hold spaces: state is field 3, utime 14.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .context("unexpected /proc/thread-self/stat")
    };
    Ok((tick(11)? + tick(12)?) * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_serializes_the_document_and_counts_cpu_time() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"type":"FeatureCollection","features":[{"id":"t1"}]}"#)
                .unwrap();
        let b = serde_baseline(&v, 3).unwrap();
        assert_eq!(b.bytes, serde_json::to_vec(&v).unwrap().len());
        assert!(b.rounds >= 3, "{b:?}");
        // At least a second of CPU went into the rounds.
        assert!(
            u64::from(b.rounds) * b.cpu_us_per_serialization >= 900_000,
            "{b:?}"
        );
    }
}
