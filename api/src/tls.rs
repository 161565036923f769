//! TLS for Landport's listeners and its MQTT client (SPEC 12): the server configuration made
//! from `[tls]`'s PEM files, used for HTTPS here ([`crate::serve_with_tls`]) and by the binary
//! for MQTT over TLS; and the client configuration of `mqtts://` connections to an external
//! broker ([`client_config`], with `mqtt.ca_file`). One place for rustls's set-up.
//!
//! rustls with the ring provider (the one reqwest already brings in): no OpenSSL, no aws-lc.
//! TLS 1.2 and 1.3, rustls's default cipher suites; no client certificates.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use tokio_rustls::TlsAcceptor;

/// Why the certificate or key could not be used. `Display` names the config field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("tls.cert: cannot read {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("tls.key: cannot read {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("tls.cert / tls.key: {0}")]
    Mismatch(String),
    #[error("mqtt.ca_file: cannot use {path}: {reason}")]
    CaFile { path: String, reason: String },
}

/// A rustls server configuration presenting the chain in `cert` with the private key in `key`
/// (PEM files: certificates server first, then intermediates; a PKCS#8, PKCS#1 or SEC1 key).
/// HTTP/1.1 is offered by ALPN when `alpn_http` (HTTPS); MQTT clients do not use ALPN.
pub fn server_config(
    cert: &Path,
    key: &Path,
    alpn_http: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.display().to_string(),
            reason: "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".to_owned(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC) in it".to_owned()
            }
            e => e.to_string(),
        },
    })?;
    let provider = Arc::new(ring_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Mismatch(format!("the key does not fit the certificate: {e}")))?;
    if alpn_http {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(Arc::new(config))
}

/// rustls's ring provider. rustls 0.23.48 marks it deprecated because ring has no
/// post-quantum key exchange (X25519MLKEM768, which only its aws-lc-rs provider offers);
/// Landport stays on ring, the provider reqwest's rustls in this workspace already uses, so
/// that one crypto library is built (aws-lc-rs would add a second, and a cmake build):
/// classical X25519 / P-256 key exchange.
#[allow(deprecated)]
pub fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// An acceptor for [`server_config`].
pub fn acceptor(cert: &Path, key: &Path, alpn_http: bool) -> Result<TlsAcceptor, TlsError> {
    Ok(TlsAcceptor::from(server_config(cert, key, alpn_http)?))
}

/// The rustls client configuration of an `mqtts://` broker connection: the server's
/// certificate must chain to a CA in `ca_file` (PEM, one or more certificates) when given, else
/// to one of the public CAs of the webpki-roots bundle (as reqwest's). The host name is
/// checked against the certificate as usual.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let fail = |reason: String| TlsError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| fail(e.to_string()))?;
            if certs.is_empty() {
                return Err(fail(
                    "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".to_owned(),
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| fail(format!("not a CA certificate rustls can use: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_generated_certificate_and_key_make_a_server_config() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = write(dir.path(), "cert.pem", &ck.cert.pem());
        let key = write(dir.path(), "key.pem", &ck.signing_key.serialize_pem());
        let config = server_config(&cert, &key, true).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(
            server_config(&cert, &key, false)
                .unwrap()
                .alpn_protocols
                .is_empty()
        );
    }

    #[test]
    fn the_client_trusts_the_ca_file_or_the_public_roots() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let ca = write(dir.path(), "ca.pem", &ck.cert.pem());
        assert!(client_config(Some(&ca)).is_ok());
        assert!(client_config(None).is_ok());
        let junk = write(dir.path(), "junk.pem", "nothing\n");
        let e = client_config(Some(&junk)).unwrap_err().to_string();
        assert!(
            e.starts_with("mqtt.ca_file: ") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = client_config(Some(&dir.path().join("missing.pem")))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("mqtt.ca_file: cannot use"), "{e}");
    }

    #[test]
    fn bad_files_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = write(dir.path(), "cert.pem", &ck.cert.pem());
        let key = write(dir.path(), "key.pem", &ck.signing_key.serialize_pem());
        let other_key = write(dir.path(), "other.pem", &other.signing_key.serialize_pem());
        let junk = write(dir.path(), "junk.pem", "not pem at all\n");
        let missing = dir.path().join("missing.pem");

        let e = server_config(&missing, &key, false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tls.cert: cannot read"), "{e}");
        let e = server_config(&junk, &key, false).unwrap_err().to_string();
        assert!(
            e.starts_with("tls.cert: ") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = server_config(&cert, &junk, false).unwrap_err().to_string();
        assert!(
            e.starts_with("tls.key: ") && e.contains("no PEM private key"),
            "{e}"
        );
        let e = server_config(&cert, &missing, false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tls.key: cannot read"), "{e}");
        // The key as the certificate, and a key that is not the certificate's.
        let e = server_config(&key, &key, false).unwrap_err().to_string();
        assert!(e.starts_with("tls.cert: "), "{e}");
        let e = server_config(&cert, &other_key, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("tls.cert / tls.key: the key does not fit"),
            "{e}"
        );
    }
}
