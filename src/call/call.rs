//! One call: the caller's leg and at most one far leg at a time, each its own dialog,
//! bridged by a B2BUA (DESIGN.md §5).
//!
//! The call runs in one task and owns all its state: whoever drives it (the flow
//! runtime, or a fixed route) calls [`Call::dial`], [`Call::wait`] and
//! [`Call::hangup`]. The caller's leg outlives far legs; when a new far leg replaces
//! an ended one, the caller's media is re-targeted with RFC 3725's flow: INVITE the new
//! leg without SDP, re-INVITE the caller with the new leg's offer, ACK the new leg
//! with the caller's answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::engine::{ALLOW, Engine};
use super::sdp;
use crate::sip::dialog::{Dialog, new_tag};
use crate::sip::header::Name;
use crate::sip::message::Message;
use crate::sip::method::Method;
use crate::sip::transaction::{ClientEvent, ServerTransaction, new_branch};
use crate::sip::transport::Target;
use crate::sip::typed::{CSeq, NameAddr, Transport};
use crate::sip::uri::{Host, SipUri, Uri};

mod fork;

/// What the core hands a call.
#[derive(Debug)]
pub enum CallInput {
    /// An in-dialog request on one of the call's legs.
    Request(ServerTransaction),
    /// A CANCEL for the caller's INVITE.
    Cancel(ServerTransaction),
    /// An ACK for a 2xx we sent.
    Ack(Message),
    /// A 2xx retransmitted by a far leg after its transaction ended.
    StrayResponse(Message),
}

/// A far leg to place.
#[derive(Debug, Clone)]
pub struct LegRequest {
    /// Whom to dial.
    pub uri: SipUri,
    /// Extra headers on the INVITE (custom `X-` headers, callflow's own).
    pub headers: Vec<(String, String)>,
    /// How long it may ring before it is cancelled.
    pub ring_timeout: Duration,
    /// The number to present in From instead of the caller's.
    pub caller_id: Option<String>,
}

/// How placing a far leg ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegOutcome {
    /// The far end answered; the legs are bridged.
    Answered,
    /// The far end refused with this final status (486, 603, 404, …).
    Rejected(u16),
    /// Nobody answered before the ring timeout.
    NoAnswer,
    /// The leg could not be placed or got no response: why.
    Failed(String),
    /// The caller hung up or cancelled meanwhile.
    CallerGone,
}

/// How a bridged far leg ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEnd {
    /// The far end sent BYE; the caller is still connected.
    FarHangup,
    /// The caller sent BYE; the far leg has been hung up.
    CallerHangup,
    /// The far end sent REFER: its target and `X-` headers. The far leg is released.
    Transfer {
        /// The Refer-To URI.
        refer_to: String,
        /// The REFER's `X-` headers.
        headers: Vec<(String, String)>,
    },
    /// The longest allowed duration passed; both legs are hung up.
    MaxDuration,
}

/// A 2xx to the caller, retransmitted until its ACK (RFC 3261 §13.3.1.4).
struct Pending2xx {
    response: Message,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// The far leg in progress or bridged.
struct FarLeg {
    dialog: Dialog,
    target: Target,
}

/// A call in progress.
pub struct Call {
    engine: Arc<Engine>,
    rx: mpsc::Receiver<CallInput>,
    tx: mpsc::Sender<CallInput>,
    /// The call's id, on every log line.
    pub sid: String,
    invite: ServerTransaction,
    caller_tag: String,
    caller_dialog: Option<Dialog>,
    /// The caller's SDP offer, filtered (from the INVITE).
    caller_offer: Option<Bytes>,
    /// The last SDP we gave the caller.
    caller_answer: Option<Bytes>,
    pending_2xx: Option<Pending2xx>,
    far: Option<FarLeg>,
    caller_gone: bool,
}

impl Call {
    /// A call for the INVITE in `invite`; the engine routes its messages to `tx`.
    pub(crate) fn new(
        engine: Arc<Engine>,
        invite: ServerTransaction,
        tx: mpsc::Sender<CallInput>,
        rx: mpsc::Receiver<CallInput>,
    ) -> Call {
        Call {
            sid: format!("CA{:016x}", rand::random::<u64>()),
            engine,
            rx,
            tx,
            caller_tag: new_tag(),
            caller_dialog: None,
            caller_offer: None,
            caller_answer: None,
            pending_2xx: None,
            far: None,
            caller_gone: false,
            invite,
        }
    }

