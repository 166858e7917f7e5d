//! One call: the caller's leg bridged to at most one far leg at a time (a B2BUA).
//!
//! The call runs in one task and owns both legs: whoever drives it (the flow runtime,
//! through [`crate::runtime::CallControl`]) calls [`Call::dial`], [`Call::wait`] and
//! [`Call::hangup`]. The caller's leg outlives far legs; when a new far leg replaces
//! an ended one, the caller's media is re-targeted with RFC 3725's flow: INVITE the
//! new leg without SDP, re-INVITE the caller with the new leg's offer, ACK the new
//! leg with the caller's answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::anchor::FarMedia;
use super::caller::CallerLeg;
use super::core::Core;
use super::far::{self, FarLeg, cancel_for};
use super::{CallInput, sdp};
use crate::runtime::{LegEnd, LegError, LegOutcome, LegRequest};
use crate::sip::header::Name;
use crate::sip::message::Message;
use crate::sip::method::Method;
use crate::sip::transaction::{ClientEvent, ServerTransaction, new_branch, until};
use crate::sip::transport::Target;
use crate::sip::typed::NameAddr;

/// A call in progress: the bridge between the caller's leg and a far leg.
pub struct Call {
    pub(crate) core: Arc<Core>,
    pub(crate) rx: mpsc::Receiver<CallInput>,
    pub(crate) tx: mpsc::Sender<CallInput>,
    /// The call's id, on every log line.
    pub sid: String,
    /// The caller's leg.
    pub caller: CallerLeg,
    /// The far leg, while one is bridged.
    pub(crate) far: Option<FarLeg>,
    /// A flow the call was asked to move into, not yet taken by the runtime.
    pub(crate) redirect: Option<String>,
    /// The call's media in rtpengine, when anchored.
    pub(crate) media: Option<crate::media::MediaSession>,
    /// Why a recording asked for cannot be made.
    pub(crate) recording_error: Option<String>,
}

/// Ends a call from outside its task.
#[derive(Debug, Clone)]
pub struct Controller {
    tx: mpsc::Sender<CallInput>,
}

impl Controller {
    /// A handle that sends to the call behind `tx`.
    pub(crate) fn new(tx: mpsc::Sender<CallInput>) -> Controller {
        Controller { tx }
    }

    /// Asks the call to hang up every leg; false when the call is already over.
    pub async fn terminate(&self) -> bool {
        self.tx.send(CallInput::Terminate).await.is_ok()
    }

    /// Asks the call to move into flow `flow` (its far leg hung up, the caller kept);
    /// false when the call is already over.
    pub async fn redirect(&self, flow: String) -> bool {
        self.tx.send(CallInput::Redirect(flow)).await.is_ok()
    }
}

/// What the caller did while a far leg rang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ringing {
    /// Nothing that matters.
    Stays,
    /// The caller cancelled or hung up.
    Left,
}

impl Call {
    /// A call for the INVITE in `invite`; the engine routes its messages to `tx`.
    pub(crate) fn new(
        core: Arc<Core>,
        invite: ServerTransaction,
        tx: mpsc::Sender<CallInput>,
        rx: mpsc::Receiver<CallInput>,
    ) -> Call {
        let caller = CallerLeg::new(core.clone(), invite);
        Call::with_caller(core, caller, tx, rx, new_sid())
    }

    /// A call with sid `sid` whose caller is `caller`.
    pub(crate) fn with_caller(
        core: Arc<Core>,
        caller: CallerLeg,
        tx: mpsc::Sender<CallInput>,
        rx: mpsc::Receiver<CallInput>,
        sid: String,
    ) -> Call {
        Call {
            sid,
            caller,
            core,
            rx,
            tx,
            far: None,
            redirect: None,
            media: None,
            recording_error: None,
        }
    }

    /// A handle that ends the call from outside (the calls API).
    pub fn controller(&self) -> Controller {
        Controller {
            tx: self.tx.clone(),
        }
    }

    /// The caller's INVITE.
    pub fn request(&self) -> &Message {
        self.caller.request()
    }

