//! RFC 3261 §17 transactions, with RFC 6026's Accepted states.
//!
//! One file per state machine (`client_invite`, `client_non_invite`, `server_invite`,
//! `server_non_invite`), each a task that owns its state and its timers, named as in
//! the RFC (T1, T2, T4, Timer A…M). This module matches what arrives to the
//! transactions and hands everything else to the transaction user (the core):
//! new requests as [`ServerTransaction`]s, ACKs for 2xx and stray 2xx responses as they
//! are (they belong to dialogs, not transactions).

mod client_invite;
mod client_non_invite;
pub mod gate;
mod server_invite;
mod server_non_invite;
pub mod timers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use super::header::Name;
use super::message::Message;
use super::method::Method;
use super::transport::{Incoming, Target, Transports};
use super::typed::{BRANCH_COOKIE, Transport, Via};
use super::uri::Host;
pub use client_invite::{ack_for, request_for_invite};
pub use gate::{Admission, Gate};
pub use timers::Timers;

/// What identifies a transaction (RFC 3261 §17.1.3, §17.2.3): the top Via's branch,
/// the method (ACK counts as INVITE), and for server transactions the sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The branch (for pre-RFC 3261 peers without one, a stand-in made of the
    /// dialog headers).
    pub branch: String,
    /// INVITE, CANCEL, BYE, … (ACK is filed under INVITE).
    pub method: Method,
    /// The Via sent-by, for server transactions.
    pub sent_by: String,
}

impl Key {
    /// The key of a request as a server sees it.
    pub fn server(request: &Message) -> Option<Key> {
        let via = request.top_via().ok()?;
        let method = match request.method()? {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        let branch = match via.branch() {
            Some(b) if b.starts_with(BRANCH_COOKIE) => b.to_string(),
            _ => legacy_branch(request)?,
        };
        let sent_by = format!("{}:{}", via.host, via.port.unwrap_or(0));
        Some(Key {
            branch,
            method,
            sent_by,
        })
    }

    /// The key of a response as the client that sent the request sees it.
    pub fn client(response: &Message) -> Option<Key> {
        let via = response.top_via().ok()?;
        Some(Key {
            branch: via.branch()?.to_string(),
            method: response.cseq().ok()?.method,
            sent_by: String::new(),
        })
    }
}

/// RFC 2543 matching for requests without a magic-cookie branch (§17.2.3).
fn legacy_branch(request: &Message) -> Option<String> {
    let from_tag = request.from_header().ok()?.tag().unwrap_or("").to_string();
    Some(format!(
        "legacy:{}:{}:{}:{}",
        request.call_id().ok()?,
        request.cseq().ok()?.seq,
        from_tag,
        request.request_uri()?
    ))
}

/// A new branch: the magic cookie and 16 random hex digits.
pub fn new_branch() -> String {
    format!("{BRANCH_COOKIE}{:016x}", rand::random::<u64>())
}

/// What the transaction layer hands to the core.
#[derive(Debug)]
pub enum ToCore {
    /// A new request, in its server transaction.
    Request(ServerTransaction),
    /// An ACK for a 2xx (end to end, no transaction).
    Ack(Incoming),
    /// A 2xx response that matched no client transaction (a retransmission after
    /// the transaction ended, or a fork): the dialog layer acknowledges it.
    StrayResponse(Incoming),
}

/// What a client transaction tells its user.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// A response (for INVITE: every 1xx, every 2xx, the final non-2xx once);
    /// boxed to keep the transaction's channel small.
    Response(Box<Message>),
    /// Timer B or F fired: no final response in time.
    Timeout,
    /// The request could not be sent.
    TransportError(String),
}

/// Messages into a server transaction's task.
#[derive(Debug)]
pub(crate) enum ServerInput {
    /// The request again (retransmission), or the ACK for a non-2xx final response.
    /// Boxed, as every message through a transaction's channel: the channel's
    /// buffer holds 32 items from its creation, and a transaction lives 32 s.
    Request(Box<Incoming>),
    /// The user's response.
    Respond(Box<Message>),
    /// Every handle was dropped: answer 500 if no final response was sent.
    Abandoned,
}

/// The user's end of a server transaction; dropping the last one abandons it.
#[derive(Debug)]
struct Handle {
    tx: mpsc::Sender<ServerInput>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.tx.try_send(ServerInput::Abandoned);
    }
}

/// What a server transaction's task needs.
pub(crate) struct ServerContext {
    pub(crate) transports: Arc<Transports>,
    pub(crate) timers: Timers,
    /// Boxed, as every message a task keeps: the task's state stays small.
    pub(crate) request: Box<Message>,
    pub(crate) source: SocketAddr,
    pub(crate) reliable: bool,
}

