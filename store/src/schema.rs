//! The schema and its migrations, versioned by `PRAGMA user_version`.
//!
//! `MIGRATIONS[i]` takes a database from version `i` to `i + 1`. Append new steps; never edit a
//! released one. All pending steps run in one `BEGIN IMMEDIATE` transaction, so two processes
//! opening a fresh directory at once cannot both migrate it, and a crash mid-migration leaves
//! the previous version.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Schema version 1.
///
/// `telemetry` and `events` use `AUTOINCREMENT` on purpose: their ids are cursors (the
/// InfluxDB sink, the MQTT outbox, snapshot replay), and plain rowids may be reused after the
/// newest rows are deleted (retention emptying the table), which would make a cursor skip rows.
const V1: &str = "
CREATE TABLE telemetry (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT    NOT NULL,
    device      TEXT    NOT NULL,
    shipment    TEXT,
    ts_ms       INTEGER NOT NULL,
    seq         INTEGER,
    lat         REAL,
    lon         REAL,
    speed_kmh   REAL,
    heading_deg REAL,
    accuracy_m  REAL,
    temp_c      REAL,
    weight_kg   REAL,
    battery_pct REAL,
    received_ms INTEGER NOT NULL
);
-- track queries and the duplicate check of every insert
CREATE INDEX telemetry_by_device_ts ON telemetry (tenant, device, ts_ms);

CREATE TABLE events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT    NOT NULL UNIQUE,
    tenant   TEXT    NOT NULL,
    device   TEXT    NOT NULL,
    shipment TEXT,
    geofence TEXT,
    type     TEXT    NOT NULL,
    ts_ms    INTEGER NOT NULL,
    body     TEXT    NOT NULL
);
-- cursor paging (`seq > ?`) per tenant, with each filter of `GET /v1/events`
CREATE INDEX events_by_tenant   ON events (tenant, seq);
CREATE INDEX events_by_device   ON events (tenant, device, seq);
CREATE INDEX events_by_shipment ON events (tenant, shipment, seq) WHERE shipment IS NOT NULL;
CREATE INDEX events_by_type     ON events (tenant, type, seq);

