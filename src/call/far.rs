//! A far leg: the UAC side of a call, towards a bot, an agent or a carrier. This file
//! builds the leg's INVITE from the caller's, and holds the dialog once the far end
//! answered: ACK, in-dialog requests, NOTIFY for a REFER, BYE.

use std::sync::Arc;

use bytes::Bytes;
use compact_str::{CompactString, ToCompactString};

use super::core::{ALLOW, Core};
use crate::runtime::LegRequest;
use crate::sip::dialog::{Dialog, new_tag};
use crate::sip::header::{Name, value_of};
use crate::sip::message::Message;
use crate::sip::method::Method;
use crate::sip::transport::Target;
use crate::sip::typed::{CSeq, NameAddr};
use crate::sip::uri::{Host, SipUri, Uri};

/// An answered far leg.
pub struct FarLeg {
    core: Arc<Core>,
    /// The leg's dialog (boxed: a leg is moved into and out of the call's futures,
    /// and a dialog is most of a kilobyte).
    pub(crate) dialog: Box<Dialog>,
    /// Where its INVITE went (in-dialog requests go there when the dialog's next
    /// hop does not resolve).
    pub(crate) target: Target,
    /// The CSeq number and body of the first ACK sent (for its INVITE's 2xx): a
    /// retransmission of that 2xx gets the same ACK again.
    acked: std::sync::OnceLock<(u32, Option<Bytes>)>,
}

impl FarLeg {
    /// The leg whose INVITE `invite` (as sent to `target`) got the 2xx `resp`;
    /// `None` when the 2xx cannot start a dialog.
    pub(crate) fn answered(
        core: Arc<Core>,
        invite: &Message,
        resp: &Message,
        target: Target,
    ) -> Option<FarLeg> {
        let dialog = Box::new(Dialog::uac(invite, resp).ok()?);
        Some(FarLeg {
            core,
            dialog,
            target,
            acked: std::sync::OnceLock::new(),
        })
    }

    /// Whether `m` belongs to this leg's dialog.
    pub(crate) fn owns(&self, m: &Message) -> bool {
        m.call_id().ok() == Some(self.dialog.id.call_id.as_str())
    }

    /// A 2xx that arrived after the leg's INVITE transaction ended: a
    /// retransmission of the leg's own answer is ACKed again; an answer to the same
    /// INVITE from another branch (a fork downstream, another To tag) opens a
    /// dialog of its own, which is ACKed and hung up (RFC 3261 §13.2.2.4). A 2xx to
    /// anything but an INVITE needs nothing.
    pub(crate) async fn stray_2xx(&self, r: &Message) {
        let Some(seq) = r
            .cseq()
            .ok()
            .filter(|c| c.method == Method::Invite)
            .map(|c| c.seq)
        else {
            return;
        };
        let tag = r.to_header().ok().and_then(|t| t.tag().map(str::to_string));
        if tag.as_deref() == Some(self.dialog.id.remote_tag.as_str()) {
            // The INVITE's number, whatever the dialog has sent since, and the
            // body the first ACK had.
            let body = self
                .acked
                .get()
                .filter(|(first, _)| *first == seq)
                .and_then(|(_, body)| body.clone());
            self.ack_numbered(seq, body).await;
        } else {
            tracing::info!(tag = ?tag, "another branch answered the far leg's INVITE; hanging it up");
            self.core.hang_up_answer(r, &self.target).await;
        }
    }

    /// ACKs the leg's 2xx, with the SDP answer when the leg made the offer.
    pub(crate) async fn ack(&self, body: Option<Bytes>) {
        self.ack_numbered(self.dialog.local_cseq, body).await;
    }

    /// ACKs the 2xx to the leg's INVITE numbered `seq` (RFC 3261 §13.2.2.4); what
    /// the first ACK carried is kept for the 2xx's retransmissions.
    async fn ack_numbered(&self, seq: u32, body: Option<Bytes>) {
        let _ = self.acked.set((seq, body.clone()));
        let mut ack = self.dialog.ack(seq);
        if let Some(b) = body {
            ack.set_body("application/sdp", b);
        }
        let target = self.core.dialog_target(&self.dialog, &self.target).await;
        self.core.layer.send_stateless(ack, &target, None).await;
    }

