//! The one HTTP client for every webhook: dynamic URLs, passthru and status
//! callbacks. HTTP/1.1 over TCP or TLS, written for this one job: the request is
//! written and its answer read by the task that asks (no connection task to hand
//! it to and wake), on a connection kept from an earlier request to the same
//! origin when there is one. Every request carries `User-Agent: callflow/<version>`
//! and its own timeout; redirects are not followed (a 3xx is the answer).
//!
//! A connection kept idle may have been closed by the server meanwhile: when one
//! closes or resets before any byte of the answer, the request is sent once more on
//! a new connection. Webhooks are GETs; a status callback (a POST) the server may
//! in rare cases then see twice, which its own retries allow for already.

mod http1;
mod pool;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use crate::runtime::{Http, HttpError, HttpResponse, Query};
use http1::{ReadError, Request, Response};
use pool::{Connection, Origin, Pool};

/// The User-Agent of every webhook request.
pub const USER_AGENT: &str = concat!("callflow/", env!("CARGO_PKG_VERSION"));

/// Largest webhook answer read, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// A pooled HTTP client. Cloning shares the pool.
#[derive(Clone)]
pub struct WebhookClient {
    /// Idle keep-alive connections by origin.
    pool: Pool,
    /// The URLs called so far, taken apart.
    endpoints: Arc<Endpoints>,
    /// Makes TLS connections for `https` URLs.
    tls: tokio_rustls::TlsConnector,
    /// Whether only public addresses may be called (an account's flows).
    public_only: bool,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("public_only", &self.public_only)
            .finish_non_exhaustive()
    }
}

/// Why a webhook client could not be made.
#[derive(Debug, thiserror::Error)]
#[error("webhook client: TLS: {0}")]
pub struct ClientError(#[from] rustls::Error);

impl WebhookClient {
    /// A client that may call any address. `https` servers are verified against
    /// the Mozilla roots built in and the system's.
    pub fn new() -> Result<WebhookClient, ClientError> {
        Self::with_roots(default_roots(), false)
    }

    /// A client that calls only public addresses: an IP in the URL, and every
    /// address a name resolves to, must not be loopback, private, link-local,
    /// shared (100.64/10), unspecified, multicast or documentation space. Checked
    /// where the connection is made, so a name that changes its answer (DNS
    /// rebinding) gains nothing.
    pub fn public_only() -> Result<WebhookClient, ClientError> {
        Self::with_roots(default_roots(), true)
    }

    /// A client verifying `https` servers against `roots`.
    fn with_roots(
        roots: rustls::RootCertStore,
        public_only: bool,
    ) -> Result<WebhookClient, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(WebhookClient {
            pool: Pool::default(),
            endpoints: Arc::default(),
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            public_only,
        })
    }

    /// POSTs `body` as `content_type`; gives the HTTP status.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u16, HttpError> {
        let started = std::time::Instant::now();
        let result = self
            .exchange(url, &Query::default(), Some((content_type, &body)), timeout)
            .await;
        observe(started, result.is_err());
        Ok(result?.status)
    }

    /// GET with the answer's body read, at most [`MAX_BODY`] bytes.
    async fn fetch(
        &self,
        url: &str,
        query: &Query,
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        let answer = self.exchange(url, query, None, timeout).await?;
        let body = answer.body.ok_or(HttpError::TooLarge(MAX_BODY))?;
        Ok(HttpResponse {
            status: answer.status,
            body,
        })
    }

    /// One request (a GET, or a POST when there is a body) and its answer, within
    /// `timeout` all told.
    async fn exchange(
        &self,
        url: &str,
        query: &Query,
        body: Option<(&str, &[u8])>,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let endpoint = self.endpoints.get(url)?;
        let request = Request {
            method: if body.is_some() { "POST" } else { "GET" },
            target: &endpoint.target(query),
            host: &endpoint.host,
            authorization: endpoint.authorization.as_deref(),
            body,
        }
        .to_bytes();
        tokio::time::timeout(timeout, self.send(&endpoint.origin, &request))
            .await
            .map_err(|_| HttpError::Timeout)?
    }

    /// Sends `request` on a kept connection to `origin` (once more on a new one if
    /// that had been closed) or on a new one.
    async fn send(&self, origin: &Origin, request: &[u8]) -> Result<Response, HttpError> {
        if let Some(mut kept) = self.pool.take(origin) {
            match attempt(&mut kept, request).await {
                Ok(answer) => return Ok(self.done(origin, kept, answer)),
                Err(Failure::BeforeAnswer(why)) => {
                    tracing::debug!(host = %origin.host, %why, "kept connection closed; new one");
                }
                Err(Failure::Http(e)) => return Err(e),
            }
        }
        let mut fresh = pool::connect(origin, self.public_only, &self.tls).await?;
        match attempt(&mut fresh, request).await {
            Ok(answer) => Ok(self.done(origin, fresh, answer)),
            Err(Failure::BeforeAnswer(why)) => Err(HttpError::Connect(why)),
            Err(Failure::Http(e)) => Err(e),
        }
    }

    /// Keeps the connection when the answer allows; the answer.
    fn done(&self, origin: &Origin, connection: Connection, answer: Response) -> Response {
        if answer.reusable {
            self.pool.put(origin, connection);
        }
        answer
    }
}

