//! Transactions whose work is done but which RFC 3261 keeps matchable for a while,
//! kept as small records instead of their state machines:
//!
//! - a non-INVITE server transaction in Completed resends its final response to a
//!   retransmitted request until Timer J (64·T1);
//! - an INVITE server transaction in Accepted (RFC 6026) absorbs the INVITE's
//!   retransmissions, passes a matching ACK to the core and sends the core's 2xx
//!   retransmissions until Timer L (64·T1); in Confirmed it absorbs ACKs until
//!   Timer I (T4);
//! - a non-INVITE client transaction in Completed absorbs response retransmissions
//!   until Timer K (T4);
//! - an INVITE client transaction in Completed answers a retransmitted final
//!   response with its ACK again until Timer D (64·T1).
//!
//! In those states a transaction answers what matches it the same way every time,
//! so its key and what it answers with are copied into the buffer of the batch
//! ([`Batch`]) it lingers in, and its state machine and allocations are let go at
//! once, while they are still warm. A batch holds what began lingering within a
//! quarter of the timer's length, and all of it goes at once, by dropping the batch,
//! when the last of its records is due: no record is looked at again at its end.
//! A record therefore lingers up to a quarter longer than its timer (the timer is a
//! lower bound: RFC 3261 only asks that it be kept that long). This matters on a
//! virtual machine, where memory left alone for seconds costs microseconds to come
//! back to (BENCHMARKS.md, session 12): ending tens of thousands of transactions one
//! by one, 5 and 32 s after they were last touched, was a fifth of callflow's CPU
//! per call (session 14).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::Key;
use crate::sip::NetworkHasher;
use crate::sip::transport::{MessageKind, Outgoing, Target};
use crate::sip::typed::Transport;

/// What a transaction leaves behind to linger.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kept<'a> {
    /// It absorbs what matches it (Timers I and K).
    Absorb,
    /// It sends `bytes` to `to` over UDP again for what matches it (the final
    /// response of Timer J, the ACK of Timer D), counted as `kind`.
    Resend {
        bytes: &'a [u8],
        to: SocketAddr,
        kind: MessageKind,
    },
    /// An INVITE server transaction that sent a 2xx to `source` (RFC 6026 Accepted).
    Accepted { source: SocketAddr },
}

impl<'a> Kept<'a> {
    /// Resending `out`, if it goes over UDP (a reliable transport needs no
    /// retransmissions, and its timers are 0).
    pub(crate) fn resending(out: &'a Outgoing) -> Option<Kept<'a>> {
        (out.target.transport == Transport::Udp).then_some(Kept::Resend {
            bytes: &out.bytes,
            to: out.target.addr,
            kind: out.kind,
        })
    }
}

/// What a lingering transaction answers what matched it with.
#[derive(Debug)]
pub(crate) enum Found {
    /// Nothing: it is absorbed.
    Absorb,
    /// This, sent again.
    Resend(Outgoing),
    /// An INVITE server transaction in Accepted: the 2xx went to this address.
    Accepted(SocketAddr),
}

/// Where a record's bytes are in its batch's buffer.
#[derive(Debug, Clone, Copy)]
struct Span {
    at: u32,
    len: u32,
}

/// A lingering transaction, as its batch holds it: plain data, so that a batch
/// is dropped without a look at any record.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// Its key, written by [`write_key`].
    key: Span,
    /// What it answers with.
    answer: Answer,
}

/// [`Kept`], with its bytes in the batch's buffer.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Absorb,
    Resend {
        bytes: Span,
        to: SocketAddr,
        kind: MessageKind,
    },
    Accepted(SocketAddr),
}

/// Hashes a fingerprint (already a keyed hash of the key) to itself.
#[derive(Debug, Default)]
struct Fingerprint(u64);

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The records that began lingering within one span of time, with their bytes.
#[derive(Debug)]
pub(crate) struct Batch {
    /// When its first record began lingering.
    opened: Instant,
    /// Its records, in the order they began lingering.
    records: Vec<Record>,
    /// Where each is in `records`, by its key's fingerprint: small entries, so
    /// that the pages a look-up touches are few and in frequent use.
    index: HashMap<u64, u32, BuildHasherDefault<Fingerprint>>,
    /// Their keys and what they resend, one after another.
    buffer: Vec<u8>,
}

impl Batch {
    /// An empty batch opened at `now`, with room for as much as `last` held.
    fn new(now: Instant, last: Option<&Batch>) -> Batch {
        let (records, bytes) = last.map_or((0, 0), |b| (b.records.len(), b.buffer.len()));
        Batch {
            opened: now,
            records: Vec::with_capacity(records),
            index: HashMap::with_capacity_and_hasher(records, Default::default()),
            buffer: Vec::with_capacity(bytes),
        }
    }

    /// Appends `bytes` to the buffer; `None` past 4 GiB.
    fn push(&mut self, bytes: &[u8]) -> Option<Span> {
        let at = u32::try_from(self.buffer.len()).ok()?;
        let len = u32::try_from(bytes.len()).ok()?;
        at.checked_add(len)?;
        self.buffer.extend_from_slice(bytes);
        Some(Span { at, len })
    }

