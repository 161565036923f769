//! Background checkpoints: copying the WAL back into the database on a thread of its own, so
//! that the pipeline's commits rarely do it.
//!
//! Left to itself, SQLite checkpoints inside the commit that grows the WAL past
//! `wal_autocheckpoint` pages: that commit (and every acknowledgement behind it) waits while
//! tens of MiB are copied and `fsync`ed. The bench saw 20-100 ms stalls every few seconds at
//! 5k readings/s. Here a second connection runs `PRAGMA wal_checkpoint(PASSIVE)` every
//! `every`: it copies what is committed so far without waiting for, or blocking, readers or
//! the writer. Copying is only half of a checkpoint's cost, though: SQLite syncs the database
//! file only after a checkpoint that copied every frame, which a passive one racing a busy
//! writer rarely does, so this thread also syncs the database itself as the WAL nears the
//! writer's mark ([`Pacer`]). When the writer's own checkpoint then comes due, almost
//! everything has already been copied back and synced, so its share is small; and because that
//! checkpoint completes, the next commit starts the WAL over from the beginning, which keeps
//! the file bounded.
//!
//! SQLite has no built-in background checkpointer (its docs suggest exactly this: turn to a
//! separate thread or connection), and rusqlite offers the pragma, not the thread.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::{DB_FILE, StoreError, WAL_AUTOCHECKPOINT_PAGES, configure};

/// What one `PRAGMA wal_checkpoint(PASSIVE)` reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointReport {
    /// Frames in the WAL when it ran.
    pub wal_frames: i64,
    /// Of those, frames copied back into the database (now or before).
    pub checkpointed_frames: i64,
}

/// Runs one passive checkpoint on `conn`.
fn passive(conn: &Connection) -> Result<CheckpointReport, StoreError> {
    // Returns (busy, log frames, checkpointed frames); -1s when not in WAL mode.
    let (_busy, wal_frames, checkpointed_frames): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok(CheckpointReport {
        wal_frames,
        checkpointed_frames,
    })
}

/// From this many WAL frames on, the checkpointer syncs the database file after copying frames
/// back, at most every [`SYNC_EVERY`] (see [`Pacer`]).
const SYNC_FROM_FRAMES: i64 = WAL_AUTOCHECKPOINT_PAGES / 2;
const SYNC_EVERY: Duration = Duration::from_millis(100);

/// From this many WAL frames on, right under the writer's mark, it copies and syncs after
/// every commit it finds, [`CLOSE_PAUSE`] apart.
const CLOSE_FROM_FRAMES: i64 = WAL_AUTOCHECKPOINT_PAGES * 9 / 10;
const CLOSE_PAUSE: Duration = Duration::from_millis(1);

/// When the checkpointer syncs the database file itself, and how long it sleeps.
///
/// A passive checkpoint that cannot copy the whole WAL (the writer committed meanwhile, which
/// under steady ingest is nearly always) leaves what it copied unsynced: SQLite syncs the
/// database only once a checkpoint has copied every frame. So the copied pages piled up in the
/// page cache until the writer's own checkpoint at the mark, whose `fsync` then wrote seconds
/// of copies while every acknowledgement waited: 68-85 ms at 20k readings/s on the
/// development VM, every 3.6 s, which alone put publish -> PUBACK p99 at 38-72 ms. Syncing here,
/// on this thread, as the WAL nears the mark, and copying each commit as it comes right under
/// it, leaves the writer's checkpoint only the last few milliseconds of frames to copy and
/// sync. (A checkpoint here that happens to fit between two commits completes, SQLite syncs
/// it on this thread, and the writer's next commit starts the WAL over with no checkpoint at
/// all.) Syncing more often than this would rewrite the same hot index pages to disk for no
/// gain: each sync writes what the copies since the last one dirtied.
#[derive(Debug)]
struct Pacer {
    every: Duration,
    /// What the last checkpoint reported.
    last: Option<CheckpointReport>,
    /// When this thread last synced the database.
    synced_at: Option<Instant>,
}

impl Pacer {
    fn new(every: Duration) -> Pacer {
        Pacer {
            every,
            last: None,
            synced_at: None,
        }
    }

