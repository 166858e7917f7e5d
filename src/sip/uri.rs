//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), including IPv6 references.

use compact_str::CompactString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::ParseError;

/// A URI scheme callflow understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:` (TLS all the way).
    Sips,
}

/// The host part of a SIP URI or a Via's sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, kept as written (compare it case-insensitively).
    Domain(CompactString),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address, written in brackets.
    Ipv6(Ipv6Addr),
}

impl Host {
    /// Parses a host: a domain name, an IPv4 address or a bracketed IPv6 reference.
    pub fn parse(s: &str) -> Result<Host, ParseError> {
        let bad = || ParseError::Uri(format!("bad host '{}'", s.escape_default()));
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or_else(bad)?;
            return inner.parse().map(Host::Ipv6).map_err(|_| bad());
        }
        if let Some(v4) = parse_ipv4(s) {
            return Ok(Host::Ipv4(v4));
        }
        let ok = !s.is_empty()
            && s.len() <= 253
            && split_byte(s, b'.').enumerate().all(|(i, label)| {
                // A fully qualified name may end with a dot (an empty last label).
                (!label.is_empty() || i > 0 && s.ends_with('.'))
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if ok {
            Ok(Host::Domain(s.into()))
        } else {
            Err(bad())
        }
    }

    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ipv4(a) => Some(IpAddr::V4(*a)),
            Host::Ipv6(a) => Some(IpAddr::V6(*a)),
            Host::Domain(_) => None,
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Host::Ipv4(a),
            IpAddr::V6(a) => Host::Ipv6(a),
        }
    }
}

impl Host {
    /// Writes the host as [`Display`](fmt::Display) does, into any writer: a
    /// string being built skips the `Formatter`.
    pub fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write_ipv4(f, *a),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// Dotted-decimal IPv4, as `Ipv4Addr`'s `FromStr` reads it (four octets of one to
/// three digits, no leading zero, none above 255), in one pass over the bytes: hosts
/// are read in several headers of every message, and the standard parser's general
/// machinery cost about four times as much.
fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    let b = s.as_bytes();
    // "0.0.0.0" to "255.255.255.255": a domain name is mostly turned away here.
    if !(7..=15).contains(&b.len()) {
        return None;
    }
    let (mut octets, mut at) = ([0u8; 4], 0);
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            (b.get(at) == Some(&b'.')).then_some(())?;
            at += 1;
        }
        // One to three digits, without a leading zero, at most 255.
        let (start, mut n) = (at, 0u32);
        while at < b.len() && at - start < 3 && b[at].is_ascii_digit() {
            n = n * 10 + u32::from(b[at] - b'0');
            at += 1;
        }
        if at == start || at - start > 1 && b[start] == b'0' {
            return None;
        }
        *octet = u8::try_from(n).ok()?;
    }
    (at == b.len()).then_some(Ipv4Addr::from(octets))
}

/// Writes `n` in decimal. Ports, IPv4 octets and CSeq numbers are written for
/// every message; this skips the formatting machinery (`write!` of an integer cost
/// about ten times as much) and the UTF-8 check a buffer of digits needs.
pub fn write_decimal(f: &mut impl fmt::Write, n: u32) -> fmt::Result {
    f.write_str(itoa::Buffer::new().format(n))
}

/// Writes an IPv4 address in dotted decimal (what `Ipv4Addr`'s `Display` writes),
/// built in a buffer on the stack and written at once: hosts are written into
/// several headers of every message, and seven writes through a `Formatter` cost
/// about five times as much.
fn write_ipv4(f: &mut impl fmt::Write, a: Ipv4Addr) -> fmt::Result {
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in a.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        let (hundreds, tens, ones) = (octet / 100, octet / 10 % 10, octet % 10);
        if hundreds > 0 {
            buf[len] = b'0' + hundreds;
            len += 1;
        }
        if hundreds > 0 || tens > 0 {
            buf[len] = b'0' + tens;
            len += 1;
        }
        buf[len] = b'0' + ones;
        len += 1;
    }
    // Digits and dots only: always UTF-8.
    f.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
}

/// `s.split_once(c)` for an ASCII `c`, by a plain scan of the bytes: a URI's or a
/// header line's parts are short, and a `char` pattern's searcher costs more to set
/// up than the scan. Splitting at an ASCII byte always falls on a char boundary.
pub fn split_once_byte(s: &str, c: u8) -> Option<(&str, &str)> {
    let at = s.bytes().position(|b| b == c)?;
    Some((&s[..at], &s[at + 1..]))
}

