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
    /// (Call-ID, our tag) of each dialog leg → its call.
    dialogs: HashMap<(String, String), mpsc::Sender<CallInput>, NetworkHasher>,
    /// The server-transaction key of each caller INVITE not yet answered → its call.
    invites: HashMap<Key, mpsc::Sender<CallInput>, NetworkHasher>,
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
        self.routes()
            .dialogs
            .insert((call_id.to_string(), local_tag.to_string()), tx);
    }

    /// Forgets a dialog leg.
    pub(crate) fn remove_dialog(&self, call_id: &str, local_tag: &str) {
        self.routes()
            .dialogs
            .remove(&(call_id.to_string(), local_tag.to_string()));
    }

    /// The call that owns dialog (Call-ID, our tag).
    pub(crate) fn dialog(&self, call_id: &str, local_tag: &str) -> Option<mpsc::Sender<CallInput>> {
        self.routes()
            .dialogs
            .get(&(call_id.to_string(), local_tag.to_string()))
            .cloned()
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
