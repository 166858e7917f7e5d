//! The non-INVITE client transaction (RFC 3261 §17.1.2).
//!
//! Trying → (1xx) Proceeding → (final) Completed → Terminated after Timer K;
//! Trying/Proceeding → Terminated when Timer F fires.

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ClientContext, ClientEvent, until};
use crate::sip::transport::Incoming;

/// The states of §17.1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
}

/// Runs the transaction to its end.
pub(crate) async fn run(ctx: ClientContext, mut rx: mpsc::Receiver<Box<Incoming>>) {
    let t = ctx.timers;
    let reliable = ctx.target.transport.is_reliable();
    if !ctx.send(&ctx.request).await {
        return;
    }
    let mut state = State::Trying;
    let mut timer_e = (!reliable).then(|| (Instant::now() + t.t1, t.t1));
    let mut timer_f = Some(Instant::now() + t.t1x64());
    let mut timer_k: Option<Instant> = None;
    loop {
        let next = [timer_e.map(|e| e.0), timer_f, timer_k]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            inc = rx.recv() => {
                let Some(inc) = inc else { return };
                let status = inc.message.status().unwrap_or(0);
                match (state, status) {
                    (State::Trying | State::Proceeding, 100..=199) => {
                        state = State::Proceeding;
                        ctx.report(ClientEvent::Response(Box::new(inc.message))).await;
                    }
                    (State::Trying | State::Proceeding, 200..) => {
                        state = State::Completed;
                        timer_e = None;
                        timer_f = None;
                        timer_k = Some(Instant::now() + t.t4_unless_reliable(reliable));
                        ctx.report(ClientEvent::Response(Box::new(inc.message))).await;
                    }
                    _ => {} // retransmissions absorbed in Completed
                }
            }
            _ = until(next) => {
                let now = Instant::now();
                if let Some((at, interval)) = timer_e && at <= now {
                    if !ctx.send(&ctx.request).await {
                        return;
                    }
                    // In Proceeding the interval is T2 at once (§17.1.2.2).
                    let interval = if state == State::Proceeding { t.t2 } else { (interval * 2).min(t.t2) };
                    timer_e = Some((now + interval, interval));
                }
                if timer_f.is_some_and(|at| at <= now) {
                    ctx.report(ClientEvent::Timeout).await;
                    return;
                }
                if timer_k.is_some_and(|at| at <= now) {
                    return;
                }
            }
        }
    }
}
