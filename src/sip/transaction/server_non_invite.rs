//! The non-INVITE server transaction (RFC 3261 §17.2.2).
//!
//! Trying → (1xx) Proceeding → (final) Completed → Terminated after Timer J.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::linger::Kept;
use super::{Step, Timers, abandoned_answer};
use crate::sip::message::Message;
use crate::sip::transport::{Outgoing, Transports};

/// The states of §17.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
}

/// One non-INVITE server transaction.
#[derive(Debug)]
pub(crate) struct ServerNonInvite {
    /// Where it is in §17.2.2.
    state: State,
    /// The request, kept until the final response (for a 500 if abandoned).
    request: Option<Arc<Message>>,
    /// Where the request came from.
    source: SocketAddr,
    /// Whether it came over TCP or TLS (Timer J is 0).
    reliable: bool,
    /// T1, T2, T4.
    timers: Timers,
    /// The last response sent, resent when the request is.
    last: Option<Outgoing>,
    /// Timer J: absorbing request retransmissions in Completed.
    timer_j: Option<Instant>,
}

impl ServerNonInvite {
    /// A new transaction for `request`.
    pub(crate) fn start(
        request: &Arc<Message>,
        source: SocketAddr,
        reliable: bool,
        timers: Timers,
    ) -> (ServerNonInvite, Step) {
        let tx = ServerNonInvite {
            state: State::Trying,
            request: Some(Arc::clone(request)),
            source,
            reliable,
            timers,
            last: None,
            timer_j: None,
        };
        (tx, Step::default())
    }

    /// The request again.
    pub(crate) fn on_request(&mut self) -> Step {
        match self.state {
            State::Trying => Step::default(),
            _ => Step::sending(self.last.clone()),
        }
    }

    /// The user's response.
    pub(crate) fn on_respond(
        &mut self,
        response: &Message,
        transports: &Transports,
        now: Instant,
    ) -> Step {
        if self.state == State::Completed {
            return Step::default();
        }
        let Ok(out) = transports.prepare_response(response, Some(self.source)) else {
            tracing::debug!("response has no usable Via; not sent");
            return Step::default();
        };
        if response.status().is_some_and(|s| s < 200) {
            self.state = State::Proceeding;
            self.last = Some(out.clone());
        } else {
            self.complete(out.clone(), now);
        }
        Step::sending(Some(out))
    }

    /// Every handle dropped: answer 500 if no final response was sent.
    pub(crate) fn on_abandoned(&mut self, transports: &Transports, now: Instant) -> Step {
        if self.state == State::Completed {
            return Step::default();
        }
        match abandoned_answer(self.request.as_deref(), self.source, transports) {
            Some(out) => {
                self.complete(out.clone(), now);
                Step::sending(Some(out))
            }
            None => Step::ended(),
        }
    }

    /// Enters Completed: only `last` is resent for Timer J's 32 s.
    fn complete(&mut self, last: Outgoing, now: Instant) {
        self.state = State::Completed;
        self.last = Some(last);
        self.request = None;
        let j = if self.reliable {
            Duration::ZERO
        } else {
            self.timers.t1x64()
        };
        self.timer_j = Some(now + j);
    }

    /// Timer J ends it.
    pub(crate) fn on_timer(&mut self, now: Instant) -> Step {
        if self.timer_j.is_some_and(|at| at <= now) {
            Step::ended()
        } else {
            Step::default()
        }
    }

    /// When Timer J fires.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.timer_j
    }

    /// Completed over UDP only resends its final response until Timer J.
    pub(crate) fn lingering(&self) -> Option<(Duration, Kept<'_>)> {
        match (&self.state, &self.last) {
            (State::Completed, Some(last)) if !self.reliable => {
                Some((self.timers.t1x64(), Kept::resending(last)?))
            }
            _ => None,
        }
    }
}
