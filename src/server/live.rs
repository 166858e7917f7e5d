//! Keeping what new calls use current: the configuration file (reloaded on SIGHUP)
//! and the store (changed through the management API) are built into one routing
//! table and swapped in whole. Rebuilds are serialised, so the last change written is
//! always in the table that ends up current.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;

use super::{StartError, State};
use crate::call::Engine;
use crate::config::Config;
use crate::flow::{CompileOptions, Flow, compile_str};
use crate::metrics::{LimitLabels, SipLabels};
use crate::routing::{Carrier, TrunkSpec};
use crate::sip::transport::{COUNTED_METHODS, Transports};
use crate::store::Store;

/// The current state and what it is built from.
pub struct Live {
    /// The configuration last loaded.
    config: ArcSwap<Config>,
    /// Held while the state is rebuilt.
    rebuild: tokio::sync::Mutex<()>,
    /// What new calls use.
    pub(crate) current: Arc<ArcSwap<State>>,
    /// The store, when one is configured.
    pub(crate) store: Option<Store>,
    /// The SIP transports (for readiness).
    pub(crate) transports: Option<Arc<Transports>>,
    /// The engine (for metrics).
    pub(crate) engine: Option<Arc<Engine>>,
}

impl Live {
    /// The state of a fresh start: `config` and what `store` holds.
    pub async fn start(config: &Config, store: Option<Store>) -> Result<Live, StartError> {
        let stored = stored(store.as_ref(), config).await?;
        let state = State::first(config, stored, store.clone())?;
        Ok(Live {
            config: ArcSwap::from_pointee(config.clone()),
            rebuild: tokio::sync::Mutex::new(()),
            current: Arc::new(ArcSwap::from_pointee(state)),
            store,
            transports: None,
            engine: None,
        })
    }

    /// Builds the state again from `config` and the store; an invalid configuration is
    /// refused and the current state stays.
    pub async fn reload(&self, config: &Config) -> Result<(), StartError> {
        let _one_at_a_time = self.rebuild.lock().await;
        let stored = stored(self.store.as_ref(), config).await?;
        // Reading and compiling the flows takes milliseconds per hundred flows: on a
        // blocking thread, not the engine's (with one worker, the only thread that
        // serves calls).
        let (next, previous) = (config.clone(), self.current.load_full());
        let state = tokio::task::spawn_blocking(move || State::load(&next, &previous, stored))
            .await
            .map_err(|e| StartError::Flows(format!("loading the flows stopped: {e}")))??;
        self.current.store(Arc::new(state));
        self.config.store(Arc::new(config.clone()));
        Ok(())
    }
}

/// What the store adds to the file: trunks and accounts' flows.
#[derive(Debug, Default)]
pub struct Stored {
    /// Trunks as routing takes them.
    pub trunks: Vec<TrunkSpec>,
    /// Accounts' flows (latest versions), known to routing as `AC…/flow_id`.
    pub flows: Vec<Flow>,
    /// The operator's carriers created over the API.
    pub carriers: Vec<Carrier>,
    /// Accounts' call caps.
    pub accounts: std::collections::HashMap<String, crate::routing::AccountLimits>,
}

/// The store's trunks and flows as routing takes them. A stored flow that no longer
/// compiles (its rules changed) is left out with a warning.
async fn stored(store: Option<&Store>, config: &Config) -> Result<Stored, StartError> {
    let Some(store) = store else {
        return Ok(Stored::default());
    };
    let opts = CompileOptions {
        reserved_header_prefixes: config.reserved_header_prefixes.clone(),
    };
    let mut flows = Vec::new();
    for f in store.flows(None).await.map_err(StartError::Store)? {
        let key = crate::store::flows::routing_id(&f.account_sid, &f.flow_id);
        match compile_str(format!("{key}.yaml").into(), &f.yaml, &opts).flow {
            Some(mut flow) => {
                flow.id = key;
                flows.push(flow);
            }
            None => tracing::warn!(flow = %key, "stored flow no longer compiles; left out"),
        }
    }
    let ids: std::collections::HashSet<&str> = flows.iter().map(|f| f.id.as_str()).collect();
    let trunks = store.all_trunks().await.map_err(StartError::Store)?;
    let trunks = trunks
        .iter()
        .map(|t| crate::api::trunks::routing_spec(t, &|id| ids.contains(id)))
        .collect();
    let carriers = store
        .carriers()
        .await
        .map_err(StartError::Store)?
        .iter()
        .filter_map(crate::api::carriers::routing_carrier)
        .collect();
    let cap = |v: Option<i64>| v.and_then(|n| u32::try_from(n).ok());
    let accounts = store
        .account_limits()
        .await
        .map_err(StartError::Store)?
        .into_iter()
        .map(|(sid, l)| {
            let limits = crate::routing::AccountLimits {
                max_concurrent_calls: cap(l.max_concurrent_calls),
                max_calls_per_day: cap(l.max_calls_per_day),
            };
            (sid, limits)
        })
        .collect();
    Ok(Stored {
        trunks,
        flows,
        carriers,
        accounts,
    })
}

#[async_trait]
impl crate::api::Live for Live {
    async fn refresh(&self) -> Result<(), String> {
        let config = self.config.load_full();
        self.reload(&config).await.map_err(|e| e.to_string())
    }

