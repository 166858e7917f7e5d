//! A webhook request's parameters, form-encoded (`application/x-www-form-urlencoded`,
//! as a URL's query is) as each is added: one buffer per request, where a list of
//! name and value strings cost two allocations a parameter and an encoding pass.

use std::fmt::{self, Write};

/// Parameters for a webhook's URL, already encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(String);

impl Query {
    /// An empty query with room for `bytes` of encoded text.
    pub fn with_capacity(bytes: usize) -> Query {
        Query(String::with_capacity(bytes))
    }

    /// Adds `name=value`.
    pub fn push(&mut self, name: &str, value: &str) -> &mut Query {
        self.name(name);
        encode_into(&mut self.0, value);
        self
    }

    /// Adds `name=` and `n` in decimal (digits need no encoding; `itoa`, not the
    /// formatting machinery, writes them).
    pub fn push_number(&mut self, name: &str, n: u64) -> &mut Query {
        self.name(name);
        self.0.push_str(itoa::Buffer::new().format(n));
        self
    }

    /// Adds `name=` and `value` as it displays, encoded as it is written.
    pub fn push_display(&mut self, name: &str, value: &dyn fmt::Display) -> &mut Query {
        self.name(name);
        let _ = write!(Encoder(&mut self.0), "{value}");
        self
    }

    fn name(&mut self, name: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        encode_into(&mut self.0, name);
        self.0.push('=');
    }

    /// The encoded text, without a leading `?`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Form-encodes what is written into the string it wraps.
struct Encoder<'a>(&'a mut String);

impl Write for Encoder<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        encode_into(self.0, s);
        Ok(())
    }
}

/// Appends `s` form-encoded, as `url::form_urlencoded::byte_serialize` encodes it:
/// runs of bytes that need no encoding are copied whole, a space becomes `+` and any
/// other byte `%XX`. `byte_serialize` cut the text into pieces and copied them one by
/// one, about 190 instructions for each of the thirty-odd names and values of every
/// webhook request, and numbers with a `+` took that path whole.
fn encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = s.as_bytes();
    if bytes.iter().all(|&b| is_unreserved(b)) {
        out.push_str(s);
        return;
    }
    out.reserve(bytes.len() + 8);
    let mut at = 0;
    while at < bytes.len() {
        let run = bytes[at..]
            .iter()
            .position(|&b| !is_unreserved(b))
            .map_or(bytes.len(), |n| at + n);
        // A run starts and ends beside ASCII bytes or the ends: `get` never refuses
        // it, and refusing would only drop text, never panic.
        if run > at
            && let Some(text) = s.get(at..run)
        {
            out.push_str(text);
        }
        let Some(&b) = bytes.get(run) else { break };
        let escaped = [b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]];
        out.push_str(match b {
            b' ' => "+",
            _ => std::str::from_utf8(&escaped).unwrap_or("%3F"),
        });
        at = run + 1;
    }
}

/// The bytes `application/x-www-form-urlencoded` leaves as they are.
fn is_unreserved(b: u8) -> bool {
    UNRESERVED[usize::from(b)]
}

/// Which bytes [`is_unreserved`] admits, one entry per byte: every name and value
/// of every webhook request is checked byte by byte.
const UNRESERVED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'*' | b'-' | b'.' | b'_');
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use url::form_urlencoded::byte_serialize;

    use super::*;

    #[test]
    fn pairs_are_encoded_as_a_form_and_read_back() {
        let mut q = Query::default();
        q.push("CallSid", "CA 1&2=3")
            .push("To", "+91 80")
            .push_display("Created", &1_700_000_000u64)
            .push_display("Note", &"é/?#")
            .push("Empty", "")
            .push_number("Now", 0)
            .push_number("Max", u64::MAX);
        let expected = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("CallSid", "CA 1&2=3"),
                ("To", "+91 80"),
                ("Created", "1700000000"),
                ("Note", "é/?#"),
                ("Empty", ""),
                ("Now", "0"),
                ("Max", "18446744073709551615"),
            ])
            .finish();
        assert_eq!(q.as_str(), expected);
        let back: Vec<(String, String)> = url::form_urlencoded::parse(q.as_str().as_bytes())
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert_eq!(back[0], ("CallSid".into(), "CA 1&2=3".into()));
        assert_eq!(back.len(), 7);
        assert!(Query::default().is_empty());
    }

    /// What is copied as it is is exactly what the encoder leaves alone.
    #[test]
    fn unreserved_text_is_what_the_encoder_leaves_alone() {
        for b in 0..=255u8 {
            let alone = byte_serialize(&[b]).collect::<String>() == (b as char).to_string();
            assert_eq!(is_unreserved(b), alone && b.is_ascii(), "{b}");
            let listed = b.is_ascii_alphanumeric() || b"*-._".contains(&b);
            assert_eq!(is_unreserved(b), listed, "{b}");
        }
        for w in crate::sip::words(&['a', 'Z', '0', '.', ' ', '+', '%', 'é', '_', '🙂', '~'], 4)
        {
            let mut ours = String::new();
            encode_into(&mut ours, &w);
            assert_eq!(
                ours,
                byte_serialize(w.as_bytes()).collect::<String>(),
                "{w:?}"
            );
        }
    }
}
