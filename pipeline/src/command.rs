//! [`Command`]: every API write that touches live state, as data, and [`execute`], the one
//! function that carries it out on the pipeline's task.
//!
//! A command goes through three steps, in this order, between two batches of readings:
//!
//! 1. **Validate** against the pure tracker (a shipment's places and route; a geofence comes
//!    already prepared by [`Geofence::new`], the tracker's own validation, run by the caller
//!    off this task because it is the slow part). A refusal stores nothing and changes nothing.
//! 2. **Store** in one short SQLite transaction on the connection the caller passes (the
//!    API's writer; SQLite's busy timeout orders it with the pipeline's writer thread). A
//!    read-modify-write (a PATCH) reads inside that transaction, and since commands run one
//!    at a time on one task, concurrent changes of one record all land.
//! 3. **Apply** to the tracker, only once the commit succeeded. The caller
//!    ([`TrackerHandle::execute`](crate::TrackerHandle::execute)) then publishes the read side.
//!
//! A crash between 2 and 3 leaves a stored row that was validated: `recover` loads it on the
//! next start, as it loads every stored definition. No caller undoes a write.

use landport_store::{DeviceRecord, GeofenceRecord, ShipmentRecord, Store, StoreError};
use landport_tracker::device::DeviceProfile;
use landport_tracker::geofence::Geofence;
use landport_tracker::{
    DeviceView, Place, ShipmentDef, ShipmentState, ShipmentStatus, TimestampMs, TrackerError,
};

use crate::core::Core;

/// A write to live state and the registry, built by the API from a parsed, authorized request.
/// Ids are checked (`landport_tracker::check_id`) by whoever builds the command.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Command {
    /// Registers a device (`POST /v1/devices`); its telemetry is accepted from then on.
    RegisterDevice {
        tenant: String,
        id: String,
        name: String,
        kind: String,
        /// Its own temperature range and speed limit; `None` = none.
        profile: Option<DeviceProfile>,
    },
    /// Changes the members given of a registered device (`PATCH /v1/devices/{id}`).
    UpdateDevice {
        tenant: String,
        id: String,
        change: DeviceChange,
    },
    /// Unregisters a device and forgets its live state (`DELETE /v1/devices/{id}`).
    DeleteDevice { tenant: String, id: String },
    /// Adds a geofence whose id is not taken yet (`POST /v1/geofences`).
    CreateGeofence { tenant: String, fence: Geofence },
    /// Creates or replaces a geofence (`PUT /v1/geofences/{id}`).
    PutGeofence { tenant: String, fence: Geofence },
    /// Deletes a geofence (`DELETE /v1/geofences/{id}`).
    DeleteGeofence { tenant: String, id: String },
    /// Adds a shipment whose id is not taken yet (`POST /v1/shipments`).
    CreateShipment {
        tenant: String,
        def: ShipmentDef,
        status: ShipmentStatus,
    },
    /// Changes the members given of a shipment, its status included
    /// (`PATCH /v1/shipments/{id}`).
    PatchShipment {
        tenant: String,
        id: String,
        change: ShipmentChange,
    },
    /// Deletes a shipment and its share tokens (`DELETE /v1/shipments/{id}`).
    DeleteShipment { tenant: String, id: String },
}

/// The members of a device to change; `None` keeps one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceChange {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub profile: Option<DeviceProfile>,
}

/// The members of a shipment to change: `None` keeps one, `Some(None)` clears an optional
/// one. Coordinates `(lon, lat)` degrees.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShipmentChange {
    pub device: Option<String>,
    pub reference: Option<Option<String>>,
    pub origin: Option<Option<Place>>,
    pub destination: Option<Place>,
    pub route: Option<Option<geo_types::LineString<f64>>>,
    pub route_corridor_m: Option<Option<f64>>,
    pub deadline_ms: Option<Option<TimestampMs>>,
    pub temp_range_c: Option<Option<[f64; 2]>>,
    pub max_speed_kmh: Option<Option<f64>>,
    /// Any status, by hand (`delivered`, `cancelled`, or back). `None` keeps the tracker's
    /// own progress (planned, in transit, arrived).
    pub status: Option<ShipmentStatus>,
}

