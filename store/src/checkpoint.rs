//! Background checkpoints: copying the WAL back into the database on a thread of its own, so
//! that the pipeline's commits rarely do it.
//!
//! Left to itself, SQLite checkpoints inside the commit that grows the WAL past
//! `wal_autocheckpoint` pages: that commit (and every acknowledgement behind it) waits while
//! tens of MiB are copied and `fsync`ed. The bench saw 20-100 ms stalls every few seconds at
//! 5k readings/s. Here a second connection runs `PRAGMA wal_checkpoint(PASSIVE)` every
//! `every`: it copies what is committed so far without waiting for, or blocking, readers or
//! the writer. When the writer's own checkpoint then comes due, almost everything has already
//! been copied back and synced, so its share is small; and because that checkpoint completes,
//! the next commit starts the WAL over from the beginning, which keeps the file bounded (a
//! passive checkpoint racing a busy writer never sees the WAL whole, so it cannot do that).
//!
//! SQLite has no built-in background checkpointer (its docs suggest exactly this: turn to a
//! separate thread or connection), and rusqlite offers the pragma, not the thread.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::{DB_FILE, StoreError, configure};

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
        // Checkpoints are this connection's whole job; the pragma only concerns its commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("landport-checkpoint".into())
                .spawn(move || run(&conn, every, &stop))
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

fn run(conn: &Connection, every: Duration, stop: &(Mutex<bool>, Condvar)) {
    let (flag, wake) = stop;
    let mut failures = 0_u32;
    loop {
        {
            let stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
            let (stopped, _) = wake
                .wait_timeout_while(stopped, every, |s| !*s)
                .unwrap_or_else(|p| p.into_inner());
            if *stopped {
                return;
            }
        }
        match passive(conn) {
            Ok(_) => failures = 0,
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
