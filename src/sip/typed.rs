//! Typed values of the headers callflow reads: Via, From/To/Contact/Route (name-addr),
//! CSeq.

use compact_str::CompactString;
use std::fmt;

use super::error::ParseError;
use super::header::WriteValue;
use super::method::Method;
use super::uri::{
    Host, Param, Params, Uri, find_param, parse_params, split_host_port, split_once_byte,
    write_decimal, write_params,
};

/// The transport named in a Via.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// The name used in Via and `;transport=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Parses a transport name in any case.
    pub fn parse(s: &str) -> Option<Transport> {
        [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether the transport is reliable (no retransmissions, RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The default port: 5060, or 5061 for TLS.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Via value (RFC 3261 §20.42, RFC 3581).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The transport the request was sent over.
    pub transport: Transport,
    /// sent-by host.
    pub host: Host,
    /// sent-by port.
    pub port: Option<u16>,
    /// Parameters: branch, received, rport, …
    pub params: Params,
}

/// The magic cookie that starts every RFC 3261 branch.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

impl Via {
    /// Parses one Via value.
    pub fn parse(s: &str) -> Result<Via, ParseError> {
        let bad = |r: &str| ParseError::Header {
            name: "Via",
            reason: r.to_string(),
        };
        let (transport, rest) = sent_protocol(s).map_err(bad)?;
        let transport = Transport::parse(transport).ok_or_else(|| bad("unknown transport"))?;
        let rest = rest.trim_ascii();
        let (sent_by, params) = match split_once_byte(rest, b';') {
            Some((sb, p)) => (
                sb.trim_ascii(),
                parse_params(p).map_err(|e| bad(&e.to_string()))?,
            ),
            None => (rest, Params::new()),
        };
        let (host, port) = split_host_port(sent_by).map_err(|e| bad(&e.to_string()))?;
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        find_param(&self.params, "branch").flatten()
    }

    /// A parameter by name: `Some(None)` when it has no value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// Sets a parameter, replacing any of the same name.
    pub fn set_param(&mut self, name: &str, value: Option<CompactString>) {
        self.params.retain(|p| !p.name.eq_ignore_ascii_case(name));
        self.params.push(Param {
            name: name.into(),
            value,
        });
    }
}

/// Cuts a Via value after its sent-protocol: the transport's name and what follows
/// the white space after it, or why not. sent-protocol = name SLASH version SLASH
/// transport, with optional white space around each slash (RFC 3261 §25.1 SLASH =
/// SWS "/" SWS). Cut at bytes: a `char` pattern's searcher cost more to set up than
/// these few bytes.
fn sent_protocol(s: &str) -> Result<(&str, &str), &'static str> {
    const NOT_SIP_2: &str = "protocol is not SIP/2.0";
    let (name, rest) = split_once_byte(s.trim_ascii(), b'/').ok_or(NOT_SIP_2)?;
    let (version, rest) = match split_once_byte(rest, b'/') {
        Some((version, rest)) => (version, Some(rest)),
        None => (rest, None),
    };
    if !name.trim_ascii().eq_ignore_ascii_case("SIP") || version.trim_ascii() != "2.0" {
        return Err(NOT_SIP_2);
    }
    let rest = rest.ok_or("no transport")?.trim_ascii();
    let blank = rest
        .bytes()
        .position(|b| b == b' ' || b == b'\t')
        .ok_or("no sent-by")?;
    Ok((&rest[..blank], &rest[blank + 1..]))
}

impl WriteValue for Via {
    fn write_value(&self, f: &mut impl fmt::Write) -> fmt::Result {
        f.write_str("SIP/2.0/")?;
        f.write_str(self.transport.as_str())?;
        f.write_str(" ")?;
        self.host.write_to(f)?;
        if let Some(p) = self.port {
            f.write_str(":")?;
            write_decimal(f, u32::from(p))?;
        }
        write_params(f, &self.params)
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_value(f)
    }
}

/// A name-addr or addr-spec with header parameters: From, To, Contact, Route,
/// Record-Route, Refer-To (RFC 3261 §20.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted and unescaped (inline when short).
    pub display: Option<CompactString>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, …), not the URI's own.
    pub params: Params,
}

