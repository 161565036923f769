//! Standard Webhooks 1.0 signatures: `webhook-signature` = `v1,` + base64 of
//! HMAC-SHA256(key, `"{webhook-id}.{webhook-timestamp}.{body}"`), where key is the
//! base64-decoded part of the secret after `whsec_`. Pure.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of a webhook secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The signing key of a secret (`whsec_` + base64); `None` when it is not one.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix(SECRET_PREFIX)?;
    STANDARD.decode(b64).ok().filter(|k| !k.is_empty())
}

/// One signature, `v1,<base64>`, of `body` sent as message `id` at `timestamp` (unix seconds).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per valid secret, space separated (two
/// during a rotation). Secrets that do not decode are skipped.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .filter_map(key_of)
        .map(|key| sign(&key, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks specification (and of its reference
    /// libraries' tests).
    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn during_a_rotation_both_secrets_sign_and_bad_secrets_are_skipped() {
        let a = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let b = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX";
        let h = signature_header([a, b, "nonsense", "whsec_***"], "evt_1", 5, b"{}");
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(&key_of(a).unwrap(), "evt_1", 5, b"{}"));
        assert_ne!(parts[0], parts[1]);
        // Any change to id, time or body changes the signature.
        let k = key_of(a).unwrap();
        assert_ne!(sign(&k, "evt_1", 6, b"{}"), parts[0]);
        assert_ne!(sign(&k, "evt_2", 5, b"{}"), parts[0]);
        assert_ne!(sign(&k, "evt_1", 5, b"{ }"), parts[0]);
    }
}
