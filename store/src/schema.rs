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

const MIGRATIONS: &[&str] = &[V1, V2];

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
