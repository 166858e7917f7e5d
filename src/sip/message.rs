//! SIP requests and responses: parsing from bytes, typed access to the headers the
//! engine reads, building and serialising.
//!
//! The parser covers what rsip 0.4 does not (docs/architecture.md §5): compact header names,
//! folded header lines, white space before the colon, extension methods, tel URIs,
//! IPv6 references, Content-Length checked against the body, and display names
//! unquoted. It never panics: anything malformed is a [`ParseError`].

use compact_str::CompactString;

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::ParseError;
use super::header::{Header, Name, Value, Values, value_of};
use super::method::Method;
use super::parsed::{Parsed, kept, read};
use super::typed::{CSeq, NameAddr, Via};
use super::uri::{Uri, split_byte, split_once_byte, write_decimal};

/// The longest reason phrase callflow writes in a 400 (the explanation is cut).
pub const MAX_REASON_BYTES: usize = 120;

/// Largest message accepted on any transport, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 65_535;

/// Most header lines a message may have (a message with thousands of Via lines is
/// refused, not processed).
pub const MAX_HEADERS: usize = 128;

/// A request line or a status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD Request-URI SIP/2.0`
    Request {
        /// The method.
        method: Method,
        /// The Request-URI.
        uri: Uri,
    },
    /// `SIP/2.0 CODE Reason`
    Response {
        /// The status code, 100 to 699.
        status: u16,
        /// The reason phrase.
        reason: CompactString,
    },
}

/// A SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The request or status line.
    pub start: StartLine,
    /// The headers in order, without Content-Length (it is derived from the body and
    /// written when the message is serialised). Changed only through the setters, so
    /// that `parsed` stays true.
    headers: Vec<Header>,
    /// The body.
    pub body: Bytes,
    /// The typed headers read so far, parsed once each.
    parsed: Parsed,
}

/// How the bytes arrived, which decides how Content-Length is read (RFC 3261 §18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One message per datagram: Content-Length may be absent (the body is the rest);
    /// bytes past it are dropped; a body shorter than it is an error.
    Datagram,
    /// Cut from a stream by [`frame`]: Content-Length is required and exact.
    Stream,
}

/// Finds the end of the first message in a stream buffer: `Ok(Some(len))` when a whole
/// message is there, `Ok(None)` when more bytes are needed. Leading CRLFs (keep-alives)
/// must have been consumed by the caller.
pub fn frame(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some(head_end) = find_head_end(buf) else {
        if buf.len() > MAX_MESSAGE_BYTES {
            return Err(ParseError::TooLarge(buf.len()));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end.0]).map_err(|_| ParseError::NotUtf8)?;
    let values = lines(head).skip(1).filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        (Name::parse(name.trim_ascii()) == Name::ContentLength).then_some(value)
    });
    let length = content_length(values)?
        .ok_or_else(|| ParseError::ContentLength("missing on a stream transport".into()))?;
    let total = head_end.1 + length;
    if total > MAX_MESSAGE_BYTES {
        return Err(ParseError::TooLarge(total));
    }
    Ok((buf.len() >= total).then_some(total))
}

/// The lines of a message head without their ends (`\n` or `\r\n`), as
/// `split('\n')` cuts them.
fn lines(head: &str) -> impl Iterator<Item = &str> {
    split_byte(head, b'\n').map(|line| line.strip_suffix('\r').unwrap_or(line))
}

/// Where the header section ends: (end of the headers, start of the body). The first
/// blank line ends it, written `\r\n\r\n` or `\n\n`: one pass over the line ends.
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    for nl in memchr::memchr_iter(b'\n', buf) {
        match buf.get(nl + 1) {
            Some(b'\n') => return Some((nl, nl + 2)),
            Some(b'\r') if nl > 0 && buf[nl - 1] == b'\r' && buf.get(nl + 2) == Some(&b'\n') => {
                return Some((nl - 1, nl + 3));
            }
            _ => {}
        }
    }
    None
}

/// Reads Content-Length from its values: one value, or several that agree.
fn content_length<'a>(values: impl Iterator<Item = &'a str>) -> Result<Option<usize>, ParseError> {
    let mut found: Option<usize> = None;
    for value in values {
        let value = value.trim_ascii();
        let n = value
            .parse::<usize>()
            .ok()
            .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ParseError::ContentLength(format!("'{}'", value.escape_default())))?;
        if found.is_some_and(|f| f != n) {
            return Err(ParseError::ContentLength(
                "several values that differ".into(),
            ));
        }
        found = Some(n);
    }
    Ok(found)
}

impl Message {
    /// Drops the headers and the body, keeping the start line: for a transaction
    /// that lingers (RFC 3261's Timer J, L, M, D) after it no longer needs the message.
    pub fn forget(&mut self) {
        self.headers = Vec::new();
        self.body = Bytes::new();
        self.parsed.forget_all();
    }

