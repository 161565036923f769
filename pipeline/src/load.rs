//! How busy ingest is, for readers that yield to it: the HTTP side holds its CPU back while
//! ingest is busy (`landport_api`'s reader budget). Ingest's two serial stages report the
//! time they spend working, the store writer (a commit per batch) and the pipeline's task (a
//! batch through the tracker); each folds it into the fraction of the last window it was
//! busy, and ingest is as busy as its busier stage. A stage that has been idle since its
//! last window counts as idle.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a stage's busy fraction is measured over.
const WINDOW: Duration = Duration::from_millis(100);
/// Ingest is busy when a stage worked at least this share (permille) of a window...
const BUSY_PERMILLE: u32 = 500;
/// ...that ended at most this long ago. Readers that slow ingest make its stages wait for
/// work and look idle; holding the verdict this long keeps that from switching the readers'
/// budget off (and so on and off again) while ingest is running at full speed.
const BUSY_HOLD: Duration = Duration::from_secs(1);

/// Ingest's busy fractions, shared by its stages (writers) and readers.
#[derive(Debug)]
pub struct IngestLoad {
    base: Instant,
    writer: Stage,
    pipeline: Stage,
}

/// One stage: only its own thread writes it.
#[derive(Debug, Default)]
struct Stage {
    /// Start of the current window and busy time in it (ns since `base`).
    window_start: AtomicU64,
    busy: AtomicU64,
    /// The last complete window: its busy fraction (permille) and its end (ns since `base`).
    last_permille: AtomicU32,
    last_end: AtomicU64,
    /// The end of the last window at or over [`BUSY_PERMILLE`] (ns since `base`; 0: none).
    busy_end: AtomicU64,
}

/// Which stage reports.
#[derive(Debug, Clone, Copy)]
pub enum IngestStage {
    /// The store writer: one commit per batch.
    Writer,
    /// The pipeline's task: a batch through the tracker.
    Pipeline,
}

impl Default for IngestLoad {
    fn default() -> Self {
        IngestLoad {
            base: Instant::now(),
            writer: Stage::default(),
            pipeline: Stage::default(),
        }
    }
}

impl IngestLoad {
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// `stage` worked from `start` to `end`.
    pub fn worked(&self, stage: IngestStage, start: Instant, end: Instant) {
        let s = self.stage(stage);
        let (start, end) = (self.ns(start), self.ns(end));
        let busy = s.busy.load(Ordering::Relaxed) + end.saturating_sub(start);
        let window_start = s.window_start.load(Ordering::Relaxed);
        let elapsed = end.saturating_sub(window_start);
        if elapsed >= WINDOW.as_nanos() as u64 {
            let permille = (busy.min(elapsed) * 1000 / elapsed.max(1)) as u32;
            s.last_permille.store(permille, Ordering::Relaxed);
            s.last_end.store(end, Ordering::Relaxed);
            if permille >= BUSY_PERMILLE {
                s.busy_end.store(end.max(1), Ordering::Relaxed);
            }
            s.window_start.store(end, Ordering::Relaxed);
            s.busy.store(0, Ordering::Relaxed);
        } else {
            s.busy.store(busy, Ordering::Relaxed);
        }
    }

    fn stage(&self, stage: IngestStage) -> &Stage {
        match stage {
            IngestStage::Writer => &self.writer,
            IngestStage::Pipeline => &self.pipeline,
        }
    }

    /// The busier stage's fraction of its last window spent working (0 to 1), as of `now`; a
    /// stage whose last window ended more than two windows ago has been idle since.
    pub fn busy(&self, now: Instant) -> f64 {
        let now = self.ns(now);
        let fresh = |s: &Stage| {
            let end = s.last_end.load(Ordering::Relaxed);
            if now.saturating_sub(end) > 2 * WINDOW.as_nanos() as u64 {
                0
            } else {
                s.last_permille.load(Ordering::Relaxed)
            }
        };
        f64::from(fresh(&self.writer).max(fresh(&self.pipeline))) / 1000.0
    }

    /// Ingest is busy: a stage worked at least half of a window that ended within the last
    /// second (see [`BUSY_HOLD`]).
    pub fn is_busy(&self, now: Instant) -> bool {
        let now = self.ns(now);
        [&self.writer, &self.pipeline].iter().any(|s| {
            let end = s.busy_end.load(Ordering::Relaxed);
            end > 0 && now.saturating_sub(end) <= BUSY_HOLD.as_nanos() as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_the_busier_stage_over_its_last_window_and_fades_when_idle() {
        let load = IngestLoad::default();
        let t0 = load.base;
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert_eq!(load.busy(ms(0)), 0.0, "nothing reported yet");
        // The writer works 7 ms of every 10 for 100 ms; the pipeline 2 of every 10.
        for i in 0..10 {
            load.worked(IngestStage::Writer, ms(i * 10), ms(i * 10 + 7));
            load.worked(IngestStage::Pipeline, ms(i * 10), ms(i * 10 + 2));
        }
        // The window closes with the first report at or past 100 ms.
        load.worked(IngestStage::Writer, ms(100), ms(107));
        load.worked(IngestStage::Pipeline, ms(100), ms(102));
        let b = load.busy(ms(110));
        assert!((0.7..=0.8).contains(&b), "{b}");
        // Idle since: after two windows without a report it counts as idle.
        assert!(load.busy(ms(250)) > 0.5);
        assert_eq!(load.busy(ms(400)), 0.0);
        // Busy holds for a second after the last busy window (ended at 107 ms).
        assert!(load.is_busy(ms(400)));
        assert!(load.is_busy(ms(1_107)));
        assert!(!load.is_busy(ms(1_108)));
    }

    #[test]
    fn a_light_load_is_never_busy() {
        let load = IngestLoad::default();
        let ms = |n: u64| load.base + Duration::from_millis(n);
        for i in 0..100 {
            load.worked(IngestStage::Writer, ms(i * 10), ms(i * 10 + 3));
        }
        assert!((0.25..=0.35).contains(&load.busy(ms(995))));
        assert!(!load.is_busy(ms(995)));
    }
}
