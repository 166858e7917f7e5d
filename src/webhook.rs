//! The one HTTP client for every webhook: dynamic URLs, passthru and status
//! callbacks. Pooled connections with keep-alive; every request
//! carries `User-Agent: callflow/<version>` and its own timeout.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;

use crate::runtime::{Http, HttpError, HttpResponse};

/// The User-Agent of every webhook request.
pub const USER_AGENT: &str = concat!("callflow/", env!("CARGO_PKG_VERSION"));

/// Largest webhook answer read, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// A pooled HTTP client. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    client: reqwest::Client,
    /// Whether only public addresses may be called (an account's flows).
    public_only: bool,
}

impl WebhookClient {
    /// A client with a pool of keep-alive connections.
    pub fn new() -> Result<WebhookClient, reqwest::Error> {
        Ok(WebhookClient {
            client: builder().build()?,
            public_only: false,
        })
    }

    /// A client that calls only public addresses: an IP in the URL, and every
    /// address a name resolves to, must not be loopback, private, link-local,
    /// shared (100.64/10), unspecified, multicast or documentation space. Checked
    /// where the connection is made, so a name that changes its answer (DNS
    /// rebinding) gains nothing.
    pub fn public_only() -> Result<WebhookClient, reqwest::Error> {
        Ok(WebhookClient {
            client: builder()
                .dns_resolver(std::sync::Arc::new(PublicResolver))
                .build()?,
            public_only: true,
        })
    }

    /// Refuses `url` when it names a private IP and only public ones may be called.
    fn check(&self, url: &str) -> Result<(), HttpError> {
        if !self.public_only {
            return Ok(());
        }
        let parsed = url::Url::parse(url).map_err(|e| HttpError::Other(e.to_string()))?;
        let ip = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        match ip {
            Some(ip) if !is_public(ip) => Err(HttpError::Private(ip.to_string())),
            _ => Ok(()),
        }
    }
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .connect_timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
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

/// Resolves names for [`WebhookClient::public_only`]: the public addresses only, an
/// error when there are none.
struct PublicResolver;

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                let e = HttpError::Private(host);
                return Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn describe(e: &reqwest::Error) -> HttpError {
    // reqwest's own message leaves out the cause (refused, a private address, …).
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    if e.is_timeout() {
        HttpError::Timeout
    } else if e.is_connect() {
        HttpError::Connect(text)
    } else {
        HttpError::Other(text)
    }
}

#[async_trait]
impl Http for WebhookClient {
    async fn get(
        &self,
        url: &str,
        query: &[(String, String)],
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        self.check(url)?;
        let started = std::time::Instant::now();
        let result = self.fetch(url, query, timeout).await;
        observe(started, result.is_err());
        result
    }

    fn spawn_get(&self, url: &str, query: &[(String, String)], timeout: Duration) {
        if let Err(e) = self.check(url) {
            tracing::info!(%url, error = %e, "async webhook refused");
            return;
        }
        let request = self.client.get(url).query(query).timeout(timeout);
        let url = url.to_string();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let result = request.send().await;
            observe(started, result.is_err());
            if let Err(e) = result {
                tracing::info!(%url, error = %describe(&e), "async webhook failed");
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

impl WebhookClient {
    /// POSTs `body` as `content_type`; gives the HTTP status.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u16, HttpError> {
        self.check(url)?;
        let started = std::time::Instant::now();
        let result = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| describe(&e));
        observe(started, result.is_err());
        Ok(result?.status().as_u16())
    }

    /// GET with the answer's body read, at most [`MAX_BODY`] bytes.
    async fn fetch(
        &self,
        url: &str,
        query: &[(String, String)],
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        let resp = self
            .client
            .get(url)
            .query(query)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(HttpError::TooLarge(MAX_BODY));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse { status, body })
    }
}
