//! The caller's leg. Usually the UAS side of a call: it holds the caller's INVITE
//! server transaction until the call is answered or refused, then the caller's
//! dialog; it answers (retransmitting the 2xx until the ACK, RFC 3261 §13.3.1.4),
//! refuses, re-INVITEs the caller when its media is re-targeted (RFC 3725) and hangs
//! up.
//!
//! A call the calls API places has a first party callflow invited itself without SDP
//! ([`super::originate`]): its 2xx carried the offer, and "answering" it is the ACK
//! with the answer (RFC 3725 §4.1). Until that ACK the first party retransmits its
//! 2xx; it gives up after 64·T1, and so does the call.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::core::{ALLOW, Core};
use super::{CallInput, sdp};
use crate::sip::dialog::{Dialog, new_tag};
use crate::sip::header::Name;
use crate::sip::message::Message;
use crate::sip::method::Method;
use crate::sip::transaction::ServerTransaction;
use crate::sip::transport::Target;

/// A 2xx to the caller, retransmitted until its ACK (RFC 3261 §13.3.1.4).
struct Pending2xx {
    response: Message,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// How the caller's leg came to be.
enum Side {
    /// The caller called: its INVITE's server transaction.
    Called(ServerTransaction),
    /// callflow called the first party (the calls API); boxed, as the rarer side.
    Placed(Box<Placed>),
}

/// A first party callflow called, whose 2xx carried the offer.
struct Placed {
    /// Our INVITE, as sent.
    invite: Arc<Message>,
    /// Where it went.
    target: Target,
    /// The ACK with our answer, once sent (sent again for a retransmitted 2xx).
    ack: Option<Message>,
    /// When the first party stops retransmitting its 2xx and gives up on our ACK.
    ack_by: Instant,
}

/// The caller's leg of a call.
pub struct CallerLeg {
    core: Arc<Core>,
    /// The caller's INVITE, or the INVITE that reached the first party.
    side: Side,
    /// Our tag towards the caller.
    tag: String,
    /// The caller's dialog, once answered.
    dialog: Option<Dialog>,
    /// The caller's SDP offer, filtered (from the INVITE).
    offer: Option<Bytes>,
    /// The last SDP we gave the caller.
    answer: Option<Bytes>,
    /// Our 2xx, until the caller ACKs it.
    pending_2xx: Option<Pending2xx>,
    /// Whether the caller has hung up, cancelled or been refused.
    gone: bool,
    /// Whether the caller cancelled its INVITE before being answered.
    cancelled: bool,
}

impl CallerLeg {
    /// The leg of the caller who sent `invite`.
    pub(crate) fn new(core: Arc<Core>, invite: ServerTransaction) -> CallerLeg {
        CallerLeg {
            core,
            side: Side::Called(invite),
            tag: new_tag(),
            dialog: None,
            offer: None,
            answer: None,
            pending_2xx: None,
            gone: false,
            cancelled: false,
        }
    }

    /// The first party whose INVITE `invite` (sent to `target`) got the 2xx `resp`
    /// with an `offer` (filtered); `None` when the 2xx cannot start a dialog. Its
    /// dialog's messages reach `tx` from now on.
    pub(crate) fn placed(
        core: Arc<Core>,
        invite: Arc<Message>,
        resp: &Message,
        target: Target,
        offer: Bytes,
        tx: &mpsc::Sender<CallInput>,
    ) -> Option<CallerLeg> {
        let mut dialog = Dialog::uac(&invite, resp).ok()?;
        dialog.refresh_target(resp);
        core.add_dialog(&dialog.id.call_id, &dialog.id.local_tag, tx.clone());
        let ack_by = Instant::now() + core.layer.timers().t1x64();
        Some(CallerLeg {
            tag: dialog.id.local_tag.clone(),
            side: Side::Placed(Box::new(Placed {
                invite,
                target,
                ack: None,
                ack_by,
            })),
            core,
            dialog: Some(dialog),
            offer: Some(offer),
            answer: None,
            pending_2xx: None,
            gone: false,
            cancelled: false,
        })
    }

    /// The caller's INVITE (for a first party callflow called: the INVITE it sent).
    pub fn request(&self) -> &Message {
        match &self.side {
            Side::Called(st) => &st.request,
            Side::Placed(p) => &p.invite,
        }
    }

    /// The caller's INVITE, shared, when the caller called.
    pub fn shared_request(&self) -> Option<std::sync::Arc<Message>> {
        match &self.side {
            Side::Called(st) => Some(st.request.clone()),
            Side::Placed(_) => None,
        }
    }

