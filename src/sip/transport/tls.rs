//! TLS settings: our certificate and key (PEM) for listening, and the trust used to
//! verify the servers we connect to (a CA bundle, else the system's roots). Peer
//! verification is on unless the configuration turns it off explicitly.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What the configuration says about TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// Our certificate chain, PEM (needed to listen on tls://).
    pub cert: Option<PathBuf>,
    /// Our private key, PEM.
    pub key: Option<PathBuf>,
    /// CA bundle (PEM) to verify servers we connect to; the system roots if unset.
    pub ca: Option<PathBuf>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// A file held no usable certificate or key.
    #[error("{0}: {1}")]
    Pem(PathBuf, String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Ready-to-use TLS acceptor and connector.
pub struct Tls {
    /// For tls:// listeners.
    pub acceptor: TlsAcceptor,
    /// For connections we open.
    pub connector: TlsConnector,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read(path.clone(), e))
}

fn certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_slice()).collect();
    let certs = certs.map_err(|e| TlsError::Pem(path.clone(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem(path.clone(), "no certificate found".into()));
    }
    Ok(certs)
}

fn key(path: &PathBuf) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsError::Pem(path.clone(), e.to_string()))?
        .ok_or_else(|| TlsError::Pem(path.clone(), "no private key found".into()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    /// Loads the files and builds the acceptor and connector.
    pub fn new(config: &TlsConfig) -> Result<Tls, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        match &config.ca {
            Some(ca) => {
                for cert in certs(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| TlsError::Pem(ca.clone(), e.to_string()))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth();
        let server = match (&config.cert, &config.key) {
            (Some(c), Some(k)) => server_builder.with_single_cert(certs(c)?, key(k)?)?,
            _ => {
                // Outbound TLS only: an acceptor that can never complete a handshake
                // is not built; listening on tls:// requires cert and key (checked at
                // bind time).
                let resolver = Arc::new(NoCert);
                server_builder.with_cert_resolver(resolver)
            }
        };
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }
}

/// A certificate resolver with no certificate: handshakes fail cleanly.
#[derive(Debug)]
struct NoCert;

impl rustls::server::ResolvesServerCert for NoCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}
