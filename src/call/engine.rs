//! The engine's core: the transaction user that gives each new INVITE its own call
//! task, routes in-dialog requests, ACKs and CANCELs to the call they belong to, and
//! answers what belongs to no call (OPTIONS 200, unknown dialogs 481, methods it does
//! not take 405 or 501).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use super::call::{Call, CallInput};
use crate::sip::header::Name;
use crate::sip::method::Method;
use crate::sip::resolve::Resolver;
use crate::sip::transaction::{Key, ServerTransaction, ToCore, TransactionLayer};

/// What runs a call: given the new call, drives it to its end.
pub type CallHandler = Arc<dyn Fn(Call) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The methods callflow takes, for Allow headers.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, UPDATE, INFO";

/// Where messages for a call's dialogs and pending INVITE go.
#[derive(Default)]
pub(crate) struct Routes {
    /// (Call-ID, our tag) of each dialog leg → its call.
    dialogs: HashMap<(String, String), mpsc::Sender<CallInput>>,
    /// The server-transaction key of each caller INVITE not yet answered → its call.
    invites: HashMap<Key, mpsc::Sender<CallInput>>,
}

/// State shared by the core and every call.
pub struct Engine {
    /// The transaction layer.
    pub layer: Arc<TransactionLayer>,
    /// Resolves the URIs calls dial (RFC 3263).
    pub resolver: Resolver,
    routes: Mutex<Routes>,
    handler: CallHandler,
    /// Set on the first Ctrl-C: new calls get 503, calls in progress go on.
    draining: std::sync::atomic::AtomicBool,
    /// Calls whose handler is still running.
    active: Arc<std::sync::atomic::AtomicUsize>,
}

