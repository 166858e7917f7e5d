//! SIP transports (RFC 3261 §18): UDP, TCP and TLS.
//!
//! Every message that arrives is parsed where it arrives (the UDP receive loop, a
//! connection's reader task) and handed to the layer above as an [`Incoming`]: by a
//! call on that task once the layer is a [`Layer`], else on a channel. A
//! malformed message is dropped and counted; a request that parses but lacks what
//! RFC 3261 requires is answered 400 when it has a usable Via. Outgoing messages go
//! out through [`Transports::send`]: UDP from the listening socket, TCP and TLS over a
//! connection reused per remote address (accepted or opened by us).

mod stream;
pub mod tls;
mod udp;

use compact_str::ToCompactString;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::message::Message;
use super::typed::{Transport, Via};
use super::uri::Host;

pub use tls::TlsConfig;

/// A message that arrived, with where it came from.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The message (parsed, with `received`/`rport` already added to a request's top
    /// Via per RFC 3581).
    pub message: Message,
    /// The transport it came over.
    pub transport: Transport,
    /// The peer's address.
    pub source: SocketAddr,
    /// Our address it arrived at.
    pub local: SocketAddr,
}

/// The layer above when it takes messages on the receiving task itself (the
/// transaction layer does): each message is handed over by a call, without a hop
/// through the channel [`Transports::bind`] returns and a wake-up of another task.
pub trait Layer: Send + Sync {
    /// Takes `incoming`; the receiving task reads on once the future is done.
    fn receive(&self, incoming: Incoming) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Where to send a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The transport.
    pub transport: Transport,
    /// The peer's address.
    pub addr: SocketAddr,
    /// For TLS: the name to ask for (SNI) and to verify the certificate against.
    pub server_name: Option<String>,
}

/// A transport failure.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No listener or socket for this transport and address family.
    #[error("no {0} transport for {1}")]
    NoTransport(Transport, SocketAddr),
    /// Sending failed.
    #[error("send to {0} failed: {1}")]
    Io(SocketAddr, std::io::Error),
    /// Connecting failed or timed out.
    #[error("connect to {0} failed: {1}")]
    Connect(SocketAddr, String),
    /// The message is too large for the transport.
    #[error("message of {0} bytes is too large for UDP")]
    TooLarge(usize),
}

/// Counters kept by the transports.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages received and parsed.
    pub received: AtomicU64,
    /// Messages sent.
    pub sent: AtomicU64,
    /// Messages that could not be parsed, dropped.
    pub malformed_dropped: AtomicU64,
    /// Requests that parsed but broke RFC 3261's rules, answered 400.
    pub malformed_answered: AtomicU64,
    /// Stream connections closed because their bytes could not be framed.
    pub framing_errors: AtomicU64,
    /// Requests by method and responses by class, received and sent.
    pub messages: MessageCounts,
}

/// The methods counted one by one; any other is counted as `OTHER`.
pub const COUNTED_METHODS: [&str; 12] = [
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REFER", "NOTIFY", "UPDATE", "INFO", "PRACK",
    "REGISTER", "OTHER",
];

/// Requests by method and responses by status class (1xx to 6xx), each received
/// (index 0) and sent (index 1).
#[derive(Debug, Default)]
pub struct MessageCounts {
    /// `[direction][method]`, methods as in [`COUNTED_METHODS`].
    pub requests: [[AtomicU64; 12]; 2],
    /// `[direction][class - 1]`.
    pub responses: [[AtomicU64; 6]; 2],
}

/// What [`MessageCounts`] counts a message as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A request, by its index in [`COUNTED_METHODS`].
    Request(usize),
    /// A response, by its class less one (0 for 1xx … 5 for 6xx).
    Response(usize),
}

