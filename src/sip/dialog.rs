//! Dialogs (RFC 3261 §12): the state a UAC or UAS keeps for one call leg — ids, route
//! set, remote target, CSeq on both sides — and how in-dialog requests are built.

use compact_str::CompactString;

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
    /// Our URI and tag, as From in our requests: written once, when the dialog
    /// begins, not again for each request.
    pub local: CompactString,
    /// The peer's URI and tag, as To in our requests (written once too).
    pub remote: CompactString,
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
    crate::sip::hex_id("", u128::from(rand::random::<u64>()), 12)
}

/// `parsed`, the name-addr header `name` of `message`, as our requests write it: the
/// text as received (it parsed, so it is well formed), else written anew.
fn written(message: &Message, name: &Name, parsed: &NameAddr) -> CompactString {
    message
        .header_on_one_line(name)
        .map_or_else(|| value_of(parsed), CompactString::from)
}

/// The URI of the first Contact, the only one a dialog's request or response
/// carries (RFC 3261 §12.1); any others are not read.
fn contact_uri(message: &Message) -> Result<Uri, ParseError> {
    let first = message
        .header_values(&Name::Contact)
        .next()
        .ok_or(ParseError::Missing("Contact"))?;
    NameAddr::parse(first)
        .map(|c| c.uri)
        .map_err(|e| ParseError::Header {
            name: "Contact",
            reason: e.to_string(),
        })
}

impl Dialog {
    /// The UAS side, from the INVITE and the tag we put in our answer (§12.1.1).
    pub fn uas(invite: &Message, local_tag: &str) -> Result<Dialog, ParseError> {
        let remote = invite.from_header()?;
        let local = invite.to_text_with_tag(local_tag)?;
        Ok(Dialog {
            id: DialogId {
                call_id: invite.call_id()?.to_string(),
                local_tag: local_tag.to_string(),
                remote_tag: remote.tag().unwrap_or("").to_string(),
            },
            local,
            remote: written(invite, &Name::From, remote),
            remote_target: contact_uri(invite)?,
            route_set: invite.record_routes()?,
            local_cseq: rand::random::<u32>() % 10_000 + 1,
            remote_cseq: Some(invite.cseq()?.seq),
        })
    }

    /// The UAC side, from our INVITE and the peer's 1xx-with-tag or 2xx (§12.1.2).
    pub fn uac(invite: &Message, response: &Message) -> Result<Dialog, ParseError> {
        let local = invite.from_header()?;
        let remote = response.to_header()?;
        let mut route_set = response.record_routes()?;
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: invite.call_id()?.to_string(),
                local_tag: local.tag().unwrap_or("").to_string(),
                remote_tag: remote.tag().unwrap_or("").to_string(),
            },
            local: written(invite, &Name::From, local),
            remote: written(response, &Name::To, remote),
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
        m.push_header(Name::From, self.local.clone());
        m.push_header(Name::To, self.remote.clone());
        m.push_header(Name::CallId, self.id.call_id.clone());
        m.push_header(Name::CSeq, CSeq { seq, method }.value());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Framing;

    fn message(text: &str) -> Message {
        Message::parse(text.replace('\n', "\r\n").as_bytes(), Framing::Datagram).unwrap()
    }

    const INVITE: &str = "INVITE sip:bob@b.example SIP/2.0
Via: SIP/2.0/UDP a.example:5060;branch=z9hG4bK1
Max-Forwards: 70
From: \"Alice A.\" <sip:alice@a.example;user=phone>;tag=a1;x-y=z
To: sip:bob@b.example
Call-ID: c1@a.example
CSeq: 7 INVITE
Contact: <sip:alice@10.0.0.1:5060>
Content-Length: 0

";

