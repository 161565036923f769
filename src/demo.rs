//! `landport demo`: the service plus a simulated fleet, so a newcomer sees trucks move.
//!
//! Before the service starts, the store is seeded with a `demo` tenant, a fresh API key,
//! geofences around the simulator's places (warehouses, ports, a restricted zone) and the
//! shipments of the fleet's story (`landport_simulators::fleet::scenario`: six customers, a
//! reefer excursion, a breakdown making a shipment late, a delivered cold-chain shipment);
//! the service then loads them like any registry. The simulator logs in to Landport's MQTT
//! endpoint as the tenant once it is up, publishes the hour its trucks recorded before the
//! start as store-and-forward batches, then goes live at ten times real time. A task marks
//! the shipments the story says are signed for `delivered` through the HTTP API once the
//! tracker saw them arrive. Started again on its own data, the demo goes on from where its
//! devices' clocks were.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use geo_types::{LineString, MultiPolygon, Point, Polygon};
use landport_config::Config;
use landport_pipeline::now_ms;
use landport_simulators::fleet::{self, scenario};
use landport_store::{GeofenceRecord, KeyHash, ShipmentRecord, Store, StoreError, Tenant};
use landport_tracker::{GeofenceDef, Place, Shape, ShipmentDef, ShipmentStatus};

/// The demo's tenant.
pub const TENANT: &str = "demo";