    /// The caller's INVITE.
    pub fn request(&self) -> &Message {
        &self.invite.request
    }

    /// Where the caller's INVITE came from.
    pub fn source(&self) -> std::net::SocketAddr {
        self.invite.source
    }

    /// Whether the caller has been answered.
    pub fn answered(&self) -> bool {
        self.caller_dialog.is_some()
    }

    /// Whether the caller has hung up or cancelled.
    pub fn caller_gone(&self) -> bool {
        self.caller_gone
    }

    /// Checks the caller's SDP offer; answers 488 and returns false when no codec
    /// callflow carries is left, 400 when the body is not SDP.
    pub async fn accept_offer(&mut self) -> bool {
        let body = &self.invite.request.body;
        if body.is_empty() {
            return true;
        }
        match sdp::filter(body) {
            Ok(s) => {
                self.caller_offer = Some(Bytes::from(s));
                true
            }
            Err(e) => {
                let status = if e == sdp::SdpError::NoCodec {
                    488
                } else {
                    400
                };
                tracing::info!(sid = %self.sid, error = %e, status, "caller's offer refused");
                self.finish_caller(status).await;
                false
            }
        }
    }

    /// Ends the call: BYE to every answered leg, or a final `status` to a caller never
    /// answered.
    pub async fn hangup(&mut self, status: u16) {
        self.bye_far().await;
        if self.caller_gone {
            return;
        }
        if self.caller_dialog.is_some() {
            self.bye_caller().await;
        } else {
            self.finish_caller(status).await;
        }
    }

    /// Refuses a caller never answered with `status`, an optional explanation in
    /// the reason phrase (which rule a 403 broke), and extra headers (Retry-After,
    /// WWW-Authenticate).
    pub async fn reject(&mut self, status: u16, why: Option<&str>, headers: Vec<(Name, String)>) {
        if self.caller_gone || self.caller_dialog.is_some() {
            return;
        }
        self.caller_gone = true;
        let mut resp = self.invite.response(status, Some(&self.caller_tag));
        if let (Some(why), crate::sip::StartLine::Response { reason, .. }) = (why, &mut resp.start)
        {
            *reason = format!("{} ({why})", crate::sip::message::reason_phrase(status));
        }
        for (name, value) in headers {
            resp.push_header(name, value);
        }
        self.invite.respond(resp).await;
        self.engine.remove_invite(&self.invite.key);
    }

    async fn finish_caller(&mut self, status: u16) {
        self.caller_gone = true;
        self.invite.reply(status, Some(&self.caller_tag)).await;
        self.engine.remove_invite(&self.invite.key);
    }

    /// Our Contact for messages over `transport`.
    fn contact(&self, transport: Transport) -> String {
        match self.engine.layer.local_host_port(transport) {
            Some((host, port)) => {
                let mut uri = SipUri::new(Some("callflow"), host, Some(port));
                if transport != Transport::Udp {
                    uri.params.push(crate::sip::uri::Param {
                        name: "transport".into(),
                        value: Some(transport.as_str().to_ascii_lowercase()),
                    });
                }
                format!("<{uri}>")
            }
            None => "<sip:callflow@127.0.0.1>".into(),
        }
    }

    /// Places a far leg and, when it answers, bridges it to the caller.
    pub async fn dial(&mut self, leg: LegRequest) -> LegOutcome {
        if self.caller_gone {
            return LegOutcome::CallerGone;
        }
        let targets = match self.engine.resolver.resolve(&leg.uri).await {
            Ok(t) => t,
            Err(e) => return LegOutcome::Failed(e.to_string()),
        };
        let mut outcome = LegOutcome::Failed("no address".into());
        // RFC 3263 §4.3: a target that fails (transport error, no response) gives way
        // to the next one.
        for target in targets {
            outcome = self.dial_target(&leg, target).await;
            if !matches!(outcome, LegOutcome::Failed(_)) || self.caller_gone {
                break;
            }
        }
        tracing::info!(sid = %self.sid, uri = %leg.uri, ?outcome, "far leg");
        outcome
    }

