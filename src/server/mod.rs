//! `callflow serve`: the configuration, the flows, the SIP stack and the flow runtime
//! put together, with live reload and a graceful shutdown.
//!
//! `state` is what every new call uses (swapped whole on reload), `inbound` routes
//! and authenticates each new INVITE, `admission` takes its channels, `outbound` carries a partner's call to the
//! PSTN, `pinger` sends the OPTIONS pings, `record` logs the call record and sends
//! the status callback.

pub mod active;
pub mod admission;
pub mod connect;
pub mod gate;
pub mod guard;
pub mod inbound;
pub mod live;
pub mod log_time;
pub mod log_writer;
pub mod outbound;
pub mod pinger;
pub mod record;
pub mod recordings;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::call::{Engine, SipStack, StackConfig};
use crate::config::Config;
use crate::routing::Routing;
use crate::sip::transaction::Timers;
use crate::sip::transport::{TlsConfig, TransportConfig, Transports};
use crate::store::{Store, StoreError};
pub use live::Live;
pub use state::{State, load_flows};

/// Why the engine would not start, or a reload was refused.
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
    Routing(#[from] crate::routing::RoutingError),
    /// A socket or TLS file.
    #[error("SIP transport: {0}")]
    Transport(std::io::Error),
    /// The HTTP client.
    #[error("webhook client: {0}")]
    Http(String),
    /// The store could not be opened or read.
    #[error("{0}")]
    Store(StoreError),
    /// The HTTP API could not listen.
    #[error("HTTP API: {0}")]
    Api(std::io::Error),
    /// An rtpengine address does not resolve, or the ng socket cannot be opened.
    #[error("media: {0}")]
    Media(String),
}

/// How long a hard stop waits for the calls it ended to finish.
pub const END_CALLS_WAIT: Duration = Duration::from_secs(5);

/// Where the store is when the configuration names none but the API needs one.
pub const DEFAULT_STORE: &str = "sqlite://callflow.db";

/// A running engine.
pub struct Server {
    /// The SIP transports (for their addresses and counters).
    pub transports: Arc<Transports>,
    /// The engine.
    pub engine: Arc<Engine>,
    /// What new calls use (routing, flows, settings) and what it is built from.
    /// Swapped whole on reload and on API changes; a call keeps the one it started
    /// with.
    live: Arc<Live>,
    /// Where the HTTP API listens, when it is on.
    pub api_addr: Option<SocketAddr>,
    stack: SipStack,
}

impl Server {
    /// Starts the engine on `config`.
    pub async fn start(config: &Config, timers: Timers) -> Result<Server, StartError> {
        let store = match (&config.store, &config.api) {
            (Some(s), _) => Some(Store::open(&s.url).await.map_err(StartError::Store)?),
            (None, Some(_)) => Some(
                Store::open(DEFAULT_STORE)
                    .await
                    .map_err(StartError::Store)?,
            ),
            (None, None) => None,
        };
        let mut live = Live::start(config, store).await?;
        let current = live.current.clone();
        let transport = TransportConfig {
            listen: config.sip.listen.clone(),
            tls: config.sip.tls.as_ref().map(|t| TlsConfig {
                cert: t.cert.clone(),
                key: t.key.clone(),
                ca: t.ca.clone(),
            }),
            shield: Some(shield(&current)),
            ..TransportConfig::default()
        };
        let media = match &config.media {
            Some(m) => Some(media(m).await?),
            None => None,
        };
        let stack = SipStack::start(
            StackConfig {
                timers,
                media,
                advertised: config.sip.advertised_address.clone(),
                gate: Some(Arc::new(gate::SourceGate {
                    current: current.clone(),
                })),
                ..StackConfig::new(transport)
            },
            inbound::handler(current.clone()),
        )
        .await
        .map_err(StartError::Transport)?;
        if let Some(every) = config.sip.options_interval {
            let (core, stop) = (stack.engine.core.clone(), stack.shutdown.clone());
            tokio::spawn(pinger::run(core, current.clone(), every, stop));
        }
        for l in stack.transports.local_addrs() {
            tracing::info!(transport = %l.transport, addr = %l.addr, "listening");
        }
        if let Some(store) = &live.store {
            let retention = config
                .store
                .as_ref()
                .map_or(crate::config::DEFAULT_RETENTION, |s| s.retention);
            let stop = stack.shutdown.clone();
            tokio::spawn(prune(store.clone(), retention, stop));
        }
        live.transports = Some(stack.transports.clone());
        live.engine = Some(stack.engine.clone());
        let live = Arc::new(live);
        let api_addr = match (&config.api, &live.store) {
            (Some(api), Some(store)) => {
                let api = crate::api::Api::new(store.clone(), live.clone(), api.admin_token())
                    .serve_on(api_addr_of(config), stack.shutdown.clone());
                let addr = api.await.map_err(StartError::Api)?;
                current.load().recordings.api_listens(addr);
                Some(addr)
            }
            _ => None,
        };
        Ok(Server {
            transports: stack.transports.clone(),
            engine: stack.engine.clone(),
            live,
            api_addr,
            stack,
        })
    }