/// A key nobody can guess: 128 bits from the OS-seeded hasher keys.
fn random_key() -> String {
    let mut out = String::from("lp_demo_");
    for _ in 0..2 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(now_ms() as u64);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// Ignores "already exists": the demo may be started again on the same data.
fn fresh<T>(r: Result<T, StoreError>) -> Result<(), StoreError> {
    match r {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What [`seed`] found and made.
pub struct Seeded {
    /// The new API key of the demo's tenant.
    pub key: String,
    /// The latest device time of the demo's readings when the store already held a demo's
    /// (a restart on the same data), epoch ms.
    pub resume_from_ms: Option<i64>,
}

/// The latest device time of the demo tenant's most recently stored readings, if any.
fn last_demo_reading_ms(store: &Store) -> Result<Option<i64>, StoreError> {
    let last = store.telemetry_rowid_max()?;
    Ok(store
        .readings_after(last.saturating_sub(200), 200)?
        .into_iter()
        .filter(|(_, r)| r.tenant == TENANT)
        .map(|(_, r)| r.reading.ts_ms)
        .max())
}

/// Seeds the store.
pub fn seed(config: &Config) -> Result<Seeded> {
    let mut store = Store::open(&config.storage.path)
        .with_context(|| format!("opening the store in {}", config.storage.path.display()))?;
    let now = now_ms();
    let resume_from_ms = last_demo_reading_ms(&store)?;
    fresh(store.create_tenant(&Tenant {
        id: TENANT.into(),
        name: "Liaoning Steel Logistics (demo)".into(),
        created_ms: now,
    }))?;
    let key = random_key();
    let key_id = format!("demo-{now}");
    store.create_api_key(TENANT, &key_id, &KeyHash::of(&key), now)?;

    for p in fleet::places() {
        let def = GeofenceDef {
            id: p.id.to_string(),
            name: p.name.to_string(),
            kind: p.kind.to_string(),
            shape: Shape::Circle {
                center: Point::new(p.lon, p.lat),
                radius_m: 800.0,
            },
            confirm_seconds: Some(10),
            dwell_seconds: Some(900),
        };
        fresh(store.insert_geofence(&GeofenceRecord {
            tenant: TENANT.into(),
            def,
            updated_ms: now,
        }))?;
    }
    // A restricted zone beside the Shenyang-Dalian expressway near Haicheng.
    let ring = LineString::from(vec![
        (122.70, 40.84),
        (122.78, 40.84),
        (122.78, 40.90),
        (122.70, 40.90),
        (122.70, 40.84),
    ]);
    fresh(store.insert_geofence(&GeofenceRecord {
        tenant: TENANT.into(),
        def: GeofenceDef {
            id: "haicheng-restricted".into(),
            name: "Haicheng restricted zone".into(),
            kind: "restricted".into(),
            shape: Shape::Area(MultiPolygon(vec![Polygon::new(ring, vec![])])),
            confirm_seconds: Some(10),
            dwell_seconds: None,
        },
        updated_ms: now,
    }))?;

    // One shipment per scripted truck of the fleet's story (`fleet::scenario`), each for a
    // different customer, its deadline counted from now (when the demo goes live).
    for d in scenario::shipments() {
        let def = ShipmentDef {
            id: d.id.into(),
            device: d.device_id(),
            reference: Some(d.reference.into()),
            origin: Some(Place::Geofence(d.origin().into())),
            destination: Place::Geofence(d.destination().into()),
            route: Some(LineString::from(fleet::route_polyline_towards(
                d.route, d.forward,
            ))),
            route_corridor_m: Some(2_000.0),
            deadline_ms: Some(now + d.deadline_after_s * 1000),
            temp_range_c: d.temp_range_c,
            max_speed_kmh: Some(100.0),
        };
        let status = if d.in_transit {
            ShipmentStatus::InTransit
        } else {
            ShipmentStatus::Planned
        };
        fresh(store.insert_shipment(&ShipmentRecord {
            tenant: TENANT.into(),
            def,
            status,
            updated_ms: now,
        }))?;
    }
    Ok(Seeded {
        key,
        resume_from_ms,
    })
}

/// How much faster than the wall clock the demo's simulated time runs: a trip takes
/// minutes, not hours.
const TIME_SCALE: f64 = 10.0;

/// What the demo changes in the user's config.
fn adjust(config: &mut Config) {
    // The simulator's devices are not registered one by one.
    config.ingest.auto_register = true;
    // Simulated time runs ahead of the wall clock (an hour of demo is nine hours ahead). The
    // default one-day limit on future timestamps would start rejecting the fleet after 2.4
    // hours; 30 days lasts 3 days of demo.
    config.ingest.max_future_seconds = config.ingest.max_future_seconds.max(30 * 86_400);
    // The drivers' phones (OwnTracks users nobody mapped) belong to the demo's tenant, whose
    // login the fleet uses: the endpoint lets it publish their topics, the map shows them.
    config.ingest.owntracks_default_tenant = TENANT.into();
}

/// Runs the service with a simulated fleet until SIGINT/SIGTERM.
pub async fn demo(mut config: Config) -> Result<()> {
    adjust(&mut config);
    let Seeded {
        key,
        resume_from_ms,
    } = seed(&config)?;
    let broker = config.mqtt.broker_url();
    let sim_config = fleet::FleetConfig {
        tenant: TENANT.into(),
        time_scale: TIME_SCALE,
        duration: None,
        ..fleet::FleetConfig::default()
    };
    let sim_key = key.clone();
    let simulator = tokio::spawn(async move {
        // Give the embedded broker a moment; the simulator reconnects anyway.
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The fleet logs in as the tenant, with its key (SPEC 12), as a gateway would.
        let login = fleet::Login {
            username: TENANT.into(),
            password: sim_key,
        };
        let mut scenario = scenario::scenario();
        if let Some(last) = resume_from_ms {
            // A restart on the demo's own data: the devices' clocks go on from where they
            // were (the story's history is there already).
            scenario.history = Duration::ZERO;
            scenario.live_from_ms = Some(last + 1_000);
        }
        if let Err(e) = fleet::run_with(sim_config, &scenario, &broker, Some(login), false).await {
            tracing::error!("simulator stopped: {e:#}");
        }
    });
    let listen = config.http.listen;
    let api = if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    let deliveries = tokio::spawn(deliver_on_arrival(api, key.clone()));
    let url = format!("http://{listen}/#key={key}");
    let history_min = scenario::HISTORY.as_secs() / 60;
    let again = if resume_from_ms.is_some() {
        format!(
            "  note:      {} already held a demo: it goes on from there (shipments keep their \
             state); start with an empty data directory to see the story from its start\n",
            config.storage.path.display()
        )
    } else {
        String::new()
    };
    let banner = format!(
        "\n  Landport demo\n  live map:  {url}\n  API key:   {key}   (tenant \"{TENANT}\")\n  \
         replay:    {url}&device=truck-0   (the last {history_min} min of truck-0's track, its \
         stops and a slider)\n  \
         try:       curl -H 'Authorization: Bearer {key}' http://{listen}/v1/shipments\n  \
         record:    curl -H 'Authorization: Bearer {key}' http://{listen}/v1/shipments/SHP-3/report\n  \
         stop:      Ctrl-C\n{again}\n"
    );
    // One write, and a closed stdout (`landport demo | head -3`) must not stop the service.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    drop(out);
    let result = crate::run::run(config).await;
    simulator.abort();
    deliveries.abort();
    result
}

/// The customers' side of the story: a shipment the scenario says is signed for on arrival
/// is marked `delivered` through the HTTP API (as an operator or a proof-of-delivery app
/// would) once the tracker has seen it arrive.
async fn deliver_on_arrival(api: SocketAddr, key: String) {
    let mut waiting: Vec<_> = scenario::shipments()
        .into_iter()
        .filter(|s| s.delivered_on_arrival)
        .map(|s| s.id)
        .collect();
    while !waiting.is_empty() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut still = Vec::new();
        for id in waiting {
            let path = format!("/v1/shipments/{id}");
            let status = match http_json(api, "GET", &path, &key, None).await {
                Ok((200, v)) => v["status"].as_str().unwrap_or_default().to_owned(),
                _ => String::new(),
            };
            match status.as_str() {
                "arrived" => {
                    let body = r#"{"status": "delivered"}"#;
                    match http_json(api, "PATCH", &path, &key, Some(body)).await {
                        Ok((200, _)) => {}
                        other => {
                            tracing::warn!("demo: marking {id} delivered: {other:?}");
                            still.push(id);
                        }
                    }
                }
                "delivered" | "cancelled" => {}
                _ => still.push(id),
            }
        }
        waiting = still;
    }
}

/// One HTTP/1.1 request to the demo's own API (`Connection: close`): the status and the
/// JSON body (null when it is not JSON).
async fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&str>,
) -> Result<(u16, serde_json::Value)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status line")?;
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or_default();
    Ok((status, json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use landport_ingest::decode::decode_native;

    /// A fleet reading sent after `hours` of demo, as the simulator stamps it, decoded with
    /// the limits the service would run with.
    fn accepted_after(config: &Config, hours: f64) -> bool {
        let now = 1_790_000_000_000_i64;
        let ahead_ms = (hours * 3_600_000.0 * (TIME_SCALE - 1.0)) as i64;
        let payload = format!(
            r#"{{"ts": {}, "lat": 40.67, "lon": 122.24}}"#,
            now + ahead_ms
        );
        let limits = landport_cluster::settings::ingest(config).limits;
        decode_native(payload.as_bytes(), &limits, now).is_ok_and(|o| o.readings.len() == 1)
    }

    #[test]
    fn the_fleet_is_accepted_after_a_day_of_demo() {
        let mut config = Config::default();
        assert!(
            !accepted_after(&config, 24.0),
            "the default limit refuses it"
        );
        adjust(&mut config);
        assert!(accepted_after(&config, 24.0));
        assert!(config.ingest.auto_register);
        assert_eq!(config.ingest.owntracks_tenant("driver7"), TENANT);
    }
}
