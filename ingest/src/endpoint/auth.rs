//! Who an MQTT client is, and what it may touch (SPEC section 12).
//!
//! The endpoint asks an [`Authenticator`] once per CONNECT; the answer, a [`Principal`], then
//! decides every PUBLISH and SUBSCRIBE through [`may_publish`] and [`may_subscribe`] (or
//! [`Acl`]'s methods, which also know the OwnTracks user-to-tenant map). This
//! crate does not read the store: the binary implements [`Authenticator`] over the store's
//! device credentials and tenant keys.

/// Who a connected client acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials, accepted because `mqtt.allow_anonymous` is on: acts as the tenant
    /// `mqtt.anonymous_tenant` with a tenant's rights.
    Anonymous { tenant: String },
    /// Username `{tenant}`, password one of the tenant's API keys: anything under
    /// `landport/{tenant}/`.
    Tenant { tenant: String },
    /// Username `{tenant}/{device}`, password the device's credential: its own topics only.
    Device { tenant: String, device: String },
}

impl Principal {
    /// The tenant it acts for.
    pub fn tenant(&self) -> &str {
        match self {
            Principal::Anonymous { tenant }
            | Principal::Tenant { tenant }
            | Principal::Device { tenant, .. } => tenant,
        }
    }
}

/// Why a CONNECT is refused; maps to the CONNACK return/reason code of each protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown username, wrong or revoked password (3.1.1: 0x04, 5: 0x86).
    BadCredentials,
    /// No credentials and anonymous access is off (3.1.1: 0x05, 5: 0x87).
    NotAuthorized,
    /// The credentials could not be checked now (store busy or failing) (3.1.1: 0x03,
    /// 5: 0x88): the client should retry later.
    Unavailable,
}

/// Decides who a connecting client is. Called once per CONNECT, off the pipeline's task; may
/// block briefly (an indexed store lookup), so the endpoint calls it from a blocking-capable
/// context.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<Principal, AuthError>;
}

/// Where revoked credentials are announced (the credentials API sends, the endpoint
/// listens): the endpoint disconnects live sessions authenticated as a revoked principal.
pub type Revocations = tokio::sync::broadcast::Sender<Principal>;

// The ACL (SPEC section 12). One rule decides both directions: a principal may subscribe to a
// filter only when EVERY topic the filter can match is one it may read, so a wildcard never
// widens what a principal sees. Ids come from the store and the config, where they are checked,
// but a principal holding an id that is not one MQTT level (empty, `/`, `+`, `#`, ...) is
// refused everything rather than trusted to land in the right place.
//
// | principal | publish | subscribe (every topic the filter matches must be) |
// | --- | --- | --- |
// | `Device { t, d }` | `landport/t/d/telemetry`, `landport/t/d/senml` | `landport/t/d/events`, `landport/t/d/rejected` |
// | `Tenant { t }`, `Anonymous { t }` | `landport/t` and anything under `landport/t/` | the same |
// | the same, with [`Acl::new`] | also `owntracks/u` and under it, for each user `u` whose tenant is `t` | the same |
//
// Consequences, decided strictly (a filter is judged by what it can match, not by what exists
// today):
// - A device subscribes to its two topics literally: `landport/t/d/+` could match
//   `landport/t/d/telemetry` (or any other level), `landport/t/d/#` matches `landport/t/d`.
// - `#`, `+` at the first level, and `+` or `#` at the tenant level (`landport/+/...`,
//   `landport/#`) are refused for everyone.
// - `landport/t/#` is a tenant's (it also matches `landport/t` itself, which is the tenant's).
// - `owntracks/+/...` is a tenant's only when every OwnTracks user maps to it: the tenant is
//   the default tenant and no user is mapped elsewhere (a `+` can match any user name).
// - `$SYS/...`, `$share/...` (shared subscriptions) and every other topic are refused.
// - A publish topic holding a wildcard, and a malformed filter (`a/b#`, `#/a`, `a+`, empty),
//   are refused.

use crate::topic::OwnTracksTenants;

