//! The embedded store: the service's source of truth (SPEC 7), one SQLite database
//! (`landport.db`, WAL mode) in the storage directory.
//!
//! # Tables
//!
//! | table | key | what | written by |
//! | --- | --- | --- | --- |
//! | `telemetry` | `id` (rowid, `AUTOINCREMENT`) | every accepted reading, in typed columns | pipeline ([`Store::commit`]) |
//! | `events` | `seq` (`AUTOINCREMENT`), `id` unique, `(tenant, tenant_seq)` unique | the event envelope as JSON, plus tenant, device, shipment, geofence, type, ts, stored-at columns | pipeline ([`Store::commit`]) |
//! | `event_counters` | `tenant` | each tenant's last event number (`tenant_seq`) | pipeline ([`Store::commit`]) |
//! | `cursors` | `name` | how far each tailing consumer got (rowid or seq) | InfluxDB sink, MQTT outbox |
//! | `snapshots` | `id` | the last two tracker snapshots and the telemetry rowid each covers | pipeline |
//! | `tenants`, `api_keys` | `id` | tenants; API keys as SHA-256 hashes, never the key | API |
//! | `devices`, `geofences`, `shipments` | `(tenant, id)` | the registry; definitions as JSON | API (shipment status: pipeline too) |
//! | `share_tokens` | `token_hash` | public tracking links, hashed like keys, one per shipment, with an optional expiry | API |
//! | `device_credentials` | `(tenant, device)` | MQTT passwords of registered devices, SHA-256 hashed like keys, one per device, deleted with it | API; read by the MQTT endpoint's authenticator |
//! | `webhooks`, `webhook_deliveries` | `(tenant, id)`, `id` | webhooks (SPEC 13) and their outbox: one row per event and matching webhook, pending until delivered or given up | API, webhook engine (`webhooks`) |
//!
//! Layout: `schema` (DDL and migrations by `PRAGMA user_version`), `telemetry`, `events`,
//! `cursor`, `snapshot`, `tenants` (tenants and API keys), `devices`, `geofences`, `shipments`
//! (shipments and share tokens), `reports` (streamed history, geofence visits, a shipment's
//! events for SPEC 14's reports), `error`.
//!
//! # What is durable when
//!
//! A write is durable when the method that made it returns `Ok`: each is one transaction. The
//! journal is a WAL; how far a commit goes before returning is [`Synchronous`], per connection
//! ([`Store::set_synchronous`]; the config's `storage.synchronous` for every writer):
//!
//! - [`Synchronous::Normal`] (the default): a commit appends to the WAL with `write(2)` and
//!   returns; the WAL is `fsync`ed only at checkpoints. A process that dies (panic, `kill -9`,
//!   OOM killer) loses nothing it committed, since the data is already in the kernel's page
//!   cache, which is what SPEC 10 asks. An OS crash or power cut can roll back the commits
//!   since the last checkpoint (never corrupt the file).
//! - [`Synchronous::Full`]: each commit also `fsync`s the WAL before returning, so a power
//!   cut loses nothing committed, at the price of one `fsync` per commit.
//!
//! # At-least-once, with de-duplication
//!
//! 1. The pipeline applies a batch of readings to the in-memory tracker, then calls
//!    [`Store::commit`] with the readings and the events they produced: one transaction.
//!    Only after it returns does it acknowledge the MQTT messages. A crash before the commit
//!    loses nothing: the broker redelivers the unacknowledged messages.
//! 2. A crash after the commit but before the acknowledgement makes the broker redeliver
//!    readings that are already stored. The duplicate check of `commit` (same tenant, device and
//!    `ts`, and same `seq` when both carry one: SPEC 11) drops them, and the events they might
//!    produce again carry the same deterministic ids, which the insert ignores (`ON CONFLICT (id) DO NOTHING`).
//! 3. Now and then the pipeline saves a tracker snapshot with the highest telemetry rowid it has
//!    applied ([`Store::save_snapshot`], [`Committed::last_rowid`]). On restart it restores the
//!    newest snapshot that decodes ([`Store::load_snapshots`]; else the one before it, else
//!    none, replaying every stored reading) and replays [`Store::readings_after`] its rowid
//!    through the tracker, in rowid order (the order they were applied in). Re-derived events
//!    are ignored by id, so no event is lost and none appears twice with different ids.
//! 4. The InfluxDB sink and the MQTT event publisher tail `telemetry` / `events` from a
//!    persisted cursor ([`Store::cursor`]): read a page, deliver it, and only once the far side
//!    has confirmed it, [`Store::set_cursor`]. A crash in between delivers the page again:
//!    InfluxDB overwrites a point with the same series and time, and MQTT consumers
//!    de-duplicate by event id. The cursor update therefore is *not* part of `commit`'s
//!    transaction: moving it with the data would mark rows delivered before they were
//!    (at-most-once). The store is their spool and outbox: nothing is lost while InfluxDB or the
//!    broker is down, as long as retention does not overtake the cursor.
//!
//! # Connections and threads
//!
//! A [`Store`] wraps one SQLite connection: it is `Send` but not `Sync`, and its methods block.
//! Call them from a dedicated thread (or `spawn_blocking`), never while holding an async lock.
//! Several connections may be open at once: [`Store::open`] again for another writer (SQLite
//! serializes writers; the loser waits up to the busy timeout), [`Store::reader`] /
//! [`Store::open_reader`] for a read-only connection that runs beside the writer, as WAL allows.
//! Keep read transactions short: a reader that never finishes stops checkpoints from recycling
//! the WAL.
//!
//! # Tenancy
//!
//! Every registry method takes the tenant (a record's `tenant` field, for inserts and
//! updates) and filters by it: a row of another tenant looks exactly like a missing one, and a
//! share token can only be made for a shipment of its own tenant. The exceptions are the
//! look-ups by secret ([`Store::lookup_key_hash`], [`Store::lookup_share`]), which is how the
//! tenant is learnt. List methods and [`EventFilter`] take `Option<&str>` / `Option<String>`:
//! `None` means every tenant and is for admin keys (and the pipeline) only. Registry rows need
//! no tenant row (an auto-registered device's tenant may exist only in topics); API keys do.