    /// The caller's INVITE, shared, when the caller called (not for a first party
    /// the calls API placed).
    pub fn shared_request(&self) -> Option<std::sync::Arc<Message>> {
        self.caller.shared_request()
    }

    /// Where the caller's INVITE came from.
    pub fn source(&self) -> std::net::SocketAddr {
        self.caller.source()
    }

    /// Refuses a caller never answered (see [`CallerLeg::reject`]).
    pub async fn reject(&mut self, status: u16, why: Option<&str>, headers: Vec<(Name, String)>) {
        self.caller.reject(status, why, headers).await;
    }

    /// Ends the call: BYE to every answered leg, or a final `status` to a caller never
    /// answered.
    pub async fn hangup(&mut self, status: u16) {
        self.bye_far().await;
        if self.caller.gone() {
            return;
        }
        if self.caller.answered() {
            self.caller.bye().await;
        } else {
            self.caller.finish(status).await;
        }
    }

    /// Places a far leg and, when it answers, bridges it to the caller.
    pub async fn dial(&mut self, leg: LegRequest) -> LegOutcome {
        if self.caller.gone() {
            return LegOutcome::CallerGone;
        }
        let targets = match self.core.resolver.resolve(&leg.uri).await {
            Ok(t) => t,
            Err(e) => return LegOutcome::Failed(LegError::Resolve(e.to_string())),
        };
        let mut outcome = LegOutcome::Failed(LegError::NoAddress);
        // RFC 3263 §4.3: a target that fails (transport error, no response) gives way
        // to the next one.
        for target in targets {
            outcome = self.dial_target(&leg, target).await;
            if !matches!(outcome, LegOutcome::Failed(_)) || self.caller.gone() {
                break;
            }
        }
        tracing::debug!(sid = %self.sid, uri = %leg.uri, ?outcome, "far leg");
        outcome
    }

    async fn dial_target(&mut self, leg: &LegRequest, target: Target) -> LegOutcome {
        let media = FarMedia::of(leg, &target, new_branch());
        let mut calling = self.caller.calling();
        calling.offer = match self.far_offer(leg, &media).await {
            Ok(offer) => offer,
            Err(e) => return LegOutcome::Failed(e),
        };
        let invite = far::invite(&self.core, &calling, leg, &target);
        let (call_id, from_tag) = far::dialog_key(&invite);
        self.core.add_dialog(&call_id, &from_tag, self.tx.clone());
        let outcome = self.ring(invite, target, leg.ring_timeout, &media).await;
        if outcome != LegOutcome::Answered {
            self.core.remove_dialog(&call_id, &from_tag);
        }
        outcome
    }

