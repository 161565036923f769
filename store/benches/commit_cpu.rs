//! The store writer's CPU per reading (not wall time: on a shared machine, time the
//! thread was not running is not the store's cost). Commits as the pipeline makes them from
//! the bench's fleet (`scripts/bench`: 10,000 devices publishing in turn), into a store
//! already holding 20 readings of each device, with the background checkpointer running as
//! in service (every 25 ms, the pipeline's `checkpoint_every`); the variants run
//! interleaved, several rounds, and each prints the committing thread's user + system CPU
//! (`/proc/thread-self/stat`) per reading.
//!
//! - `in_order/N`: commits of N readings, each newer than its device's stored ones (live
//!   ingest: 14 a commit through Mosquitto with one publisher connection, 500 with four
//!   connections to Landport's endpoint);
//! - `late/N`: the same, each reading half a second before a stored one of its device
//!   (store-and-forward backlogs, redeliveries after a crash): every one is looked up in the
//!   index, as every reading was before the store remembered each device's newest `ts`.
//!
//! `cargo bench -p landport-store --bench commit_cpu` (`-- ROUNDS READINGS` to change the 3
//! rounds of 100,000 readings per variant)

use std::time::Duration;

use landport_store::{Checkpointer, Store, TelemetryRow};
use landport_tracker::Reading;

const FLEET: usize = 10_000;
const STORED_PER_DEVICE: usize = 20;

/// Readings `from..from + n` in publishing order (device `i % FLEET`), one a second per
/// device, every `ts` shifted by `offset_ms`.
fn fleet_rows(from: usize, n: usize, offset_ms: i64) -> Vec<TelemetryRow> {
    (from..from + n)
        .map(|i| {
            let device = i % FLEET;
            let step = (i / FLEET) as i64;
            TelemetryRow {
                tenant: "bench".into(),
                device: format!("truck-{device}"),
                shipment: None,
                reading: Reading::at(1_795_000_000_000 + step * 1_000 + offset_ms)
                    .with_seq(step as u64)
                    .with_position(122.0 + device as f64 * 1e-4, 41.0 + step as f64 * 1e-4)
                    .with_speed(60.0)
                    .with_accuracy(4.5)
                    .with_temp(-18.0)
                    .with_weight(18_000.0),
                received_ms: 1_795_000_000_000,
            }
        })
        .collect()
}

/// This thread's user + system CPU time so far, in clock ticks (1/100 s on Linux).
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("Linux /proc");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

struct Variant {
    name: String,
    per_commit: usize,
    late: bool,
    _tmp: tempfile::TempDir,
    store: Store,
    checkpointer: Option<Checkpointer>,
    next: usize,
}

impl Variant {
    fn new(per_commit: usize, late: bool) -> Variant {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        for chunk in 0..STORED_PER_DEVICE {
            store
                .commit(&fleet_rows(chunk * FLEET, FLEET, 0), &[])
                .unwrap();
        }
        let checkpointer = Checkpointer::start(tmp.path(), Duration::from_millis(25)).unwrap();
        Variant {
            name: format!("{}/{per_commit}", if late { "late" } else { "in_order" }),
            per_commit,
            late,
            _tmp: tmp,
            store,
            checkpointer: Some(checkpointer),
            next: if late { 0 } else { STORED_PER_DEVICE * FLEET },
        }
    }

    /// Commits `readings` readings; returns the CPU µs per reading it took.
    fn run(&mut self, readings: usize) -> f64 {
        let stored = STORED_PER_DEVICE * FLEET;
        let batches: Vec<Vec<TelemetryRow>> = (0..readings / self.per_commit)
            .map(|_| {
                let (from, offset_ms) = if self.late {
                    // The 1st..20th readings again, 500 ms early, then 250 ms, ...: never
                    // equal to a stored one.
                    let pass = (self.next / stored) as i64;
                    (self.next % stored, -500 / (1 + pass))
                } else {
                    (self.next, 0)
                };
                self.next += self.per_commit;
                fleet_rows(from, self.per_commit, offset_ms)
            })
            .collect();
        let start = thread_cpu_ticks();
        for rows in &batches {
            let committed = self.store.commit(rows, &[]).unwrap();
            assert_eq!(committed.readings, self.per_commit);
        }
        let ticks = thread_cpu_ticks() - start;
        ticks as f64 * 10_000.0 / (batches.len() * self.per_commit) as f64
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything numeric is ours.
    let numbers: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let rounds = numbers.first().copied().unwrap_or(3);
    let readings = numbers.get(1).copied().unwrap_or(100_000);
    let mut variants: Vec<Variant> = [(14, false), (14, true), (500, false), (500, true)]
        .into_iter()
        .map(|(n, late)| Variant::new(n, late))
        .collect();
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (v, r) in variants.iter_mut().zip(results.iter_mut()) {
            r.push(v.run(readings));
        }
    }
    println!("store commit, CPU µs per reading ({rounds} rounds of {readings} readings):");
    for (v, r) in variants.iter_mut().zip(&results) {
        let shown: Vec<String> = r.iter().map(|x| format!("{x:.2}")).collect();
        println!("  {:<14} {}", v.name, shown.join("  "));
        if let Some(c) = v.checkpointer.take() {
            c.stop();
        }
    }
}