    /// Where the caller's INVITE came from (or where ours went).
    pub fn source(&self) -> std::net::SocketAddr {
        match &self.side {
            Side::Called(st) => st.source,
            Side::Placed(p) => p.target.addr,
        }
    }

    /// The transport the caller's leg runs over.
    fn transport(&self) -> crate::sip::typed::Transport {
        match &self.side {
            Side::Called(st) => st.transport,
            Side::Placed(p) => p.target.transport,
        }
    }

    /// Who a far leg's INVITE presents as calling: the caller (the From of its
    /// INVITE, or the To of ours), the number it reached (the To of its INVITE, or
    /// the caller id it was called from), and its offer while it is not answered.
    pub(crate) fn calling(&self) -> super::far::Calling {
        let (party, reached, hops) = match &self.side {
            Side::Called(st) => (
                st.request.from_header().ok(),
                st.request.to_header().ok(),
                st.request.max_forwards().ok().flatten().unwrap_or(70),
            ),
            Side::Placed(p) => (p.invite.to_header().ok(), p.invite.from_header().ok(), 70),
        };
        super::far::Calling {
            user: party
                .as_ref()
                .and_then(|f| f.uri.user().map(str::to_string)),
            display: party.and_then(|f| f.display.clone()),
            did: reached.and_then(|n| n.uri.user().map(str::to_string)),
            hops: hops.saturating_sub(1),
            offer: self.offer().cloned(),
        }
    }

    /// The caller's tag (the From tag of its INVITE, or the To tag of a first
    /// party's 2xx): its tag in rtpengine.
    pub(crate) fn party_tag(&self) -> String {
        match &self.side {
            Side::Called(st) => st
                .request
                .from_header()
                .ok()
                .and_then(|f| f.tag().map(str::to_string))
                .unwrap_or_default(),
            Side::Placed(_) => self
                .dialog
                .as_ref()
                .map(|d| d.id.remote_tag.clone())
                .unwrap_or_default(),
        }
    }

    /// The caller's filtered SDP offer, answered or not.
    pub(crate) fn first_offer(&self) -> Option<&Bytes> {
        self.offer.as_ref()
    }

    /// Whether the caller has been answered (a first party: whether it got our ACK).
    pub fn answered(&self) -> bool {
        match &self.side {
            Side::Called(_) => self.dialog.is_some(),
            Side::Placed(p) => p.ack.is_some(),
        }
    }

    /// Whether the caller has hung up or cancelled.
    pub fn gone(&self) -> bool {
        self.gone
    }

    /// The caller's filtered SDP offer, while it has not been answered.
    pub(crate) fn offer(&self) -> Option<&Bytes> {
        self.offer.as_ref().filter(|_| !self.answered())
    }

    /// Whether `m` belongs to the caller's side (its Call-ID).
    pub(crate) fn owns(&self, m: &Message) -> bool {
        m.call_id().ok() == self.request().call_id().ok()
    }

    /// Where requests to the caller go when its dialog has no usable next hop.
    fn fallback(&self) -> Target {
        match &self.side {
            Side::Called(st) => Target {
                transport: st.transport,
                addr: st.source,
                server_name: None,
            },
            Side::Placed(p) => p.target.clone(),
        }
    }

    /// When the next 2xx retransmission is due, if one is pending; for a first party
    /// not yet ACKed, when it gives up on the ACK.
    pub(crate) fn retransmit_at(&self) -> Option<Instant> {
        match &self.side {
            _ if self.gone => None,
            Side::Placed(p) if p.ack.is_none() => Some(p.ack_by),
            _ => self.pending_2xx.as_ref().map(|p| p.next),
        }
    }

    /// Checks the caller's SDP offer; answers 488 and returns false when no codec
    /// callflow carries is left, 400 when the body is not SDP.
    pub async fn accept_offer(&mut self) -> bool {
        let Side::Called(invite) = &self.side else {
            return true;
        };
        let body = sdp::body_of(&invite.request);
        if body.is_empty() {
            return true;
        }
        match sdp::filter(&body) {
            Ok(s) => {
                self.offer = Some(Bytes::from(s));
                true
            }
            Err(e) => {
                let status = if e == sdp::SdpError::NoCodec {
                    488
                } else {
                    400
                };
                tracing::info!(error = %e, status, "caller's offer refused");
                self.finish(status).await;
                false
            }
        }
    }

