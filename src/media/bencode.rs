//! Bencode, the encoding of rtpengine's ng protocol: integers, byte strings, lists and
//! dictionaries. Decoding is bounded (depth and size come from the datagram), so a
//! hostile or garbled answer gives an error, never a panic.

use std::collections::BTreeMap;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `i<n>e`.
    Int(i64),
    /// `<len>:<bytes>`.
    Bytes(Vec<u8>),
    /// `l…e`.
    List(Vec<Value>),
    /// `d…e`, keys are byte strings.
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Why bytes are not bencode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed bencode at byte {0}")]
pub struct DecodeError(pub usize);

/// Nesting deeper than this is refused (rtpengine's answers nest about 8 deep).
const MAX_DEPTH: usize = 32;

impl Value {
    /// A byte string from text.
    pub fn str(s: impl AsRef<str>) -> Value {
        Value::Bytes(s.as_ref().as_bytes().to_vec())
    }

    /// A list of byte strings.
    pub fn strs<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::List(items.into_iter().map(Value::str).collect())
    }

    /// The value under `key`, when this is a dictionary that has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// This byte string as text, when it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// This integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// This list's items (empty when it is not a list).
    pub fn items(&self) -> &[Value] {
        match self {
            Value::List(l) => l,
            _ => &[],
        }
    }

    /// This dictionary's values (none when it is not a dictionary).
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        let dict = match self {
            Value::Dict(d) => Some(d),
            _ => None,
        };
        dict.into_iter().flat_map(|d| d.values())
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend_from_slice(b.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(b);
            }
            Value::List(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.encode_into(out));
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Value::Bytes(k.clone()).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes exactly one value filling `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
        let mut pos = 0;
        let v = decode_at(bytes, &mut pos, 0)?;
        if pos != bytes.len() {
            return Err(DecodeError(pos));
        }
        Ok(v)
    }
}

/// A dictionary built from `(key, value)` pairs.
pub fn dict<K: AsRef<str>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
    Value::Dict(
        pairs
            .into_iter()
            .map(|(k, v)| (k.as_ref().as_bytes().to_vec(), v))
            .collect(),
    )
}

fn decode_at(b: &[u8], pos: &mut usize, depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError(*pos));
    }
    match b.get(*pos) {
        Some(b'i') => {
            *pos += 1;
            let n = read_until(b, pos, b'e')?;
            n.parse().map(Value::Int).map_err(|_| DecodeError(*pos))
        }
        Some(b'l') => {
            *pos += 1;
            let mut items = Vec::new();
            while b.get(*pos) != Some(&b'e') {
                items.push(decode_at(b, pos, depth + 1)?);
            }
            *pos += 1;
            Ok(Value::List(items))
        }
        Some(b'd') => {
            *pos += 1;
            let mut map = BTreeMap::new();
            while b.get(*pos) != Some(&b'e') {
                let Value::Bytes(k) = decode_at(b, pos, depth + 1)? else {
                    return Err(DecodeError(*pos));
                };
                map.insert(k, decode_at(b, pos, depth + 1)?);
            }
            *pos += 1;
            Ok(Value::Dict(map))
        }
        Some(c) if c.is_ascii_digit() => {
            let len: usize = read_until(b, pos, b':')?
                .parse()
                .map_err(|_| DecodeError(*pos))?;
            let end = pos.checked_add(len).ok_or(DecodeError(*pos))?;
            let s = b.get(*pos..end).ok_or(DecodeError(*pos))?;
            *pos = end;
            Ok(Value::Bytes(s.to_vec()))
        }
        _ => Err(DecodeError(*pos)),
    }
}

/// The text from `pos` up to `end` (consumed).
fn read_until<'a>(b: &'a [u8], pos: &mut usize, end: u8) -> Result<&'a str, DecodeError> {
    let rest = b.get(*pos..).ok_or(DecodeError(*pos))?;
    let n = rest
        .iter()
        .take(24)
        .position(|&c| c == end)
        .ok_or(DecodeError(*pos))?;
    let s = std::str::from_utf8(&rest[..n]).map_err(|_| DecodeError(*pos))?;
    *pos += n + 1;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = dict([
            ("command", Value::str("offer")),
            ("flags", Value::strs(["port latching", "strict source"])),
            ("n", Value::Int(-3)),
        ]);
        let mut out = Vec::new();
        v.encode_into(&mut out);
        assert_eq!(
            out,
            b"d7:command5:offer5:flagsl13:port latching13:strict sourcee1:ni-3ee"
        );
        assert_eq!(Value::decode(&out), Ok(v));
    }

    #[test]
    fn hostile_input_is_an_error() {
        for bad in [
            &b"d3:sdp"[..],
            b"99999999999999999999:x",
            b"i12",
            b"l",
            b"d1:ai1ei2ee",
            b"x",
            b"4:abc",
            b"i1ei2e",
        ] {
            assert!(Value::decode(bad).is_err(), "{bad:?}");
        }
        let deep = "l".repeat(100) + "e".repeat(100).as_str();
        assert!(Value::decode(deep.as_bytes()).is_err());
    }
}