    /// Sends the far leg's INVITE and follows it until it is answered, refused, or
    /// given up (ring timeout, caller gone).
    ///
    /// What a call rarely does while ringing (a CANCEL to send, a 2xx to retransmit,
    /// a request from the caller) awaits a boxed future, as do the rare outcomes of
    /// [`Call::far_answered`]: a future holds room for the largest one it awaits, and
    /// this one is made, and so copied, for every leg placed (BENCHMARKS.md, session 10).
    async fn ring(
        &mut self,
        invite: Message,
        target: Target,
        ring: Duration,
        media: &FarMedia,
    ) -> LegOutcome {
        let branch = media.branch.clone();
        let mut ct = self
            .core
            .layer
            .send_request(invite, target.clone(), Some(branch.clone()))
            .await;
        let sent = ct.request.clone();
        let t1x64 = self.core.layer.timers().t1x64();
        let ring_deadline = Instant::now() + ring;
        let (mut provisional, mut cancel_wanted, mut cancel_sent) = (false, false, false);
        let mut give_up: Option<Instant> = None;
        let mut caller_left = false;
        let gave_up = |caller_left: bool, cancel_wanted: bool, otherwise: LegOutcome| {
            if caller_left {
                LegOutcome::CallerGone
            } else if cancel_wanted {
                LegOutcome::NoAnswer
            } else {
                otherwise
            }
        };
        loop {
            if cancel_wanted && provisional && !cancel_sent {
                cancel_sent = true;
                give_up = Some(Instant::now() + t1x64);
                Box::pin(self.send_cancel(&sent, &target, &branch)).await;
            }
            let retransmit = self.caller.retransmit_at();
            tokio::select! {
                ev = ct.events.recv() => match ev {
                    None | Some(ClientEvent::Timeout) => {
                        return gave_up(caller_left, cancel_wanted, LegOutcome::Failed(LegError::NoResponse));
                    }
                    Some(ClientEvent::TransportError(e)) => {
                        return LegOutcome::Failed(LegError::Transport(e));
                    }
                    Some(ClientEvent::Response(r)) => {
                        let status = r.status().unwrap_or(0);
                        if status < 200 {
                            provisional = true;
                            if matches!(status, 180 | 183) && !cancel_wanted {
                                let early = self.early_media(&r, media).await;
                                self.caller.provisional(&r, early).await;
                            }
                        } else if status < 300 {
                            return self.far_answered(&sent, &r, target, cancel_wanted, caller_left, media).await;
                        } else {
                            return gave_up(caller_left, cancel_wanted, LegOutcome::Rejected(status));
                        }
                    }
                },
                _ = tokio::time::sleep_until(ring_deadline), if !cancel_wanted => {
                    cancel_wanted = true;
                }
                _ = until(give_up) => {
                    return gave_up(caller_left, true, LegOutcome::NoAnswer);
                }
                _ = until(retransmit) => {
                    Box::pin(self.retransmit_2xx()).await;
                    if self.caller.gone() {
                        (caller_left, cancel_wanted) = (true, true);
                    }
                }
                input = self.rx.recv() => match input {
                    None => return LegOutcome::Failed(LegError::EngineStopped),
                    Some(input) => {
                        if Box::pin(self.while_ringing(input)).await == Ringing::Left {
                            caller_left = true;
                            cancel_wanted = true;
                        }
                    }
                },
            }
        }
    }

    /// Handles what the caller's side sends while a far leg rings: a CANCEL or a BYE
    /// means the caller left; anything else is handled as when idle.
    pub(crate) async fn while_ringing(&mut self, input: CallInput) -> Ringing {
        match input {
            CallInput::Cancel(st) => {
                self.caller.cancelled(*st).await;
                Ringing::Left
            }
            CallInput::Request(st)
                if self.caller.owns(&st.request) && st.request.method() == Some(&Method::Bye) =>
            {
                self.caller.bye_received(*st).await;
                Ringing::Left
            }
            CallInput::Terminate => {
                self.hangup(487).await;
                Ringing::Left
            }
            // The ringing leg is given up; the caller stays for the next flow.
            CallInput::Redirect(flow) => {
                self.redirect = Some(flow);
                Ringing::Left
            }
            other => {
                self.handle_idle(other).await;
                Ringing::Stays
            }
        }
    }

    pub(crate) async fn send_cancel(&self, invite: &Message, target: &Target, branch: &str) {
        if let Some(cancel) = cancel_for(invite) {
            // The CANCEL's own transaction; its response is not needed.
            let _ct = self
                .core
                .layer
                .send_request(cancel, target.clone(), Some(branch.into()))
                .await;
        }
    }

