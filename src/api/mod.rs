//! The HTTP API (axum), in the same process as the SIP engine: the management plane in
//! Exotel's v2 shapes (`/v2/accounts`, `/v2/accounts/{sid}/trunks…`), accounts' flows
//! (`/v2/accounts/{sid}/flows/{flow_id}`), and `/health`,
//! `/ready`. Every answer is JSON in the envelope of [`envelope`]; request bodies are
//! capped at 1 MiB; each account may make 200 requests a minute. What the API changes
//! is in the store and, within the request, in the routing new calls use.

pub mod calls;
pub mod carriers;
pub mod connect;
pub mod envelope;
pub mod flows;
pub mod spec;
pub mod trunks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::store::Store;
pub use envelope::ApiError;
use envelope::{fail, ok};

/// Largest request body taken.
pub const MAX_BODY: usize = 1024 * 1024;

/// Requests an account may make in a minute.
pub const RATE_PER_MINUTE: u32 = 200;

/// What the API needs of the running engine.
#[async_trait]
pub trait Live: Send + Sync {
    /// Rebuilds the routing new calls use from the file and the store.
    async fn refresh(&self) -> Result<(), String>;
    /// Whether `account` may point a number at flow `id`: one of its own, or one of
    /// the file's.
    fn has_flow(&self, account: &str, id: &str) -> bool;
    /// Whether `callflow.yaml` maps this number.
    fn number_in_file(&self, number: &str) -> bool;
    /// Whether SIP is listening and flows are loaded.
    fn sip_ready(&self) -> bool;
    /// Whether `callflow.yaml` defines carrier `name`.
    fn file_carrier(&self, name: &str) -> bool;
    /// The file's carriers, as the API lists them.
    fn file_carriers(&self) -> Vec<Value>;
    /// The file's trunks, as the API lists them.
    fn file_trunks(&self) -> Vec<Value>;
    /// The flows loaded from the `flows` directory, as the API lists them.
    fn file_flows(&self) -> Vec<Value>;
    /// Sets the metrics read at scrape time (active calls, SIP messages, channels,
    /// transactions).
    fn observe(&self);
    /// `account`'s calls in progress on this node, as call records.
    fn in_progress(&self, account: &str) -> Vec<Value>;
    /// Ends `account`'s call `sid` in progress; false when there is no such call.
    async fn terminate(&self, account: &str, sid: &str) -> bool;
    /// Moves `account`'s call `sid` into flow `flow`; false when there is no such call.
    async fn redirect(&self, account: &str, sid: &str, flow: &str) -> bool;
    /// How flows are compiled (the reserved header prefixes).
    fn compile_options(&self) -> crate::flow::CompileOptions;
    /// The digest realm passwords are hashed with.
    fn realm(&self) -> String;
    /// Where the recording of call `sid` of `account` is written.
    fn recording_path(&self, account: &str, sid: &str) -> std::path::PathBuf;
    /// Places `account`'s call `req` (the caller id, the parties and the limits
    /// checked here); gives the call's fields with status `queued`.
    async fn connect(&self, account: &str, req: connect::ConnectRequest)
    -> Result<Value, ApiError>;
}

/// What every handler shares.
#[derive(Clone)]
pub struct Api {
    /// The store.
    pub store: Store,
    /// The engine.
    pub live: Arc<dyn Live>,
    /// The operator's token; `None`: the admin endpoints answer 404.
    pub admin_token: Option<String>,
    /// Requests per account in the current minute.
    rate: Arc<Mutex<HashMap<String, (Instant, u32)>>>,
}

impl Api {
    /// The API over `store` and `live`.
    pub fn new(store: Store, live: Arc<dyn Live>, admin_token: Option<String>) -> Api {
        Api {
            store,
            live,
            admin_token,
            rate: Arc::default(),
        }
    }

    /// Checks HTTP Basic `key:token` against account `sid` and its rate.
    pub async fn account(&self, headers: &HeaderMap, sid: &str) -> Result<(), ApiError> {
        let (key, token) = basic(headers).ok_or_else(ApiError::unauthorized)?;
        if !self.store.authenticate(sid, &key, &token).await? {
            return Err(ApiError::unauthorized());
        }
        self.count(sid)
    }

