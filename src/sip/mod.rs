//! The SIP layer (docs/architecture.md §5): messages, transports, transactions and dialogs.
//!
//! `message` parses and builds messages; `uri`, `header`, `method` and `typed` give
//! typed access to what the engine reads. Nothing here panics on input: malformed
//! bytes become a [`ParseError`].

pub mod dialog;
pub mod digest;
pub mod error;
pub mod header;
pub mod message;
pub mod method;
pub mod parsed;
pub mod resolve;
pub mod shield;
pub mod srv;
pub mod transaction;
pub mod transport;
pub mod typed;
pub mod uri;

pub use error::ParseError;
pub use header::{Header, Name};
pub use message::{Framing, Message, StartLine};
pub use method::Method;
pub use typed::{CSeq, NameAddr, Transport, Via};
pub use uri::{Host, SipUri, Uri};

/// The hasher of every table keyed by what a peer sends (branches, Call-IDs, tags,
/// addresses): foldhash, fast, and seeded at random per table so that a peer cannot
/// aim for collisions. SipHash, the standard map's, was 1.5% of a hand-off call's CPU.
pub type NetworkHasher = foldhash::quality::RandomState;

/// `prefix` and the last `digits` (at most 32) hex digits of `n`, lower case and
/// zero-padded: what `format!("{prefix}{n:0digits$x}")` writes, without the
/// formatting machinery, which cost about 600 instructions for each of the call
/// sid, Call-ID, branch and tag every call makes.
pub fn hex_id<S: Default + std::fmt::Write>(prefix: &str, n: u128, digits: usize) -> S {
    let digits = digits.min(32);
    let mut buf = [b'0'; 32];
    let mut rest = n;
    for b in buf.iter_mut().rev() {
        *b = b"0123456789abcdef"[(rest & 0xf) as usize];
        rest >>= 4;
    }
    let mut out = S::default();
    let hex = std::str::from_utf8(&buf[32 - digits..]).unwrap_or_default();
    // Writing into a string cannot fail.
    let _ = out.write_str(prefix).and_then(|()| out.write_str(hex));
    out
}

/// Every string of up to `len` characters over `alphabet`, the empty one included:
/// the inputs the exhaustive tests give a fast reader and the rule it replaces.
#[cfg(test)]
pub(crate) fn words(alphabet: &[char], len: usize) -> Vec<String> {
    let mut all = vec![String::new()];
    let mut last = vec![String::new()];
    for _ in 0..len {
        last = last
            .iter()
            .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
            .collect();
        all.extend(last.iter().cloned());
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_what_format_writes() {
        for n in [
            0u128,
            1,
            0xabc,
            u64::MAX as u128,
            u128::MAX,
            0x0123_4567_89ab_cdef << 40,
        ] {
            for digits in [1usize, 12, 16, 32] {
                let ours: String = hex_id("CA", n, digits);
                let mask = if digits == 32 {
                    u128::MAX
                } else {
                    (1u128 << (4 * digits)) - 1
                };
                assert_eq!(ours, format!("CA{:0digits$x}", n & mask), "{n} {digits}");
            }
        }
        let branch: compact_str::CompactString = hex_id("z9hG4bK", 7, 16);
        assert_eq!(branch, "z9hG4bK0000000000000007");
    }
}
