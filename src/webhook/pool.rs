//! The webhook client's connections: made to an origin (plain TCP or TLS), kept
//! idle after an answer that allows it, and taken again by the next request to the
//! same origin. An idle connection is dropped after [`IDLE_TIMEOUT`]; at most
//! [`MAX_IDLE_PER_ORIGIN`] are kept per origin.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::runtime::HttpError;

/// How long an idle connection is kept.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Most idle connections kept for one origin.
pub(super) const MAX_IDLE_PER_ORIGIN: usize = 64;
/// Longest wait for a connection to be made (every address the name has, together).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A byte stream a request can go over: TCP, or TLS over TCP.
pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Where requests go: scheme, host and port (RFC 6454).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Origin {
    /// `https`.
    pub tls: bool,
    /// The host as the URL gives it (a name, or an IP without brackets).
    pub host: String,
    /// The port, the scheme's default when the URL gives none.
    pub port: u16,
}

/// One connection and the bytes read from it but not yet used.
pub(super) struct Connection {
    /// The stream.
    pub io: Box<dyn Io>,
    /// Bytes read past what has been parsed.
    pub buf: BytesMut,
}

impl Connection {
    /// Whether an idle connection can carry a request: nothing has arrived on it
    /// since its last answer. The server closing it, resetting it or sending
    /// something unasked (a `408` before it closes, say) all make it unusable; this
    /// is seen without waiting, by one read that must find nothing.
    pub fn still_open(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut read = tokio::io::ReadBuf::new(&mut byte);
        std::pin::Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut read)
            .is_pending()
    }
}

/// An idle connection and when it became idle.
struct Idle {
    connection: Connection,
    since: Instant,
}

/// Idle connections by origin. Cloning shares them.
#[derive(Clone, Default)]
pub(super) struct Pool {
    idle: Arc<Mutex<Idler>>,
}

/// The pool's contents.
#[derive(Default)]
struct Idler {
    /// Idle connections by origin, the most recently used last.
    by_origin: HashMap<Origin, Vec<Idle>>,
    /// When every origin was last swept of expired connections.
    swept: Option<Instant>,
}

impl Pool {
    /// The most recently used idle connection to `origin` that has not expired and
    /// is [still open](Connection::still_open); the others are dropped.
    pub fn take(&self, origin: &Origin) -> Option<Connection> {
        let mut idler = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idler.by_origin.get_mut(origin)?;
        while let Some(mut idle) = list.pop() {
            if idle.since.elapsed() < IDLE_TIMEOUT && idle.connection.still_open() {
                return Some(idle.connection);
            }
        }
        None
    }

    /// Keeps `connection` for the next request to `origin`, unless that origin
    /// already has its share. Expired connections are swept at most every half
    /// [`IDLE_TIMEOUT`], so an origin that is never asked again releases its sockets.
    pub fn put(&self, origin: &Origin, connection: Connection) {
        let now = Instant::now();
        let mut idler = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idler
            .swept
            .is_none_or(|at| now.duration_since(at) > IDLE_TIMEOUT / 2)
        {
            idler.swept = Some(now);
            idler.by_origin.retain(|_, list| {
                list.retain(|idle| now.duration_since(idle.since) < IDLE_TIMEOUT);
                !list.is_empty()
            });
        }
        let list = idler.by_origin.entry(origin.clone()).or_default();
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push(Idle {
                connection,
                since: now,
            });
        }
    }

    /// Idle connections kept, over every origin.
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        let idler = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idler.by_origin.values().map(Vec::len).sum()
    }
}

/// Makes a connection to `origin`: its addresses (only the public ones when
/// `public_only`; checked here, where the connection is made, so a name that changes
/// its answer gains nothing), tried in turn within [`CONNECT_TIMEOUT`], then TLS for
/// `https`.
pub(super) async fn connect(
    origin: &Origin,
    public_only: bool,
    tls: &tokio_rustls::TlsConnector,
) -> Result<Connection, HttpError> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tcp(origin, public_only))
        .await
        .map_err(|_| {
            HttpError::Connect(format!(
                "{}:{}: no connection within {} s",
                origin.host,
                origin.port,
                CONNECT_TIMEOUT.as_secs()
            ))
        })??;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if origin.tls {
        let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
            .map_err(|e| HttpError::Other(format!("TLS: {}: {e}", origin.host)))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| HttpError::Connect(format!("TLS with {}: {e}", origin.host)))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    Ok(Connection {
        io,
        buf: BytesMut::new(),
    })
}

/// A TCP connection to the first of `origin`'s addresses that answers.
async fn tcp(origin: &Origin, public_only: bool) -> Result<TcpStream, HttpError> {
    let addrs = addresses(origin, public_only).await?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(HttpError::Connect(last.unwrap_or_else(|| {
        format!("{} has no address", origin.host)
    })))
}

/// The addresses to try for `origin`.
async fn addresses(origin: &Origin, public_only: bool) -> Result<Vec<SocketAddr>, HttpError> {
    if let Ok(ip) = origin.host.parse::<IpAddr>() {
        if public_only && !super::is_public(ip) {
            return Err(HttpError::Private(ip.to_string()));
        }
        return Ok(vec![SocketAddr::new(ip, origin.port)]);
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((origin.host.as_str(), origin.port))
        .await
        .map_err(|e| HttpError::Connect(format!("{}: {e}", origin.host)))?
        .collect();
    if !public_only {
        return Ok(found);
    }
    let public: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| super::is_public(a.ip()))
        .collect();
    if public.is_empty() {
        return Err(HttpError::Private(origin.host.clone()));
    }
    Ok(public)
}