/// How an attempt on one connection failed.
enum Failure {
    /// Writing failed, or the connection closed before any byte of an answer.
    BeforeAnswer(String),
    /// Anything after the answer began.
    Http(HttpError),
}

/// Writes `request` on `connection` and reads the answer.
async fn attempt(connection: &mut Connection, request: &[u8]) -> Result<Response, Failure> {
    let written = async {
        connection.io.write_all(request).await?;
        connection.io.flush().await
    };
    if let Err(e) = written.await {
        return Err(Failure::BeforeAnswer(format!("sending the request: {e}")));
    }
    http1::read_response(&mut connection.io, &mut connection.buf, MAX_BODY)
        .await
        .map_err(|e| match e {
            ReadError::Closed => Failure::BeforeAnswer(e.to_string()),
            other => Failure::Http(HttpError::Other(other.to_string())),
        })
}

/// A webhook URL taken apart: flows call the same few URLs again and again, so
/// each is parsed on its first use and kept ([`Endpoints`]).
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    /// Where the connection goes.
    origin: Origin,
    /// The `Host` field.
    host: String,
    /// The path and the URL's own query.
    path: String,
    /// `Basic` credentials from the URL's user information, if it has any.
    authorization: Option<String>,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, HttpError> {
        let parsed =
            url::Url::parse(url).map_err(|e| HttpError::Other(format!("URL '{url}': {e}")))?;
        let tls = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(HttpError::Other(format!(
                    "URL '{url}': the scheme {other} is not http or https"
                )));
            }
        };
        let (host, written) = match (parsed.host(), parsed.host_str()) {
            (Some(url::Host::Domain(d)), Some(w)) => (d.to_string(), w),
            (Some(url::Host::Ipv4(ip)), Some(w)) => (ip.to_string(), w),
            (Some(url::Host::Ipv6(ip)), Some(w)) => (ip.to_string(), w),
            _ => return Err(HttpError::Other(format!("URL '{url}' has no host"))),
        };
        let port = parsed
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let host_field = match parsed.port() {
            Some(p) => format!("{written}:{p}"),
            None => written.to_string(),
        };
        let mut path = parsed.path().to_string();
        if let Some(q) = parsed.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Endpoint {
            authorization: basic_credentials(&parsed),
            origin: Origin { tls, host, port },
            host: host_field,
            path,
        })
    }

    /// The request target: the path and query with `query` appended, form-encoded.
    fn target(&self, query: &Query) -> String {
        let mut target = String::with_capacity(self.path.len() + 1 + query.as_str().len());
        target.push_str(&self.path);
        if query.is_empty() {
            return target;
        }
        match target.find('?') {
            None => target.push('?'),
            Some(q) if q + 1 < target.len() => target.push('&'),
            Some(_) => {}
        }
        target.push_str(query.as_str());
        target
    }
}

/// Endpoints parsed so far, by URL. A flow whose URL differs on every call (an
/// expression in it) fills it: it is emptied when it holds [`MAX_ENDPOINTS`].
#[derive(Default)]
struct Endpoints(std::sync::Mutex<std::collections::HashMap<Box<str>, Arc<Endpoint>>>);

/// Most endpoints kept.
const MAX_ENDPOINTS: usize = 256;

impl Endpoints {
    /// `url` taken apart, parsed now if it has not been.
    fn get(&self, url: &str) -> Result<Arc<Endpoint>, HttpError> {
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = lock().get(url) {
            return Ok(found.clone());
        }
        let endpoint = Arc::new(Endpoint::parse(url)?);
        let mut kept = lock();
        if kept.len() >= MAX_ENDPOINTS {
            kept.clear();
        }
        kept.insert(url.into(), endpoint.clone());
        Ok(endpoint)
    }
}

/// `Basic` credentials (RFC 7617) from the URL's user and password, if it has any.
fn basic_credentials(url: &url::Url) -> Option<String> {
    use base64::Engine;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let mut pair = decode(url.username());
    pair.push(b':');
    pair.extend(decode(url.password().unwrap_or("")));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    Some(format!("Basic {encoded}"))
}

/// The Mozilla roots built in, and the system's.
fn default_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[async_trait]
impl Http for WebhookClient {
    async fn get(
        &self,
        url: &str,
        query: &Query,
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        let started = std::time::Instant::now();
        let result = self.fetch(url, query, timeout).await;
        observe(started, result.is_err());
        result
    }

    fn spawn_get(&self, url: &str, query: &Query, timeout: Duration) {
        let client = self.clone();
        let url = url.to_string();
        let query = query.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let result = client.exchange(&url, &query, None, timeout).await;
            observe(started, result.is_err());
            if let Err(e) = result {
                tracing::info!(%url, error = %e, "async webhook failed");
            }
        });
    }

    async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<u16, HttpError> {
        let bytes = body.to_string().into_bytes();
        self.post(url, "application/json", bytes, timeout).await
    }
}

/// Records a webhook request's latency and whether it failed.
fn observe(started: std::time::Instant, failed: bool) {
    let m = crate::metrics::global();
    m.webhook_latency.observe(started.elapsed().as_secs_f64());
    if failed {
        m.webhook_failures.inc();
    }
}

#[cfg(test)]
mod tests;
