//! Header names: the ones callflow reads by type, their compact forms (RFC 3261 §7.3.3,
//! RFC 3515, RFC 6665), and every other name kept as written.

use bytestring::ByteString;
use compact_str::CompactString;
use std::cell::RefCell;
use std::fmt;

/// A typed header value (a URI, a name-addr, a Via) that writes itself as text into
/// any writer: a message being built skips the `Formatter` and its dynamic calls.
pub trait WriteValue {
    /// Writes the value as it appears on the wire (as its `Display` does).
    fn write_value(&self, out: &mut impl fmt::Write) -> fmt::Result;
}

/// A typed header written as a header value, in one allocation at most: written into
/// a buffer this thread reuses, then copied once (inline, without allocating, when it
/// fits in 24 bytes). `to_string()` grows its string three or four times on the way
/// to a 60-byte name-addr.
pub fn value_of(typed: &impl WriteValue) -> CompactString {
    thread_local! {
        static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut s) => {
            s.clear();
            let _ = typed.write_value(&mut *s);
            CompactString::from(s.as_str())
        }
        // Called from inside a `write_value` of the value being written: no scratch
        // to share.
        Err(_) => {
            let mut s = CompactString::default();
            let _ = typed.write_value(&mut s);
            s
        }
    })
}

/// A header name. Known names compare by identity whatever their spelling or compact
/// form on the wire; other names compare case-insensitively.
#[derive(Debug, Clone, Eq)]
pub enum Name {
    /// `Via` (`v`).
    Via,
    /// `From` (`f`).
    From,
    /// `To` (`t`).
    To,
    /// `Call-ID` (`i`).
    CallId,
    /// `CSeq`.
    CSeq,
    /// `Contact` (`m`).
    Contact,
    /// `Route`.
    Route,
    /// `Record-Route`.
    RecordRoute,
    /// `Max-Forwards`.
    MaxForwards,
    /// `Content-Length` (`l`).
    ContentLength,
    /// `Content-Type` (`c`).
    ContentType,
    /// `Content-Encoding` (`e`).
    ContentEncoding,
    /// `Supported` (`k`).
    Supported,
    /// `Require`.
    Require,
    /// `Allow`.
    Allow,
    /// `Subject` (`s`).
    Subject,
    /// `Refer-To` (`r`).
    ReferTo,
    /// `Referred-By` (`b`).
    ReferredBy,
    /// `Event` (`o`).
    Event,
    /// `Subscription-State`.
    SubscriptionState,
    /// `Retry-After`.
    RetryAfter,
    /// `User-Agent`.
    UserAgent,
    /// `Server`.
    Server,
    /// `Reason`.
    Reason,
    /// Any other header, as written.
    Other(Box<str>),
}

/// Defines [`KNOWN`] and [`Name::known_str`] from one list: each known name with its
/// canonical spelling and compact form.
macro_rules! known_names {
    ($($name:ident: $full:literal $(/ $compact:literal)?;)*) => {
        /// Canonical spelling, compact form, and the name, for every known header.
        const KNOWN: &[(&str, Option<&str>, Name)] =
            &[$(($full, known_names!(@compact $($compact)?), Name::$name)),*];

        impl Name {
            /// The canonical spelling of a known name (a match, not a search: it is
            /// read for every header written).
            fn known_str(&self) -> Option<&'static str> {
                match self {
                    $(Name::$name => Some($full),)*
                    Name::Other(_) => None,
                }
            }
        }
    };
    (@compact) => { None };
    (@compact $c:literal) => { Some($c) };
}

known_names! {
    Via: "Via" / "v";
    From: "From" / "f";
    To: "To" / "t";
    CallId: "Call-ID" / "i";
    CSeq: "CSeq";
    Contact: "Contact" / "m";
    Route: "Route";
    RecordRoute: "Record-Route";
    MaxForwards: "Max-Forwards";
    ContentLength: "Content-Length" / "l";
    ContentType: "Content-Type" / "c";
    ContentEncoding: "Content-Encoding" / "e";
    Supported: "Supported" / "k";
    Require: "Require";
    Allow: "Allow";
    Subject: "Subject" / "s";
    ReferTo: "Refer-To" / "r";
    ReferredBy: "Referred-By" / "b";
    Event: "Event" / "o";
    SubscriptionState: "Subscription-State";
    RetryAfter: "Retry-After";
    UserAgent: "User-Agent";
    Server: "Server";
    Reason: "Reason";
}