    /// Checks the operator's `Authorization: Bearer` token; without a configured token
    /// the admin endpoints do not exist (404).
    pub fn admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(admin) = &self.admin_token else {
            return Err(ApiError::not_found("this resource"));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if crate::sip::digest::constant_time_eq(given.as_bytes(), admin.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        }
    }

    fn count(&self, sid: &str) -> Result<(), ApiError> {
        let mut rate = self.rate.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = rate.entry(sid.to_string()).or_insert((Instant::now(), 0));
        if slot.0.elapsed() >= Duration::from_secs(60) {
            *slot = (Instant::now(), 0);
        }
        slot.1 += 1;
        if slot.1 > RATE_PER_MINUTE {
            return Err(ApiError::too_many(
                format!("at most {RATE_PER_MINUTE} requests a minute per account"),
                60,
            ));
        }
        Ok(())
    }

    /// Routing is rebuilt after a change; a failure is logged, the change stays.
    pub async fn changed(&self) {
        if let Err(e) = self.live.refresh().await {
            tracing::warn!(error = %e, "routing not rebuilt after an API change");
        }
    }
}

/// The `key:token` of an `Authorization: Basic` header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (k, t) = text.split_once(':')?;
    Some((k.to_string(), t.to_string()))
}

/// A JSON body: 415 unless the content type is JSON, 1007 unless it parses to an
/// object.
pub fn json_body(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(ApiError::content_type());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_body("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_body(&format!("not JSON: {e}"))),
    }
}

/// Authenticates as account `account`, then runs `f` and answers in the envelope.
pub async fn as_account<F, Fut>(
    api: &Api,
    method: &Method,
    headers: &HeaderMap,
    account: &str,
    f: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, Value), ApiError>>,
{
    let result = match api.account(headers, account).await {
        Ok(()) => f().await,
        Err(e) => Err(e),
    };
    answer(method, result)
}

/// Checks the operator's token, then runs `f` and answers in the envelope.
pub async fn as_admin<F, Fut>(api: &Api, method: &Method, headers: &HeaderMap, f: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, Value), ApiError>>,
{
    let result = match api.admin(headers) {
        Ok(()) => f().await,
        Err(e) => Err(e),
    };
    answer(method, result)
}

/// The answer for `result` to a request with `method`.
pub fn answer(method: &Method, result: Result<(StatusCode, Value), ApiError>) -> Response {
    match result {
        Ok((status, data)) => ok(method, status, data),
        Err(e) => fail(method, &e),
    }
}

/// Every endpoint with its handler.
pub fn routes() -> Vec<spec::Route> {
    use spec::{Auth, Body, Endpoint};
    let ep = |method, path, summary, auth, body| Endpoint {
        method,
        path,
        summary,
        auth,
        body,
    };
    let mut r: Vec<spec::Route> = vec![
        (
            ep(
                "get",
                "/health",
                "The process is up",
                Auth::Open,
                Body::Empty,
            ),
            get(health),
        ),
        (
            ep(
                "get",
                "/ready",
                "SIP bound, store reachable, flows loaded",
                Auth::Open,
                Body::Empty,
            ),
            get(ready),
        ),
        (
            ep(
                "get",
                "/metrics",
                "Metrics in Prometheus text format",
                Auth::Open,
                Body::Empty,
            ),
            get(metrics),
        ),
        (
            ep(
                "get",
                "/openapi.json",
                "This document",
                Auth::Open,
                Body::Empty,
            ),
            get(openapi),
        ),
        (
            ep(
                "post",
                "/v2/accounts",
                "Create an account; its api_token is shown only here",
                Auth::Admin,
                Body::Json(&[("name", "string", true)]),
            ),
            post(create_account),
        ),
        (
            ep(
                "put",
                "/v2/accounts/{account}/limits",
                "Set the account's caps: max_concurrent_calls, max_calls_per_day (null: none)",
                Auth::Admin,
                Body::Json(&[
                    ("max_concurrent_calls", "integer", false),
                    ("max_calls_per_day", "integer", false),
                ]),
            ),
            put(set_account_limits),
        ),
    ];
    r.extend(trunks::routes());
    r.extend(flows::routes());
    r.extend(carriers::routes());
    r.extend(connect::routes());
    r.extend(calls::routes());
    r
}

