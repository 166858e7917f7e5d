//! Where a SIP URI leads: transport and addresses (RFC 3263, simplified).
//!
//! The transport comes from `;transport=` or the scheme (`sips:` means TLS), else UDP.
//! An IP literal is used as it is; a domain name is looked up (A/AAAA) with the port
//! written, or the transport's default port.

use std::net::SocketAddr;

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

/// The transport a URI asks for.
pub fn transport_of(uri: &SipUri) -> Result<Transport, ResolveError> {
    match uri.transport() {
        Some(t) => Transport::parse(&t).ok_or(ResolveError::Transport(t)),
        None if uri.scheme == Scheme::Sips => Ok(Transport::Tls),
        None => Ok(Transport::Udp),
    }
}

/// Resolves a SIP URI to the targets to try, in order.
pub async fn resolve(uri: &SipUri) -> Result<Vec<Target>, ResolveError> {
    let mut transport = transport_of(uri)?;
    if uri.scheme == Scheme::Sips && transport == Transport::Tcp {
        transport = Transport::Tls;
    }
    let port = uri.port.unwrap_or(transport.default_port());
    match &uri.host {
        Host::Ipv4(_) | Host::Ipv6(_) => {
            let ip = uri
                .host
                .ip()
                .ok_or_else(|| ResolveError::Lookup(uri.host.to_string(), "no address".into()))?;
            Ok(vec![Target {
                transport,
                addr: SocketAddr::new(ip, port),
                server_name: None,
            }])
        }
        Host::Domain(name) => {
            let addrs = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|e| ResolveError::Lookup(name.clone(), e.to_string()))?;
            let targets: Vec<Target> = addrs
                .map(|addr| Target {
                    transport,
                    addr,
                    server_name: Some(name.clone()),
                })
                .collect();
            if targets.is_empty() {
                return Err(ResolveError::Lookup(name.clone(), "no addresses".into()));
            }
            Ok(targets)
        }
    }
}