    /// Parses one message.
    pub fn parse(buf: &[u8], framing: Framing) -> Result<Message, ParseError> {
        if buf.len() > MAX_MESSAGE_BYTES {
            return Err(ParseError::TooLarge(buf.len()));
        }
        let skip = buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        let buf = &buf[skip..];
        if buf.iter().all(u8::is_ascii_whitespace) {
            return Err(ParseError::Empty);
        }
        let (head_end, body_start) = find_head_end(buf).ok_or(ParseError::Incomplete)?;
        // One copy of the message: the header values and the body are slices of it
        // (bytes past Content-Length, which a datagram may carry, are kept with it).
        let whole = Bytes::copy_from_slice(buf);
        let head =
            ByteString::try_from(whole.slice(..head_end)).map_err(|_| ParseError::NotUtf8)?;
        let mut lines = lines(&head);
        let start = parse_start_line(lines.next().unwrap_or(""))?;
        let mut headers = parse_headers(&head, lines)?;
        let rest = &buf[body_start..];
        let length = content_length(
            headers
                .iter()
                .filter(|h| h.name == Name::ContentLength)
                .map(|h| h.value.as_str()),
        )?;
        let body = match (length, framing) {
            (None, Framing::Datagram) => rest.len(),
            (None, Framing::Stream) => {
                return Err(ParseError::ContentLength(
                    "missing on a stream transport".into(),
                ));
            }
            (Some(n), _) if n > rest.len() => {
                return Err(ParseError::ContentLength(format!(
                    "says {n} bytes, the body has {}",
                    rest.len()
                )));
            }
            (Some(n), _) => n,
        };
        // The body's length is what counts; it is written again on serialisation.
        headers.retain(|h| h.name != Name::ContentLength);
        Ok(Message {
            start,
            headers,
            body: whole.slice(body_start..body_start + body),
            parsed: Parsed::default(),
        })
    }

    /// The answer to a request [`Message::parse`] refused for its request line or
    /// its Content-Length, when the rest of it reads: 505 for a SIP version other
    /// than 2.0, else 400 saying why (RFC 3261 §8.2, §18.3; RFC 4475 §3.1.2 and
    /// §3.3 expect these of the torture messages). `None` for a response, an ACK,
    /// any other error, or a request whose headers do not parse or lack what an
    /// answer copies (Via, From, To, Call-ID, a CSeq of its method).
    pub fn answer_unparsable(buf: &[u8], error: &ParseError) -> Option<Message> {
        if !matches!(
            error,
            ParseError::StartLine(_)
                | ParseError::Uri(_)
                | ParseError::UnsupportedScheme(_)
                | ParseError::ContentLength(_)
        ) {
            return None;
        }
        let buf = &buf[buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count()..];
        let (head_end, _) = find_head_end(buf)?;
        let head = ByteString::try_from(Bytes::copy_from_slice(&buf[..head_end])).ok()?;
        let mut lines = lines(&head);
        let first = lines.next()?;
        let method = Method::parse(split_byte(first, b' ').next()?).ok()?;
        if first.starts_with("SIP/") || method == Method::Ack {
            return None;
        }
        let mut request = Message {
            start: StartLine::Request {
                method,
                uri: Uri::parse("sip:invalid").ok()?,
            },
            headers: parse_headers(&head, lines).ok()?,
            body: Bytes::new(),
            parsed: Parsed::default(),
        };
        request.validate().ok()?;
        let version = first.rsplit(' ').next().unwrap_or("");
        let other_version = version.len() > 4
            && version
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
            && !version.eq_ignore_ascii_case("SIP/2.0");
        if other_version {
            return Some(Message::response_to(&request, 505));
        }
        Some(Message::bad_request(&request, error))
    }

