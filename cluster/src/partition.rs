//! Which partition a device belongs to: the number NATS itself computes.
//!
//! In cluster mode the operator's NATS config maps (docs/nats/landport-nats.conf)
//!
//! ```text
//! "landport.*.*.telemetry": "lp.{{partition(N,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.telemetry"
//! ```
//!
//! (likewise `senml`), so a reading published to MQTT `landport/{tenant}/{device}/telemetry`
//! (subject `landport.{tenant}.{device}.telemetry`) lands on `lp.{P}.{tenant}.{device}.telemetry`.
//! [`partition`] returns that `P`, so Landport can route a device's reads to the owner of its
//! partition without asking NATS.
//!
//! nats-server computes `partition(N,1,2)` (server/subject_transform.go, `getHashPartition`;
//! `transform` in accounts.go on 2.9) as FNV-1a 32 over the bytes of the selected subject tokens
//! **concatenated with no separator**, modulo `N`: `fnv1a32(tenant ++ device) % N`. So
//! `("ab", "c")` and `("a", "bc")` share a partition (a collision, harmless: partitions only
//! spread load). The tokens are the subject's, not the ids: NATS's MQTT gateway writes a `.` of a
//! topic as `//` in the subject (nats-server 2.10 and later; 2.9 refuses MQTT topics with a `.`),
//! and [`subject_token`] does the same, so an id with a dot hashes as NATS hashes it.
//!
//! Checked against a real nats-server by `cluster/tests/partition_oracle.rs`; the values in the
//! unit tests below were observed on nats-server 2.9.10.

use std::borrow::Cow;

/// FNV-1a 32-bit offset basis.
const FNV_OFFSET: u32 = 0x811c_9dc5;
/// FNV-1a 32-bit prime.
const FNV_PRIME: u32 = 0x0100_0193;

/// The partition (`0..partitions`) NATS's `{{partition(partitions,1,2)}}` gives the subject
/// `landport.{tenant}.{device}.telemetry` (or `.senml`): FNV-1a 32 of the tenant's subject
/// token followed by the device's, modulo `partitions`. `partitions == 0` gives 0, as
/// nats-server does rather than divide by zero.
pub fn partition(tenant: &str, device: &str, partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    let mut hash = FNV_OFFSET;
    for token in [subject_token(tenant), subject_token(device)] {
        for &byte in token.as_bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    hash % partitions
}

/// An id as a NATS subject token, as NATS's MQTT gateway writes MQTT topic levels: each `.`
/// (a subject separator) becomes `//`. Ids without a dot (the usual case) are borrowed.
/// Native NATS publishers use it to build `landport.{tenant}.{device}.telemetry`.
pub fn subject_token(id: &str) -> Cow<'_, str> {
    if id.contains('.') {
        Cow::Owned(id.replace('.', "//"))
    } else {
        Cow::Borrowed(id)
    }
}

/// The id behind a subject token (`//` back to `.`), the inverse of [`subject_token`] for
/// Landport ids (which never contain `/`).
pub fn id_from_token(token: &str) -> Cow<'_, str> {
    if token.contains("//") {
        Cow::Owned(token.replace("//", "."))
    } else {
        Cow::Borrowed(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_acme_truck_1_is_partition_12_of_16() {
        // SPEC section 16 and nats-server 2.9.10: landport/acme/truck-1/telemetry ->
        // lp.12.acme.truck-1.telemetry.
        assert_eq!(partition("acme", "truck-1", 16), 12);
        assert_eq!(partition("acme", "truck-1", 4), 0);
    }

    #[test]
    fn values_observed_on_nats_server_2_9_10() {
        // (tenant, device, partitions, lp.{P} the server published to).
        let observed = [
            ("acme", "truck-1", 16, 12),
            ("-", "7", 4, 1),
            (&"a".repeat(64), &"_".repeat(64), 16, 5),
            ("ac.me", "x_y", 16, 3), // native publish to landport.ac//me.x_y.telemetry
        ];
        for (tenant, device, n, p) in observed {
            assert_eq!(partition(tenant, device, n), p, "{tenant}/{device} of {n}");
        }
    }

    #[test]
    fn fnv1a_reference_vectors() {
        // FNV-1a 32 test vectors (draft-eastlake-fnv): "" -> 0x811c9dc5, "a" -> 0xe40c292c,
        // "foobar" -> 0xbf9cf968; with a modulus above the hash the hash itself comes back.
        assert_eq!(partition("", "", u32::MAX), 0x811c_9dc5);
        assert_eq!(partition("a", "", u32::MAX), 0xe40c_292c);
        assert_eq!(partition("foo", "bar", u32::MAX), 0xbf9c_f968);
    }

    #[test]
    fn tokens_are_concatenated_without_a_separator() {
        for n in [4, 16, 1000, u32::MAX] {
            assert_eq!(partition("ab", "c", n), partition("a", "bc", n));
            assert_eq!(partition("foo", "bar", n), partition("", "foobar", n));
        }
    }

    #[test]
    fn a_dot_hashes_as_the_double_slash_nats_writes() {
        assert_eq!(
            partition("ac.me", "x_y", 16),
            partition("ac//me", "x_y", 16)
        );
        assert_eq!(subject_token("cold.room_2"), "cold//room_2");
        assert!(matches!(subject_token("truck-1"), Cow::Borrowed("truck-1")));
        assert_eq!(id_from_token("cold//room_2"), "cold.room_2");
        assert_eq!(id_from_token(&subject_token("a.b.c")), "a.b.c");
    }

    #[test]
    fn every_partition_is_in_range_and_one_partition_takes_all() {
        for i in 0..1000 {
            let device = format!("truck-{i}");
            for n in [1, 2, 3, 4, 7, 16, 64] {
                assert!(partition("acme", &device, n) < n);
            }
            assert_eq!(partition("acme", &device, 1), 0);
        }
        assert_eq!(partition("acme", "truck-1", 0), 0);
    }

    #[test]
    fn devices_spread_over_the_partitions() {
        let mut counts = [0u32; 16];
        for i in 0..1600 {
            counts[partition("acme", &format!("truck-{i}"), 16) as usize] += 1;
        }
        // 100 expected per partition; a hash that ignored the device would put all in one.
        assert!(
            counts.iter().all(|&c| (50..=150).contains(&c)),
            "{counts:?}"
        );
    }
}
