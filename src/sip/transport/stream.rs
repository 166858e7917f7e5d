//! TCP and TLS: connections framed by Content-Length, reused per remote address,
//! closed when idle, answering CRLF keep-alive pings (RFC 5626 §3.5.1).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{Target, TransportError, Transports};
use crate::sip::message::{Framing, Message, frame};
use crate::sip::typed::Transport;

/// An open connection: the queue its writer task drains.
pub(super) struct Connection {
    tx: mpsc::Sender<Bytes>,
}

/// Accepts connections until shutdown.
pub(super) async fn accept_loop(t: Arc<Transports>, transport: Transport, listener: TcpListener) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    loop {
        let (tcp, peer) = tokio::select! {
            _ = t.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !t.admits(peer) {
            continue; // dropped unread: the connection closes
        }
        let _ = tcp.set_nodelay(true);
        let t = t.clone();
        tokio::spawn(async move {
            match transport {
                Transport::Tls => {
                    let Some(tls) = &t.tls else { return };
                    let accept = tls.acceptor.accept(tcp);
                    match tokio::time::timeout(t.config.connect_timeout, accept).await {
                        Ok(Ok(stream)) => {
                            register(&t, transport, stream, peer, local);
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                _ => {
                    register(&t, transport, tcp, peer, local);
                }
            }
        });
    }
}

/// Whether a connection to `addr` over `transport` is open.
pub(super) fn is_open(t: &Transports, transport: Transport, addr: SocketAddr) -> bool {
    lock(t)
        .get(&(transport, addr))
        .is_some_and(|c| !c.tx.is_closed())
}

fn lock(
    t: &Transports,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<(Transport, SocketAddr), Connection>> {
    // A poisoned lock only means another task panicked while holding it; the map
    // itself is still consistent (each operation is a single insert/remove/get).
    t.connections
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends over the open connection to the target, opening one if there is none.
pub(super) async fn send(
    t: &Arc<Transports>,
    target: &Target,
    bytes: Bytes,
) -> Result<(), TransportError> {
    let existing = lock(t)
        .get(&(target.transport, target.addr))
        .filter(|c| !c.tx.is_closed())
        .map(|c| c.tx.clone());
    let tx = match existing {
        Some(tx) => tx,
        None => connect(t, target).await?,
    };
    tx.send(bytes)
        .await
        .map_err(|_| TransportError::Io(target.addr, std::io::Error::other("connection closed")))
}

async fn connect(
    t: &Arc<Transports>,
    target: &Target,
) -> Result<mpsc::Sender<Bytes>, TransportError> {
    let err = |e: String| TransportError::Connect(target.addr, e);
    let timeout = t.config.connect_timeout;
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(target.addr))
        .await
        .map_err(|_| err("timed out".into()))?
        .map_err(|e| err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().map_err(|e| err(e.to_string()))?;
    match target.transport {
        Transport::Tls => {
            let tls = t
                .tls
                .as_ref()
                .ok_or_else(|| err("TLS is not configured".into()))?;
            let name = target
                .server_name
                .clone()
                .unwrap_or_else(|| target.addr.ip().to_string());
            let server_name =
                rustls::pki_types::ServerName::try_from(name).map_err(|e| err(e.to_string()))?;
            let stream = tokio::time::timeout(timeout, tls.connector.connect(server_name, tcp))
                .await
                .map_err(|_| err("TLS handshake timed out".into()))?
                .map_err(|e| err(format!("TLS handshake: {e}")))?;
            Ok(register(t, Transport::Tls, stream, target.addr, local))
        }
        transport => Ok(register(t, transport, tcp, target.addr, local)),
    }
}

/// Puts a connection in the pool and starts its reader and writer.
fn register<S>(
    t: &Arc<Transports>,
    transport: Transport,
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
) -> mpsc::Sender<Bytes>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(256);
    lock(t).insert((transport, peer), Connection { tx: tx.clone() });
    let t = t.clone();
    let own = tx.clone();
    tokio::spawn(async move {
        run(&t, transport, stream, peer, local, own.clone(), rx).await;
        let mut map = lock(&t);
        if map
            .get(&(transport, peer))
            .is_some_and(|c| c.tx.same_channel(&own))
        {
            map.remove(&(transport, peer));
        }
    });
    tx
}

/// Milliseconds since `start`, for the idle clock.
fn since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn run<S>(
    t: &Arc<Transports>,
    transport: Transport,
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    own: mpsc::Sender<Bytes>,
    mut rx: mpsc::Receiver<Bytes>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let start = Instant::now();
    let last_activity = AtomicU64::new(0);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = async {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
            last_activity.store(since(start), Ordering::Relaxed);
        }
    };
    let reader = async {
        let mut buf = BytesMut::with_capacity(8192);
        loop {
            match tokio::time::timeout(t.config.idle_timeout, rd.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => last_activity.store(since(start), Ordering::Relaxed),
                Err(_) => {
                    let idle = since(start).saturating_sub(last_activity.load(Ordering::Relaxed));
                    if u128::from(idle) >= t.config.idle_timeout.as_millis() {
                        tracing::debug!(%peer, "closing idle connection");
                        return;
                    }
                    continue;
                }
            }
            if !drain(t, transport, &mut buf, peer, local, &own).await {
                t.stats.framing_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    };
    tokio::select! {
        _ = t.shutdown.cancelled() => {}
        _ = writer => {}
        _ = reader => {}
    }
}

/// Delivers every whole message in `buf`; false when the stream cannot be framed or
/// its source is blocked (the connection is then closed).
async fn drain(
    t: &Arc<Transports>,
    transport: Transport,
    buf: &mut BytesMut,
    peer: SocketAddr,
    local: SocketAddr,
    own: &mpsc::Sender<Bytes>,
) -> bool {
    loop {
        let crlf = buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if buf.starts_with(b"\r\n\r\n") {
            // A keep-alive ping: answer with a pong.
            buf.advance(4);
            let _ = own.try_send(Bytes::from_static(b"\r\n"));
            continue;
        }
        if crlf == buf.len() {
            return true; // nothing but line breaks so far: maybe a ping in the making
        }
        buf.advance(crlf);
        match frame(buf) {
            Ok(None) => return true,
            Ok(Some(_)) if !t.admits(peer) => return false,
            Ok(Some(len)) => {
                let bytes = buf.split_to(len);
                match Message::parse(&bytes, Framing::Stream) {
                    Ok(m) => t.deliver(m, transport, peer, local).await,
                    Err(e) => t.refuse(&bytes, &e, peer).await,
                }
            }
            Err(e) => {
                t.stats.malformed_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, error = %e, "cannot frame stream; closing");
                return false;
            }
        }
    }
}