/// `s.split(c)` for an ASCII `c`, each cut found with `memchr`, which costs a
/// fraction of `str::split`'s searcher on pieces of a few dozen bytes (BENCHMARKS.md,
/// session 11). Cutting at an ASCII byte always falls on a char boundary.
pub fn split_byte(s: &str, c: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let text = rest?;
        match memchr::memchr(c, text.as_bytes()) {
            Some(i) => {
                rest = text.get(i + 1..);
                text.get(..i)
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// `s.rsplit_once(c)` for an ASCII `c`, as [`split_once_byte`].
pub fn rsplit_once_byte(s: &str, c: u8) -> Option<(&str, &str)> {
    let at = s.bytes().rposition(|b| b == c)?;
    Some((&s[..at], &s[at + 1..]))
}

/// Splits `host[:port]`, with IPv6 references in brackets.
pub fn split_host_port(s: &str) -> Result<(Host, Option<u16>), ParseError> {
    let (host, port) = if s.starts_with('[') {
        let end = s
            .find(']')
            .ok_or_else(|| ParseError::Uri(format!("unclosed '[' in '{}'", s.escape_default())))?;
        let rest = &s[end + 1..];
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':').ok_or_else(|| {
                ParseError::Uri(format!("junk after ']' in '{}'", s.escape_default()))
            })?),
        };
        (&s[..=end], port)
    } else {
        match rsplit_once_byte(s, b':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            parse_port(p)
                .filter(|p| *p > 0)
                .ok_or_else(|| ParseError::Uri(format!("bad port '{}'", p.escape_default())))?,
        ),
    };
    Ok((Host::parse(host)?, port))
}

/// A port number as `u16`'s `FromStr` reads it: up to five digits are added up
/// here (a port is read in several headers of every message, and the standard
/// parser's general machinery cost three times as much); anything else, such as a
/// leading `+`, goes to the standard parser.
fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return p.parse().ok();
    }
    let n = p.bytes().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok()
}

/// A `;name[=value]` parameter. Both parts are short strings kept inline (up to 24
/// bytes: `tag`, `branch`, `transport`, their values) so that parsing, cloning and
/// dropping a URI or a Via does not allocate for each parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Param {
    /// The name, as written.
    pub name: CompactString,
    /// The value, if any.
    pub value: Option<CompactString>,
}

/// A URI's, a name-addr's or a Via's parameters: the first two inline (a `tag`, a
/// `branch` and `rport`, a `transport` and `lr`), so that parsing or cloning one
/// allocates nothing for them.
pub type Params = smallvec::SmallVec<[Param; 2]>;

/// Parses `;a=b;c` (the leading `;` already removed) into parameters.
pub fn parse_params(s: &str) -> Result<Params, ParseError> {
    if s.is_empty() {
        return Ok(Params::new());
    }
    // A plain loop: collecting `Result`s into the small vector went through the
    // iterator adapters' shunt and size hints for every parameter.
    let mut params = Params::new();
    for p in split_byte(s, b';') {
        let (name, value) = match split_once_byte(p, b'=') {
            Some((n, v)) => (n.trim_ascii(), Some(CompactString::from(v.trim_ascii()))),
            None => (p.trim_ascii(), None),
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(ParseError::Uri(format!(
                "bad parameter '{}'",
                p.escape_default()
            )));
        }
        params.push(Param {
            name: name.into(),
            value,
        });
    }
    Ok(params)
}

/// Looks up a parameter by name, case-insensitively: `Some(None)` when it has no value.
pub fn find_param<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .map(|p| p.value.as_deref())
}

/// Writes parameters as `;a=b;c`.
pub fn write_params(f: &mut impl fmt::Write, params: &[Param]) -> fmt::Result {
    for p in params {
        f.write_str(";")?;
        f.write_str(&p.name)?;
        if let Some(v) = &p.value {
            f.write_str("=")?;
            f.write_str(v)?;
        }
    }
    Ok(())
}

/// Whether `b` is an RFC 3261 `token` character.
pub fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

/// Which bytes [`is_token_byte`] admits, one entry per byte: header and parameter
/// names are checked byte by byte in every message.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    table
};