/// The router.
pub fn router(api: Api) -> Router {
    spec::router(routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(enveloped))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// Puts what axum itself answers (a body over the limit, a malformed query or path,
/// a method the path does not take) into the envelope like every other error.
async fn enveloped(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/json") || ct.starts_with("text/plain; version=0.0.4")
        });
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let mut e = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::bad_body(&format!("the body is larger than {MAX_BODY} bytes"))
        }
        StatusCode::METHOD_NOT_ALLOWED => ApiError::not_found("this method on this resource"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::content_type(),
        StatusCode::NOT_FOUND => ApiError::not_found("this resource"),
        s if s.is_server_error() => ApiError::internal(format!("HTTP {s}")),
        _ => ApiError::bad_body("the request's path or query is malformed"),
    };
    e.status = status;
    fail(&method, &e)
}

async fn not_found(method: Method) -> Response {
    fail(&method, &ApiError::not_found("this resource"))
}

async fn health() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok" }))
}

async fn openapi() -> axum::Json<Value> {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| {
        let endpoints: Vec<spec::Endpoint> = routes().into_iter().map(|(e, _)| e).collect();
        spec::openapi(&endpoints)
    });
    axum::Json(doc.clone())
}

async fn metrics(State(api): State<Api>) -> Response {
    api.live.observe();
    let text = crate::metrics::global().encode();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn ready(State(api): State<Api>) -> (StatusCode, axum::Json<Value>) {
    let (sip, store) = (api.live.sip_ready(), api.store.ping().await);
    let status = if sip && store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({ "sip": sip, "store": store })))
}

/// `PUT /v2/accounts/{sid}/limits`: the account's caps on calls in progress and
/// calls a day (toll-fraud limits); a field left out or null means no cap.
async fn set_account_limits(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path(account): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(e) = api.admin(&headers) {
        return fail(&method, &e);
    }
    let result = async {
        let body = json_body(&headers, &body)?;
        let cap = |name: &str| match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => trunks::int_field(v, name, 1..=10_000_000).map(Some),
        };
        let limits = crate::store::accounts::AccountLimits {
            max_concurrent_calls: cap("max_concurrent_calls")?,
            max_calls_per_day: cap("max_calls_per_day")?,
        };
        if !api.store.set_account_limits(&account, limits).await? {
            return Err(ApiError::not_found(&format!("account {account}")));
        }
        api.changed().await;
        Ok((
            StatusCode::OK,
            serde_json::to_value(limits).unwrap_or(Value::Null),
        ))
    }
    .await;
    answer(&method, result)
}

async fn create_account(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = api.admin(&headers) {
        return fail(&method, &e);
    }
    let result = async {
        let body = json_body(&headers, &body)?;
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ApiError::missing("name"))?;
        if name.len() > 64 || name.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "name",
                "must be at most 64 printable characters",
            ));
        }
        let account = api.store.create_account(name).await?;
        Ok((
            StatusCode::OK,
            serde_json::to_value(account).unwrap_or(Value::Null),
        ))
    }
    .await;
    answer(&method, result)
}

impl Api {
    /// Serves the API on `addr` until `stop`; the bound address once listening.
    pub async fn serve_on(
        self,
        addr: SocketAddr,
        stop: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        serve(addr, self, stop).await
    }
}

/// Serves the API on `addr` until `stop`; the bound address is returned once
/// listening.
pub async fn serve(
    addr: SocketAddr,
    api: Api,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "HTTP API listening");
    tokio::spawn(async move {
        let served = axum::serve(listener, router(api))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "HTTP API stopped");
        }
    });
    Ok(local)
}
