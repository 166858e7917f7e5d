//! RFC 3261 §17 transactions, with RFC 6026's Accepted states.
//!
//! One file per state machine (`client_invite`, `client_non_invite`, `server_invite`,
//! `server_non_invite`), each a value that owns its state and its timers, named as in
//! the RFC (T1, T2, T4, Timer A…M), and answers each event (a message, the user's
//! response, a timer) with a [`Step`]: what to send, what to tell its user, whether
//! it has ended. No transaction has a task or a channel of its own: this module keeps
//! them in one table, runs their steps where the event happens (the receive loop, the
//! user's task), and fires their timers from one [`wheel`]. It matches what arrives
//! to the transactions and hands everything else to the transaction user (the core):
//! new requests as [`ServerTransaction`]s, ACKs for 2xx and stray 2xx responses as
//! they are (they belong to dialogs, not transactions).

mod client_invite;
mod client_non_invite;
pub mod gate;
mod linger;
mod server_invite;
mod server_non_invite;
pub mod timers;
mod wheel;

use compact_str::CompactString;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::header::{Name, value_of};
use super::message::Message;
use super::method::Method;
use super::transport::{Incoming, Layer, Outgoing, Target, Transports};
use super::typed::{BRANCH_COOKIE, Transport, Via};
use super::uri::{Host, Params, write_decimal};
use client_invite::ClientInvite;
pub use client_invite::{ack_for, request_for_invite};
use client_non_invite::ClientNonInvite;
pub use gate::{Admission, Gate};
use linger::{Found, Kept, Lingering};
use server_invite::ServerInvite;
use server_non_invite::ServerNonInvite;
pub use timers::Timers;
use wheel::{Filed, TableKey, Wheel};

/// How long after a batch of lingering transactions goes the allocator is asked to
/// return free memory: mimalloc gives an emptied page back only some milliseconds
/// after it emptied (its purge delay, 10 ms by default).
const RELEASE_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// What identifies a transaction (RFC 3261 §17.1.3, §17.2.3): the top Via's branch,
/// the method (ACK counts as INVITE), and for server transactions the sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The branch (for pre-RFC 3261 peers without one, a stand-in made of the
    /// dialog headers). Inline when short, as most are.
    pub branch: CompactString,
    /// INVITE, CANCEL, BYE, … (ACK is filed under INVITE).
    pub method: Method,
    /// The Via sent-by, for server transactions.
    pub sent_by: CompactString,
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
            Some(b) if b.starts_with(BRANCH_COOKIE) => b.into(),
            _ => legacy_branch(request)?.into(),
        };
        let mut sent_by = CompactString::default();
        let _ = via.host.write_to(&mut sent_by); // into a string: cannot fail
        sent_by.push(':');
        let _ = write_decimal(&mut sent_by, u32::from(via.port.unwrap_or(0)));
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
            branch: via.branch()?.into(),
            method: response.cseq().ok()?.method.clone(),
            sent_by: CompactString::default(),
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