impl ServerContext {
    /// Sends a response back where RFC 3261 §18.2.2 says.
    ///
    /// The transport's future is boxed: awaited inline it would be part of every
    /// transaction task's state for the task's whole life (32 s for most), and it is
    /// several times larger than the rest of the task (heaptrack: 3.6 KB per server
    /// transaction task before, BENCHMARKS.md).
    pub(crate) async fn send(&self, response: &Message) {
        if let Err(e) = Box::pin(self.transports.send_response(response, Some(self.source))).await {
            tracing::debug!(error = %e, "response not sent");
        }
    }
}

/// What a client transaction's task needs.
pub(crate) struct ClientContext {
    pub(crate) transports: Arc<Transports>,
    pub(crate) timers: Timers,
    /// Boxed, as in [`ServerContext`].
    pub(crate) request: Box<Message>,
    pub(crate) target: Target,
    pub(crate) events: mpsc::Sender<ClientEvent>,
}

impl ClientContext {
    /// Sends `message` to the target; a failure is reported to the user.
    pub(crate) async fn send(&self, message: &Message) -> bool {
        // Boxed, as in `ServerContext::send`: the transport's future would otherwise
        // be part of the task's state for its whole life.
        match Box::pin(self.transports.send_message(&self.target, message)).await {
            Ok(()) => true,
            Err(e) => {
                self.report(ClientEvent::TransportError(e.to_string()))
                    .await;
                false
            }
        }
    }

    /// Tells the user; false when the user is gone.
    pub(crate) async fn report(&self, event: ClientEvent) -> bool {
        self.events.send(event).await.is_ok()
    }
}

/// Sleeps until `deadline`, or forever when there is none.
pub async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A request and the server transaction that answers it. Cloning shares the
/// transaction. When every clone is dropped without a final response, the transaction
/// answers 500 so that no request is left hanging.
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    /// The request (its top Via stamped with `received`/`rport`).
    pub request: Message,
    /// Where it came from.
    pub source: SocketAddr,
    /// The transport it came over.
    pub transport: Transport,
    /// Our address it arrived at.
    pub local: SocketAddr,
    /// Its key.
    pub key: Key,
    handle: Arc<Handle>,
}

impl ServerTransaction {
    /// Sends a response through the transaction (retransmitted as RFC 3261 says).
    pub async fn respond(&self, response: Message) {
        let _ = self
            .handle
            .tx
            .send(ServerInput::Respond(Box::new(response)))
            .await;
    }

    /// Builds a response to the request with `status`, adding `to_tag` to To when the
    /// request's To has none, and sends it.
    pub async fn reply(&self, status: u16, to_tag: Option<&str>) {
        self.respond(self.response(status, to_tag)).await;
    }

    /// A response to the request with `status` and, when To has no tag yet, `to_tag`.
    pub fn response(&self, status: u16, to_tag: Option<&str>) -> Message {
        let mut resp = Message::response_to(&self.request, status);
        if let (Some(tag), Ok(mut to)) = (to_tag, resp.to_header())
            && to.tag().is_none()
            && status > 100
        {
            to.set_tag(tag);
            resp.set_header(Name::To, to.to_string());
        }
        resp
    }

    /// The key of the INVITE a CANCEL cancels (same branch and sent-by).
    pub fn cancelled_key(&self) -> Key {
        Key {
            method: Method::Invite,
            ..self.key.clone()
        }
    }
}

/// A client transaction in progress: its events arrive on `events`.
#[derive(Debug)]
pub struct ClientTransaction {
    /// The request as sent (with our Via).
    pub request: Message,
    /// Where it went.
    pub target: Target,
    /// Responses, timeouts and transport errors.
    pub events: mpsc::Receiver<ClientEvent>,
}

type Table = Mutex<HashMap<Key, mpsc::Sender<Box<Incoming>>>>;

/// The transaction layer: matches messages to transactions and starts new ones.
pub struct TransactionLayer {
    transports: Arc<Transports>,
    timers: Timers,
    server: Mutex<HashMap<Key, mpsc::Sender<ServerInput>>>,
    client: Table,
    advertised: Option<Host>,
    /// What new out-of-dialog INVITEs pass before they get a transaction.
    gate: std::sync::OnceLock<Arc<dyn Gate>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is one map operation; a panic elsewhere cannot leave the
    // map half-changed.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TransactionLayer {
    /// A layer over `transports`; `advertised` is the host put in our Via and Contact
    /// when the listening address is not what peers should use.
    pub fn new(transports: Arc<Transports>, timers: Timers, advertised: Option<Host>) -> Arc<Self> {
        Arc::new(TransactionLayer {
            transports,
            timers,
            server: Mutex::new(HashMap::new()),
            client: Mutex::new(HashMap::new()),
            advertised,
            gate: std::sync::OnceLock::new(),
        })
    }

