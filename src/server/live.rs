//! Keeping what new calls use current: the configuration file (reloaded on SIGHUP)
//! and the store (changed through the management API) are built into one routing
//! table and swapped in whole. Rebuilds are serialised, so the last change written is
//! always in the table that ends up current.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;

use super::{StartError, State};
use crate::config::Config;
use crate::routing::TrunkSpec;
use crate::sip::transport::Transports;
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
}

impl Live {
    /// The state of a fresh start: `config` and what `store` holds.
    pub async fn start(config: &Config, store: Option<Store>) -> Result<Live, StartError> {
        let stored = stored(store.as_ref()).await?;
        let state = State::first(config, stored)?;
        Ok(Live {
            config: ArcSwap::from_pointee(config.clone()),
            rebuild: tokio::sync::Mutex::new(()),
            current: Arc::new(ArcSwap::from_pointee(state)),
            store,
            transports: None,
        })
    }

    /// Builds the state again from `config` and the store; an invalid configuration is
    /// refused and the current state stays.
    pub async fn reload(&self, config: &Config) -> Result<(), StartError> {
        let _one_at_a_time = self.rebuild.lock().await;
        let stored = stored(self.store.as_ref()).await?;
        let state = State::load(config, &self.current.load(), stored)?;
        self.current.store(Arc::new(state));
        self.config.store(Arc::new(config.clone()));
        Ok(())
    }
}

/// The store's trunks as routing takes them.
async fn stored(store: Option<&Store>) -> Result<Vec<TrunkSpec>, StartError> {
    let Some(store) = store else {
        return Ok(Vec::new());
    };
    let trunks = store.all_trunks().await.map_err(StartError::Store)?;
    Ok(trunks
        .iter()
        .map(crate::api::trunks::routing_spec)
        .collect())
}

#[async_trait]
impl crate::api::Live for Live {
    async fn refresh(&self) -> Result<(), String> {
        let config = self.config.load_full();
        self.reload(&config).await.map_err(|e| e.to_string())
    }

    fn has_flow(&self, id: &str) -> bool {
        self.current.load().routing.flow(id).is_some()
    }

    fn number_in_file(&self, number: &str) -> bool {
        let config = self.config.load();
        config
            .trunks
            .iter()
            .any(|t| t.numbers.iter().any(|n| n.number == number))
    }

    fn sip_ready(&self) -> bool {
        self.transports
            .as_ref()
            .is_some_and(|t| !t.local_addrs().is_empty())
    }
}
