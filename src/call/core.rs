//! What every call's legs share: the transaction layer, the resolver, and the table
//! that routes a dialog's messages to the call that owns it. The engine
//! ([`super::engine`]) dispatches through the table; legs add and remove their
//! dialogs in it and send through [`Core::transact`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use compact_str::CompactString;
use tokio::sync::mpsc;

use super::CallInput;
use crate::sip::NetworkHasher;
use crate::sip::dialog::Dialog;
use crate::sip::message::Message;
use crate::sip::resolve::Resolver;
use crate::sip::transaction::{ClientEvent, Key, TransactionLayer};
use crate::sip::transport::Target;
use crate::sip::typed::Transport;
use crate::sip::uri::{Param, SipUri, Uri};

/// The methods callflow takes, for Allow headers.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, UPDATE, INFO";

/// Where messages for a call's dialogs and pending INVITE go.
#[derive(Default)]
struct Routes {
    /// Each dialog leg's call.
    dialogs: DialogRoutes,
    /// The server-transaction key of each caller INVITE not yet answered → its call.
    invites: HashMap<Key, mpsc::Sender<CallInput>, NetworkHasher>,
}

/// Each dialog leg's call, by Call-ID and then our tag: looked up with the
/// message's own strings, without copying them into a key as a map keyed by the
/// pair would (two allocations for every look-up). The legs of one Call-ID are
/// nearly always one.
#[derive(Default)]
struct DialogRoutes(HashMap<String, DialogLegs, NetworkHasher>);

/// The dialog legs of one Call-ID: (our tag, the call).
type DialogLegs = smallvec::SmallVec<[(CompactString, mpsc::Sender<CallInput>); 1]>;

impl DialogRoutes {
    /// Routes (Call-ID, our tag) to `tx`, in place of any route it had.
    fn insert(&mut self, call_id: &str, local_tag: &str, tx: mpsc::Sender<CallInput>) {
        let legs = match self.0.get_mut(call_id) {
            Some(legs) => legs,
            None => self.0.entry(call_id.to_string()).or_default(),
        };
        match legs.iter_mut().find(|(tag, _)| tag == local_tag) {
            Some(leg) => leg.1 = tx,
            None => legs.push((local_tag.into(), tx)),
        }
    }

    /// Forgets the route of (Call-ID, our tag).
    fn remove(&mut self, call_id: &str, local_tag: &str) {
        let Some(legs) = self.0.get_mut(call_id) else {
            return;
        };
        legs.retain(|(tag, _)| tag != local_tag);
        if legs.is_empty() {
            self.0.remove(call_id);
        }
    }

    /// Where (Call-ID, our tag) goes.
    fn get(&self, call_id: &str, local_tag: &str) -> Option<&mpsc::Sender<CallInput>> {
        let legs = self.0.get(call_id)?;
        legs.iter()
            .find(|(tag, _)| tag == local_tag)
            .map(|(_, tx)| tx)
    }

    /// How many legs are routed.
    fn len(&self) -> usize {
        self.0.values().map(|legs| legs.len()).sum()
    }
}

/// State shared by the engine and every call.
pub struct Core {
    /// The transaction layer.
    pub layer: Arc<TransactionLayer>,
    /// Resolves the URIs calls dial (RFC 3263).
    pub resolver: Resolver,
    routes: Mutex<Routes>,
    /// Where calls' media is anchored; `None`: SDP passes through (`media: none`).
    pub media: Option<MediaConfig>,
    /// Our Contact for UDP, TCP and TLS, made on first use (the listeners are bound
    /// before the core exists and do not change).
    contacts: OnceLock<[CompactString; 3]>,
}

/// Media anchored in rtpengine (`media: { rtpengine: … }`).
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The ng client.
    pub rtpengine: Arc<crate::media::Rtpengine>,
    /// A bridged call whose RTP stopped this long is hung up.
    pub timeout: std::time::Duration,
}