impl ShipmentChange {
    fn apply_to(self, def: &mut ShipmentDef) {
        let ShipmentChange {
            device,
            reference,
            origin,
            destination,
            route,
            route_corridor_m,
            deadline_ms,
            temp_range_c,
            max_speed_kmh,
            status: _,
        } = self;
        set(&mut def.device, device);
        set(&mut def.reference, reference);
        set(&mut def.origin, origin);
        set(&mut def.destination, destination);
        set(&mut def.route, route);
        set(&mut def.route_corridor_m, route_corridor_m);
        set(&mut def.deadline_ms, deadline_ms);
        set(&mut def.temp_range_c, temp_range_c);
        set(&mut def.max_speed_kmh, max_speed_kmh);
    }
}

fn set<T>(member: &mut T, change: Option<T>) {
    if let Some(v) = change {
        *member = v;
    }
}

/// What a command did, for the answer.
#[derive(Debug, Clone)]
#[non_exhaustive]
// One per API write, moved once into the answer: boxing the shipment would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// The device as stored, and its live state (`None` until it has reported or has a
    /// profile).
    Device {
        record: DeviceRecord,
        live: Option<DeviceView>,
    },
    /// The geofence as stored; `created` = it did not exist before.
    Geofence {
        record: GeofenceRecord,
        created: bool,
    },
    /// The shipment as stored, and its live state.
    Shipment {
        record: ShipmentRecord,
        live: Option<ShipmentState>,
    },
    /// It existed (in the registry or the tracker) and is gone.
    Deleted,
}

/// Why a command did nothing (or, for [`CommandError::Diverged`], not all of it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The tracker refused the definition; nothing was stored.
    #[error(transparent)]
    Refused(TrackerError),
    /// The tenant has no such record (in the registry, nor for a delete in the tracker).
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    /// The store refused or failed ([`StoreError::AlreadyExists`] for a taken id); nothing was
    /// stored and the tracker is unchanged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Stored, then refused by the tracker although it had validated it: a bug. The stored
    /// row is what the next start loads.
    #[error("stored, but the tracker refused what it had validated: {0}")]
    Diverged(TrackerError),
    /// The pipeline (and so the tracker) has stopped; nothing was done.
    #[error("the pipeline is not running")]
    Stopped,
}

