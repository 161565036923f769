//! The store's telemetry, events, cursors and snapshots, through the public API.

use landport_store::{EventFilter, PRUNE_CHUNK_ROWS, Store, TelemetryRow};
use landport_tracker::{Event, EventType, Fix, Reading};
use serde_json::json;

fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    (tmp, store)
}

fn row(tenant: &str, device: &str, reading: Reading) -> TelemetryRow {
    TelemetryRow {
        tenant: tenant.into(),
        device: device.into(),
        shipment: None,
        reading,
        received_ms: 1_795_000_000_000,
    }
}

fn event(kind: EventType, tenant: &str, device: &str, shipment: Option<&str>, ts_ms: i64) -> Event {
    Event::new(
        kind,
        tenant,
        device,
        shipment,
        Some("yard"),
        ts_ms,
        0,
        json!({"n": ts_ms}),
    )
}

/// A reading with every field set.
fn full_reading(ts_ms: i64) -> Reading {
    Reading {
        ts_ms,
        seq: Some(42),
        fix: Some(Fix {
            lat: 41.1087,
            lon: 122.9946,
            speed_kmh: Some(63.2),
            heading_deg: Some(181.0),
            accuracy_m: Some(4.5),
        }),
        temp_c: Some(-18.4),
        weight_kg: Some(18_250.0),
        battery_pct: Some(87.0),
    }
}

fn seqs(page: &[(i64, Event)]) -> Vec<i64> {
    page.iter().map(|(seq, _)| *seq).collect()
}

#[test]
fn readings_round_trip_with_every_field_and_with_none() {
    let (_tmp, mut store) = store();
    let full = TelemetryRow {
        shipment: Some("SHP-1".into()),
        ..row("acme", "truck-17", full_reading(1_000))
    };
    let bare = row("acme", "truck-17", Reading::at(2_000));
    let temp_only = row("acme", "truck-17", Reading::at(3_000).with_temp(4.0));
    let fix_only = row(
        "acme",
        "truck-17",
        Reading::at(4_000).with_position(122.0, 41.0),
    );
    let rows = [full, bare, temp_only, fix_only];
    let committed = store.commit(&rows, &[]).unwrap();
    assert_eq!(committed.readings, 4);
    assert_eq!(committed.last_rowid, 4);

    let back = store.readings_after(0, 100).unwrap();
    assert_eq!(
        back.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(back.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), rows);
}

#[test]
fn duplicates_follow_spec_11() {
    let (_tmp, mut store) = store();
    let first = store
        .commit(
            &[
                row("acme", "d", Reading::at(1_000).with_seq(7)),
                row("acme", "d", Reading::at(2_000)),
            ],
            &[],
        )
        .unwrap();
    assert_eq!(first.readings, 2);

    let dups = [
        // same ts, same seq
        row("acme", "d", Reading::at(1_000).with_seq(7).with_temp(1.0)),
        // same ts, neither has a seq
        row("acme", "d", Reading::at(2_000).with_temp(2.0)),
        // same ts, only one of the two has a seq
        row("acme", "d", Reading::at(1_000)),
        row("acme", "d", Reading::at(2_000).with_seq(9)),
    ];
    assert_eq!(store.commit(&dups, &[]).unwrap().readings, 0);

    let kept = [
        // same ts, different seq (a device that rebooted within the millisecond)
        row("acme", "d", Reading::at(1_000).with_seq(8)),
        // same seq, different ts: seq alone never makes a duplicate
        row("acme", "d", Reading::at(3_000).with_seq(7)),
        // same ts, another device, another tenant
        row("acme", "e", Reading::at(1_000).with_seq(7)),
        row("other", "d", Reading::at(1_000).with_seq(7)),
    ];
    assert_eq!(store.commit(&kept, &[]).unwrap().readings, 4);

    // a duplicate inside one batch is dropped too
    let twice = [
        row("acme", "f", Reading::at(5_000)),
        row("acme", "f", Reading::at(5_000)),
    ];
    assert_eq!(store.commit(&twice, &[]).unwrap().readings, 1);

    let track = store.track("acme", "d", 0, i64::MAX, 100).unwrap();
    let keys: Vec<_> = track.iter().map(|r| (r.ts_ms, r.seq)).collect();
    assert_eq!(
        keys,
        [
            (1_000, Some(7)),
            (1_000, Some(8)),
            (2_000, None),
            (3_000, Some(7))
        ]
    );
    assert_eq!(track[0].temp_c, None, "the first stored wins");
}