    /// Sends an in-dialog request built by `build` and waits for its final response.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        build: impl FnOnce(&mut Message),
    ) -> Option<Message> {
        let mut req = self.dialog.request(method);
        build(&mut req);
        self.core.request_on(&self.dialog, req, &self.target).await
    }

    /// A NOTIFY with a REFER's progress (RFC 3515).
    pub(crate) async fn notify(&mut self, frag: &str, state: &str) {
        let contact = self.core.contact(self.target.transport);
        self.send(Method::Notify, |req| {
            req.push_header(Name::Event, "refer");
            req.push_header(Name::SubscriptionState, state);
            req.push_header(Name::Contact, contact);
            req.set_body(
                "message/sipfrag;version=2.0",
                Bytes::from(format!("{frag}\r\n")),
            );
        })
        .await;
    }

    /// Stops routing the leg's messages to the call.
    pub(crate) fn forget(&self) {
        self.core
            .remove_dialog(&self.dialog.id.call_id, &self.dialog.id.local_tag);
    }

    /// Hangs the leg up with BYE.
    pub(crate) async fn bye(mut self) {
        self.forget();
        self.send(Method::Bye, |_| {}).await;
    }
}

/// Who a far leg's INVITE presents as calling, and what it carries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Calling {
    /// The calling number (From's user) when the leg names no caller id.
    pub user: Option<String>,
    /// From's display name.
    pub display: Option<CompactString>,
    /// The number called (the DID), To's user whatever user the Request-URI has.
    pub did: Option<String>,
    /// Max-Forwards.
    pub hops: u8,
    /// The SDP offer; none when the leg is invited to make the offer (RFC 3725).
    pub offer: Option<Bytes>,
}

/// The INVITE of a far leg for `calling`: From carries the calling number (or the
/// leg's caller id), To the DID. A caller not yet answered gives its offer; one
/// already answered is re-targeted (RFC 3725): the leg is invited without SDP and
/// makes the offer.
pub(crate) fn invite(core: &Core, calling: &Calling, leg: &LegRequest, target: &Target) -> Message {
    let user = leg
        .caller_id
        .clone()
        .or_else(|| calling.user.clone())
        .unwrap_or_else(|| "anonymous".into());
    let (host, _) = core
        .layer
        .local_host_port(target.transport)
        .unwrap_or((Host::Domain("callflow.invalid".into()), 5060));
    let mut from = NameAddr::new(Uri::Sip(SipUri::new(Some(&user), host, None)));
    from.display = calling.display.clone();
    from.set_tag(&new_tag());
    let mut to_uri = leg.uri.clone();
    to_uri.params.clear();
    if let Some(did) = &calling.did {
        to_uri.user = Some(did.as_str().into());
    }
    let mut m = Message::request(Method::Invite, Uri::Sip(leg.uri.clone()));
    m.push_header(Name::MaxForwards, calling.hops.to_compact_string());
    m.set_from(from);
    m.push_header(Name::To, value_of(&NameAddr::new(Uri::Sip(to_uri))));
    m.push_header(
        Name::CallId,
        crate::sip::hex_id::<String>("", rand::random::<u128>(), 32),
    );
    let cseq = CSeq {
        seq: 1,
        method: Method::Invite,
    };
    m.push_header(Name::CSeq, cseq.value());
    m.push_header(Name::Contact, core.contact(target.transport));
    m.push_header(Name::Allow, ALLOW);
    for (name, value) in &leg.headers {
        m.push_header(Name::parse(name), value.clone());
    }
    if let Some(offer) = &calling.offer {
        m.set_body("application/sdp", offer.clone());
    }
    m
}

/// The dialog key (Call-ID, From tag) of a far leg's INVITE.
pub(crate) fn dialog_key(invite: &Message) -> (String, String) {
    let call_id = invite.call_id().unwrap_or_default().to_string();
    let from_tag = invite
        .from_header()
        .ok()
        .and_then(|f| f.tag().map(str::to_string))
        .unwrap_or_default();
    (call_id, from_tag)
}

/// The CANCEL for an INVITE we sent (RFC 3261 §9.1); it goes out with the INVITE's
/// branch.
pub(crate) fn cancel_for(invite: &Message) -> Option<Message> {
    crate::sip::transaction::request_for_invite(invite, Method::Cancel, invite.header(&Name::To)?)
}