/// The longest full name looked up by [`FULL_BY_LENGTH_AND_INITIAL`]; longer ones
/// (`Subscription-State`) are compared one by one.
const FOLDED_MAX: usize = 16;

/// `b` folded without a branch: bit 6 (set from `@` up) sets bit 5, which lowercases
/// `A`-`Z` (and moves `@`, `[`…`_` to the lower row); below `@` nothing changes. A
/// known name holds only letters and `-`, so a byte folds to one of its bytes exactly
/// when it equals that byte in any case: below `@` a byte stays itself, and from `@`
/// up the folded byte is a given lowercase letter only for that letter's two cases.
const fn fold(b: u8) -> u8 {
    b | ((b >> 1) & 0x20)
}

/// The bytes of a name of up to [`FOLDED_MAX`] bytes folded by [`fold`], packed
/// into one integer (the rest zero): one comparison per candidate. The bytes are
/// folded all at once: shifting the integer right by one moves each byte's bit 6
/// to its bit 5, and the mask keeps only those.
const fn folded(s: &[u8]) -> u128 {
    let mut bytes = [0u8; FOLDED_MAX];
    let mut i = 0;
    while i < s.len() && i < FOLDED_MAX {
        bytes[i] = s[i];
        i += 1;
    }
    let key = u128::from_le_bytes(bytes);
    key | ((key >> 1) & u128::from_le_bytes([0x20; FOLDED_MAX]))
}

/// Each known full name [`folded`] (zero for the longer ones, never compared).
const KNOWN_FOLDED: [u128; KNOWN.len()] = {
    let mut keys = [0u128; KNOWN.len()];
    let mut i = 0;
    while i < KNOWN.len() {
        let full = KNOWN[i].0.as_bytes();
        if full.len() <= FOLDED_MAX {
            keys[i] = folded(full);
        }
        i += 1;
    }
    keys
};

/// Each known full name's place in `KNOWN` plus one, looked up by its length and its
/// folded first letter (`fold(initial) & 31`), and for names sharing both, the
/// place of the next one (`Call-ID` and `Contact`): header names are read in every
/// line of every message, and comparing each with every known name of its length in
/// any case cost about a tenth of reading a message.
const FULL_BY_LENGTH_AND_INITIAL: ([[u8; 32]; FOLDED_MAX + 1], [u8; KNOWN.len()]) = {
    let mut first = [[0u8; 32]; FOLDED_MAX + 1];
    let mut next = [0u8; KNOWN.len()];
    let mut i = KNOWN.len();
    while i > 0 {
        i -= 1;
        let full = KNOWN[i].0.as_bytes();
        if full.len() <= FOLDED_MAX {
            let slot = &mut first[full.len()][(fold(full[0]) & 31) as usize];
            next[i] = *slot;
            *slot = i as u8 + 1;
        }
    }
    (first, next)
};

/// The known full name `s` spells in any case.
fn find_full(s: &[u8]) -> Option<&'static (&'static str, Option<&'static str>, Name)> {
    let (Some(&initial), true) = (s.first(), s.len() <= FOLDED_MAX) else {
        return KNOWN
            .iter()
            .find(|(full, _, _)| full.len() == s.len() && s.eq_ignore_ascii_case(full.as_bytes()));
    };
    let (first, next) = &FULL_BY_LENGTH_AND_INITIAL;
    let key = folded(s);
    let mut at = first[s.len()][usize::from(fold(initial) & 31)];
    while let Some(i) = usize::from(at).checked_sub(1) {
        if KNOWN_FOLDED.get(i) == Some(&key) {
            return KNOWN.get(i);
        }
        at = next[i];
    }
    None
}