    /// `key` and what it answers with, written into the buffer; `None` past 4 GiB.
    fn record(&mut self, key: &Key, kept: Kept) -> Option<Record> {
        let at = self.buffer.len();
        write_key(key, &mut self.buffer);
        let key = Span {
            at: u32::try_from(at).ok()?,
            len: u32::try_from(self.buffer.len() - at).ok()?,
        };
        let answer = match kept {
            Kept::Absorb => Answer::Absorb,
            Kept::Accepted { source } => Answer::Accepted(source),
            Kept::Resend { bytes, to, kind } => Answer::Resend {
                bytes: self.push(bytes)?,
                to,
                kind,
            },
        };
        Some(Record { key, answer })
    }

    /// The bytes at `span`.
    fn bytes(&self, span: Span) -> &[u8] {
        let at = span.at as usize;
        self.buffer
            .get(at..at + span.len as usize)
            .unwrap_or_default()
    }

    /// What the record of `key` answers, if this batch holds it.
    fn find(&self, fingerprint: u64, key: &Key) -> Option<Found> {
        let record = self.records.get(*self.index.get(&fingerprint)? as usize)?;
        if !key_is(self.bytes(record.key), key) {
            return None;
        }
        Some(match record.answer {
            Answer::Absorb => Found::Absorb,
            Answer::Accepted(source) => Found::Accepted(source),
            Answer::Resend { bytes, to, kind } => Found::Resend(Outgoing {
                target: Target {
                    transport: Transport::Udp,
                    addr: to,
                    server_name: None,
                },
                bytes: Bytes::copy_from_slice(self.bytes(bytes)),
                kind,
            }),
        })
    }
}

/// The batches of one timer length, oldest first.
#[derive(Debug)]
struct Shelf {
    /// The timer's length: how long a record lingers at least.
    length: Duration,
    /// How long a batch takes new records: a quarter of `length`.
    span: Duration,
    batches: VecDeque<Batch>,
}

impl Shelf {
    /// When the oldest batch's last record is due.
    fn next_expiry(&self) -> Option<Instant> {
        self.batches
            .front()
            .map(|b| b.opened + self.span + self.length)
    }
}

/// Every lingering transaction.
#[derive(Debug, Default)]
pub(crate) struct Lingering {
    /// One shelf per timer length in use (64·T1 and T4 with the defaults).
    shelves: Vec<Shelf>,
    /// Fingerprints keys, seeded at random like the table of live transactions.
    hasher: NetworkHasher,
}

impl Lingering {
    /// Keeps `key` lingering from `now` for at least `length`, answering as `kept`
    /// says. Returns whether the expiry of the oldest batch may have come earlier
    /// (a shelf that was empty got its first batch).
    pub(crate) fn keep(&mut self, key: &Key, length: Duration, kept: Kept, now: Instant) -> bool {
        let fingerprint = self.hasher.hash_one(key);
        let shelf = self.shelf(length);
        let was_empty = shelf.batches.is_empty();
        if shelf
            .batches
            .back()
            .is_none_or(|b| now >= b.opened + shelf.span)
        {
            let batch = Batch::new(now, shelf.batches.back());
            shelf.batches.push_back(batch);
        }
        let Some(batch) = shelf.batches.back_mut() else {
            return false;
        };
        // A fingerprint met twice in a batch (a chance of one in 2^64 per pair) keeps
        // the later record: the earlier one's retransmissions then reach the core.
        if let Some(record) = batch.record(key, kept)
            && let Ok(at) = u32::try_from(batch.records.len())
        {
            batch.records.push(record);
            batch.index.insert(fingerprint, at);
        }
        was_empty
    }

    /// What the lingering transaction of `key` answers, if there is one.
    pub(crate) fn find(&self, key: &Key) -> Option<Found> {
        if self.shelves.iter().all(|s| s.batches.is_empty()) {
            return None;
        }
        let fingerprint = self.hasher.hash_one(key);
        self.shelves
            .iter()
            .flat_map(|s| s.batches.iter().rev())
            .find_map(|b| b.find(fingerprint, key))
    }

    /// Takes out every batch whose records are all due at `now`, for the caller
    /// to drop (after letting go of any lock).
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Batch> {
        let mut gone = Vec::new();
        for shelf in &mut self.shelves {
            while shelf.next_expiry().is_some_and(|at| at <= now) {
                gone.extend(shelf.batches.pop_front());
            }
        }
        gone
    }

    /// When the next batch is due.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.shelves.iter().filter_map(Shelf::next_expiry).min()
    }

    /// How many transactions linger.
    pub(crate) fn len(&self) -> usize {
        self.shelves
            .iter()
            .flat_map(|s| &s.batches)
            .map(|b| b.records.len())
            .sum()
    }

    /// The shelf for `length`, made when first needed.
    fn shelf(&mut self, length: Duration) -> &mut Shelf {
        let i = match self.shelves.iter().position(|s| s.length == length) {
            Some(i) => i,
            None => {
                self.shelves.push(Shelf {
                    length,
                    span: (length / 4).max(Duration::from_millis(1)),
                    batches: VecDeque::new(),
                });
                self.shelves.len() - 1
            }
        };
        &mut self.shelves[i]
    }
}