impl NameAddr {
    /// A bare URI with no display name or parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Params::new(),
        }
    }

    /// Parses a name-addr (`"Bob" <sip:b@h>;tag=1`) or an addr-spec (`sip:b@h;tag=1`,
    /// where every `;` parameter belongs to the header).
    pub fn parse(s: &str) -> Result<NameAddr, ParseError> {
        let s = s.trim_ascii();
        if let Some(lt) = find_unquoted(s, b'<') {
            let display = parse_display(s[..lt].trim_ascii())?;
            let gt = memchr::memchr(b'>', &s.as_bytes()[lt..])
                .map(|i| i + lt)
                .ok_or_else(|| ParseError::Uri("missing '>'".into()))?;
            let uri = Uri::parse(&s[lt + 1..gt])?;
            let params = match s[gt + 1..].trim_ascii().strip_prefix(';') {
                Some(p) => parse_params(p)?,
                None if s[gt + 1..].trim_ascii().is_empty() => Params::new(),
                None => return Err(ParseError::Uri("junk after '>'".into())),
            };
            return Ok(NameAddr {
                display,
                uri,
                params,
            });
        }
        let (uri, params) = match split_once_byte(s, b';') {
            Some((u, p)) => (u, parse_params(p)?),
            None => (s, Params::new()),
        };
        Ok(NameAddr {
            display: None,
            uri: Uri::parse(uri)?,
            params,
        })
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        find_param(&self.params, "tag").flatten()
    }

    /// A header parameter by name.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// Sets the `tag` parameter.
    pub fn set_tag(&mut self, tag: &str) {
        self.params.retain(|p| !p.name.eq_ignore_ascii_case("tag"));
        self.params.push(Param {
            name: "tag".into(),
            value: Some(tag.into()),
        });
    }
}

/// The first `needle` outside a quoted string. Byte by byte: the needle, quotes and
/// backslashes are ASCII, and no byte of a multi-byte UTF-8 character is. The first
/// needle or quote is found with `memchr2` (a name-addr is read in every message,
/// and most have no quote before their `<`); a quote starts the byte-by-byte scan.
fn find_unquoted(s: &str, needle: u8) -> Option<usize> {
    let first = memchr::memchr2(needle, b'"', s.as_bytes())?;
    if s.as_bytes()[first] == needle {
        return Some(first);
    }
    let (mut in_quotes, mut escaped) = (false, false);
    for (i, b) in s.bytes().enumerate().skip(first) {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            b if b == needle && !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// A display name: a token list or a quoted string (quotes and escapes removed).
fn parse_display(s: &str) -> Result<Option<CompactString>, ParseError> {
    if s.is_empty() {
        return Ok(None);
    }
    let Some(inner) = s.strip_prefix('"') else {
        return Ok(Some(s.into()));
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| ParseError::Uri("unterminated quoted display name".into()))?;
    // Each backslash escapes the character after it: the runs between them are
    // copied whole.
    let mut out = CompactString::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(at) = memchr::memchr(b'\\', rest.as_bytes()) {
        out.push_str(&rest[..at]);
        let mut escaped = rest[at + 1..].chars();
        out.extend(escaped.next());
        rest = escaped.as_str();
    }
    out.push_str(rest);
    Ok(Some(out))
}

impl WriteValue for NameAddr {
    fn write_value(&self, f: &mut impl fmt::Write) -> fmt::Result {
        if let Some(d) = &self.display {
            f.write_str("\"")?;
            let mut rest = d.as_str();
            while let Some(at) = rest.find(['"', '\\']) {
                f.write_str(&rest[..at])?;
                f.write_str("\\")?;
                f.write_str(&rest[at..at + 1])?;
                rest = &rest[at + 1..];
            }
            f.write_str(rest)?;
            f.write_str("\" ")?;
        }
        f.write_str("<")?;
        self.uri.write_to(f)?;
        f.write_str(">")?;
        write_params(f, &self.params)
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_value(f)
    }
}

/// A CSeq value: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number (below 2^31, RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// Parses `123 INVITE`.
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        // The value is read in every message: an ASCII one is cut without decoding
        // characters, at the same places `split_whitespace` cuts it.
        if s.is_ascii() {
            CSeq::from_words(ascii_words(s))
        } else {
            CSeq::from_words(s.split_whitespace())
        }
    }

    /// A CSeq from its value's words: the number, the method and nothing more.
    fn from_words<'a>(mut parts: impl Iterator<Item = &'a str>) -> Result<CSeq, ParseError> {
        let bad = |r: &str| ParseError::Header {
            name: "CSeq",
            reason: r.to_string(),
        };
        let seq = parts
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n < 1 << 31)
            .ok_or_else(|| bad("sequence number is not a number below 2^31"))?;
        let method = parts
            .next()
            .and_then(|m| Method::parse(m).ok())
            .ok_or_else(|| bad("no method"))?;
        if parts.next().is_some() {
            return Err(bad("junk after the method"));
        }
        Ok(CSeq { seq, method })
    }
}

/// `s.split_whitespace()` for an ASCII `s`, by bytes: the words between runs of the
/// ASCII characters `char::is_whitespace` admits (space and `\t` to `\r`).
fn ascii_words(s: &str) -> impl Iterator<Item = &str> {
    let is_space = |b: u8| b == b' ' || (b'\t'..=b'\r').contains(&b);
    let mut rest = s;
    std::iter::from_fn(move || {
        let start = rest.bytes().position(|b| !is_space(b))?;
        let word = &rest[start..];
        let len = word.bytes().position(is_space).unwrap_or(word.len());
        rest = &word[len..];
        Some(&word[..len])
    })
}