/// A SIP or SIPS URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipUri {
    /// `sip` or `sips`.
    pub scheme: Scheme,
    /// The user part (with any `:password`), as written (escaped).
    pub user: Option<CompactString>,
    /// The host.
    pub host: Host,
    /// The port, if written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp`, `;lr`, …).
    pub params: Params,
    /// URI headers after `?`, as written.
    pub headers: Option<String>,
}

impl SipUri {
    /// A `sip:` URI for `user@host:port`.
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            scheme: Scheme::Sip,
            user: user.map(CompactString::from),
            host,
            port,
            params: Params::new(),
            headers: None,
        }
    }

    /// A URI parameter by name: `Some(None)` when present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// The `transport` parameter, as written (its case does not matter).
    pub fn transport(&self) -> Option<&str> {
        self.param("transport").flatten()
    }
}

/// A tel URI (RFC 3966): a number and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TelUri {
    /// The number, e.g. `+918047112233`.
    pub number: String,
    /// Parameters such as `phone-context`.
    pub params: Params,
}

/// A URI in a Request-URI, a name-addr or a Refer-To.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// `tel:`.
    Tel(TelUri),
    /// Any other absolute URI (`urn:…`, `http:…`), kept as written: a Request-URI
    /// like this is answered 416 Unsupported URI Scheme.
    Other(String),
}

impl Uri {
    /// Parses a URI. Schemes other than sip, sips and tel are refused.
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let s = s.trim_ascii();
        // Printable ASCII, as URIs nearly always are, holds neither. One pass without
        // an early exit, which the compiler does many bytes at a time.
        if !s.bytes().fold(true, |ok, b| ok & (b > b' ') & (b < 0x7f))
            && let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ParseError::Uri(format!("URI contains {:?}", c)));
        }
        let (scheme, rest) = split_once_byte(s, b':')
            .ok_or_else(|| ParseError::Uri(format!("no scheme in '{}'", s.escape_default())))?;
        let scheme = match scheme {
            name if name.eq_ignore_ascii_case("sip") => Scheme::Sip,
            name if name.eq_ignore_ascii_case("sips") => Scheme::Sips,
            name if name.eq_ignore_ascii_case("tel") => return parse_tel(rest).map(Uri::Tel),
            other => {
                let valid = other.starts_with(|c: char| c.is_ascii_alphabetic())
                    && other
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                    && !rest.is_empty();
                return if valid {
                    Ok(Uri::Other(s.to_string()))
                } else {
                    Err(ParseError::UnsupportedScheme(
                        other.to_ascii_lowercase().escape_default().to_string(),
                    ))
                };
            }
        };
        parse_sip(scheme, rest).map(Uri::Sip)
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Tel(_) | Uri::Other(_) => None,
        }
    }

    /// The user part of a SIP URI, or the number of a tel URI.
    pub fn user(&self) -> Option<&str> {
        match self {
            Uri::Sip(u) => u.user.as_deref(),
            Uri::Tel(t) => Some(&t.number),
            Uri::Other(_) => None,
        }
    }
}

fn parse_sip(scheme: Scheme, rest: &str) -> Result<SipUri, ParseError> {
    let (userinfo, host_start, semi, end) = sip_parts(rest);
    let headers = (end < rest.len()).then(|| rest[end + 1..].to_string());
    let userinfo = match userinfo {
        Some(0) => return Err(ParseError::Uri("empty user part".into())),
        Some(at) => Some(CompactString::from(&rest[..at])),
        None => None,
    };
    let (hostport, params) = match semi {
        Some(semi) => (&rest[host_start..semi], parse_params(&rest[semi + 1..end])?),
        None => (&rest[host_start..end], Params::new()),
    };
    let (host, port) = split_host_port(hostport)?;
    Ok(SipUri {
        scheme,
        user: userinfo,
        host,
        port,
        params,
        headers,
    })
}

/// Where a SIP URI's parts (after `sip:`) are cut, found in one pass over the bytes
/// (URIs are read in several headers of every message; a scan per separator cost
/// twice as much): the userinfo's end (the last `@` before any `?`), the host's
/// start, the first `;` after the host starts (the parameters), and the end of all
/// that (the first `?`, or the length).
fn sip_parts(rest: &str) -> (Option<usize>, usize, Option<usize>, usize) {
    let (mut at, mut semi) = (None, None);
    for (i, b) in rest.bytes().enumerate() {
        match b {
            b'?' => return (at, at.map_or(0, |a| a + 1), semi, i),
            b'@' => (at, semi) = (Some(i), None),
            b';' if semi.is_none() => semi = Some(i),
            _ => {}
        }
    }
    (at, at.map_or(0, |a| a + 1), semi, rest.len())
}