impl MessageKind {
    /// What `m` is counted as.
    pub fn of(m: &Message) -> MessageKind {
        if let Some(status) = m.status() {
            return MessageKind::Response(usize::from(status / 100).clamp(1, 6) - 1);
        }
        let name = m.method().map_or("", |method| method.as_str());
        let i = COUNTED_METHODS
            .iter()
            .position(|x| *x == name)
            .unwrap_or(COUNTED_METHODS.len() - 1);
        MessageKind::Request(i)
    }
}

impl MessageCounts {
    /// Counts `m`, received when `sent` is false.
    pub fn count(&self, m: &Message, sent: bool) {
        self.count_kind(MessageKind::of(m), sent);
    }

    /// Counts a message of `kind`, received when `sent` is false.
    pub fn count_kind(&self, kind: MessageKind, sent: bool) {
        let d = usize::from(sent);
        let counter = match kind {
            MessageKind::Request(i) => &self.requests[d][i],
            MessageKind::Response(i) => &self.responses[d][i],
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A message made ready for the wire: where it goes, its bytes and what it counts as.
/// Cloning shares the bytes.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where it goes.
    pub target: Target,
    /// The serialised message.
    pub bytes: Bytes,
    /// What it is counted as when sent.
    pub kind: MessageKind,
}

impl Outgoing {
    /// `message`, serialised for `target`.
    pub fn new(target: Target, message: &Message) -> Outgoing {
        Outgoing {
            target,
            bytes: message.to_bytes(),
            kind: MessageKind::of(message),
        }
    }
}

impl Stats {
    /// A counter's current value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A listening address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// The transport.
    pub transport: Transport,
    /// The address to bind.
    pub addr: SocketAddr,
}

impl std::str::FromStr for Listen {
    type Err = String;

    /// Parses `udp://127.0.0.1:5060`, `tcp://[::1]:5060` or `tls://0.0.0.0:5061`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (scheme, addr) = s
            .split_once("://")
            .ok_or_else(|| format!("'{s}' is not TRANSPORT://ADDRESS:PORT"))?;
        let transport =
            Transport::parse(scheme).ok_or_else(|| format!("unknown transport '{scheme}'"))?;
        let addr = addr
            .parse()
            .map_err(|_| format!("'{addr}' is not an IP address and port"))?;
        Ok(Listen { transport, addr })
    }
}

/// Settings of the transports.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Where to listen.
    pub listen: Vec<Listen>,
    /// Certificate, key and trust for TLS.
    pub tls: Option<TlsConfig>,
    /// A stream connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// How long opening a TCP or TLS connection may take.
    pub connect_timeout: Duration,
    /// Blocks sources that flood or guess; their packets are dropped unread.
    pub shield: Option<Arc<crate::sip::shield::Shield>>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            listen: Vec::new(),
            tls: None,
            idle_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(5),
            shield: None,
        }
    }
}

/// The running transports.
pub struct Transports {
    /// The UDP sockets, each with its address (asked of the kernel once).
    udp: Vec<(Arc<UdpSocket>, SocketAddr)>,
    local: Vec<Listen>,
    connections: Mutex<HashMap<(Transport, SocketAddr), stream::Connection>>,
    config: TransportConfig,
    tls: Option<tls::Tls>,
    incoming: mpsc::Sender<Incoming>,
    /// The layer above, once it takes messages by a call ([`Transports::receive_on`]);
    /// until then, and after it has gone, they go on `incoming`.
    layer: OnceLock<Weak<dyn Layer>>,
    /// Counters.
    pub stats: Stats,
    shutdown: CancellationToken,
}

