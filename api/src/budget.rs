//! The readers' CPU budget: while ingest is busy, the large reads (position boxes, the live
//! maps' positions) may use `http.reader_cpu_percent` of one core and wait beyond it.
//!
//! The HTTP side already runs at the lowest priority (`SCHED_IDLE`, see `src/run.rs`), so it
//! only gets CPU that ingest leaves. That is not enough: ingest is a chain of threads handing
//! batches on, and readers that keep the other core busy in the gaps (wrk's 20 province-box
//! readers ask again as soon as they are answered) still cost it its cache and every wake-up
//! that finds a core taken; measured, ingest ran at 0.5-0.6x of its rate alone
//! (BENCHMARKS.md, "the read side"). A priority cannot bound that; a budget can. It is a
//! token bucket of CPU time, filled at the configured share and spent by the HTTP threads'
//! own CPU time (each gate charges the CPU its thread used since its previous gate, so
//! writing to sockets and everything else a reader costs counts), only while ingest is busy:
//! one of its stages worked at least half of a 100 ms window in the last second
//! ([`IngestLoad::is_busy`]). When ingest is not busy, readers take what they need at once.

use std::cell::Cell;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use landport_pipeline::IngestLoad;

/// CPU time readers may spend at once beyond their share (a province box takes ~8 ms).
const BURST: Duration = Duration::from_millis(50);
/// Longest single wait, so a reader looks again at how busy ingest is.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// See the module docs. Cheap to share; disabled (no limit) when built with a share of 0.
#[derive(Debug)]
pub struct ReaderBudget {
    /// Cores readers may use while ingest is busy; `None`: no limit.
    share: Option<f64>,
    load: Arc<IngestLoad>,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// CPU time (ns) readers may still spend; negative: owed.
    tokens: f64,
    at: Instant,
}

thread_local! {
    /// This thread's CPU time (ns) when it last passed a gate.
    static CHARGED: Cell<Option<u64>> = const { Cell::new(None) };
}

impl ReaderBudget {
    /// A budget of `percent` of one core (0: no limit) against `load`.
    pub fn new(percent: u32, load: Arc<IngestLoad>) -> ReaderBudget {
        ReaderBudget {
            share: (percent > 0).then(|| f64::from(percent) / 100.0),
            load,
            bucket: Mutex::new(Bucket {
                tokens: BURST.as_nanos() as f64,
                at: Instant::now(),
            }),
        }
    }

    /// No limit.
    pub fn unlimited() -> ReaderBudget {
        ReaderBudget::new(0, Arc::default())
    }

    /// Waits until readers may go on: at once unless ingest is busy and readers spent their
    /// share. Call before each piece of a large read (a chunk of a box, a live map's item).
    pub async fn admit(&self) {
        let Some(share) = self.share else { return };
        loop {
            let Some(wait) = self.charge(share, thread_cpu_ns(), Instant::now()) else {
                return;
            };
            tokio::time::sleep(wait.min(MAX_WAIT)).await;
        }
    }

    /// Charges this thread's CPU since its last gate (`cpu_ns` now); how long to wait, if
    /// readers are over their share while ingest is busy.
    fn charge(&self, share: f64, cpu_ns: u64, now: Instant) -> Option<Duration> {
        let spent = CHARGED
            .replace(Some(cpu_ns))
            .map_or(0, |before| cpu_ns.saturating_sub(before));
        let busy = self.load.is_busy(now);
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let earned = now.saturating_duration_since(b.at).as_nanos() as f64 * share;
        b.at = now;
        b.tokens = (b.tokens + earned).min(BURST.as_nanos() as f64) - spent as f64;
        if !busy {
            // What readers spend while ingest is idle is not held against them later.
            b.tokens = b.tokens.max(0.0);
            return None;
        }
        (b.tokens < 0.0).then(|| Duration::from_nanos((-b.tokens / share) as u64))
    }
}

/// The calling thread's CPU time, ns.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use landport_pipeline::IngestStage;

    use super::*;

    /// A load whose writer was busy `fraction` of the last 100 ms before `now`.
    fn load_busy(fraction: f64) -> (Arc<IngestLoad>, Instant) {
        let load = Arc::new(IngestLoad::default());
        let t0 = Instant::now();
        let ms = |n: f64| t0 + Duration::from_secs_f64(n / 1000.0);
        for i in 0..=10 {
            let start = f64::from(i) * 10.0;
            load.worked(IngestStage::Writer, ms(start), ms(start + fraction * 10.0));
        }
        (load, ms(110.0))
    }

    #[test]
    fn readers_wait_past_their_share_only_while_ingest_is_busy() {
        let (busy, now) = load_busy(0.8);
        let budget = ReaderBudget::new(10, busy);
        CHARGED.set(Some(0));
        // The burst (50 ms) is spent, then 10 ms more: at 10 % of a core, 100 ms to earn back.
        assert_eq!(budget.charge(0.1, 50_000_000, now), None);
        let wait = budget.charge(0.1, 60_000_000, now).unwrap();
        assert_eq!(wait, Duration::from_millis(100));
        // Time passes: the share refills the bucket.
        assert_eq!(
            budget.charge(0.1, 60_000_000, now + Duration::from_millis(100)),
            None
        );

        // The same spending while ingest is idle (its last window long gone) never waits.
        let (idle, _) = load_busy(0.8);
        let later = now + Duration::from_secs(2);
        let budget = ReaderBudget::new(10, idle);
        CHARGED.set(Some(0));
        assert_eq!(budget.charge(0.1, 500_000_000, later), None);
        // ...and a light ingest (20 % busy) is not busy.
        let (light, now) = load_busy(0.2);
        let budget = ReaderBudget::new(10, light);
        CHARGED.set(Some(0));
        assert_eq!(budget.charge(0.1, 500_000_000, now), None);
    }

    #[test]
    fn thread_cpu_time_counts_this_threads_work_only() {
        let before = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let spent = thread_cpu_ns() - before;
        assert!(spent > 1_000_000, "{spent} ns for 20M multiply-adds");
        std::thread::sleep(Duration::from_millis(50));
        let idle = thread_cpu_ns() - before - spent;
        assert!(idle < 20_000_000, "sleeping cost {idle} ns of CPU");
    }
}
