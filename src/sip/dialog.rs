//! Dialogs (RFC 3261 §12): the state a UAC or UAS keeps for one call leg — ids, route
//! set, remote target, CSeq on both sides — and how in-dialog requests are built.

use super::error::ParseError;
use super::header::{Name, value_of};
use super::message::Message;
use super::method::Method;
use super::typed::{CSeq, NameAddr};
use super::uri::Uri;

/// The identity of a dialog as seen from our side.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

/// One dialog.
#[derive(Debug, Clone)]
pub struct Dialog {
    /// Call-ID and tags.
    pub id: DialogId,
    /// Our URI and tag (From in our requests).
    pub local: NameAddr,
    /// The peer's URI and tag (To in our requests).
    pub remote: NameAddr,
    /// Where in-dialog requests go: the peer's Contact, refreshed by target-refresh
    /// requests and responses.
    pub remote_target: Uri,
    /// Route set, in the order our requests carry it.
    pub route_set: Vec<NameAddr>,
    /// Our last CSeq number.
    pub local_cseq: u32,
    /// The peer's last CSeq number.
    pub remote_cseq: Option<u32>,
}

/// Random tag for a From or To.
pub fn new_tag() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

fn contact_uri(message: &Message) -> Result<Uri, ParseError> {
    message
        .contacts()?
        .into_iter()
        .next()
        .map(|c| c.uri)
        .ok_or(ParseError::Missing("Contact"))
}

impl Dialog {
    /// The UAS side, from the INVITE and the tag we put in our answer (§12.1.1).
    pub fn uas(invite: &Message, local_tag: &str) -> Result<Dialog, ParseError> {
        let remote = invite.from_header()?.clone();
        let mut local = invite.to_header()?.clone();
        local.set_tag(local_tag);
        Ok(Dialog {
            id: DialogId {
                call_id: invite.call_id()?.to_string(),
                local_tag: local_tag.to_string(),
                remote_tag: remote.tag().unwrap_or("").to_string(),
            },
            local,
            remote,
            remote_target: contact_uri(invite)?,
            route_set: invite.record_routes()?,
            local_cseq: rand::random::<u32>() % 10_000 + 1,
            remote_cseq: Some(invite.cseq()?.seq),
        })
    }

    /// The UAC side, from our INVITE and the peer's 1xx-with-tag or 2xx (§12.1.2).
    pub fn uac(invite: &Message, response: &Message) -> Result<Dialog, ParseError> {
        let local = invite.from_header()?.clone();
        let remote = response.to_header()?.clone();
        let mut route_set = response.record_routes()?;
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: invite.call_id()?.to_string(),
                local_tag: local.tag().unwrap_or("").to_string(),
                remote_tag: remote.tag().unwrap_or("").to_string(),
            },
            local,
            remote,
            remote_target: contact_uri(response)?,
            route_set,
            local_cseq: invite.cseq()?.seq,
            remote_cseq: None,
        })
    }

    /// A new in-dialog request (§12.2.1.1): Request-URI the remote target, the route
    /// set as Route, the next CSeq. ACK and CANCEL do not take a new CSeq; use
    /// [`Dialog::ack`] for an ACK.
    pub fn request(&mut self, method: Method) -> Message {
        self.local_cseq += 1;
        self.build(method, self.local_cseq)
    }

    /// The ACK for a 2xx to the INVITE with CSeq number `seq` (§13.2.2.4).
    pub fn ack(&self, seq: u32) -> Message {
        self.build(Method::Ack, seq)
    }

    fn build(&self, method: Method, seq: u32) -> Message {
        let mut m = Message::request(method.clone(), self.remote_target.clone());
        m.push_header(Name::MaxForwards, "70");
        m.push_header(Name::From, value_of(&self.local));
        m.push_header(Name::To, value_of(&self.remote));
        m.push_header(Name::CallId, self.id.call_id.clone());
        m.push_header(Name::CSeq, value_of(&CSeq { seq, method }));
        for r in &self.route_set {
            m.push_header(Name::Route, value_of(r));
        }
        m
    }

    /// Where our requests go first: the first Route (loose routing), else the remote
    /// target.
    pub fn next_hop(&self) -> &Uri {
        self.route_set
            .first()
            .map_or(&self.remote_target, |r| &r.uri)
    }

    /// Checks an in-dialog request's CSeq (§12.2.2): a number not above the last one
    /// is out of order and must be answered 500. Returns false then. (Retransmissions
    /// never get here: their transaction absorbs them.)
    pub fn accept_remote_cseq(&mut self, request: &Message) -> bool {
        let Ok(cseq) = request.cseq() else {
            return false;
        };
        if cseq.method == Method::Ack || cseq.method == Method::Cancel {
            return true;
        }
        match self.remote_cseq {
            Some(last) if cseq.seq <= last => false,
            _ => {
                self.remote_cseq = Some(cseq.seq);
                true
            }
        }
    }

    /// Applies a target refresh (re-INVITE, UPDATE, or their 2xx): a new Contact
    /// becomes the remote target (§12.2).
    pub fn refresh_target(&mut self, message: &Message) {
        if let Ok(uri) = contact_uri(message) {
            self.remote_target = uri;
        }
    }
}
