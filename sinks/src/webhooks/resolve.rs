//! Target safety at connection time: a DNS resolver for reqwest that refuses names resolving
//! to an address a delivery may never reach ([`landport_store::forbidden_ip`]: loopback,
//! private, link-local, multicast, unspecified, cloud metadata; IPv4, IPv6 and IPv4-mapped),
//! so the check holds after DNS, on every new connection (a rebinding name gains nothing). URLs
//! with a literal IP skip DNS: the engine checks those itself before each attempt.

use std::net::SocketAddr;

use landport_store::forbidden_ip;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The resolver of the delivery client.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// `webhooks.allow_private_targets`: resolve anything.
    pub allow_private: bool,
}

/// Why a resolution was refused (in the delivery's `last_error`).
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {ip}, {why}: refused (webhooks.allow_private_targets is off)")]
pub struct ForbiddenTarget {
    host: String,
    ip: std::net::IpAddr,
    why: &'static str,
}

/// Every address of `addrs` must be allowed (one forbidden address refuses the name: a name
/// that mixes them is not a public service's).
pub fn screen(
    host: &str,
    addrs: Vec<SocketAddr>,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, ForbiddenTarget> {
    if !allow_private {
        for a in &addrs {
            if let Some(why) = forbidden_ip(a.ip()) {
                return Err(ForbiddenTarget {
                    host: host.to_owned(),
                    ip: a.ip(),
                    why,
                });
            }
        }
    }
    Ok(addrs)
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok = screen(&host, addrs, allow_private)?;
            Ok(Box::new(ok.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| SocketAddr::new(a.parse().unwrap(), 0))
            .collect()
    }

    #[test]
    fn a_name_with_any_forbidden_address_is_refused_unless_private_targets_are_allowed() {
        assert!(screen("x", addrs(&["93.184.216.34"]), false).is_ok());
        let e = screen("x", addrs(&["93.184.216.34", "10.0.0.1"]), false).unwrap_err();
        assert!(e.to_string().contains("10.0.0.1"), "{e}");
        assert!(screen("x", addrs(&["::ffff:127.0.0.1"]), false).is_err());
        assert!(screen("x", addrs(&["127.0.0.1"]), true).is_ok());
    }

    #[tokio::test]
    async fn localhost_is_refused_after_resolution() {
        let r = GuardedResolver {
            allow_private: false,
        };
        let name: Name = "localhost".parse().unwrap();
        let e = r.resolve(name).await.err().expect("refused");
        assert!(e.to_string().contains("loopback"), "{e}");
        let open = GuardedResolver {
            allow_private: true,
        };
        let found: Vec<_> = open
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!found.is_empty());
    }
}