    async fn dial_target(&mut self, leg: &LegRequest, target: Target) -> LegOutcome {
        let invite = self.far_invite(leg, &target);
        let (call_id, from_tag) = (
            invite.call_id().unwrap_or_default().to_string(),
            invite
                .from_header()
                .ok()
                .and_then(|f| f.tag().map(str::to_string))
                .unwrap_or_default(),
        );
        self.engine.add_dialog(&call_id, &from_tag, self.tx.clone());
        let outcome = self.run_far_invite(invite, target, leg.ring_timeout).await;
        if outcome != LegOutcome::Answered {
            self.engine.remove_dialog(&call_id, &from_tag);
        }
        outcome
    }

    fn far_invite(&self, leg: &LegRequest, target: &Target) -> Message {
        let caller_from = self.invite.request.from_header().ok();
        let user = leg
            .caller_id
            .clone()
            .or_else(|| {
                caller_from
                    .as_ref()
                    .and_then(|f| f.uri.user().map(str::to_string))
            })
            .unwrap_or_else(|| "anonymous".into());
        let (host, _) = self
            .engine
            .layer
            .local_host_port(target.transport)
            .unwrap_or((Host::Domain("callflow.invalid".into()), 5060));
        let mut from = NameAddr::new(Uri::Sip(SipUri::new(Some(&user), host, None)));
        from.display = caller_from.and_then(|f| f.display);
        from.set_tag(&new_tag());
        // To carries the number the caller dialled (the DID), as DESIGN.md §5 says,
        // whatever user the Request-URI has (a trunk's external alias, say).
        let mut to_uri = leg.uri.clone();
        to_uri.params.clear();
        if let Some(did) = self
            .invite
            .request
            .to_header()
            .ok()
            .and_then(|t| t.uri.user().map(str::to_string))
        {
            to_uri.user = Some(did);
        }
        let mut m = Message::request(Method::Invite, Uri::Sip(leg.uri.clone()));
        let hops = self
            .invite
            .request
            .max_forwards()
            .ok()
            .flatten()
            .unwrap_or(70);
        m.push_header(Name::MaxForwards, hops.saturating_sub(1).to_string());
        m.push_header(Name::From, from.to_string());
        m.push_header(Name::To, NameAddr::new(Uri::Sip(to_uri)).to_string());
        m.push_header(Name::CallId, format!("{:032x}", rand::random::<u128>()));
        m.push_header(
            Name::CSeq,
            CSeq {
                seq: 1,
                method: Method::Invite,
            }
            .to_string(),
        );
        m.push_header(Name::Contact, self.contact(target.transport));
        m.push_header(Name::Allow, ALLOW);
        for (name, value) in &leg.headers {
            m.push_header(Name::parse(name), value.clone());
        }
        // A caller already answered gets its media re-targeted (RFC 3725): the new
        // leg is invited without SDP and makes the offer.
        if self.caller_dialog.is_none()
            && let Some(offer) = &self.caller_offer
        {
            m.set_body("application/sdp", offer.clone());
        }
        m
    }

