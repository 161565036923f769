//! The registry tables of the store (tenants, keys, devices, geofences, shipments, share
//! tokens): round trips, conflicts, and tenant isolation.

use geo_types::{LineString, Point, coord};
use landport_store::{
    DeviceRecord, GeofenceRecord, KeyHash, ShareToken, ShipmentRecord, Store, StoreError, Tenant,
};
use landport_tracker::{GeofenceDef, Place, Shape, ShipmentDef, ShipmentStatus};
use serde_json::json;

fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    (tmp, store)
}

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: id.into(),
        name: format!("{id} Logistics"),
        created_ms: 1_000,
    }
}

fn device(tenant: &str, id: &str) -> DeviceRecord {
    DeviceRecord {
        tenant: tenant.into(),
        id: id.into(),
        name: format!("Truck {id}"),
        kind: "truck".into(),
        profile: json!({"offline_after_seconds": 300}),
        created_ms: 1_000,
    }
}

fn fence(tenant: &str, id: &str, radius_m: f64) -> GeofenceRecord {
    GeofenceRecord {
        tenant: tenant.into(),
        def: GeofenceDef {
            id: id.into(),
            name: "Yingkou port".into(),
            kind: "port".into(),
            shape: Shape::Circle {
                center: Point::new(122.23, 40.67),
                radius_m,
            },
            confirm_seconds: Some(30),
            dwell_seconds: None,
        },
        updated_ms: 1_000,
    }
}

fn shipment(tenant: &str, id: &str, device: &str) -> ShipmentRecord {
    ShipmentRecord {
        tenant: tenant.into(),
        def: ShipmentDef {
            id: id.into(),
            device: device.into(),
            reference: Some("PO-9".into()),
            origin: Some(Place::Point {
                lon: 122.99,
                lat: 41.11,
            }),
            destination: Place::Geofence("yingkou-port".into()),
            route: Some(LineString::new(vec![
                coord! { x: 122.99, y: 41.11 },
                coord! { x: 122.23, y: 40.67 },
            ])),
            route_corridor_m: Some(500.0),
            deadline_ms: Some(1_795_421_731_000),
            temp_range_c: Some([-25.0, -15.0]),
            max_speed_kmh: Some(90.0),
        },
        status: ShipmentStatus::Planned,
        updated_ms: 1_000,
    }
}

#[test]
fn tenants_round_trip() {
    let (_tmp, mut store) = store();
    store.create_tenant(&tenant("globex")).unwrap();
    store.create_tenant(&tenant("acme")).unwrap();
    assert!(matches!(
        store.create_tenant(&tenant("acme")),
        Err(StoreError::AlreadyExists { what: "tenant", .. })
    ));
    assert_eq!(store.get_tenant("acme").unwrap(), Some(tenant("acme")));
    assert_eq!(store.get_tenant("initech").unwrap(), None);
    assert_eq!(
        store.list_tenants().unwrap(),
        vec![tenant("acme"), tenant("globex")]
    );
    assert!(store.rename_tenant("acme", "Acme Ltd").unwrap());
    assert_eq!(store.get_tenant("acme").unwrap().unwrap().name, "Acme Ltd");
    assert!(!store.rename_tenant("initech", "x").unwrap());
}