/// Carries out `command` against the live state in `core` and the registry in `store`, at
/// server time `now_ms` (epoch milliseconds: creation and change times): validate, store in
/// one transaction, then apply (see the module docs). Synchronous; the pipeline's task runs it
/// between batches.
pub fn execute(
    core: &mut Core,
    store: &mut Store,
    command: Command,
    now_ms: TimestampMs,
) -> Result<Outcome, CommandError> {
    match command {
        Command::RegisterDevice {
            tenant,
            id,
            name,
            kind,
            profile,
        } => {
            let record = DeviceRecord {
                tenant,
                id,
                name,
                kind,
                profile: profile_json(&profile.clone().unwrap_or_default())?,
                created_ms: now_ms,
            };
            store.insert_device(&record)?;
            let (t, i) = (&record.tenant, &record.id);
            core.set_registered(t, i, true);
            if let Some(p) = profile {
                core.tracker_mut().set_device_profile(t, i, p);
            }
            let live = core.tracker().device(t, i);
            Ok(Outcome::Device { record, live })
        }
        Command::UpdateDevice { tenant, id, change } => {
            let profile = change.profile.clone();
            let record = store
                .update_device_with(&tenant, &id, |mut rec| {
                    set(&mut rec.name, change.name);
                    set(&mut rec.kind, change.kind);
                    if let Some(p) = &change.profile {
                        rec.profile = profile_json(p)?;
                    }
                    Ok::<_, CommandError>(rec)
                })?
                .ok_or_else(|| not_found("device", &id))?;
            if let Some(p) = profile {
                core.tracker_mut().set_device_profile(&tenant, &id, p);
            }
            let live = core.tracker().device(&tenant, &id);
            Ok(Outcome::Device { record, live })
        }
        Command::DeleteDevice { tenant, id } => {
            let was_registered = store.delete_device(&tenant, &id)?;
            core.set_registered(&tenant, &id, false);
            let was_live = core.tracker_mut().remove_device(&tenant, &id);
            if was_registered || was_live {
                Ok(Outcome::Deleted)
            } else {
                Err(not_found("device", &id))
            }
        }
        Command::CreateGeofence { tenant, fence } => {
            let record = geofence_record(tenant, &fence, now_ms);
            store.insert_geofence(&record)?;
            apply_geofence(core, &record.tenant, fence)?;
            Ok(Outcome::Geofence {
                record,
                created: true,
            })
        }
        Command::PutGeofence { tenant, fence } => {
            let record = geofence_record(tenant, &fence, now_ms);
            let created = store.put_geofence(&record)?;
            apply_geofence(core, &record.tenant, fence)?;
            Ok(Outcome::Geofence { record, created })
        }
        Command::DeleteGeofence { tenant, id } => {
            if !store.delete_geofence(&tenant, &id)? {
                return Err(not_found("geofence", &id));
            }
            core.tracker_mut().remove_geofence(&tenant, &id);
            Ok(Outcome::Deleted)
        }
        Command::CreateShipment {
            tenant,
            def,
            status,
        } => {
            core.tracker()
                .check_shipment(&tenant, &def)
                .map_err(CommandError::Refused)?;
            let record = ShipmentRecord {
                tenant,
                def,
                status,
                updated_ms: now_ms,
            };
            store.insert_shipment(&record)?;
            apply_shipment(core, record)
        }
        Command::PatchShipment { tenant, id, change } => {
            let tracker = core.tracker();
            let record = store
                .update_shipment_with(&tenant, &id, |mut rec| {
                    rec.status = match change.status {
                        Some(status) => status,
                        // Keep the tracker's own progress (in transit, arrived).
                        None => tracker
                            .shipment(&tenant, &id)
                            .map_or(rec.status, |s| s.status),
                    };
                    change.apply_to(&mut rec.def);
                    rec.updated_ms = now_ms;
                    tracker
                        .check_shipment(&tenant, &rec.def)
                        .map_err(CommandError::Refused)?;
                    Ok::<_, CommandError>(rec)
                })?
                .ok_or_else(|| not_found("shipment", &id))?;
            apply_shipment(core, record)
        }
        Command::DeleteShipment { tenant, id } => {
            if !store.delete_shipment(&tenant, &id)? {
                return Err(not_found("shipment", &id));
            }
            core.tracker_mut().remove_shipment(&tenant, &id);
            Ok(Outcome::Deleted)
        }
    }
}

fn not_found(what: &'static str, id: &str) -> CommandError {
    CommandError::NotFound {
        what,
        id: id.to_owned(),
    }
}

fn profile_json(profile: &DeviceProfile) -> Result<serde_json::Value, CommandError> {
    serde_json::to_value(profile).map_err(|e| CommandError::Store(StoreError::Json(e)))
}

fn geofence_record(tenant: String, fence: &Geofence, now_ms: TimestampMs) -> GeofenceRecord {
    GeofenceRecord {
        tenant,
        def: fence.def().clone(),
        updated_ms: now_ms,
    }
}

fn apply_geofence(core: &mut Core, tenant: &str, fence: Geofence) -> Result<(), CommandError> {
    core.tracker_mut()
        .upsert_prepared_geofence(tenant, fence)
        .map_err(CommandError::Diverged)
}