    /// `400 Bad Request (why)` to `request`. The reason is cut to
    /// [`MAX_REASON_BYTES`]: what went wrong may quote the request, and an answer
    /// to a spoofed source must not be larger than what it sent.
    pub fn bad_request(request: &Message, why: &dyn std::fmt::Display) -> Message {
        let mut answer = Message::response_to(request, 400);
        let mut text = format!("Bad Request ({why})");
        if text.len() > MAX_REASON_BYTES {
            let mut cut = MAX_REASON_BYTES - 4;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...)");
        }
        if let StartLine::Response { reason, .. } = &mut answer.start {
            *reason = text.into();
        }
        answer
    }

    /// A request with no headers yet.
    pub fn request(method: Method, uri: Uri) -> Message {
        Message {
            start: StartLine::Request { method, uri },
            // Room for what callflow writes on a request, without growing.
            headers: Vec::with_capacity(12),
            body: Bytes::new(),
            parsed: Parsed::default(),
        }
    }

    /// A response to `req` (RFC 3261 §8.2.6.2): its Vias, From, To, Call-ID and CSeq,
    /// and with them what `req` had already parsed of its top Via, To and CSeq.
    pub fn response_to(req: &Message, status: u16) -> Message {
        let mut headers = Vec::with_capacity(8);
        for h in &req.headers {
            if matches!(
                h.name,
                Name::Via | Name::From | Name::To | Name::CallId | Name::CSeq
            ) {
                headers.push(h.clone());
            }
        }
        Message {
            start: StartLine::Response {
                status,
                reason: reason_phrase(status).into(),
            },
            headers,
            body: Bytes::new(),
            parsed: req.parsed.for_response(),
        }
    }

    /// The headers, in order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The headers to change in place: what was parsed of them is dropped.
    pub fn headers_mut(&mut self) -> &mut Vec<Header> {
        self.parsed.forget_all();
        &mut self.headers
    }

    /// The method, for a request.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI, for a request.
    pub fn request_uri(&self) -> Option<&Uri> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, for a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase, for a response.
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The first value of a header.
    pub fn header(&self, name: &Name) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// The first value of a header, when it can be written again as it is: with no
    /// line break in it (a received value never has one, folded lines are joined when
    /// parsed; one callflow wrote is checked too).
    pub fn header_on_one_line(&self, name: &Name) -> Option<&str> {
        self.header(name)
            .filter(|text| !text.bytes().any(|b| b == b'\r' || b == b'\n'))
    }

    /// Every value of a header, list headers split at their commas.
    pub fn header_values<'a>(&'a self, name: &'a Name) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| &h.name == name)
            .flat_map(|h| Values::new(&h.value, h.name.is_list()))
    }

    /// Adds a header at the end.
    pub fn push_header(&mut self, name: Name, value: impl Into<CompactString>) {
        self.parsed.forget(&name);
        self.headers.push(Header {
            name,
            value: Value::Written(value.into()),
        });
    }

    /// Adds a header before every other header of the same name (a new top Via or
    /// Record-Route).
    pub fn prepend_header(&mut self, name: Name, value: impl Into<CompactString>) {
        self.parsed.forget(&name);
        let at = self
            .headers
            .iter()
            .position(|h| h.name == name)
            .unwrap_or(self.headers.len());
        self.headers.insert(
            at,
            Header {
                name,
                value: Value::Written(value.into()),
            },
        );
    }

    /// Replaces every header of this name with one value.
    pub fn set_header(&mut self, name: Name, value: impl Into<CompactString>) {
        let at = self.headers.iter().position(|h| h.name == name);
        self.remove_header(&name);
        let header = Header {
            name,
            value: Value::Written(value.into()),
        };
        match at {
            Some(i) if i <= self.headers.len() => self.headers.insert(i, header),
            _ => self.headers.push(header),
        }
    }

    /// The text of To with `tag` on it (a UAS's answer, RFC 3261 §8.2.6.2: the
    /// request's To, the tag added): the text as it was with the tag appended when
    /// it had none (without a copy of the parsed To), else written anew.
    pub fn to_text_with_tag(&self, tag: &str) -> Result<CompactString, ParseError> {
        let to = self.to_header()?;
        Ok(match (to.tag(), self.header_on_one_line(&Name::To)) {
            (None, Some(text)) => {
                let mut value = CompactString::with_capacity(text.len() + 5 + tag.len());
                value.push_str(text);
                value.push_str(";tag=");
                value.push_str(tag);
                value
            }
            _ => {
                let mut to = to.clone();
                to.set_tag(tag);
                value_of(&to)
            }
        })
    }

    /// Puts `tag` on To (a UAS's answer), keeping its parsed value, which is moved
    /// rather than copied; the text is [`Message::to_text_with_tag`]'s.
    pub fn set_to_tag(&mut self, tag: &str) -> Result<(), ParseError> {
        let text = self.to_text_with_tag(tag)?;
        let mut to = match self.parsed.take_to() {
            Some(Ok(to)) => to,
            // Read just above, so kept: this is only for completeness.
            _ => self.name_addr(Name::To, "To")?,
        };
        to.set_tag(tag);
        self.set_header(Name::To, text);
        self.parsed.keep(|s| s.to = kept(to));
        Ok(())
    }

    /// Sets From, keeping its parsed value: a request callflow builds reads its own
    /// From tag back for its dialog, which would otherwise parse the text just written.
    pub fn set_from(&mut self, from: NameAddr) {
        self.set_header(Name::From, value_of(&from));
        self.parsed.keep(|s| s.from = kept(from));
    }

    /// Replaces the first Via value (which may share a header line with others),
    /// keeping it parsed.
    pub fn replace_top_via(&mut self, via: Via) {
        let Some(i) = self.headers.iter().position(|h| h.name == Name::Via) else {
            return;
        };
        let mut value = value_of(&via);
        for rest in Values::new(&self.headers[i].value, true).skip(1) {
            value.push_str(", ");
            value.push_str(rest);
        }
        self.headers[i].value = Value::Written(value);
        self.parsed.keep(|s| s.via = kept(via));
    }

    /// Removes every header of this name.
    pub fn remove_header(&mut self, name: &Name) {
        self.parsed.forget(name);
        self.headers.retain(|h| &h.name != name);
    }

    /// Sets the body and its Content-Type.
    pub fn set_body(&mut self, content_type: &str, body: Bytes) {
        self.set_header(Name::ContentType, content_type);
        self.body = body;
    }

    fn required(&self, name: Name, label: &'static str) -> Result<&str, ParseError> {
        self.header(&name).ok_or(ParseError::Missing(label))
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        self.required(Name::CallId, "Call-ID")
    }

    /// The CSeq (parsed once).
    pub fn cseq(&self) -> Result<&CSeq, ParseError> {
        read(&self.parsed.slots().cseq, || {
            CSeq::parse(self.required(Name::CSeq, "CSeq")?)
        })
    }

    /// The From header (parsed once).
    pub fn from_header(&self) -> Result<&NameAddr, ParseError> {
        read(&self.parsed.slots().from, || {
            self.name_addr(Name::From, "From")
        })
    }

    /// The To header (parsed once).
    pub fn to_header(&self) -> Result<&NameAddr, ParseError> {
        read(&self.parsed.slots().to, || self.name_addr(Name::To, "To"))
    }

    fn name_addr(&self, name: Name, label: &'static str) -> Result<NameAddr, ParseError> {
        parse_name_addr(self.required(name, label)?, label)
    }

    /// The top Via (parsed once).
    pub fn top_via(&self) -> Result<&Via, ParseError> {
        read(&self.parsed.slots().via, || self.parse_top_via())
    }

    fn parse_top_via(&self) -> Result<Via, ParseError> {
        let first = self
            .header_values(&Name::Via)
            .next()
            .ok_or(ParseError::Missing("Via"))?;
        Via::parse(first)
    }

    /// Every Via, top first.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.header_values(&Name::Via).map(Via::parse).collect()
    }

    fn name_addrs(&self, name: Name, label: &'static str) -> Result<Vec<NameAddr>, ParseError> {
        self.header_values(&name)
            .map(|v| parse_name_addr(v, label))
            .collect()
    }

    /// Every Contact (a `*` Contact is an error here; only REGISTER uses it).
    pub fn contacts(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(Name::Contact, "Contact")
    }

    /// Every Route, in order.
    pub fn routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(Name::Route, "Route")
    }

    /// Every Record-Route, in order.
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(Name::RecordRoute, "Record-Route")
    }

    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.header(&Name::MaxForwards)
            .map(|v| {
                v.trim_ascii()
                    .parse::<u8>()
                    .map_err(|_| ParseError::Header {
                        name: "Max-Forwards",
                        reason: format!("'{}' is not a number from 0 to 255", v.escape_default()),
                    })
            })
            .transpose()
    }

    /// The Content-Type, if present.
    pub fn content_type(&self) -> Option<&str> {
        self.header(&Name::ContentType)
    }

    /// Checks what RFC 3261 §8.1.1 requires of every request and response: a Via,
    /// From and To, Call-ID and a CSeq whose method matches the request's. The top
    /// Via, From, To and CSeq parsed here are kept for the layers that read them,
    /// put in place whole: a first read through `&self` goes through each slot's
    /// lock-once machinery, five times per message.
    pub fn validate(&mut self) -> Result<(), ParseError> {
        let via = self.parse_top_via()?;
        let from = self.name_addr(Name::From, "From")?;
        let to = self.name_addr(Name::To, "To")?;
        self.call_id()?;
        let cseq = CSeq::parse(self.required(Name::CSeq, "CSeq")?)?;
        if let Some(method) = self.method()
            && &cseq.method != method
        {
            return Err(ParseError::Header {
                name: "CSeq",
                reason: format!(
                    "method {} does not match the request's {method}",
                    cseq.method
                ),
            });
        }
        self.max_forwards()?;
        self.parsed = Parsed::filled(via, from, to, cseq);
        Ok(())
    }

    /// Serialises the message straight into one buffer sized for it; Content-Length
    /// is always written, from the body.
    ///
    /// No value can inject a header line: a head with any CR or LF besides its
    /// lines' own CRLFs, counted in one pass over the whole head, is written again
    /// with each CR and LF of the header values and the reason phrase as a space.
    /// Values are checked before they get here; this is the last guard. (A pass per
    /// value cost three times as much: most values are too short for the compiler's
    /// many-bytes-at-a-time loop.)
    pub fn to_bytes(&self) -> Bytes {
        let (out, lines) = self.write(false);
        let head = &out[..out.len() - self.body.len()];
        if line_breaks(head) == 2 * lines {
            return out.freeze();
        }
        self.write(true).0.freeze()
    }

    /// The message's bytes, and how many lines its head has (the blank line
    /// included); with `one_line`, each value and the reason phrase written with
    /// every CR and LF as a space.
    fn write(&self, one_line: bool) -> (BytesMut, usize) {
        let put = |out: &mut BytesMut, s: &str| {
            if one_line {
                put_one_line(out, s);
            } else {
                out.put_slice(s.as_bytes());
            }
        };
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.name.as_str().len() + h.value.len() + 4)
            .sum();
        let mut out = BytesMut::with_capacity(128 + headers + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                out.put_slice(method.as_str().as_bytes());
                out.put_slice(b" ");
                let _ = uri.write_to(&mut out);
                out.put_slice(b" SIP/2.0\r\n");
            }
            StartLine::Response { status, reason } => {
                out.put_slice(b"SIP/2.0 ");
                let _ = write_decimal(&mut out, u32::from(*status));
                out.put_slice(b" ");
                put(&mut out, reason);
                out.put_slice(b"\r\n");
            }
        }
        let mut lines = 3; // the start line, Content-Length and the blank line
        for h in self
            .headers
            .iter()
            .filter(|h| h.name != Name::ContentLength)
        {
            out.put_slice(h.name.as_str().as_bytes());
            out.put_slice(b": ");
            put(&mut out, &h.value);
            out.put_slice(b"\r\n");
            lines += 1;
        }
        out.put_slice(b"Content-Length: ");
        let _ = write_decimal(&mut out, u32::try_from(self.body.len()).unwrap_or(u32::MAX));
        out.put_slice(b"\r\n\r\n");
        out.put_slice(&self.body);
        (out, lines)
    }
}