#[test]
fn api_keys_are_found_by_hash_until_revoked() {
    let (_tmp, mut store) = store();
    let secret = "lp_0123456789abcdef0123456789abcdef";
    let hash = KeyHash::of(secret);
    // a key needs its tenant
    assert!(!store.create_api_key("acme", "key-1", &hash, 1_000).unwrap());
    store.create_tenant(&tenant("acme")).unwrap();
    store.create_tenant(&tenant("globex")).unwrap();
    assert!(store.create_api_key("acme", "key-1", &hash, 1_000).unwrap());
    assert!(
        store
            .create_api_key("globex", "key-2", &KeyHash::of("other"), 1_000)
            .unwrap()
    );
    assert!(matches!(
        store.create_api_key("acme", "key-3", &hash, 1_000),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        store.lookup_key_hash(&hash).unwrap(),
        Some(("key-1".to_owned(), "acme".to_owned()))
    );
    assert_eq!(store.lookup_key_hash(&KeyHash::of("wrong")).unwrap(), None);

    // the key itself is nowhere in the file
    let db = std::fs::read(store.dir().join(landport_store::DB_FILE)).unwrap();
    let wal = std::fs::read(store.dir().join("landport.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }

    // another tenant can neither revoke nor list it
    assert!(!store.revoke_api_key("globex", "key-1", 2_000).unwrap());
    assert_eq!(store.list_api_keys("globex").unwrap().len(), 1);
    assert!(store.revoke_api_key("acme", "key-1", 2_000).unwrap());
    assert!(!store.revoke_api_key("acme", "key-1", 3_000).unwrap());
    assert_eq!(store.lookup_key_hash(&hash).unwrap(), None);
    let keys = store.list_api_keys("acme").unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].revoked_ms, Some(2_000));
}

#[test]
fn devices_round_trip_and_stay_in_their_tenant() {
    let (_tmp, mut store) = store();
    store.insert_device(&device("acme", "truck-17")).unwrap();
    store.insert_device(&device("acme", "truck-2")).unwrap();
    store.insert_device(&device("globex", "truck-17")).unwrap();
    assert!(matches!(
        store.insert_device(&device("acme", "truck-17")),
        Err(StoreError::AlreadyExists { what: "device", .. })
    ));
    assert_eq!(
        store.get_device("acme", "truck-17").unwrap(),
        Some(device("acme", "truck-17"))
    );
    assert_eq!(store.get_device("globex", "truck-2").unwrap(), None);
    let ids = |v: Vec<DeviceRecord>| {
        v.into_iter()
            .map(|d| format!("{}/{}", d.tenant, d.id))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.list_devices(Some("acme")).unwrap()),
        ["acme/truck-17", "acme/truck-2"]
    );
    assert_eq!(
        ids(store.list_devices(None).unwrap()),
        ["acme/truck-17", "acme/truck-2", "globex/truck-17"]
    );

    let renamed = DeviceRecord {
        name: "Big truck".into(),
        kind: "sensor".into(),
        profile: json!({}),
        created_ms: 99, // ignored: the creation time is kept
        ..device("acme", "truck-2")
    };
    assert!(store.update_device(&renamed).unwrap());
    assert_eq!(
        store.get_device("acme", "truck-2").unwrap(),
        Some(DeviceRecord {
            created_ms: 1_000,
            ..renamed
        })
    );
    assert!(!store.update_device(&device("initech", "truck-2")).unwrap());

    assert!(!store.delete_device("globex", "truck-2").unwrap());
    assert!(store.delete_device("acme", "truck-2").unwrap());
    assert_eq!(store.get_device("acme", "truck-2").unwrap(), None);
    assert!(store.get_device("globex", "truck-17").unwrap().is_some());
}

#[test]
fn geofences_round_trip_and_stay_in_their_tenant() {
    let (_tmp, mut store) = store();
    store
        .insert_geofence(&fence("acme", "port", 500.0))
        .unwrap();
    assert!(matches!(
        store.insert_geofence(&fence("acme", "port", 1.0)),
        Err(StoreError::AlreadyExists { .. })
    ));
    let area = GeofenceRecord {
        def: GeofenceDef {
            shape: Shape::Corridor {
                line: LineString::new(vec![coord! { x: 1.0, y: 2.0 }, coord! { x: 3.0, y: 4.0 }]),
                corridor_m: 50.0,
            },
            ..fence("globex", "port", 0.0).def
        },
        ..fence("globex", "port", 0.0)
    };
    assert!(store.put_geofence(&area).unwrap(), "created");
    assert_eq!(
        store.get_geofence("globex", "port").unwrap(),
        Some(area.clone())
    );
    assert_eq!(
        store.get_geofence("acme", "port").unwrap(),
        Some(fence("acme", "port", 500.0))
    );

    let wider = GeofenceRecord {
        updated_ms: 2_000,
        ..fence("acme", "port", 900.0)
    };
    assert!(!store.put_geofence(&wider).unwrap(), "replaced");
    assert_eq!(
        store.get_geofence("acme", "port").unwrap(),
        Some(wider.clone())
    );
    assert_eq!(
        store.list_geofences(Some("acme")).unwrap(),
        vec![wider.clone()]
    );
    assert_eq!(store.list_geofences(None).unwrap(), vec![wider, area]);

    assert!(!store.delete_geofence("initech", "port").unwrap());
    assert!(store.delete_geofence("acme", "port").unwrap());
    assert!(store.list_geofences(Some("acme")).unwrap().is_empty());
    assert_eq!(store.list_geofences(None).unwrap().len(), 1);
}

