//! Cursors across a restart: the event seq that `GET /v1/events?since=` pages by, and the
//! named cursors of the consumers that tail the store (the MQTT event outbox). Each test
//! closes the store and opens it again, as a restarted process does.

use std::path::Path;

use landport_store::{EventFilter, Store};
use landport_tracker::{Event, EventType};
use serde_json::json;

/// The MQTT outbox's cursor name (`pipeline::outbox`).
const OUTBOX: &str = "mqtt_events";

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

fn ids(page: &[(i64, Event)]) -> Vec<&str> {
    page.iter().map(|(_, e)| e.id.as_str()).collect()
}

/// Pages through `filter` from its `after_seq`, `limit` at a time, as an API client does with
/// `next`; returns the events and the cursor it ends on (unchanged when caught up).
fn page_all(store: &Store, mut filter: EventFilter, limit: usize) -> (Vec<(i64, Event)>, i64) {
    let mut all = Vec::new();
    loop {
        let page = store.events_after(&filter, limit).unwrap();
        let Some(&(last, _)) = page.last() else {
            return (all, filter.after_seq);
        };
        assert!(last > filter.after_seq, "a page must move the cursor on");
        filter.after_seq = last;
        all.extend(page);
    }
}

fn reopen(dir: &Path) -> Store {
    let store = Store::open(dir).unwrap();
    assert_eq!(store.integrity_check().unwrap(), Ok(()));
    store
}

#[test]
fn events_since_the_last_cursor_after_a_restart_are_only_the_newer_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let before = [
        event("acme", "d1", 1),
        event("initech", "d1", 2),
        event("acme", "d2", 3),
        event("acme", "d1", 4),
    ];
    let cursor = {
        let mut store = Store::open(tmp.path()).unwrap();
        store.commit(&[], &before).unwrap();
        let (seen, cursor) = page_all(&store, EventFilter::tenant("acme", 0), 2);
        assert_eq!(ids(&seen), [&before[0].id, &before[2].id, &before[3].id]);
        cursor
    };
    assert_eq!(cursor, 4);

    let mut store = reopen(tmp.path());
    // Nothing new yet: the cursor is caught up and stays put.
    assert_eq!(
        page_all(&store, EventFilter::tenant("acme", cursor), 2),
        (vec![], cursor)
    );
    // A replay re-derives a stored event (ignored, though it spends a seq), and new ones come.
    let after = [
        event("acme", "d2", 5),
        event("initech", "d1", 6),
        event("acme", "d1", 7),
    ];
    store.commit(&[], &before[3..]).unwrap();
    store.commit(&[], &after).unwrap();

    let (newer, next) = page_all(&store, EventFilter::tenant("acme", cursor), 1);
    assert_eq!(ids(&newer), [&after[0].id, &after[2].id]);
    assert!(newer.iter().all(|(seq, _)| *seq > cursor));
    assert_eq!(next, newer.last().unwrap().0);
    // The other filters page from the same cursor.
    let d1 = EventFilter {
        device: Some("d1".into()),
        ..EventFilter::tenant("acme", cursor)
    };
    assert_eq!(ids(&page_all(&store, d1, 10).0), [&after[2].id]);
    // A reader connection (the API's) sees the same after the restart.
    let reader = Store::open_reader(tmp.path()).unwrap();
    assert_eq!(
        page_all(&reader, EventFilter::tenant("acme", cursor), 10).0,
        newer
    );
}

#[test]
fn event_seqs_carry_on_above_every_cursor_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let first = [event("acme", "d", 1), event("acme", "d", 2)];
    let max = {
        let mut store = Store::open(tmp.path()).unwrap();
        store.commit(&[], &first).unwrap();
        // Ignored duplicates spend seqs too: the newest seq handed out is above the newest row.
        let c = store.commit(&[], &first).unwrap();
        assert_eq!(c.events, 0);
        store.event_seq_max().unwrap()
    };
    assert!(max >= 2);
    let mut store = reopen(tmp.path());
    // A consumer that started "from now" (SSE) before the restart misses nothing after it.
    assert_eq!(store.event_seq_max().unwrap(), max);
    let c = store.commit(&[], &[event("acme", "d", 3)]).unwrap();
    assert_eq!(c.last_event_seq, max + 1);
    let page = store
        .events_after(&EventFilter::tenant("acme", max), 10)
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].0, max + 1);
}

#[test]
fn the_outbox_cursor_resumes_after_its_saved_position_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let events: Vec<Event> = (0..6).map(|n| event("acme", "d", n)).collect();
    let mut delivered = Vec::new();
    {
        let mut store = Store::open(tmp.path()).unwrap();
        store.commit(&[], &events[..4]).unwrap();
        assert_eq!(store.cursor(OUTBOX).unwrap(), 0);
        // The outbox's turn: read a page after its cursor, deliver it, then save the cursor.
        let page = store
            .events_after(
                &EventFilter {
                    after_seq: store.cursor(OUTBOX).unwrap(),
                    ..EventFilter::default()
                },
                3,
            )
            .unwrap();
        delivered.extend(page.iter().map(|(_, e)| e.id.clone()));
        store.set_cursor(OUTBOX, page.last().unwrap().0).unwrap();
        // Events committed after the save are not covered by it.
        store.commit(&[], &events[4..]).unwrap();
    }

    // After the restart the outbox resumes where it saved, to the end, skipping nothing.
    let mut store = reopen(tmp.path());
    let saved = store.cursor(OUTBOX).unwrap();
    assert_eq!(saved, 3);
    let filter = EventFilter {
        after_seq: saved,
        ..EventFilter::default()
    };
    let (rest, last) = page_all(&store, filter, 2);
    delivered.extend(rest.iter().map(|(_, e)| e.id.clone()));
    let all: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(delivered, all, "each event once, in order");
    store.set_cursor(OUTBOX, last).unwrap();
    drop(store);

    // Once it saved the end, a restart sends nothing again; other cursors are apart.
    let store = reopen(tmp.path());
    assert_eq!(store.cursor(OUTBOX).unwrap(), 6);
    assert_eq!(store.cursor("influxdb").unwrap(), 0);
    let caught_up = EventFilter {
        after_seq: 6,
        ..EventFilter::default()
    };
    assert!(store.events_after(&caught_up, 10).unwrap().is_empty());
}
