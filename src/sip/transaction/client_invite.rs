//! The INVITE client transaction (RFC 3261 §17.1.1, with RFC 6026's Accepted state).
//!
//! Calling → (1xx) Proceeding → (2xx) Accepted → Terminated after Timer M;
//! Calling/Proceeding → (300–699, ACK sent) Completed → Terminated after Timer D;
//! Calling → Terminated when Timer B fires.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::linger::Kept;
use super::{ClientEvent, Step, Timers, earliest};
use crate::sip::header::Name;
use crate::sip::message::Message;
use crate::sip::method::Method;
use crate::sip::transport::{Outgoing, Target};
use crate::sip::typed::CSeq;

/// The states of §17.1.1 and RFC 6026.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Calling,
    Proceeding,
    Accepted,
    Completed,
}

/// A request that belongs to an INVITE's transaction (its ACK for a non-2xx, or its
/// CANCEL): the INVITE's Request-URI, From, Call-ID, CSeq number and Route, with
/// `method` and the given To (RFC 3261 §9.1, §17.1.1.3).
pub fn request_for_invite(invite: &Message, method: Method, to: &str) -> Option<Message> {
    let uri = invite.request_uri()?.clone();
    let mut m = Message::request(method.clone(), uri);
    m.push_header(Name::MaxForwards, "70");
    m.push_header(Name::From, invite.header(&Name::From)?);
    m.push_header(Name::To, to);
    m.push_header(Name::CallId, invite.header(&Name::CallId)?);
    let seq = invite.cseq().ok()?.seq;
    m.push_header(Name::CSeq, CSeq { seq, method }.to_string());
    for route in invite.header_values(&Name::Route) {
        m.push_header(Name::Route, route);
    }
    Some(m)
}

/// The ACK for a non-2xx final response (§17.1.1.3): the response's To, and the
/// INVITE's top Via (same branch).
pub fn ack_for(invite: &Message, response: &Message) -> Option<Message> {
    let mut ack = request_for_invite(invite, Method::Ack, response.header(&Name::To)?)?;
    ack.prepend_header(Name::Via, invite.header_values(&Name::Via).next()?);
    Some(ack)
}

/// One INVITE client transaction.
#[derive(Debug)]
pub(crate) struct ClientInvite {
    /// Where it is in §17.1.1.
    state: State,
    /// The INVITE, kept until the final response (the ACK for a non-2xx is built
    /// from it).
    request: Option<Arc<Message>>,
    /// The INVITE as sent, resent on Timer A while Calling.
    sent: Option<Outgoing>,
    /// The ACK for a non-2xx final response, resent when the response is.
    ack: Option<Outgoing>,
    /// Whether the target is over TCP or TLS (no Timer A, Timer D is 0).
    reliable: bool,
    /// T1, T2, T4.
    timers: Timers,
    /// The user's end: responses, timeouts, transport errors.
    events: mpsc::Sender<ClientEvent>,
    /// Timer A: when it fires next, and the interval after that.
    timer_a: Option<(Instant, Duration)>,
    /// Timer B: no response in time.
    timer_b: Option<Instant>,
    /// Timer D: absorbing retransmissions of the non-2xx final response.
    timer_d: Option<Instant>,
    /// Timer M: relaying 2xx retransmissions (RFC 6026).
    timer_m: Option<Instant>,
}

impl ClientInvite {
    /// A new transaction for `request` (our Via on top) to `target`; it sends the
    /// INVITE at once.
    pub(crate) fn start(
        request: Arc<Message>,
        target: Target,
        timers: Timers,
        events: mpsc::Sender<ClientEvent>,
        now: Instant,
    ) -> (ClientInvite, Step) {
        let reliable = target.transport.is_reliable();
        let sent = Outgoing::new(target, &request);
        let tx = ClientInvite {
            state: State::Calling,
            request: Some(request),
            sent: Some(sent.clone()),
            ack: None,
            reliable,
            timers,
            events,
            timer_a: (!reliable).then(|| (now + timers.t1, timers.t1)),
            timer_b: Some(now + timers.t1x64()),
            timer_d: None,
            timer_m: None,
        };
        let step = tx.step(Some(sent), None);
        (tx, step)
    }

    fn step(&self, send: Option<Outgoing>, report: Option<ClientEvent>) -> Step {
        Step::for_user(&self.events, send, report)
    }