mod checkpoint;
mod cluster;
mod credentials;
mod cursor;
mod devices;
mod error;
mod events;
mod geofences;
mod mqtt_sessions;
mod reports;
mod schema;
mod shipments;
mod snapshot;
mod telemetry;
mod tenants;
mod webhooks;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use checkpoint::{CheckpointReport, Checkpointer};
pub use credentials::CredentialSet;
pub use devices::DeviceRecord;
pub use error::StoreError;
pub use events::{EventFilter, PRUNE_EVENTS_CHUNK_ROWS};
pub use geofences::GeofenceRecord;
pub use mqtt_sessions::MqttSession;
pub use reports::{Visit, VisitFilter};
pub use schema::SCHEMA_VERSION;
pub use shipments::{ShareToken, ShipmentRecord};
pub use telemetry::{Committed, PRUNE_CHUNK_ROWS, TelemetryRow};
pub use tenants::{ApiKey, KeyHash, Tenant};
pub use webhooks::{
    AttemptOutcome, AttemptRecord, DeliveryQuery, DeliveryRecord, DeliveryStatus, DueDelivery,
    FANOUT_CURSOR, FanOut, PendingStats, WebhookHealth, WebhookRecord, WebhookTarget,
    check_patterns, check_target, forbidden_ip, pattern_matches,
};

/// File name of the database inside the storage directory.
pub const DB_FILE: &str = "landport.db";

/// How long a connection waits for another connection's write lock before failing with
/// `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page size of a new database (SQLite's default is 4 KiB; an existing file keeps its own).
/// A commit writes every page it touched to the WAL, and a batch from N devices touches about
/// N leaf pages of the `(tenant, device, ts)` index, one per device: halving the page halves
/// those writes. In the bench, 1,000 readings from 1,000 devices commit about 1.4 times as
/// fast as with 4 KiB pages, and 1,000 from 100 devices as fast (1 KiB pages lost there).
const PAGE_SIZE_BYTES: i64 = 2048;

/// The WAL is copied back into the database by the commit that grows it past this many pages
/// (about 250 MiB of log): a checkpoint with two `fsync`s, and a third when the next commit
/// starts the log over. The [`Checkpointer`] copies the WAL back every few tens of ms, and once
/// it has copied everything while no commit or query is running, the next commit starts the
/// log over without any of that. So only a writer that never pauses (ingest at full speed)
/// reaches the mark, once every few seconds, and then finds little left to copy. The `fsync`s
/// are what costs: each waits for whatever else the disk is writing (20-100 ms on the
/// development VM), and every acknowledgement behind that commit waits with it. At 40 MiB
/// (the mark until 2026-12-07) that came about once a second at 20k readings/s, and publish ->
/// PUBACK p99 was 36-44 ms; with this mark 4.5-5.2 ms in the same sitting (BENCHMARKS.md). A
/// page that many commits touch (the tail of a device's index run) is copied back once per
/// checkpoint, not once per commit, which is also why SQLite's default mark (1,000 pages)
/// halved the commit rate. Recovery after a crash reads the WAL whole: a larger mark costs
/// start-up time after one: 3.3 s instead of 2.0 s to `/readyz` after `kill -9` at full speed
/// with the log at its largest (258 MiB, against 53 MiB before).
pub(crate) const WAL_AUTOCHECKPOINT_PAGES: i64 = 128_000;