impl Core {
    /// A core over `layer` resolving with `resolver`, anchoring media as `media` says.
    pub fn new(
        layer: Arc<TransactionLayer>,
        resolver: Resolver,
        media: Option<MediaConfig>,
    ) -> Core {
        Core {
            layer,
            resolver,
            routes: Mutex::new(Routes::default()),
            media,
            contacts: OnceLock::new(),
        }
    }

    fn routes(&self) -> MutexGuard<'_, Routes> {
        // One map operation per critical section: a poisoned lock holds consistent maps.
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a dialog leg of a call.
    pub(crate) fn add_dialog(&self, call_id: &str, local_tag: &str, tx: mpsc::Sender<CallInput>) {
        self.routes().dialogs.insert(call_id, local_tag, tx);
    }

    /// Forgets a dialog leg.
    pub(crate) fn remove_dialog(&self, call_id: &str, local_tag: &str) {
        self.routes().dialogs.remove(call_id, local_tag);
    }

    /// The call that owns dialog (Call-ID, our tag).
    pub(crate) fn dialog(&self, call_id: &str, local_tag: &str) -> Option<mpsc::Sender<CallInput>> {
        self.routes().dialogs.get(call_id, local_tag).cloned()
    }

    /// Registers a caller INVITE not yet answered.
    pub(crate) fn add_invite(&self, key: Key, tx: mpsc::Sender<CallInput>) {
        self.routes().invites.insert(key, tx);
    }

    /// Forgets a caller INVITE (answered, or the call ended).
    pub(crate) fn remove_invite(&self, key: &Key) {
        self.routes().invites.remove(key);
    }

    /// The call whose unanswered INVITE has server-transaction key `key`.
    pub(crate) fn invite(&self, key: &Key) -> Option<mpsc::Sender<CallInput>> {
        self.routes().invites.get(key).cloned()
    }

    /// How many dialogs and pending INVITEs are routed (for tests and metrics).
    pub fn active_routes(&self) -> usize {
        let r = self.routes();
        r.dialogs.len() + r.invites.len()
    }

    /// Our Contact for messages over `transport`.
    pub fn contact(&self, transport: Transport) -> CompactString {
        let contacts = self.contacts.get_or_init(|| {
            [Transport::Udp, Transport::Tcp, Transport::Tls].map(|t| self.make_contact(t).into())
        });
        let i = match transport {
            Transport::Udp => 0,
            Transport::Tcp => 1,
            Transport::Tls => 2,
        };
        contacts[i].clone()
    }

    fn make_contact(&self, transport: Transport) -> String {
        match self.layer.local_host_port(transport) {
            Some((host, port)) => {
                let mut uri = SipUri::new(None, host, Some(port));
                if transport != Transport::Udp {
                    uri.params.push(Param {
                        name: "transport".into(),
                        value: Some(transport.as_str().to_ascii_lowercase().into()),
                    });
                }
                format!("<{uri}>")
            }
            None => "<sip:127.0.0.1>".into(),
        }
    }

    /// Where in-dialog requests of `dialog` go. Over TCP or TLS without a route set,
    /// the connection the dialog's INVITE came on (or went out on) while it is up
    /// (RFC 5923's reuse: a party behind NAT cannot be reached at its Contact);
    /// otherwise its next hop resolved, else `fallback` (where the INVITE came from or
    /// went).
    pub async fn dialog_target(&self, dialog: &Dialog, fallback: &Target) -> Target {
        if dialog.route_set.is_empty()
            && self
                .layer
                .transports()
                .is_open(fallback.transport, fallback.addr)
        {
            return fallback.clone();
        }
        match dialog.next_hop() {
            Uri::Sip(u) => match self.resolver.resolve(u).await {
                Ok(t) => t.into_iter().next().unwrap_or_else(|| fallback.clone()),
                Err(_) => fallback.clone(),
            },
            Uri::Tel(_) | Uri::Other(_) => fallback.clone(),
        }
    }