    /// A far leg's 2xx: bridge it (answer the caller, or re-target an answered
    /// caller's media), or, when the call gave up on it meanwhile, ACK and BYE it.
    pub(crate) async fn far_answered(
        &mut self,
        invite: &Message,
        resp: &Message,
        target: Target,
        cancelled: bool,
        caller_left: bool,
        media: &FarMedia,
    ) -> LegOutcome {
        let Some(mut far) = FarLeg::answered(self.core.clone(), invite, resp, target) else {
            return LegOutcome::Failed(LegError::BadAnswer);
        };
        if cancelled || caller_left {
            far.ack(None).await;
            Box::pin(far.bye()).await;
            return if caller_left {
                LegOutcome::CallerGone
            } else {
                LegOutcome::NoAnswer
            };
        }
        if self.media.is_some() {
            return Box::pin(self.bridge_anchored(far, resp, media)).await;
        }
        let far_sdp = Some(sdp::body_of(resp))
            .filter(|b| !b.is_empty())
            .map(|b| sdp::filter(&b));
        if !self.caller.answered() {
            far.ack(None).await;
            let body = match far_sdp {
                Some(Ok(s)) => Some(Bytes::from(s)),
                Some(Err(_)) => {
                    Box::pin(far.bye()).await;
                    Box::pin(self.caller.finish(488)).await;
                    return LegOutcome::Failed(LegError::NoCodec);
                }
                None => None,
            };
            self.caller.answer(body, &self.tx).await;
        } else {
            // RFC 3725: the new leg's offer goes to the caller in a re-INVITE; the
            // caller's answer goes back in the ACK.
            let Some(Ok(offer)) = far_sdp else {
                far.ack(None).await;
                Box::pin(far.bye()).await;
                return LegOutcome::Failed(LegError::NoOffer);
            };
            match Box::pin(self.caller.reinvite(Bytes::from(offer))).await {
                Some(answer) => far.ack(Some(answer)).await,
                None => {
                    far.ack(None).await;
                    Box::pin(far.bye()).await;
                    return LegOutcome::Failed(LegError::ReinviteRefused);
                }
            }
        }
        far.dialog.refresh_target(resp);
        self.far = Some(far);
        LegOutcome::Answered
    }

    /// Retransmits the caller's 2xx; hangs up when its ACK never came.
    pub(crate) async fn retransmit_2xx(&mut self) {
        if !self.caller.retransmit_2xx().await {
            tracing::info!(sid = %self.sid, "no ACK for the caller's 2xx; hanging up");
            self.hangup(408).await;
        }
    }

    /// Serves the call while nothing else does (a webhook is pending): answers what
    /// arrives, and returns once the caller has hung up or cancelled.
    pub async fn until_caller_gone(&mut self) {
        while !self.caller.gone() && self.redirect.is_none() {
            let retransmit = self.caller.retransmit_at();
            tokio::select! {
                _ = until(retransmit) => self.retransmit_2xx().await,
                input = self.rx.recv() => match input {
                    None => return,
                    Some(CallInput::Cancel(st)) if !self.caller.answered() => {
                        self.caller.cancelled(*st).await;
                    }
                    Some(other) => self.handle_idle(other).await,
                },
            }
        }
    }