    async fn run_far_invite(
        &mut self,
        invite: Message,
        target: Target,
        ring: Duration,
    ) -> LegOutcome {
        let branch = new_branch();
        let mut ct = self
            .engine
            .layer
            .send_request(invite.clone(), target.clone(), Some(branch.clone()))
            .await;
        let sent = ct.request.clone();
        let t1x64 = self.engine.layer.timers().t1x64();
        let ring_deadline = Instant::now() + ring;
        let (mut provisional, mut cancel_wanted, mut cancel_sent) = (false, false, false);
        let mut give_up: Option<Instant> = None;
        let mut caller_left = false;
        loop {
            if cancel_wanted && provisional && !cancel_sent {
                cancel_sent = true;
                give_up = Some(Instant::now() + t1x64);
                self.send_cancel(&sent, &target, &branch).await;
            }
            let retransmit = self.pending_2xx.as_ref().map(|p| p.next);
            tokio::select! {
                ev = ct.events.recv() => match ev {
                    None | Some(ClientEvent::Timeout) => {
                        return if caller_left { LegOutcome::CallerGone }
                            else if cancel_wanted { LegOutcome::NoAnswer }
                            else { LegOutcome::Failed("no response (timeout)".into()) };
                    }
                    Some(ClientEvent::TransportError(e)) => return LegOutcome::Failed(e),
                    Some(ClientEvent::Response(r)) => {
                        let status = r.status().unwrap_or(0);
                        if status < 200 {
                            provisional = true;
                            if matches!(status, 180 | 183) && !cancel_wanted {
                                self.relay_provisional(&r).await;
                            }
                        } else if status < 300 {
                            return self.far_answered(&sent, &r, target, cancel_wanted, caller_left).await;
                        } else {
                            return if caller_left { LegOutcome::CallerGone }
                                else if cancel_wanted { LegOutcome::NoAnswer }
                                else { LegOutcome::Rejected(status) };
                        }
                    }
                },
                _ = tokio::time::sleep_until(ring_deadline), if !cancel_wanted => {
                    cancel_wanted = true;
                }
                _ = crate::sip::transaction::until(give_up) => {
                    return if caller_left { LegOutcome::CallerGone } else { LegOutcome::NoAnswer };
                }
                _ = crate::sip::transaction::until(retransmit) => self.retransmit_2xx().await,
                input = self.rx.recv() => match input {
                    None => return LegOutcome::Failed("engine stopped".into()),
                    Some(CallInput::Cancel(st)) => {
                        st.reply(200, None).await;
                        self.finish_caller(487).await;
                        caller_left = true;
                        cancel_wanted = true;
                    }
                    Some(CallInput::Request(st)) if self.is_caller(&st.request) && st.request.method() == Some(&Method::Bye) => {
                        st.reply(200, None).await;
                        self.caller_left_dialog();
                        caller_left = true;
                        cancel_wanted = true;
                    }
                    Some(other) => self.handle_idle(other).await,
                },
            }
        }
    }

    async fn send_cancel(&self, invite: &Message, target: &Target, branch: &str) {
        if let Some(cancel) = cancel_for(invite) {
            // The CANCEL's own transaction; its response is not needed.
            let _ct = self
                .engine
                .layer
                .send_request(cancel, target.clone(), Some(branch.to_string()))
                .await;
        }
    }

    async fn relay_provisional(&mut self, r: &Message) {
        if self.caller_gone || self.caller_dialog.is_some() {
            return;
        }
        let status = r.status().unwrap_or(180);
        let mut resp = self.invite.response(status, Some(&self.caller_tag));
        resp.push_header(Name::Contact, self.contact(self.invite.transport));
        if !r.body.is_empty()
            && let Ok(s) = sdp::filter(&r.body)
        {
            resp.set_body("application/sdp", Bytes::from(s));
        }
        self.invite.respond(resp).await;
    }

    async fn far_answered(
        &mut self,
        invite: &Message,
        resp: &Message,
        target: Target,
        cancelled: bool,
        caller_left: bool,
    ) -> LegOutcome {
        let Ok(dialog) = Dialog::uac(invite, resp) else {
            return LegOutcome::Failed("far end's 2xx has no usable Contact or To".into());
        };
        let mut far = FarLeg { dialog, target };
        if cancelled || caller_left {
            // Answered after we gave up: acknowledge, then hang up.
            self.send_ack(&far, None).await;
            self.far = Some(far);
            self.bye_far().await;
            return if caller_left {
                LegOutcome::CallerGone
            } else {
                LegOutcome::NoAnswer
            };
        }
        let far_sdp = (!resp.body.is_empty()).then(|| sdp::filter(&resp.body));
        if self.caller_dialog.is_none() {
            self.send_ack(&far, None).await;
            let body = match far_sdp {
                Some(Ok(s)) => Some(Bytes::from(s)),
                Some(Err(_)) => {
                    self.far = Some(far);
                    self.bye_far().await;
                    self.finish_caller(488).await;
                    return LegOutcome::Failed("far end answered with no usable codec".into());
                }
                None => None,
            };
            self.answer_caller(body).await;
        } else {
            // RFC 3725: the new leg's offer goes to the caller in a re-INVITE; the
            // caller's answer goes back in the ACK.
            let Some(Ok(offer)) = far_sdp else {
                self.send_ack(&far, None).await;
                self.far = Some(far);
                self.bye_far().await;
                return LegOutcome::Failed("new leg made no usable offer".into());
            };
            match self.reinvite_caller(Bytes::from(offer)).await {
                Some(answer) => self.send_ack(&far, Some(answer)).await,
                None => {
                    self.send_ack(&far, None).await;
                    self.far = Some(far);
                    self.bye_far().await;
                    return LegOutcome::Failed("caller refused the re-INVITE".into());
                }
            }
        }
        far.dialog.refresh_target(resp);
        self.far = Some(far);
        LegOutcome::Answered
    }

