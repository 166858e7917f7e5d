//! Test support: a small SIP user agent on raw sockets that plays caller, bot and
//! agent over UDP, TCP and TLS, and an in-process engine to test against.

#![allow(dead_code)]

pub mod node;
pub mod partner;
pub mod rtpengine;
pub mod srtp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use callflow::call::{Call, CallHandler, Engine, SipStack, StackConfig};
use callflow::sip::message::frame;
use callflow::sip::resolve::Resolver;
use callflow::sip::transaction::Timers;
use callflow::sip::transport::{Listen, TlsConfig, TransportConfig, Transports};
use callflow::sip::{Framing, Message, Name, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// An SDP offer with PCMA, PCMU, opus and DTMF.
pub const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 96 8 0 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

/// An SDP answer with PCMA.
pub fn answer(port: u16) -> String {
    format!(
        "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
}

/// Short timers so retransmission tests run in a second, not a minute.
pub fn fast_timers() -> Timers {
    Timers {
        t1: Duration::from_millis(40),
        t2: Duration::from_millis(320),
        t4: Duration::from_millis(400),
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written to a temp dir.
pub struct TestCert {
    pub dir: tempfile::TempDir,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// A test CA and a certificate for `name` signed by it. The returned `cert`/`key` are
/// the leaf's; `ca` is the CA's certificate (PEM), to trust.
pub fn ca_signed_cert(name: &str) -> (TestCert, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = (
        dir.path().join("leaf.pem"),
        dir.path().join("leaf.key"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    (TestCert { dir, cert, key }, ca)
}

pub fn test_cert() -> TestCert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    TestCert { dir, cert, key }
}

/// The engine under test, on loopback, built by the same constructor as `serve`'s.
pub struct TestEngine {
    pub transports: Arc<Transports>,
    pub engine: Arc<Engine>,
    pub stack: SipStack,
}

impl TestEngine {
    pub async fn start(handler: CallHandler, tls: Option<&TestCert>) -> TestEngine {
        Self::start_with(handler, tls, Duration::from_secs(600)).await
    }

    pub async fn start_with(
        handler: CallHandler,
        tls: Option<&TestCert>,
        idle_timeout: Duration,
    ) -> TestEngine {
        Self::start_full(handler, tls, idle_timeout, Resolver::system()).await
    }

    /// UDP and TCP (and TLS with a certificate) on loopback, fast timers, `resolver`.
    pub async fn start_full(
        handler: CallHandler,
        tls: Option<&TestCert>,
        idle_timeout: Duration,
        resolver: Resolver,
    ) -> TestEngine {
        let mut listen: Vec<Listen> = ["udp://127.0.0.1:0", "tcp://127.0.0.1:0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let tls_config = tls.map(|c| {
            listen.push("tls://127.0.0.1:0".parse().unwrap());
            TlsConfig {
                cert: Some(c.cert.clone()),
                key: Some(c.key.clone()),
                ca: Some(c.cert.clone()),
            }
        });
        let transport = TransportConfig {
            listen,
            tls: tls_config,
            idle_timeout,
            ..Default::default()
        };
        let config = StackConfig {
            timers: fast_timers(),
            resolver,
            ..StackConfig::new(transport)
        };
        let stack = SipStack::start(config, handler).await.unwrap();
        TestEngine {
            transports: stack.transports.clone(),
            engine: stack.engine.clone(),
            stack,
        }
    }

    pub fn addr(&self, t: Transport) -> SocketAddr {
        self.transports.local_addr(t).unwrap()
    }
}

/// `callflow serve` as an operator runs it: `config` written as `callflow.yaml` in a
/// temporary directory with `flows` (id, text) under `flows/`, and the engine started
/// on it with fast timers. Keep the directory while the server runs.
pub async fn serve(
    config: &str,
    flows: &[(&str, &str)],
) -> (callflow::server::Server, tempfile::TempDir) {
    // RUST_LOG=callflow=info shows the engine's log in a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("flows")).unwrap();
    for (id, text) in flows {
        std::fs::write(dir.path().join(format!("flows/{id}.yaml")), text).unwrap();
    }
    let path = dir.path().join("callflow.yaml");
    std::fs::write(&path, config).unwrap();
    let config = callflow::config::Config::load(&path).unwrap();
    let server = callflow::server::Server::start(&config, fast_timers())
        .await
        .unwrap();
    (server, dir)
}

/// A handler from an async closure.
pub fn handler<F, Fut>(f: F) -> CallHandler
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    Arc::new(move |call| Box::pin(f(call)))
}

/// How a UA reaches its peers.
enum Wire {
    Udp(Arc<UdpSocket>),
    Stream {
        writers: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>>,
        tls: Option<(tokio_rustls::TlsConnector, tokio_rustls::TlsAcceptor)>,
    },
}

/// A scripted SIP user agent.
pub struct Ua {
    pub transport: Transport,
    pub addr: SocketAddr,
    wire: Wire,
    inbox: mpsc::Receiver<(Message, SocketAddr)>,
    inbox_tx: mpsc::Sender<(Message, SocketAddr)>,
    /// Incoming messages whose first line contains one of these are dropped, once
    /// per entry (to force retransmissions).
    pub drop_next: Arc<Mutex<Vec<String>>>,
    pub user: String,
    /// Connections accepted (stream transports).
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Ua {
    pub async fn new(transport: Transport, user: &str, cert: Option<&TestCert>) -> Ua {
        Self::new_at(transport, user, cert, "127.0.0.1").await
    }

    /// A UA bound to loopback address `ip` (127.0.0.2 … stand for other hosts).
    pub async fn new_at(transport: Transport, user: &str, cert: Option<&TestCert>, ip: &str) -> Ua {
        let (inbox_tx, inbox) = mpsc::channel(256);
        let drop_next = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (wire, addr) = match transport {
            Transport::Udp => {
                let s = Arc::new(UdpSocket::bind(format!("{ip}:0")).await.unwrap());
                let addr = s.local_addr().unwrap();
                let (s2, tx, dn) = (s.clone(), inbox_tx.clone(), drop_next.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok((n, from)) = s2.recv_from(&mut buf).await {
                        if take_drop(&dn, &buf[..n]) {
                            continue;
                        }
                        if let Ok(m) = Message::parse(&buf[..n], Framing::Datagram) {
                            let _ = tx.send((m, from)).await;
                        }
                    }
                });
                (Wire::Udp(s), addr)
            }
            Transport::Tcp | Transport::Tls => {
                let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
                let addr = listener.local_addr().unwrap();
                let writers = Arc::new(Mutex::new(HashMap::new()));
                let tls = (transport == Transport::Tls)
                    .then(|| tls_pair(cert.expect("TLS needs a cert")));
                let (w, tx, acceptor, dn) = (
                    writers.clone(),
                    inbox_tx.clone(),
                    tls.as_ref().map(|t| t.1.clone()),
                    drop_next.clone(),
                );
                let count = accepted.clone();
                tokio::spawn(async move {
                    while let Ok((tcp, peer)) = listener.accept().await {
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        match &acceptor {
                            Some(a) => {
                                if let Ok(s) = a.accept(tcp).await {
                                    spawn_stream(s, peer, w.clone(), tx.clone(), dn.clone());
                                }
                            }
                            None => {
                                spawn_stream(tcp, peer, w.clone(), tx.clone(), dn.clone());
                            }
                        }
                    }
                });
                (Wire::Stream { writers, tls }, addr)
            }
        };
        Ua {
            transport,
            addr,
            wire,
            inbox,
            inbox_tx,
            drop_next,
            user: user.to_string(),
            accepted,
        }
    }

    /// Sends raw bytes to `to`.
    pub async fn send_raw(&self, bytes: &[u8], to: SocketAddr) {
        match &self.wire {
            Wire::Udp(s) => {
                s.send_to(bytes, to).await.unwrap();
            }
            Wire::Stream { writers, tls } => {
                let existing = writers.lock().unwrap().get(&to).cloned();
                let tx = match existing {
                    Some(tx) => tx,
                    None => {
                        let tcp = TcpStream::connect(to).await.unwrap();
                        match tls {
                            Some((connector, _)) => {
                                let name =
                                    rustls::pki_types::ServerName::try_from("localhost").unwrap();
                                let s = connector.connect(name, tcp).await.unwrap();
                                spawn_stream(
                                    s,
                                    to,
                                    writers.clone(),
                                    self.inbox_tx.clone(),
                                    self.drop_next.clone(),
                                )
                            }
                            None => spawn_stream(
                                tcp,
                                to,
                                writers.clone(),
                                self.inbox_tx.clone(),
                                self.drop_next.clone(),
                            ),
                        }
                    }
                };
                tx.send(Bytes::copy_from_slice(bytes)).await.unwrap();
            }
        }
    }

    /// Sends a message to `to`.
    pub async fn send(&self, m: &Message, to: SocketAddr) {
        self.send_raw(&m.to_bytes(), to).await;
    }

    /// The next message, or None after `secs` seconds.
    pub async fn recv(&mut self, secs: f64) -> Option<(Message, SocketAddr)> {
        tokio::time::timeout(Duration::from_secs_f64(secs), self.inbox.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next request with `method` (other messages are skipped).
    pub async fn expect_request(&mut self, method: &str) -> (Message, SocketAddr) {
        loop {
            let (m, from) = self
                .recv(5.0)
                .await
                .unwrap_or_else(|| panic!("{}: no {method} arrived", self.user));
            if m.method().is_some_and(|x| x.as_str() == method) {
                return (m, from);
            }
        }
    }

    /// The next response with a status other than 100 (retransmissions of earlier
    /// statuses included).
    pub async fn expect_response(&mut self) -> Message {
        loop {
            let (m, _) = self
                .recv(5.0)
                .await
                .unwrap_or_else(|| panic!("{}: no response arrived", self.user));
            if m.status().is_some_and(|s| s > 100) {
                return m;
            }
        }
    }

    /// The next final response for `cseq_method`.
    pub async fn expect_final(&mut self, cseq_method: &str) -> Message {
        loop {
            let m = self.expect_response().await;
            if m.status().unwrap() >= 200 && m.cseq().unwrap().method.as_str() == cseq_method {
                return m;
            }
        }
    }

    fn via(&self, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch=z9hG4bK{branch};rport",
            self.transport, self.addr
        )
    }

    fn contact(&self) -> String {
        let t = match self.transport {
            Transport::Udp => String::new(),
            t => format!(";transport={}", t.as_str().to_ascii_lowercase()),
        };
        format!("<sip:{}@{}{t}>", self.user, self.addr)
    }

    /// A new INVITE to `uri` with the test offer.
    pub fn invite(&self, uri: &str, call_id: &str) -> Message {
        let text = format!(
            "INVITE {uri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: \"Caller\" <sip:+919812345678@{}>;tag=caller{call_id}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: {}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
            self.via(&format!("inv{call_id}")),
            self.addr,
            self.contact(),
            OFFER.len()
        );
        Message::parse(text.as_bytes(), Framing::Stream).unwrap()
    }

    /// A response to `req` with `status`, our tag, our Contact and an optional body.
    pub fn response(&self, req: &Message, status: u16, tag: &str, body: Option<&str>) -> Message {
        let mut r = Message::response_to(req, status);
        if status > 100 {
            let mut to = r.to_header().unwrap().clone();
            if to.tag().is_none() {
                to.set_tag(tag);
            }
            r.set_header(Name::To, to.to_string());
            r.push_header(Name::Contact, self.contact());
        }
        if let Some(b) = body {
            r.set_body("application/sdp", Bytes::from(b.to_string()));
        }
        r
    }

    /// An in-dialog request. For the caller (`ours`), `dialog_msg` is the 2xx it got:
    /// From and To as in it, target its Contact. For a far end, `dialog_msg` is the
    /// INVITE it got: From is that To plus `our_tag`, To that From, target its Contact.
    pub fn in_dialog(
        &self,
        method: &str,
        dialog_msg: &Message,
        ours: bool,
        our_tag: &str,
        cseq: u32,
        branch: &str,
    ) -> Message {
        let (from, to) = if ours {
            (
                dialog_msg.header(&Name::From).unwrap().to_string(),
                dialog_msg.header(&Name::To).unwrap().to_string(),
            )
        } else {
            let mut from = dialog_msg.to_header().unwrap().clone();
            if from.tag().is_none() {
                from.set_tag(our_tag);
            }
            (
                from.to_string(),
                dialog_msg.header(&Name::From).unwrap().to_string(),
            )
        };
        let target = dialog_msg.contacts().unwrap()[0].uri.to_string();
        let text = format!(
            "{method} {target} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: {}\r\nContent-Length: 0\r\n\r\n",
            self.via(branch),
            dialog_msg.call_id().unwrap(),
            self.contact(),
        );
        Message::parse(text.as_bytes(), Framing::Stream).unwrap()
    }

    /// Where a dialog's requests go: the Contact's address (loopback in tests).
    pub fn contact_addr(m: &Message) -> SocketAddr {
        let c = &m.contacts().unwrap()[0];
        let u = c.uri.as_sip().unwrap();
        SocketAddr::new(u.host.ip().unwrap(), u.port.unwrap_or(5060))
    }
}

fn take_drop(dn: &Arc<Mutex<Vec<String>>>, bytes: &[u8]) -> bool {
    let first = String::from_utf8_lossy(bytes.split(|b| *b == b'\r').next().unwrap_or(b""));
    let mut patterns = dn.lock().unwrap();
    match patterns.iter().position(|p| first.contains(p.as_str())) {
        Some(i) => {
            patterns.remove(i);
            true
        }
        None => false,
    }
}

fn tls_pair(cert: &TestCert) -> (tokio_rustls::TlsConnector, tokio_rustls::TlsAcceptor) {
    let tls = callflow::sip::transport::tls::Tls::new(&TlsConfig {
        cert: Some(cert.cert.clone()),
        key: Some(cert.key.clone()),
        ca: Some(cert.cert.clone()),
    })
    .unwrap();
    (tls.connector, tls.acceptor)
}

fn spawn_stream<S>(
    stream: S,
    peer: SocketAddr,
    writers: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>>,
    inbox: mpsc::Sender<(Message, SocketAddr)>,
    drop_next: Arc<Mutex<Vec<String>>>,
) -> mpsc::Sender<Bytes>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    writers.lock().unwrap().insert(peer, tx.clone());
    let (mut rd, mut wr) = tokio::io::split(stream);
    tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        loop {
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            loop {
                let skip = buf
                    .iter()
                    .take_while(|b| matches!(b, b'\r' | b'\n'))
                    .count();
                let _ = buf.split_to(skip);
                match frame(&buf) {
                    Ok(Some(n)) => {
                        let bytes = buf.split_to(n);
                        if take_drop(&drop_next, &bytes) {
                            continue;
                        }
                        if let Ok(m) = Message::parse(&bytes, Framing::Stream) {
                            let _ = inbox.send((m, peer)).await;
                        }
                    }
                    _ => break,
                }
            }
        }
    });
    tx
}

/// The Authorization value answering `challenge` (a WWW-Authenticate value) for an
/// INVITE to `uri` with `alg` (`SHA-256` or `MD5`), qop=auth, nc 1.
pub fn digest_answer(challenge: &str, alg: &str, uri: &str, user: &str, pass: &str) -> String {
    use sha2::Digest;
    let h = |s: String| -> String {
        if alg == "SHA-256" {
            hex::encode(sha2::Sha256::digest(s.as_bytes()))
        } else {
            hex::encode(md5::Md5::digest(s.as_bytes()))
        }
    };
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let realm = challenge
        .split("realm=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let ha1 = h(format!("{user}:{realm}:{pass}"));
    let ha2 = h(format!("INVITE:{uri}"));
    let resp = h(format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm={alg}, qop=auth, nc=00000001, cnonce=\"0a4f113b\""
    )
}