impl Transports {
    /// Binds every listening address and starts receiving. Messages are delivered on
    /// the returned channel.
    pub async fn bind(
        config: TransportConfig,
        shutdown: CancellationToken,
    ) -> std::io::Result<(Arc<Transports>, mpsc::Receiver<Incoming>)> {
        let (tx, rx) = mpsc::channel(4096);
        let tls = match &config.tls {
            Some(c) => Some(tls::Tls::new(c).map_err(std::io::Error::other)?),
            None => None,
        };
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut local = Vec::new();
        for l in &config.listen {
            match l.transport {
                Transport::Udp => {
                    let s = Arc::new(UdpSocket::bind(l.addr).await?);
                    udp::grow_receive_buffer(&s);
                    let addr = s.local_addr()?;
                    local.push(Listen {
                        transport: l.transport,
                        addr,
                    });
                    udp.push((s, addr));
                }
                Transport::Tcp | Transport::Tls => {
                    let has_cert = config
                        .tls
                        .as_ref()
                        .is_some_and(|c| c.cert.is_some() && c.key.is_some());
                    if l.transport == Transport::Tls && !has_cert {
                        return Err(std::io::Error::other(
                            "a tls:// listener needs sip.tls with a certificate and key",
                        ));
                    }
                    let listener = TcpListener::bind(l.addr).await?;
                    local.push(Listen {
                        transport: l.transport,
                        addr: listener.local_addr()?,
                    });
                    tcp.push((l.transport, listener));
                }
            }
        }
        let this = Arc::new(Transports {
            udp: udp.clone(),
            local,
            connections: Mutex::new(HashMap::new()),
            config,
            tls,
            incoming: tx,
            layer: OnceLock::new(),
            stats: Stats::default(),
            shutdown,
        });
        for (socket, addr) in udp {
            tokio::spawn(udp::receive_loop(this.clone(), socket, addr));
        }
        for (transport, listener) in tcp {
            tokio::spawn(stream::accept_loop(this.clone(), transport, listener));
        }
        Ok((this, rx))
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> &[Listen] {
        &self.local
    }

    /// Our address for `transport` (the first listener of that kind).
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.local
            .iter()
            .find(|l| l.transport == transport)
            .map(|l| l.addr)
    }

    /// Sends a message to a target, counting it.
    pub async fn send_message(
        self: &Arc<Self>,
        target: &Target,
        message: &Message,
    ) -> Result<(), TransportError> {
        self.send_outgoing(&Outgoing::new(target.clone(), message))
            .await
    }

    /// Sends a message made ready for the wire (a transaction's retransmissions send
    /// the same one again), counting it.
    pub async fn send_outgoing(self: &Arc<Self>, out: &Outgoing) -> Result<(), TransportError> {
        self.send(&out.target, out.bytes.clone()).await?;
        self.stats.messages.count_kind(out.kind, true);
        if let (Some(shield), MessageKind::Request(_)) = (&self.config.shield, out.kind) {
            shield.sent_to(out.target.addr.ip());
        }
        Ok(())
    }

    /// Sends bytes to a target.
    pub async fn send(
        self: &Arc<Self>,
        target: &Target,
        bytes: Bytes,
    ) -> Result<(), TransportError> {
        match target.transport {
            Transport::Udp => self.send_udp(target.addr, &bytes).await?,
            // Boxed: connecting (TCP, TLS) takes a large future, which every future
            // that sends would otherwise carry inline, UDP or not.
            Transport::Tcp | Transport::Tls => Box::pin(stream::send(self, target, bytes)).await?,
        }
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn send_udp(&self, addr: SocketAddr, bytes: &[u8]) -> Result<(), TransportError> {
        if bytes.len() > super::message::MAX_MESSAGE_BYTES {
            return Err(TransportError::TooLarge(bytes.len()));
        }
        let socket = self
            .udp
            .iter()
            .find(|(_, local)| local.is_ipv4() == addr.is_ipv4())
            .map(|(s, _)| s)
            .ok_or(TransportError::NoTransport(Transport::Udp, addr))?;
        // A UDP socket can nearly always take a datagram at once: try that first, and
        // wait for room (in a boxed future, kept out of every sender's) only if not.
        match socket.try_send_to(bytes, addr) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(TransportError::Io(addr, e)),
        }
        Box::pin(socket.send_to(bytes, addr))
            .await
            .map(|_| ())
            .map_err(|e| TransportError::Io(addr, e))
    }

