//! One HTTP/1.1 exchange on a connection (RFC 9112): the request written in one
//! buffer, then the response's head and body read, the body's end found by
//! `Content-Length`, the chunked transfer coding or the connection's close (§6.3).
//! Informational (1xx) answers are skipped. Whether the connection may carry
//! another request afterwards is part of the answer.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest response head read, in bytes.
const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in a response head.
const MAX_HEADERS: usize = 64;

/// A request to write.
#[derive(Debug)]
pub(super) struct Request<'a> {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The request target: the URL's path and query.
    pub target: &'a str,
    /// The `Host` field: the URL's host, with its port when not the scheme's default.
    pub host: &'a str,
    /// The `Authorization` field, from the URL's user information.
    pub authorization: Option<&'a str>,
    /// The body and its media type, for a POST.
    pub body: Option<(&'a str, &'a [u8])>,
}

impl Request<'_> {
    /// The request's bytes. The target and host come from a parsed URL, which holds
    /// no CR, LF or space; the content type is checked here all the same.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = self.body.map_or(&[][..], |(_, b)| b);
        let mut out = Vec::with_capacity(160 + self.target.len() + body.len());
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(b"\r\nUser-Agent: ");
        out.extend_from_slice(super::USER_AGENT.as_bytes());
        out.extend_from_slice(b"\r\nAccept: */*\r\n");
        if let Some(credentials) = self.authorization {
            out.extend_from_slice(b"Authorization: ");
            out.extend_from_slice(credentials.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some((content_type, body)) = self.body {
            out.extend_from_slice(b"Content-Type: ");
            let clean = content_type.bytes().filter(|b| !b.is_ascii_control());
            out.extend(clean);
            out.extend_from_slice(format!("\r\nContent-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }
}

/// A response read in full.
#[derive(Debug)]
pub(super) struct Response {
    /// The status code.
    pub status: u16,
    /// The body, with any transfer coding removed; `None` when it was longer than
    /// the limit (and so not read).
    pub body: Option<Vec<u8>>,
    /// Whether the connection may carry another request.
    pub reusable: bool,
}

/// Why no response was read.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    /// The connection closed (or was reset) before any byte of a response: on a
    /// connection kept from an earlier request, the server had closed it.
    #[error("the connection closed before an answer")]
    Closed,
    /// Reading failed part way.
    #[error("{0}")]
    Io(std::io::Error),
    /// The bytes are not an HTTP/1.1 response.
    #[error("invalid HTTP answer: {0}")]
    Protocol(String),
}

/// How the body's end is found (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// What the head says.
#[derive(Debug)]
struct Head {
    status: u16,
    framing: Framing,
    /// HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `keep-alive`.
    keep_alive: bool,
    /// Bytes of the buffer the head took.
    len: usize,
}

/// Reads one response from `io`, its bytes gathered in `buf` (which may hold bytes
/// already read); a body over `limit` bytes is not read.
pub(super) async fn read_response<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<Response, ReadError> {
    let mut started = !buf.is_empty();
    let head = loop {
        match parse_head(buf)? {
            Some(head) if (100..200).contains(&head.status) && head.status != 101 => {
                buf.advance(head.len);
            }
            Some(head) if head.status == 101 => {
                return Err(ReadError::Protocol(
                    "an unasked protocol switch (101)".into(),
                ));
            }
            Some(head) => break head,
            None if buf.len() > MAX_HEAD => {
                return Err(ReadError::Protocol(format!("head over {MAX_HEAD} bytes")));
            }
            None => match fill(io, buf).await {
                Ok(0) if !started => return Err(ReadError::Closed),
                Err(e) if !started && e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Err(ReadError::Closed);
                }
                Ok(0) => {
                    return Err(ReadError::Protocol(
                        "the connection closed inside the head".into(),
                    ));
                }
                Ok(_) => started = true,
                Err(e) => return Err(ReadError::Io(e)),
            },
        }
    };
    buf.advance(head.len);
    let body = match head.framing {
        Framing::Empty => Some(Vec::new()),
        Framing::Length(n) if n > limit as u64 => None,
        Framing::Length(n) => Some(read_exact(io, buf, n as usize).await?),
        Framing::Chunked => read_chunked(io, buf, limit).await?,
        Framing::UntilClose => read_to_close(io, buf, limit).await?,
    };
    // Bytes past the answer mean the server and we disagree on framing.
    let reusable =
        head.keep_alive && head.framing != Framing::UntilClose && body.is_some() && buf.is_empty();
    Ok(Response {
        status: head.status,
        body,
        reusable,
    })
}

/// Reads more bytes into `buf`; how many (0 at the end of the stream).
async fn fill<S: AsyncRead + Unpin>(io: &mut S, buf: &mut BytesMut) -> std::io::Result<usize> {
    buf.reserve(8 * 1024);
    io.read_buf(buf).await
}

/// [`fill`] past the head, where any failure to read is the answer's error.
async fn more<S: AsyncRead + Unpin>(io: &mut S, buf: &mut BytesMut) -> Result<usize, ReadError> {
    fill(io, buf).await.map_err(ReadError::Io)
}

/// The head at the start of `buf`, or `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ReadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ReadError::Protocol(e.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut coded = false;
    let mut close = false;
    let mut keep_alive_token = false;
    for field in response.headers.iter() {
        let value = std::str::from_utf8(field.value)
            .map_err(|_| ReadError::Protocol(format!("{} is not text", field.name)))?;
        if field.name.eq_ignore_ascii_case("content-length") {
            let n = value.trim().parse::<u64>().map_err(|_| {
                ReadError::Protocol(format!("Content-Length '{}'", value.escape_default()))
            })?;
            if length.is_some_and(|m| m != n) {
                return Err(ReadError::Protocol("two different Content-Lengths".into()));
            }
            length = Some(n);
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            coded = true;
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if field.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    let framing = match (status, coded, chunked, length) {
        (204 | 304, ..) => Framing::Empty,
        (_, true, true, _) => Framing::Chunked,
        (_, true, false, _) => Framing::UntilClose,
        (_, false, _, Some(n)) => Framing::Length(n),
        (_, false, _, None) => Framing::UntilClose,
    };
    let http11 = response.version == Some(1);
    // A message with both a transfer coding and a length is closed after (§6.3).
    let keep_alive = !close && (http11 || keep_alive_token) && !(coded && length.is_some());
    Ok(Some(Head {
        status,
        framing,
        keep_alive,
        len,
    }))
}

/// The next `n` bytes.
async fn read_exact<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    n: usize,
) -> Result<Vec<u8>, ReadError> {
    while buf.len() < n {
        if more(io, buf).await? == 0 {
            return Err(cut_short());
        }
    }
    Ok(buf.split_to(n).to_vec())
}

fn cut_short() -> ReadError {
    ReadError::Protocol("the connection closed before the body's end".into())
}

/// A chunked body (RFC 9112 §7.1), trailers read and dropped; `None` past `limit`.
async fn read_chunked<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<Option<Vec<u8>>, ReadError> {
    let mut body = Vec::new();
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(ReadError::Protocol("a chunk-size line too long".into()));
            }
            Ok(httparse::Status::Partial) => {
                if more(io, buf).await? == 0 {
                    return Err(cut_short());
                }
                continue;
            }
            Err(_) => return Err(ReadError::Protocol("an invalid chunk size".into())),
        };
        if size == 0 {
            buf.advance(size_len);
            skip_trailers(io, buf).await?;
            return Ok(Some(body));
        }
        if body.len() as u64 + size > limit as u64 {
            return Ok(None);
        }
        let size = size as usize;
        while buf.len() < size_len + size + 2 {
            if more(io, buf).await? == 0 {
                return Err(cut_short());
            }
        }
        buf.advance(size_len);
        body.extend_from_slice(&buf[..size]);
        if &buf[size..size + 2] != b"\r\n" {
            return Err(ReadError::Protocol("a chunk not ended by CRLF".into()));
        }
        buf.advance(size + 2);
    }
}