    /// Whether its user is gone and nothing is left for it to do: Accepted, whose
    /// 2xx retransmissions go to the core as stray responses once it has ended,
    /// which the dialog acknowledges (RFC 6026 §8.4).
    pub(crate) fn user_gone(&self) -> bool {
        self.state == State::Accepted && self.events.is_closed()
    }

    /// Its user let it go. Accepted ends at once. Calling and Proceeding wait for
    /// the final response, to acknowledge a non-2xx one (§17.1.1.3), for 64·T1 at
    /// most, as a UAC waits after a CANCEL (§9.1); Completed still answers the final
    /// response's retransmissions with its ACK until Timer D.
    pub(crate) fn on_user_gone(&mut self, now: Instant) -> Step {
        match self.state {
            State::Accepted => Step::ended(),
            State::Calling | State::Proceeding => {
                let limit = now + self.timers.t1x64();
                self.timer_b = Some(self.timer_b.map_or(limit, |b| b.min(limit)));
                Step::default()
            }
            State::Completed => Step::default(),
        }
    }

    /// Whether a response with `status` that matched goes to the core instead, and
    /// ends the transaction: once its user is gone, a 2xx is the core's (RFC 6026
    /// §8.4), as is anything after Accepted.
    pub(crate) fn passes_on(&self, status: u16) -> bool {
        self.events.is_closed()
            && match self.state {
                State::Accepted => true,
                State::Calling | State::Proceeding => (200..300).contains(&status),
                State::Completed => false,
            }
    }

    /// A response that matched.
    pub(crate) fn on_response(&mut self, response: Message, now: Instant) -> Step {
        let status = response.status().unwrap_or(0);
        let report = Some(ClientEvent::Response(Box::new(response)));
        match (self.state, status) {
            (State::Calling | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.leave_calling();
                self.step(None, report)
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                // Accepted only relays 2xx retransmissions for Timer M's 32 s.
                self.state = State::Accepted;
                self.leave_calling();
                self.request = None;
                self.timer_m = Some(now + self.timers.t1x64());
                self.step(None, report)
            }
            (State::Calling | State::Proceeding, 300..) => {
                self.state = State::Completed;
                self.leave_calling();
                self.timer_d = Some(now + self.timers.d(self.reliable));
                let ack = match (&self.request, &report) {
                    (Some(invite), Some(ClientEvent::Response(r))) => ack_for(invite, r),
                    _ => None,
                };
                let target = self.sent_target();
                self.ack = ack.zip(target).map(|(a, t)| Outgoing::new(t, &a));
                self.request = None;
                self.sent = None;
                self.step(self.ack.clone(), report)
            }
            (State::Completed, 300..) => self.step(self.ack.clone(), None),
            (State::Accepted, 200..=299) => self.step(None, report),
            _ => Step::default(),
        }
    }

    /// Where the INVITE went.
    fn sent_target(&self) -> Option<Target> {
        self.sent.as_ref().map(|s| s.target.clone())
    }

    /// Stops Timers A and B.
    fn leave_calling(&mut self) {
        self.timer_a = None;
        self.timer_b = None;
    }

    /// Whatever timer is due at `now`.
    pub(crate) fn on_timer(&mut self, now: Instant) -> Step {
        if self.user_gone() {
            return Step::ended();
        }
        if self.timer_b.is_some_and(|at| at <= now) {
            return Step::timed_out(&self.events);
        }
        if self.timer_d.is_some_and(|at| at <= now) || self.timer_m.is_some_and(|at| at <= now) {
            return Step::ended();
        }
        match self.timer_a {
            Some((at, interval)) if at <= now => {
                self.timer_a = Some((now + interval * 2, interval * 2));
                self.step(self.sent.clone(), None)
            }
            _ => Step::default(),
        }
    }

    /// Completed over UDP only answers the final response's retransmissions with
    /// its ACK until Timer D.
    pub(crate) fn lingering(&self) -> Option<(Duration, Kept<'_>)> {
        if self.state != State::Completed || self.reliable {
            return None;
        }
        let kept = match &self.ack {
            Some(ack) => Kept::resending(ack)?,
            None => Kept::Absorb,
        };
        Some((self.timers.d(false), kept))
    }

    /// When the next timer fires.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        earliest([
            self.timer_a.map(|a| a.0),
            self.timer_b,
            self.timer_d,
            self.timer_m,
        ])
    }
}