    /// Sends a response where RFC 3261 §18.2.2 and RFC 3581 say: back over the
    /// connection the request came on when it is still open, else to the top Via's
    /// `received` address (or sent-by host) and its `rport` (or sent-by port).
    pub async fn send_response(
        self: &Arc<Self>,
        response: &Message,
        request_source: Option<SocketAddr>,
    ) -> Result<(), TransportError> {
        let out = self.prepare_response(response, request_source)?;
        self.send_outgoing(&out).await
    }

    /// A response made ready for where [`Transports::send_response`] sends it.
    pub fn prepare_response(
        &self,
        response: &Message,
        request_source: Option<SocketAddr>,
    ) -> Result<Outgoing, TransportError> {
        let via = response
            .top_via()
            .map_err(|e| TransportError::Connect(unspecified(), e.to_string()))?;
        let open = request_source.filter(|src| {
            via.transport.is_reliable() && stream::is_open(self, via.transport, *src)
        });
        let target = match open {
            Some(addr) => Target {
                transport: via.transport,
                addr,
                server_name: None,
            },
            None => response_target(via, request_source).ok_or_else(|| {
                TransportError::Connect(unspecified(), "no address in Via".into())
            })?,
        };
        Ok(Outgoing::new(target, response))
    }

    /// What [`Message::parse`] refused: a request whose request line or
    /// Content-Length is bad but whose headers read is answered 400 or 505
    /// ([`Message::answer_unparsable`]); anything else is dropped. Counted either way.
    async fn refuse(
        self: &Arc<Self>,
        data: &[u8],
        error: &crate::sip::ParseError,
        source: SocketAddr,
    ) {
        match Message::answer_unparsable(data, error) {
            Some(answer) => self.answer_malformed(answer, source).await,
            None => {
                self.stats.malformed_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        tracing::debug!(%source, %error, "malformed SIP message");
    }

    /// Sends `answer` (to a malformed request) back to `source`, and counts it.
    async fn answer_malformed(self: &Arc<Self>, mut answer: Message, source: SocketAddr) {
        stamp_received(&mut answer, source);
        self.stats
            .malformed_answered
            .fetch_add(1, Ordering::Relaxed);
        let _ = self.send_response(&answer, Some(source)).await;
    }

    /// Hands a parsed message to the layer above, answering 400 to a request that
    /// breaks RFC 3261's rules and dropping anything else that does.
    async fn deliver(
        self: &Arc<Self>,
        mut message: Message,
        transport: Transport,
        source: SocketAddr,
        local: SocketAddr,
    ) {
        if let Err(why) = message.validate() {
            if message.is_request()
                && message.top_via().is_ok()
                && message.method() != Some(&super::Method::Ack)
            {
                self.answer_malformed(Message::bad_request(&message, &why), source)
                    .await;
            } else {
                self.stats.malformed_dropped.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(%source, %why, "invalid SIP message");
            return;
        }
        if message.is_request() {
            stamp_received(&mut message, source);
        }
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        self.stats.messages.count(&message, false);
        let incoming = Incoming {
            message,
            transport,
            source,
            local,
        };
        match self.layer.get().and_then(Weak::upgrade) {
            Some(layer) => layer.receive(incoming).await,
            None => {
                let _ = self.incoming.send(incoming).await;
            }
        }
    }

    /// From now on, hands each received message to `layer` on the task that read it,
    /// while `layer` lives. The first layer set stays; returns whether it is `layer`.
    pub fn receive_on(&self, layer: Weak<dyn Layer>) -> bool {
        self.layer.set(layer).is_ok()
    }

    /// Whether a TCP or TLS connection with `addr` is up.
    pub fn is_open(&self, transport: Transport, addr: SocketAddr) -> bool {
        transport.is_reliable() && stream::is_open(self, transport, addr)
    }

    /// Whether a packet (or a connection) from `source` may be read.
    pub(crate) fn admits(&self, source: SocketAddr) -> bool {
        self.config
            .shield
            .as_ref()
            .is_none_or(|s| s.admits(source.ip()))
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the transports are shut down.
    pub async fn closed(&self) {
        self.shutdown.cancelled().await;
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// Adds `received` (when the source differs from sent-by) and fills a valueless
/// `rport` (RFC 3581) on a request's top Via.
fn stamp_received(message: &mut Message, source: SocketAddr) {
    let Ok(via) = message.top_via() else {
        return;
    };
    let stamp_ip = via.host.ip() != Some(source.ip());
    let stamp_port = via.param("rport") == Some(None);
    if !stamp_ip && !stamp_port {
        return;
    }
    let mut via = via.clone();
    if stamp_ip {
        via.set_param("received", Some(source.ip().to_compact_string()));
    }
    if stamp_port {
        via.set_param("rport", Some(source.port().to_compact_string()));
    }
    message.replace_top_via(via);
}

/// Where a response to a request with this top Via goes (RFC 3261 §18.2.2, RFC 3581).
pub fn response_target(via: &Via, source: Option<SocketAddr>) -> Option<Target> {
    let ip = via
        .param("received")
        .flatten()
        .and_then(|r| r.parse().ok())
        .or_else(|| via.host.ip())
        .or_else(|| source.map(|s| s.ip()))?;
    let port = via
        .param("rport")
        .flatten()
        .and_then(|p| p.parse().ok())
        .or(via.port)
        .unwrap_or(via.transport.default_port());
    let server_name = match &via.host {
        Host::Domain(d) => Some(d.to_string()),
        _ => None,
    };
    Some(Target {
        transport: via.transport,
        addr: SocketAddr::new(ip, port),
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer that keeps what it is handed, with the task it ran on.
    struct Kept(mpsc::UnboundedSender<(Incoming, Option<tokio::task::Id>)>);

    impl Layer for Kept {
        fn receive(&self, incoming: Incoming) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            let _ = self.0.send((incoming, tokio::task::try_id()));
            Box::pin(async {})
        }
    }

    fn request(call_id: &str) -> String {
        format!(
            "OPTIONS sip:callflow@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{call_id}\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:callflow@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// Once a layer takes messages by a call, a datagram is handed to it on the
    /// socket's receiving task and nothing goes on the channel; once the layer has
    /// gone, messages go on the channel again.
    #[tokio::test]
    async fn a_layer_receives_on_the_reading_task_while_it_lives() {
        let config = TransportConfig {
            listen: vec!["udp://127.0.0.1:0".parse().unwrap()],
            ..Default::default()
        };
        let (transports, mut channel) = Transports::bind(config, CancellationToken::new())
            .await
            .unwrap();
        let engine = transports.local_addr(Transport::Udp).unwrap();
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (tx, mut kept) = mpsc::unbounded_channel();
        let layer: Arc<dyn Layer> = Arc::new(Kept(tx));
        assert!(transports.receive_on(Arc::downgrade(&layer)));
        assert!(
            !transports.receive_on(Arc::downgrade(&layer)),
            "the first stays"
        );

        peer.send_to(request("one").as_bytes(), engine)
            .await
            .unwrap();
        let wait = Duration::from_secs(5);
        let (first, task) = tokio::time::timeout(wait, kept.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.message.call_id().unwrap(), "one");
        assert_eq!(first.source, peer.local_addr().unwrap());
        assert!(task.is_some(), "handed over on a task: the socket's loop");
        assert!(channel.try_recv().is_err(), "nothing on the channel");

        drop(layer);
        peer.send_to(request("two").as_bytes(), engine)
            .await
            .unwrap();
        let second = tokio::time::timeout(wait, channel.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.message.call_id().unwrap(), "two");
        assert!(kept.try_recv().is_err());
    }
}
