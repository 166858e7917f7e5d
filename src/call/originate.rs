//! Calls that callflow places itself (the calls API's click-to-call and
//! connect-to-flow). The first party is invited without SDP, as RFC 3725 §4.1 (flow
//! I) has it: its 2xx carries the offer, that offer goes to the second party (or to
//! the first far leg the flow places), and the second party's answer returns to the
//! first party in the ACK. Until then the first party retransmits its 2xx; if no far
//! leg answers within 64·T1 of it, the first party is ACKed with a refusal and hung
//! up.
//!
//! [`Origination`] is the call before its first party answers: it can be ended
//! through its [`Controller`] while the first party rings (CANCEL), and becomes a
//! [`Call`] whose caller is the first party once it answers.

use compact_str::CompactString;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::bridge::{Call, Controller};
use super::caller::CallerLeg;
use super::core::Core;
use super::far::{self, Calling};
use super::{CallInput, sdp};
use crate::runtime::{LegError, LegOutcome, LegRequest};
use crate::sip::message::Message;
use crate::sip::transaction::{ClientEvent, new_branch, until};
use crate::sip::transport::Target;

/// A call being placed: its sid, its channel, and the first party not yet answered.
pub struct Origination {
    core: Arc<Core>,
    tx: mpsc::Sender<CallInput>,
    rx: mpsc::Receiver<CallInput>,
    /// The call's sid.
    pub sid: String,
}

/// How a first party's INVITE is going.
struct Ringing {
    /// The INVITE as sent (with its Via), for CANCEL and the dialog.
    sent: Arc<Message>,
    /// Where it went.
    target: Target,
    /// Its branch, which its CANCEL shares.
    branch: CompactString,
    /// Whether a provisional response came (a CANCEL may be sent only after one).
    provisional: bool,
    /// Why the call gave up on it, once it did.
    ended: Option<LegOutcome>,
    /// Whether the CANCEL went.
    cancel_sent: bool,
    /// When to stop waiting for a final response after the CANCEL.
    give_up: Option<Instant>,
}

impl Origination {
    /// A call with sid `sid` to be placed through `core`.
    pub(crate) fn new(core: Arc<Core>, sid: String) -> Origination {
        let (tx, rx) = mpsc::channel(64);
        Origination { core, tx, rx, sid }
    }

    /// A handle that ends the call from outside, ringing or answered.
    pub fn controller(&self) -> Controller {
        Controller::new(self.tx.clone())
    }

    /// The call, now that its first party answered.
    pub fn into_call(self, caller: CallerLeg) -> Call {
        Call::with_caller(self.core, caller, self.tx, self.rx, self.sid)
    }

    /// Invites the first party `leg` without SDP, at each address its URI resolves
    /// to until one answers or refuses (RFC 3263 §4.3). `ringing` is told of its
    /// first 180 or 183. Gives the first party's leg once it answered with an
    /// offer; otherwise how it ended (`CallerGone` when the call was ended through
    /// its controller).
    pub async fn place(
        &mut self,
        leg: &LegRequest,
        ringing: &mut (dyn FnMut() + Send),
    ) -> Result<CallerLeg, LegOutcome> {
        let targets = self
            .core
            .resolver
            .resolve(&leg.uri)
            .await
            .map_err(|e| LegOutcome::Failed(LegError::Resolve(e.to_string())))?;
        let mut outcome = LegOutcome::Failed(LegError::NoAddress);
        for target in targets {
            let calling = Calling {
                hops: 70,
                ..Calling::default()
            };
            let invite = far::invite(&self.core, &calling, leg, &target);
            let (call_id, tag) = far::dialog_key(&invite);
            self.core.add_dialog(&call_id, &tag, self.tx.clone());
            match self.ring(invite, target, leg.ring_timeout, ringing).await {
                Ok(caller) => return Ok(caller),
                Err(o) => {
                    self.core.remove_dialog(&call_id, &tag);
                    outcome = o;
                }
            }
            if !matches!(outcome, LegOutcome::Failed(_)) {
                break;
            }
        }
        tracing::info!(sid = %self.sid, uri = %leg.uri, ?outcome, "first party not reached");
        Err(outcome)
    }