    /// Waits while the legs are bridged, until one of them ends.
    pub async fn wait(&mut self, max_duration: Duration) -> LegEnd {
        let deadline = Instant::now() + max_duration;
        let check_every = self.media_check_every();
        let mut media_check = check_every.map(|d| Instant::now() + d);
        // What runs on an event is boxed: this future lives as long as the call is
        // bridged, and inlining the handlers' futures made it several KB per call
        // (heaptrack, BENCHMARKS.md).
        loop {
            let retransmit = self.caller.retransmit_at();
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    Box::pin(self.hangup(480)).await;
                    return LegEnd::MaxDuration;
                }
                _ = until(media_check) => {
                    media_check = check_every.map(|d| Instant::now() + d);
                    if let Some(after) = Box::pin(self.media_stopped()).await {
                        tracing::info!(sid = %self.sid, "no RTP for {}s: hanging up", after.as_secs());
                        Box::pin(self.hangup(408)).await;
                        return LegEnd::MediaTimeout(after);
                    }
                }
                _ = until(retransmit) => Box::pin(self.retransmit_2xx()).await,
                input = self.rx.recv() => {
                    let Some(input) = input else { return LegEnd::CallerHangup };
                    if let Some(end) = Box::pin(self.bridged_input(input)).await {
                        return end;
                    }
                }
            }
            if self.caller.gone() {
                Box::pin(self.bye_far()).await;
                return LegEnd::CallerHangup;
            }
            if self.redirect.is_some() {
                Box::pin(self.bye_far()).await;
                return LegEnd::Redirected;
            }
        }
    }

    async fn bridged_input(&mut self, input: CallInput) -> Option<LegEnd> {
        let CallInput::Request(st) = input else {
            self.handle_idle(input).await;
            return None;
        };
        let method = st.request.method().cloned();
        if self.caller.owns(&st.request) {
            match method {
                Some(Method::Bye) if !self.caller.cseq_in_order(&st.request) => {
                    st.reply(500, None).await;
                    None
                }
                Some(Method::Bye) => {
                    self.caller.bye_received(*st).await;
                    self.bye_far().await;
                    Some(LegEnd::CallerHangup)
                }
                _ => {
                    self.relay_to_far(*st).await;
                    None
                }
            }
        } else {
            match method {
                Some(Method::Bye) => {
                    st.reply(200, None).await;
                    self.drop_far();
                    Some(LegEnd::FarHangup)
                }
                Some(Method::Refer) => Some(self.refer(*st).await),
                _ => {
                    self.relay_to_caller(*st).await;
                    None
                }
            }
        }
    }

    /// Handles what can arrive at any time: ACKs, stray 2xx, requests outside the
    /// bridged flow.
    pub(crate) async fn handle_idle(&mut self, input: CallInput) {
        match input {
            CallInput::Ack(_) => self.caller.acked(),
            CallInput::StrayResponse(r) => {
                if let Some(far) = &self.far
                    && far.owns(&r)
                {
                    far.stray_2xx(&r).await;
                } else if self.caller.owns(&r) {
                    self.caller.ack_again().await;
                }
            }
            CallInput::Cancel(st) => st.reply(200, None).await,
            CallInput::Terminate => {
                tracing::info!(sid = %self.sid, "ended by the API");
                self.hangup(487).await;
            }
            CallInput::Redirect(flow) => {
                tracing::info!(sid = %self.sid, %flow, "moved into another flow by the API");
                self.redirect = Some(flow);
            }
            CallInput::Request(st) => {
                let is_bye = st.request.method() == Some(&Method::Bye);
                if is_bye && self.caller.owns(&st.request) {
                    self.caller.bye_received(*st).await;
                } else if is_bye {
                    st.reply(200, None).await;
                    self.drop_far();
                } else if self.caller.owns(&st.request) && self.far.is_none() {
                    self.caller.answer_locally(*st).await;
                } else {
                    st.reply(491, None).await;
                }
            }
        }
    }

    /// Relays an in-dialog request from the caller to the far leg and its final
    /// response back (re-INVITE, UPDATE, INFO).
    async fn relay_to_far(&mut self, st: ServerTransaction) {
        if !self.caller.cseq_in_order(&st.request) {
            st.reply(500, None).await;
            return;
        }
        if self.far.is_none() {
            return self.caller.answer_locally(st).await;
        }
        if is_target_refresh(&st.request) {
            self.caller.refresh_target(&st.request);
        }
        let body = self.relayed_body(&st.request, true, true).await;
        let Some(far) = self.far.as_mut() else {
            return self.caller.answer_locally(st).await;
        };
        let contact = self.core.contact(far.target.transport);
        let method = st.request.method().cloned().unwrap_or(Method::Info);
        let resp = far
            .send(method.clone(), |req| {
                set_body(req, body);
                if method == Method::Invite {
                    req.push_header(Name::Contact, contact);
                }
            })
            .await;
        self.answer_relayed(&st, resp, false).await;
    }

    /// Relays an in-dialog request from the far leg to the caller.
    async fn relay_to_caller(&mut self, st: ServerTransaction) {
        if let Some(far) = self.far.as_mut() {
            if !far.dialog.accept_remote_cseq(&st.request) {
                st.reply(500, None).await;
                return;
            }
            if is_target_refresh(&st.request) {
                far.dialog.refresh_target(&st.request);
            }
        }
        let contact = self.core.contact(st.transport);
        let method = st.request.method().cloned().unwrap_or(Method::Info);
        let body = self.relayed_body(&st.request, false, true).await;
        let sent = self
            .caller
            .send(method.clone(), |req| {
                set_body(req, body);
                if method == Method::Invite {
                    req.push_header(Name::Contact, contact);
                }
            })
            .await;
        match sent {
            Some(resp) => self.answer_relayed(&st, resp, true).await,
            None => st.reply(491, None).await,
        }
    }

    /// Answers `st` with the final status (and SDP) the relayed request got, 408
    /// when it got none; `from_caller`: the response came from the caller.
    async fn answer_relayed(
        &mut self,
        st: &ServerTransaction,
        resp: Option<Message>,
        from_caller: bool,
    ) {
        let Some(r) = resp else {
            st.reply(408, None).await;
            return;
        };
        let status = r.status().unwrap_or(500);
        let mut out = st.response(status, None);
        if status < 300 {
            out.push_header(Name::Contact, self.core.contact(st.transport));
        }
        let body = self.relayed_body(&r, from_caller, false).await;
        set_body(&mut out, body);
        st.respond(&out).await;
    }

    /// REFER from the far leg (RFC 3515): 202, a NOTIFY with the progress, the far leg
    /// released; the owner decides where the caller goes.
    async fn refer(&mut self, st: ServerTransaction) -> LegEnd {
        let refer_to = st
            .request
            .header(&Name::ReferTo)
            .and_then(|v| NameAddr::parse(v).ok())
            .map(|n| n.uri.to_string());
        let Some(refer_to) = refer_to else {
            st.reply(400, None).await;
            return LegEnd::FarHangup;
        };
        let headers: Vec<(String, String)> = st
            .request
            .headers()
            .iter()
            .filter(|h| h.name.as_str().to_ascii_lowercase().starts_with("x-"))
            .map(|h| (h.name.as_str().to_string(), h.value.to_string()))
            .collect();
        let mut resp = st.response(202, None);
        resp.push_header(Name::Contact, self.core.contact(st.transport));
        st.respond(&resp).await;
        if let Some(far) = self.far.as_mut() {
            far.notify("SIP/2.0 100 Trying", "active;expires=60").await;
            far.notify("SIP/2.0 200 OK", "terminated;reason=noresource")
                .await;
        }
        self.bye_far().await;
        LegEnd::Transfer { refer_to, headers }
    }

    /// The far leg hung up: forget it.
    fn drop_far(&mut self) {
        if let Some(far) = self.far.take() {
            far.forget();
        }
    }

    /// Hangs the far leg up, if one is bridged.
    async fn bye_far(&mut self) {
        if let Some(far) = self.far.take() {
            far.bye().await;
        }
    }
}

