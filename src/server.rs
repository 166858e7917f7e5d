//! `callflow serve`: the configuration, the flows, the SIP stack and the flow
//! runtime put together, with a graceful shutdown (DESIGN.md §6).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::call::{Call, CallHandler, Engine, LegOutcome, LegRequest};
use crate::config::{Config, OutboundConfig};
use crate::flow::executor::{self, CallRecord, Http, Settings};
use crate::flow::vars::CallInfo;
use crate::flow::{CompileOptions, Flow, Loaded, compile_str, load_paths};
use crate::routing::limits::{Limits, Permit};
use crate::routing::{self, Trunk};
use crate::routing::{Inbound, NumberTarget, Routing};
use crate::sip::digest::{Authenticator, Verdict};
use crate::sip::transaction::{Timers, TransactionLayer};
use crate::sip::transport::{TlsConfig, TransportConfig, Transports};
use crate::sip::{Host, Name};
use crate::webhook::WebhookClient;

/// Why the engine would not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// A flow has errors: every diagnostic, one per line.
    #[error("{0}")]
    Flows(String),
    /// Routing refers to something missing.
    #[error("routing: {0}")]
    Routing(String),
    /// A socket or TLS file.
    #[error("SIP transport: {0}")]
    Transport(std::io::Error),
    /// The HTTP client.
    #[error("webhook client: {0}")]
    Http(String),
}

/// A running engine.
pub struct Server {
    /// The SIP transports (for their addresses and counters).
    pub transports: Arc<Transports>,
    /// The core.
    pub engine: Arc<Engine>,
    /// What new calls use: routing, flows, settings. Swapped whole on reload; a call
    /// keeps the one it started with.
    current: Arc<ArcSwap<Shared>>,
    shutdown: CancellationToken,
}

/// Loads every flow under the configured path; any error refuses the start.
pub fn load_flows(config: &Config) -> Result<Vec<Flow>, StartError> {
    let opts = CompileOptions {
        reserved_header_prefixes: config.reserved_header_prefixes.clone(),
    };
    let Loaded {
        flows, diagnostics, ..
    } = load_paths(std::slice::from_ref(&config.flows), &opts);
    for d in diagnostics
        .iter()
        .filter(|d| d.severity == crate::flow::Severity::Warning)
    {
        tracing::warn!("{d}");
    }
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.severity == crate::flow::Severity::Error)
        .map(ToString::to_string)
        .collect();
    if errors.is_empty() {
        Ok(flows)
    } else {
        Err(StartError::Flows(errors.join("\n")))
    }
}

impl Server {
    /// Starts the engine on `config`.
    pub async fn start(config: &Config, timers: Timers) -> Result<Server, StartError> {
        let http = WebhookClient::new().map_err(StartError::Http)?;
        let auth = Authenticator::new("callflow");
        let shared = Shared::load_parts(
            config,
            http,
            Arc::new(Limits::default()),
            auth,
            Arc::default(),
        )?;
        let listen = config
            .sip
            .listen
            .iter()
            .filter_map(|l| l.parse().ok())
            .collect();
        let tls = config.sip.tls.as_ref().map(|t| TlsConfig {
            cert: t.cert.clone(),
            key: t.key.clone(),
            ca: t.ca.clone(),
        });
        let shutdown = CancellationToken::new();
        let tc = TransportConfig {
            listen,
            tls,
            ..TransportConfig::default()
        };
        let (transports, incoming) = Transports::bind(tc, shutdown.clone())
            .await
            .map_err(StartError::Transport)?;
        let advertised = config
            .sip
            .advertised_address
            .as_deref()
            .and_then(|a| Host::parse(a).ok());
        let layer = TransactionLayer::new(transports.clone(), timers, advertised);
        let (core_tx, core_rx) = mpsc::channel(8192);
        tokio::spawn(layer.clone().run(incoming, core_tx));
        let current = Arc::new(ArcSwap::from_pointee(shared));
        let engine = Engine::new(layer, flow_handler(current.clone()));
        tokio::spawn(engine.clone().run(core_rx));
        if let Some(every) = config
            .sip
            .options_interval
            .as_deref()
            .and_then(|i| crate::flow::duration::parse_duration(i).ok())
        {
            tokio::spawn(pinger(
                engine.clone(),
                current.clone(),
                every,
                shutdown.clone(),
            ));
        }
        for l in transports.local_addrs() {
            tracing::info!(transport = %l.transport, addr = %l.addr, "listening");
        }
        Ok(Server {
            transports,
            engine,
            current,
            shutdown,
        })
    }

