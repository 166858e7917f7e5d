//! Where a SIP URI leads: transport and addresses, per RFC 3263 §4 (without NAPTR).
//!
//! - Transport: `;transport=`, else TLS for `sips:`, else UDP when the host is an IP
//!   address or a port is given; else whichever SRV records exist, tried in the order
//!   `_sip._udp`, `_sip._tcp`, `_sips._tcp`.
//! - Addresses: an IP literal as it is; a name with a port by A/AAAA; a name without
//!   a port by SRV (priority, then weight as RFC 2782 says), then A/AAAA of each target;
//!   with no SRV records, A/AAAA of the name on the transport's default port.
//!
//! TLS targets keep the URI's domain as the name to verify (RFC 5922).

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use super::transport::Target;
use super::typed::Transport;
use super::uri::{Host, Scheme, SipUri};

/// Why a URI could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The `transport` parameter names a transport callflow does not have.
    #[error("unsupported transport '{0}'")]
    Transport(String),
    /// The name does not resolve.
    #[error("cannot resolve '{0}': {1}")]
    Lookup(String, String),
}

/// The transport a URI asks for explicitly, if any.
pub fn explicit_transport(uri: &SipUri) -> Result<Option<Transport>, ResolveError> {
    match uri.transport() {
        Some(t) => match Transport::parse(t) {
            Some(Transport::Tcp) if uri.scheme == Scheme::Sips => Ok(Some(Transport::Tls)),
            Some(t) => Ok(Some(t)),
            None => Err(ResolveError::Transport(t.to_ascii_lowercase())),
        },
        None if uri.scheme == Scheme::Sips => Ok(Some(Transport::Tls)),
        None => Ok(None),
    }
}

/// The SRV service name for a transport.
fn srv_prefix(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "_sip._udp",
        Transport::Tcp => "_sip._tcp",
        Transport::Tls => "_sips._tcp",
    }
}

/// A DNS resolver for SIP targets.
pub struct Resolver {
    dns: Option<TokioResolver>,
}

impl Resolver {
    /// The system's resolver (/etc/resolv.conf); names in /etc/hosts resolve too.
    pub fn system() -> Resolver {
        let dns = TokioResolver::builder_tokio()
            .ok()
            .map(|b| b.build())
            .and_then(Result::ok);
        Resolver { dns }
    }

    /// A resolver that asks these name servers (UDP, then TCP).
    pub fn with_nameservers(servers: &[SocketAddr]) -> Resolver {
        let configs = servers
            .iter()
            .map(|s| {
                let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
                udp.port = s.port();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        let config = ResolverConfig::from_name_servers(configs);
        let dns = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .build()
            .ok();
        Resolver { dns }
    }

    /// The targets to try for `uri`, in order.
    pub async fn resolve(&self, uri: &SipUri) -> Result<Vec<Target>, ResolveError> {
        let explicit = explicit_transport(uri)?;
        match &uri.host {
            // Boxed: the DNS lookups' future is large, and an address needs none.
            Host::Domain(d) => Box::pin(self.resolve_name(uri, d, explicit)).await,
            ip_host => {
                let ip = ip_host
                    .ip()
                    .ok_or_else(|| lookup_error(uri, "no address"))?;
                let transport = explicit.unwrap_or(Transport::Udp);
                let port = uri.port.unwrap_or(transport.default_port());
                Ok(vec![target(transport, SocketAddr::new(ip, port), None)])
            }
        }
    }

    /// The targets for `uri`, whose host is the domain name `domain` (RFC 3263 §4):
    /// SRV records unless a port is given, then addresses.
    async fn resolve_name(
        &self,
        uri: &SipUri,
        domain: &str,
        explicit: Option<Transport>,
    ) -> Result<Vec<Target>, ResolveError> {
        let name = domain.trim_end_matches('.').to_string();
        if let Some(port) = uri.port {
            let transport = explicit.unwrap_or(Transport::Udp);
            return self.addresses(&name, port, transport, &name).await;
        }
        let transports = match explicit {
            Some(t) => vec![t],
            None => vec![Transport::Udp, Transport::Tcp, Transport::Tls],
        };
        for transport in &transports {
            let records = self
                .srv(&format!("{}.{name}.", srv_prefix(*transport)))
                .await;
            if records.is_empty() {
                continue;
            }
            let mut out = Vec::new();
            for (host, port) in records {
                if let Ok(mut t) = self.addresses(&host, port, *transport, &name).await {
                    out.append(&mut t);
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
        let transport = explicit.unwrap_or(Transport::Udp);
        self.addresses(&name, transport.default_port(), transport, &name)
            .await
    }

    /// SRV records of `service`, ordered by priority and weight (RFC 2782).
    async fn srv(&self, service: &str) -> Vec<(String, u16)> {
        let Some(dns) = &self.dns else {
            return Vec::new();
        };
        let Ok(lookup) = dns.srv_lookup(service).await else {
            return Vec::new();
        };
        let records: Vec<(u16, u16, String, u16)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((
                    s.priority,
                    s.weight,
                    s.target.to_utf8().trim_end_matches('.').to_string(),
                    s.port,
                )),
                _ => None,
            })
            .filter(|(_, _, target, _)| !target.is_empty())
            .collect();
        super::srv::weighted_order(
            records
                .into_iter()
                .map(|(p, w, host, port)| (p, w, (host, port)))
                .collect(),
        )
    }

    /// A/AAAA of `host`; DNS first, then the system's own lookup (hosts file).
    async fn addresses(
        &self,
        host: &str,
        port: u16,
        transport: Transport,
        domain: &str,
    ) -> Result<Vec<Target>, ResolveError> {
        let name = Some(domain.to_string());
        if let Some(dns) = &self.dns
            && let Ok(ips) = dns.lookup_ip(format!("{host}.")).await
        {
            let ips: Vec<IpAddr> = ips.iter().collect();
            if !ips.is_empty() {
                return Ok(ips
                    .into_iter()
                    .map(|ip| target(transport, SocketAddr::new(ip, port), name.clone()))
                    .collect());
            }
        }
        let found = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ResolveError::Lookup(host.to_string(), e.to_string()))?;
        let out: Vec<Target> = found
            .map(|addr| target(transport, addr, name.clone()))
            .collect();
        if out.is_empty() {
            return Err(ResolveError::Lookup(
                host.to_string(),
                "no addresses".into(),
            ));
        }
        Ok(out)
    }
}

fn lookup_error(uri: &SipUri, why: &str) -> ResolveError {
    ResolveError::Lookup(uri.host.to_string(), why.into())
}

fn target(transport: Transport, addr: SocketAddr, server_name: Option<String>) -> Target {
    Target {
        transport,
        addr,
        server_name,
    }
}