impl Name {
    /// The name for `s`, a full or compact name in any case.
    pub fn parse(s: &str) -> Name {
        // Compact forms are one letter, full names longer: only one kind is compared.
        let found = if s.len() == 1 {
            KNOWN
                .iter()
                .find(|(_, compact, _)| compact.is_some_and(|c| s.eq_ignore_ascii_case(c)))
        } else {
            find_full(s.as_bytes())
        };
        found.map_or_else(|| Name::Other(s.into()), |(_, _, name)| name.clone())
    }

    /// The canonical spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Name::Other(s) => s,
            known => known.known_str().unwrap_or_default(),
        }
    }

    /// Whether the header may carry several comma-separated values (RFC 3261 §7.3.1)
    /// that callflow reads one by one.
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            Name::Via
                | Name::Contact
                | Name::Route
                | Name::RecordRoute
                | Name::Require
                | Name::Supported
                | Name::Allow
        )
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Name::Other(a), Name::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header line: a name and its value (unfolded, trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name.
    pub name: Name,
    /// The value.
    pub value: Value,
}

/// A header's value: a slice of the copy of the received head it came in (no
/// allocation or copy of its own; that copy lives while any of its values does), or one that
/// callflow wrote (inline when short: a CSeq, a Call-ID, Max-Forwards, a Content-Type
/// need no allocation of their own). Either way, a string of one line: the parser
/// and the setters see to that.
#[derive(Clone)]
pub enum Value {
    /// Part of a received message.
    Received(ByteString),
    /// Written by callflow.
    Written(CompactString),
}

impl Value {
    /// The value as text.
    pub fn as_str(&self) -> &str {
        match self {
            Value::Received(s) => s,
            Value::Written(s) => s,
        }
    }

