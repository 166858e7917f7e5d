//! The INVITE server transaction (RFC 3261 §17.2.1, with RFC 6026's Accepted state).
//!
//! Proceeding → (2xx) Accepted → Terminated after Timer L;
//! in Proceeding, 100 Trying goes out when the Trying timer fires
//! ([`Timers::trying`]) or the INVITE is retransmitted, unless the user answered
//! first (a call routed to a trunk usually has the far end's 180 back well within
//! that, and the caller then gets the 180 alone: one message fewer per call, as
//! reSIProcate's Timer Trying does);
//! Proceeding → (300–699) Completed → (ACK) Confirmed → Terminated after Timer I,
//! or Completed → Terminated when Timer H fires with no ACK.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::linger::Kept;
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
    /// The last provisional response sent, resent when the INVITE is; dropped once
    /// the transaction leaves Proceeding.
    provisional: Option<Outgoing>,
    /// The Trying timer: when 100 Trying goes out if nothing has been sent by then.
    timer_trying: Option<Instant>,
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
    /// A new transaction for `request`, with its Trying timer running.
    pub(crate) fn start(
        request: &Arc<Message>,
        source: SocketAddr,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> (ServerInvite, Step) {
        let tx = ServerInvite {
            state: State::Proceeding,
            request: Some(Arc::clone(request)),
            source,
            reliable,
            timers,
            provisional: None,
            timer_trying: Some(now + timers.trying()),
            last_final: None,
            timer_g: None,
            timer_h: None,
            timer_i: None,
            timer_l: None,
        };
        (tx, Step::default())
    }

    /// The INVITE again, or the ACK for a non-2xx final response.
    pub(crate) fn on_request(
        &mut self,
        method: Option<&Method>,
        transports: &Transports,
        now: Instant,
    ) -> Step {
        match (self.state, method) {
            (State::Proceeding, Some(Method::Invite)) => {
                if self.provisional.is_none() {
                    // The caller is waiting for a sign of life: 100 Trying now.
                    self.send_trying(transports);
                }
                Step::sending(self.provisional.clone())
            }
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
        self.timer_trying = None;
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

    /// Builds 100 Trying from the INVITE and keeps it as the provisional to resend;
    /// the Trying timer is done.
    fn send_trying(&mut self, transports: &Transports) {
        self.timer_trying = None;
        let Some(request) = &self.request else { return };
        let trying = Message::response_to(request, 100);
        self.provisional = transports.prepare_response(&trying, Some(self.source)).ok();
    }

    /// Enters Completed with `last_final` sent.
    fn complete(&mut self, last_final: Outgoing, now: Instant) {
        self.state = State::Completed;
        self.timer_trying = None;
        self.last_final = Some(last_final);
        self.request = None;
        self.provisional = None;
        if !self.reliable {
            self.timer_g = Some((now + self.timers.t1, self.timers.t1));
        }
        self.timer_h = Some(now + self.timers.t1x64());
    }

    /// Accepted only sends the core's 2xx retransmissions and passes ACKs on until
    /// Timer L; Confirmed over UDP only absorbs ACKs until Timer I.
    pub(crate) fn lingering(&self) -> Option<(Duration, Kept<'_>)> {
        match self.state {
            State::Accepted => Some((
                self.timers.t1x64(),
                Kept::Accepted {
                    source: self.source,
                },
            )),
            State::Confirmed if !self.reliable => Some((self.timers.t4, Kept::Absorb)),
            _ => None,
        }
    }

    /// Whatever timer is due at `now`.
    pub(crate) fn on_timer(&mut self, transports: &Transports, now: Instant) -> Step {
        if self.timer_trying.is_some_and(|at| at <= now) {
            self.send_trying(transports);
            return Step::sending(self.provisional.clone());
        }
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
            self.timer_trying,
            self.timer_g.map(|g| g.0),
            self.timer_h,
            self.timer_i,
            self.timer_l,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Framing;
    use crate::sip::transport::TransportConfig;

    async fn transports() -> Arc<Transports> {
        let config = TransportConfig {
            listen: vec!["udp://127.0.0.1:0".parse().unwrap()],
            ..Default::default()
        };
        Transports::bind(config, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap()
            .0
    }

    fn invite() -> Arc<Message> {
        let text = "INVITE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKti\r\n\
             From: <sip:b@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: ti\r\nCSeq: 1 INVITE\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        Arc::new(Message::parse(text.as_bytes(), Framing::Datagram).unwrap())
    }

    fn sent_status(step: &Step) -> Option<u16> {
        let out = step.send.as_ref()?;
        Message::parse(&out.bytes, Framing::Datagram).ok()?.status()
    }

    fn start(now: Instant) -> ServerInvite {
        let source = "127.0.0.1:5999".parse().unwrap();
        let (tx, first) = ServerInvite::start(&invite(), source, false, Timers::default(), now);
        assert!(
            first.send.is_none(),
            "nothing is sent before the Trying timer"
        );
        assert_eq!(tx.deadline(), Some(now + Timers::default().trying()));
        tx
    }

    /// §17.2.1's 200 ms rule: 100 Trying goes out when the user is slow, not when
    /// it answers first; a retransmitted INVITE gets it at once.
    #[tokio::test]
    async fn trying_is_sent_only_when_the_user_is_slow() {
        let transports = transports().await;
        let now = Instant::now();
        let trying = Timers::default().trying();
        // The user answers 180 first: no 100, ever.
        let mut quick = start(now);
        let ringing = Message::response_to(&invite(), 180);
        let step = quick.on_respond(&ringing, &transports, now + Duration::from_millis(2));
        assert_eq!(sent_status(&step), Some(180));
        assert_eq!(quick.deadline(), None);
        let later = now + trying * 2;
        assert_eq!(sent_status(&quick.on_timer(&transports, later)), None);
        // The INVITE retransmitted: the 180 again.
        let step = quick.on_request(Some(&Method::Invite), &transports, later);
        assert_eq!(sent_status(&step), Some(180));
        // The user is slow: the Trying timer sends 100, and only once.
        let mut slow = start(now);
        let at = now + trying;
        assert_eq!(sent_status(&slow.on_timer(&transports, at)), Some(100));
        assert_eq!(slow.deadline(), None);
        assert_eq!(sent_status(&slow.on_timer(&transports, later)), None);
        // The INVITE retransmitted before the timer: 100 at once, not again later.
        let mut again = start(now);
        let early = now + Duration::from_millis(1);
        let step = again.on_request(Some(&Method::Invite), &transports, early);
        assert_eq!(sent_status(&step), Some(100));
        assert_eq!(sent_status(&again.on_timer(&transports, at)), None);
        // Abandoned by its user first: the 500, and no 100 after it.
        let mut dropped = start(now);
        let step = dropped.on_abandoned(&transports, early);
        assert_eq!(sent_status(&step), Some(500));
        assert!(dropped.deadline() > Some(at), "the Trying timer stopped");
    }
}