/// Puts a stored (and validated) shipment's definition and status into the tracker.
fn apply_shipment(core: &mut Core, record: ShipmentRecord) -> Result<Outcome, CommandError> {
    let (tenant, id) = (&record.tenant, &record.def.id);
    let tracker = core.tracker_mut();
    tracker
        .upsert_shipment(tenant, record.def.clone())
        .map_err(CommandError::Diverged)?;
    if tracker.shipment(tenant, id).map(|s| s.status) != Some(record.status) {
        tracker
            .set_shipment_status(tenant, id, record.status)
            .map_err(CommandError::Diverged)?;
    }
    let live = tracker.shipment(tenant, id).cloned();
    Ok(Outcome::Shipment { record, live })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use geo_types::LineString;
    use landport_tracker::geofence::Shape;
    use landport_tracker::{GeofenceDef, Tracker, TrackerSettings};

    use super::*;
    use crate::handle::TrackerHandle;
    use crate::metrics::Metrics;

    const T: &str = "acme";
    const NOW: TimestampMs = 1_795_400_000_000;

    fn core() -> Core {
        Core::new(
            Tracker::new(TrackerSettings::default()),
            false,
            Metrics::new(),
        )
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn port() -> Geofence {
        Geofence::new(GeofenceDef {
            id: "port".into(),
            name: "Port".into(),
            kind: "port".into(),
            shape: Shape::Circle {
                center: geo_types::Point::new(122.23, 40.67),
                radius_m: 500.0,
            },
            confirm_seconds: None,
            dwell_seconds: None,
        })
        .unwrap()
    }

    fn shipment(id: &str, destination: Place) -> ShipmentDef {
        ShipmentDef {
            id: id.into(),
            device: "t1".into(),
            reference: None,
            origin: None,
            destination,
            route: None,
            route_corridor_m: None,
            deadline_ms: None,
            temp_range_c: None,
            max_speed_kmh: None,
        }
    }

    fn create(def: ShipmentDef) -> Command {
        Command::CreateShipment {
            tenant: T.into(),
            def,
            status: ShipmentStatus::Planned,
        }
    }

    fn register(id: &str, max_speed_kmh: Option<f64>) -> Command {
        Command::RegisterDevice {
            tenant: T.into(),
            id: id.into(),
            name: id.into(),
            kind: "truck".into(),
            profile: Some(DeviceProfile {
                temp_range_c: None,
                max_speed_kmh,
            }),
        }
    }

    fn patch(change: ShipmentChange) -> Command {
        Command::PatchShipment {
            tenant: T.into(),
            id: "s1".into(),
            change,
        }
    }

    #[test]
    fn a_command_is_stored_then_applied_to_the_tracker() {
        let (_dir, mut store) = store();
        let mut core = core();
        let out = execute(&mut core, &mut store, register("t1", Some(80.0)), NOW).unwrap();
        assert!(matches!(out, Outcome::Device { ref live, .. } if live.is_some()));
        assert!(core.accepts(T, "t1"));
        assert_eq!(store.get_device(T, "t1").unwrap().unwrap().created_ms, NOW);
        let put = |fence| Command::PutGeofence {
            tenant: T.into(),
            fence,
        };
        let out = execute(&mut core, &mut store, put(port()), NOW).unwrap();
        assert!(matches!(out, Outcome::Geofence { created: true, .. }));
        let out = execute(&mut core, &mut store, put(port()), NOW).unwrap();
        assert!(matches!(out, Outcome::Geofence { created: false, .. }));
        assert!(core.tracker().geofence(T, "port").is_some());
        let to_port = shipment("s1", Place::Geofence("port".into()));
        let out = execute(&mut core, &mut store, create(to_port.clone()), NOW).unwrap();
        assert!(matches!(out, Outcome::Shipment { live: Some(_), .. }));
        assert_eq!(store.get_shipment(T, "s1").unwrap().unwrap().def, to_port);
        assert_eq!(core.tracker().shipment(T, "s1").unwrap().def, to_port);

        let gone = Command::DeleteShipment {
            tenant: T.into(),
            id: "s1".into(),
        };
        assert!(matches!(
            execute(&mut core, &mut store, gone.clone(), NOW),
            Ok(Outcome::Deleted)
        ));
        assert!(core.tracker().shipment(T, "s1").is_none());
        assert!(matches!(
            execute(&mut core, &mut store, gone, NOW),
            Err(CommandError::NotFound {
                what: "shipment",
                ..
            })
        ));
        let unregister = Command::DeleteDevice {
            tenant: T.into(),
            id: "t1".into(),
        };
        assert!(execute(&mut core, &mut store, unregister, NOW).is_ok());
        assert!(!core.accepts(T, "t1"));
        assert_eq!(store.get_device(T, "t1").unwrap(), None);
    }

    #[test]
    fn a_shipment_the_tracker_refuses_is_not_stored_and_changes_nothing() {
        let (_dir, mut store) = store();
        let mut core = core();
        let to_nowhere = shipment("s1", Place::Geofence("nowhere".into()));
        let err = execute(&mut core, &mut store, create(to_nowhere), NOW).unwrap_err();
        assert!(
            matches!(err, CommandError::Refused(TrackerError::InvalidShipment(_))),
            "{err}"
        );
        assert_eq!(store.get_shipment(T, "s1").unwrap(), None);
        assert_eq!(core.tracker().tenants().count(), 0, "tracker unchanged");

        // a patch the tracker refuses leaves the stored and the live shipment as they were
        let fine = shipment(
            "s1",
            Place::Point {
                lon: 122.2,
                lat: 40.6,
            },
        );
        execute(&mut core, &mut store, create(fine.clone()), NOW).unwrap();
        let before = store.get_shipment(T, "s1").unwrap();
        let bad_route = ShipmentChange {
            reference: Some(Some("PO-1".into())),
            route: Some(Some(LineString::from(vec![(200.0, 0.0), (201.0, 0.0)]))),
            ..ShipmentChange::default()
        };
        let err = execute(&mut core, &mut store, patch(bad_route), NOW + 1).unwrap_err();
        assert!(
            matches!(err, CommandError::Refused(TrackerError::InvalidGeometry(_))),
            "{err}"
        );
        assert_eq!(store.get_shipment(T, "s1").unwrap(), before);
        assert_eq!(core.tracker().shipment(T, "s1").unwrap().def, fine);
    }

    #[test]
    fn a_write_the_store_refuses_leaves_the_tracker_unchanged() {
        let (_dir, mut writer) = store();
        let mut core = core();
        execute(&mut core, &mut writer, register("t1", Some(80.0)), NOW).unwrap();
        let fine = shipment(
            "s1",
            Place::Point {
                lon: 122.2,
                lat: 40.6,
            },
        );
        execute(&mut core, &mut writer, create(fine.clone()), NOW).unwrap();

        // a constraint: the id is taken
        let err = execute(&mut core, &mut writer, register("t1", Some(30.0)), NOW).unwrap_err();
        assert!(
            matches!(err, CommandError::Store(StoreError::AlreadyExists { .. })),
            "{err}"
        );
        let speed = |core: &Core| {
            core.tracker()
                .device(T, "t1")
                .unwrap()
                .profile
                .max_speed_kmh
        };
        assert_eq!(speed(&core), Some(80.0));

        // a connection that cannot write (read-only)
        let mut read_only = writer.reader().unwrap();
        let refused: Vec<Command> = vec![
            register("t2", None),
            Command::UpdateDevice {
                tenant: T.into(),
                id: "t1".into(),
                change: DeviceChange {
                    profile: Some(DeviceProfile::default()),
                    ..DeviceChange::default()
                },
            },
            Command::DeleteDevice {
                tenant: T.into(),
                id: "t1".into(),
            },
            Command::CreateGeofence {
                tenant: T.into(),
                fence: port(),
            },
            create(shipment("s2", Place::Point { lon: 1.0, lat: 1.0 })),
            patch(ShipmentChange {
                status: Some(ShipmentStatus::Cancelled),
                reference: Some(Some("PO-2".into())),
                ..ShipmentChange::default()
            }),
            Command::DeleteShipment {
                tenant: T.into(),
                id: "s1".into(),
            },
        ];
        for command in refused {
            let what = format!("{command:?}");
            let err = execute(&mut core, &mut read_only, command, NOW + 1).unwrap_err();
            assert!(matches!(err, CommandError::Store(_)), "{what}: {err}");
        }
        assert!(!core.accepts(T, "t2"));
        assert!(core.accepts(T, "t1"));
        assert_eq!(speed(&core), Some(80.0));
        assert!(core.tracker().geofence(T, "port").is_none());
        assert!(core.tracker().shipment(T, "s2").is_none());
        let live = core.tracker().shipment(T, "s1").unwrap();
        assert_eq!((&live.def, live.status), (&fine, ShipmentStatus::Planned));
        assert_eq!(writer.get_shipment(T, "s1").unwrap().unwrap().def, fine);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_patches_of_different_members_all_land() {
        let (_dir, mut store) = store();
        let mut core = core();
        let start = shipment("s1", Place::Point { lon: 1.0, lat: 1.0 });
        execute(&mut core, &mut store, create(start), NOW).unwrap();
        let store = Arc::new(Mutex::new(store));
        let handle = TrackerHandle::standalone(core);
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (handle, store) = (handle.clone(), store.clone());
                tokio::spawn(async move {
                    // 50 patches, each of one member of ten, with a value of its own
                    let v = f64::from(i);
                    let change = match i % 10 {
                        0 => ShipmentChange {
                            reference: Some(Some(format!("PO-{i}"))),
                            ..Default::default()
                        },
                        1 => ShipmentChange {
                            origin: Some(Some(Place::Point { lon: v, lat: 0.0 })),
                            ..Default::default()
                        },
                        2 => ShipmentChange {
                            destination: Some(Place::Point { lon: v, lat: 2.0 }),
                            ..Default::default()
                        },
                        3 => ShipmentChange {
                            route: Some(Some(LineString::from(vec![(0.0, 0.0), (v, 1.0)]))),
                            ..Default::default()
                        },
                        4 => ShipmentChange {
                            route_corridor_m: Some(Some(100.0 + v)),
                            ..Default::default()
                        },
                        5 => ShipmentChange {
                            deadline_ms: Some(Some(NOW + i64::from(i))),
                            ..Default::default()
                        },
                        6 => ShipmentChange {
                            temp_range_c: Some(Some([-v, v])),
                            ..Default::default()
                        },
                        7 => ShipmentChange {
                            max_speed_kmh: Some(Some(50.0 + v)),
                            ..Default::default()
                        },
                        8 => ShipmentChange {
                            device: Some(format!("truck-{i}")),
                            ..Default::default()
                        },
                        _ => ShipmentChange {
                            status: Some(ShipmentStatus::Delivered),
                            ..Default::default()
                        },
                    };
                    handle.execute(&store, patch(change)).await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let stored = store
            .lock()
            .unwrap()
            .get_shipment(T, "s1")
            .unwrap()
            .unwrap();
        let d = &stored.def;
        assert!(d.reference.as_deref().unwrap().starts_with("PO-"));
        assert!(d.origin.is_some());
        assert_ne!(d.destination, Place::Point { lon: 1.0, lat: 1.0 });
        assert!(d.route.is_some());
        assert!(d.route_corridor_m.is_some());
        assert!(d.deadline_ms.is_some());
        assert!(d.temp_range_c.is_some());
        assert!(d.max_speed_kmh.is_some());
        assert!(d.device.starts_with("truck-"));
        assert_eq!(stored.status, ShipmentStatus::Delivered);
        let live = handle.live();
        let view = live.shipment(T, "s1").unwrap();
        assert_eq!(&view.state.def, d, "the tracker has what is stored");
    }
}
