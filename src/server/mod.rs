//! `callflow serve`: the configuration, the flows, the SIP stack and the flow runtime
//! put together, with live reload and a graceful shutdown.
//!
//! `state` is what every new call uses (swapped whole on reload), `inbound` routes
//! and authenticates each new INVITE, `admission` takes its channels, `outbound` carries a partner's call to the
//! PSTN, `pinger` sends the OPTIONS pings, `record` logs the call record and sends
//! the status callback.

pub mod admission;
pub mod inbound;
pub mod outbound;
pub mod pinger;
pub mod record;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::call::{Engine, SipStack, StackConfig};
use crate::config::Config;
use crate::routing::Routing;
use crate::sip::transaction::Timers;
use crate::sip::transport::{TlsConfig, TransportConfig, Transports};
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
}

/// A running engine.
pub struct Server {
    /// The SIP transports (for their addresses and counters).
    pub transports: Arc<Transports>,
    /// The engine.
    pub engine: Arc<Engine>,
    /// What new calls use: routing, flows, settings. Swapped whole on reload; a call
    /// keeps the one it started with.
    current: Arc<ArcSwap<State>>,
    stack: SipStack,
}

impl Server {
    /// Starts the engine on `config`.
    pub async fn start(config: &Config, timers: Timers) -> Result<Server, StartError> {
        let current = Arc::new(ArcSwap::from_pointee(State::first(config)?));
        let transport = TransportConfig {
            listen: config.sip.listen.clone(),
            tls: config.sip.tls.as_ref().map(|t| TlsConfig {
                cert: t.cert.clone(),
                key: t.key.clone(),
                ca: t.ca.clone(),
            }),
            ..TransportConfig::default()
        };
        let stack = SipStack::start(
            StackConfig {
                timers,
                advertised: config.sip.advertised_address.clone(),
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
        Ok(Server {
            transports: stack.transports.clone(),
            engine: stack.engine.clone(),
            current,
            stack,
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
        let state = State::load(config, &self.current.load())?;
        self.current.store(Arc::new(state));
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
        self.stack.shutdown.cancel();
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