impl CSeq {
    /// The header value, written without the formatting machinery (it fits inline).
    pub fn value(&self) -> CompactString {
        let mut value = CompactString::default();
        let _ = write_decimal(&mut value, self.seq);
        value.push(' ');
        value.push_str(self.method.as_str());
        value
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_decimal(f, self.seq)?;
        f.write_str(" ")?;
        fmt::Display::fmt(&self.method, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_words_cut_where_split_whitespace_cuts() {
        // Each ASCII character `char::is_whitespace` admits, a digit, a letter and a
        // control character it does not admit.
        let alphabet = [' ', '\t', '\n', '\u{b}', '\u{c}', '\r', '1', 'A', '\u{1}'];
        for s in crate::sip::words(&alphabet, 6) {
            let ours: Vec<&str> = ascii_words(&s).collect();
            let std: Vec<&str> = s.split_whitespace().collect();
            assert_eq!(ours, std, "{s:?}");
        }
    }

    /// `find_unquoted` and `parse_display` give what their byte-by-byte and
    /// char-by-char forms gave, over every short string of quotes, backslashes, the
    /// needle and other characters.
    #[test]
    fn quoted_strings_are_read_as_the_plain_scans_read_them() {
        let scan = |s: &str| {
            let (mut in_quotes, mut escaped) = (false, false);
            for (i, b) in s.bytes().enumerate() {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' if in_quotes => escaped = true,
                    b'"' => in_quotes = !in_quotes,
                    b'<' if !in_quotes => return Some(i),
                    _ => {}
                }
            }
            None
        };
        let unescape = |inner: &str| {
            let mut out = CompactString::default();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        };
        for s in crate::sip::words(&['"', '\\', '<', 'a', 'é'], 7) {
            assert_eq!(find_unquoted(&s, b'<'), scan(&s), "{s:?}");
            let quoted = format!("\"{s}\"");
            assert_eq!(
                parse_display(&quoted).ok().flatten(),
                Some(unescape(&s)),
                "{quoted:?}"
            );
        }
    }

    #[test]
    fn via() {
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK776;rport").unwrap();
        assert_eq!(v.transport, Transport::Udp);
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some("z9hG4bK776"));
        assert_eq!(v.param("rport"), Some(None));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK776;rport"
        );
        let v = Via::parse("SIP / 2.0 / TCP  host.example ; branch=x").unwrap();
        assert_eq!(v.transport, Transport::Tcp);
        assert!(Via::parse("SIP/3.0/UDP h").is_err());
        assert!(Via::parse("SIP/2.0/SCTP h").is_err());
    }

    /// The sent-protocol is cut as `splitn(3, '/')` and `split_once([' ', '\t'])`
    /// cut it, over every arrangement of names, versions, slashes and blanks.
    #[test]
    fn sent_protocol_is_cut_as_the_splits_cut_it() {
        fn reference(s: &str) -> Result<(&str, &str), &'static str> {
            let mut parts = s.trim_ascii().splitn(3, '/').map(str::trim_ascii);
            let (name, version, rest) = (parts.next(), parts.next(), parts.next());
            if !name.is_some_and(|n| n.eq_ignore_ascii_case("SIP")) || version != Some("2.0") {
                return Err("protocol is not SIP/2.0");
            }
            rest.ok_or("no transport")?
                .split_once([' ', '\t'])
                .ok_or("no sent-by")
        }
        let pieces = [
            "SIP", "sip", " SIP", "SIPS", "2.0", "2.0 ", "3.0", "UDP", "/", " / ", " ", "\t", "h",
            "",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        for e in ["", " h", "/", "\th:1"] {
                            let s = format!("{a}{b}{c}{d}{e}");
                            assert_eq!(sent_protocol(&s), reference(&s), "{s:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn name_addr() {
        let n = NameAddr::parse(
            r#""Bob \"B\" Smith" <sip:bob@biloxi.example;transport=tcp>;tag=a6c85cf"#,
        )
        .unwrap();
        assert_eq!(n.display.as_deref(), Some("Bob \"B\" Smith"));
        assert_eq!(n.tag(), Some("a6c85cf"));
        assert_eq!(n.uri.as_sip().unwrap().transport(), Some("tcp"));
        let n = NameAddr::parse("sip:+918047112233@10.0.0.1;tag=x").unwrap();
        assert_eq!(n.tag(), Some("x"));
        assert_eq!(n.uri.to_string(), "sip:+918047112233@10.0.0.1");
        let n = NameAddr::parse("Alice <tel:+918047112233>").unwrap();
        assert_eq!(n.display.as_deref(), Some("Alice"));
        assert!(NameAddr::parse("<sip:a@b").is_err());
    }

    #[test]
    fn cseq() {
        assert_eq!(CSeq::parse("314159 INVITE").unwrap().seq, 314159);
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("4294967295 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
    }
}
