//! `[tls]`: the server certificate Landport presents on its TLS listeners (MQTT over TLS on
//! `mqtt.tls_listen`, HTTPS with `http.tls = true`).
//!
//! Both are PEM files: `cert` the certificate chain (the server's certificate first, then
//! any intermediates), `key` its private key (PKCS#8, PKCS#1 or SEC1). They are read when the
//! service starts (a missing or unreadable file, or one that holds no certificate or key, stops
//! it with the field named); replacing them takes a restart.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::validate::Problems;

/// The `[tls]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, server certificate first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// The certificate and key files, when both are set.
    pub fn files(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        Some((self.cert.as_deref()?, self.key.as_deref()?))
    }

    pub(crate) fn validate(&self, p: &mut Problems) {
        match (&self.cert, &self.key) {
            (Some(_), None) => p.push("tls.key", "required with tls.cert"),
            (None, Some(_)) => p.push("tls.cert", "required with tls.key"),
            _ => {}
        }
        for (path, field) in [(&self.cert, "tls.cert"), (&self.key, "tls.key")] {
            if let Some(path) = path {
                p.check(
                    path.is_file(),
                    field,
                    format!("{} is not a file", path.display()),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! `[tls]` and the access keys of `[mqtt]` and `[http]` it goes with, through the whole
    //! config's validation.

    use crate::{Config, ConfigError};

    fn problems(toml: &str) -> Vec<String> {
        let c = Config::from_toml_str(toml, Vec::<(String, String)>::new()).unwrap();
        match c.validate() {
            Ok(()) => vec![],
            Err(ConfigError::Invalid(v)) => v.iter().map(|f| f.to_string()).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    fn config(toml: &str) -> Config {
        let c = Config::from_toml_str(toml, Vec::<(String, String)>::new()).unwrap();
        c.validate().unwrap();
        c
    }

    /// A `[tls]` section naming files that exist (validation checks only that: the binary
    /// reads them), and the directory holding them.
    fn tls_files() -> (std::path::PathBuf, String) {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let section = format!("[tls]\ncert = {file:?}\nkey = {file:?}\n");
        (file, section)
    }

    #[test]
    fn anonymous_access_defaults_to_on_for_loopback_listeners_only() {
        let c = config("");
        assert!(c.mqtt.anonymous_allowed());
        assert_eq!(c.mqtt.anonymous_tenant, "default");
        let c = config("[mqtt]\nlisten = \"[::1]:1883\"");
        assert!(c.mqtt.anonymous_allowed());
        let c = config("[mqtt]\nlisten = \"0.0.0.0:1883\"\nallow_anonymous = false");
        assert!(!c.mqtt.anonymous_allowed());
        let c = config("[mqtt]\nlisten = \"0.0.0.0:1883\"\nallow_anonymous = true");
        assert!(c.mqtt.anonymous_allowed());
        let c = config("[mqtt]\nallow_anonymous = false");
        assert!(!c.mqtt.anonymous_allowed());
    }

    #[test]
    fn an_exposed_listener_needs_allow_anonymous_set_explicitly() {
        let got = problems("[mqtt]\nlisten = \"0.0.0.0:1883\"");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("mqtt.allow_anonymous: must be set explicitly"),
            "{got:?}"
        );
        assert!(got[0].contains("0.0.0.0:1883"), "{got:?}");
        // A TLS listener others can reach counts too.
        let (_dir, tls) = tls_files();
        let got = problems(&format!("{tls}[mqtt]\ntls_listen = \"0.0.0.0:8883\""));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("mqtt.allow_anonymous") && got[0].contains("0.0.0.0:8883"));
        // With an external broker the endpoint does not run: nothing to refuse.
        assert_eq!(
            problems(
                "[mqtt]\nembedded = false\nurl = \"mqtt://b:1883\"\nlisten = \"0.0.0.0:1883\""
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_anonymous_tenant_is_a_valid_id() {
        let got = problems("[mqtt]\nanonymous_tenant = \"a/b\"");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("mqtt.anonymous_tenant: tenant id \"a/b\""),
            "{got:?}"
        );
        assert_eq!(
            config("[mqtt]\nanonymous_tenant = \"demo\"")
                .mqtt
                .anonymous_tenant,
            "demo"
        );
    }

    #[test]
    fn tls_listeners_need_the_certificate() {
        for (toml, field) in [
            (
                "[mqtt]\ntls_listen = \"127.0.0.1:8883\"",
                "mqtt.tls_listen: needs [tls]",
            ),
            ("[http]\ntls = true", "http.tls: needs [tls]"),
            (
                "[tls]\ncert = \"/nonexistent/cert.pem\"",
                "tls.key: required with tls.cert",
            ),
            (
                "[tls]\nkey = \"/nonexistent/key.pem\"",
                "tls.cert: required with tls.key",
            ),
        ] {
            let got = problems(toml);
            assert!(got.iter().any(|p| p.starts_with(field)), "{toml}: {got:?}");
        }
        let got =
            problems("[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"");
        assert!(
            got.iter()
                .any(|p| p == "tls.cert: /nonexistent/cert.pem is not a file"),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|p| p == "tls.key: /nonexistent/key.pem is not a file"),
            "{got:?}"
        );
        let (_dir, tls) = tls_files();
        let c = config(&format!(
            "{tls}[http]\ntls = true\n[mqtt]\ntls_listen = \"127.0.0.1:8883\""
        ));
        assert!(c.http.tls);
        assert_eq!(c.mqtt.tls_listen, Some("127.0.0.1:8883".parse().unwrap()));
        assert!(c.tls.files().is_some());
        let got = problems(&format!("{tls}[mqtt]\ntls_listen = \"127.0.0.1:1883\""));
        assert!(
            got.iter()
                .any(|p| p.starts_with("mqtt.tls_listen: must differ")),
            "{got:?}"
        );
    }

    #[test]
    fn the_summary_tells_the_listeners_and_who_may_connect() {
        let s = config("").summary();
        assert!(
            s.contains("http 127.0.0.1:8080; mqtt endpoint on 127.0.0.1:1883, anonymous clients as tenant default"),
            "{s}"
        );
        let (_, tls) = tls_files();
        let s = config(&format!(
            "{tls}[http]\ntls = true\n[mqtt]\ntls_listen = \"0.0.0.0:8883\"\nallow_anonymous = false"
        ))
        .summary();
        assert!(
            s.contains("https 127.0.0.1:8080; mqtt endpoint on 127.0.0.1:1883 and 0.0.0.0:8883 (TLS), credentials required"),
            "{s}"
        );
    }

    #[test]
    fn ca_file_goes_with_an_external_mqtts_broker() {
        let (ca, _) = tls_files();
        let c = config(&format!(
            "[mqtt]\nembedded = false\nurl = \"mqtts://broker.internal\"\nca_file = {ca:?}"
        ));
        let broker = c.mqtt.broker().unwrap();
        assert!(broker.tls);
        assert_eq!(broker.port, 8883);
        let got = problems(&format!(
            "[mqtt]\nembedded = false\nurl = \"mqtt://broker.internal\"\nca_file = {ca:?}"
        ));
        assert!(
            got.iter()
                .any(|p| p.starts_with("mqtt.ca_file: is only used")),
            "{got:?}"
        );
        let got = problems(
            "[mqtt]\nembedded = false\nurl = \"mqtts://b\"\nca_file = \"/nonexistent/ca.pem\"",
        );
        assert_eq!(
            got,
            vec!["mqtt.ca_file: /nonexistent/ca.pem is not a file".to_owned()]
        );
    }
}