fn parse_tel(rest: &str) -> Result<TelUri, ParseError> {
    let (number, params) = match rest.split_once(';') {
        Some((n, p)) => (n, parse_params(p)?),
        None => (rest, Params::new()),
    };
    let digits = number.strip_prefix('+').unwrap_or(number);
    let ok = !digits.is_empty()
        && digits
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b"*#-.()".contains(&b));
    if !ok {
        return Err(ParseError::Uri(format!(
            "bad tel number '{}'",
            number.escape_default()
        )));
    }
    Ok(TelUri {
        number: number.to_string(),
        params,
    })
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl SipUri {
    /// Writes the URI as [`Display`](fmt::Display) does, into any writer: a message
    /// being serialised skips the `Formatter`.
    pub fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        f.write_str(match self.scheme {
            Scheme::Sip => "sip:",
            Scheme::Sips => "sips:",
        })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            f.write_str("@")?;
        }
        self.host.write_to(f)?;
        if let Some(p) = self.port {
            f.write_str(":")?;
            write_decimal(f, u32::from(p))?;
        }
        write_params(f, &self.params)?;
        if let Some(h) = &self.headers {
            f.write_str("?")?;
            f.write_str(h)?;
        }
        Ok(())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl super::header::WriteValue for Uri {
    fn write_value(&self, f: &mut impl fmt::Write) -> fmt::Result {
        self.write_to(f)
    }
}

impl Uri {
    /// Writes the URI as [`Display`](fmt::Display) does, into any writer.
    pub fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.write_to(f),
            Uri::Tel(t) => {
                write!(f, "tel:{}", t.number)?;
                write_params(f, &t.params)
            }
            Uri::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token table admits exactly RFC 3261's token characters.
    #[test]
    fn token_bytes_are_rfc_3261s() {
        for b in 0..=255u8 {
            let rule = b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
            assert_eq!(is_token_byte(b), rule, "byte {b}");
        }
    }

    /// The IPv4 reader accepts and rejects what the standard library's parser does,
    /// on hand-picked edge cases and on every string of up to five characters from
    /// the bytes that matter.
    /// The port reader agrees with `u16`'s `FromStr`, over every short string of
    /// digits, signs and letters and at the edges of the range.
    #[test]
    fn ports_are_read_as_the_standard_parser_reads_them() {
        let agree = |p: &str| assert_eq!(parse_port(p), p.parse::<u16>().ok(), "{p:?}");
        [
            "65535",
            "65536",
            "99999",
            "00000",
            "000065535",
            "+65535",
            "1 ",
            "",
        ]
        .into_iter()
        .for_each(agree);
        crate::sip::words(&['0', '1', '5', '6', '9', '+', '-', 'a'], 6)
            .iter()
            .for_each(|w| agree(w));
    }

    /// One pass cuts a SIP URI where splitting at the first `?`, then the last `@`,
    /// then the first `;` cuts it, over every short string of the separators.
    #[test]
    fn sip_parts_cut_where_the_splits_cut() {
        for w in crate::sip::words(&['a', '@', '?', ';', ':'], 7) {
            let (before, end) = match w.split_once('?') {
                Some((b, _)) => (b, b.len()),
                None => (w.as_str(), w.len()),
            };
            let (at, host) = match before.rsplit_once('@') {
                Some((u, _)) => (Some(u.len()), u.len() + 1),
                None => (None, 0),
            };
            let semi = before[host..].find(';').map(|i| i + host);
            assert_eq!(sip_parts(&w), (at, host, semi, end), "{w:?}");
        }
    }

    #[test]
    fn ipv4_is_written_as_the_standard_library_writes_it() {
        for n in 0..=255u8 {
            for a in [
                Ipv4Addr::new(n, 0, 255, n),
                Ipv4Addr::new(255, n, n, 9),
                Ipv4Addr::new(n, n, n, n),
            ] {
                let mut ours = String::new();
                write_ipv4(&mut ours, a).unwrap();
                assert_eq!(ours, a.to_string());
            }
        }
    }

