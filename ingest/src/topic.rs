//! MQTT topics: which format a message is in and which device sent it ([`TopicKind::parse`]),
//! and the topics Landport publishes to ([`rejected_topic`], [`events_topic`]).
//!
//! | topic | kind |
//! | --- | --- |
//! | `landport/{tenant}/{device}/telemetry` | [`TopicKind::Native`] |
//! | `landport/{tenant}/{device}/senml` | [`TopicKind::Senml`] |
//! | `owntracks/{user}/{device}` | [`TopicKind::OwnTracks`], device `{user}-{device}`, tenant from [`OwnTracksTenants`] |
//! | `landport/+/+/events`, `landport/+/+/rejected` | [`TopicKind::Ignored`]: Landport's own output |
//! | `owntracks/{user}/{device}/...` | [`TopicKind::Ignored`]: OwnTracks' own subtopics (`event`, `info`, `cmd`, ...) |
//! | anything else | `unknown_topic` |
//!
//! Tenant, device and user ids are 1 to 64 characters of `A-Z a-z 0-9 . _ -` and not `.` or
//! `..` (ids end up in storage keys and URLs; the MQTT wildcards `+` and `#` and any non-ASCII
//! are refused too).

use std::borrow::Cow;
use std::collections::HashMap;

use crate::decode::Rejection;
use crate::decode::rejection::excerpt;

/// Topic filters the ingestor subscribes to.
pub const SUBSCRIPTIONS: [&str; 3] = [
    "landport/+/+/telemetry",
    "landport/+/+/senml",
    "owntracks/+/+",
];

/// Longest tenant, device or user id, characters.
pub use landport_tracker::id::MAX_ID_CHARS;

/// Which tenant an OwnTracks user's devices belong to (OwnTracks topics carry no tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnTracksTenants {
    /// Tenant of users not in `by_user` (SPEC: `default`).
    pub default_tenant: String,
    /// OwnTracks user -> tenant.
    pub by_user: HashMap<String, String>,
}

impl Default for OwnTracksTenants {
    fn default() -> Self {
        OwnTracksTenants {
            default_tenant: "default".to_owned(),
            by_user: HashMap::new(),
        }
    }
}

impl OwnTracksTenants {
    /// The tenant of `user`'s devices.
    pub fn tenant_for(&self, user: &str) -> &str {
        self.by_user
            .get(user)
            .map_or(&self.default_tenant, String::as_str)
    }
}

/// The device a message is from. Borrows from the topic where it can.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceRef<'a> {
    pub tenant: Cow<'a, str>,
    pub device: Cow<'a, str>,
}

impl<'a> DeviceRef<'a> {
    pub fn new(tenant: impl Into<Cow<'a, str>>, device: impl Into<Cow<'a, str>>) -> Self {
        DeviceRef {
            tenant: tenant.into(),
            device: device.into(),
        }
    }

    /// An owned copy, free of the topic's lifetime.
    pub fn into_owned(self) -> DeviceRef<'static> {
        DeviceRef {
            tenant: Cow::Owned(self.tenant.into_owned()),
            device: Cow::Owned(self.device.into_owned()),
        }
    }
}

