//! Hangup: end the call. A BYE if the caller was answered, else a final response with
//! `status` (default 480). No outcomes: the flow ends here.

use async_trait::async_trait;

use super::{Applet, Context, DecodeContext};
use crate::lang::decode::{self, MapReader};
use crate::lang::diagnostic::Diagnostics;
use crate::lang::yaml::Node;
use crate::runtime::Step;

/// The kind's name in flow files.
pub const NAME: &str = "hangup";

/// The keys its body may hold.
pub const KEYS: [&str; 1] = ["status"];

/// The final response when the flow names none: 480 Temporarily Unavailable.
pub const DEFAULT_STATUS: u16 = 480;

/// The parameters of a hangup applet.
#[derive(Debug, Clone)]
pub struct Hangup {
    /// SIP status for a caller never answered, 400 to 699.
    pub status: u16,
}

impl Default for Hangup {
    fn default() -> Hangup {
        Hangup {
            status: DEFAULT_STATUS,
        }
    }
}

#[async_trait]
impl Applet for Hangup {
    /// Decodes a hangup body (`{}` or nothing at all is fine).
    fn decode(body: &Node, cx: DecodeContext<'_>, d: &mut Diagnostics) -> Option<Hangup> {
        let what = format!("hangup applet '{}'", cx.applet);
        let mut m = MapReader::new(body, &what, d)?;
        let status = match m.take("status") {
            // A u32 in 400..=699 always fits a u16.
            Some((_, v)) => decode::integer(v, "status", 400..=699, d).map(|s| s as u16),
            None => Some(DEFAULT_STATUS),
        };
        m.finish(d, &KEYS, &what);
        Some(Hangup { status: status? })
    }

    fn takes_transitions() -> Result<(), &'static str> {
        Err("ends the flow and has no outcomes")
    }

    fn kind(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> String {
        format!("hangup {}", self.status)
    }

    fn waits(&self) -> bool {
        false
    }

    async fn run(&self, cx: &mut Context<'_>) -> Step {
        cx.call.hangup(self.status).await;
        Step::Stop
    }
}
