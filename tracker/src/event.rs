//! Events: what the tracker tells the world, in the envelope of SPEC section 5.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::reading::TimestampMs;

/// The kinds of event. Serialized with the dotted names of the product contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "geofence.entered")]
    GeofenceEntered,
    #[serde(rename = "geofence.exited")]
    GeofenceExited,
    #[serde(rename = "geofence.dwell")]
    GeofenceDwell,
    #[serde(rename = "shipment.departed")]
    ShipmentDeparted,
    #[serde(rename = "shipment.arrived")]
    ShipmentArrived,
    #[serde(rename = "shipment.eta_changed")]
    ShipmentEtaChanged,
    #[serde(rename = "shipment.late_risk")]
    ShipmentLateRisk,
    #[serde(rename = "route.deviated")]
    RouteDeviated,
    #[serde(rename = "route.rejoined")]
    RouteRejoined,
    #[serde(rename = "device.overspeed")]
    DeviceOverspeed,
    #[serde(rename = "cargo.temperature_excursion")]
    TemperatureExcursion,
    #[serde(rename = "cargo.temperature_recovered")]
    TemperatureRecovered,
    #[serde(rename = "cargo.weight_changed")]
    WeightChanged,
    #[serde(rename = "device.offline")]
    DeviceOffline,
    #[serde(rename = "device.online")]
    DeviceOnline,
}

impl EventType {
    /// Every event type, in a fixed order (for metrics and docs).
    pub const ALL: [EventType; 15] = [
        EventType::GeofenceEntered,
        EventType::GeofenceExited,
        EventType::GeofenceDwell,
        EventType::ShipmentDeparted,
        EventType::ShipmentArrived,
        EventType::ShipmentEtaChanged,
        EventType::ShipmentLateRisk,
        EventType::RouteDeviated,
        EventType::RouteRejoined,
        EventType::DeviceOverspeed,
        EventType::TemperatureExcursion,
        EventType::TemperatureRecovered,
        EventType::WeightChanged,
        EventType::DeviceOffline,
        EventType::DeviceOnline,
    ];

    /// The contract name, e.g. `geofence.entered`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::GeofenceEntered => "geofence.entered",
            EventType::GeofenceExited => "geofence.exited",
            EventType::GeofenceDwell => "geofence.dwell",
            EventType::ShipmentDeparted => "shipment.departed",
            EventType::ShipmentArrived => "shipment.arrived",
            EventType::ShipmentEtaChanged => "shipment.eta_changed",
            EventType::ShipmentLateRisk => "shipment.late_risk",
            EventType::RouteDeviated => "route.deviated",
            EventType::RouteRejoined => "route.rejoined",
            EventType::DeviceOverspeed => "device.overspeed",
            EventType::TemperatureExcursion => "cargo.temperature_excursion",
            EventType::TemperatureRecovered => "cargo.temperature_recovered",
            EventType::WeightChanged => "cargo.weight_changed",
            EventType::DeviceOffline => "device.offline",
            EventType::DeviceOnline => "device.online",
        }
    }

    /// Parses a contract name.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event, in the envelope published to MQTT, stored and served over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Deterministic id (`evt_` + 32 hex digits): the same readings in give the same ids out,
    /// so consumers can de-duplicate replays.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub tenant: String,
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geofence: Option<String>,
    /// Event time from the device's clock (RFC 3339 UTC on the wire).
    #[serde(rename = "ts", with = "rfc3339_ms")]
    pub ts_ms: TimestampMs,
    /// Type-specific details; an empty object when there are none.
    pub data: serde_json::Value,
}

impl Event {
    /// Builds an event whose id is derived from what identifies it: tenant, device, type,
    /// shipment, geofence, event time and a rule-specific discriminator (e.g. the time the
    /// episode began), never from arrival order or wall-clock time.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: EventType,
        tenant: &str,
        device: &str,
        shipment: Option<&str>,
        geofence: Option<&str>,
        ts_ms: TimestampMs,
        discriminator: i64,
        data: serde_json::Value,
    ) -> Event {
        let mut h = Xxh3::new();
        for part in [
            tenant,
            device,
            kind.as_str(),
            shipment.unwrap_or(""),
            geofence.unwrap_or(""),
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(&ts_ms.to_le_bytes());
        h.update(&discriminator.to_le_bytes());
        Event {
            id: format!("evt_{:032x}", h.digest128()),
            kind,
            tenant: tenant.to_owned(),
            device: device.to_owned(),
            shipment: shipment.map(str::to_owned),
            geofence: geofence.map(str::to_owned),
            ts_ms,
            data,
        }
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC with millisecond precision.
pub fn format_rfc3339(ts_ms: TimestampMs) -> String {
    match chrono::DateTime::from_timestamp_millis(ts_ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => ts_ms.to_string(),
    }
}

/// Parses RFC 3339 into epoch milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<TimestampMs> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Serde adapter: epoch milliseconds <-> RFC 3339 string.
pub mod rfc3339_ms {
    use super::TimestampMs;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &TimestampMs, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_rfc3339(*ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TimestampMs, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_depend_on_every_part() {
        let a = Event::new(
            EventType::GeofenceEntered,
            "t",
            "d",
            None,
            Some("g"),
            5,
            0,
            serde_json::json!({}),
        );
        let b = Event::new(
            EventType::GeofenceEntered,
            "t",
            "d",
            None,
            Some("g"),
            5,
            0,
            serde_json::json!({}),
        );
        assert_eq!(a.id, b.id);
        let c = Event::new(
            EventType::GeofenceExited,
            "t",
            "d",
            None,
            Some("g"),
            5,
            0,
            serde_json::json!({}),
        );
        let d = Event::new(
            EventType::GeofenceEntered,
            "t",
            "d",
            None,
            Some("g"),
            6,
            0,
            serde_json::json!({}),
        );
        let e = Event::new(
            EventType::GeofenceEntered,
            "t",
            "dg",
            None,
            None,
            5,
            0,
            serde_json::json!({}),
        );
        assert_ne!(a.id, c.id);
        assert_ne!(a.id, d.id);
        assert_ne!(a.id, e.id, "field boundaries are part of the hash");
        assert!(a.id.starts_with("evt_") && a.id.len() == 36);
    }

    #[test]
    fn envelope_matches_the_contract() {
        let e = Event::new(
            EventType::GeofenceEntered,
            "acme",
            "truck-17",
            Some("SHP-1"),
            Some("yingkou-port"),
            parse_rfc3339("2026-11-24T08:15:31Z").unwrap(),
            0,
            serde_json::json!({}),
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "geofence.entered");
        assert_eq!(v["ts"], "2026-11-24T08:15:31.000Z");
        assert_eq!(v["shipment"], "SHP-1");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn type_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }
}
