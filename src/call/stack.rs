//! The SIP stack put together: transports, the transaction layer and the engine,
//! with the tasks that connect them. `callflow serve`, the tests and the examples all
//! build it here.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::core::MediaConfig;
use super::engine::{CallHandler, Engine};
use crate::sip::resolve::Resolver;
use crate::sip::transaction::{Gate, Timers, TransactionLayer};
use crate::sip::transport::{TransportConfig, Transports};
use crate::sip::uri::Host;

/// How to build a stack.
pub struct StackConfig {
    /// Listeners, TLS, idle timeout.
    pub transport: TransportConfig,
    /// RFC 3261's T1, T2 and T4.
    pub timers: Timers,
    /// The address put in Via and Contact, for NAT.
    pub advertised: Option<Host>,
    /// How the URIs calls dial are resolved.
    pub resolver: Resolver,
    /// What new out-of-dialog INVITEs pass before they get a transaction.
    pub gate: Option<Arc<dyn Gate>>,
    /// Where calls' media is anchored (`None`: SDP pass-through).
    pub media: Option<MediaConfig>,
}

impl StackConfig {
    /// A stack on `transport` with the RFC's timers and the system's resolver.
    pub fn new(transport: TransportConfig) -> StackConfig {
        StackConfig {
            transport,
            timers: Timers::default(),
            advertised: None,
            resolver: Resolver::system(),
            gate: None,
            media: None,
        }
    }
}

/// A running SIP stack.
pub struct SipStack {
    /// The transports (for their addresses and counters).
    pub transports: Arc<Transports>,
    /// The engine that hands each new INVITE to the handler.
    pub engine: Arc<Engine>,
    /// Cancelling it closes the listeners and ends the stack's tasks.
    pub shutdown: CancellationToken,
}

impl SipStack {
    /// Binds the listeners and starts the transaction layer and the engine; each new
    /// call goes to `handler`.
    pub async fn start(config: StackConfig, handler: CallHandler) -> std::io::Result<SipStack> {
        let shutdown = CancellationToken::new();
        let (transports, incoming) = Transports::bind(config.transport, shutdown.clone()).await?;
        let layer = TransactionLayer::new(transports.clone(), config.timers, config.advertised);
        if let Some(gate) = config.gate {
            layer.set_gate(gate);
        }
        let (core_tx, core_rx) = mpsc::channel(8192);
        tokio::spawn(layer.clone().run(incoming, core_tx));
        let engine = Engine::with_resolver(layer, handler, config.resolver, config.media);
        tokio::spawn(engine.clone().run(core_rx));
        Ok(SipStack {
            transports,
            engine,
            shutdown,
        })
    }
}

impl Drop for SipStack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A dropped stack lets everything go: the transaction layer's loop and the
    /// engine's end, and the engine (with the layer it holds) is freed.
    #[tokio::test]
    async fn a_dropped_stack_ends_its_tasks() {
        let transport = TransportConfig {
            listen: vec!["udp://127.0.0.1:0".parse().unwrap()],
            ..Default::default()
        };
        let handler: CallHandler = Arc::new(|_call| Box::pin(async {}));
        let stack = SipStack::start(StackConfig::new(transport), handler)
            .await
            .unwrap();
        let engine = Arc::downgrade(&stack.engine);
        drop(stack);
        for _ in 0..200 {
            if engine.upgrade().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the engine outlived its stack by 2 s");
    }
}
