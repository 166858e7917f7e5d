//! The engine's gate (see [`crate::sip::transaction::Gate`]): an INVITE from a
//! carrier's or a trunk's address gets a transaction; one from anywhere else is
//! answered statelessly. When some trunk authenticates by digest, every such INVITE
//! without credentials gets the same challenge whatever its From (no list of valid
//! caller ids), and one with credentials gets a transaction to be checked in; when no
//! trunk does, `sip.unknown_sources` says whether it gets nothing (the default) or one
//! 403. Each is counted (`callflow_calls_rejected_total{reason="unknown_source"}`),
//! never logged per packet.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::State;
use crate::config::UnknownSources;
use crate::sip::Name;
use crate::sip::dialog::new_tag;
use crate::sip::message::Message;
use crate::sip::transaction::{Admission, Gate};

/// The gate over the state that is current when an INVITE arrives.
pub struct SourceGate {
    /// What new calls use.
    pub current: Arc<ArcSwap<State>>,
}

impl Gate for SourceGate {
    fn admit(&self, request: &Message, source: SocketAddr) -> Admission {
        let state = self.current.load();
        let routing = &state.routing;
        if routing.is_known_source(source.ip()) {
            return Admission::Admit;
        }
        let digest = routing.has_digest_trunks();
        if digest && request.header(&Name::parse("Authorization")).is_some() {
            return Admission::Admit;
        }
        crate::metrics::global().reject("unknown_source");
        if digest {
            let mut r = response(request, 401);
            for v in state.auth.challenge(false, source.ip()) {
                r.push_header(Name::parse("WWW-Authenticate"), v);
            }
            return Admission::Answer(Box::new(r));
        }
        match state.unknown_sources {
            UnknownSources::Drop => Admission::Drop,
            UnknownSources::Reject => Admission::Answer(Box::new(response(request, 403))),
        }
    }
}

/// A final response to `request` with a To tag (RFC 3261 §8.2.6.2).
fn response(request: &Message, status: u16) -> Message {
    let mut r = Message::response_to(request, status);
    let _ = r.set_to_tag(&new_tag());
    r
}