#[test]
fn events_are_inserted_once_by_id() {
    let (_tmp, mut store) = store();
    let a = event(EventType::GeofenceEntered, "acme", "d", None, 1_000);
    let b = event(EventType::GeofenceExited, "acme", "d", None, 2_000);
    let c = store
        .commit(&[], &[a.clone(), b.clone(), a.clone()])
        .unwrap();
    assert_eq!(c.events, 2);
    // a replay re-derives the same events: ignored
    let again = store.commit(&[], &[b.clone(), a.clone()]).unwrap();
    assert_eq!(again.events, 0);

    let page = store.events_after(&EventFilter::default(), 10).unwrap();
    assert_eq!(page, vec![(1, a), (2, b)]);
    // an ignored insert may spend a seq; the cursor only needs seqs to grow
    assert!(again.last_event_seq >= c.last_event_seq && c.last_event_seq >= 2);
    assert_eq!(store.event_seq_max().unwrap(), again.last_event_seq);
    let c = store
        .commit(
            &[],
            &[event(EventType::DeviceOffline, "acme", "d", None, 3)],
        )
        .unwrap();
    let page = store.events_after(&EventFilter::default(), 10).unwrap();
    assert_eq!(page[2].0, c.last_event_seq);
    assert!(c.last_event_seq > again.last_event_seq);
}