    /// Follows the first party's INVITE until it is answered, refused or given up
    /// (ring timeout, the call ended).
    async fn ring(
        &mut self,
        invite: Message,
        target: Target,
        ring: Duration,
        ringing: &mut (dyn FnMut() + Send),
    ) -> Result<CallerLeg, LegOutcome> {
        let branch = new_branch();
        let mut ct = self
            .core
            .layer
            .send_request(invite, target.clone(), Some(branch.clone()))
            .await;
        let mut r = Ringing {
            sent: ct.request.clone(),
            target,
            branch,
            provisional: false,
            ended: None,
            cancel_sent: false,
            give_up: None,
        };
        let deadline = Instant::now() + ring;
        loop {
            self.cancel_if_ended(&mut r).await;
            tokio::select! {
                ev = ct.events.recv() => match ev {
                    None | Some(ClientEvent::Timeout) => {
                        return Err(r.ended.unwrap_or(LegOutcome::Failed(LegError::NoResponse)));
                    }
                    Some(ClientEvent::TransportError(e)) => {
                        return Err(r.ended.unwrap_or(LegOutcome::Failed(LegError::Transport(e))));
                    }
                    Some(ClientEvent::Response(resp)) => match resp.status().unwrap_or(0) {
                        s @ 100..=199 => {
                            if matches!(s, 180 | 183) && !r.provisional {
                                ringing();
                            }
                            r.provisional = true;
                        }
                        200..=299 => return self.answered(r, &resp).await,
                        s => return Err(r.ended.unwrap_or(LegOutcome::Rejected(s))),
                    },
                },
                _ = tokio::time::sleep_until(deadline), if r.ended.is_none() => {
                    r.ended = Some(LegOutcome::NoAnswer);
                }
                _ = until(r.give_up) => return Err(r.ended.unwrap_or(LegOutcome::NoAnswer)),
                input = self.rx.recv() => match input {
                    None => return Err(LegOutcome::Failed(LegError::EngineStopped)),
                    Some(CallInput::Terminate) => {
                        r.ended.get_or_insert(LegOutcome::CallerGone);
                    }
                    Some(CallInput::Request(st) | CallInput::Cancel(st)) => st.reply(481, None).await,
                    Some(_) => {}
                },
            }
        }
    }

    /// Sends the CANCEL once the call gave up on a first party that has rung.
    async fn cancel_if_ended(&self, r: &mut Ringing) {
        if r.ended.is_none() || !r.provisional || r.cancel_sent {
            return;
        }
        r.cancel_sent = true;
        r.give_up = Some(Instant::now() + self.core.layer.timers().t1x64());
        if let Some(cancel) = far::cancel_for(&r.sent) {
            let _ct = self
                .core
                .layer
                .send_request(cancel, r.target.clone(), Some(r.branch.clone()))
                .await;
        }
    }

    /// The first party's 2xx: its leg, when the 2xx has a usable offer and the call
    /// still wants it; otherwise the first party is ACKed with a refusal and hung up.
    async fn answered(&mut self, r: Ringing, resp: &Message) -> Result<CallerLeg, LegOutcome> {
        let offer = sdp::filter(&sdp::body_of(resp));
        let body = match &offer {
            Ok(s) => Bytes::from(s.clone()),
            Err(_) => resp.body.clone(),
        };
        let Some(mut caller) =
            CallerLeg::placed(self.core.clone(), r.sent, resp, r.target, body, &self.tx)
        else {
            return Err(LegOutcome::Failed(LegError::BadAnswer));
        };
        let why = match (r.ended, offer) {
            (Some(ended), _) => ended,
            (None, Ok(_)) => return Ok(caller),
            (None, Err(_)) if resp.body.is_empty() => LegOutcome::Failed(LegError::NoOffer),
            (None, Err(_)) => LegOutcome::Failed(LegError::NoCodec),
        };
        caller.finish(488).await;
        Err(why)
    }
}