/// Whether `principal` may publish to the topic `topic` (no wildcards in a publish topic), on
/// Landport's own topics: `owntracks/...` is refused here (it needs the user-to-tenant map:
/// use [`Acl::new`] to allow it).
pub fn may_publish(principal: &Principal, topic: &str) -> bool {
    Acl::landport_only().may_publish(principal, topic)
}

/// Whether `principal` may subscribe to the topic filter `filter` (wildcards allowed), on
/// Landport's own topics: `owntracks/...` is refused here (use [`Acl::new`] to allow it).
pub fn may_subscribe(principal: &Principal, filter: &str) -> bool {
    Acl::landport_only().may_subscribe(principal, filter)
}

/// The ACL with OwnTracks topics: a tenant (or anonymous client acting as one) may also
/// publish and subscribe under `owntracks/{user}/` for the users the OwnTracks map gives to it
/// (`ingest.owntracks_tenants`, `ingest.owntracks_default_tenant`). Devices never may: a
/// device credential names a Landport device, not an OwnTracks user.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    /// Which tenant an OwnTracks user's topics belong to; `None`: OwnTracks topics are
    /// nobody's.
    owntracks: Option<OwnTracksTenants>,
}

impl Acl {
    /// The ACL over Landport's topics and the OwnTracks topics of each tenant's users.
    pub fn new(owntracks: OwnTracksTenants) -> Self {
        Acl {
            owntracks: Some(owntracks),
        }
    }

    /// The ACL over Landport's topics only (`owntracks/...` refused to everyone).
    pub fn landport_only() -> Self {
        Acl { owntracks: None }
    }

    /// Whether `principal` may publish to `topic`.
    pub fn may_publish(&self, principal: &Principal, topic: &str) -> bool {
        if !principal_is_well_formed(principal) || !is_topic_name(topic) {
            return false;
        }
        match principal {
            Principal::Device { tenant, device } => {
                let mut levels = topic.split('/');
                levels.next() == Some("landport")
                    && levels.next() == Some(tenant.as_str())
                    && levels.next() == Some(device.as_str())
                    && matches!(levels.next(), Some("telemetry" | "senml"))
                    && levels.next().is_none()
            }
            Principal::Tenant { tenant } | Principal::Anonymous { tenant } => {
                // A topic name is a filter without wildcards: it matches itself only.
                self.tenant_covers(tenant, topic)
            }
        }
    }

    /// Whether `principal` may subscribe to `filter`: every topic `filter` can match must be
    /// one `principal` may read.
    pub fn may_subscribe(&self, principal: &Principal, filter: &str) -> bool {
        if !principal_is_well_formed(principal) || !is_topic_filter(filter) {
            return false;
        }
        match principal {
            Principal::Device { tenant, device } => {
                // Any wildcard can match a topic that is not one of the two (see above), so
                // only the literal topics pass.
                let mut levels = filter.split('/');
                levels.next() == Some("landport")
                    && levels.next() == Some(tenant.as_str())
                    && levels.next() == Some(device.as_str())
                    && matches!(levels.next(), Some("events" | "rejected"))
                    && levels.next().is_none()
            }
            Principal::Tenant { tenant } | Principal::Anonymous { tenant } => {
                self.tenant_covers(tenant, filter)
            }
        }
    }

    /// Whether every topic the (well-formed) filter `filter` matches is `tenant`'s: under
    /// `landport/{tenant}` or, with the OwnTracks map, under `owntracks/{user}` of one of the
    /// tenant's users. Only the first two levels decide; anything after them is the tenant's.
    fn tenant_covers(&self, tenant: &str, filter: &str) -> bool {
        let mut levels = filter.split('/');
        let (Some(root), Some(owner)) = (levels.next(), levels.next()) else {
            // One level: `landport`, `owntracks`, `+`, `#`, ...: never a tenant's.
            return false;
        };
        match root {
            "landport" => owner == tenant,
            "owntracks" => {
                let Some(owntracks) = &self.owntracks else {
                    return false;
                };
                match owner {
                    // `owntracks/#` also matches `owntracks` itself.
                    "#" => false,
                    "+" => {
                        owntracks.default_tenant == tenant
                            && owntracks.by_user.values().all(|t| t == tenant)
                    }
                    user => owntracks.tenant_for(user) == tenant,
                }
            }
            // A wildcard here matches roots that are not Landport's; literal roots other
            // than the two (`$SYS`, `$share`, ...) are nobody's.
            _ => false,
        }
    }
}