/// A name-addr header's value parsed, an error naming the header (`label`).
fn parse_name_addr(value: &str, label: &'static str) -> Result<NameAddr, ParseError> {
    NameAddr::parse(value).map_err(|e| ParseError::Header {
        name: label,
        reason: e.to_string(),
    })
}

/// How many bytes of `bytes` are CR or LF: counted 128 bytes at a time into one
/// byte each, which the compiler does sixteen bytes per step.
fn line_breaks(bytes: &[u8]) -> usize {
    bytes
        .chunks(128)
        .map(|c| {
            usize::from(
                c.iter()
                    .fold(0u8, |n, &b| n + u8::from((b == b'\r') | (b == b'\n'))),
            )
        })
        .sum()
}

/// Writes a header value or reason phrase with any CR or LF replaced by a space.
fn put_one_line(out: &mut BytesMut, s: &str) {
    let start = out.len();
    out.put_slice(s.as_bytes());
    for b in &mut out[start..] {
        if matches!(*b, b'\r' | b'\n') {
            *b = b' ';
        }
    }
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let bad = |why: &str| ParseError::StartLine(format!("{why}: '{}'", line.escape_default()));
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = split_once_byte(rest, b' ').unwrap_or((rest, ""));
        let status = code
            .parse::<u16>()
            .ok()
            .filter(|s| (100..=699).contains(s) && code.len() == 3)
            .ok_or_else(|| bad("bad status code"))?;
        return Ok(StartLine::Response {
            status,
            reason: reason.into(),
        });
    }
    let mut parts = split_byte(line, b' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not 'METHOD URI SIP/2.0'"));
    };
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(bad("version is not SIP/2.0"));
    }
    Ok(StartLine::Request {
        method: Method::parse(method)?,
        uri: Uri::parse(uri)?,
    })
}

