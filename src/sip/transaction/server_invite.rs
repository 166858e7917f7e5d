//! The INVITE server transaction (RFC 3261 §17.2.1, with RFC 6026's Accepted state).
//!
//! Proceeding → (2xx) Accepted → Terminated after Timer L;
//! Proceeding → (300–699) Completed → (ACK) Confirmed → Terminated after Timer I,
//! or Completed → Terminated when Timer H fires with no ACK.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Step, Timers, abandoned_answer, earliest};
use crate::sip::message::Message;
use crate::sip::method::Method;
use crate::sip::transport::{Outgoing, Transports};

/// The states of §17.2.1 and RFC 6026.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
}

/// One INVITE server transaction: its state, what it resends, and its timers.
#[derive(Debug)]
pub(crate) struct ServerInvite {
    /// Where it is in §17.2.1.
    state: State,
    /// The INVITE, kept until the final response (a 500 is built from it if the
    /// user abandons the transaction).
    request: Option<Arc<Message>>,
    /// Where the INVITE came from.
    source: SocketAddr,
    /// Whether it came over TCP or TLS (no retransmissions, Timer I is 0).
    reliable: bool,
    /// T1, T2, T4.
    timers: Timers,
    /// The last provisional response (100 Trying at first), resent when the INVITE
    /// is; dropped once the transaction leaves Proceeding.
    provisional: Option<Outgoing>,
    /// The final non-2xx response, resent on Timer G and INVITE retransmissions.
    last_final: Option<Outgoing>,
    /// Timer G: when it fires next, and the interval after that.
    timer_g: Option<(Instant, Duration)>,
    /// Timer H: giving up waiting for the ACK.
    timer_h: Option<Instant>,
    /// Timer I: absorbing ACK retransmissions.
    timer_i: Option<Instant>,
    /// Timer L: relaying 2xx retransmissions (RFC 6026).
    timer_l: Option<Instant>,
}

impl ServerInvite {
    /// A new transaction for `request`; it sends 100 Trying at once (the B2BUA's
    /// answer depends on the network, §17.2.1).
    pub(crate) fn start(
        request: &Arc<Message>,
        source: SocketAddr,
        reliable: bool,
        timers: Timers,
        transports: &Transports,
    ) -> (ServerInvite, Step) {
        let trying = Message::response_to(request, 100);
        let provisional = transports.prepare_response(&trying, Some(source)).ok();
        let step = Step::sending(provisional.clone());
        let tx = ServerInvite {
            state: State::Proceeding,
            request: Some(Arc::clone(request)),
            source,
            reliable,
            timers,
            provisional,
            last_final: None,
            timer_g: None,
            timer_h: None,
            timer_i: None,
            timer_l: None,
        };
        (tx, step)
    }

    /// The INVITE again, or the ACK for a non-2xx final response.
    pub(crate) fn on_request(&mut self, method: Option<&Method>, now: Instant) -> Step {
        match (self.state, method) {
            (State::Proceeding, Some(Method::Invite)) => Step::sending(self.provisional.clone()),
            (State::Completed, Some(Method::Invite)) => Step::sending(self.last_final.clone()),
            (State::Completed, Some(Method::Ack)) => {
                self.state = State::Confirmed;
                self.timer_g = None;
                self.timer_h = None;
                self.timer_i = Some(now + self.timers.t4_unless_reliable(self.reliable));
                Step::default()
            }
            _ => Step::default(), // absorbed
        }
    }

    /// The user's response.
    pub(crate) fn on_respond(
        &mut self,
        response: &Message,
        transports: &Transports,
        now: Instant,
    ) -> Step {
        let status = response.status().unwrap_or(500);
        if !matches!(
            (self.state, status),
            (State::Proceeding, 101..) | (State::Accepted, 200..=299)
        ) {
            return Step::default();
        }
        let Ok(out) = transports.prepare_response(response, Some(self.source)) else {
            tracing::debug!("response has no usable Via; not sent");
            return Step::default();
        };
        match (self.state, status) {
            (State::Proceeding, 101..=199) => self.provisional = Some(out.clone()),
            (State::Proceeding, 200..=299) => {
                // Accepted only relays the core's 2xx retransmissions (§13.3.1.4):
                // the INVITE and the 1xx are not needed for Timer L's 32 s.
                self.state = State::Accepted;
                self.timer_l = Some(now + self.timers.t1x64());
                self.request = None;
                self.provisional = None;
            }
            (State::Proceeding, _) => self.complete(out.clone(), now),
            _ => {}
        }
        Step::sending(Some(out))
    }

    /// Every handle dropped: answer 500 if no final response was sent.
    pub(crate) fn on_abandoned(&mut self, transports: &Transports, now: Instant) -> Step {
        if self.state != State::Proceeding {
            return Step::default();
        }
        tracing::warn!("INVITE abandoned without a final response; answering 500");
        match abandoned_answer(self.request.as_deref(), self.source, transports) {
            Some(out) => {
                self.complete(out.clone(), now);
                Step::sending(Some(out))
            }
            None => Step::ended(),
        }
    }

    /// Enters Completed with `last_final` sent.
    fn complete(&mut self, last_final: Outgoing, now: Instant) {
        self.state = State::Completed;
        self.last_final = Some(last_final);
        self.request = None;
        self.provisional = None;
        if !self.reliable {
            self.timer_g = Some((now + self.timers.t1, self.timers.t1));
        }
        self.timer_h = Some(now + self.timers.t1x64());
    }

    /// Whatever timer is due at `now`.
    pub(crate) fn on_timer(&mut self, now: Instant) -> Step {
        if self.timer_h.is_some_and(|at| at <= now) {
            tracing::debug!("Timer H: no ACK for the final response");
            return Step::ended();
        }
        if self.timer_i.is_some_and(|at| at <= now) || self.timer_l.is_some_and(|at| at <= now) {
            return Step::ended();
        }
        match self.timer_g {
            Some((at, interval)) if at <= now => {
                let interval = (interval * 2).min(self.timers.t2);
                self.timer_g = Some((now + interval, interval));
                Step::sending(self.last_final.clone())
            }
            _ => Step::default(),
        }
    }

    /// When the next timer fires.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        earliest([
            self.timer_g.map(|g| g.0),
            self.timer_h,
            self.timer_i,
            self.timer_l,
        ])
    }
}