    async fn send_ack(&self, far: &FarLeg, body: Option<Bytes>) {
        let seq = far.dialog.local_cseq;
        let mut ack = far.dialog.ack(seq);
        if let Some(b) = body {
            ack.set_body("application/sdp", b);
        }
        let target = self.dialog_target(&far.dialog, &far.target).await;
        self.engine.layer.send_stateless(ack, &target, None).await;
    }

    /// Where in-dialog requests of `dialog` go: its next hop resolved, else where the
    /// dialog's INVITE went.
    async fn dialog_target(&self, dialog: &Dialog, fallback: &Target) -> Target {
        match dialog.next_hop() {
            Uri::Sip(u) => match self.engine.resolver.resolve(u).await {
                Ok(t) => t.into_iter().next().unwrap_or_else(|| fallback.clone()),
                Err(_) => fallback.clone(),
            },
            Uri::Tel(_) | Uri::Other(_) => fallback.clone(),
        }
    }

    async fn answer_caller(&mut self, body: Option<Bytes>) {
        let mut resp = self.invite.response(200, Some(&self.caller_tag));
        resp.push_header(Name::Contact, self.contact(self.invite.transport));
        resp.push_header(Name::Allow, ALLOW);
        if let Some(b) = &body {
            resp.set_body("application/sdp", b.clone());
        }
        self.caller_answer = body;
        self.invite.respond(resp.clone()).await;
        if let Ok(d) = Dialog::uas(&self.invite.request, &self.caller_tag) {
            self.engine
                .add_dialog(&d.id.call_id, &self.caller_tag, self.tx.clone());
            self.caller_dialog = Some(d);
        }
        self.engine.remove_invite(&self.invite.key);
        if !self.invite.transport.is_reliable() {
            let t = self.engine.layer.timers();
            self.pending_2xx = Some(Pending2xx {
                response: resp,
                next: Instant::now() + t.t1,
                interval: t.t1,
                give_up: Instant::now() + t.t1x64(),
            });
        }
    }

    async fn retransmit_2xx(&mut self) {
        let t = self.engine.layer.timers();
        let Some(p) = &mut self.pending_2xx else {
            return;
        };
        if Instant::now() >= p.give_up {
            self.pending_2xx = None;
            tracing::info!(sid = %self.sid, "no ACK for the caller's 2xx; hanging up");
            self.hangup(408).await;
            return;
        }
        p.interval = (p.interval * 2).min(t.t2);
        p.next = Instant::now() + p.interval;
        let resp = p.response.clone();
        self.invite.respond(resp).await;
    }

    /// Sends a re-INVITE with `offer` to the caller; returns its answer.
    async fn reinvite_caller(&mut self, offer: Bytes) -> Option<Bytes> {
        let transport = self.invite.transport;
        let fallback = Target {
            transport,
            addr: self.invite.source,
            server_name: None,
        };
        let dialog = self.caller_dialog.as_mut()?;
        let mut req = dialog.request(Method::Invite);
        req.push_header(Name::Contact, self.contact(transport));
        req.set_body("application/sdp", offer);
        let dialog = self.caller_dialog.clone()?;
        let target = self.dialog_target(&dialog, &fallback).await;
        let seq = dialog.local_cseq;
        let mut ct = self
            .engine
            .layer
            .send_request(req, target.clone(), None)
            .await;
        while let Some(ev) = ct.events.recv().await {
            match ev {
                ClientEvent::Response(r) if r.status().is_some_and(|s| s >= 200) => {
                    let ok = r.status().is_some_and(|s| s < 300);
                    if ok {
                        let ack = dialog.ack(seq);
                        self.engine.layer.send_stateless(ack, &target, None).await;
                        let answer = sdp::filter(&r.body).ok().map(Bytes::from);
                        self.caller_answer = answer.clone();
                        return answer;
                    }
                    return None;
                }
                ClientEvent::Response(_) => {}
                _ => return None,
            }
        }
        None
    }