/// The trailer section after the last chunk, up to its empty line.
async fn skip_trailers<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> Result<(), ReadError> {
    loop {
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            return Ok(());
        }
        if let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") {
            buf.advance(end + 4);
            return Ok(());
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Protocol(format!(
                "trailers over {MAX_HEAD} bytes"
            )));
        }
        if more(io, buf).await? == 0 {
            return Err(cut_short());
        }
    }
}

/// Everything until the end of the stream; `None` past `limit`.
async fn read_to_close<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<Option<Vec<u8>>, ReadError> {
    loop {
        if buf.len() > limit {
            return Ok(None);
        }
        if more(io, buf).await? == 0 {
            return Ok(Some(buf.split().to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(bytes: &[u8], limit: usize) -> Result<Response, ReadError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(read_response(&mut &bytes[..], &mut BytesMut::new(), limit))
    }

    #[test]
    fn a_chunked_body_and_what_follows_it() {
        let r = read(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            100,
        )
        .unwrap();
        assert_eq!(r.body.as_deref(), Some(&b"abc"[..]));
        assert!(r.reusable);
        // Bytes after the answer: the connection is not kept.
        let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy", 100).unwrap();
        assert_eq!((r.body.as_deref(), r.reusable), (Some(&b"x"[..]), false));
        // A transfer coding that is not chunked runs to the close.
        let r = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", 100).unwrap();
        assert_eq!((r.body.as_deref(), r.reusable), (Some(&b"zz"[..]), false));
        // Nothing at all: closed before an answer.
        assert!(matches!(read(b"", 100), Err(ReadError::Closed)));
    }

    proptest! {
        /// Whatever a server sends, reading it ends in an answer or an error.
        #[test]
        fn any_bytes_are_read_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = read(&bytes, 256);
        }

        /// The same after a valid head, for each way a body's end is found.
        #[test]
        fn any_body_is_read_without_a_panic(
            head in prop_oneof![
                Just("Transfer-Encoding: chunked"),
                Just("Content-Length: 40"),
                Just("Connection: close"),
            ],
            body in proptest::collection::vec(
                prop_oneof![Just(b'0'), Just(b'a'), Just(b'\r'), Just(b'\n'), Just(b';'), any::<u8>()],
                0..400,
            ),
        ) {
            let mut bytes = format!("HTTP/1.1 200 OK\r\n{head}\r\n\r\n").into_bytes();
            bytes.extend(body);
            if let Ok(r) = read(&bytes, 256) {
                prop_assert!(r.body.is_none_or(|b| b.len() <= 256));
            }
        }
    }
}