#[test]
fn a_reader_connection_sees_commits_and_cannot_write() {
    // (that a commit is all or nothing is shown by `store_crash`)
    let (_tmp, mut store) = store();
    let mut reader = store.reader().unwrap();
    assert!(
        reader
            .commit(&[row("acme", "d", Reading::at(1))], &[])
            .is_err()
    );
    assert!(store.readings_after(0, 10).unwrap().is_empty());

    let e = event(EventType::DeviceOnline, "acme", "d", None, 1);
    store
        .commit(&[row("acme", "d", Reading::at(1))], &[e])
        .unwrap();
    assert_eq!(reader.readings_after(0, 10).unwrap().len(), 1);
    assert_eq!(
        reader
            .events_after(&EventFilter::default(), 10)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn event_paging_applies_every_filter_and_keeps_tenants_apart() {
    let (_tmp, mut store) = store();
    let mut all = Vec::new();
    for i in 0..40i64 {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        let device = if i % 4 < 2 { "truck-1" } else { "truck-2" };
        let shipment = (i % 3 == 0).then_some("SHP-1");
        let kind = if i % 5 == 0 {
            EventType::DeviceOverspeed
        } else {
            EventType::GeofenceEntered
        };
        all.push(event(kind, tenant, device, shipment, 1_000 + i));
    }
    store.commit(&[], &all).unwrap();
    let seq_of = |i: usize| i as i64 + 1;

    // pages of 3 through one tenant's events: every one of them, in order, nothing else
    let mut filter = EventFilter::tenant("acme", 0);
    let mut got = Vec::new();
    loop {
        let page = store.events_after(&filter, 3).unwrap();
        let Some(&(last, _)) = page.last() else { break };
        assert!(page.len() <= 3);
        got.extend(page);
        filter.after_seq = last;
    }
    assert!(got.iter().all(|(_, e)| e.tenant == "acme"));
    assert_eq!(
        seqs(&got),
        (0..40)
            .filter(|i| i % 2 == 0)
            .map(seq_of)
            .collect::<Vec<_>>()
    );

    let expect = |pred: &dyn Fn(usize) -> bool| -> Vec<i64> {
        (0..40).filter(|&i| pred(i)).map(seq_of).collect()
    };
    let kind = EventFilter {
        kind: Some(EventType::DeviceOverspeed),
        ..EventFilter::tenant("acme", 0)
    };
    assert_eq!(
        seqs(&store.events_after(&kind, 100).unwrap()),
        expect(&|i| i % 2 == 0 && i % 5 == 0)
    );
    let device = EventFilter {
        device: Some("truck-2".into()),
        ..EventFilter::tenant("globex", 0)
    };
    assert_eq!(
        seqs(&store.events_after(&device, 100).unwrap()),
        expect(&|i| i % 2 == 1 && i % 4 >= 2)
    );
    let shipment = EventFilter {
        shipment: Some("SHP-1".into()),
        ..EventFilter::tenant("acme", 10)
    };
    assert_eq!(
        seqs(&store.events_after(&shipment, 100).unwrap()),
        expect(&|i| i % 2 == 0 && i % 3 == 0 && seq_of(i) > 10)
    );
    let everything = EventFilter {
        kind: Some(EventType::GeofenceEntered),
        device: Some("truck-1".into()),
        shipment: Some("SHP-1".into()),
        ..EventFilter::tenant("acme", 0)
    };
    assert_eq!(
        seqs(&store.events_after(&everything, 100).unwrap()),
        expect(&|i| i % 2 == 0 && i % 5 != 0 && i % 4 < 2 && i % 3 == 0)
    );

    // admin: no tenant means every tenant
    let admin = EventFilter {
        device: Some("truck-1".into()),
        ..EventFilter::default()
    };
    assert_eq!(
        seqs(&store.events_after(&admin, 100).unwrap()),
        expect(&|i| i % 4 < 2)
    );
    // a tenant asking for another tenant's device sees nothing
    let nosy = EventFilter {
        device: Some("truck-1".into()),
        ..EventFilter::tenant("initech", 0)
    };
    assert!(store.events_after(&nosy, 100).unwrap().is_empty());
    assert!(
        store
            .events_after(&EventFilter::default(), 0)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn readings_after_pages_through_everything_in_rowid_order() {
    let (_tmp, mut store) = store();
    let rows: Vec<_> = (0..25)
        .map(|i| {
            row(
                "acme",
                &format!("d{}", i % 3),
                Reading::at(1_000 + i).with_seq(i as u64),
            )
        })
        .collect();
    for chunk in rows.chunks(7) {
        store.commit(chunk, &[]).unwrap();
    }
    let mut after = 0;
    let mut got = Vec::new();
    loop {
        let page = store.readings_after(after, 4).unwrap();
        let Some(&(last, _)) = page.last() else { break };
        assert!(page.len() <= 4);
        got.extend(page.into_iter().map(|(_, r)| r));
        after = last;
    }
    assert_eq!(got, rows);
    assert_eq!(store.telemetry_rowid_max().unwrap(), 25);
}

#[test]
fn track_is_one_device_in_a_time_range_ordered_by_device_time() {
    let (_tmp, mut store) = store();
    // arrives out of order (store-and-forward)
    let times = [5_000, 1_000, 3_000, 2_000, 4_000];
    let rows: Vec<_> = times
        .iter()
        .map(|&t| row("acme", "truck", Reading::at(t).with_position(122.0, 41.0)))
        .chain([
            row("acme", "other", Reading::at(3_000)),
            row("globex", "truck", Reading::at(3_000)),
        ])
        .collect();
    store.commit(&rows, &[]).unwrap();
    let ts = |v: Vec<Reading>| v.iter().map(|r| r.ts_ms).collect::<Vec<_>>();
    assert_eq!(
        ts(store.track("acme", "truck", 2_000, 4_000, 100).unwrap()),
        [2_000, 3_000, 4_000]
    );
    assert_eq!(
        ts(store.track("acme", "truck", 0, 10_000, 2).unwrap()),
        [1_000, 2_000]
    );
    assert!(
        store
            .track("initech", "truck", 0, 10_000, 100)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn retention_prunes_old_rows_in_chunks_and_keeps_rowids_moving_on() {
    let (_tmp, mut store) = store();
    let total = PRUNE_CHUNK_ROWS * 2 + 500;
    let old = total - 300;
    let rows: Vec<_> = (0..total)
        .map(|i| TelemetryRow {
            received_ms: if i < old { 1_000 } else { 9_000 },
            ..row("acme", "d", Reading::at(i as i64))
        })
        .collect();
    for chunk in rows.chunks(5_000) {
        store.commit(chunk, &[]).unwrap();
    }
    assert_eq!(store.prune_telemetry(5_000).unwrap(), old);
    let left = store.readings_after(0, usize::MAX).unwrap();
    assert_eq!(left.len(), 300);
    assert_eq!(left[0].0, old as i64 + 1);
    assert_eq!(store.prune_telemetry(5_000).unwrap(), 0);

    // pruning everything must not let rowids start again below a consumer's cursor
    assert_eq!(store.prune_telemetry(10_000).unwrap(), 300);
    assert!(store.readings_after(0, 10).unwrap().is_empty());
    let c = store
        .commit(&[row("acme", "d", Reading::at(-1))], &[])
        .unwrap();
    assert_eq!(c.last_rowid, total as i64 + 1);
    assert_eq!(store.readings_after(total as i64, 10).unwrap().len(), 1);
}

#[test]
fn cursors_start_at_zero_and_keep_their_value() {
    let (_tmp, mut store) = store();
    assert_eq!(store.cursor("influxdb").unwrap(), 0);
    store.set_cursor("influxdb", 41).unwrap();
    store.set_cursor("influxdb", 42).unwrap();
    store.set_cursor("mqtt-events", 7).unwrap();
    assert_eq!(store.cursor("influxdb").unwrap(), 42);
    assert_eq!(store.cursor("mqtt-events").unwrap(), 7);
}

#[test]
fn snapshots_keep_the_latest_two() {
    let (_tmp, mut store) = store();
    assert_eq!(store.load_snapshot().unwrap(), None);
    store.save_snapshot(b"one", 10).unwrap();
    assert_eq!(store.load_snapshot().unwrap(), Some((b"one".to_vec(), 10)));
    store.save_snapshot(b"two", 20).unwrap();
    let big = vec![7u8; 3 << 20];
    store.save_snapshot(&big, 30).unwrap();
    assert_eq!(store.load_snapshot().unwrap(), Some((big.clone(), 30)));
    assert_eq!(
        store.load_snapshots().unwrap(),
        vec![(big, 30), (b"two".to_vec(), 20)]
    );
}

#[test]
fn everything_survives_closing_and_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = [
        row("acme", "d", full_reading(1)),
        row("acme", "d", Reading::at(2)),
    ];
    let events = [event(
        EventType::ShipmentArrived,
        "acme",
        "d",
        Some("SHP-1"),
        2,
    )];
    {
        let mut store = Store::open(tmp.path()).unwrap();
        store.commit(&rows, &events).unwrap();
        store.set_cursor("influxdb", 1).unwrap();
        store.save_snapshot(b"state", 2).unwrap();
    }
    let mut store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.integrity_check().unwrap(), Ok(()));
    let back: Vec<_> = store
        .readings_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(back, rows);
    assert_eq!(
        store.events_after(&EventFilter::default(), 10).unwrap(),
        vec![(1, events[0].clone())]
    );
    assert_eq!(store.cursor("influxdb").unwrap(), 1);
    assert_eq!(store.load_snapshot().unwrap(), Some((b"state".to_vec(), 2)));
    // duplicates are still recognised after the reopen, and numbering carries on
    let c = store.commit(&rows, &events).unwrap();
    assert_eq!((c.readings, c.events, c.last_rowid), (0, 0, 2));
    let reader = Store::open_reader(tmp.path()).unwrap();
    assert_eq!(reader.readings_after(0, 10).unwrap().len(), 2);
}

#[test]
fn replay_after_the_snapshot_sees_exactly_the_rows_it_does_not_cover() {
    let (_tmp, mut store) = store();
    let c = store
        .commit(
            &[
                row("acme", "d", Reading::at(1)),
                row("acme", "d", Reading::at(2)),
            ],
            &[],
        )
        .unwrap();
    store.save_snapshot(b"after two", c.last_rowid).unwrap();
    store
        .commit(
            &[
                row("acme", "d", Reading::at(2)),
                row("acme", "d", Reading::at(3)),
            ],
            &[],
        )
        .unwrap();
    let (_, applied) = store.load_snapshot().unwrap().unwrap();
    let replay = store.readings_after(applied, 100).unwrap();
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0].1.reading.ts_ms, 3);
}