CREATE TABLE cursors (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE snapshots (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    applied_rowid INTEGER NOT NULL,
    bytes         BLOB    NOT NULL
);

CREATE TABLE tenants (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE api_keys (
    id         TEXT    PRIMARY KEY,
    tenant     TEXT    NOT NULL,
    hash       BLOB    NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant);

CREATE TABLE devices (
    tenant     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    profile    TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

CREATE TABLE geofences (
    tenant     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    def        TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

CREATE TABLE shipments (
    tenant     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    device     TEXT    NOT NULL,
    def        TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX shipments_by_device ON shipments (tenant, device);

CREATE TABLE share_tokens (
    token_hash BLOB    PRIMARY KEY,
    tenant     TEXT    NOT NULL,
    shipment   TEXT    NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX share_tokens_by_shipment ON share_tokens (tenant, shipment);
";

/// Schema version 2 (SPEC 15): per-tenant event numbers, event retention, share-token expiry.
///
/// - `events.tenant_seq`: the event's number among its tenant's events (1, 2, 3, ...), the
///   cursor of `GET /v1/events` for a tenant key. The global `seq` stays the cursor of the sinks
///   and of admin keys; a tenant's cursor must not reveal how many events other tenants had.
///   `event_counters` holds each tenant's last number, so numbers are never reused even when
///   retention has deleted every event of a tenant. Existing events are numbered in seq order.
///   The per-tenant filter indexes move from `seq` to `tenant_seq` (within a tenant both grow
///   together: they are assigned in the same commit, in the same order).
/// - `events.stored_ms`: when the event was stored (server clock), which retention goes by;
///   for events stored before this version, their event time.
/// - `share_tokens.expires_ms`: an explicit expiry; `NULL` = the default rule (7 days after
///   the shipment's arrival, else its deadline: `landport-api` computes it).
const V2: &str = "
ALTER TABLE events ADD COLUMN tenant_seq INTEGER;
ALTER TABLE events ADD COLUMN stored_ms INTEGER;
UPDATE events SET stored_ms = ts_ms;
UPDATE events SET tenant_seq = numbered.n
FROM (SELECT seq, row_number() OVER (PARTITION BY tenant ORDER BY seq) AS n FROM events) AS numbered
WHERE events.seq = numbered.seq;

CREATE TABLE event_counters (
    tenant TEXT    PRIMARY KEY,
    last   INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO event_counters (tenant, last) SELECT tenant, max(tenant_seq) FROM events GROUP BY tenant;

DROP INDEX events_by_tenant;
DROP INDEX events_by_device;
DROP INDEX events_by_shipment;
DROP INDEX events_by_type;
CREATE UNIQUE INDEX events_by_tenant ON events (tenant, tenant_seq);
CREATE INDEX events_by_device   ON events (tenant, device, tenant_seq);
CREATE INDEX events_by_shipment ON events (tenant, shipment, tenant_seq) WHERE shipment IS NOT NULL;
CREATE INDEX events_by_type     ON events (tenant, type, tenant_seq);

ALTER TABLE share_tokens ADD COLUMN expires_ms INTEGER;
";

/// Schema version 3 (SPEC 13): webhooks and their deliveries.
///
/// - `webhooks`: one row per webhook, keyed by `(tenant, id)` like the registry (ids are
///   global too: `wh_` + 128 random bits). `events` is the JSON array of type patterns;
///   `secret` (and `previous_secret` until `previous_until_ms`, during a rotation) are the
///   signing keys, kept as given since they must sign; `start_seq` is the event seq when it
///   was created (it gets the events after it); `last_*` columns are its health.
/// - `webhook_deliveries`: the outbox. The event log is the outbox's commit (an event is
///   durable with the readings, in the pipeline's transaction); the engine turns each event
///   after the cursor `webhooks` (in `cursors`) into one row per matching webhook, in the same
///   transaction that moves the cursor, so a crash at any moment loses none and the unique
///   index on live rows makes a repeat harmless. A replay adds rows with `replay = 1`.
///   `queued_ms` starts the retry window, `next_ms` is when it is due.
const V3: &str = "
CREATE TABLE webhooks (
    tenant            TEXT    NOT NULL,
    id                TEXT    NOT NULL,
    url               TEXT    NOT NULL,
    events            TEXT    NOT NULL,
    description       TEXT    NOT NULL,
    enabled           INTEGER NOT NULL,
    disabled_reason   TEXT,
    secret            TEXT    NOT NULL,
    previous_secret   TEXT,
    previous_until_ms INTEGER,
    start_seq         INTEGER NOT NULL,
    created_ms        INTEGER NOT NULL,
    updated_ms        INTEGER NOT NULL,
    last_success_ms   INTEGER,
    last_failure_ms   INTEGER,
    last_status       INTEGER,
    last_error        TEXT,
    failures          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX webhooks_by_id ON webhooks (id);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant          TEXT    NOT NULL,
    webhook         TEXT    NOT NULL,
    event_seq       INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    replay          INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    queued_ms       INTEGER NOT NULL,
    next_ms         INTEGER NOT NULL,
    last_attempt_ms INTEGER,
    done_ms         INTEGER
);
CREATE UNIQUE INDEX webhook_deliveries_live ON webhook_deliveries (webhook, event_seq) WHERE replay = 0;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook, next_ms) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_next ON webhook_deliveries (next_ms) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook, status, id);
CREATE INDEX webhook_deliveries_done ON webhook_deliveries (done_ms) WHERE done_ms IS NOT NULL;
";

/// Schema version 4 (SPEC 12): persistent sessions of Landport's own MQTT endpoint
/// (`mqtt_sessions`, see `mqtt_sessions.rs`): subscriptions as a JSON array of
/// `[filter, qos]`, the event seq the client has up to, and when it may be forgotten.
const V4: &str = "
CREATE TABLE mqtt_sessions (
    client_id       TEXT    PRIMARY KEY,
    owner           TEXT    NOT NULL,
    subscriptions   TEXT    NOT NULL,
    cursor          INTEGER NOT NULL,
    expiry_seconds  INTEGER,
    disconnected_ms INTEGER
) WITHOUT ROWID;
";

/// Schema version 5 (SPEC 12): device credentials for the MQTT endpoint
/// (`credentials.rs`). One row per device that has one: the SHA-256 of its password (never
/// the password), when it was set. The trigger deletes a device's credential with the device
/// (`delete_device`, and `delete_tenant`, which deletes its devices row by row), so a device
/// registered again under the same id starts without one.
const V5: &str = "
CREATE TABLE device_credentials (
    tenant     TEXT    NOT NULL,
    device     TEXT    NOT NULL,
    hash       BLOB    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, device)
) WITHOUT ROWID;
CREATE TRIGGER device_credentials_go_with_the_device AFTER DELETE ON devices
BEGIN
    DELETE FROM device_credentials WHERE tenant = OLD.tenant AND device = OLD.id;
END;
";

/// Schema version 6 (cluster mode, SPEC 16): the stream sequence of the last registry-log entry
/// this store (a partition's shard) applied (`cluster.rs`). One row at most.
const V6: &str = "
CREATE TABLE cluster_registry (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    applied_seq INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
";

const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Reads `PRAGMA user_version`.
pub(super) fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Brings the database up to [`SCHEMA_VERSION`]; refuses a newer one.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if !(0..=SCHEMA_VERSION).contains(&found) {
        return Err(StoreError::SchemaVersion {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(()); // dropping `tx` rolls back the empty transaction
    }
    for step in &MIGRATIONS[found as usize..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}
