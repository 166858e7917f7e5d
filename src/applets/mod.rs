//! The applets a flow is made of. Each turns its inputs into a named outcome; the flow
//! runtime only follows outcomes along the graph's edges.
//!
//! This module holds what every applet shares: the kinds, how a kind's body is decoded
//! from a flow file, which outcomes it has, and whether it waits on the caller or the
//! network (a cycle that never waits would spin forever).

pub mod connect;
pub mod hangup;
pub mod passthru;
pub mod switchcase;

pub use connect::Connect;
pub use hangup::Hangup;
pub use passthru::Passthru;
pub use switchcase::Switchcase;

use crate::flow::diagnostic::Diagnostics;
use crate::flow::yaml::Node;

/// The applet kinds, as written in flow files.
pub const KINDS: [&str; 4] = ["connect", "passthru", "switchcase", "hangup"];

/// What an applet's decoder needs to know besides its body.
#[derive(Debug, Clone, Copy)]
pub struct DecodeContext<'a> {
    /// The applet's id, for messages.
    pub applet: &'a str,
    /// Header prefixes reserved for the platform.
    pub reserved_prefixes: &'a [String],
}

/// An applet's kind and its compiled parameters.
#[derive(Debug, Clone)]
pub enum AppletKind {
    /// Place a call leg and bridge it to the caller.
    Connect(Connect),
    /// Ask a webhook, branch on its answer.
    Passthru(Passthru),
    /// Branch on the value of an expression.
    Switchcase(Switchcase),
    /// End the call.
    Hangup(Hangup),
}

impl AppletKind {
    /// Decodes the body of a `kind:` key; records errors and returns `None` on failure.
    pub fn decode(
        kind: &str,
        body: &Node,
        cx: DecodeContext<'_>,
        d: &mut Diagnostics,
    ) -> Option<AppletKind> {
        match kind {
            "connect" => Connect::decode(body, cx, d).map(AppletKind::Connect),
            "passthru" => Passthru::decode(body, cx, d).map(AppletKind::Passthru),
            "switchcase" => Switchcase::decode(body, cx, d).map(AppletKind::Switchcase),
            "hangup" => Hangup::decode(body, cx, d).map(AppletKind::Hangup),
            _ => None,
        }
    }

    /// The kind's name as written in flow files.
    pub fn name(&self) -> &'static str {
        match self {
            AppletKind::Connect(_) => "connect",
            AppletKind::Passthru(_) => "passthru",
            AppletKind::Switchcase(_) => "switchcase",
            AppletKind::Hangup(_) => "hangup",
        }
    }

    /// Whether running the applet waits on the caller or the network.
    pub fn waits(&self) -> bool {
        match self {
            AppletKind::Connect(_) => true,
            AppletKind::Passthru(p) => !p.is_async,
            AppletKind::Switchcase(_) | AppletKind::Hangup(_) => false,
        }
    }

    /// The outcomes that end the flow with a hangup when no transition names them
    /// (outcomes with a fallback, like connect's `busy`, are left out).
    pub fn expected_outcomes(&self) -> Vec<&'static str> {
        match self {
            AppletKind::Connect(c) => c.expected_outcomes(),
            AppletKind::Passthru(p) => p.expected_outcomes(),
            AppletKind::Switchcase(_) | AppletKind::Hangup(_) => Vec::new(),
        }
    }

    /// The outcome to follow when `outcome` has no transition of its own.
    pub fn fallback(&self, outcome: &str) -> Option<&'static str> {
        match self {
            AppletKind::Connect(_) => connect::fallback(outcome),
            AppletKind::Passthru(_) => passthru::fallback(outcome),
            _ => None,
        }
    }

    /// One line that says what the applet does, for graphs.
    pub fn summary(&self) -> String {
        match self {
            AppletKind::Connect(c) => c.summary(),
            AppletKind::Passthru(p) => format!("passthru {}", p.url.source),
            AppletKind::Switchcase(s) => format!("switchcase {}", s.value.source),
            AppletKind::Hangup(h) => format!("hangup {}", h.status),
        }
    }
}