    #[test]
    fn ipv4_is_read_as_the_standard_parser_reads_it() {
        let agree = |s: &str| assert_eq!(parse_ipv4(s), s.parse::<Ipv4Addr>().ok(), "{s:?}");
        for s in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.",
            ".1.2.3.4",
            "1..2.3",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3.0004",
            "1.2.3.4a",
            "+1.2.3.4",
            "1.2.3.-4",
            "999.1.1.1",
            "1.2.3.4 ",
            "١.٢.٣.٤",
            "example.com",
        ] {
            agree(s);
        }
        crate::sip::words(&['0', '1', '2', '5', '9', '.', 'a'], 5)
            .iter()
            .for_each(|w| agree(w));
        // Long enough for four octets.
        crate::sip::words(&['0', '1', '2', '.'], 9)
            .iter()
            .for_each(|w| agree(w));
        for n in 0..=300u16 {
            agree(&format!("10.{n}.0.{n}"));
        }
    }

    /// The byte splitters split as `split_once` and `rsplit_once` do, non-ASCII
    /// text around the separator included.
    #[test]
    fn byte_splits_agree_with_str_splits() {
        for s in [
            "",
            ":",
            "a:b",
            "a:b:c",
            "ab",
            "é:ü",
            ":é",
            "é:",
            "sip:bob@h:5060",
        ] {
            assert_eq!(split_once_byte(s, b':'), s.split_once(':'));
            assert_eq!(rsplit_once_byte(s, b':'), s.rsplit_once(':'));
            assert_eq!(
                split_byte(s, b':').collect::<Vec<_>>(),
                s.split(':').collect::<Vec<_>>()
            );
        }
    }

    /// The digit writers agree with the standard formatting at the edges and
    /// across the range.
    #[test]
    fn decimals_and_ipv4_written_as_std_writes_them() {
        let samples = [
            0u32,
            1,
            9,
            10,
            99,
            100,
            5060,
            65535,
            2_147_483_647,
            u32::MAX,
        ];
        for n in samples.into_iter().chain((0..5000).map(|i| i * 858_993)) {
            let mut s = String::new();
            write_decimal(&mut s, n).unwrap();
            assert_eq!(s, n.to_string());
        }
        for a in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.0.10.100",
        ] {
            let host = Host::Ipv4(a.parse().unwrap());
            assert_eq!(host.to_string(), a);
        }
    }

    #[test]
    fn sip_uris_round_trip() {
        for s in [
            "sip:alice@atlanta.example.com",
            "sip:+918047112233@10.0.0.1:5060;transport=tcp;lr",
            "sips:bot.partner.example.com:5061",
            "sip:[2001:db8::1]:5060;transport=udp",
            "sip:alice:secret@host.example?subject=hi",
            "tel:+918047112233;phone-context=example.com",
        ] {
            let u = Uri::parse(s).unwrap();
            assert_eq!(u.to_string(), s);
        }
    }

    #[test]
    fn parts() {
        let Uri::Sip(u) = Uri::parse("SIP:bob@[::1]:5070;Transport=TCP").unwrap() else {
            panic!()
        };
        assert_eq!(u.host, Host::Ipv6(Ipv6Addr::LOCALHOST));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport(), Some("TCP"));
        let t = Uri::parse("tel:+918047112233").unwrap();
        assert_eq!(t.user(), Some("+918047112233"));
    }

    #[test]
    fn bad_uris() {
        for s in [
            "alice",
            "1http://x",
            "sip:",
            "sip:@host",
            "sip:host:0",
            "sip:host:70000",
            "sip:[::1",
            "sip:[nope]",
            "sip:a b",
            "tel:",
            "sip:host;=x",
        ] {
            assert!(Uri::parse(s).is_err(), "{s}");
        }
    }
}

#[cfg(test)]
mod other_scheme_tests {
    use super::*;

    #[test]
    fn other_absolute_uris_are_kept() {
        assert_eq!(
            Uri::parse("urn:service:sos"),
            Ok(Uri::Other("urn:service:sos".into()))
        );
        assert_eq!(
            Uri::parse("http://a").map(|u| u.to_string()),
            Ok("http://a".into())
        );
        assert!(Uri::parse("1x:y").is_err());
    }
}
