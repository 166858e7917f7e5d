//! The non-INVITE server transaction (RFC 3261 §17.2.2).
//!
//! Trying → (1xx) Proceeding → (final) Completed → Terminated after Timer J.

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ServerContext, ServerInput, until};
use crate::sip::message::Message;

/// The states of §17.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
}

/// Runs the transaction to its end.
pub(crate) async fn run(mut ctx: ServerContext, mut rx: mpsc::Receiver<ServerInput>) {
    let mut state = State::Trying;
    let mut last: Option<Box<Message>> = None;
    let mut timer_j: Option<Instant> = None;
    loop {
        tokio::select! {
            input = rx.recv() => match input {
                None => return,
                Some(ServerInput::Request(_)) => {
                    if state != State::Trying && let Some(r) = &last {
                        ctx.send(r).await;
                    }
                }
                Some(ServerInput::Respond(resp)) if state != State::Completed => {
                    let provisional = resp.status().is_some_and(|s| s < 200);
                    ctx.send(&resp).await;
                    last = Some(resp);
                    if provisional {
                        state = State::Proceeding;
                    } else {
                        state = State::Completed;
                        // Completed only resends `last`: the request is not needed
                        // for Timer J's 32 s.
                        ctx.request.forget();
                        let j = if ctx.reliable { std::time::Duration::ZERO } else { ctx.timers.t1x64() };
                        timer_j = Some(Instant::now() + j);
                    }
                }
                Some(ServerInput::Respond(_)) => {}
                Some(ServerInput::Abandoned) => {
                    if state != State::Completed {
                        let resp = Box::new(Message::response_to(&ctx.request, 500));
                        ctx.send(&resp).await;
                        last = Some(resp);
                        state = State::Completed;
                        timer_j = Some(Instant::now() + ctx.timers.t1x64());
                    }
                }
            },
            _ = until(timer_j) => return,
        }
    }
}