    /// The value as a string callflow may change.
    pub fn into_written(self) -> CompactString {
        match self {
            Value::Received(s) => CompactString::from(&*s),
            Value::Written(s) => s,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Written(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Written(s.into())
    }
}

impl From<CompactString> for Value {
    fn from(s: CompactString) -> Value {
        Value::Written(s)
    }
}

impl std::ops::Deref for Value {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Two values are equal when they say the same, wherever they were made.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Value {}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Splits a list header's value at commas that are outside quotes and angle brackets.
pub fn split_list(value: &str) -> Vec<&str> {
    Values::new(value, true).collect()
}

/// The values of one header line: for a list header, split at commas outside
/// quotes and angle brackets, trimmed, empty ones skipped; for any other header, the
/// whole value once (even empty). Allocates nothing.
pub struct Values<'a> {
    /// What is left of a list header's line.
    rest: &'a str,
    /// Another header's value, until it is taken.
    whole: Option<&'a str>,
}

impl<'a> Values<'a> {
    /// The values of `value`; `list` says whether commas separate them.
    pub fn new(value: &'a str, list: bool) -> Values<'a> {
        match list {
            true => Values {
                rest: value,
                whole: None,
            },
            false => Values {
                rest: "",
                whole: Some(value),
            },
        }
    }

    /// Where the first value of `s` ends (a separating comma, or the end): a comma
    /// outside quotes and angle brackets; a backslash in quotes escapes what follows.
    /// Every byte that matters is ASCII, which no byte of a multi-byte character is,
    /// so `memchr` jumps from one to the next instead of decoding each character.
    fn first_end(s: &str) -> usize {
        let b = s.as_bytes();
        let (mut i, mut in_angle) = (0, false);
        loop {
            let rest = &b[i..];
            let Some(at) = (if in_angle {
                memchr::memchr2(b'"', b'>', rest)
            } else {
                memchr::memchr3(b',', b'"', b'<', rest)
            }) else {
                return b.len();
            };
            i += at;
            match b[i] {
                b',' => return i,
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                _ => match Self::quote_end(&b[i + 1..]) {
                    Some(end) => i += end + 1,
                    None => return b.len(),
                },
            }
            i += 1;
        }
    }

    /// In a quoted string (after its opening quote), where the closing quote is.
    fn quote_end(b: &[u8]) -> Option<usize> {
        let mut i = 0;
        loop {
            i += memchr::memchr2(b'"', b'\\', &b[i..])?;
            if b[i] == b'"' {
                return Some(i);
            }
            i += 2;
            if i >= b.len() {
                return None;
            }
        }
    }
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if let Some(whole) = self.whole.take() {
            return Some(whole);
        }
        while !self.rest.is_empty() {
            let end = Self::first_end(self.rest);
            let value = self.rest[..end].trim_ascii();
            self.rest = self.rest.get(end + 1..).unwrap_or("");
            if !value.is_empty() {
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table finds a full name exactly where comparing it in any case with every
    /// known name finds it: each known name in three cases, and with each of its
    /// bytes replaced by every byte value in turn.
    #[test]
    fn full_names_are_found_as_comparing_finds_them() {
        let by_comparing = |s: &[u8]| {
            KNOWN
                .iter()
                .position(|(full, _, _)| s.eq_ignore_ascii_case(full.as_bytes()))
        };
        let by_table = |s: &[u8]| {
            find_full(s).and_then(|f| KNOWN.iter().position(|(full, _, _)| *full == f.0))
        };
        for (full, _, _) in KNOWN {
            for spelling in [full.to_string(), full.to_lowercase(), full.to_uppercase()] {
                let mut bytes = spelling.into_bytes();
                assert_eq!(by_table(&bytes), by_comparing(&bytes), "{bytes:?}");
                for i in 0..bytes.len() {
                    let kept = bytes[i];
                    for b in 0..=255u8 {
                        bytes[i] = b;
                        assert_eq!(by_table(&bytes), by_comparing(&bytes), "{bytes:?}");
                    }
                    bytes[i] = kept;
                }
                bytes.push(b'x');
                assert_eq!(by_table(&bytes), by_comparing(&bytes), "{bytes:?}");
            }
        }
        assert_eq!(by_table(b""), None);
    }

    /// Where a value ends is where the character-by-character reading of the
    /// rule ends it, for every string of up to six characters from those that
    /// matter (and a multi-byte one).
    #[test]
    fn values_end_where_the_rule_ends_them() {
        fn by_chars(s: &str) -> usize {
            let (mut in_quotes, mut in_angle, mut escaped) = (false, false, false);
            for (i, c) in s.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if in_quotes => escaped = true,
                    '"' => in_quotes = !in_quotes,
                    '<' if !in_quotes => in_angle = true,
                    '>' if !in_quotes => in_angle = false,
                    ',' if !in_quotes && !in_angle => return i,
                    _ => {}
                }
            }
            s.len()
        }
        for w in crate::sip::words(&[',', '"', '<', '>', '\\', 'a', 'é'], 6) {
            assert_eq!(Values::first_end(&w), by_chars(&w), "{w:?}");
        }
    }

    #[test]
    fn compact_and_case() {
        assert_eq!(Name::parse("v"), Name::Via);
        assert_eq!(Name::parse("CALL-id"), Name::CallId);
        assert_eq!(Name::parse("i"), Name::CallId);
        assert_eq!(Name::parse("X-Foo"), Name::parse("x-foo"));
        assert_eq!(Name::parse("l").as_str(), "Content-Length");
        // Every known name reads back as its canonical spelling, in any case and in
        // its compact form.
        for (full, compact, name) in KNOWN {
            assert_eq!(name.as_str(), *full);
            assert_eq!(Name::parse(&full.to_ascii_uppercase()).as_str(), *full);
            if let Some(c) = compact {
                assert_eq!(Name::parse(c), *name);
                assert_eq!(Name::parse(&c.to_ascii_uppercase()), *name);
            }
        }
        assert_eq!(Name::parse("X-Foo").as_str(), "X-Foo");
    }

    #[test]
    fn lists() {
        assert_eq!(
            split_list("<sip:a;x=1,2>, \"B, b\" <sip:b>,sip:c"),
            vec!["<sip:a;x=1,2>", "\"B, b\" <sip:b>", "sip:c"]
        );
        assert_eq!(split_list(" , a,, b ,"), vec!["a", "b"]);
        let whole: Vec<&str> = Values::new("x, y", false).collect();
        assert_eq!(whole, vec!["x, y"], "not a list: the whole value");
        assert_eq!(Values::new("", false).collect::<Vec<_>>(), vec![""]);
        assert_eq!(Values::new("", true).count(), 0);
    }
}