    /// The routing table new calls use.
    pub fn routing(&self) -> Arc<Routing> {
        self.live.current.load().routing.clone()
    }

    /// The store, when one is configured.
    pub fn store(&self) -> Option<&Store> {
        self.live.store.as_ref()
    }

    /// Loads `config`, its flows and the store's trunks again for new calls; calls in
    /// progress keep what they started with. An invalid configuration is refused and
    /// the old one stays. Listening addresses, TLS files, the store and the API's
    /// address are not changed by a reload.
    pub async fn reload(&self, config: &Config) -> Result<(), StartError> {
        self.live.reload(config).await?;
        tracing::info!("configuration and flows reloaded");
        Ok(())
    }

    /// Stops taking calls and waits for calls in progress, until `hard` fires; then
    /// ends them (BYE to every answered leg, 487 to callers still ringing) and waits
    /// up to [`END_CALLS_WAIT`] for their records (and their media in rtpengine) to
    /// be done with.
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
                "waiting for calls in progress (Ctrl-C or SIGTERM again to end them)"
            );
            tokio::select! {
                _ = &mut hard => {
                    self.end_calls().await;
                    break;
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        self.stack.shutdown.cancel();
    }

    /// Ends every call in progress and waits for their handlers, at most
    /// [`END_CALLS_WAIT`].
    async fn end_calls(&self) {
        let calls = self.live.current.load().active.all();
        tracing::info!(calls = calls.len(), "ending the calls in progress");
        for c in calls {
            c.terminate().await;
        }
        let deadline = tokio::time::Instant::now() + END_CALLS_WAIT;
        while self.engine.active_calls() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The ng client of the configured rtpengines.
async fn media(m: &crate::config::MediaConfig) -> Result<crate::call::MediaConfig, StartError> {
    let mut instances = Vec::new();
    for r in &m.rtpengine {
        let addr = tokio::net::lookup_host(&r.address)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                StartError::Media(format!("rtpengine {} does not resolve", r.address))
            })?;
        instances.push((addr, r.weight));
    }
    let rtpengine = crate::media::Rtpengine::start(&instances, m.ng_timeout)
        .await
        .map_err(|e| StartError::Media(e.to_string()))?;
    tracing::info!(rtpengines = instances.len(), "media anchored in rtpengine");
    Ok(crate::call::MediaConfig {
        rtpengine,
        timeout: m.timeout,
    })
}

/// The shield, with the sources of the state current when a packet arrives (carriers,
/// trunks' addresses) exempt from its request rate.
fn shield(current: &Arc<arc_swap::ArcSwap<State>>) -> Arc<crate::sip::shield::Shield> {
    let shield = current.load().shield.clone();
    let current = current.clone();
    shield.set_exempt(Arc::new(move |ip| {
        current.load().routing.is_known_source(ip)
    }));
    shield
}