/// Whether every id in `principal` is a valid single topic level (the id rule of
/// [`landport_tracker::check_id`]).
fn principal_is_well_formed(principal: &Principal) -> bool {
    let tenant_ok = landport_tracker::check_id(principal.tenant()).is_ok();
    match principal {
        Principal::Device { device, .. } => tenant_ok && landport_tracker::check_id(device).is_ok(),
        _ => tenant_ok,
    }
}

/// A topic name as MQTT allows one in a PUBLISH: not empty, no wildcard characters, no NUL.
fn is_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// A topic filter as MQTT allows one in a SUBSCRIBE: not empty, no NUL, `+` only as a whole
/// level, `#` only as the whole last level.
fn is_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "+" => true,
        "#" => i == last,
        _ => !level.contains(['+', '#']),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn device(tenant: &str, device: &str) -> Principal {
        Principal::Device {
            tenant: tenant.to_owned(),
            device: device.to_owned(),
        }
    }

    fn tenant(tenant: &str) -> Principal {
        Principal::Tenant {
            tenant: tenant.to_owned(),
        }
    }

    fn anonymous(tenant: &str) -> Principal {
        Principal::Anonymous {
            tenant: tenant.to_owned(),
        }
    }

    /// alice -> acme, bob -> globex, everyone else -> default.
    fn owntracks() -> OwnTracksTenants {
        OwnTracksTenants {
            default_tenant: "default".to_owned(),
            by_user: HashMap::from([
                ("alice".to_owned(), "acme".to_owned()),
                ("bob".to_owned(), "globex".to_owned()),
            ]),
        }
    }

    #[test]
    fn a_device_publishes_telemetry_and_senml_on_its_own_topics_only() {
        let truck = device("acme", "truck-1");
        assert!(may_publish(&truck, "landport/acme/truck-1/telemetry"));
        assert!(may_publish(&truck, "landport/acme/truck-1/senml"));
        for topic in [
            "landport/acme/truck-1/events",
            "landport/acme/truck-1/rejected",
            "landport/acme/truck-1/other",
            "landport/acme/truck-1",
            "landport/acme/truck-1/telemetry/x",
            "landport/acme/truck-1/telemetry/",
            "landport/acme/truck-2/telemetry",
            "landport/globex/truck-1/telemetry",
            "landport/acme//telemetry",
            "landport/acme/truck-1/+",
            "landport/acme/+/telemetry",
            "owntracks/truck-1/phone",
            "$SYS/broker/load",
            "Landport/acme/truck-1/telemetry",
            "/landport/acme/truck-1/telemetry",
            "",
        ] {
            assert!(!may_publish(&truck, topic), "{topic}");
            assert!(!Acl::new(owntracks()).may_publish(&truck, topic), "{topic}");
        }
    }

    #[test]
    fn a_device_subscribes_to_its_own_events_and_rejections_literally() {
        let truck = device("acme", "truck-1");
        assert!(may_subscribe(&truck, "landport/acme/truck-1/events"));
        assert!(may_subscribe(&truck, "landport/acme/truck-1/rejected"));
        for filter in [
            // `+` can match telemetry (or anything): strictly refused.
            "landport/acme/truck-1/+",
            // `#` also matches landport/acme/truck-1 itself.
            "landport/acme/truck-1/#",
            "landport/acme/truck-1/events/#",
            "landport/acme/truck-1/telemetry",
            "landport/acme/truck-1/senml",
            "landport/acme/+/events",
            "landport/+/truck-1/events",
            "landport/acme/#",
            "landport/#",
            "+/acme/truck-1/events",
            "#",
            "landport/acme/truck-2/events",
            "landport/globex/truck-1/events",
            "$share/g/landport/acme/truck-1/events",
        ] {
            assert!(!may_subscribe(&truck, filter), "{filter}");
        }
    }

    #[test]
    fn a_tenant_key_reaches_anything_under_its_tenant_and_nothing_else() {
        for who in [tenant("acme"), anonymous("acme")] {
            for topic in [
                "landport/acme/truck-1/telemetry",
                "landport/acme/truck-1/senml",
                "landport/acme/truck-1/events",
                "landport/acme/anything/at/all",
                "landport/acme",
                "landport/acme/",
            ] {
                assert!(may_publish(&who, topic), "{who:?} {topic}");
                assert!(may_subscribe(&who, topic), "{who:?} {topic}");
            }
            for filter in [
                "landport/acme/#",
                "landport/acme/+",
                "landport/acme/+/events",
                "landport/acme/+/+",
                "landport/acme/truck-1/#",
                "landport/acme/+/#",
            ] {
                assert!(may_subscribe(&who, filter), "{who:?} {filter}");
            }
            for topic in [
                "landport/globex/truck-1/telemetry",
                "landport/acme-2/truck-1/telemetry",
                "landport",
                "landport/",
                "owntracks/alice/phone",
                "$SYS/broker/uptime",
                "acme/truck-1/telemetry",
                "",
            ] {
                assert!(!may_publish(&who, topic), "{who:?} {topic}");
                assert!(!may_subscribe(&who, topic), "{who:?} {topic}");
            }
            for filter in [
                "#",
                "+",
                "+/#",
                "landport/#",
                "landport/+",
                "landport/+/#",
                "landport/+/truck-1/telemetry",
                "+/acme/#",
                "$SYS/#",
                "$share/group/landport/acme/#",
                "landport/acme/#/events",
                "landport/acme/truck+",
                "landport/acme/tr#",
            ] {
                assert!(!may_subscribe(&who, filter), "{who:?} {filter}");
            }
        }
    }

    #[test]
    fn owntracks_topics_belong_to_the_tenant_of_their_user_with_the_map() {
        let acl = Acl::new(owntracks());
        let acme = tenant("acme");
        let public = anonymous("default");
        assert!(acl.may_publish(&acme, "owntracks/alice/phone"));
        assert!(acl.may_publish(&acme, "owntracks/alice/phone/event"));
        assert!(acl.may_subscribe(&acme, "owntracks/alice/#"));
        assert!(acl.may_subscribe(&acme, "owntracks/alice/+"));
        assert!(!acl.may_publish(&acme, "owntracks/bob/phone"));
        assert!(!acl.may_publish(&acme, "owntracks/carol/phone"));
        assert!(!acl.may_subscribe(&acme, "owntracks/+/phone"));
        assert!(!acl.may_subscribe(&acme, "owntracks/#"));
        // Users nobody mapped are the default tenant's, the anonymous demo's.
        assert!(acl.may_publish(&public, "owntracks/carol/phone"));
        assert!(!acl.may_publish(&public, "owntracks/alice/phone"));
        // `+` could be alice or bob: not all the default tenant's.
        assert!(!acl.may_subscribe(&public, "owntracks/+/#"));
        // Landport's own topics are unchanged by the map.
        assert!(acl.may_publish(&acme, "landport/acme/truck-1/telemetry"));
        assert!(!acl.may_publish(&acme, "landport/globex/truck-1/telemetry"));
    }

    #[test]
    fn owntracks_plus_is_a_tenants_when_every_user_is_its() {
        let everyone_default = Acl::new(OwnTracksTenants::default());
        assert!(everyone_default.may_subscribe(&anonymous("default"), "owntracks/+/#"));
        assert!(everyone_default.may_subscribe(&anonymous("default"), "owntracks/+/+"));
        assert!(!everyone_default.may_subscribe(&anonymous("default"), "owntracks/#"));
        assert!(!everyone_default.may_subscribe(&tenant("acme"), "owntracks/+/#"));
    }

    #[test]
    fn without_the_map_owntracks_topics_are_nobodys() {
        assert!(!may_publish(&anonymous("default"), "owntracks/carol/phone"));
        assert!(!may_subscribe(&anonymous("default"), "owntracks/carol/#"));
        assert!(!Acl::landport_only().may_publish(&tenant("default"), "owntracks/x/y"));
    }

    #[test]
    fn a_principal_whose_ids_are_not_single_levels_may_do_nothing() {
        for who in [
            tenant("acme/truck-1"),
            tenant("+"),
            tenant("#"),
            tenant(""),
            anonymous("a/b"),
            device("acme", "truck-1/telemetry"),
            device("acme", ""),
            device("+", "truck-1"),
        ] {
            assert!(
                !may_publish(&who, "landport/acme/truck-1/telemetry"),
                "{who:?}"
            );
            assert!(
                !may_subscribe(&who, "landport/acme/truck-1/events"),
                "{who:?}"
            );
            assert!(!may_subscribe(&who, "landport/+/#"), "{who:?}");
            assert!(
                !may_publish(&who, "landport/+/truck-1/telemetry"),
                "{who:?}"
            );
        }
    }

    #[test]
    fn malformed_filters_are_refused() {
        let acme = tenant("acme");
        for filter in [
            "",
            "landport/acme/#/x",
            "landport/acme/a#",
            "landport/acme/a+",
            "landport/acme/+a",
            "landport/acme/\0",
        ] {
            assert!(!may_subscribe(&acme, filter), "{filter:?}");
        }
        assert!(!may_publish(&acme, "landport/acme/\0"));
    }

    // --- The oracle: enumerate the topics a filter can match over a small alphabet. ---------
    //
    // The alphabet holds every id and keyword the principals, the map and the rules name, the
    // empty level, a `$` level, and `x`, which none of them name: `x` stands for "any other
    // level", so a wildcard that may match something outside the allowed set is caught. `#`
    // is expanded to 0, 1 or 2 further levels: the allowed sets are decided by at most four
    // levels, so one level past the filter (and one more) shows anything a longer one could.

    const ALPHABET: [&str; 16] = [
        "landport",
        "owntracks",
        "acme",
        "globex",
        "default",
        "truck",
        "van",
        "alice",
        "bob",
        "events",
        "rejected",
        "telemetry",
        "senml",
        "x",
        "",
        "$SYS",
    ];

    /// What the SPEC says a principal may read, one concrete topic at a time (written apart
    /// from the implementation, which judges filters).
    fn oracle_readable(who: &Principal, map: Option<&OwnTracksTenants>, topic: &[&str]) -> bool {
        match who {
            Principal::Device { tenant, device } => {
                topic.len() == 4
                    && topic[0] == "landport"
                    && topic[1] == tenant
                    && topic[2] == device
                    && (topic[3] == "events" || topic[3] == "rejected")
            }
            Principal::Tenant { tenant } | Principal::Anonymous { tenant } => {
                (topic.len() >= 2 && topic[0] == "landport" && topic[1] == tenant)
                    || map.is_some_and(|m| {
                        topic.len() >= 2
                            && topic[0] == "owntracks"
                            && m.tenant_for(topic[1]) == tenant
                    })
            }
        }
    }

    /// MQTT's matching (3.1.1 section 4.7), including "a filter starting with a wildcard
    /// does not match a topic starting with `$`" and "`a/#` matches `a`".
    fn oracle_matches(filter: &[&str], topic: &[&str]) -> bool {
        if topic.first().is_some_and(|l| l.starts_with('$'))
            && matches!(filter.first(), Some(&"+" | &"#"))
        {
            return false;
        }
        fn go(f: &[&str], t: &[&str]) -> bool {
            match (f.first(), t.first()) {
                (Some(&"#"), _) => true,
                (Some(&"+"), Some(_)) => go(&f[1..], &t[1..]),
                (Some(a), Some(b)) if a == b => go(&f[1..], &t[1..]),
                (None, None) => true,
                _ => false,
            }
        }
        go(filter, topic)
    }

    /// Every topic over the alphabet that `filter` could match (a superset, then checked with
    /// [`oracle_matches`]).
    fn oracle_candidates(filter: &[&str]) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = vec![vec![]];
        for level in filter {
            let mut next = Vec::new();
            for prefix in &out {
                match *level {
                    "+" => {
                        for a in ALPHABET {
                            let mut t = prefix.clone();
                            t.push(a.to_owned());
                            next.push(t);
                        }
                    }
                    "#" => {
                        next.push(prefix.clone());
                        for a in ALPHABET {
                            let mut t = prefix.clone();
                            t.push(a.to_owned());
                            next.push(t.clone());
                            for b in ALPHABET {
                                let mut t2 = t.clone();
                                t2.push(b.to_owned());
                                next.push(t2);
                            }
                        }
                    }
                    literal => {
                        let mut t = prefix.clone();
                        t.push(literal.to_owned());
                        next.push(t);
                    }
                }
            }
            out = next;
        }
        out
    }

    fn oracle_may_subscribe(
        who: &Principal,
        map: Option<&OwnTracksTenants>,
        filter: &[&str],
    ) -> bool {
        let valid = filter
            .iter()
            .enumerate()
            .all(|(i, l)| *l != "#" || i == filter.len() - 1);
        valid
            && oracle_candidates(filter).iter().all(|t| {
                let t: Vec<&str> = t.iter().map(String::as_str).collect();
                !oracle_matches(filter, &t) || oracle_readable(who, map, &t)
            })
    }

    fn principal() -> impl Strategy<Value = Principal> {
        let tenant = prop::sample::select(vec!["acme", "globex", "default"]);
        let dev = prop::sample::select(vec!["truck", "van"]);
        prop_oneof![
            (tenant.clone(), dev).prop_map(|(t, d)| device(t, d)),
            tenant.clone().prop_map(self::tenant),
            tenant.prop_map(anonymous),
        ]
    }

    fn map() -> impl Strategy<Value = Option<OwnTracksTenants>> {
        let tenant = || prop::sample::select(vec!["acme", "globex", "default"]);
        prop::option::of((
            tenant(),
            prop::option::of(tenant()),
            prop::option::of(tenant()),
        ))
        .prop_map(|m| {
            m.map(|(default, alice, bob)| OwnTracksTenants {
                default_tenant: default.to_owned(),
                by_user: [("alice", alice), ("bob", bob)]
                    .into_iter()
                    .filter_map(|(u, t)| Some((u.to_owned(), t?.to_owned())))
                    .collect(),
            })
        })
    }

    /// Filters of 1 to 5 levels from the alphabet and the wildcards, at most two `+` (to
    /// keep the enumeration small); `#` anywhere, so malformed ones come up too.
    fn filter() -> impl Strategy<Value = Vec<&'static str>> {
        let level = prop_oneof![
            6 => prop::sample::select(ALPHABET.to_vec()),
            2 => Just("+"),
            1 => Just("#"),
        ];
        prop::collection::vec(level, 1..=5).prop_filter("at most two +", |f| {
            f.iter().filter(|l| **l == "+").count() <= 2
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn subscribe_allows_exactly_the_filters_whose_every_match_is_readable(
            who in principal(),
            map in map(),
            filter in filter(),
        ) {
            let acl = map.clone().map_or_else(Acl::landport_only, Acl::new);
            let joined = filter.join("/");
            prop_assert_eq!(
                acl.may_subscribe(&who, &joined),
                oracle_may_subscribe(&who, map.as_ref(), &filter),
                "{:?} {:?} {:?}", who, map, joined
            );
        }

        #[test]
        fn publish_allows_exactly_the_writable_topics(
            who in principal(),
            map in map(),
            topic in prop::collection::vec(prop::sample::select(ALPHABET.to_vec()), 1..=5),
        ) {
            let acl = map.clone().map_or_else(Acl::landport_only, Acl::new);
            let writable = match &who {
                Principal::Device { tenant, device } => {
                    topic.len() == 4
                        && topic[0] == "landport"
                        && topic[1] == tenant
                        && topic[2] == device
                        && (topic[3] == "telemetry" || topic[3] == "senml")
                }
                _ => oracle_readable(&who, map.as_ref(), &topic),
            };
            prop_assert_eq!(acl.may_publish(&who, &topic.join("/")), writable);
        }
    }
}