    fn is_caller(&self, m: &Message) -> bool {
        m.call_id().ok() == self.invite.request.call_id().ok()
    }

    fn caller_left_dialog(&mut self) {
        self.caller_gone = true;
        self.pending_2xx = None;
        if let Some(d) = &self.caller_dialog {
            self.engine.remove_dialog(&d.id.call_id, &d.id.local_tag);
        }
        self.engine.remove_invite(&self.invite.key);
    }

    /// Serves the call while nothing else does (a webhook is pending): answers what
    /// arrives, and returns once the caller has hung up or cancelled.
    pub async fn until_caller_gone(&mut self) {
        while !self.caller_gone {
            let retransmit = self.pending_2xx.as_ref().map(|p| p.next);
            tokio::select! {
                _ = crate::sip::transaction::until(retransmit) => self.retransmit_2xx().await,
                input = self.rx.recv() => match input {
                    None => return,
                    Some(CallInput::Cancel(st)) if self.caller_dialog.is_none() => {
                        st.reply(200, None).await;
                        self.finish_caller(487).await;
                    }
                    Some(other) => self.handle_idle(other).await,
                },
            }
        }
    }

    /// Waits while the legs are bridged, until one of them ends.
    pub async fn wait(&mut self, max_duration: Duration) -> LegEnd {
        let deadline = Instant::now() + max_duration;
        loop {
            let retransmit = self.pending_2xx.as_ref().map(|p| p.next);
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    self.hangup(480).await;
                    return LegEnd::MaxDuration;
                }
                _ = crate::sip::transaction::until(retransmit) => self.retransmit_2xx().await,
                input = self.rx.recv() => {
                    let Some(input) = input else { return LegEnd::CallerHangup };
                    if let Some(end) = self.bridged_input(input).await {
                        return end;
                    }
                }
            }
            if self.caller_gone {
                self.bye_far().await;
                return LegEnd::CallerHangup;
            }
        }
    }

    async fn bridged_input(&mut self, input: CallInput) -> Option<LegEnd> {
        let CallInput::Request(st) = input else {
            self.handle_idle(input).await;
            return None;
        };
        let method = st.request.method().cloned();
        if self.is_caller(&st.request) {
            match method {
                Some(Method::Bye) if !self.caller_cseq_in_order(&st.request) => {
                    st.reply(500, None).await;
                    None
                }
                Some(Method::Bye) => {
                    st.reply(200, None).await;
                    self.caller_left_dialog();
                    self.bye_far().await;
                    Some(LegEnd::CallerHangup)
                }
                _ => {
                    self.relay_to_far(st).await;
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
                Some(Method::Refer) => Some(self.refer(st).await),
                _ => {
                    self.relay_to_caller(st).await;
                    None
                }
            }
        }
    }

    /// Handles what can arrive at any time: ACKs, stray 2xx, requests outside the
    /// bridged flow.
    async fn handle_idle(&mut self, input: CallInput) {
        match input {
            CallInput::Ack(_) => self.pending_2xx = None,
            CallInput::StrayResponse(r) => {
                if let Some(far) = &self.far
                    && r.call_id().ok() == Some(far.dialog.id.call_id.as_str())
                {
                    self.send_ack(far, None).await;
                }
            }
            CallInput::Cancel(st) => st.reply(200, None).await,
            CallInput::Request(st) => {
                let is_bye = st.request.method() == Some(&Method::Bye);
                if is_bye && self.is_caller(&st.request) {
                    st.reply(200, None).await;
                    self.caller_left_dialog();
                } else if is_bye {
                    st.reply(200, None).await;
                    self.drop_far();
                } else if self.is_caller(&st.request) && self.far.is_none() {
                    self.answer_locally(st).await;
                } else {
                    st.reply(491, None).await;
                }
            }
        }
    }

    /// A request from the caller while no far leg is bridged: a re-INVITE is answered
    /// with the last SDP we gave; UPDATE, INFO and OPTIONS 200; anything else 405.
    async fn answer_locally(&mut self, st: ServerTransaction) {
        if !self.caller_cseq_in_order(&st.request) {
            st.reply(500, None).await;
            return;
        }
        let mut resp = st.response(200, None);
        match st.request.method() {
            Some(Method::Invite) => {
                resp.push_header(Name::Contact, self.contact(st.transport));
                if let Some(b) = &self.caller_answer {
                    resp.set_body("application/sdp", b.clone());
                }
            }
            Some(Method::Update | Method::Info | Method::Options) => {}
            _ => {
                resp = st.response(405, None);
                resp.push_header(Name::Allow, ALLOW);
            }
        }
        st.respond(resp).await;
    }

    /// Whether a request from the caller has a CSeq above the last (RFC 3261
    /// §12.2.2); a request out of order is answered 500.
    fn caller_cseq_in_order(&mut self, request: &Message) -> bool {
        self.caller_dialog
            .as_mut()
            .is_none_or(|d| d.accept_remote_cseq(request))
    }

    /// Relays an in-dialog request from the caller to the far leg and its final
    /// response back (re-INVITE, UPDATE, INFO).
    async fn relay_to_far(&mut self, st: ServerTransaction) {
        if !self.caller_cseq_in_order(&st.request) {
            st.reply(500, None).await;
            return;
        }
        let Some(transport) = self.far.as_ref().map(|f| f.target.transport) else {
            return self.answer_locally(st).await;
        };
        let contact = self.contact(transport);
        if is_target_refresh(&st.request)
            && let Some(d) = self.caller_dialog.as_mut()
        {
            d.refresh_target(&st.request);
        }
        let Some(far) = self.far.as_mut() else { return };
        let method = st.request.method().cloned().unwrap_or(Method::Info);
        let mut req = far.dialog.request(method.clone());
        copy_body(&st.request, &mut req);
        if method == Method::Invite {
            req.push_header(Name::Contact, contact);
        }
        let (dialog, fallback) = (far.dialog.clone(), far.target.clone());
        let target = self.dialog_target(&dialog, &fallback).await;
        let resp = self.relay(req, target.clone(), &dialog, &st).await;
        if method == Method::Invite && resp.is_some_and(|s| s < 300) {
            let ack = dialog.ack(dialog.local_cseq);
            self.engine.layer.send_stateless(ack, &target, None).await;
        }
    }

    /// Relays an in-dialog request from the far leg to the caller.
    async fn relay_to_caller(&mut self, st: ServerTransaction) {
        let transport = self.invite.transport;
        let fallback = Target {
            transport,
            addr: self.invite.source,
            server_name: None,
        };
        let contact = self.contact(transport);
        if let Some(far) = self.far.as_mut() {
            if !far.dialog.accept_remote_cseq(&st.request) {
                st.reply(500, None).await;
                return;
            }
            if is_target_refresh(&st.request) {
                far.dialog.refresh_target(&st.request);
            }
        }
        let Some(dialog) = self.caller_dialog.as_mut() else {
            st.reply(491, None).await;
            return;
        };
        let method = st.request.method().cloned().unwrap_or(Method::Info);
        let mut req = dialog.request(method.clone());
        copy_body(&st.request, &mut req);
        if method == Method::Invite {
            req.push_header(Name::Contact, contact);
        }
        let dialog = dialog.clone();
        let target = self.dialog_target(&dialog, &fallback).await;
        let resp = self.relay(req, target.clone(), &dialog, &st).await;
        if method == Method::Invite && resp.is_some_and(|s| s < 300) {
            let ack = dialog.ack(dialog.local_cseq);
            self.engine.layer.send_stateless(ack, &target, None).await;
        }
    }

    /// Sends `req`, then answers `st` with the final status (and SDP) it got.
    async fn relay(
        &self,
        req: Message,
        target: Target,
        _dialog: &Dialog,
        st: &ServerTransaction,
    ) -> Option<u16> {
        let mut ct = self.engine.layer.send_request(req, target, None).await;
        while let Some(ev) = ct.events.recv().await {
            if let ClientEvent::Response(r) = ev {
                let status = r.status().unwrap_or(500);
                if status < 200 {
                    continue;
                }
                let mut resp = st.response(status, None);
                if status < 300 {
                    resp.push_header(Name::Contact, self.contact(st.transport));
                }
                copy_body(&r, &mut resp);
                st.respond(resp).await;
                return Some(status);
            }
            break;
        }
        st.reply(408, None).await;
        None
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
            .headers
            .iter()
            .filter(|h| h.name.as_str().to_ascii_lowercase().starts_with("x-"))
            .map(|h| (h.name.as_str().to_string(), h.value.clone()))
            .collect();
        let mut resp = st.response(202, None);
        resp.push_header(Name::Contact, self.contact(st.transport));
        st.respond(resp).await;
        self.notify_far("SIP/2.0 100 Trying", "active;expires=60")
            .await;
        self.notify_far("SIP/2.0 200 OK", "terminated;reason=noresource")
            .await;
        self.bye_far().await;
        LegEnd::Transfer { refer_to, headers }
    }

    async fn notify_far(&mut self, frag: &str, state: &str) {
        let Some(transport) = self.far.as_ref().map(|f| f.target.transport) else {
            return;
        };
        let contact = self.contact(transport);
        let Some(far) = self.far.as_mut() else { return };
        let mut req = far.dialog.request(Method::Notify);
        req.push_header(Name::Event, "refer");
        req.push_header(Name::SubscriptionState, state);
        req.push_header(Name::Contact, contact);
        req.set_body(
            "message/sipfrag;version=2.0",
            Bytes::from(format!("{frag}\r\n")),
        );
        let (dialog, fallback) = (far.dialog.clone(), far.target.clone());
        let target = self.dialog_target(&dialog, &fallback).await;
        let mut ct = self.engine.layer.send_request(req, target, None).await;
        while let Some(ClientEvent::Response(r)) = ct.events.recv().await {
            if r.status().is_some_and(|s| s >= 200) {
                break;
            }
        }
    }

    fn drop_far(&mut self) {
        if let Some(far) = self.far.take() {
            self.engine
                .remove_dialog(&far.dialog.id.call_id, &far.dialog.id.local_tag);
        }
    }

    async fn bye_far(&mut self) {
        let Some(mut far) = self.far.take() else {
            return;
        };
        self.engine
            .remove_dialog(&far.dialog.id.call_id, &far.dialog.id.local_tag);
        let req = far.dialog.request(Method::Bye);
        let target = self.dialog_target(&far.dialog, &far.target).await;
        let mut ct = self.engine.layer.send_request(req, target, None).await;
        while let Some(ClientEvent::Response(r)) = ct.events.recv().await {
            if r.status().is_some_and(|s| s >= 200) {
                break;
            }
        }
    }

    async fn bye_caller(&mut self) {
        let transport = self.invite.transport;
        let fallback = Target {
            transport,
            addr: self.invite.source,
            server_name: None,
        };
        let Some(mut dialog) = self.caller_dialog.clone() else {
            return;
        };
        self.caller_left_dialog();
        let req = dialog.request(Method::Bye);
        let target = self.dialog_target(&dialog, &fallback).await;
        let mut ct = self.engine.layer.send_request(req, target, None).await;
        while let Some(ClientEvent::Response(r)) = ct.events.recv().await {
            if r.status().is_some_and(|s| s >= 200) {
                break;
            }
        }
    }
}

/// The CANCEL for an INVITE we sent (RFC 3261 §9.1); it goes out with the INVITE's
/// branch.
pub(crate) fn cancel_for(invite: &Message) -> Option<Message> {
    crate::sip::transaction::request_for_invite(invite, Method::Cancel, invite.header(&Name::To)?)
}

/// Whether a request refreshes its dialog's remote target (RFC 3261 §12.2, RFC 3311).
fn is_target_refresh(request: &Message) -> bool {
    matches!(request.method(), Some(Method::Invite | Method::Update))
}

fn copy_body(from: &Message, to: &mut Message) {
    if from.body.is_empty() {
        return;
    }
    let body = match from.content_type() {
        Some(ct) if ct.eq_ignore_ascii_case("application/sdp") => match sdp::filter(&from.body) {
            Ok(s) => Bytes::from(s),
            Err(_) => return,
        },
        _ => from.body.clone(),
    };
    to.set_body(
        from.content_type().unwrap_or("application/octet-stream"),
        body,
    );
}