/// A new branch: the magic cookie and 16 random hex digits (23 bytes, kept inline).
pub fn new_branch() -> CompactString {
    crate::sip::hex_id(BRANCH_COOKIE, u128::from(rand::random::<u64>()), 16)
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

/// The transaction user when it takes what the layer passes up by a call, on the
/// task that read the message (the engine does while it runs).
pub trait User: Send + Sync {
    /// Takes `item`; the task that read it reads on once the future is done.
    fn hear(
        &self,
        item: ToCore,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
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

/// What a transaction asks for after an event.
#[derive(Debug, Default)]
pub(crate) struct Step {
    /// A message to send (or send again).
    pub(crate) send: Option<Outgoing>,
    /// An event for the user of a client transaction.
    pub(crate) report: Option<ClientEvent>,
    /// The user of a client transaction (told of a failed send, too).
    pub(crate) user: Option<mpsc::Sender<ClientEvent>>,
    /// The transaction has ended (Terminated): it leaves the table.
    pub(crate) ended: bool,
}

impl Step {
    /// Sending `out`, if any.
    pub(crate) fn sending(out: Option<Outgoing>) -> Step {
        Step {
            send: out,
            ..Step::default()
        }
    }

    /// Terminated.
    pub(crate) fn ended() -> Step {
        Step {
            ended: true,
            ..Step::default()
        }
    }

    /// A client transaction's step: `send`, and `report` to its user `events`.
    pub(crate) fn for_user(
        events: &mpsc::Sender<ClientEvent>,
        send: Option<Outgoing>,
        report: Option<ClientEvent>,
    ) -> Step {
        Step {
            send,
            report,
            user: Some(events.clone()),
            ended: false,
        }
    }

    /// Timer B or F fired: the user is told, and the transaction ends.
    pub(crate) fn timed_out(events: &mpsc::Sender<ClientEvent>) -> Step {
        Step {
            ended: true,
            ..Step::for_user(events, None, Some(ClientEvent::Timeout))
        }
    }
}

/// The 500 a server transaction answers when its user abandons it before any final
/// response; `None` when the request is no longer kept or its Via is unusable.
pub(crate) fn abandoned_answer(
    request: Option<&Message>,
    source: SocketAddr,
    transports: &Transports,
) -> Option<Outgoing> {
    transports
        .prepare_response(&Message::response_to(request?, 500), Some(source))
        .ok()
}

/// The earliest of some timers.
pub(crate) fn earliest<const N: usize>(timers: [Option<Instant>; N]) -> Option<Instant> {
    timers.into_iter().flatten().min()
}

/// Sleeps until `deadline`, or forever when there is none.
pub async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The user's end of a server transaction; dropping the last one abandons it.
#[derive(Debug)]
struct Handle {
    layer: Weak<TransactionLayer>,
    filed: Arc<Filed>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(layer) = self.layer.upgrade() {
            layer.abandon(&self.filed.key);
        }
    }
}

/// A request and the server transaction that answers it. Cloning shares the
/// transaction. When every clone is dropped without a final response, the transaction
/// answers 500 so that no request is left hanging.
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    /// The request (its top Via stamped with `received`/`rport`), shared with
    /// whatever else keeps it for the call (the flow's `call.headers`).
    pub request: Arc<Message>,
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
    pub async fn respond(&self, response: &Message) {
        if let Some(layer) = self.handle.layer.upgrade() {
            layer.respond(&self.handle.filed.key, response).await;
        }
    }

    /// Builds a response to the request with `status`, adding `to_tag` to To when the
    /// request's To has none, and sends it.
    pub async fn reply(&self, status: u16, to_tag: Option<&str>) {
        self.respond(&self.response(status, to_tag)).await;
    }

    /// A response to the request with `status` and, when To has no tag yet, `to_tag`.
    pub fn response(&self, status: u16, to_tag: Option<&str>) -> Message {
        let mut resp = Message::response_to(&self.request, status);
        if let (Some(tag), Ok(to)) = (to_tag, resp.to_header())
            && to.tag().is_none()
            && status > 100
        {
            let _ = resp.set_to_tag(tag);
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
    /// The request as sent (with our Via), shared with its transaction.
    pub request: Arc<Message>,
    /// Where it went.
    pub target: Target,
    /// Responses, timeouts and transport errors.
    pub events: mpsc::Receiver<ClientEvent>,
    /// Its key (`None` when nothing was sent).
    filed: Option<Arc<Filed>>,
    /// The layer it lives in.
    layer: Weak<TransactionLayer>,
}

impl Drop for ClientTransaction {
    /// An INVITE's transaction ends with its user once Accepted
    /// ([`TransactionLayer::forsake`]).
    fn drop(&mut self) {
        if let (Some(filed), Some(layer)) = (&self.filed, self.layer.upgrade())
            && filed.key.method == Method::Invite
        {
            layer.forsake(&filed.key);
        }
    }
}

/// A transaction of either side and either kind.
#[derive(Debug)]
enum Machine {
    InviteServer(ServerInvite),
    NonInviteServer(ServerNonInvite),
    InviteClient(ClientInvite),
    NonInviteClient(ClientNonInvite),
}

impl Machine {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Machine::InviteServer(t) => t.deadline(),
            Machine::NonInviteServer(t) => t.deadline(),
            Machine::InviteClient(t) => t.deadline(),
            Machine::NonInviteClient(t) => t.deadline(),
        }
    }

    fn on_timer(&mut self, transports: &Transports, now: Instant) -> Step {
        match self {
            Machine::InviteServer(t) => t.on_timer(transports, now),
            Machine::NonInviteServer(t) => t.on_timer(now),
            Machine::InviteClient(t) => t.on_timer(now),
            Machine::NonInviteClient(t) => t.on_timer(now),
        }
    }

    /// How long it lingers, and as what, if it is in a state that only waits out
    /// its last timer ([`linger`]).
    fn lingering(&self) -> Option<(std::time::Duration, Kept<'_>)> {
        match self {
            Machine::InviteServer(t) => t.lingering(),
            Machine::NonInviteServer(t) => t.lingering(),
            Machine::InviteClient(t) => t.lingering(),
            Machine::NonInviteClient(t) => t.lingering(),
        }
    }
}

/// A transaction in the table.
#[derive(Debug)]
struct Entry {
    /// Its key, as the wheel holds it too.
    filed: Arc<Filed>,
    /// Boxed: the table moves its entries when it grows, and tens of thousands
    /// live at once under load.
    machine: Box<Machine>,
}

/// Live transactions by key.
type Table = HashMap<TableKey, Entry, super::NetworkHasher>;

/// Every transaction: those with work left, and those only waiting out their
/// last timer.
#[derive(Debug, Default)]
struct Transactions {
    /// With work left (or a user to report to), by key.
    live: Table,
    /// Waiting out Timer D, I, J, K or L as small records.
    lingering: Lingering,
}

/// The transaction layer: matches messages to transactions and starts new ones.
pub struct TransactionLayer {
    transports: Arc<Transports>,
    timers: Timers,
    /// Every transaction, server and client (their keys never collide: a server
    /// key has the sent-by, a client key none).
    table: Mutex<Transactions>,
    /// Told when a transaction lingers in a shelf that was empty, whose batch may
    /// be due before the one [`TransactionLayer::expire_lingering`] sleeps until.
    lingered: tokio::sync::Notify,
    /// Their timers.
    wheel: Wheel,
    advertised: Option<Host>,
    /// The start of our Via for each transport we can send over (`SIP/2.0/UDP
    /// host:port`), written once: each request adds its branch and `rport`.
    sent_by: Vec<(Transport, CompactString)>,
    /// What new out-of-dialog INVITEs pass before they get a transaction.
    gate: std::sync::OnceLock<Arc<dyn Gate>>,
    /// The transaction user, once it takes what is passed up by a call
    /// ([`TransactionLayer::pass_up_to`]); until then, and after it has gone, that
    /// goes on the channel [`TransactionLayer::run`] was given.
    user: std::sync::OnceLock<Weak<dyn User>>,
    /// Ourselves, for the handles of server transactions.
    this: Weak<TransactionLayer>,
}

/// Our host and port for `transport` on `transports`: the address listening for it
/// (else the UDP one), with `advertised` for its host when there is one.
fn host_port(
    transports: &Transports,
    advertised: Option<&Host>,
    transport: Transport,
) -> Option<(Host, u16)> {
    let addr = transports
        .local_addr(transport)
        .or_else(|| transports.local_addr(Transport::Udp))?;
    let host = advertised.cloned().unwrap_or_else(|| Host::from(addr.ip()));
    Some((host, addr.port()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section runs one transaction's step; a panic elsewhere cannot
    // leave the table half-changed.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TransactionLayer {
    /// A layer over `transports`; `advertised` is the host put in our Via and Contact
    /// when the listening address is not what peers should use.
    pub fn new(transports: Arc<Transports>, timers: Timers, advertised: Option<Host>) -> Arc<Self> {
        let sent_by = [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .filter_map(|t| {
                let (host, port) = host_port(&transports, advertised.as_ref(), t)?;
                let bare = Via {
                    transport: t,
                    host,
                    port: Some(port),
                    params: Params::new(),
                };
                Some((t, value_of(&bare)))
            })
            .collect();
        Arc::new_cyclic(|this| TransactionLayer {
            transports,
            timers,
            table: Mutex::new(Transactions::default()),
            lingered: tokio::sync::Notify::new(),
            wheel: Wheel::new(timers.t1),
            advertised,
            sent_by,
            gate: std::sync::OnceLock::new(),
            user: std::sync::OnceLock::new(),
            this: this.clone(),
        })
    }

    /// Puts `gate` in front of new out-of-dialog INVITEs (once; later calls are
    /// ignored).
    pub fn set_gate(&self, gate: Arc<dyn Gate>) {
        let _ = self.gate.set(gate);
    }

    /// From now on, passes what belongs to no transaction up to `user` by a call, on
    /// the task that read the message, while `user` lives. The first user set stays;
    /// returns whether it is `user`.
    pub fn pass_up_to(&self, user: Weak<dyn User>) -> bool {
        self.user.set(user).is_ok()
    }

    /// Passes `item` up: to the user by a call when there is one, else on `core`.
    async fn pass_up(&self, core: &mpsc::Sender<ToCore>, item: ToCore) {
        match self.user.get().and_then(Weak::upgrade) {
            Some(user) => user.hear(item).await,
            // Boxed: a channel's send future holds the item, and inline it would
            // make every routing future (one per datagram) 840 bytes larger.
            None => {
                let _ = Box::pin(core.send(item)).await;
            }
        }
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
        let t = lock(&self.table);
        t.live.len() + t.lingering.len()
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
        host_port(&self.transports, self.advertised.as_ref(), transport)
    }

    /// Our Via for a request over `transport`.
    pub fn via(&self, transport: Transport, branch: &str) -> Option<Via> {
        let (host, port) = self.local_host_port(transport)?;
        let mut via = Via {
            transport,
            host,
            port: Some(port),
            params: Params::new(),
        };
        via.set_param("branch", Some(branch.into()));
        via.set_param("rport", None);
        Some(via)
    }

    /// [`TransactionLayer::via`] as the header value, without writing the sent-by
    /// part again.
    pub fn via_value(&self, transport: Transport, branch: &str) -> Option<CompactString> {
        let (_, sent_by) = self.sent_by.iter().find(|(t, _)| *t == transport)?;
        let mut value = CompactString::with_capacity(sent_by.len() + branch.len() + 14);
        value.push_str(sent_by);
        value.push_str(";branch=");
        value.push_str(branch);
        value.push_str(";rport");
        Some(value)
    }

    /// Receives from the transports until they shut down, routing each message, and
    /// fires the transactions' timers meanwhile. It then returns, dropping `core`,
    /// which ends the transaction user's loop in turn: the channel of received
    /// messages never closes by itself (the transports hold its sender, and the layer
    /// the transports).
    pub async fn run(
        self: Arc<Self>,
        mut incoming: mpsc::Receiver<Incoming>,
        core: mpsc::Sender<ToCore>,
    ) {
        // Routed on the task that read each message while this runs; what came
        // before (and anything the transports still put on the channel) here.
        let router: Arc<dyn Layer> = Arc::new(Router {
            layer: self.clone(),
            core: core.clone(),
        });
        self.transports.receive_on(Arc::downgrade(&router));
        let receive = async {
            while let Some(msg) = incoming.recv().await {
                router.receive(msg).await;
            }
        };
        tokio::select! {
            _ = receive => {}
            _ = self.fire_timers() => {}
            _ = self.expire_lingering() => {}
            _ = self.transports.closed() => {}
        }
        drop(router);
    }

    /// Lets lingering transactions go, a batch at a time, as their timers run out,
    /// then has the allocator return what it can ([`RELEASE_AFTER`] later).
    async fn expire_lingering(&self) {
        loop {
            let next = lock(&self.table).lingering.next_expiry();
            tokio::select! {
                _ = until(next) => {}
                _ = self.lingered.notified() => continue,
            }
            let gone = lock(&self.table).lingering.expire(Instant::now());
            if gone.is_empty() {
                continue;
            }
            drop(gone);
            // The batches were the memory of seconds of calls: once the allocator
            // can give their pages back, ask it to, in case nothing else comes.
            tokio::time::sleep(RELEASE_AFTER).await;
            crate::allocator::release_free_memory();
        }
    }

    /// Fires every timer as it falls due.
    async fn fire_timers(&self) {
        loop {
            let (now, due) = self.wheel.due().await;
            for filed in due {
                let key = &filed.key;
                let step = self.update(key, |m| Some(m.on_timer(&self.transports, now)));
                if let Some(step) = step {
                    self.perform(key, step).await;
                }
            }
        }
    }

    /// Runs `f` on `key`'s transaction, if it is alive, then files its next deadline
    /// or removes it when its step ended it (dropping it after the table's lock).
    fn update(&self, key: &Key, f: impl FnOnce(&mut Machine) -> Option<Step>) -> Option<Step> {
        let mut guard = lock(&self.table);
        let t = &mut *guard;
        let entry = t.live.get_mut(key)?;
        let step = f(&mut entry.machine)?;
        let mut first = false;
        if !step.ended {
            match entry.machine.lingering() {
                Some((length, kept)) => {
                    first = t.lingering.keep(key, length, kept, Instant::now());
                }
                None => {
                    self.rearm(entry);
                    return Some(step);
                }
            }
        }
        self.wheel.disarm(&entry.filed);
        let gone = t.live.remove(key);
        drop(guard);
        drop(gone);
        if first {
            self.lingered.notify_one();
        }
        Some(step)
    }

    /// What the lingering transaction of `key` answers, if there is one.
    fn lingering(&self, key: &Key) -> Option<Found> {
        lock(&self.table).lingering.find(key)
    }

    /// Files `entry`'s next deadline with the wheel, at once: the one filed before
    /// becomes stale, and costs nothing more when it comes up.
    fn rearm(&self, entry: &Entry) {
        match entry.machine.deadline() {
            Some(at) => self.wheel.arm(&entry.filed, at),
            None => self.wheel.disarm(&entry.filed),
        }
    }

    /// Adds a new transaction, its timer armed; the caller then performs its first
    /// step. (Not itself async: a future would keep room for the machine it moved.)
    fn insert(&self, filed: Arc<Filed>, machine: Machine) {
        let entry = Entry {
            filed: filed.clone(),
            machine: Box::new(machine),
        };
        self.rearm(&entry);
        lock(&self.table).live.insert(TableKey(filed), entry);
    }

    /// The user of a client INVITE transaction let it go. An Accepted one ends now
    /// rather than at its next timer, while its memory is still warm: what it would
    /// have passed on, 2xx retransmissions, goes to the core as stray responses, as
    /// after it ends. One still waiting for its final response stays to acknowledge
    /// it ([`ClientInvite::on_user_gone`]).
    fn forsake(&self, key: &Key) {
        let now = Instant::now();
        self.update(key, |m| match m {
            Machine::InviteClient(t) => Some(t.on_user_gone(now)),
            _ => None,
        });
    }

    /// Sends what `step` sends and tells the user what it reports. A client
    /// transaction that cannot send ends, and its user is told why.
    async fn perform(&self, key: &Key, step: Step) {
        if let Some(out) = &step.send
            && let Err(e) = self.transports.send_outgoing(out).await
        {
            tracing::debug!(error = %e, "transaction's message not sent");
            if let Some(user) = &step.user {
                lock(&self.table).live.remove(key);
                tell(user, ClientEvent::TransportError(e.to_string()));
                return;
            }
        }
        if let (Some(user), Some(event)) = (&step.user, step.report) {
            tell(user, event);
        }
    }

    /// Sends a lingering transaction's message again.
    async fn send_again(&self, out: &Outgoing) {
        if let Err(e) = self.transports.send_outgoing(out).await {
            tracing::debug!(error = %e, "retransmission not sent");
        }
    }

    /// The user's response to a server transaction.
    async fn respond(&self, key: &Key, response: &Message) {
        let now = Instant::now();
        let step = self.update(key, |m| match m {
            Machine::InviteServer(t) => Some(t.on_respond(response, &self.transports, now)),
            Machine::NonInviteServer(t) => Some(t.on_respond(response, &self.transports, now)),
            _ => None,
        });
        if let Some(step) = step {
            self.perform(key, step).await;
            return;
        }
        // Accepted sends the core's retransmissions of its 2xx (RFC 6026).
        if let Some(Found::Accepted(source)) = self.lingering(key)
            && response.status().is_some_and(|s| (200..300).contains(&s))
        {
            match self.transports.prepare_response(response, Some(source)) {
                Ok(out) => self.perform(key, Step::sending(Some(out))).await,
                Err(_) => tracing::debug!("response has no usable Via; not sent"),
            }
        }
    }

    /// Every handle of a server transaction dropped.
    fn abandon(&self, key: &Key) {
        let now = Instant::now();
        let step = self.update(key, |m| match m {
            Machine::InviteServer(t) => Some(t.on_abandoned(&self.transports, now)),
            Machine::NonInviteServer(t) => Some(t.on_abandoned(&self.transports, now)),
            _ => None,
        });
        let (Some(step), Some(layer), Ok(rt)) = (
            step,
            self.this.upgrade(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        if step.send.is_some() {
            let key = key.clone();
            rt.spawn(async move { layer.perform(&key, step).await });
        }
    }

    /// Matches a response to its client transaction; a 2xx that matches none goes
    /// to the core (a dialog's retransmission or a fork), anything else is dropped.
    async fn route_response(&self, msg: Incoming, core: &mpsc::Sender<ToCore>) {
        let now = Instant::now();
        let key = Key::client(&msg.message);
        let status = msg.message.status().unwrap_or(0);
        let mut message = Some(msg.message);
        let step = key.as_ref().and_then(|key| {
            self.update(key, |m| match m {
                Machine::InviteClient(t) if t.passes_on(status) => Some(Step::ended()),
                Machine::InviteClient(t) => Some(t.on_response(message.take()?, now)),
                Machine::NonInviteClient(t) => Some(t.on_response(message.take()?, now)),
                _ => None,
            })
        });
        if let (Some(key), Some(step)) = (&key, step) {
            self.perform(key, step).await;
        }
        let Some(message) = message else {
            return;
        };
        if let Some(found) = key.as_ref().and_then(|key| self.lingering(key)) {
            // Completed: an INVITE's final response again gets its ACK again; the
            // rest is absorbed.
            if let (Found::Resend(ack), 300..) = (found, status) {
                self.send_again(&ack).await;
            }
            return;
        }
        if message.status().is_some_and(|s| (200..300).contains(&s)) {
            let stray = Incoming { message, ..msg };
            self.pass_up(core, ToCore::StrayResponse(stray)).await;
        } else {
            tracing::debug!("response matches no transaction; dropped");
        }
    }

    /// Matches a request to its server transaction (a retransmission), or starts
    /// one and passes it to the core; an ACK for a 2xx goes to the core as it is.
    async fn route_request(&self, msg: Incoming, core: &mpsc::Sender<ToCore>) {
        let Some(key) = Key::server(&msg.message) else {
            return;
        };
        let now = Instant::now();
        let method = msg.message.method();
        let step = self.update(&key, |m| match m {
            Machine::InviteServer(t) => Some(t.on_request(method, &self.transports, now)),
            Machine::NonInviteServer(t) => Some(t.on_request()),
            _ => None,
        });
        if let Some(step) = step {
            self.perform(&key, step).await;
            return;
        }
        match self.lingering(&key) {
            Some(Found::Resend(last)) => return self.send_again(&last).await,
            // RFC 6026: in Accepted an ACK goes to the core, and the INVITE's
            // retransmissions are absorbed, as everything is in Confirmed.
            Some(Found::Accepted(_)) if method == Some(&Method::Ack) => {}
            Some(_) => return,
            None => {}
        }
        if method == Some(&Method::Ack) {
            self.pass_up(core, ToCore::Ack(msg)).await;
            return;
        }
        if !self.admitted(&msg).await {
            return;
        }
        let (st, first) = self.start_server(key, msg);
        self.perform(&st.key, first).await;
        self.pass_up(core, ToCore::Request(st)).await;
    }

    /// Files a server transaction for `msg` and returns it with its first step (a
    /// 100 Trying, for an INVITE), which the caller performs. Not async: the
    /// message is moved once, not kept in a future of its own as well.
    fn start_server(&self, key: Key, msg: Incoming) -> (ServerTransaction, Step) {
        let filed = Filed::new(key);
        let reliable = msg.transport.is_reliable();
        let request = Arc::new(msg.message);
        let (machine, first) = if filed.key.method == Method::Invite {
            let (t, first) =
                ServerInvite::start(&request, msg.source, reliable, self.timers, Instant::now());
            (Machine::InviteServer(t), first)
        } else {
            let (t, first) = ServerNonInvite::start(&request, msg.source, reliable, self.timers);
            (Machine::NonInviteServer(t), first)
        };
        self.insert(filed.clone(), machine);
        let st = ServerTransaction {
            request,
            source: msg.source,
            transport: msg.transport,
            local: msg.local,
            key: filed.key.clone(),
            handle: Arc::new(Handle {
                layer: self.this.clone(),
                filed,
            }),
        };
        (st, first)
    }

    /// Sends a request in a new client transaction. Our Via (with `branch`, or a new
    /// one) replaces any Via the request has.
    pub async fn send_request(
        self: &Arc<Self>,
        mut request: Message,
        target: Target,
        branch: Option<CompactString>,
    ) -> ClientTransaction {
        let branch = branch.unwrap_or_else(new_branch);
        let (events_tx, events) = mpsc::channel(16);
        let Some(via) = self.via_value(target.transport, &branch) else {
            let _ = events_tx.try_send(ClientEvent::TransportError(format!(
                "no {} transport to send from",
                target.transport
            )));
            return ClientTransaction {
                request: Arc::new(request),
                target,
                events,
                filed: None,
                layer: Weak::new(),
            };
        };
        request.remove_header(&Name::Via);
        request.prepend_header(Name::Via, via);
        let method = request.method().cloned().unwrap_or(Method::Invite);
        let filed = Filed::new(Key {
            branch,
            method: method.clone(),
            sent_by: CompactString::default(),
        });
        let now = Instant::now();
        let request = Arc::new(request);
        let (machine, first) = if method == Method::Invite {
            let (t, first) = ClientInvite::start(
                Arc::clone(&request),
                target.clone(),
                self.timers,
                events_tx,
                now,
            );
            (Machine::InviteClient(t), first)
        } else {
            let (t, first) =
                ClientNonInvite::start(&request, target.clone(), self.timers, events_tx, now);
            (Machine::NonInviteClient(t), first)
        };
        // A first request over a connection not open yet waits for the connect
        // (up to its timeout) in a task of its own, not in the caller's.
        if target.transport.is_reliable() && !self.transports.is_open(target.transport, target.addr)
        {
            let (layer, filed) = (self.clone(), filed.clone());
            tokio::spawn(async move {
                layer.insert(filed.clone(), machine);
                layer.perform(&filed.key, first).await;
            });
        } else {
            self.insert(filed.clone(), machine);
            self.perform(&filed.key, first).await;
        }
        ClientTransaction {
            request,
            target,
            events,
            filed: Some(filed),
            layer: self.this.clone(),
        }
    }

    /// Sends a request outside any transaction (the ACK for a 2xx), with our Via.
    pub async fn send_stateless(
        self: &Arc<Self>,
        mut request: Message,
        target: &Target,
        branch: Option<CompactString>,
    ) {
        let branch = branch.unwrap_or_else(new_branch);
        if let Some(via) = self.via_value(target.transport, &branch) {
            request.remove_header(&Name::Via);
            request.prepend_header(Name::Via, via);
        }
        if let Err(e) = self.transports.send_message(target, &request).await {
            tracing::debug!(error = %e, "stateless send failed");
        }
    }
}

/// Hands `event` to a client transaction's user. A full channel is waited on in a
/// task of its own (the receive loop does not wait for a slow user); a closed one
/// means the user is gone.
fn tell(user: &mpsc::Sender<ClientEvent>, event: ClientEvent) {
    match user.try_send(event) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(event)) => {
            let user = user.clone();
            tokio::spawn(async move {
                let _ = user.send(event).await;
            });
        }
    }
}

/// The layer as the transports see it while [`TransactionLayer::run`] runs: each
/// message is routed on the task that read it (a UDP socket's loop, a connection's
/// reader), so that it costs no channel and no wake-up of another task.
struct Router {
    /// The layer routing.
    layer: Arc<TransactionLayer>,
    /// Where what is not a transaction's goes.
    core: mpsc::Sender<ToCore>,
}

impl Layer for Router {
    fn receive(
        &self,
        incoming: Incoming,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        // Each in a box of its own size: a request's routing future and a
        // response's differ, and one future for both would take the larger.
        if incoming.message.is_request() {
            Box::pin(self.layer.route_request(incoming, &self.core))
        } else {
            Box::pin(self.layer.route_response(incoming, &self.core))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transaction in the table stays small: each lives for up to 32 s, and
    /// 500 calls/s keep tens of thousands alive (the messages it resends are boxed
    /// or shared bytes, not inline).
    #[test]
    fn transactions_are_small() {
        let entry = std::mem::size_of::<(TableKey, Entry)>();
        let machine = std::mem::size_of::<Machine>();
        eprintln!("transaction entry {entry} B, machine {machine} B");
        assert!(entry <= 32, "a transaction's entry takes {entry} B");
        assert!(machine <= 512, "a transaction takes {machine} B");
    }

    /// The Via written from its parts once and the Via written whole are the same
    /// text, over every transport the layer has (and none over one it lacks).
    #[tokio::test]
    async fn via_value_is_the_via_written_whole() {
        let config = crate::sip::transport::TransportConfig {
            listen: vec![
                "udp://127.0.0.1:0".parse().unwrap(),
                "tcp://127.0.0.1:0".parse().unwrap(),
            ],
            ..Default::default()
        };
        let (transports, _incoming) =
            Transports::bind(config, tokio_util::sync::CancellationToken::new())
                .await
                .unwrap();
        for advertised in [None, Some(Host::Domain("sbc.example.com".into()))] {
            let layer = TransactionLayer::new(transports.clone(), Timers::default(), advertised);
            for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
                let branch = new_branch();
                let whole = layer.via(t, &branch).map(|v| value_of(&v));
                assert_eq!(layer.via_value(t, &branch), whole, "{t}");
            }
            let via = layer.via_value(Transport::Udp, "z9hG4bKx").unwrap();
            let parsed = Via::parse(&via).unwrap();
            assert_eq!(parsed.branch(), Some("z9hG4bKx"));
            assert!(parsed.param("rport").is_some());
        }
    }

    /// Answers the request that arrives at `peer` with `status`.
    async fn answer(peer: &tokio::net::UdpSocket, status: u16) {
        let mut buf = [0u8; 4096];
        let (n, from) = peer.recv_from(&mut buf).await.unwrap();
        let request = Message::parse(&buf[..n], super::super::message::Framing::Datagram).unwrap();
        let mut answer = Message::response_to(&request, status);
        answer.set_to_tag("callee").unwrap();
        peer.send_to(&answer.to_bytes(), from).await.unwrap();
    }

    /// Transports on a UDP port of their own, and what they receive.
    async fn udp_transports() -> (Arc<Transports>, mpsc::Receiver<Incoming>) {
        let config = crate::sip::transport::TransportConfig {
            listen: vec!["udp://127.0.0.1:0".parse().unwrap()],
            ..Default::default()
        };
        Transports::bind(config, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap()
    }

    /// A layer on a UDP port of its own, running, and a peer socket to send to.
    async fn layer_and_peer() -> (Arc<TransactionLayer>, tokio::net::UdpSocket, Target) {
        let (transports, incoming) = udp_transports().await;
        let layer = TransactionLayer::new(transports, Timers::default(), None);
        let (core_tx, mut core) = mpsc::channel(4);
        tokio::spawn(layer.clone().run(incoming, core_tx));
        tokio::spawn(async move { while core.recv().await.is_some() {} });
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let target = Target {
            transport: Transport::Udp,
            addr: peer.local_addr().unwrap(),
            server_name: None,
        };
        (layer, peer, target)
    }

    /// `method` from a@x to b@`to`.
    fn request(method: &str, to: SocketAddr, call_id: &str) -> Message {
        Message::parse(
            format!(
                "{method} sip:b@{to} SIP/2.0\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\n\
                 Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n\
                 Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
            super::super::message::Framing::Datagram,
        )
        .unwrap()
    }

    /// A non-INVITE client transaction tells its user of the final response and lets
    /// the user's channel go with it (Completed reports nothing more), though it stays
    /// for Timer K (5 s over UDP) to absorb the response's retransmissions.
    #[tokio::test]
    async fn a_completed_non_invite_lets_its_user_go() {
        let (layer, peer, target) = layer_and_peer().await;
        let bye = request("BYE", target.addr, "k1");
        let mut ct = layer.send_request(bye, target.clone(), None).await;
        answer(&peer, 200).await;
        let Some(ClientEvent::Response(r)) = ct.events.recv().await else {
            panic!("no response");
        };
        assert_eq!(r.status(), Some(200));
        let closed =
            tokio::time::timeout(std::time::Duration::from_secs(2), ct.events.recv()).await;
        assert!(
            matches!(closed, Ok(None)),
            "the channel stays open: {closed:?}"
        );
        assert_eq!(layer.alive(), 1, "Timer K still runs");
    }

    /// An INVITE's client transaction ends when its user drops it after a 2xx
    /// (Accepted), not 32 s later at Timer M; a Completed one (after a non-2xx) stays
    /// to answer the final response's retransmissions with its ACK.
    #[tokio::test]
    async fn an_invite_transaction_ends_with_its_user_unless_completed() {
        let (layer, peer, target) = layer_and_peer().await;
        for (status, alive_after_drop) in [(200, 0), (486, 1)] {
            let invite = request("INVITE", target.addr, &format!("c{status}"));
            let mut ct = layer.send_request(invite, target.clone(), None).await;
            answer(&peer, status).await;
            let Some(ClientEvent::Response(r)) = ct.events.recv().await else {
                panic!("no response");
            };
            assert_eq!(r.status(), Some(status));
            assert_eq!(layer.alive(), 1, "{status}: alive while its user holds it");
            drop(ct);
            assert_eq!(
                layer.alive(),
                alive_after_drop,
                "{status}: after its user let go"
            );
        }
    }

    /// An INVITE whose user drops its transaction while it rings still has its
    /// non-2xx final response acknowledged (RFC 3261 §17.1.1.3); a 2xx then ends it
    /// and goes to the core.
    #[tokio::test]
    async fn an_invite_dropped_while_ringing_acknowledges_its_final_response() {
        for status in [486, 200] {
            let (layer, peer, target) = layer_and_peer().await;
            let invite = request("INVITE", target.addr, &format!("r{status}"));
            let mut ct = layer.send_request(invite, target.clone(), None).await;
            let mut buf = [0u8; 4096];
            let (n, from) = peer.recv_from(&mut buf).await.unwrap();
            let sent = Message::parse(&buf[..n], super::super::message::Framing::Datagram);
            let sent = sent.unwrap();
            let mut ringing = Message::response_to(&sent, 180);
            ringing.set_to_tag("callee").unwrap();
            peer.send_to(&ringing.to_bytes(), from).await.unwrap();
            let Some(ClientEvent::Response(r)) = ct.events.recv().await else {
                panic!("no 180");
            };
            assert_eq!(r.status(), Some(180));
            drop(ct);
            assert_eq!(
                layer.alive(),
                1,
                "{status}: it waits for the final response"
            );
            let mut last = Message::response_to(&sent, status);
            last.set_to_tag("callee").unwrap();
            peer.send_to(&last.to_bytes(), from).await.unwrap();
            if status == 486 {
                let (n, _) = peer.recv_from(&mut buf).await.unwrap();
                let ack = Message::parse(&buf[..n], super::super::message::Framing::Datagram);
                assert_eq!(ack.unwrap().method(), Some(&Method::Ack));
                assert_eq!(layer.alive(), 1, "Completed, for Timer D");
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                assert_eq!(layer.alive(), 0, "a 2xx ends it");
            }
        }
    }

    /// A running layer with the default timers, what it hands the core, and a
    /// peer socket.
    async fn layer_core_peer() -> (
        Arc<TransactionLayer>,
        mpsc::Receiver<ToCore>,
        tokio::net::UdpSocket,
        SocketAddr,
    ) {
        let (transports, incoming) = udp_transports().await;
        let addr = transports.local_addr(Transport::Udp).unwrap();
        let layer = TransactionLayer::new(transports, Timers::default(), None);
        let (core_tx, core) = mpsc::channel(8);
        tokio::spawn(layer.clone().run(incoming, core_tx));
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        (layer, core, peer, addr)
    }

    /// `method` from the peer on `port` to the layer at `to`, with `branch`.
    fn from_peer(method: &str, to: SocketAddr, port: u16, branch: &str) -> String {
        format!(
            "{method} sip:a@{to} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch={branch}\r\n\
             From: <sip:b@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: {branch}\r\nCSeq: 1 {method}\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// What arrives at `peer` within 300 ms, if anything.
    async fn heard(peer: &tokio::net::UdpSocket) -> Option<Vec<u8>> {
        let mut buf = [0u8; 4096];
        let wait = std::time::Duration::from_millis(300);
        let (n, _) = tokio::time::timeout(wait, peer.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf[..n].to_vec())
    }

    /// Whether the core is handed anything within 300 ms.
    async fn core_hears(core: &mut mpsc::Receiver<ToCore>) -> bool {
        let wait = std::time::Duration::from_millis(300);
        tokio::time::timeout(wait, core.recv()).await.is_ok()
    }

    /// A user that keeps what it hears.
    struct Keeps(mpsc::UnboundedSender<ToCore>);

    impl User for Keeps {
        fn hear(
            &self,
            item: ToCore,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
            let _ = self.0.send(item);
            Box::pin(async {})
        }
    }

    /// Once the user takes what is passed up by a call, a new request reaches it in
    /// its server transaction and nothing goes on the channel; once it has gone,
    /// the channel carries it again. Retransmissions still stay with the transaction.
    #[tokio::test]
    async fn what_is_passed_up_reaches_the_user_by_a_call_while_it_lives() {
        let (layer, mut core, peer, addr) = layer_core_peer().await;
        let port = peer.local_addr().unwrap().port();
        let (tx, mut heard_by_user) = mpsc::unbounded_channel();
        let user: Arc<dyn User> = Arc::new(Keeps(tx));
        assert!(layer.pass_up_to(Arc::downgrade(&user)));
        assert!(!layer.pass_up_to(Arc::downgrade(&user)), "the first stays");

        let options = from_peer("OPTIONS", addr, port, "z9hG4bKup1");
        peer.send_to(options.as_bytes(), addr).await.unwrap();
        let wait = std::time::Duration::from_secs(5);
        let item = tokio::time::timeout(wait, heard_by_user.recv()).await;
        let Ok(Some(ToCore::Request(st))) = item else {
            panic!("the user heard no request");
        };
        assert_eq!(st.request.call_id().unwrap(), "z9hG4bKup1");
        assert!(!core_hears(&mut core).await, "nothing on the channel");
        peer.send_to(options.as_bytes(), addr).await.unwrap();
        assert!(!core_hears(&mut core).await);
        assert!(
            heard_by_user.try_recv().is_err(),
            "a retransmission is absorbed"
        );

        drop(user);
        let again = from_peer("OPTIONS", addr, port, "z9hG4bKup2");
        peer.send_to(again.as_bytes(), addr).await.unwrap();
        assert!(
            core_hears(&mut core).await,
            "the channel once the user has gone"
        );
    }

    /// Transactions that only wait out their last timer (and so linger as records)
    /// answer what matches them as their state machines did: a retransmitted BYE
    /// gets the same 200 again (Timer J); in Accepted a retransmitted INVITE is
    /// absorbed, the core's 2xx retransmission goes out, and an ACK with the
    /// INVITE's branch goes to the core (RFC 6026); a retransmitted 486 gets
    /// the same ACK again (Timer D); a retransmitted 200 to a BYE is absorbed
    /// (Timer K). Each is counted alive until its timer has run out.
    #[tokio::test]
    async fn lingering_transactions_answer_retransmissions() {
        let (layer, mut core, peer, addr) = layer_core_peer().await;
        let port = peer.local_addr().unwrap().port();

        let bye = from_peer("BYE", addr, port, "z9hG4bKbye1");
        peer.send_to(bye.as_bytes(), addr).await.unwrap();
        let Some(ToCore::Request(st)) = core.recv().await else {
            panic!("no BYE");
        };
        st.reply(200, None).await;
        let first = heard(&peer).await.expect("a 200");
        assert!(first.starts_with(b"SIP/2.0 200"));
        peer.send_to(bye.as_bytes(), addr).await.unwrap();
        assert_eq!(heard(&peer).await, Some(first), "the 200 again");
        assert!(!core_hears(&mut core).await, "the core saw the BYE twice");
        assert_eq!(layer.alive(), 1, "Timer J still runs");
        drop(st);

        let invite = from_peer("INVITE", addr, port, "z9hG4bKinv1");
        peer.send_to(invite.as_bytes(), addr).await.unwrap();
        let Some(ToCore::Request(st)) = core.recv().await else {
            panic!("no INVITE");
        };
        let ok = st.response(200, Some("uas"));
        st.respond(&ok).await;
        assert!(heard(&peer).await.unwrap().starts_with(b"SIP/2.0 200"));
        peer.send_to(invite.as_bytes(), addr).await.unwrap();
        assert_eq!(
            heard(&peer).await,
            None,
            "a retransmitted INVITE was answered"
        );
        assert!(
            !core_hears(&mut core).await,
            "the core saw the INVITE twice"
        );
        st.respond(&ok).await;
        let again = heard(&peer).await.expect("the 2xx retransmission");
        assert!(again.starts_with(b"SIP/2.0 200"));
        let ack = from_peer("ACK", addr, port, "z9hG4bKinv1");
        peer.send_to(ack.as_bytes(), addr).await.unwrap();
        let Some(ToCore::Ack(ack)) = core.recv().await else {
            panic!("the ACK did not reach the core");
        };
        assert_eq!(ack.message.method(), Some(&Method::Ack));
        drop(st);

        let target = Target {
            transport: Transport::Udp,
            addr: peer.local_addr().unwrap(),
            server_name: None,
        };
        let out = request("INVITE", target.addr, "d1");
        let mut ct = layer.send_request(out, target.clone(), None).await;
        let mut buf = [0u8; 4096];
        let (n, _) = peer.recv_from(&mut buf).await.unwrap();
        let sent = Message::parse(&buf[..n], super::super::message::Framing::Datagram).unwrap();
        let mut busy = Message::response_to(&sent, 486);
        busy.set_to_tag("callee").unwrap();
        peer.send_to(&busy.to_bytes(), addr).await.unwrap();
        let first_ack = heard(&peer).await.expect("an ACK");
        assert!(first_ack.starts_with(b"ACK "));
        let Some(ClientEvent::Response(r)) = ct.events.recv().await else {
            panic!("no 486");
        };
        assert_eq!(r.status(), Some(486));
        peer.send_to(&busy.to_bytes(), addr).await.unwrap();
        assert_eq!(heard(&peer).await, Some(first_ack), "the ACK again");
        drop(ct);

        let out = request("BYE", target.addr, "k2");
        let mut ct = layer.send_request(out, target, None).await;
        let (n, _) = peer.recv_from(&mut buf).await.unwrap();
        let sent = Message::parse(&buf[..n], super::super::message::Framing::Datagram).unwrap();
        let ok = Message::response_to(&sent, 200);
        peer.send_to(&ok.to_bytes(), addr).await.unwrap();
        let Some(ClientEvent::Response(_)) = ct.events.recv().await else {
            panic!("no 200");
        };
        peer.send_to(&ok.to_bytes(), addr).await.unwrap();
        assert!(
            !core_hears(&mut core).await,
            "a retransmitted 200 reached the core"
        );
        assert_eq!(heard(&peer).await, None);
        assert_eq!(layer.alive(), 4, "BYE, INVITE, INVITE and BYE linger");
    }

    /// A server transaction's user sees its response sent, and the table lets the
    /// transaction go once Timer J has fired.
    #[tokio::test]
    async fn a_transaction_ends_on_its_timer() {
        let (transports, incoming) = udp_transports().await;
        let addr = transports.local_addr(Transport::Udp).unwrap();
        let timers = Timers {
            t1: std::time::Duration::from_millis(5),
            ..Timers::default()
        };
        let layer = TransactionLayer::new(transports, timers, None);
        let (core_tx, mut core) = mpsc::channel(4);
        tokio::spawn(layer.clone().run(incoming, core_tx));
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = peer.local_addr().unwrap().port();
        let bye = format!(
            "BYE sip:a@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKt1\r\n\
             From: <sip:b@x>;tag=1\r\nTo: <sip:a@x>;tag=2\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        peer.send_to(bye.as_bytes(), addr).await.unwrap();
        let Some(ToCore::Request(st)) = core.recv().await else {
            panic!("no request");
        };
        assert_eq!(layer.alive(), 1);
        st.reply(200, None).await;
        let mut buf = [0u8; 2048];
        let (n, _) = peer.recv_from(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"SIP/2.0 200"));
        // Timer J is 64·T1 = 320 ms here.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(layer.alive(), 0);
    }
}
