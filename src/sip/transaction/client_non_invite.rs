//! The non-INVITE client transaction (RFC 3261 §17.1.2).
//!
//! Trying → (1xx) Proceeding → (final) Completed → Terminated after Timer K;
//! Trying/Proceeding → Terminated when Timer F fires.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::linger::Kept;
use super::{ClientEvent, Step, Timers, earliest};
use crate::sip::message::Message;
use crate::sip::transport::{Outgoing, Target};

/// The states of §17.1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
}

/// One non-INVITE client transaction.
#[derive(Debug)]
pub(crate) struct ClientNonInvite {
    /// Where it is in §17.1.2.
    state: State,
    /// The request as sent, resent on Timer E until the final response.
    sent: Option<Outgoing>,
    /// T1, T2, T4.
    timers: Timers,
    /// Whether the target is over TCP or TLS (no Timer E, Timer K is 0).
    reliable: bool,
    /// The user's end, until the final response is reported (Completed tells the
    /// user nothing more, so the channel is let go then, not at Timer K).
    events: Option<mpsc::Sender<ClientEvent>>,
    /// Timer E: when it fires next, and the interval after that.
    timer_e: Option<(Instant, Duration)>,
    /// Timer F: no final response in time.
    timer_f: Option<Instant>,
    /// Timer K: absorbing response retransmissions.
    timer_k: Option<Instant>,
}

impl ClientNonInvite {
    /// A new transaction for `request` (our Via on top) to `target`; it sends the
    /// request at once.
    pub(crate) fn start(
        request: &Message,
        target: Target,
        timers: Timers,
        events: mpsc::Sender<ClientEvent>,
        now: Instant,
    ) -> (ClientNonInvite, Step) {
        let reliable = target.transport.is_reliable();
        let sent = Outgoing::new(target, request);
        let tx = ClientNonInvite {
            state: State::Trying,
            sent: Some(sent.clone()),
            timers,
            reliable,
            events: Some(events),
            timer_e: (!reliable).then(|| (now + timers.t1, timers.t1)),
            timer_f: Some(now + timers.t1x64()),
            timer_k: None,
        };
        let step = tx.step(Some(sent), None);
        (tx, step)
    }

    fn step(&self, send: Option<Outgoing>, report: Option<ClientEvent>) -> Step {
        Step {
            send,
            report,
            user: self.events.clone(),
            ended: false,
        }
    }

    /// A response that matched.
    pub(crate) fn on_response(&mut self, response: Message, now: Instant) -> Step {
        let status = response.status().unwrap_or(0);
        let report = Some(ClientEvent::Response(Box::new(response)));
        match (self.state, status) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.step(None, report)
            }
            (State::Trying | State::Proceeding, 200..) => {
                self.state = State::Completed;
                self.timer_e = None;
                self.timer_f = None;
                self.sent = None;
                self.timer_k = Some(now + self.timers.t4_unless_reliable(self.reliable));
                Step {
                    report,
                    user: self.events.take(),
                    ..Step::default()
                }
            }
            _ => Step::default(), // retransmissions absorbed in Completed
        }
    }

    /// Whatever timer is due at `now`.
    pub(crate) fn on_timer(&mut self, now: Instant) -> Step {
        if self.timer_f.is_some_and(|at| at <= now) {
            return self
                .events
                .as_ref()
                .map_or_else(Step::ended, Step::timed_out);
        }
        if self.timer_k.is_some_and(|at| at <= now) {
            return Step::ended();
        }
        match self.timer_e {
            Some((at, interval)) if at <= now => {
                // In Proceeding the interval is T2 at once (§17.1.2.2).
                let interval = if self.state == State::Proceeding {
                    self.timers.t2
                } else {
                    (interval * 2).min(self.timers.t2)
                };
                self.timer_e = Some((now + interval, interval));
                self.step(self.sent.clone(), None)
            }
            _ => Step::default(),
        }
    }

    /// When the next timer fires.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        earliest([self.timer_e.map(|e| e.0), self.timer_f, self.timer_k])
    }

    /// Completed over UDP only absorbs response retransmissions until Timer K.
    pub(crate) fn lingering(&self) -> Option<(Duration, Kept<'static>)> {
        (self.state == State::Completed && !self.reliable).then_some((self.timers.t4, Kept::Absorb))
    }
}