    /// Refuses a caller never answered with `status`, an optional explanation in
    /// the reason phrase, and extra headers (Retry-After, WWW-Authenticate).
    pub async fn reject(&mut self, status: u16, why: Option<&str>, headers: Vec<(Name, String)>) {
        if self.gone || self.answered() {
            return;
        }
        let Side::Called(invite) = &self.side else {
            return self.finish(status).await;
        };
        self.gone = true;
        let mut resp = invite.response(status, Some(&self.tag));
        if let (Some(why), crate::sip::StartLine::Response { reason, .. }) = (why, &mut resp.start)
        {
            *reason = format!("{} ({why})", crate::sip::message::reason_phrase(status)).into();
        }
        for (name, value) in headers {
            resp.push_header(name, value);
        }
        invite.respond(&resp).await;
        self.core.remove_invite(&invite.key);
    }

    /// Ends a caller never answered with a final `status`. A first party is ACKed
    /// with an answer that refuses its offer, then sent BYE (RFC 3261 §13.2.2.4).
    pub(crate) async fn finish(&mut self, status: u16) {
        self.gone = true;
        match &self.side {
            Side::Called(invite) => {
                invite.reply(status, Some(&self.tag)).await;
                self.core.remove_invite(&invite.key);
            }
            Side::Placed(_) => {
                let refusal = self
                    .offer
                    .as_deref()
                    .filter(|o| !o.is_empty())
                    .map(|o| Bytes::from(sdp::refuse(o)));
                self.ack_placed(refusal).await;
                self.bye().await;
            }
        }
    }

    /// ACKs a first party's 2xx with `answer`; the ACK is kept for its
    /// retransmitted 2xx.
    async fn ack_placed(&mut self, answer: Option<Bytes>) {
        let (Some(dialog), Side::Placed(p)) = (&self.dialog, &mut self.side) else {
            return;
        };
        let mut ack = dialog.ack(dialog.local_cseq);
        if let Some(b) = answer {
            ack.set_body("application/sdp", b);
        }
        p.ack = Some(ack.clone());
        let target = self.core.dialog_target(dialog, &p.target).await;
        self.core.layer.send_stateless(ack, &target, None).await;
    }

    /// A first party retransmitted its 2xx: the ACK goes again, once it was sent.
    pub(crate) async fn ack_again(&self) {
        let (Some(dialog), Side::Placed(p)) = (&self.dialog, &self.side) else {
            return;
        };
        if let Some(ack) = &p.ack {
            let target = self.core.dialog_target(dialog, &p.target).await;
            self.core
                .layer
                .send_stateless(ack.clone(), &target, None)
                .await;
        }
    }

    /// The caller cancelled its INVITE: 200 to the CANCEL, 487 to the INVITE.
    /// Whether the caller cancelled before being answered.
    pub fn was_cancelled(&self) -> bool {
        self.cancelled
    }

    pub(crate) async fn cancelled(&mut self, cancel: ServerTransaction) {
        if !matches!(self.side, Side::Called(_)) {
            return cancel.reply(481, None).await;
        }
        self.cancelled = true;
        cancel.reply(200, None).await;
        self.finish(487).await;
    }

    /// Relays a far leg's 180 or 183 to a caller not yet answered, with `early`
    /// (the early media's SDP as the caller gets it), if any.
    pub(crate) async fn provisional(&mut self, r: &Message, early: Option<Bytes>) {
        let Side::Called(invite) = &self.side else {
            return;
        };
        if self.gone || self.dialog.is_some() {
            return;
        }
        let status = r.status().unwrap_or(180);
        let mut resp = invite.response(status, Some(&self.tag));
        resp.push_header(Name::Contact, self.core.contact(invite.transport));
        if let Some(b) = early {
            resp.set_body("application/sdp", b);
        }
        invite.respond(&resp).await;
    }

    /// Answers the caller with `body`; its dialog's messages now reach `tx`. A first
    /// party gets the answer in the ACK of its 2xx.
    pub(crate) async fn answer(&mut self, body: Option<Bytes>, tx: &mpsc::Sender<CallInput>) {
        let Side::Called(invite) = &self.side else {
            self.answer = body.clone();
            return self.ack_placed(body).await;
        };
        let mut resp = invite.response(200, Some(&self.tag));
        resp.push_header(Name::Contact, self.core.contact(invite.transport));
        resp.push_header(Name::Allow, ALLOW);
        if let Some(b) = &body {
            resp.set_body("application/sdp", b.clone());
        }
        self.answer = body;
        invite.respond(&resp).await;
        if let Ok(d) = Dialog::uas(&invite.request, &self.tag) {
            self.core.add_dialog(&d.id.call_id, &self.tag, tx.clone());
            self.dialog = Some(d);
        }
        self.core.remove_invite(&invite.key);
        if !invite.transport.is_reliable() {
            let t = self.core.layer.timers();
            self.pending_2xx = Some(Pending2xx {
                response: resp,
                next: Instant::now() + t.t1,
                interval: t.t1,
                give_up: Instant::now() + t.t1x64(),
            });
        }
    }