/// What a topic says about the message published to it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicKind<'a> {
    /// `landport/{tenant}/{device}/telemetry`: native JSON.
    Native(DeviceRef<'a>),
    /// `landport/{tenant}/{device}/senml`: SenML JSON.
    Senml(DeviceRef<'a>),
    /// `owntracks/{user}/{device}`: OwnTracks JSON; the device id is `{user}-{device}`.
    OwnTracks(DeviceRef<'a>),
    /// A topic that is not telemetry and not a mistake (Landport's own `events` and
    /// `rejected`, OwnTracks subtopics): skip it, count nothing.
    Ignored,
}

impl<'a> TopicKind<'a> {
    /// Classifies `topic`. `owntracks` gives the tenant of OwnTracks users.
    pub fn parse(topic: &'a str, owntracks: &'a OwnTracksTenants) -> Result<Self, Rejection> {
        let mut levels = topic.split('/');
        let unknown = || Rejection::UnknownTopic {
            topic: excerpt(topic, 128),
        };
        match levels.next() {
            Some("landport") => {
                let (Some(tenant), Some(device), Some(kind), None) =
                    (levels.next(), levels.next(), levels.next(), levels.next())
                else {
                    return Err(unknown());
                };
                let make: fn(DeviceRef<'a>) -> TopicKind<'a> = match kind {
                    "telemetry" => TopicKind::Native,
                    "senml" => TopicKind::Senml,
                    "events" | "rejected" => return Ok(TopicKind::Ignored),
                    _ => return Err(unknown()),
                };
                check_id("tenant", tenant)?;
                check_id("device", device)?;
                Ok(make(DeviceRef::new(tenant, device)))
            }
            Some("owntracks") => {
                let (Some(user), Some(device)) = (levels.next(), levels.next()) else {
                    return Err(unknown());
                };
                if levels.next().is_some() {
                    return Ok(TopicKind::Ignored);
                }
                check_id("user", user)?;
                check_id("device", device)?;
                let id = format!("{user}-{device}");
                check_id("device", &id)?;
                let tenant = owntracks.tenant_for(user);
                check_id("tenant", tenant)?;
                Ok(TopicKind::OwnTracks(DeviceRef::new(tenant, id)))
            }
            _ => Err(unknown()),
        }
    }

    /// The device, unless the topic is ignored.
    pub fn device(&self) -> Option<&DeviceRef<'a>> {
        match self {
            TopicKind::Native(d) | TopicKind::Senml(d) | TopicKind::OwnTracks(d) => Some(d),
            TopicKind::Ignored => None,
        }
    }
}

/// Checks a tenant, device or user id (`what` names which, for the message) against the one
/// id rule, [`landport_tracker::check_id`].
pub fn check_id(what: &'static str, id: &str) -> Result<(), Rejection> {
    landport_tracker::check_id(id).map_err(|e| Rejection::BadId {
        what,
        id: excerpt(id, 80),
        reason: e.reason(),
    })
}

// The topics Landport publishes to are named where they are published from (the pipeline's
// dead letters, the sinks' event outbox); re-exported here beside the topics it reads.
pub use landport_pipeline::topics::{events_topic, rejected_topic};

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(topic: &str) -> Result<TopicKind<'_>, Rejection> {
        static TENANTS: std::sync::OnceLock<OwnTracksTenants> = std::sync::OnceLock::new();
        let tenants = TENANTS.get_or_init(|| OwnTracksTenants {
            default_tenant: "default".to_owned(),
            by_user: HashMap::from([("ja".to_owned(), "acme".to_owned())]),
        });
        TopicKind::parse(topic, tenants)
    }

    fn code(topic: &str) -> &'static str {
        parse(topic).unwrap_err().code()
    }

    #[test]
    fn landport_topics_name_format_tenant_and_device() {
        assert_eq!(
            parse("landport/acme/truck-17/telemetry"),
            Ok(TopicKind::Native(DeviceRef::new("acme", "truck-17")))
        );
        assert_eq!(
            parse("landport/acme/cold.room_2/senml"),
            Ok(TopicKind::Senml(DeviceRef::new("acme", "cold.room_2")))
        );
    }

    #[test]
    fn owntracks_devices_are_user_dash_device_in_the_users_tenant() {
        let kind = parse("owntracks/ja/phone").unwrap();
        assert_eq!(
            kind,
            TopicKind::OwnTracks(DeviceRef::new("acme", "ja-phone"))
        );
        let kind = parse("owntracks/bo/tablet").unwrap();
        assert_eq!(kind.device(), Some(&DeviceRef::new("default", "bo-tablet")));
    }

    #[test]
    fn our_own_output_and_owntracks_subtopics_are_ignored() {
        for t in [
            "landport/a/b/events",
            "landport/a/b/rejected",
            "owntracks/ja/phone/event",
            "owntracks/ja/phone/cmd",
        ] {
            assert_eq!(parse(t), Ok(TopicKind::Ignored), "{t}");
        }
    }

    #[test]
    fn other_shapes_are_unknown() {
        for t in [
            "",
            "/",
            "landport",
            "landport/a/b",
            "landport/a/b/c",
            "landport/a/b/telemetry/x",
            "owntracks/ja",
            "$SYS/broker/uptime",
            "Landport/a/b/telemetry",
            "/landport/a/b/telemetry",
        ] {
            assert_eq!(code(t), "unknown_topic", "{t:?}");
        }
    }

    #[test]
    fn bad_ids_are_refused_with_the_reason() {
        let long = "x".repeat(65);
        let cases = [
            (
                "landport//b/telemetry".to_owned(),
                "topic: tenant id \"\" is empty",
            ),
            (
                "landport/a/+/telemetry".to_owned(),
                "topic: device id \"+\" holds an MQTT wildcard (+ or #)",
            ),
            (
                "landport/a#/b/senml".to_owned(),
                "topic: tenant id \"a#\" holds an MQTT wildcard (+ or #)",
            ),
            (
                "landport/a/trück/telemetry".to_owned(),
                "topic: device id \"trück\" holds a non-ASCII character",
            ),
            (
                "landport/a/b c/telemetry".to_owned(),
                "topic: device id \"b c\" holds a character outside A-Z a-z 0-9 . _ -",
            ),
            (
                format!("landport/a/{long}/telemetry"),
                "is longer than 64 characters",
            ),
            ("landport/../b/telemetry".to_owned(), "is . or .."),
        ];
        for (topic, want) in cases {
            let err = parse(&topic).unwrap_err();
            assert_eq!(err.code(), "bad_id", "{topic}");
            assert!(err.to_string().contains(want), "{topic}: {err}");
        }
        assert!(parse(&format!("landport/a/{}/telemetry", "x".repeat(64))).is_ok());
    }

    #[test]
    fn owntracks_ids_are_checked_joined_too() {
        let user = "u".repeat(40);
        let err = parse(&format!("owntracks/{user}/{}", "d".repeat(30))).unwrap_err();
        assert_eq!(err.code(), "bad_id");
        assert_eq!(code("owntracks/ja/ph#one"), "bad_id");
    }

    #[test]
    fn a_bad_tenant_in_the_owntracks_map_is_refused_not_used() {
        let tenants = OwnTracksTenants {
            default_tenant: "no tenant".to_owned(),
            by_user: HashMap::new(),
        };
        let err = TopicKind::parse("owntracks/x/y", &tenants).unwrap_err();
        assert_eq!(err.code(), "bad_id");
    }

    #[test]
    fn output_topics() {
        assert_eq!(
            rejected_topic("acme", "truck-17"),
            "landport/acme/truck-17/rejected"
        );
        assert_eq!(
            events_topic("acme", "truck-17"),
            "landport/acme/truck-17/events"
        );
        let tenants = OwnTracksTenants::default();
        for t in [rejected_topic("a", "b"), events_topic("a", "b")] {
            assert_eq!(TopicKind::parse(&t, &tenants), Ok(TopicKind::Ignored));
        }
    }

    #[test]
    fn device_refs_can_outlive_the_topic() {
        let owned = {
            let topic = String::from("landport/acme/t1/telemetry");
            let tenants = OwnTracksTenants::default();
            let kind = TopicKind::parse(&topic, &tenants).unwrap();
            kind.device().unwrap().clone().into_owned()
        };
        assert_eq!(owned, DeviceRef::new("acme", "t1"));
    }
}