    /// A 2xx to our INVITE that opened a dialog nobody wants (a forked answer after
    /// another one won): ACKed at once, then hung up with a BYE in a task of its
    /// own (RFC 3261 §13.2.2.4). The dialog comes from the response alone (its
    /// From, Call-ID and CSeq are the INVITE's); `fallback` is where the INVITE went.
    pub(crate) async fn hang_up_answer(self: &Arc<Self>, resp: &Message, fallback: &Target) {
        let Ok(mut dialog) = Dialog::uac(resp, resp) else {
            return;
        };
        let target = self.dialog_target(&dialog, fallback).await;
        self.layer
            .send_stateless(dialog.ack(dialog.local_cseq), &target, None)
            .await;
        let bye = dialog.request(crate::sip::method::Method::Bye);
        let core = self.clone();
        tokio::spawn(async move { core.transact(bye, target).await });
    }

    /// Sends `request` in a client transaction and waits for its final response;
    /// `None` on a timeout or a transport error.
    pub async fn transact(&self, request: Message, target: Target) -> Option<Message> {
        let mut ct = self.layer.send_request(request, target, None).await;
        while let Some(ev) = ct.events.recv().await {
            match ev {
                ClientEvent::Response(r) if r.status().is_some_and(|s| s >= 200) => {
                    return Some(*r);
                }
                ClientEvent::Response(_) => {}
                ClientEvent::Timeout | ClientEvent::TransportError(_) => return None,
            }
        }
        None
    }

    /// Sends `request` on `dialog` (to its next hop, else `fallback`) and waits for
    /// the final response; ACKs a 2xx to an INVITE.
    pub async fn request_on(
        &self,
        dialog: &Dialog,
        request: Message,
        fallback: &Target,
    ) -> Option<Message> {
        let is_invite = request.method() == Some(&crate::sip::Method::Invite);
        let seq = dialog.local_cseq;
        let target = self.dialog_target(dialog, fallback).await;
        let resp = self.transact(request, target.clone()).await?;
        if is_invite && resp.status().is_some_and(|s| s < 300) {
            self.layer
                .send_stateless(dialog.ack(seq), &target, None)
                .await;
        }
        Some(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Legs are found by both their Call-ID and their tag, exactly; each goes
    /// without disturbing another of the same Call-ID.
    #[test]
    fn dialog_legs_route_by_call_id_and_tag() {
        let (a, _ra) = mpsc::channel(1);
        let (b, _rb) = mpsc::channel(1);
        let mut routes = DialogRoutes::default();
        routes.insert("c1@h", "t1", a.clone());
        routes.insert("c1@h", "t2", b.clone());
        routes.insert("c2@h", "t1", b.clone());
        assert_eq!(routes.len(), 3);
        assert!(
            routes
                .get("c1@h", "t1")
                .is_some_and(|tx| tx.same_channel(&a))
        );
        assert!(
            routes
                .get("c1@h", "t2")
                .is_some_and(|tx| tx.same_channel(&b))
        );
        assert!(routes.get("c1@h", "T1").is_none(), "tags compare exactly");
        assert!(
            routes.get("c1@H", "t1").is_none(),
            "Call-IDs compare exactly"
        );
        assert!(routes.get("c3@h", "t1").is_none());
        routes.insert("c1@h", "t1", b.clone());
        assert!(
            routes
                .get("c1@h", "t1")
                .is_some_and(|tx| tx.same_channel(&b))
        );
        assert_eq!(routes.len(), 3, "a route replaced, not added");
        routes.remove("c1@h", "t1");
        assert!(routes.get("c1@h", "t1").is_none());
        assert!(routes.get("c1@h", "t2").is_some());
        routes.remove("c1@h", "t2");
        routes.remove("c1@h", "t2");
        assert_eq!(routes.len(), 1);
        assert!(!routes.0.contains_key("c1@h"), "an empty Call-ID is let go");
    }
}
