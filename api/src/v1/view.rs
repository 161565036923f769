//! JSON shapes shared by several endpoints: devices and times.

use chrono::{DateTime, SecondsFormat};
use landport_store::DeviceRecord;
use landport_tracker::DeviceView;
use serde_json::{Value, json};

/// Epoch milliseconds as RFC 3339 UTC (`2026-11-24T08:15:30.250Z`); `null` when absent or out
/// of range.
pub fn rfc3339(ms: Option<i64>) -> Value {
    rfc3339_string(ms).map_or(Value::Null, Value::String)
}

/// [`rfc3339`] for typed (`Serialize`) shapes.
pub fn rfc3339_string(ms: Option<i64>) -> Option<String> {
    ms.and_then(DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The device object of SPEC 6: registry (`name`, `kind`; `null` for a device that only sent
/// telemetry, with `registered: false`) and live state (`position` `null` when none).
pub fn device_json(
    tenant: &str,
    id: &str,
    reg: Option<&DeviceRecord>,
    live: Option<&DeviceView>,
) -> Value {
    let position = live.and_then(|d| {
        d.fix.map(|f| {
            json!({
                "lat": f.lat, "lon": f.lon, "ts": rfc3339(d.fix_ts_ms),
                "speed_kmh": f.speed_kmh, "heading_deg": f.heading_deg,
                "accuracy_m": f.accuracy_m,
            })
        })
    });
    json!({
        "id": id,
        "tenant": tenant,
        "name": reg.map(|r| r.name.as_str()),
        "kind": reg.map(|r| r.kind.as_str()),
        "registered": reg.is_some(),
        "online": live.is_some_and(|d| d.online),
        "last_seen": rfc3339(live.and_then(|d| d.last_seen_ms)),
        "position": position,
        "temp_c": live.and_then(|d| d.temp_c),
        "weight_kg": live.and_then(|d| d.weight_kg),
        "battery_pct": live.and_then(|d| d.battery_pct),
        "geofences": live.map(|d| d.geofences.clone()).unwrap_or_default(),
    })
}