    /// The caller's ACK arrived: stop retransmitting the 2xx.
    pub(crate) fn acked(&mut self) {
        self.pending_2xx = None;
    }

    /// Retransmits the 2xx; false when its ACK never came (64·T1), and the caller
    /// should be hung up.
    pub(crate) async fn retransmit_2xx(&mut self) -> bool {
        let t = self.core.layer.timers();
        let invite = match &self.side {
            Side::Called(invite) => invite,
            Side::Placed(p) => return p.ack.is_some() || Instant::now() < p.ack_by,
        };
        let Some(p) = &mut self.pending_2xx else {
            return true;
        };
        if Instant::now() >= p.give_up {
            self.pending_2xx = None;
            return false;
        }
        p.interval = (p.interval * 2).min(t.t2);
        p.next = Instant::now() + p.interval;
        let resp = p.response.clone();
        invite.respond(&resp).await;
        true
    }

    /// Sends a re-INVITE with `offer` to the caller; returns its answer.
    pub(crate) async fn reinvite(&mut self, offer: Bytes) -> Option<Bytes> {
        let contact = self.core.contact(self.transport());
        let fallback = self.fallback();
        let dialog = self.dialog.as_mut()?;
        let mut req = dialog.request(Method::Invite);
        req.push_header(Name::Contact, contact);
        req.set_body("application/sdp", offer);
        let dialog = dialog.clone();
        let r = self.core.request_on(&dialog, req, &fallback).await?;
        if r.status().is_none_or(|s| s >= 300) {
            return None;
        }
        let answer = sdp::filter(&sdp::body_of(&r)).ok().map(Bytes::from);
        self.answer = answer.clone();
        answer
    }

    /// Sends an in-dialog request built by `build` to the caller and waits for the
    /// final response; the request is `None` when the caller has no dialog.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        build: impl FnOnce(&mut Message),
    ) -> Option<Option<Message>> {
        let fallback = self.fallback();
        let dialog = self.dialog.as_mut()?;
        let mut req = dialog.request(method);
        build(&mut req);
        Some(self.core.request_on(dialog, req, &fallback).await)
    }

    /// Whether a request from the caller has a CSeq above the last (RFC 3261
    /// §12.2.2); a request out of order is answered 500.
    pub(crate) fn cseq_in_order(&mut self, request: &Message) -> bool {
        self.dialog
            .as_mut()
            .is_none_or(|d| d.accept_remote_cseq(request))
    }

    /// Takes a target refresh (re-INVITE, UPDATE) from the caller.
    pub(crate) fn refresh_target(&mut self, request: &Message) {
        if let Some(d) = self.dialog.as_mut() {
            d.refresh_target(request);
        }
    }

    /// A request from the caller while no far leg is bridged: a re-INVITE is answered
    /// with the last SDP we gave; UPDATE, INFO and OPTIONS 200; anything else 405.
    pub(crate) async fn answer_locally(&mut self, st: ServerTransaction) {
        if !self.cseq_in_order(&st.request) {
            st.reply(500, None).await;
            return;
        }
        let mut resp = st.response(200, None);
        match st.request.method() {
            Some(Method::Invite) => {
                resp.push_header(Name::Contact, self.core.contact(st.transport));
                if let Some(b) = &self.answer {
                    resp.set_body("application/sdp", b.clone());
                }
            }
            Some(Method::Update | Method::Info | Method::Options) => {}
            _ => {
                resp = st.response(405, None);
                resp.push_header(Name::Allow, ALLOW);
            }
        }
        st.respond(&resp).await;
    }

    /// The caller left its dialog (BYE, or the call is over): forget its routes.
    pub(crate) fn left(&mut self) {
        self.gone = true;
        self.pending_2xx = None;
        if let Some(d) = &self.dialog {
            self.core.remove_dialog(&d.id.call_id, &d.id.local_tag);
        }
        if let Side::Called(invite) = &self.side {
            self.core.remove_invite(&invite.key);
        }
    }

    /// The caller sent BYE on its dialog: 200, and the leg is gone.
    pub(crate) async fn bye_received(&mut self, st: ServerTransaction) {
        st.reply(200, None).await;
        self.left();
    }

    /// Sends BYE to an answered caller.
    pub(crate) async fn bye(&mut self) {
        if self.dialog.is_none() {
            return;
        }
        self.left();
        let _ = self.send(Method::Bye, |_| {}).await;
    }
}
