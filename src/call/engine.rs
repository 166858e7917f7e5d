//! The engine: the transaction user that gives each new INVITE its own call task,
//! routes in-dialog requests, ACKs and CANCELs to the call they belong to (through
//! the [`Core`]'s table), and answers what belongs to no call (OPTIONS 200, unknown
//! dialogs 481, methods it does not take 405 or 501).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::CallInput;
use super::bridge::Call;
use super::core::{ALLOW, Core};
use super::originate::Origination;
use crate::sip::dialog::new_tag;
use crate::sip::error::ParseError;
use crate::sip::header::Name;
use crate::sip::message::Message;
use crate::sip::method::Method;
use crate::sip::resolve::Resolver;
use crate::sip::transaction::{ServerTransaction, ToCore, TransactionLayer, User};
use crate::sip::typed::NameAddr;

/// What runs a call: given the new call, drives it to its end.
pub type CallHandler = Arc<dyn Fn(Call) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The engine: the shared core, the handler of new calls, and the drain switch.
pub struct Engine {
    /// What every call shares: the transaction layer, the resolver, the routes.
    pub core: Arc<Core>,
    handler: CallHandler,
    /// Set on the first Ctrl-C: new calls get 503, calls in progress go on.
    draining: AtomicBool,
    /// Calls whose handler is still running.
    active: Arc<AtomicUsize>,
}

impl Engine {
    /// An engine over `layer` that hands each new call to `handler`.
    pub fn new(layer: Arc<TransactionLayer>, handler: CallHandler) -> Arc<Engine> {
        Self::with_resolver(layer, handler, Resolver::system(), None)
    }

    /// An engine that resolves with `resolver` (for example, given name servers) and
    /// anchors media as `media` says.
    pub fn with_resolver(
        layer: Arc<TransactionLayer>,
        handler: CallHandler,
        resolver: Resolver,
        media: Option<super::core::MediaConfig>,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            core: Arc::new(Core::new(layer, resolver, media)),
            handler,
            draining: AtomicBool::new(false),
            active: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// How many calls have a live dialog or pending INVITE (for tests and metrics).
    pub fn active_routes(&self) -> usize {
        self.core.active_routes()
    }

    /// Handles what the transaction layer passes up, until it stops: by a call on
    /// the task that read each message while this runs (no hop through the channel
    /// and this task), and what the channel still brings here.
    pub async fn run(self: Arc<Self>, mut core: mpsc::Receiver<ToCore>) {
        let user: Arc<dyn User> = Arc::new(Hearer(self.clone()));
        self.core.layer.pass_up_to(Arc::downgrade(&user));
        while let Some(item) = core.recv().await {
            self.hear(item).await;
        }
        drop(user);
    }

    /// Handles one thing the transaction layer passed up.
    async fn hear(self: &Arc<Self>, item: ToCore) {
        match item {
            ToCore::Request(st) => self.request(st).await,
            // An ACK's To and a stray 2xx's From carry our tag.
            ToCore::Ack(inc) => {
                if let Some(tx) = self.call_of(&inc.message, inc.message.to_header()) {
                    pass_to_call(tx, CallInput::Ack(Box::new(inc.message)));
                }
            }
            ToCore::StrayResponse(inc) => {
                if let Some(tx) = self.call_of(&inc.message, inc.message.from_header()) {
                    pass_to_call(tx, CallInput::StrayResponse(Box::new(inc.message)));
                }
            }
        }
    }

    /// The queue of the call whose dialog `message` is in, `ours` being the header
    /// that carries our tag.
    fn call_of(
        &self,
        message: &Message,
        ours: Result<&NameAddr, ParseError>,
    ) -> Option<mpsc::Sender<CallInput>> {
        let tag = ours.ok()?.tag()?;
        self.core.dialog(message.call_id().ok()?, tag)
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
            st.reply(416, Some(&new_tag())).await;
            return;
        }
        // callflow supports no SIP extension that a peer could require (RFC 3261
        // §8.2.2.3): 420 with the ones it named.
        let required: Vec<&str> = st.request.header_values(&Name::Require).collect();
        if !required.is_empty() && !matches!(method, Method::Ack | Method::Cancel) {
            let mut resp = st.response(420, Some(&new_tag()));
            resp.push_header(Name::parse("Unsupported"), required.join(", "));
            st.respond(&resp).await;
            return;
        }
        let to_tag = st
            .request
            .to_header()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        if let Some(tag) = to_tag {
            let call_id = st.request.call_id().unwrap_or_default().to_string();
            match self.core.dialog(&call_id, &tag) {
                Some(tx) => pass_to_call(tx, CallInput::Request(Box::new(st))),
                None => st.reply(481, Some(&new_tag())).await,
            }
            return;
        }
        // A request that may not be forwarded again ends here (RFC 3261 §16.3): a
        // loop between two B2BUAs stops instead of going round forever.
        if method == Method::Invite && st.request.max_forwards().ok().flatten() == Some(0) {
            st.reply(483, Some(&new_tag())).await;
            return;
        }
        match method {
            Method::Invite => self.new_call(st),
            Method::Cancel => {
                let target = self.core.invite(&st.cancelled_key());
                match target {
                    Some(tx) => pass_to_call(tx, CallInput::Cancel(Box::new(st))),
                    None => st.reply(481, Some(&new_tag())).await,
                }
            }
            Method::Options => {
                let mut resp = st.response(200, Some(&new_tag()));
                resp.push_header(Name::Allow, ALLOW);
                resp.push_header(Name::parse("Accept"), "application/sdp");
                st.respond(&resp).await;
            }
            Method::Bye
            | Method::Refer
            | Method::Notify
            | Method::Update
            | Method::Info
            | Method::Prack => st.reply(481, Some(&new_tag())).await,
            Method::Other(_) => st.reply(501, Some(&new_tag())).await,
            _ => {
                let mut resp = st.response(405, Some(&new_tag()));
                resp.push_header(Name::Allow, ALLOW);
                st.respond(&resp).await;
            }
        }
    }

