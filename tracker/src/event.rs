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
    /// Starts an event of `kind` for `device` of `tenant`; name its time with
    /// [`EventDraft::at`], then its other parts, and finish with [`EventBuilder::data`] (or
    /// [`EventBuilder::finish`] for an empty `data`):
    ///
    /// ```
    /// # use landport_tracker::{Event, EventType};
    /// let e = Event::build(EventType::GeofenceEntered, "acme", "truck-17")
    ///     .at(1_795_400_000_000)
    ///     .geofence("yingkou-port")
    ///     .discriminator(1_795_399_990_000)
    ///     .data(serde_json::json!({ "name": "Yingkou port" }));
    /// assert_eq!(e.geofence.as_deref(), Some("yingkou-port"));
    /// ```
    ///
    /// The id is derived from what identifies the event: tenant, device, type, shipment,
    /// geofence, event time and a rule-specific discriminator (e.g. the time the episode
    /// began), never from arrival order or wall-clock time.
    #[inline]
    pub fn build<'a>(kind: EventType, tenant: &'a str, device: &'a str) -> EventDraft<'a> {
        EventDraft {
            kind,
            tenant,
            device,
        }
    }

    /// Builds an event from positional parts; the same as
    /// `Event::build(kind, tenant, device).at(ts_ms).shipment(shipment).geofence(geofence)
    /// .discriminator(discriminator).data(data)`, which new code should use.
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
        Event::build(kind, tenant, device)
            .at(ts_ms)
            .shipment(shipment)
            .geofence(geofence)
            .discriminator(discriminator)
            .data(data)
    }
}

/// An event that has a type, tenant and device but no time yet (see [`Event::build`]): the
/// time is part of the id, so it cannot be left out.
#[derive(Debug, Clone, Copy)]
#[must_use = "an event draft does nothing until it is given a time and finished"]
pub struct EventDraft<'a> {
    kind: EventType,
    tenant: &'a str,
    device: &'a str,
}

impl<'a> EventDraft<'a> {
    /// The event time, device clock, epoch milliseconds.
    #[inline]
    pub fn at(self, ts_ms: TimestampMs) -> EventBuilder<'a> {
        EventBuilder {
            kind: self.kind,
            tenant: self.tenant,
            device: self.device,
            shipment: None,
            geofence: None,
            ts_ms,
            discriminator: 0,
        }
    }
}

/// The named parts of an event under construction (see [`Event::build`]). Shipment and
/// geofence default to none, the discriminator to 0.
#[derive(Debug, Clone, Copy)]
#[must_use = "an event builder does nothing until it is finished with `data` or `finish`"]
pub struct EventBuilder<'a> {
    kind: EventType,
    tenant: &'a str,
    device: &'a str,
    shipment: Option<&'a str>,
    geofence: Option<&'a str>,
    ts_ms: TimestampMs,
    discriminator: i64,
}

impl<'a> EventBuilder<'a> {
    /// The shipment the event is about (a `&str`, or an `Option<&str>` that may be none).
    #[inline]
    pub fn shipment(mut self, shipment: impl Into<Option<&'a str>>) -> Self {
        self.shipment = shipment.into();
        self
    }

    /// The geofence the event is about (a `&str`, or an `Option<&str>` that may be none).
    #[inline]
    pub fn geofence(mut self, geofence: impl Into<Option<&'a str>>) -> Self {
        self.geofence = geofence.into();
        self
    }

    /// Tells apart events that would otherwise share an id: usually the time the episode
    /// began (so a new episode at the same time as an old one's end gets a new id). Hashed
    /// into the id, not published.
    #[inline]
    pub fn discriminator(mut self, discriminator: i64) -> Self {
        self.discriminator = discriminator;
        self
    }

    /// Finishes the event with its type-specific details.
    pub fn data(self, data: serde_json::Value) -> Event {
        let mut h = Xxh3::new();
        for part in [
            self.tenant,
            self.device,
            self.kind.as_str(),
            self.shipment.unwrap_or(""),
            self.geofence.unwrap_or(""),
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(&self.ts_ms.to_le_bytes());
        h.update(&self.discriminator.to_le_bytes());
        Event {
            id: format!("evt_{:032x}", h.digest128()),
            kind: self.kind,
            tenant: self.tenant.to_owned(),
            device: self.device.to_owned(),
            shipment: self.shipment.map(str::to_owned),
            geofence: self.geofence.map(str::to_owned),
            ts_ms: self.ts_ms,
            data,
        }
    }

    /// Finishes an event with no details (`data` is `{}`).
    #[inline]
    pub fn finish(self) -> Event {
        self.data(serde_json::json!({}))
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

    /// `geofence.entered` of device `d` of tenant `t` in fence `g` at 5 ms: a small builder.
    fn entered(tenant: &str, device: &str, geofence: Option<&str>, ts: TimestampMs) -> Event {
        Event::build(EventType::GeofenceEntered, tenant, device)
            .at(ts)
            .geofence(geofence)
            .finish()
    }

    #[test]
    fn ids_are_deterministic_and_depend_on_every_part() {
        let a = entered("t", "d", Some("g"), 5);
        let b = entered("t", "d", Some("g"), 5);
        assert_eq!(a.id, b.id);
        let c = Event::build(EventType::GeofenceExited, "t", "d")
            .at(5)
            .geofence("g")
            .finish();
        let d = entered("t", "d", Some("g"), 6);
        let e = entered("t", "dg", None, 5);
        let f = Event::build(EventType::GeofenceEntered, "t", "d")
            .at(5)
            .geofence("g")
            .discriminator(1)
            .finish();
        let g = Event::build(EventType::GeofenceEntered, "t", "d")
            .at(5)
            .shipment("g")
            .finish();
        assert_ne!(a.id, c.id);
        assert_ne!(a.id, d.id);
        assert_ne!(a.id, e.id, "field boundaries are part of the hash");
        assert_ne!(a.id, f.id);
        assert_ne!(a.id, g.id, "a shipment is not a geofence of the same name");
        assert!(a.id.starts_with("evt_") && a.id.len() == 36);
    }

    #[test]
    fn ids_are_pinned() {
        // Ids are part of the contract: consumers de-duplicate replays across releases.
        let e = Event::build(EventType::ShipmentEtaChanged, "acme", "truck-17")
            .at(1_795_400_000_000)
            .shipment("SHP-1")
            .geofence("yingkou-port")
            .discriminator(1_795_403_600_000)
            .finish();
        assert_eq!(e.id, "evt_6ab1e8747be0b616b38f9801712e229b");
        assert_eq!(
            entered("t", "d", Some("g"), 5).id,
            "evt_c91489168edcdc35a39c4f68b2f79055"
        );
    }

    #[test]
    fn the_positional_constructor_builds_the_same_event() {
        let built = Event::build(EventType::WeightChanged, "acme", "truck-17")
            .at(7)
            .shipment("SHP-1")
            .geofence("wh")
            .discriminator(3)
            .data(serde_json::json!({ "delta_kg": 2.0 }));
        let positional = Event::new(
            EventType::WeightChanged,
            "acme",
            "truck-17",
            Some("SHP-1"),
            Some("wh"),
            7,
            3,
            serde_json::json!({ "delta_kg": 2.0 }),
        );
        assert_eq!(built, positional);
    }

    #[test]
    fn envelope_matches_the_contract() {
        let e = Event::build(EventType::GeofenceEntered, "acme", "truck-17")
            .at(parse_rfc3339("2026-11-24T08:15:31Z").unwrap())
            .shipment("SHP-1")
            .geofence("yingkou-port")
            .finish();
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