/// Once a checkpoint has copied the WAL back, the WAL file is truncated to at most this size:
/// above the autocheckpoint mark (128,000 pages of 2 KiB plus their 24-byte headers), so that
/// a busy store reuses its WAL file instead of truncating it at every restart. Truncating
/// freed the file's blocks (a synchronous discard on this machine's ext4) and the next commits
/// allocated them again: 40-60 ms in the writer's thread each time.
const JOURNAL_SIZE_LIMIT_BYTES: i64 = 320 * 1024 * 1024;

// A WAL that reaches the mark must fit under the limit, or every restart truncates it again.
// The 32 bytes are SQLite's WAL header, each frame has a 24-byte header.
const _: () =
    assert!(32 + WAL_AUTOCHECKPOINT_PAGES * (PAGE_SIZE_BYTES + 24) < JOURNAL_SIZE_LIMIT_BYTES);

/// Prepared statements kept per connection (the event filters alone have 16 variants).
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// What a commit waits for before returning (SQLite's `PRAGMA synchronous` in WAL mode); see
/// the module docs, "What is durable when".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Synchronous {
    /// Survives the death of the process; a power cut may roll back the last commits.
    #[default]
    Normal,
    /// Also survives a power cut: one `fsync` per commit.
    Full,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// One connection to the store. See the module docs.
pub struct Store {
    /// The SQLite connection; `Send`, not `Sync`.
    conn: Connection,
    /// The storage directory, so that [`Store::reader`] can open the same database.
    dir: PathBuf,
    /// What [`Store::commit`] knows of each device's newest stored reading, to skip the
    /// duplicate look-up of readings newer than it (see `telemetry`).
    newest_stored: telemetry::NewestStored,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

impl Store {
    /// Opens the store in `dir` for reading and writing, creating the directory and
    /// `landport.db` when missing and migrating the schema.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let mut conn = Connection::open(dir.join(DB_FILE))?;
        configure(&conn)?;
        // Only takes effect on a new, empty file; must precede the switch to WAL.
        conn.pragma_update(None, "page_size", PAGE_SIZE_BYTES)?;
        // Persistent: once set, every later connection to the file uses WAL too.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::WalUnavailable(mode));
        }
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn,
            dir: dir.to_owned(),
            newest_stored: Default::default(),
        })
    }

    /// Opens a read-only connection to an existing store (one that [`Store::open`] has
    /// created), for the HTTP API: WAL lets it read while the pipeline writes. Writes through
    /// it fail with [`StoreError::Sqlite`].
    pub fn open_reader(dir: &Path) -> Result<Store, StoreError> {
        // Opened read-write without CREATE, then `query_only`: a connection opened with
        // SQLITE_OPEN_READ_ONLY cannot create the WAL index (`-shm`) when no writer is open.
        let conn = Connection::open_with_flags(
            dir.join(DB_FILE),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn)?;
        conn.pragma_update(None, "query_only", true)?;
        let found = schema::version(&conn)?;
        if found != SCHEMA_VERSION {
            return Err(StoreError::SchemaVersion {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Store {
            conn,
            dir: dir.to_owned(),
            newest_stored: Default::default(),
        })
    }

    /// A new read-only connection to the same store (see [`Store::open_reader`]).
    pub fn reader(&self) -> Result<Store, StoreError> {
        Store::open_reader(&self.dir)
    }

    /// Writes a consistent copy of the whole database to a new file at `path` (SQLite's
    /// `VACUUM INTO`: one read transaction, so writers on other connections go on; the copy
    /// has no WAL and no free pages). A cluster shard's snapshot: the file opens as a store
    /// directory's [`DB_FILE`].
    pub fn copy_to(&self, path: &Path) -> Result<(), StoreError> {
        let path = path.to_str().ok_or_else(|| StoreError::Corrupt {
            table: "(copy)",
            reason: format!("the copy's path {} is not UTF-8", path.display()),
        })?;
        self.conn.execute("VACUUM INTO ?1", [path])?;
        Ok(())
    }

    /// Sets what this connection's commits wait for ([`Synchronous::Normal`] on open). Give
    /// every connection that writes the same setting: a commit's durability is its own
    /// connection's.
    pub fn set_synchronous(&self, mode: Synchronous) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "synchronous", mode.pragma_value())?;
        Ok(())
    }

    /// This connection's setting ([`Store::set_synchronous`]).
    pub fn synchronous(&self) -> Result<Synchronous, StoreError> {
        let level: i64 = self
            .conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))?;
        // SQLite's numbers: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA; only the first two are set here.
        Ok(if level >= 2 {
            Synchronous::Full
        } else {
            Synchronous::Normal
        })
    }

    /// The storage directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `PRAGMA integrity_check`; `Ok(())` when SQLite reports `ok`, else the problems it
    /// lists, one per line.
    pub fn integrity_check(&self) -> Result<Result<(), String>, StoreError> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let lines = stmt
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        if lines.len() == 1 && lines[0] == "ok" {
            Ok(Ok(()))
        } else {
            Ok(Err(lines.join("\n")))
        }
    }
}