    /// Stops taking new calls (they get 503 with Retry-After); calls in progress go on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// How many calls are in progress.
    pub fn active_calls(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// A call for the calls API to place, counted as in progress until the returned
    /// guard is dropped; `None` while draining.
    pub fn originate(&self, sid: String) -> Option<(Origination, Running)> {
        if self.draining.load(Ordering::SeqCst) {
            return None;
        }
        Some((
            Origination::new(self.core.clone(), sid),
            Running::count(&self.active),
        ))
    }

    fn new_call(self: &Arc<Self>, st: ServerTransaction) {
        if self.draining.load(Ordering::SeqCst) {
            tokio::spawn(async move {
                let mut resp = st.response(503, Some(&crate::sip::dialog::new_tag()));
                resp.push_header(Name::RetryAfter, "30");
                st.respond(&resp).await;
            });
            return;
        }
        let (tx, rx) = mpsc::channel(64);
        self.core.add_invite(st.key.clone(), tx.clone());
        let call = Call::new(self.core.clone(), st, tx, rx);
        let running = Running::count(&self.active);
        // The handler's future is made here, not in the task: a task that moved the
        // call in would keep room for it (2 KB) beside the handler's future.
        let call = (self.handler)(call);
        tokio::spawn(async move {
            call.await;
            drop(running);
        });
    }
}

/// Counts one call in progress until dropped (a graceful shutdown waits for them).
pub struct Running(Arc<AtomicUsize>);

impl Running {
    fn count(active: &Arc<AtomicUsize>) -> Running {
        active.fetch_add(1, Ordering::SeqCst);
        Running(active.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The engine as the transaction layer sees it while [`Engine::run`] runs.
struct Hearer(Arc<Engine>);

impl User for Hearer {
    fn hear(&self, item: ToCore) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.0.hear(item))
    }
}

/// Hands `input` to its call. A call whose queue is full (one that is busy, a
/// webhook say, while a peer floods its dialog) gets it from a task of its own, in
/// turn, so that the task that read the message reads on meanwhile.
fn pass_to_call(tx: mpsc::Sender<CallInput>, input: CallInput) {
    if let Err(mpsc::error::TrySendError::Full(input)) = tx.try_send(input) {
        tokio::spawn(async move {
            let _ = tx.send(input).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call whose queue is full still gets what is passed to it, in turn, without
    /// the caller of `pass_to_call` waiting.
    #[tokio::test]
    async fn a_full_call_queue_gets_its_input_later_without_waiting() {
        let (tx, mut rx) = mpsc::channel(1);
        pass_to_call(tx.clone(), CallInput::Terminate);
        pass_to_call(tx.clone(), CallInput::Redirect("agent".into()));
        assert!(matches!(rx.recv().await, Some(CallInput::Terminate)));
        let wait = std::time::Duration::from_secs(5);
        let second = tokio::time::timeout(wait, rx.recv()).await;
        assert!(matches!(second, Ok(Some(CallInput::Redirect(f))) if f == "agent"));
        drop(tx);
        assert!(rx.recv().await.is_none(), "nothing more");
    }
}