fn lock(m: &Mutex<Routes>) -> MutexGuard<'_, Routes> {
    // One map operation per critical section: a poisoned lock holds consistent maps.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Engine {
    /// A core over `layer` that hands each new call to `handler`.
    pub fn new(layer: Arc<TransactionLayer>, handler: CallHandler) -> Arc<Engine> {
        Self::with_resolver(layer, handler, Resolver::system())
    }

    /// A core that resolves with `resolver` (for example, given name servers).
    pub fn with_resolver(
        layer: Arc<TransactionLayer>,
        handler: CallHandler,
        resolver: Resolver,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            layer,
            resolver,
            routes: Mutex::new(Routes::default()),
            handler,
            draining: std::sync::atomic::AtomicBool::new(false),
            active: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        })
    }

    /// Registers a dialog leg of a call.
    pub(crate) fn add_dialog(&self, call_id: &str, local_tag: &str, tx: mpsc::Sender<CallInput>) {
        lock(&self.routes)
            .dialogs
            .insert((call_id.to_string(), local_tag.to_string()), tx);
    }

    /// Forgets a dialog leg.
    pub(crate) fn remove_dialog(&self, call_id: &str, local_tag: &str) {
        lock(&self.routes)
            .dialogs
            .remove(&(call_id.to_string(), local_tag.to_string()));
    }

    /// Forgets a caller INVITE (answered, or the call ended).
    pub(crate) fn remove_invite(&self, key: &Key) {
        lock(&self.routes).invites.remove(key);
    }

    fn dialog(&self, call_id: &str, local_tag: &str) -> Option<mpsc::Sender<CallInput>> {
        lock(&self.routes)
            .dialogs
            .get(&(call_id.to_string(), local_tag.to_string()))
            .cloned()
    }

    /// How many calls have a live dialog or pending INVITE (for tests and metrics).
    pub fn active_routes(&self) -> usize {
        let r = lock(&self.routes);
        r.dialogs.len() + r.invites.len()
    }

    /// Handles what the transaction layer delivers, until it stops.
    pub async fn run(self: Arc<Self>, mut core: mpsc::Receiver<ToCore>) {
        while let Some(item) = core.recv().await {
            match item {
                ToCore::Request(st) => self.request(st).await,
                ToCore::Ack(inc) => {
                    let key = inc
                        .message
                        .to_header()
                        .ok()
                        .and_then(|to| to.tag().map(str::to_string))
                        .zip(inc.message.call_id().ok().map(str::to_string));
                    if let Some((tag, call_id)) = key
                        && let Some(tx) = self.dialog(&call_id, &tag)
                    {
                        let _ = tx.send(CallInput::Ack(inc.message)).await;
                    }
                }
                ToCore::StrayResponse(inc) => {
                    let key = inc
                        .message
                        .from_header()
                        .ok()
                        .and_then(|f| f.tag().map(str::to_string))
                        .zip(inc.message.call_id().ok().map(str::to_string));
                    if let Some((tag, call_id)) = key
                        && let Some(tx) = self.dialog(&call_id, &tag)
                    {
                        let _ = tx.send(CallInput::StrayResponse(inc.message)).await;
                    }
                }
            }
        }
    }

    async fn request(self: &Arc<Self>, st: ServerTransaction) {
        let method = st
            .request
            .method()
            .cloned()
            .unwrap_or(Method::Other(String::new()));
        if matches!(st.request.request_uri(), Some(crate::sip::Uri::Other(_)))
            && !matches!(method, Method::Ack)
        {
            st.reply(416, None).await;
            return;
        }
        // callflow supports no SIP extension that a peer could require (RFC 3261
        // §8.2.2.3): 420 with the ones it named.
        let required: Vec<&str> = st.request.header_values(&Name::Require).collect();
        if !required.is_empty() && !matches!(method, Method::Ack | Method::Cancel) {
            let mut resp = st.response(420, None);
            resp.push_header(Name::parse("Unsupported"), required.join(", "));
            st.respond(resp).await;
            return;
        }
        let to_tag = st
            .request
            .to_header()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        if let Some(tag) = to_tag {
            let call_id = st.request.call_id().unwrap_or_default().to_string();
            match self.dialog(&call_id, &tag) {
                Some(tx) => {
                    let _ = tx.send(CallInput::Request(st)).await;
                }
                None => st.reply(481, None).await,
            }
            return;
        }
        match method {
            Method::Invite => self.new_call(st),
            Method::Cancel => {
                let target = lock(&self.routes).invites.get(&st.cancelled_key()).cloned();
                match target {
                    Some(tx) => {
                        let _ = tx.send(CallInput::Cancel(st)).await;
                    }
                    None => st.reply(481, None).await,
                }
            }
            Method::Options => {
                let mut resp = st.response(200, Some(&crate::sip::dialog::new_tag()));
                resp.push_header(Name::Allow, ALLOW);
                resp.push_header(Name::parse("Accept"), "application/sdp");
                st.respond(resp).await;
            }
            Method::Bye
            | Method::Refer
            | Method::Notify
            | Method::Update
            | Method::Info
            | Method::Prack => st.reply(481, None).await,
            Method::Other(_) => st.reply(501, None).await,
            _ => {
                let mut resp = st.response(405, None);
                resp.push_header(Name::Allow, ALLOW);
                st.respond(resp).await;
            }
        }
    }

    /// Stops taking new calls (they get 503 with Retry-After); calls in progress go on.
    pub fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many calls are in progress.
    pub fn active_calls(&self) -> usize {
        self.active.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn new_call(self: &Arc<Self>, st: ServerTransaction) {
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::spawn(async move {
                let mut resp = st.response(503, Some(&crate::sip::dialog::new_tag()));
                resp.push_header(Name::RetryAfter, "30");
                st.respond(resp).await;
            });
            return;
        }
        let (tx, rx) = mpsc::channel(64);
        lock(&self.routes)
            .invites
            .insert(st.key.clone(), tx.clone());
        let call = Call::new(self.clone(), st, tx, rx);
        let handler = self.handler.clone();
        let active = self.active.clone();
        active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            handler(call).await;
            active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }
}