#[test]
fn shipments_round_trip_and_stay_in_their_tenant() {
    let (_tmp, mut store) = store();
    store
        .insert_shipment(&shipment("acme", "SHP-1", "truck-17"))
        .unwrap();
    store
        .insert_shipment(&shipment("acme", "SHP-2", "truck-2"))
        .unwrap();
    store
        .insert_shipment(&shipment("globex", "SHP-1", "truck-17"))
        .unwrap();
    assert!(matches!(
        store.insert_shipment(&shipment("acme", "SHP-1", "x")),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        store.get_shipment("acme", "SHP-1").unwrap(),
        Some(shipment("acme", "SHP-1", "truck-17"))
    );
    assert_eq!(store.get_shipment("globex", "SHP-2").unwrap(), None);
    assert_eq!(store.list_shipments(Some("acme")).unwrap().len(), 2);
    assert_eq!(store.list_shipments(None).unwrap().len(), 3);

    assert!(
        store
            .set_shipment_status("acme", "SHP-1", ShipmentStatus::InTransit, 2_000)
            .unwrap()
    );
    assert!(
        !store
            .set_shipment_status("initech", "SHP-1", ShipmentStatus::Arrived, 2_000)
            .unwrap()
    );
    let got = store.get_shipment("acme", "SHP-1").unwrap().unwrap();
    assert_eq!(
        (got.status, got.updated_ms),
        (ShipmentStatus::InTransit, 2_000)
    );
    assert_eq!(
        store
            .get_shipment("globex", "SHP-1")
            .unwrap()
            .unwrap()
            .status,
        ShipmentStatus::Planned
    );

    // moving a shipment to another truck moves it in the by-device lookup
    let moved = ShipmentRecord {
        status: ShipmentStatus::Delivered,
        updated_ms: 3_000,
        ..shipment("acme", "SHP-2", "truck-17")
    };
    assert!(store.update_shipment(&moved).unwrap());
    let of_truck: Vec<_> = store
        .shipments_of_device("acme", "truck-17")
        .unwrap()
        .into_iter()
        .map(|s| s.def.id)
        .collect();
    assert_eq!(of_truck, ["SHP-1", "SHP-2"]);
    assert!(
        store
            .shipments_of_device("acme", "truck-2")
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .update_shipment(&shipment("initech", "SHP-2", "t"))
            .unwrap()
    );

    assert!(!store.delete_shipment("initech", "SHP-1").unwrap());
    assert!(store.delete_shipment("acme", "SHP-1").unwrap());
    assert_eq!(store.get_shipment("acme", "SHP-1").unwrap(), None);
    assert!(store.get_shipment("globex", "SHP-1").unwrap().is_some());
}

#[test]
fn a_change_reads_and_writes_in_one_transaction_and_a_refused_one_writes_nothing() {
    let (tmp, mut store) = store();
    store
        .insert_shipment(&shipment("acme", "SHP-1", "truck-17"))
        .unwrap();
    store.insert_device(&device("acme", "truck-17")).unwrap();
    let changed = store
        .update_shipment_with("acme", "SHP-1", |mut rec| {
            rec.def.reference = Some("PO-10".into());
            rec.updated_ms = 2_000;
            Ok::<_, StoreError>(rec)
        })
        .unwrap()
        .unwrap();
    assert_eq!(store.get_shipment("acme", "SHP-1").unwrap(), Some(changed));
    let missing = store
        .update_shipment_with("globex", "SHP-1", |_| -> Result<_, StoreError> {
            panic!("no shipment: no change asked for")
        })
        .unwrap();
    assert_eq!(missing, None);

    // refused by the change: nothing written, and the write lock is given back
    let before = store.get_shipment("acme", "SHP-1").unwrap();
    let refused = store.update_shipment_with("acme", "SHP-1", |mut rec| {
        rec.def.reference = None;
        Err::<ShipmentRecord, _>(StoreError::Corrupt {
            table: "test",
            reason: "refused".into(),
        })
    });
    assert!(refused.is_err());
    assert_eq!(store.get_shipment("acme", "SHP-1").unwrap(), before);
    let device_refused = store.update_device_with("acme", "truck-17", |mut rec| {
        rec.name = "nope".into();
        Err::<DeviceRecord, _>(StoreError::Thread("test"))
    });
    assert!(device_refused.is_err());
    assert_eq!(
        store.get_device("acme", "truck-17").unwrap(),
        Some(device("acme", "truck-17"))
    );
    let mut other = Store::open(tmp.path()).unwrap();
    other.insert_device(&device("acme", "t2")).unwrap();

    // a change may not move the row
    assert!(
        store
            .update_device_with("acme", "truck-17", |mut rec| {
                rec.id = "elsewhere".into();
                Ok::<_, StoreError>(rec)
            })
            .is_err()
    );
    let renamed = store
        .update_device_with("acme", "truck-17", |mut rec| {
            rec.name = "Big truck".into();
            Ok::<_, StoreError>(rec)
        })
        .unwrap()
        .unwrap();
    assert_eq!(renamed.name, "Big truck");
    assert_eq!(store.get_device("acme", "truck-17").unwrap(), Some(renamed));
    assert_eq!(
        store
            .update_device_with("acme", "nobody", Ok::<_, StoreError>)
            .unwrap(),
        None
    );
}

#[test]
fn share_tokens_open_one_shipment_and_go_with_it() {
    let (_tmp, mut store) = store();
    for id in ["SHP-1", "SHP-2"] {
        store
            .insert_shipment(&shipment("acme", id, "truck-17"))
            .unwrap();
    }
    let token = KeyHash::of("share-secret");
    let share = ShareToken {
        tenant: "acme".into(),
        shipment: "SHP-1".into(),
        created_ms: 1_000,
        expires_ms: Some(9_000),
    };
    assert!(store.create_share(&share, &token).unwrap());
    // the same secret cannot open a second shipment
    let second = ShareToken {
        shipment: "SHP-2".into(),
        ..share.clone()
    };
    assert!(matches!(
        store.create_share(&second, &token),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(store.lookup_share(&token).unwrap(), Some(share.clone()));
    assert_eq!(
        store.share_of_shipment("acme", "SHP-1").unwrap(),
        Some(share.clone())
    );
    assert_eq!(store.lookup_share(&KeyHash::of("guess")).unwrap(), None);
    assert_eq!(store.share_of_shipment("globex", "SHP-1").unwrap(), None);
    assert!(!store.revoke_shares("globex", "SHP-1").unwrap());
    // a token can only be made for a shipment of its own tenant
    let foreign = ShareToken {
        tenant: "globex".into(),
        ..share.clone()
    };
    assert!(!store.create_share(&foreign, &KeyHash::of("x")).unwrap());
    assert_eq!(store.lookup_share(&KeyHash::of("x")).unwrap(), None);
    assert_eq!(store.lookup_share(&token).unwrap(), Some(share.clone()));

    // one link per shipment: a new one revokes the old
    let other = KeyHash::of("another");
    let newer = ShareToken {
        created_ms: 2_000,
        expires_ms: None,
        ..share.clone()
    };
    assert!(store.create_share(&newer, &other).unwrap());
    assert_eq!(store.lookup_share(&token).unwrap(), None);
    assert_eq!(store.lookup_share(&other).unwrap(), Some(newer.clone()));
    assert_eq!(
        store.share_of_shipment("acme", "SHP-1").unwrap(),
        Some(newer)
    );
    assert!(store.revoke_shares("acme", "SHP-1").unwrap());
    assert!(!store.revoke_shares("acme", "SHP-1").unwrap());
    assert_eq!(store.lookup_share(&other).unwrap(), None);
    assert_eq!(store.share_of_shipment("acme", "SHP-1").unwrap(), None);

    assert!(store.create_share(&share, &token).unwrap());
    store.delete_shipment("acme", "SHP-1").unwrap();
    assert_eq!(store.lookup_share(&token).unwrap(), None);
}

#[test]
fn deleting_a_tenant_takes_its_registry_and_nothing_else() {
    let (_tmp, mut store) = store();
    for t in ["acme", "globex"] {
        store.create_tenant(&tenant(t)).unwrap();
        assert!(
            store
                .create_api_key(t, &format!("{t}-key"), &KeyHash::of(t), 1)
                .unwrap()
        );
        store.insert_device(&device(t, "truck")).unwrap();
        store.insert_geofence(&fence(t, "port", 10.0)).unwrap();
        store.insert_shipment(&shipment(t, "SHP", "truck")).unwrap();
        let share = ShareToken {
            tenant: t.into(),
            shipment: "SHP".into(),
            created_ms: 1,
            expires_ms: None,
        };
        assert!(
            store
                .create_share(&share, &KeyHash::of(&format!("{t}-share")))
                .unwrap()
        );
    }
    assert!(store.delete_tenant("acme").unwrap());
    assert!(!store.delete_tenant("acme").unwrap());
    assert_eq!(store.list_tenants().unwrap(), vec![tenant("globex")]);
    assert_eq!(store.lookup_key_hash(&KeyHash::of("acme")).unwrap(), None);
    assert!(store.list_devices(Some("acme")).unwrap().is_empty());
    assert!(store.list_geofences(Some("acme")).unwrap().is_empty());
    assert!(store.list_shipments(Some("acme")).unwrap().is_empty());
    assert_eq!(
        store.lookup_share(&KeyHash::of("acme-share")).unwrap(),
        None
    );

    assert!(
        store
            .lookup_key_hash(&KeyHash::of("globex"))
            .unwrap()
            .is_some()
    );
    assert_eq!(store.list_devices(None).unwrap().len(), 1);
    assert_eq!(store.list_geofences(None).unwrap().len(), 1);
    assert_eq!(store.list_shipments(None).unwrap().len(), 1);
    assert!(
        store
            .lookup_share(&KeyHash::of("globex-share"))
            .unwrap()
            .is_some()
    );
}

#[test]
fn the_registry_survives_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(tmp.path()).unwrap();
        store.create_tenant(&tenant("acme")).unwrap();
        assert!(
            store
                .create_api_key("acme", "k", &KeyHash::of("s"), 1)
                .unwrap()
        );
        store.insert_device(&device("acme", "truck")).unwrap();
        store.insert_geofence(&fence("acme", "port", 10.0)).unwrap();
        store
            .insert_shipment(&shipment("acme", "SHP", "truck"))
            .unwrap();
    }
    let store = Store::open_reader(tmp.path()).unwrap();
    assert_eq!(store.get_tenant("acme").unwrap(), Some(tenant("acme")));
    assert!(store.lookup_key_hash(&KeyHash::of("s")).unwrap().is_some());
    assert_eq!(
        store.get_device("acme", "truck").unwrap(),
        Some(device("acme", "truck"))
    );
    assert_eq!(
        store.get_geofence("acme", "port").unwrap(),
        Some(fence("acme", "port", 10.0))
    );
    assert_eq!(
        store.get_shipment("acme", "SHP").unwrap(),
        Some(shipment("acme", "SHP", "truck"))
    );
}
