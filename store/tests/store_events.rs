//! Per-tenant event numbers (the cursor of a tenant's `GET /v1/events`), event retention, and
//! the migration that numbers the events of a version 1 database (SPEC 15).

use landport_store::{EventFilter, SCHEMA_VERSION, Store};
use landport_tracker::{Event, EventType};
use serde_json::json;

fn event(tenant: &str, device: &str, n: i64) -> Event {
    Event::new(
        EventType::DeviceOnline,
        tenant,
        device,
        None,
        None,
        1_795_000_000_000 + n,
        0,
        json!({"n": n}),
    )
}

fn numbers(page: &[(i64, Event)]) -> Vec<i64> {
    page.iter().map(|(n, _)| *n).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn a_tenants_numbers_count_only_its_own_events() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    // acme's events are interleaved with a hundred of globex's
    let mut events = Vec::new();
    for n in 0..103 {
        let tenant = if n % 34 == 0 { "acme" } else { "globex" };
        events.push(event(tenant, "d1", n));
    }
    store.commit(&[], &events).unwrap();
    let acme = store
        .tenant_events_after(&EventFilter::tenant("acme", 0), 100)
        .unwrap();
    assert_eq!(numbers(&acme), [1, 2, 3, 4], "no gap shows globex's volume");
    assert_eq!(store.tenant_event_seq_max("acme").unwrap(), 4);
    assert_eq!(store.tenant_event_seq_max("globex").unwrap(), 99);
    assert_eq!(store.tenant_event_seq_max("initech").unwrap(), 0);
    // paging by the numbers
    let page = store
        .tenant_events_after(&EventFilter::tenant("acme", 2), 1)
        .unwrap();
    assert_eq!(numbers(&page), [3]);
    assert_eq!(page[0].1, events[68]);
    // a replay (same ids) takes no number
    store.commit(&[], &events).unwrap();
    store.commit(&[], &[event("acme", "d2", 500)]).unwrap();
    assert_eq!(store.tenant_event_seq_max("acme").unwrap(), 5);
    // the filters combine with the numbers
    let d2 = EventFilter {
        device: Some("d2".into()),
        ..EventFilter::tenant("acme", 0)
    };
    assert_eq!(numbers(&store.tenant_events_after(&d2, 10).unwrap()), [5]);
    let online = EventFilter {
        kind: Some(EventType::DeviceOnline),
        ..EventFilter::tenant("acme", 3)
    };
    assert_eq!(
        numbers(&store.tenant_events_after(&online, 10).unwrap()),
        [4, 5]
    );
    assert!(
        store
            .tenant_events_after(&EventFilter::default(), 10)
            .is_err(),
        "a tenant is required"
    );
    // the global seq (sinks, admin) is unchanged
    assert_eq!(
        store
            .events_after(&EventFilter::default(), 1_000)
            .unwrap()
            .len(),
        104
    );
}

#[test]
fn retention_deletes_old_events_and_numbers_never_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    store
        .commit(&[], &[event("acme", "d1", 1), event("acme", "d1", 2)])
        .unwrap();
    // nothing is older than an hour ago
    assert_eq!(store.prune_events(now_ms() - 3_600_000).unwrap(), 0);
    assert_eq!(
        store
            .events_after(&EventFilter::default(), 10)
            .unwrap()
            .len(),
        2
    );
    // everything stored before a minute from now goes
    assert_eq!(store.prune_events(now_ms() + 60_000).unwrap(), 2);
    assert!(
        store
            .events_after(&EventFilter::default(), 10)
            .unwrap()
            .is_empty()
    );
    // acme's next event is number 3, not 1: a client holding cursor 2 does not miss it
    store.commit(&[], &[event("acme", "d1", 3)]).unwrap();
    let page = store
        .tenant_events_after(&EventFilter::tenant("acme", 2), 10)
        .unwrap();
    assert_eq!(numbers(&page), [3]);
    drop(store);
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.tenant_event_seq_max("acme").unwrap(), 3);
    assert_eq!(store.integrity_check().unwrap(), Ok(()));
}

#[test]
fn pruning_many_events_goes_in_chunks_and_keeps_the_newer_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path()).unwrap();
    let old: Vec<Event> = (0..25_000).map(|n| event("acme", "d1", n)).collect();
    store.commit(&[], &old).unwrap();
    let cutoff = now_ms() + 1;
    std::thread::sleep(std::time::Duration::from_millis(5));
    store.commit(&[], &[event("acme", "d1", 99_999)]).unwrap();
    assert_eq!(store.prune_events(cutoff).unwrap(), 25_000);
    let left = store.events_after(&EventFilter::default(), 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1.ts_ms, 1_795_000_000_000 + 99_999);
}

/// A database written by schema version 1 (before per-tenant numbers): its events are numbered
/// per tenant in seq order on open, and new ones continue from there.
#[test]
fn a_version_1_database_gets_its_events_numbered_per_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(tmp.path().join(landport_store::DB_FILE)).unwrap();
        conn.execute_batch(include_str!("fixtures/schema_v1.sql"))
            .unwrap();
        let mut insert = conn
            .prepare(
                "INSERT INTO events (id, tenant, device, type, ts_ms, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .unwrap();
        for (n, tenant) in ["acme", "globex", "globex", "acme"].iter().enumerate() {
            let e = event(tenant, "d1", n as i64);
            insert
                .execute(rusqlite::params![
                    e.id,
                    e.tenant,
                    e.device,
                    e.kind.as_str(),
                    e.ts_ms,
                    serde_json::to_string(&e).unwrap()
                ])
                .unwrap();
        }
        conn.execute(
            "INSERT INTO share_tokens (token_hash, tenant, shipment, created_ms) VALUES (x'00', 'acme', 'S', 1)",
            [],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let mut store = Store::open(tmp.path()).unwrap();
    let acme = store
        .tenant_events_after(&EventFilter::tenant("acme", 0), 10)
        .unwrap();
    assert_eq!(numbers(&acme), [1, 2]);
    assert_eq!(acme[1].1.ts_ms, 1_795_000_000_000 + 3);
    store.commit(&[], &[event("acme", "d1", 10)]).unwrap();
    assert_eq!(store.tenant_event_seq_max("acme").unwrap(), 3);
    assert_eq!(store.tenant_event_seq_max("globex").unwrap(), 2);
    // old events are stored "at" their event time: long past, retention takes them
    assert_eq!(store.prune_events(1_795_000_000_000 + 100).unwrap(), 4);
    assert_eq!(store.integrity_check().unwrap(), Ok(()));
    const { assert!(SCHEMA_VERSION >= 2, "migrated through version 2 at least") };
}