/// A new call sid: `CA` and 32 hex digits.
pub fn new_sid() -> String {
    crate::sip::hex_id("CA", rand::random::<u128>(), 32)
}

/// Whether a request refreshes its dialog's remote target (RFC 3261 §12.2, RFC 3311).
fn is_target_refresh(request: &Message) -> bool {
    matches!(request.method(), Some(Method::Invite | Method::Update))
}

impl Call {
    /// A relayed message's body with its content type: an SDP one through the codec
    /// filter and, when media is anchored, rtpengine (`offer`: it is an offer);
    /// `from_caller`: the message came from the caller.
    async fn relayed_body(
        &mut self,
        from: &Message,
        from_caller: bool,
        offer: bool,
    ) -> Option<(String, Bytes)> {
        if from.body.is_empty() {
            return None;
        }
        let ct = from.content_type().unwrap_or("application/octet-stream");
        // A multipart body with SDP in it (SIP-I) goes on as its SDP alone.
        let sdp = ct.eq_ignore_ascii_case("application/sdp")
            || (sdp::multipart_boundary(ct).is_some() && !sdp::body_of(from).is_empty());
        if sdp {
            let body = self.relayed_sdp(from, from_caller, offer).await?;
            return Some(("application/sdp".to_string(), body));
        }
        Some((ct.to_string(), from.body.clone()))
    }
}

/// Sets a relayed body, if there is one.
fn set_body(to: &mut Message, body: Option<(String, Bytes)>) {
    if let Some((ct, b)) = body {
        to.set_body(&ct, b);
    }
}
