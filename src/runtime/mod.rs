//! The runtime contract: what the applets and the executor share, and what the layers
//! below (the live call, the webhook client, the routing table) implement for them.
//!
//! This module is a leaf of the upper half: it imports nothing of callflow but the
//! SIP URI type and the language kernel's header prefixes. The live SIP engine implements [`CallControl`], `callflow simulate`
//! and the unit tests implement it with scripted legs; the webhook client implements
//! [`Http`]; the routing table implements [`Directory`]. One executor, two worlds.
//! See docs/architecture.md §2 for where it sits.

pub mod json;
pub mod leg;
pub mod query;
pub mod record;

use std::time::Duration;

use async_trait::async_trait;

pub use leg::{LegEnd, LegError, LegMedia, LegOutcome, LegRequest};
pub use query::Query;
pub use record::{CallRecord, CallStatus, CallbackAttempt, LegTrace, StepTrace, WebhookTrace};

use crate::sip::SipUri;

/// What the flow runtime needs from a call.
#[async_trait]
pub trait CallControl: Send {
    /// Places a far leg and bridges it when answered.
    async fn dial(&mut self, leg: LegRequest) -> LegOutcome;
    /// Rings every leg at once and bridges the first that answers.
    async fn dial_parallel(&mut self, legs: Vec<LegRequest>, ring: Duration) -> LegOutcome;
    /// Waits while bridged, until a leg ends or `max` passes.
    async fn wait(&mut self, max: Duration) -> LegEnd;
    /// Ends the call (BYE, or `status` to a caller never answered).
    async fn hangup(&mut self, status: u16);
    /// Serves the call (retransmissions, stray requests) until the caller hangs up
    /// or cancels, or the call is moved into another flow.
    async fn until_caller_gone(&mut self);
    /// The flow the call was asked to move into (by the calls API), taken once.
    fn take_redirect(&mut self) -> Option<String> {
        None
    }
    /// Whether the caller has hung up or cancelled.
    fn caller_gone(&self) -> bool;
    /// Whether the caller has been answered.
    fn answered(&self) -> bool;
    /// Whether the caller cancelled before being answered.
    fn caller_cancelled(&self) -> bool {
        false
    }
    /// Records the call from the next far leg's answer (or from now, when one is
    /// bridged) to its end: both parties on one channel, or the caller left and the
    /// far party right (`dual`). Why it cannot, when it cannot.
    async fn record(&mut self, _dual: bool) -> Result<(), String> {
        Ok(())
    }
}

/// A webhook's answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Why a webhook request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// The connection could not be made.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The answer's body was larger than allowed.
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    /// The URL leads to an address this flow may not reach (loopback, private,
    /// link-local: an account's flow without `webhooks.allow_private`).
    #[error("{0} is a private address; an account's flow may not call it")]
    Private(String),
    /// Any other failure (TLS, protocol, a bad URL).
    #[error("{0}")]
    Other(String),
}

/// What the flow runtime needs to call webhooks.
#[async_trait]
pub trait Http: Send + Sync {
    /// `GET url?query`, within `timeout`.
    async fn get(
        &self,
        url: &str,
        query: &Query,
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError>;
    /// `GET url?query` in the background: the caller does not wait (async passthru).
    fn spawn_get(&self, url: &str, query: &Query, timeout: Duration);
    /// `POST url` with a JSON body, within `timeout`; the HTTP status.
    async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<u16, HttpError>;
}

/// A trunk's destinations as a call dials them now.
#[derive(Debug, Clone)]
pub struct TrunkRoute {
    /// The destinations to try, in order (those down skipped while any is up).
    pub destinations: Vec<SipUri>,
    /// The Request-URI user on calls to the trunk, instead of the dialled number.
    pub external_alias: Option<String>,
    /// How its legs' media is offered.
    pub media: LegMedia,
}

/// One carrier a PSTN number can be dialled through.
#[derive(Debug, Clone)]
pub struct CarrierRoute {
    /// The carrier's name (its channel limit's key).
    pub name: String,
    /// Where its calls go.
    pub uri: SipUri,
}

/// A leg's hold on a channel of a limited carrier; the channel is free again when it
/// is dropped.
pub type Channel = Box<dyn Send + Sync>;

/// Why the directory cannot give a trunk's route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// No trunk has this sid.
    #[error("trunk '{0}' does not exist")]
    NoTrunk(String),
    /// The trunk exists but has nowhere to send calls.
    #[error("trunk '{0}' has no destinations")]
    NoDestinations(String),
}

/// Trunks and carriers as connect dials them, without the routing table itself.
pub trait Directory: Send + Sync {
    /// The destinations of trunk `sid`, in the order to try them now.
    fn trunk(&self, sid: &str) -> Result<TrunkRoute, DirectoryError>;
    /// The carriers, in the order to try them now (empty: no carrier configured).
    fn carriers(&self) -> Vec<CarrierRoute>;
    /// Takes a channel of carrier `name` for one leg; `None` when it is full.
    fn carrier_channel(&self, name: &str) -> Option<Channel>;
    /// Whether a carrier's final status moves the call on to the next carrier
    /// (408, 5xx, 6xx by default).
    fn fails_over(&self, status: u16) -> bool;
    /// Whether this call may reach `number` through the carriers; `Err` says why not
    /// (a toll-fraud limit of the call's trunk).
    fn destination_allowed(&self, _number: &str) -> Result<(), String> {
        Ok(())
    }
}

/// What running one applet gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The applet yielded this outcome; the edge with this label gives the next.
    Outcome(String),
    /// The call ended inside the applet (caller gone, hung up, or its limit).
    Stop,
}

impl Step {
    /// The outcome named `name`.
    pub fn outcome(name: impl Into<String>) -> Step {
        Step::Outcome(name.into())
    }
}

/// Settings the runtime takes from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Default webhook timeout.
    pub webhook_timeout: Duration,
    /// Most dynamic-URL requests after unanswered attempts.
    pub max_attempts_after_fetch: u32,
    /// Reserved custom-header prefixes.
    pub reserved_prefixes: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            webhook_timeout: Duration::from_secs(5),
            max_attempts_after_fetch: 5,
            reserved_prefixes: crate::lang::headers::DEFAULT_RESERVED_PREFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}
