//! The INVITE server transaction (RFC 3261 §17.2.1, with RFC 6026's Accepted state).
//!
//! Proceeding → (2xx) Accepted → Terminated after Timer L;
//! Proceeding → (300–699) Completed → (ACK) Confirmed → Terminated after Timer I,
//! or Completed → Terminated when Timer H fires with no ACK.

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ServerContext, ServerInput, until};
use crate::sip::message::Message;
use crate::sip::method::Method;

/// The states of §17.2.1 and RFC 6026.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
}

/// Runs the transaction to its end.
pub(crate) async fn run(mut ctx: ServerContext, mut rx: mpsc::Receiver<ServerInput>) {
    let t = ctx.timers;
    // 100 Trying at once: the B2BUA's answer depends on the network (RFC 3261 §17.2.1).
    let mut provisional = Box::new(Message::response_to(&ctx.request, 100));
    ctx.send(&provisional).await;
    let mut state = State::Proceeding;
    let mut last_final: Option<Box<Message>> = None;
    // Timer G: (deadline, interval). Timers H, I, L: deadlines.
    let mut timer_g: Option<(Instant, std::time::Duration)> = None;
    let (mut timer_h, mut timer_i, mut timer_l) = (None, None, None);
    loop {
        let next = [timer_g.map(|g| g.0), timer_h, timer_i, timer_l]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            input = rx.recv() => match input {
                None => return,
                Some(ServerInput::Request(inc)) => match (state, inc.message.method()) {
                    (State::Proceeding, Some(Method::Invite)) => ctx.send(&provisional).await,
                    (State::Completed, Some(Method::Invite)) => {
                        if let Some(f) = &last_final {
                            ctx.send(f).await;
                        }
                    }
                    (State::Completed, Some(Method::Ack)) => {
                        state = State::Confirmed;
                        timer_g = None;
                        timer_h = None;
                        timer_i = Some(Instant::now() + t.t4_unless_reliable(ctx.reliable));
                    }
                    _ => {} // absorbed
                },
                Some(ServerInput::Respond(resp)) => {
                    let status = resp.status().unwrap_or(500);
                    match (state, status) {
                        (State::Proceeding, 101..=199) => {
                            ctx.send(&resp).await;
                            provisional = resp;
                        }
                        (State::Proceeding, 200..=299) => {
                            ctx.send(&resp).await;
                            state = State::Accepted;
                            timer_l = Some(Instant::now() + t.t1x64());
                            // Accepted only relays the core's 2xx retransmissions:
                            // the INVITE and the 1xx are not needed for Timer L's 32 s.
                            ctx.request.forget();
                            provisional.forget();
                        }
                        (State::Proceeding, 300..) => {
                            ctx.send(&resp).await;
                            last_final = Some(resp);
                            state = State::Completed;
                            ctx.request.forget();
                            provisional.forget();
                            if !ctx.reliable {
                                timer_g = Some((Instant::now() + t.t1, t.t1));
                            }
                            timer_h = Some(Instant::now() + t.t1x64());
                        }
                        // The core retransmits its 2xx until the ACK (§13.3.1.4).
                        (State::Accepted, 200..=299) => ctx.send(&resp).await,
                        _ => {}
                    }
                }
                Some(ServerInput::Abandoned) => {
                    if state == State::Proceeding {
                        tracing::warn!("INVITE abandoned without a final response; answering 500");
                        let resp = Box::new(Message::response_to(&ctx.request, 500));
                        ctx.send(&resp).await;
                        last_final = Some(resp);
                        state = State::Completed;
                        timer_h = Some(Instant::now() + t.t1x64());
                    }
                }
            },
            _ = until(next) => {
                let now = Instant::now();
                if let Some((at, interval)) = timer_g && at <= now {
                    if let Some(f) = &last_final {
                        ctx.send(f).await;
                    }
                    let interval = (interval * 2).min(t.t2);
                    timer_g = Some((now + interval, interval));
                }
                if timer_h.is_some_and(|at| at <= now) {
                    tracing::debug!("Timer H: no ACK for the final response");
                    return;
                }
                if timer_i.is_some_and(|at| at <= now) || timer_l.is_some_and(|at| at <= now) {
                    return;
                }
            }
        }
    }
}