/// A key as a record keeps it: the branch, the method and the sent-by, each
/// followed by a byte no SIP token has.
fn write_key(key: &Key, out: &mut Vec<u8>) {
    for part in [
        key.branch.as_str(),
        key.method.as_str(),
        key.sent_by.as_str(),
    ] {
        out.extend_from_slice(part.as_bytes());
        out.push(0);
    }
}

/// Whether `written` (by [`write_key`]) is `key`.
fn key_is(written: &[u8], key: &Key) -> bool {
    let mut rest = written;
    for part in [
        key.branch.as_str(),
        key.method.as_str(),
        key.sent_by.as_str(),
    ] {
        let Some(after) = rest
            .strip_prefix(part.as_bytes())
            .and_then(|r| r.strip_prefix(&[0]))
        else {
            return false;
        };
        rest = after;
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::method::Method;

    fn key(branch: &str, method: Method, sent_by: &str) -> Key {
        Key {
            branch: branch.into(),
            method,
            sent_by: sent_by.into(),
        }
    }

    fn resend(bytes: &[u8]) -> Kept<'_> {
        Kept::Resend {
            bytes,
            to: "127.0.0.1:5060".parse().unwrap(),
            kind: MessageKind::Response(1),
        }
    }

    /// A record answers as it was kept, for its own key only, until its batch is
    /// due: at least its length after it began lingering, at most a quarter more.
    /// Each batch goes on its own, and a shelf per length.
    #[test]
    fn records_linger_their_length_and_go_by_batch() {
        let t0 = Instant::now();
        let length = Duration::from_secs(32);
        let mut l = Lingering::default();
        let bye = key("z9hG4bK1", Method::Bye, "10.0.0.1:5060");
        assert!(l.keep(&bye, length, resend(b"SIP/2.0 200 OK\r\n\r\n"), t0));
        let Some(Found::Resend(out)) = l.find(&bye) else {
            panic!("no record");
        };
        assert_eq!(&out.bytes[..], b"SIP/2.0 200 OK\r\n\r\n");
        assert_eq!(out.target.transport, Transport::Udp);
        for other in [
            key("z9hG4bK1", Method::Invite, "10.0.0.1:5060"),
            key("z9hG4bK1", Method::Bye, "10.0.0.1:5061"),
            key("z9hG4bK", Method::Bye, "10.0.0.1:5060"),
            key("z9hG4bK1", Method::Bye, ""),
        ] {
            assert!(l.find(&other).is_none(), "{other:?}");
        }
        // The same batch, then a second one a span later.
        let absorb = key("z9hG4bK2", Method::Bye, "");
        assert!(!l.keep(&absorb, length, Kept::Absorb, t0 + length / 8));
        let later = key("z9hG4bK3", Method::Invite, "10.0.0.1:5060");
        let source = "10.0.0.1:5060".parse().unwrap();
        l.keep(&later, length, Kept::Accepted { source }, t0 + length / 4);
        // A shelf of its own for another length.
        let short = key("z9hG4bK4", Method::Options, "");
        assert!(l.keep(&short, Duration::from_secs(5), Kept::Absorb, t0));
        assert_eq!(l.len(), 4);

        assert_eq!(l.next_expiry(), Some(t0 + Duration::from_millis(6250)));
        assert!(l.expire(t0 + Duration::from_secs(6)).is_empty());
        assert_eq!(l.expire(t0 + Duration::from_millis(6250)).len(), 1);
        assert!(l.find(&short).is_none());
        assert!(l.expire(t0 + length).is_empty(), "due before its length");
        assert!(matches!(l.find(&absorb), Some(Found::Absorb)));
        assert_eq!(l.expire(t0 + length + length / 4).len(), 1);
        assert!(l.find(&bye).is_none() && l.find(&absorb).is_none());
        assert!(matches!(l.find(&later), Some(Found::Accepted(s)) if s == source));
        assert_eq!(l.len(), 1);
        assert_eq!(l.expire(t0 + length + length / 2).len(), 1);
        assert_eq!((l.len(), l.next_expiry()), (0, None));
        assert!(l.find(&later).is_none());
    }

    /// Only UDP retransmits: a message over TCP or TLS leaves nothing to resend.
    #[test]
    fn only_udp_messages_are_resent() {
        let mut out = Outgoing {
            target: Target {
                transport: Transport::Tcp,
                addr: "127.0.0.1:5060".parse().unwrap(),
                server_name: None,
            },
            bytes: Bytes::from_static(b"ACK"),
            kind: MessageKind::Request(1),
        };
        assert!(Kept::resending(&out).is_none());
        out.target.transport = Transport::Udp;
        assert!(matches!(
            Kept::resending(&out),
            Some(Kept::Resend { bytes: b"ACK", .. })
        ));
    }
}
