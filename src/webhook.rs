//! The one HTTP client for every webhook: dynamic URLs, passthru and status
//! callbacks. Pooled connections with keep-alive; every request
//! carries `User-Agent: callflow/<version>` and its own timeout.

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
}

impl WebhookClient {
    /// A client with a pool of keep-alive connections.
    pub fn new() -> Result<WebhookClient, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(WebhookClient { client })
    }
}

fn describe(e: &reqwest::Error) -> HttpError {
    if e.is_timeout() {
        HttpError::Timeout
    } else if e.is_connect() {
        HttpError::Connect(e.to_string())
    } else {
        HttpError::Other(e.to_string())
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
        let started = std::time::Instant::now();
        let result = self.fetch(url, query, timeout).await;
        observe(started, result.is_err());
        result
    }

    fn spawn_get(&self, url: &str, query: &[(String, String)], timeout: Duration) {
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