/// The header lines of `head` (`lines` are slices of it): each value is a slice of
/// `head`, not a copy.
fn parse_headers<'a>(
    head: &ByteString,
    lines: impl Iterator<Item = &'a str>,
) -> Result<Vec<Header>, ParseError> {
    let mut headers: Vec<Header> = Vec::with_capacity(16);
    let clean = head_is_clean(head.as_bytes());
    for (i, line) in lines.enumerate() {
        let number = i + 2;
        if !clean && has_control(line) {
            return Err(ParseError::HeaderLine {
                line: number,
                reason: "control character in header line".into(),
            });
        }
        if line.starts_with([' ', '\t']) {
            // A folded continuation of the previous header (RFC 3261 §7.3.1).
            let prev = headers.last_mut().ok_or_else(|| ParseError::HeaderLine {
                line: number,
                reason: "continuation line with no header before it".into(),
            })?;
            let more = line.trim_ascii();
            if !more.is_empty() {
                let mut value =
                    std::mem::replace(&mut prev.value, Value::Written(CompactString::default()))
                        .into_written();
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(more);
                prev.value = Value::Written(value);
            }
            continue;
        }
        if headers.len() == MAX_HEADERS {
            return Err(ParseError::TooManyHeaders(MAX_HEADERS));
        }
        let (name, value) = split_header_line(line).ok_or_else(|| bad_header_line(line, number))?;
        headers.push(Header {
            name: Name::parse(name),
            // `value` is part of `head` (it came from splitting it), as slice_ref needs.
            value: Value::Received(head.slice_ref(value.trim_ascii())),
        });
    }
    Ok(headers)
}

/// A header line's name and value (`Name: value`), found in one pass over the name:
/// its token characters, then spaces or tabs, then the colon. `None` when the line
/// is not that; [`bad_header_line`] says why.
fn split_header_line(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    let end = bytes.iter().position(|&b| !super::uri::is_token_byte(b))?;
    let colon = end + bytes[end..].iter().position(|&b| b != b' ' && b != b'\t')?;
    (end > 0 && bytes[colon] == b':').then(|| (&line[..end], &line[colon + 1..]))
}

/// Why [`split_header_line`] refused `line`, the header section's line `number`.
fn bad_header_line(line: &str, number: usize) -> ParseError {
    let reason = match split_once_byte(line, b':') {
        None => "no ':'".to_string(),
        Some((name, _)) => format!(
            "bad header name '{}'",
            name.trim_end_matches([' ', '\t']).escape_default()
        ),
    };
    ParseError::HeaderLine {
        line: number,
        reason,
    }
}

/// Whether no line of `head` can hold a control character other than tab: every
/// byte is printable ASCII, tab or LF, or a CR right before an LF (which ends its
/// line and is cut off with it). One pass without an early exit over the whole
/// head, which the compiler does many bytes at a time, answers for most messages;
/// a head that is not clean has its lines checked one by one ([`has_control`]).
fn head_is_clean(head: &[u8]) -> bool {
    let allowed = |c: u8| (0x20..0x7f).contains(&c) | (c == b'\t') | (c == b'\n');
    let Some((&last, _)) = head.split_last() else {
        return true;
    };
    // Each byte with the one after it, as two slices zipped: the compiler does that
    // many bytes at a time, where `windows(2)` went a byte at a time.
    let pairs = head.iter().zip(&head[1..]).fold(true, |ok, (&c, &next)| {
        ok & (allowed(c) | ((c == b'\r') & (next == b'\n')))
    });
    pairs && allowed(last)
}