/// Deletes call records older than `retention`, at start and then every hour (more
/// often when the retention is shorter), until `stop`.
async fn prune(store: Store, retention: Duration, stop: tokio_util::sync::CancellationToken) {
    let every = retention.min(Duration::from_secs(3600));
    loop {
        let keep = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        let before = crate::store::now().saturating_sub(keep);
        match store.prune_calls(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "call records past their retention deleted"),
            Err(e) => tracing::warn!(error = %e, "call records not pruned"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The API's listening address from `config`.
fn api_addr_of(config: &Config) -> SocketAddr {
    config
        .api
        .as_ref()
        .map_or(SocketAddr::from(([127, 0, 0, 1], 8080)), |a| a.listen)
}

/// Installs the log subscriber `serve` runs with, writing to `out`: `RUST_LOG`'s
/// filter, else `info`, at which a call writes one line when it ends (its record,
/// [`record`]) and nothing on its way unless something fails; `debug` adds a line per
/// applet, attempt and far leg. Plain text, also on a terminal: the subscriber is
/// built without its `ansi` feature, whose styles cost a formatting call for each
/// span name, target and field name of a line even with colours off (1% of a plain
/// call's instructions; BENCHMARKS.md, session 23). Lines under a steady flow are
/// gathered for up to a tenth of a second ([`log_writer`]); the handle returned
/// writes out what is held, and a panic does so before its message. Does nothing
/// (but return a handle) if a subscriber is already installed.
pub fn init_logging(out: impl std::io::Write + Send + 'static) -> log_writer::LogFlush {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, flush) = log_writer::Gathered::new(out);
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_timer(log_time::LogTime)
        .with_writer(writer)
        .try_init();
    if installed.is_ok() {
        let on_panic = flush.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            on_panic.flush_if_free();
            previous(info);
        }));
    }
    flush
}

/// The runtime `serve` runs the engine on, in a process without transparent huge
/// pages ([`no_huge_pages`]). With one worker (the default) it is tokio's
/// current-thread scheduler: the engine's tasks run on the thread that drives the
/// runtime (`block_on`), which keeps no queues to steal from and times no polls
/// (2.4% fewer instructions per call than the multi-thread scheduler with one
/// worker, and a third fewer preemptions; BENCHMARKS.md, session 19). With more, the
/// multi-thread scheduler with `config.workers` threads named `callflow-worker`.
pub fn runtime(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    no_huge_pages();
    let mut builder = match config.workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    builder.thread_name("callflow-worker").enable_all().build()
}

/// Turns transparent huge pages off for the process (Linux). The allocator asks for
/// them on its arenas; the first touch of each 2 MiB then zeroes it whole while the
/// engine's thread waits: 10-14 ms stalls under load on a virtual machine (BENCHMARKS.md,
/// setup time), and a huge page cannot go back to the system until all of it is free.
/// Failing to turn them off costs only that, so it is logged, not fatal.
pub fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "transparent huge pages left on");
    }
}

/// Where `serve` finds its configuration: `--config`, else `./callflow.yaml` if
/// present, else the built-in defaults (with the flows in `flows/`).
pub fn config_path(arg: Option<PathBuf>) -> Option<PathBuf> {
    arg.or_else(|| {
        let p = PathBuf::from("callflow.yaml");
        p.exists().then_some(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With one worker the engine's tasks run on the thread that drives the runtime;
    /// with more, on that many threads of their own.
    #[test]
    fn one_worker_runs_tasks_on_the_driving_thread() {
        let one = runtime(&Config::default()).unwrap();
        let here = std::thread::current().id();
        let ran_on = one.block_on(async {
            tokio::spawn(async { std::thread::current().id() })
                .await
                .unwrap()
        });
        assert_eq!(ran_on, here);
        let two = runtime(&Config {
            workers: 2,
            ..Config::default()
        })
        .unwrap();
        assert_eq!(two.metrics().num_workers(), 2);
        let ran_on = two.block_on(async {
            tokio::spawn(async { std::thread::current().name().map(String::from) })
                .await
                .unwrap()
        });
        assert_eq!(ran_on.as_deref(), Some("callflow-worker"));
    }
}