/// The `WHERE` clause of a list scoped to one tenant (bound as `?1`, e.g. with
/// `params_from_iter(tenant)`), or to every tenant for `None`. Two statements rather than
/// `?1 IS NULL OR tenant = ?1`, which would scan every tenant's rows for one tenant's list.
fn tenant_scope(tenant: Option<&str>) -> &'static str {
    match tenant {
        Some(_) => "WHERE tenant = ?1",
        None => "",
    }
}

/// Where a page of a list sorted by `(tenant, id)` starts: after `after` (a `(tenant, id)`
/// key), for `tenant` (`None` = every tenant). Returns the `WHERE` clause and its parameters
/// (bound `?1`, `?2`, ... in order); the statement adds `ORDER BY tenant, id LIMIT n`.
/// Both columns lead the tables' primary keys, so a page is an index range scan.
fn page_scope<'a>(
    tenant: Option<&'a str>,
    after: Option<(&'a str, &'a str)>,
) -> (String, Vec<&'a str>) {
    match (tenant, after) {
        (None, None) => (String::new(), vec![]),
        (Some(t), None) => ("WHERE tenant = ?1".to_owned(), vec![t]),
        (Some(t), Some((_, id))) => ("WHERE tenant = ?1 AND id > ?2".to_owned(), vec![t, id]),
        (None, Some((at, id))) => (
            "WHERE (tenant > ?1 OR (tenant = ?1 AND id > ?2))".to_owned(),
            vec![at, id],
        ),
    }
}

/// Per-connection settings, for writers and readers alike.
fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Durable against the death of the process (kill -9), which is what SPEC 10 asks; not
    // against an OS crash or power cut, which may roll back the last commits, unless the
    // caller asks for `Synchronous::Full`. See the module docs, "What is durable when".
    conn.pragma_update(None, "synchronous", Synchronous::Normal.pragma_value())?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES)?;
    // The telemetry index outgrows SQLite's default 2 MiB page cache within minutes at fleet
    // rates, and the bench profile showed a third of the writer's time in page reads: keep up
    // to 64 MiB of pages per connection (negative = KiB).
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Store>();
    }

    #[test]
    fn open_creates_the_directory_in_wal_mode_at_the_current_version() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let store = Store::open(&dir).unwrap();
        assert!(dir.join(DB_FILE).exists());
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = store
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let page: i64 = store
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        assert_eq!(page, PAGE_SIZE_BYTES);
        assert_eq!(schema::version(&store.conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(store.integrity_check().unwrap(), Ok(()));
    }

    #[test]
    fn synchronous_is_normal_on_open_and_full_on_request() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(store.synchronous().unwrap(), Synchronous::Normal);
        store.set_synchronous(Synchronous::Full).unwrap();
        assert_eq!(store.synchronous().unwrap(), Synchronous::Full);
        let level: i64 = store
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(level, 2, "FULL");
        // per connection: another one starts at NORMAL
        assert_eq!(
            Store::open(tmp.path()).unwrap().synchronous().unwrap(),
            Synchronous::Normal
        );
        store.set_synchronous(Synchronous::Normal).unwrap();
        assert_eq!(store.synchronous().unwrap(), Synchronous::Normal);
    }

    #[test]
    fn opening_twice_migrates_once() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Store::open(tmp.path()).unwrap();
        let b = Store::open(tmp.path()).unwrap();
        assert_eq!(schema::version(&b.conn).unwrap(), SCHEMA_VERSION);
        drop((a, b));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        store
            .conn
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(store);
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaVersion { found, .. } if found == SCHEMA_VERSION + 1),
            "{err}"
        );
        assert!(matches!(
            Store::open_reader(tmp.path()).unwrap_err(),
            StoreError::SchemaVersion { .. }
        ));
    }

    #[test]
    fn a_reader_cannot_write_and_needs_an_existing_store() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(Store::open_reader(tmp.path()).is_err());
        let writer = Store::open(tmp.path()).unwrap();
        let mut reader = writer.reader().unwrap();
        let err = reader.set_cursor("x", 1).unwrap_err();
        assert!(matches!(err, StoreError::Sqlite(_)), "{err}");
    }
}
