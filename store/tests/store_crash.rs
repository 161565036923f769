//! `kill -9` in the middle of a stream of commits (SPEC 10): every commit the writer reported
//! is there after the restart, every batch is there whole or not at all, and the file is
//! intact.
//!
//! The writer is this test binary run again with `CHILD_DIR` set: it runs only
//! `crash_child_commits_until_killed`, which commits numbered batches in a loop and prints
//! `COMMITTED n` after each commit returns. The parent reads those lines, kills the child with
//! SIGKILL while it is still writing, and checks the store; five rounds, each resuming where
//! the last one stopped, so that recovery of a recovered file is tested too.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use landport_store::{EventFilter, Store, TelemetryRow};
use landport_tracker::{Event, EventType, Reading};

/// Set in the child's environment: the store directory.
const CHILD_DIR: &str = "LANDPORT_STORE_CRASH_CHILD_DIR";
/// Set in the child's environment: the first batch number to commit.
const CHILD_FIRST_BATCH: &str = "LANDPORT_STORE_CRASH_FIRST_BATCH";
const READINGS_PER_BATCH: usize = 500;
/// Batches per round the parent waits to see reported before it kills the child.
const BATCHES_BEFORE_KILL: usize = 15;
/// One round per entry: how long after the last awaited report the parent kills the child.
/// A commit of a batch takes a few milliseconds in a debug build, so the delays move the kill
/// through the inserts and the WAL write of the next commit; the test holds for any delay.
const KILL_DELAYS_US: [u64; 5] = [0, 1_500, 3_500, 5_500, 7_500];
/// Readings of batch `b` have `ts_ms` in `[b * TS_STRIDE, (b + 1) * TS_STRIDE)`.
const TS_STRIDE: i64 = 1_000_000;

fn batch(b: u64) -> (Vec<TelemetryRow>, Vec<Event>) {
    let base = b as i64 * TS_STRIDE;
    let rows = (0..READINGS_PER_BATCH)
        .map(|i| TelemetryRow {
            tenant: "crash".into(),
            device: format!("truck-{}", i % 20),
            shipment: None,
            reading: Reading::at(base + i as i64)
                .with_seq(i as u64)
                .with_position(122.0 + i as f64 * 1e-4, 41.0)
                .with_temp(-18.0),
            received_ms: base,
        })
        .collect();
    let event = Event::new(
        EventType::DeviceOnline,
        "crash",
        "truck-0",
        None,
        None,
        base,
        0,
        serde_json::json!({ "batch": b }),
    );
    (rows, vec![event])
}

/// The child: a no-op in a normal test run.
#[test]
fn crash_child_commits_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let first: u64 = std::env::var(CHILD_FIRST_BATCH).unwrap().parse().unwrap();
    let mut store = Store::open(Path::new(&dir)).unwrap();
    let mut out = std::io::stdout().lock();
    for b in first.. {
        let (rows, events) = batch(b);
        let c = store.commit(&rows, &events).unwrap();
        assert_eq!((c.readings, c.events), (READINGS_PER_BATCH, 1));
        writeln!(out, "COMMITTED {b}").unwrap();
        out.flush().unwrap();
    }
}

fn parse_committed(line: &str) -> Option<u64> {
    let (_, n) = line.split_once("COMMITTED ")?;
    n.trim().parse().ok()
}

/// Batch number -> readings stored, and the batches whose event is stored.
fn stored_batches(store: &Store) -> (BTreeMap<u64, usize>, BTreeSet<u64>) {
    let mut readings = BTreeMap::new();
    for (_, row) in store.readings_after(0, usize::MAX).unwrap() {
        *readings
            .entry((row.reading.ts_ms / TS_STRIDE) as u64)
            .or_insert(0) += 1;
    }
    let events = store
        .events_after(&EventFilter::default(), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, e)| (e.ts_ms / TS_STRIDE) as u64)
        .collect();
    (readings, events)
}

#[test]
fn kill_9_mid_stream_keeps_every_reported_commit_and_an_intact_file() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut reported = BTreeSet::new();
    let mut next = 0u64;
    for (round, delay_us) in KILL_DELAYS_US.into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_commits_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, tmp.path())
            .env(CHILD_FIRST_BATCH, next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < BATCHES_BEFORE_KILL {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("round {round}: the child stopped before batch {seen}"))
                .unwrap();
            if let Some(b) = parse_committed(&line) {
                reported.insert(b);
                seen += 1;
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(delay_us));
        child.kill().unwrap(); // SIGKILL: no destructor, no checkpoint, no clean close
        // what the child printed before it died was committed too
        for line in lines {
            if let Some(b) = parse_committed(&line.unwrap()) {
                reported.insert(b);
            }
        }
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: the child was not killed");

        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(store.integrity_check().unwrap(), Ok(()), "round {round}");
        let (readings, events) = stored_batches(&store);
        for b in &reported {
            assert_eq!(
                readings.get(b),
                Some(&READINGS_PER_BATCH),
                "round {round}: reported batch {b} is not all there"
            );
        }
        for (b, n) in &readings {
            assert_eq!(
                *n, READINGS_PER_BATCH,
                "round {round}: batch {b} is partial"
            );
        }
        let stored: BTreeSet<u64> = readings.keys().copied().collect();
        assert_eq!(stored, events, "round {round}: readings and events differ");
        // at most the batch in flight when the child died is stored without being reported
        let unreported: Vec<_> = stored.difference(&reported).collect();
        assert!(unreported.len() <= 1, "round {round}: {unreported:?}");
        next = stored.last().map_or(0, |b| b + 1);
        assert_eq!(
            store.telemetry_rowid_max().unwrap(),
            stored.len() as i64 * READINGS_PER_BATCH as i64
        );
    }
    assert!(reported.len() >= KILL_DELAYS_US.len() * BATCHES_BEFORE_KILL);
}
