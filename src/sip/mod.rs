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