    /// Puts `gate` in front of new out-of-dialog INVITEs (once; later calls are
    /// ignored).
    pub fn set_gate(&self, gate: Arc<dyn Gate>) {
        let _ = self.gate.set(gate);
    }

    /// Whether `msg`, which matches no transaction, may have one (the gate's answer
    /// is sent here when it has one).
    async fn admitted(&self, msg: &Incoming) -> bool {
        let Some(gate) = self.gate.get() else {
            return true;
        };
        let m = &msg.message;
        let outside_dialog = m.to_header().is_ok_and(|t| t.tag().is_none());
        if m.method() != Some(&Method::Invite) || !outside_dialog {
            return true;
        }
        match gate.admit(m, msg.source) {
            Admission::Admit => true,
            Admission::Drop => false,
            Admission::Answer(response) => {
                if let Err(e) = self
                    .transports
                    .send_response(&response, Some(msg.source))
                    .await
                {
                    tracing::debug!(error = %e, "stateless answer not sent");
                }
                false
            }
        }
    }

    /// How many server and client transactions are alive.
    pub fn alive(&self) -> usize {
        lock(&self.server).len() + lock(&self.client).len()
    }

    /// The transports underneath.
    pub fn transports(&self) -> &Arc<Transports> {
        &self.transports
    }

    /// The timer settings.
    pub fn timers(&self) -> Timers {
        self.timers
    }

    /// Our host and port for `transport`, as peers should address us.
    pub fn local_host_port(&self, transport: Transport) -> Option<(Host, u16)> {
        let addr = self
            .transports
            .local_addr(transport)
            .or_else(|| self.transports.local_addr(Transport::Udp))?;
        let host = match (&self.advertised, addr.ip().is_unspecified()) {
            (Some(h), _) => h.clone(),
            (None, _) => Host::from(addr.ip()),
        };
        Some((host, addr.port()))
    }

    /// Our Via for a request over `transport`.
    pub fn via(&self, transport: Transport, branch: &str) -> Option<Via> {
        let (host, port) = self.local_host_port(transport)?;
        let mut via = Via {
            transport,
            host,
            port: Some(port),
            params: Vec::new(),
        };
        via.set_param("branch", Some(branch.to_string()));
        via.set_param("rport", None);
        Some(via)
    }

    /// Receives from the transports until they close, routing each message.
    pub async fn run(
        self: Arc<Self>,
        mut incoming: mpsc::Receiver<Incoming>,
        core: mpsc::Sender<ToCore>,
    ) {
        while let Some(msg) = incoming.recv().await {
            self.route(msg, &core).await;
        }
    }

    async fn route(self: &Arc<Self>, msg: Incoming, core: &mpsc::Sender<ToCore>) {
        if !msg.message.is_request() {
            let tx = Key::client(&msg.message).and_then(|k| lock(&self.client).get(&k).cloned());
            match tx {
                Some(tx) => {
                    let _ = tx.send(Box::new(msg)).await;
                }
                None if msg
                    .message
                    .status()
                    .is_some_and(|s| (200..300).contains(&s)) =>
                {
                    let _ = core.send(ToCore::StrayResponse(msg)).await;
                }
                None => tracing::debug!("response matches no transaction; dropped"),
            }
            return;
        }
        let Some(key) = Key::server(&msg.message) else {
            return;
        };
        let existing = lock(&self.server).get(&key).cloned();
        match (existing, msg.message.method()) {
            (Some(tx), _) => {
                let _ = tx.send(ServerInput::Request(Box::new(msg))).await;
            }
            (None, Some(Method::Ack)) => {
                let _ = core.send(ToCore::Ack(msg)).await;
            }
            (None, _) => {
                if !self.admitted(&msg).await {
                    return;
                }
                let st = self.start_server(key, msg);
                let _ = core.send(ToCore::Request(st)).await;
            }
        }
    }