    /// The UAS's requests carry From and To as the INVITE had them (swapped), with
    /// our tag added to what was its To; the CSeq counts on from ours.
    #[test]
    fn uas_requests_carry_the_invites_names() {
        let invite = message(INVITE);
        let mut dialog = Dialog::uas(&invite, "b2").unwrap();
        let bye = dialog.request(Method::Bye);
        assert_eq!(bye.header(&Name::From), Some("sip:bob@b.example;tag=b2"));
        assert_eq!(
            bye.header(&Name::To),
            Some("\"Alice A.\" <sip:alice@a.example;user=phone>;tag=a1;x-y=z")
        );
        assert_eq!(bye.from_header().unwrap().tag(), Some("b2"));
        assert_eq!(bye.to_header().unwrap().tag(), Some("a1"));
        let cseq = bye.cseq().unwrap();
        assert_eq!((cseq.seq, &cseq.method), (dialog.local_cseq, &Method::Bye));
    }

    /// A From folded over two lines is never written back with its line break.
    #[test]
    fn a_folded_from_is_written_on_one_line() {
        let invite = message(&INVITE.replace("From: \"Alice A.\" <", "From: \"Alice A.\"\n <"));
        let mut dialog = Dialog::uas(&invite, "b2").unwrap();
        let to = dialog.request(Method::Bye);
        let to = to.header(&Name::To).unwrap();
        assert!(!to.contains(['\r', '\n']), "{to:?}");
        assert!(to.contains("<sip:alice@a.example;user=phone>") && to.contains("tag=a1"));
    }

    /// A To that already had a tag gets ours instead, written anew.
    #[test]
    fn uas_replaces_a_tag_the_to_had() {
        let invite =
            message(&INVITE.replace("To: sip:bob@b.example", "To: <sip:bob@b.example>;tag=old"));
        let dialog = Dialog::uas(&invite, "b2").unwrap();
        assert_eq!(dialog.local, "<sip:bob@b.example>;tag=b2");
    }

    /// The remote target is the first Contact's URI; a message without a Contact,
    /// or whose first Contact does not read, makes no dialog.
    #[test]
    fn the_remote_target_is_the_first_contact() {
        let two = INVITE.replace(
            "Contact: <sip:alice@10.0.0.1:5060>",
            "Contact: \"A\" <sip:alice@10.0.0.9:5062;transport=udp>;expires=60, <sip:x@y>",
        );
        let dialog = Dialog::uas(&message(&two), "b2").unwrap();
        assert_eq!(
            dialog.remote_target.to_string(),
            "sip:alice@10.0.0.9:5062;transport=udp"
        );
        let none = INVITE.replace("Contact: <sip:alice@10.0.0.1:5060>\n", "");
        assert!(matches!(
            Dialog::uas(&message(&none), "b2"),
            Err(ParseError::Missing("Contact"))
        ));
        let star = INVITE.replace("<sip:alice@10.0.0.1:5060>", "*");
        assert!(matches!(
            Dialog::uas(&message(&star), "b2"),
            Err(ParseError::Header {
                name: "Contact",
                ..
            })
        ));
    }

    /// The UAC's requests carry our INVITE's From and the answer's To.
    #[test]
    fn uac_requests_carry_from_and_the_answers_to() {
        let invite = message(INVITE);
        let ok = message(
            "SIP/2.0 200 OK
Via: SIP/2.0/UDP a.example:5060;branch=z9hG4bK1
From: \"Alice A.\" <sip:alice@a.example;user=phone>;tag=a1;x-y=z
To: <sip:bob@b.example>;tag=b9
Call-ID: c1@a.example
CSeq: 7 INVITE
Contact: <sip:bob@10.0.0.2>
Content-Length: 0

",
        );
        let dialog = Dialog::uac(&invite, &ok).unwrap();
        let ack = dialog.ack(7);
        assert_eq!(
            ack.header(&Name::From),
            Some("\"Alice A.\" <sip:alice@a.example;user=phone>;tag=a1;x-y=z")
        );
        assert_eq!(ack.header(&Name::To), Some("<sip:bob@b.example>;tag=b9"));
        assert_eq!(ack.header(&Name::CSeq), Some("7 ACK"));
        assert_eq!(
            ack.request_uri().map(|u| u.to_string()).as_deref(),
            Some("sip:bob@10.0.0.2")
        );
    }
}