/// Whether `line` holds a control character other than tab (Unicode's Cc: U+0000 to
/// U+001F, U+007F to U+009F; the last 32 are `0xC2 0x80..=0x9F` in UTF-8).
fn has_control(line: &str) -> bool {
    let b = line.as_bytes();
    // Printable ASCII and tab have none: one pass without an early exit, which the
    // compiler does sixteen or thirty-two bytes at a time, answers for most lines.
    let suspect = b.iter().fold(false, |seen, &c| {
        seen | ((c < 0x20 && c != b'\t') | (c >= 0x7f))
    });
    suspect
        && b.iter().enumerate().any(|(i, &c)| {
            (c < 0x20 && c != b'\t')
                || c == 0x7f
                || (c == 0xc2 && b.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
        })
}

/// The usual reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    /// A header line splits as splitting at the first colon and checking the name
    /// (trailing spaces and tabs cut) splits it, over every short mix of name, space,
    /// tab, colon and non-token characters; what is refused is said to have no colon
    /// or a bad name, as before.
    #[test]
    fn header_lines_split_as_at_the_first_colon() {
        let alphabet = ["a", "-", ":", " ", "\t", "@", "é"];
        let mut lines = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = lines
                .iter()
                .flat_map(|l| alphabet.iter().map(move |c| format!("{l}{c}")))
                .collect();
            lines.extend(longer);
        }
        for line in &lines {
            let expected = split_once_byte(line, b':').and_then(|(name, value)| {
                let name = name.trim_end_matches([' ', '\t']);
                (!name.is_empty() && name.bytes().all(super::super::uri::is_token_byte))
                    .then_some((name, value))
            });
            assert_eq!(split_header_line(line), expected, "{line:?}");
            if expected.is_none() {
                let ParseError::HeaderLine { line: 3, reason } = bad_header_line(line, 3) else {
                    panic!("{line:?}");
                };
                let colon = line.contains(':');
                assert_eq!(reason == "no ':'", !colon, "{line:?}: {reason}");
                assert_eq!(
                    reason.starts_with("bad header name '"),
                    colon,
                    "{line:?}: {reason}"
                );
            }
        }
    }

    /// A value is written with each CR and LF as a space and nothing else changed,
    /// over every short mix of them with other bytes.
    #[test]
    fn values_are_written_on_one_line() {
        for w in crate::sip::words(&['a', '\r', '\n', ' ', 'é'], 6) {
            let mut out = BytesMut::from(&b"X: "[..]);
            super::put_one_line(&mut out, &w);
            let expected = format!("X: {}", w.replace(['\r', '\n'], " "));
            assert_eq!(&out[..], expected.as_bytes());
        }
    }

    /// A message's bytes are what writing each value and the reason phrase on one
    /// line gives, whatever CRs and LFs a value, the reason or the body holds: a
    /// response and a request carrying every short mix of them with other bytes,
    /// and values long enough to span the count's 128-byte steps.
    #[test]
    fn no_value_breaks_a_line_in_the_bytes() {
        let uri = crate::sip::uri::Uri::parse("sip:alice@192.0.2.1").unwrap();
        let long = "a".repeat(130);
        let words = crate::sip::words(&['a', '\r', '\n', ' ', 'é'], 5);
        for w in words.iter().chain([&long, &format!("{long}\r\nX: 1")]) {
            let mut request = Message::request(super::super::Method::Options, uri.clone());
            request.push_header(Name::CallId, "c1");
            request.push_header(Name::Subject, w.as_str());
            request.set_body("text/plain", Bytes::from(w.clone()));
            let mut response = Message::response_to(&request, 200);
            if let StartLine::Response { reason, .. } = &mut response.start {
                *reason = w.as_str().into();
            }
            for m in [&request, &response] {
                let bytes = m.to_bytes();
                assert_eq!(bytes, m.write(true).0.freeze(), "{w:?}");
                let head = &bytes[..bytes.len() - m.body.len()];
                assert_eq!(super::line_breaks(head), 2 * m.write(true).1, "{w:?}");
            }
        }
    }

    /// From set on a request is one header line, read back as the value set, from
    /// the text as well as from what was kept; setting it again replaces it.
    #[test]
    fn from_set_is_kept_parsed_and_written_once() {
        let uri = crate::sip::uri::Uri::parse("sip:alice@192.0.2.1").unwrap();
        let mut m = Message::request(super::super::Method::Invite, uri.clone());
        for tag in ["first", "second"] {
            let mut from = NameAddr::new(uri.clone());
            from.set_tag(tag);
            m.set_from(from.clone());
            assert_eq!(m.from_header().ok(), Some(&from));
            assert_eq!(
                m.headers().iter().filter(|h| h.name == Name::From).count(),
                1
            );
            let reread = Message::parse(&m.to_bytes(), Framing::Datagram).unwrap();
            assert_eq!(reread.from_header().ok(), Some(&from));
            assert_eq!(reread.from_header().ok().and_then(|f| f.tag()), Some(tag));
        }
    }

    /// A response's To tag: appended to the text when the request's To had none,
    /// written anew when it had one; either way the parsed To kept is what the
    /// text says, and a response built from the request leaves the request's To
    /// as it was.
    #[test]
    fn to_tag_is_kept_parsed_and_written_once() {
        for (to, want) in [
            (
                "\"Bob\" <sip:bob@example.com>",
                "\"Bob\" <sip:bob@example.com>;tag=t2",
            ),
            (
                "<sip:bob@example.com>;tag=t1",
                "<sip:bob@example.com>;tag=t2",
            ),
            ("sip:bob@example.com", "sip:bob@example.com;tag=t2"),
        ] {
            let raw = format!(
                "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\nTo: {to}\r\n\
                 Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            );
            let mut request = Message::parse(raw.as_bytes(), Framing::Datagram).unwrap();
            request.validate().unwrap();
            let mut response = Message::response_to(&request, 200);
            response.set_to_tag("t2").unwrap();
            assert_eq!(response.header(&Name::To), Some(want));
            let kept = response.to_header().unwrap().clone();
            assert_eq!(kept.tag(), Some("t2"));
            let reread = Message::parse(&response.to_bytes(), Framing::Datagram).unwrap();
            assert_eq!(reread.to_header().unwrap(), &kept);
            assert_eq!(request.header(&Name::To), Some(to));
            assert_eq!(request.to_text_with_tag("t2").unwrap(), want);
        }
    }

    /// A request refused for its request line or Content-Length is answered when
    /// its headers read: 505 for another SIP version, 400 with the reason else;
    /// a response, an ACK, a request missing what an answer copies, and any other
    /// error get nothing.
    #[test]
    fn unparsable_requests_are_answered_when_they_can_be() {
        let head = "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKu\r\nMax-Forwards: 70\r\n\
                    From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: u1\r\n";
        let message = |first: &str, cseq: &str, extra: &str| {
            format!("{first}\r\n{head}CSeq: 1 {cseq}\r\n{extra}Content-Length: 0\r\n\r\n")
        };
        let answer = |text: String| {
            let error = Message::parse(text.as_bytes(), Framing::Datagram).unwrap_err();
            Message::answer_unparsable(text.as_bytes(), &error).map(|a| {
                assert_eq!(a.call_id().ok(), Some("u1"));
                (a.status(), a.reason().map(str::to_string))
            })
        };
        let status = |text: String| answer(text).and_then(|(s, _)| s);
        assert_eq!(
            status(message("OPTIONS sip:y SIP/7.0", "OPTIONS", "")),
            Some(505)
        );
        assert_eq!(
            status(message("OPTIONS sip:y SIP/2.0 ", "OPTIONS", "")),
            Some(400)
        );
        assert_eq!(
            status(message("OPTIONS <sip:y> SIP/2.0", "OPTIONS", "")),
            Some(400)
        );
        let (_, reason) = answer(message(
            "OPTIONS sip:y SIP/2.0",
            "OPTIONS",
            "Content-Length: 9\r\n",
        ))
        .unwrap();
        assert!(reason.is_some_and(|r| r.starts_with("Bad Request (bad Content-Length")));
        // Multi-byte text where the version goes does not trip the check.
        assert_eq!(
            status(message("OPTIONS sip:y S\u{e9}\u{e9}", "OPTIONS", "")),
            Some(400)
        );
        // A long line quoted in the reason is cut (on a character boundary).
        let long = format!("OPTIONS sip:y SIP/2.0 {}", "\u{e9}".repeat(3000));
        let (_, reason) = answer(message(&long, "OPTIONS", "")).unwrap();
        let reason = reason.unwrap_or_default();
        assert!(
            reason.len() <= MAX_REASON_BYTES && reason.ends_with("...)"),
            "{reason}"
        );
        // Nothing to answer, or nobody to answer.
        assert_eq!(answer(message("ACK sip:y SIP/7.0", "ACK", "")), None);
        assert_eq!(answer(message("SIP/2.0 2000 OK", "INVITE", "")), None);
        assert_eq!(answer(message("OPTIONS sip:y SIP/7.0", "INVITE", "")), None);
        assert_eq!(
            answer(message("OPT\u{0}ONS sip:y SIP/7.0", "OPTIONS", "")),
            None
        );
        let no_call_id =
            message("OPTIONS sip:y SIP/7.0", "OPTIONS", "").replace("Call-ID: u1\r\n", "");
        let error = Message::parse(no_call_id.as_bytes(), Framing::Datagram).unwrap_err();
        assert!(Message::answer_unparsable(no_call_id.as_bytes(), &error).is_none());
        assert!(Message::answer_unparsable(b"x", &ParseError::NotUtf8).is_none());
    }
    use super::*;

    /// Content-Length is read wherever it is, under either name and however many
    /// times (equal values), then left out of the headers; a folded value is read
    /// whole; values that differ are refused.
    #[test]
    fn content_length_is_read_from_each_of_its_headers_and_dropped() {
        let head = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n";
        let parse = |lengths: &str| {
            let text = format!("{head}{lengths}X-A: 1\r\n\r\nbodyrest");
            Message::parse(text.as_bytes(), Framing::Datagram)
        };
        for lengths in [
            "Content-Length: 4\r\n",
            "l: 4\r\nContent-Length: 4\r\n",
            "Content-Length: 4\r\nX-B: 2\r\nl: 4\r\n",
            "Content-Length:\r\n 4\r\n",
        ] {
            let m = parse(lengths).unwrap();
            assert_eq!(&m.body[..], b"body", "{lengths:?}");
            assert!(m.headers.iter().all(|h| h.name != Name::ContentLength));
            assert_eq!(m.header(&Name::Other("X-A".into())), Some("1"));
        }
        assert!(parse("Content-Length: 4\r\nl: 5\r\n").is_err());
        assert!(parse("Content-Length: 4\r\n 5\r\n").is_err());
    }

    /// The lines of a head are cut as `split('\n')` cuts them, each without its `\r`.
    #[test]
    fn lines_are_cut_as_split_cuts_them() {
        for head in [
            "",
            "\n",
            "INVITE sip:a@b SIP/2.0",
            "A\r\nB: 1\r\n",
            "A\nB\r\n\r\nC",
            "\r\r\n\rx\n\n",
            "é: ü\r\nñ\n",
        ] {
            let split: Vec<&str> = head
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect();
            assert_eq!(lines(head).collect::<Vec<_>>(), split, "{head:?}");
        }
    }

    /// The search `find_head_end` replaced: two window scans.
    fn by_windows(buf: &[u8]) -> Option<(usize, usize)> {
        let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
        let lf = buf.windows(2).position(|w| w == b"\n\n");
        match (crlf, lf) {
            (Some(c), Some(l)) if l < c => Some((l, l + 2)),
            (Some(c), _) => Some((c, c + 4)),
            (None, Some(l)) => Some((l, l + 2)),
            (None, None) => None,
        }
    }

    #[test]
    fn head_end_is_the_first_blank_line_in_either_spelling() {
        // Every string of up to 7 bytes over a, \r, \n: 3^7 = 2187 of each length.
        let alphabet = [b'a', b'\r', b'\n'];
        for len in 0..=7u32 {
            for n in 0..3usize.pow(len) {
                let buf: Vec<u8> = (0..len).map(|i| alphabet[n / 3usize.pow(i) % 3]).collect();
                assert_eq!(find_head_end(&buf), by_windows(&buf), "{buf:?}");
            }
        }
    }

    #[test]
    fn header_values_are_slices_of_one_copy() {
        let text = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nSubject: \r\nCall-ID: c\r\n  folded\r\nMax-Forwards: 70\r\nContent-Length: 2\r\n\r\nhi and junk";
        let m = Message::parse(text.as_bytes(), Framing::Datagram).unwrap();
        let via = m.header(&Name::Via).unwrap();
        let hops = m.header(&Name::MaxForwards).unwrap();
        assert!(matches!(m.headers()[0].value, Value::Received(_)));
        assert_eq!(m.header(&Name::Subject), Some(""));
        // A folded value is written anew; the others point into the one copy.
        assert_eq!(m.header(&Name::CallId), Some("c folded"));
        assert!(matches!(m.headers()[2].value, Value::Written(_)));
        assert_eq!(
            hops.as_ptr() as usize - via.as_ptr() as usize,
            text.find("70\r\n").unwrap() - text.find("SIP/2.0/UDP").unwrap()
        );
        // The body is its Content-Length, copied on its own: what follows is not kept.
        assert_eq!(&m.body[..], b"hi");
    }

    /// A head found clean has no line with a control character, over every short
    /// string of printable bytes, blanks, line ends and control characters; and a
    /// head of plain CRLF lines is found clean.
    #[test]
    fn a_clean_head_has_no_line_with_a_control_character() {
        let alphabet = ['a', ':', '\r', '\n', '\t', '\u{1}', '\u{7f}', '\u{85}', ' '];
        // The check as first written, a byte and the next through `windows(2)`.
        let by_windows = |head: &[u8]| {
            let allowed = |c: u8| (0x20..0x7f).contains(&c) | (c == b'\t') | (c == b'\n');
            head.windows(2)
                .all(|w| allowed(w[0]) || (w[0] == b'\r' && w[1] == b'\n'))
                && head.last().is_none_or(|&c| allowed(c))
        };
        for w in crate::sip::words(&alphabet, 6) {
            let clean = head_is_clean(w.as_bytes());
            assert!(!clean || lines(&w).all(|l| !has_control(l)), "{w:?}");
            assert_eq!(clean, by_windows(w.as_bytes()), "{w:?}");
        }
        assert!(head_is_clean(
            b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nTo: <sip:b>\t;tag=1"
        ));
        assert!(!head_is_clean(b"To: a\rb"));
    }

    #[test]
    fn control_characters_are_those_unicode_calls_control() {
        for c in (0..=0x10ffffu32).filter_map(char::from_u32) {
            let line = format!("a{c}b");
            assert_eq!(has_control(&line), c.is_control() && c != '\t', "{c:?}");
        }
    }
}