    fn start_server(self: &Arc<Self>, key: Key, msg: Incoming) -> ServerTransaction {
        let (tx, rx) = mpsc::channel(16);
        lock(&self.server).insert(key.clone(), tx.clone());
        let st = ServerTransaction {
            request: msg.message.clone(),
            source: msg.source,
            transport: msg.transport,
            local: msg.local,
            key: key.clone(),
            handle: Arc::new(Handle { tx }),
        };
        let layer = self.clone();
        let is_invite = key.method == Method::Invite;
        let context = ServerContext {
            transports: self.transports.clone(),
            timers: self.timers,
            request: Box::new(msg.message),
            source: msg.source,
            reliable: msg.transport.is_reliable(),
        };
        tokio::spawn(async move {
            if is_invite {
                server_invite::run(context, rx).await;
            } else {
                server_non_invite::run(context, rx).await;
            }
            lock(&layer.server).remove(&key);
        });
        st
    }

    /// Sends a request in a new client transaction. Our Via (with `branch`, or a new
    /// one) replaces any Via the request has.
    pub async fn send_request(
        self: &Arc<Self>,
        mut request: Message,
        target: Target,
        branch: Option<String>,
    ) -> ClientTransaction {
        let branch = branch.unwrap_or_else(new_branch);
        let (events_tx, events) = mpsc::channel(16);
        let Some(via) = self.via(target.transport, &branch) else {
            let _ = events_tx.try_send(ClientEvent::TransportError(format!(
                "no {} transport to send from",
                target.transport
            )));
            return ClientTransaction {
                request,
                target,
                events,
            };
        };
        request.remove_header(&Name::Via);
        request.prepend_header(Name::Via, via.to_string());
        let method = request.method().cloned().unwrap_or(Method::Invite);
        let key = Key {
            branch,
            method: method.clone(),
            sent_by: String::new(),
        };
        let (tx, rx) = mpsc::channel(16);
        lock(&self.client).insert(key.clone(), tx);
        let context = ClientContext {
            transports: self.transports.clone(),
            timers: self.timers,
            request: Box::new(request.clone()),
            target: target.clone(),
            events: events_tx,
        };
        let layer = self.clone();
        tokio::spawn(async move {
            if method == Method::Invite {
                client_invite::run(context, rx).await;
            } else {
                client_non_invite::run(context, rx).await;
            }
            lock(&layer.client).remove(&key);
        });
        ClientTransaction {
            request,
            target,
            events,
        }
    }

    /// Sends a request outside any transaction (the ACK for a 2xx), with our Via.
    pub async fn send_stateless(
        self: &Arc<Self>,
        mut request: Message,
        target: &Target,
        branch: Option<String>,
    ) {
        let branch = branch.unwrap_or_else(new_branch);
        if let Some(via) = self.via(target.transport, &branch) {
            request.remove_header(&Name::Via);
            request.prepend_header(Name::Via, via.to_string());
        }
        if let Err(e) = self.transports.send_message(target, &request).await {
            tracing::debug!(error = %e, "stateless send failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transaction tasks' futures stay small (each lives for up to 32 s, and
    /// 500 calls/s keep tens of thousands alive).
    #[test]
    fn transaction_tasks_are_small() {
        fn size<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (transports, _rx) = Transports::bind(
                crate::sip::transport::TransportConfig::default(),
                tokio_util::sync::CancellationToken::new(),
            )
            .await
            .unwrap();
            let request = Message::request(
                Method::Bye,
                crate::sip::uri::Uri::parse("sip:a@127.0.0.1").unwrap(),
            );
            let ctx = || ServerContext {
                transports: transports.clone(),
                timers: Timers::default(),
                request: Box::new(request.clone()),
                source: "127.0.0.1:5060".parse().unwrap(),
                reliable: false,
            };
            let (_tx, rx) = mpsc::channel(1);
            let (_tx2, rx2) = mpsc::channel(1);
            let a = size(&server_invite::run(ctx(), rx));
            let b = size(&server_non_invite::run(ctx(), rx2));
            let (events, _e) = mpsc::channel(1);
            let client = || ClientContext {
                transports: transports.clone(),
                timers: Timers::default(),
                request: Box::new(request.clone()),
                target: Target {
                    transport: Transport::Udp,
                    addr: "127.0.0.1:5060".parse().unwrap(),
                    server_name: None,
                },
                events: events.clone(),
            };
            let (_tx3, rx3) = mpsc::channel(1);
            let (_tx4, rx4) = mpsc::channel(1);
            let c = size(&client_invite::run(client(), rx3));
            let d = size(&client_non_invite::run(client(), rx4));
            eprintln!("client INVITE task {c} B, non-INVITE {d} B");
            assert!(
                c < 1024 && d < 1024,
                "client INVITE {c} B, non-INVITE {d} B"
            );
            assert!(
                a < 1024 && b < 1024,
                "server INVITE {a} B, non-INVITE {b} B"
            );
            eprintln!("server INVITE task {a} B, non-INVITE {b} B");
        });
    }
}
