//! What every new call uses: the routing table (with its flows, from the file and the
//! store), the webhook client,
//! the runtime settings and the digest authenticator. Loaded at start, loaded again
//! on reload and swapped whole; a call keeps the one it started with.

use std::sync::Arc;

use super::StartError;
use super::live::Stored;
use crate::config::Config;
use crate::flow::{CompileOptions, Flow, Loaded, load_paths};
use crate::routing::{Extra, Kept, Routing};
use crate::runtime::Settings;
use crate::sip::digest::Authenticator;
use crate::webhook::WebhookClient;

/// What every call's handler shares.
pub struct State {
    /// Numbers, trunks, carriers, flows, health and limits.
    pub routing: Arc<Routing>,
    /// The webhook client of the operator's flows.
    pub http: WebhookClient,
    /// The webhook client of accounts' flows and of what accounts give over the API
    /// (status callback URLs): public addresses only, unless `webhooks.allow_private`.
    pub account_http: WebhookClient,
    /// Runtime settings.
    pub settings: Settings,
    /// Digest challenges for trunks with credentials (kept across reloads).
    pub auth: Authenticator,
    /// The store, for call records.
    pub store: Option<crate::store::Store>,
    /// What an INVITE from an unknown source gets when no trunk uses digest.
    pub unknown_sources: crate::config::UnknownSources,
    /// Blocks flooding and guessing sources (kept across reloads).
    pub shield: Arc<crate::sip::shield::Shield>,
    /// The calls in progress (shared by every state, kept across reloads).
    pub active: std::sync::Arc<super::active::ActiveCalls>,
    /// Where recordings go (kept across reloads).
    pub recordings: Arc<super::recordings::Recordings>,
}

impl State {
    /// The state of a fresh start, with the `stored` trunks.
    pub fn first(
        config: &Config,
        stored: Stored,
        store: Option<crate::store::Store>,
    ) -> Result<State, StartError> {
        let http = WebhookClient::new().map_err(|e| StartError::Http(e.to_string()))?;
        let auth = Authenticator::new(&config.sip.realm);
        let mut state = Self::build(config, stored, http, auth, Kept::default())?;
        state.store = store;
        Ok(state)
    }

    /// Loads the flows and builds the routing of `config`, keeping from `previous`
    /// what outlives a reload: the HTTP client, the limits' counters, the digest
    /// secret and what the pings found.
    pub fn load(config: &Config, previous: &State, stored: Stored) -> Result<State, StartError> {
        let mut state = Self::build(
            config,
            stored,
            previous.http.clone(),
            if previous.auth.realm() == config.sip.realm {
                previous.auth.clone()
            } else {
                Authenticator::new(&config.sip.realm)
            },
            previous.routing.kept(),
        )?;
        state.store = previous.store.clone();
        state.active = previous.active.clone();
        state.shield = previous.shield.clone();
        state.recordings = previous.recordings.clone();
        Ok(state)
    }

    fn build(
        config: &Config,
        stored: Stored,
        http: WebhookClient,
        auth: Authenticator,
        kept: Kept,
    ) -> Result<State, StartError> {
        let mut flows = load_flows(config)?;
        flows.extend(stored.flows);
        let extra = Extra {
            trunks: stored.trunks,
            carriers: stored.carriers,
            accounts: stored.accounts,
        };
        let routing = Routing::build_with(config, extra, flows, kept)?;
        let auth = auth.offering_md5(routing.md5_offered());
        let account_http = if config.webhooks.allow_private {
            http.clone()
        } else {
            WebhookClient::public_only().map_err(|e| StartError::Http(e.to_string()))?
        };
        Ok(State {
            routing: Arc::new(routing),
            http,
            account_http,
            settings: Settings {
                webhook_timeout: config.webhooks.timeout,
                max_attempts_after_fetch: config.webhooks.max_attempts_after_fetch,
                reserved_prefixes: config.reserved_header_prefixes.clone(),
            },
            auth,
            unknown_sources: config.sip.unknown_sources,
            shield: Arc::new(crate::sip::shield::Shield::new(config.sip.shield.shield())),
            store: None,
            active: std::sync::Arc::default(),
            recordings: Arc::new(super::recordings::Recordings::new(
                config.recordings.dir.clone(),
                config.recordings.url.clone(),
            )),
        })
    }
}

impl State {
    /// The webhook clients of a call's flows.
    pub fn webhooks(&self) -> crate::flow::executor::Webhooks<'_> {
        crate::flow::executor::Webhooks {
            operator: &self.http,
            account: &self.account_http,
        }
    }
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