    /// The routing table new calls use.
    pub fn routing(&self) -> Arc<Routing> {
        self.current.load().routing.clone()
    }

    /// Loads `config` and its flows again for new calls; calls in progress keep what
    /// they started with. An invalid configuration is refused and the old one stays.
    /// Listening addresses and TLS files are not changed by a reload.
    pub fn reload(&self, config: &Config) -> Result<(), StartError> {
        let old = self.current.load();
        let shared = Shared::load(config, &old)?;
        self.current.store(Arc::new(shared));
        tracing::info!("configuration and flows reloaded");
        Ok(())
    }

    /// Stops taking calls and waits for calls in progress, until `hard` fires.
    pub async fn drain(&self, hard: impl std::future::Future<Output = ()>) {
        self.engine.drain();
        tokio::pin!(hard);
        loop {
            let active = self.engine.active_calls();
            if active == 0 {
                break;
            }
            tracing::info!(
                active,
                "waiting for calls in progress (Ctrl-C again to end them)"
            );
            tokio::select! {
                _ = &mut hard => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        self.shutdown.cancel();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Pings every trunk destination and carrier with OPTIONS every `every`; any
/// response marks it up, none within the interval (at most 5 s) marks it down.
async fn pinger(
    engine: Arc<Engine>,
    current: Arc<ArcSwap<Shared>>,
    every: Duration,
    stop: CancellationToken,
) {
    let wait = every.min(Duration::from_secs(5));
    loop {
        let shared = current.load_full();
        for uri in shared.routing.ping_targets() {
            let (engine, health) = (engine.clone(), shared.routing.health().clone());
            tokio::spawn(async move {
                let up = ping(&engine, &uri, wait).await;
                if health.mark(&uri, up) {
                    if up {
                        tracing::info!(%uri, "answers OPTIONS again: up");
                    } else {
                        tracing::warn!(%uri, "no answer to OPTIONS: down");
                    }
                }
            });
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One OPTIONS ping: whether any final response came within `wait`.
async fn ping(engine: &Engine, uri: &crate::sip::SipUri, wait: Duration) -> bool {
    let Some(target) = engine
        .resolver
        .resolve(uri)
        .await
        .ok()
        .and_then(|t| t.into_iter().next())
    else {
        return false;
    };
    let mut req = crate::sip::Message::request(
        crate::sip::Method::Options,
        crate::sip::Uri::Sip(uri.clone()),
    );
    let from = format!(
        "<sip:callflow@{}>;tag={}",
        uri.host,
        crate::sip::dialog::new_tag()
    );
    req.push_header(Name::MaxForwards, "70");
    req.push_header(Name::From, from);
    req.push_header(Name::To, format!("<{uri}>"));
    req.push_header(Name::CallId, format!("ping-{:016x}", rand::random::<u64>()));
    req.push_header(Name::CSeq, "1 OPTIONS");
    let mut ct = engine.layer.send_request(req, target, None).await;
    let answered = async {
        while let Some(ev) = ct.events.recv().await {
            match ev {
                crate::sip::transaction::ClientEvent::Response(r)
                    if r.status().is_some_and(|s| s >= 200) =>
                {
                    return true;
                }
                crate::sip::transaction::ClientEvent::Response(_) => {}
                _ => return false,
            }
        }
        false
    };
    tokio::time::timeout(wait, answered).await.unwrap_or(false)
}

/// The flow a `pstn` number runs: connect to its trunk, then hang up.
fn pstn_flow(trunk: &str) -> Option<Flow> {
    let text = format!(
        "flow: pstn-{}\nstart: trunk\napplets:\n  trunk:\n    connect: {{ to: \"sip:{trunk}\" }}\n    next: bye\n  bye:\n    hangup: {{}}\n",
        trunk
            .to_ascii_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    );
    compile_str("(pstn)".into(), &text, &CompileOptions::default()).flow
}

/// What every call's handler shares.
pub struct Shared {
    /// Numbers, trunks, carriers and flows.
    pub routing: Arc<Routing>,
    /// The webhook client.
    pub http: WebhookClient,
    /// Runtime settings.
    pub settings: Settings,
    /// Channel and rate limits (they outlive a reload).
    pub limits: Arc<Limits>,
    /// Calls to the PSTN.
    pub outbound: OutboundConfig,
    /// Digest challenges for trunks with credentials (kept across reloads).
    pub auth: Authenticator,
}

impl Shared {
    /// Loads the flows and builds the routing of `config`, keeping from `previous`
    /// what outlives a reload: the HTTP client, the limits' counters, the digest
    /// secret and what the pings found.
    pub fn load(config: &Config, previous: &Shared) -> Result<Shared, StartError> {
        Self::load_parts(
            config,
            previous.http.clone(),
            previous.limits.clone(),
            previous.auth.clone(),
            previous.routing.health().clone(),
        )
    }

    fn load_parts(
        config: &Config,
        http: WebhookClient,
        limits: Arc<Limits>,
        auth: Authenticator,
        health: Arc<crate::routing::health::Health>,
    ) -> Result<Shared, StartError> {
        let flows = load_flows(config)?;
        let routing =
            Routing::build_with_health(config, flows, health).map_err(StartError::Routing)?;
        Ok(Shared {
            routing: Arc::new(routing),
            http,
            settings: Settings {
                webhook_timeout: config.webhooks.timeout(),
                max_attempts_after_fetch: config.webhooks.max_attempts_after_fetch,
                reserved_prefixes: config.reserved_header_prefixes.clone(),
            },
            limits,
            outbound: config.outbound.clone(),
            auth,
        })
    }
}

/// The handler that routes each new call and runs its flow with what is current when
/// the call arrives.
pub fn flow_handler(current: Arc<ArcSwap<Shared>>) -> CallHandler {
    Arc::new(move |call| {
        let shared = current.load_full();
        let span = tracing::info_span!("call", sid = %call.sid);
        Box::pin(async move { handle(call, &shared).await }.instrument(span))
    })
}

/// Takes a channel of `key`, or refuses the caller with 503 and Retry-After.
async fn take(
    call: &mut Call,
    limits: &Limits,
    key: &str,
    channels: Option<u32>,
    cps: Option<u32>,
) -> Option<Permit> {
    match limits.acquire(key, channels, cps) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::info!(sid = %call.sid, limit = %e, "over a limit: 503");
            let retry = vec![(Name::RetryAfter, e.retry_after().to_string())];
            call.reject(503, None, retry).await;
            None
        }
    }
}

async fn handle(mut call: Call, shared: &Shared) {
    let (routing, http, settings) = (&*shared.routing, &shared.http, &shared.settings);
    let source = call.source();
    let dialled = call
        .request()
        .request_uri()
        .and_then(|u| u.user())
        .unwrap_or("")
        .to_string();
    let caller = call
        .request()
        .from_header()
        .ok()
        .and_then(|f| f.uri.user().map(str::to_string))
        .unwrap_or_default();
    let (number, route) = match routing.inbound(source.ip(), &dialled, &caller) {
        Inbound::Forbidden(why) => match authenticate(&mut call, shared, &caller, &why).await {
            Some(trunk) => {
                outbound_call(
                    &mut call,
                    shared,
                    &trunk,
                    &routing::normalise(&caller),
                    &routing::normalise(&dialled),
                )
                .await;
                return;
            }
            None => return,
        },
        Inbound::Outbound {
            trunk,
            caller,
            dialled,
        } => {
            outbound_call(&mut call, shared, &trunk, &caller, &dialled).await;
            return;
        }
        Inbound::UnknownNumber(n) => {
            tracing::info!(sid = %call.sid, number = %n, "unknown number: 404");
            call.hangup(404).await;
            return;
        }
        Inbound::Number { number, route } => (number, route),
    };
    let key = format!("trunk:{}", route.trunk.sid);
    let Some(_trunk_permit) = take(
        &mut call,
        &shared.limits,
        &key,
        route.trunk.max_channels,
        route.trunk.max_cps,
    )
    .await
    else {
        return;
    };
    let _carrier_permit = match routing.carrier_of(source.ip()) {
        Some(c) => match take(
            &mut call,
            &shared.limits,
            &format!("carrier:{}", c.name),
            c.max_channels,
            None,
        )
        .await
        {
            Some(p) => Some(p),
            None => return,
        },
        None => None,
    };
    if !call.accept_offer().await {
        return;
    }
    let flow: Arc<Flow> = match &route.target {
        NumberTarget::Flow(f) => f.clone(),
        NumberTarget::Pstn => match pstn_flow(&route.trunk.sid) {
            Some(f) => Arc::new(f),
            None => {
                call.hangup(500).await;
                return;
            }
        },
    };
    let info = call_info(&call, number);
    let record = executor::run(&flow, &mut call, http, routing, settings, info).await;
    finish(&flow, &record, http, settings).await;
}

/// A source that is neither a carrier nor whitelisted may still be a trunk that
/// authenticates with digest credentials (RFC 3261 §22): the caller id names the
/// trunk. Returns the trunk once the credentials are right; otherwise the caller has
/// been answered (401 with a challenge, or 403 with why).
async fn authenticate(
    call: &mut Call,
    shared: &Shared,
    caller: &str,
    why: &str,
) -> Option<Arc<Trunk>> {
    let trunk = shared
        .routing
        .trunk_for_caller(caller)
        .filter(|t| t.credentials.is_some());
    let Some((trunk, (user, pass))) = trunk.and_then(|t| t.credentials.clone().map(|c| (t, c)))
    else {
        tracing::warn!(sid = %call.sid, source = %call.source(), %why, "INVITE refused: 403");
        call.reject(403, Some(why), Vec::new()).await;
        return None;
    };
    match shared.auth.check(call.request(), &user, &pass) {
        Verdict::Ok => Some(trunk),
        Verdict::Challenge(values) => {
            let headers = values
                .into_iter()
                .map(|v| (Name::parse("WWW-Authenticate"), v))
                .collect();
            call.reject(401, None, headers).await;
            None
        }
        Verdict::Refused(reason) => {
            tracing::warn!(sid = %call.sid, trunk = %trunk.sid, %reason, "digest refused: 403");
            call.reject(403, Some(&reason), Vec::new()).await;
            None
        }
    }
}

/// A partner's call to the PSTN, within its trunk's limits.
async fn outbound_call(
    call: &mut Call,
    shared: &Shared,
    trunk: &Trunk,
    caller: &str,
    dialled: &str,
) {
    let key = format!("trunk:{}", trunk.sid);
    let Some(_permit) = take(
        call,
        &shared.limits,
        &key,
        trunk.max_channels,
        trunk.max_cps,
    )
    .await
    else {
        return;
    };
    if call.accept_offer().await {
        outbound(call, shared, &trunk.sid, caller, dialled).await;
    }
}

/// A partner's call to the PSTN: through the carriers in priority order, the next one
/// on no answer or a failover status; the partner hears a failure only when every
/// carrier failed.
async fn outbound(call: &mut Call, shared: &Shared, trunk: &str, caller: &str, dialled: &str) {
    let mut last: Option<u16> = None;
    for carrier in &shared.routing.usable_carriers() {
        let key = format!("carrier:{}", carrier.name);
        let Ok(_permit) = shared.limits.acquire(&key, carrier.max_channels, None) else {
            tracing::info!(sid = %call.sid, carrier = %carrier.name, "carrier full; next");
            continue;
        };
        let mut uri = carrier.uri.clone();
        uri.user = Some(dialled.to_string());
        let leg = LegRequest {
            uri,
            headers: vec![
                ("X-Callflow-CallSid".into(), call.sid.clone()),
                ("X-Callflow-TrunkSid".into(), trunk.to_string()),
            ],
            ring_timeout: shared.outbound.ring_timeout(),
            caller_id: Some(caller.to_string()),
        };
        let outcome = call.dial(leg).await;
        tracing::info!(sid = %call.sid, carrier = %carrier.name, ?outcome, "outbound attempt");
        match outcome {
            LegOutcome::Answered => {
                call.wait(Duration::from_secs(4 * 3600)).await;
                call.hangup(480).await;
                return;
            }
            LegOutcome::CallerGone => return,
            LegOutcome::Rejected(s) if !shared.outbound.fails_over(s) => {
                call.hangup(s).await;
                return;
            }
            LegOutcome::Rejected(s) => last = Some(s),
            LegOutcome::NoAnswer => last = last.or(Some(408)),
            LegOutcome::Failed(_) => {}
        }
    }
    call.hangup(last.unwrap_or(503)).await;
}

fn call_info(call: &Call, number: String) -> CallInfo {
    let req = call.request();
    let from = req
        .from_header()
        .ok()
        .and_then(|f| f.uri.user().map(str::to_string))
        .unwrap_or_default();
    CallInfo {
        sid: call.sid.clone(),
        from,
        to: number,
        direction: "incoming".into(),
        custom_field: String::new(),
        headers: req
            .headers
            .iter()
            .filter(|h| h.name != Name::Via)
            .map(|h| (h.name.as_str().to_string(), h.value.clone()))
            .collect(),
    }
}

/// Logs the call record and sends the status callback.
async fn finish(flow: &Flow, record: &CallRecord, http: &WebhookClient, settings: &Settings) {
    match serde_json::to_string(record) {
        Ok(json) => {
            tracing::info!(target: "callflow::record", sid = %record.call_sid, record = %json, "call ended")
        }
        Err(e) => tracing::warn!(error = %e, "call record not serialisable"),
    }
    let Some(url) = &flow.status_callback else {
        return;
    };
    let Ok(url) = url.render(&mut crate::flow::vars::Vars::default().scope()) else {
        return;
    };
    let body = status_callback(record);
    if let Err(e) = http.post_json(&url, &body, settings.webhook_timeout).await {
        tracing::info!(sid = %record.call_sid, %url, error = %e, "status callback failed");
    }
}

/// The status callback body (DESIGN.md §4).
pub fn status_callback(r: &CallRecord) -> serde_json::Value {
    let end = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let legs: Vec<serde_json::Value> = r
        .steps
        .iter()
        .flat_map(|s| &s.legs)
        .map(|l| json!({ "LegSid": l.leg_sid, "To": l.to, "Status": l.result, "OnCallDuration": l.duration_secs }))
        .collect();
    let conversation: u64 = r
        .steps
        .iter()
        .flat_map(|s| &s.legs)
        .map(|l| l.duration_secs)
        .sum();
    json!({
        "CallSid": r.call_sid,
        "Status": r.status,
        "Direction": r.direction,
        "From": r.from,
        "To": r.to,
        "DateCreated": r.created_unix,
        "StartTime": r.created_unix,
        "EndTime": end,
        "ConversationDuration": conversation,
        "CustomField": "",
        "RecordingUrl": serde_json::Value::Null,
        "Legs": legs,
        "FlowId": r.flow_id,
        "Applets": r.steps.iter().map(|s| s.applet.clone()).collect::<Vec<_>>(),
    })
}

/// Where `serve` finds its configuration: `--config`, else `./callflow.yaml` if
/// present, else the built-in defaults (with the flows in `flows/`).
pub fn config_path(arg: Option<PathBuf>) -> Option<PathBuf> {
    arg.or_else(|| {
        let p = PathBuf::from("callflow.yaml");
        p.exists().then_some(p)
    })
}