    /// After a checkpoint that reported `r`: whether to sync the database now, and how long to
    /// sleep before the next checkpoint.
    fn after(&mut self, r: CheckpointReport, now: Instant) -> (bool, Duration) {
        // The writer committed since the last look (the WAL grew, or started over).
        let moved = self.last != Some(r);
        self.last = Some(r);
        let close = r.wal_frames >= CLOSE_FROM_FRAMES;
        let sync_due = self
            .synced_at
            .is_none_or(|at| now.saturating_duration_since(at) >= SYNC_EVERY);
        let sync = moved && r.wal_frames >= SYNC_FROM_FRAMES && (close || sync_due);
        if sync {
            self.synced_at = Some(now);
        }
        let pause = if moved && close {
            CLOSE_PAUSE
        } else {
            self.every
        };
        (sync, pause)
    }
}

/// A running background checkpointer. Dropping it (or [`Checkpointer::stop`]) stops the thread
/// after its current checkpoint.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the store in `dir` every `every` on a thread named
    /// `landport-checkpoint`. Fails if the database cannot be opened.
    pub fn start(dir: &Path, every: Duration) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(dir.join(DB_FILE))?;
        configure(&conn)?;
        // Its own handle on the database file, for the syncs ahead of the writer's (below).
        let path = dir.join(DB_FILE);
        let db = File::open(&path).map_err(|source| StoreError::OpenFile { path, source })?;
        // Checkpoints are this connection's whole job; the pragma only concerns its commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("landport-checkpoint".into())
                .spawn(move || run(&conn, &db, every, &stop))
                .map_err(|_| StoreError::Thread("checkpoint"))?
        };
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run(conn: &Connection, db: &File, every: Duration, stop: &(Mutex<bool>, Condvar)) {
    let (flag, wake) = stop;
    let mut failures = 0_u32;
    let mut pacer = Pacer::new(every);
    let mut pause = every;
    loop {
        {
            let stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
            let (stopped, _) = wake
                .wait_timeout_while(stopped, pause, |s| !*s)
                .unwrap_or_else(|p| p.into_inner());
            if *stopped {
                return;
            }
        }
        match passive(conn) {
            Ok(report) => {
                failures = 0;
                let sync;
                (sync, pause) = pacer.after(report, Instant::now());
                if sync && let Err(e) = db.sync_data() {
                    tracing::warn!(error = %e, "syncing the database file failed");
                }
            }
            // Harmless for the data (the writer's own checkpoint still runs); logged once in
            // a while, not every period.
            Err(e) => {
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, "background checkpoint failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    const EVERY: Duration = Duration::from_millis(25);

    fn report(wal_frames: i64, checkpointed_frames: i64) -> CheckpointReport {
        CheckpointReport {
            wal_frames,
            checkpointed_frames,
        }
    }

    #[test]
    fn the_pacer_leaves_a_short_wal_to_the_kernel() {
        let mut pacer = Pacer::new(EVERY);
        let t0 = Instant::now();
        for i in 0..10 {
            let at = t0 + Duration::from_secs(i);
            assert_eq!(
                pacer.after(report(1_000 * i as i64, 900), at),
                (false, EVERY)
            );
        }
    }

    #[test]
    fn past_half_the_mark_the_pacer_syncs_copies_every_100_ms() {
        let mut pacer = Pacer::new(EVERY);
        let t0 = Instant::now();
        let half = SYNC_FROM_FRAMES;
        assert_eq!(pacer.after(report(half, half - 10), t0), (true, EVERY));
        let soon = t0 + Duration::from_millis(30);
        assert_eq!(pacer.after(report(half + 50, half), soon), (false, EVERY));
        let later = t0 + SYNC_EVERY;
        assert_eq!(
            pacer.after(report(half + 90, half + 60), later),
            (true, EVERY)
        );
        // Nothing committed since: nothing new to sync, however long ago the last sync was.
        let idle = later + Duration::from_secs(5);
        assert_eq!(
            pacer.after(report(half + 90, half + 60), idle),
            (false, EVERY)
        );
    }

    #[test]
    fn right_under_the_mark_the_pacer_copies_and_syncs_each_commit_then_rests_when_idle() {
        let mut pacer = Pacer::new(EVERY);
        let t0 = Instant::now();
        let close = CLOSE_FROM_FRAMES;
        assert_eq!(
            pacer.after(report(close, close - 5), t0),
            (true, CLOSE_PAUSE)
        );
        let t1 = t0 + Duration::from_millis(2);
        assert_eq!(
            pacer.after(report(close + 8, close), t1),
            (true, CLOSE_PAUSE)
        );
        // The writer paused: the WAL is the same as at the last look.
        let t2 = t1 + Duration::from_millis(1);
        assert_eq!(pacer.after(report(close + 8, close), t2), (false, EVERY));
        // It started the WAL over after a checkpoint that copied everything.
        let t3 = t2 + Duration::from_millis(25);
        assert_eq!(pacer.after(report(40, 0), t3), (false, EVERY));
    }

    fn wal_bytes(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(format!("{DB_FILE}-wal")))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    fn write_rows(store: &Store, from: i64, n: i64) {
        store
            .conn
            .execute_batch("CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        for i in from..from + n {
            store
                .conn
                .execute(
                    "INSERT INTO filler (id, v) VALUES (?1, zeroblob(1500))",
                    [i],
                )
                .unwrap();
        }
    }

    #[test]
    fn a_passive_checkpoint_copies_what_is_committed_without_the_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        write_rows(&store, 0, 200);
        let conn = Connection::open(tmp.path().join(DB_FILE)).unwrap();
        configure(&conn).unwrap();
        let r = passive(&conn).unwrap();
        assert!(r.wal_frames > 200, "{r:?}");
        assert_eq!(
            r.checkpointed_frames, r.wal_frames,
            "nothing else was running"
        );
        // Readable through a fresh connection afterwards, and intact.
        let n: i64 = store
            .conn
            .query_row("SELECT count(*) FROM filler", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 200);
        assert_eq!(store.integrity_check().unwrap(), Ok(()));
    }

    #[test]
    fn beside_the_writers_own_checkpoints_the_wal_stays_bounded_and_the_data_intact() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        // A small autocheckpoint mark so the test needs little data: 500 pages of 2 KiB.
        store
            .conn
            .pragma_update(None, "wal_autocheckpoint", 500)
            .unwrap();
        let checkpointer = Checkpointer::start(tmp.path(), Duration::from_millis(5)).unwrap();
        let mut biggest = 0;
        for round in 0..40 {
            write_rows(&store, round * 100, 100);
            biggest = biggest.max(wal_bytes(tmp.path()));
            // A pause between batches, as ingest has: the checkpointer's thread gets its turn
            // even when other tests keep both cores busy.
            std::thread::sleep(Duration::from_millis(20));
        }
        checkpointer.stop();
        // 4,000 rows of 1.5 KB would be ~6 MB of WAL without restarts; one restart cycle is
        // ~500 pages (~1 MB) plus what one round adds. The bound tells restarts from none,
        // with room for a checkpointer thread that runs late on a loaded machine.
        assert!(biggest < 4_500_000, "the WAL grew to {biggest} bytes");
        let n: i64 = store
            .conn
            .query_row("SELECT count(*) FROM filler", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 4_000);
        assert_eq!(store.integrity_check().unwrap(), Ok(()));
    }

    #[test]
    fn commits_reach_the_database_file_before_the_writer_would_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let db_bytes = || std::fs::metadata(tmp.path().join(DB_FILE)).unwrap().len();
        let empty = db_bytes();
        // ~300 KB, far below the writer's own mark of 20,000 pages: alone, it stays in the WAL.
        write_rows(&store, 0, 200);
        assert_eq!(db_bytes(), empty, "the writer has not checkpointed yet");
        let checkpointer = Checkpointer::start(tmp.path(), Duration::from_millis(10)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while db_bytes() < empty + 200 * 1500 {
            assert!(
                std::time::Instant::now() < deadline,
                "the checkpointer never copied the WAL back"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        checkpointer.stop();
    }

    #[test]
    fn stopping_is_prompt_and_dropping_stops_too() {
        let tmp = tempfile::tempdir().unwrap();
        drop(Store::open(tmp.path()).unwrap());
        let started = std::time::Instant::now();
        Checkpointer::start(tmp.path(), Duration::from_secs(3600))
            .unwrap()
            .stop();
        drop(Checkpointer::start(tmp.path(), Duration::from_secs(3600)).unwrap());
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}
