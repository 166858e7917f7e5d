//! The INVITE client transaction (RFC 3261 §17.1.1, with RFC 6026's Accepted state).
//!
//! Calling → (1xx) Proceeding → (2xx) Accepted → Terminated after Timer M;
//! Calling/Proceeding → (300–699, ACK sent) Completed → Terminated after Timer D;
//! Calling → Terminated when Timer B fires.

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ClientContext, ClientEvent, until};
use crate::sip::header::Name;
use crate::sip::message::Message;
use crate::sip::method::Method;
use crate::sip::transport::Incoming;
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

/// Runs the transaction to its end.
pub(crate) async fn run(mut ctx: ClientContext, mut rx: mpsc::Receiver<Box<Incoming>>) {
    let t = ctx.timers;
    let reliable = ctx.target.transport.is_reliable();
    if !ctx.send(&ctx.request).await {
        return;
    }
    let mut state = State::Calling;
    let mut timer_a = (!reliable).then(|| (Instant::now() + t.t1, t.t1));
    let mut timer_b = Some(Instant::now() + t.t1x64());
    let mut timer_d: Option<Instant> = None;
    let mut timer_m: Option<Instant> = None;
    let mut ack: Option<Box<Message>> = None;
    loop {
        let next = [timer_a.map(|a| a.0), timer_b, timer_d, timer_m]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            // The user gone: nothing to report to. In Accepted, ending here sends later
            // 2xx retransmissions to the core as stray responses, which the dialog
            // acknowledges (RFC 6026 §8.4).
            _ = ctx.events.closed(), if state != State::Completed => return,
            inc = rx.recv() => {
                let Some(inc) = inc else { return };
                let status = inc.message.status().unwrap_or(0);
                match (state, status) {
                    (State::Calling | State::Proceeding, 100..=199) => {
                        state = State::Proceeding;
                        timer_a = None;
                        timer_b = None;
                        ctx.report(ClientEvent::Response(Box::new(inc.message))).await;
                    }
                    (State::Calling | State::Proceeding, 200..=299) => {
                        state = State::Accepted;
                        timer_a = None;
                        timer_b = None;
                        timer_m = Some(Instant::now() + t.t1x64());
                        // Accepted only relays 2xx retransmissions for Timer M's 32 s.
                        ctx.request.forget();
                        ctx.report(ClientEvent::Response(Box::new(inc.message))).await;
                    }
                    (State::Calling | State::Proceeding, 300..) => {
                        state = State::Completed;
                        timer_a = None;
                        timer_b = None;
                        timer_d = Some(Instant::now() + t.d(reliable));
                        ack = ack_for(&ctx.request, &inc.message).map(Box::new);
                        ctx.request.forget();
                        if let Some(a) = &ack {
                            ctx.send(a).await;
                        }
                        ctx.report(ClientEvent::Response(Box::new(inc.message))).await;
                    }
                    (State::Completed, 300..) => {
                        if let Some(a) = &ack {
                            ctx.send(a).await;
                        }
                    }
                    (State::Accepted, 200..=299) => {
                        ctx.report(ClientEvent::Response(Box::new(inc.message))).await;
                    }
                    _ => {}
                }
            }
            _ = until(next) => {
                let now = Instant::now();
                if let Some((at, interval)) = timer_a && at <= now {
                    if !ctx.send(&ctx.request).await {
                        return;
                    }
                    timer_a = Some((now + interval * 2, interval * 2));
                }
                if timer_b.is_some_and(|at| at <= now) {
                    ctx.report(ClientEvent::Timeout).await;
                    return;
                }
                if timer_d.is_some_and(|at| at <= now) || timer_m.is_some_and(|at| at <= now) {
                    return;
                }
            }
        }
    }
}