    fn has_flow(&self, account: &str, id: &str) -> bool {
        let routing = self.current.load().routing.clone();
        let own = crate::store::flows::routing_id(account, id);
        routing.flow(&own).is_some() || (routing.flow(id).is_some() && !id.contains('/'))
    }

    fn number_in_file(&self, number: &str) -> bool {
        let config = self.config.load();
        config
            .trunks
            .iter()
            .any(|t| t.numbers.iter().any(|n| n.number == number))
    }

    fn file_carrier(&self, name: &str) -> bool {
        self.config.load().carriers.iter().any(|c| c.name == name)
    }

    fn file_carriers(&self) -> Vec<serde_json::Value> {
        let config = self.config.load();
        config
            .carriers
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "uri": c.uri.to_string(),
                    "addresses": c.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "priority": c.priority,
                    "max_channels": c.max_channels,
                    "source": "file",
                })
            })
            .collect()
    }

    fn observe(&self) {
        let m = crate::metrics::global();
        let read = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(engine) = &self.engine {
            m.active_calls
                .set(i64::try_from(engine.active_calls()).unwrap_or(i64::MAX));
            let alive = engine.core.layer.alive();
            m.transactions.set(i64::try_from(alive).unwrap_or(i64::MAX));
        }
        if let Some(t) = &self.transports {
            for (reason, n) in [
                ("answered", read(&t.stats.malformed_answered)),
                ("dropped", read(&t.stats.malformed_dropped)),
                ("unframed", read(&t.stats.framing_errors)),
            ] {
                m.sip_malformed
                    .get_or_create(&crate::metrics::ReasonLabels {
                        reason: reason.into(),
                    })
                    .inner()
                    .store(n, std::sync::atomic::Ordering::Relaxed);
            }
            let counts = &t.stats.messages;
            for (d, direction) in ["in", "out"].iter().enumerate() {
                for (i, method) in COUNTED_METHODS.iter().enumerate() {
                    let labels = SipLabels {
                        direction: direction.to_string(),
                        kind: method.to_string(),
                    };
                    let n = counts.requests[d][i].load(std::sync::atomic::Ordering::Relaxed);
                    m.sip_requests
                        .get_or_create(&labels)
                        .inner()
                        .store(n, std::sync::atomic::Ordering::Relaxed);
                }
                for class in 0..6 {
                    let labels = SipLabels {
                        direction: direction.to_string(),
                        kind: format!("{}xx", class + 1),
                    };
                    let n = counts.responses[d][class].load(std::sync::atomic::Ordering::Relaxed);
                    m.sip_responses
                        .get_or_create(&labels)
                        .inner()
                        .store(n, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        let shield = &self.current.load().shield.stats;
        m.shield_dropped
            .inner()
            .store(read(&shield.dropped), std::sync::atomic::Ordering::Relaxed);
        for (reason, n) in [
            ("flood", read(&shield.flood_blocks)),
            ("auth_failures", read(&shield.auth_blocks)),
        ] {
            m.shield_blocks
                .get_or_create(&crate::metrics::ReasonLabels {
                    reason: reason.into(),
                })
                .inner()
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
        for (limit, active) in self.current.load().routing.limits().snapshot() {
            m.channels
                .get_or_create(&LimitLabels { limit })
                .set(i64::from(active));
        }
    }

    fn file_trunks(&self) -> Vec<serde_json::Value> {
        let config = self.config.load();
        config
            .trunks
            .iter()
            .map(|t| {
                serde_json::json!({
                    "trunk_sid": t.sid,
                    "phone_numbers": t.numbers.iter().map(|n| n.number.clone()).collect::<Vec<_>>(),
                    "destinations": t.destinations.iter().map(|d| d.uri().to_string()).collect::<Vec<_>>(),
                    "source": "file",
                })
            })
            .collect()
    }

    fn file_flows(&self) -> Vec<serde_json::Value> {
        let routing = self.current.load().routing.clone();
        routing
            .flows()
            .iter()
            .filter(|f| !f.id.contains('/'))
            .map(|f| serde_json::json!({ "flow_id": f.id, "file": &*f.file, "source": "file" }))
            .collect()
    }

    fn in_progress(&self, account: &str) -> Vec<serde_json::Value> {
        self.current.load().active.of(account)
    }

    async fn terminate(&self, account: &str, sid: &str) -> bool {
        let controller = self.current.load().active.controller(account, sid);
        match controller {
            Some(c) => c.terminate().await,
            None => false,
        }
    }

    async fn redirect(&self, account: &str, sid: &str, flow: &str) -> bool {
        let controller = self.current.load().active.controller(account, sid);
        match controller {
            Some(c) => c.redirect(flow.to_string()).await,
            None => false,
        }
    }

    async fn connect(
        &self,
        account: &str,
        req: crate::api::connect::ConnectRequest,
    ) -> Result<serde_json::Value, crate::api::ApiError> {
        super::connect::connect(self, account, req).await
    }

    fn recording_path(&self, account: &str, sid: &str) -> std::path::PathBuf {
        self.current.load().recordings.path(Some(account), sid)
    }

    fn realm(&self) -> String {
        self.config.load().sip.realm.clone()
    }

    fn compile_options(&self) -> CompileOptions {
        CompileOptions {
            reserved_header_prefixes: self.config.load().reserved_header_prefixes.clone(),
        }
    }

    fn sip_ready(&self) -> bool {
        self.transports
            .as_ref()
            .is_some_and(|t| !t.local_addrs().is_empty())
    }
}
