//! The typed headers every layer reads (the top Via, From, To, CSeq), parsed once per
//! message and shared by the transport, the transaction layer, the dialog and the
//! call, instead of parsed again by each.
//!
//! A [`Message`](super::Message) keeps one [`Parsed`]: a received message has all
//! four put in by `validate`, any other message each on its first read; each is kept
//! until a change to that header ([`Parsed::forget`]), which the message's setters
//! make; its headers cannot be changed any other way.

use once_cell::sync::OnceCell;

use super::error::ParseError;
use super::header::Name;
use super::typed::{CSeq, NameAddr, Via};

/// One header's typed value, or why it could not be read; empty until first asked.
///
/// `once_cell`'s cell rather than the standard `OnceLock`: a cell made full
/// (`with_value`, `clone`) is written as a plain value, where `OnceLock::from` and
/// `OnceLock::clone` go through its lock-once slow path (`Once::call`), which was
/// 1.3% of a hand-off call's instructions (BENCHMARKS.md, session 22).
pub(super) type Slot<T> = OnceCell<Result<T, ParseError>>;

/// A slot holding `value`.
pub(super) fn kept<T>(value: T) -> Slot<T> {
    OnceCell::with_value(Ok(value))
}

/// The typed values kept for one message: nothing until the first read, then one
/// allocation holding a slot per header (a message nobody reads costs 16 bytes).
#[derive(Clone, Default)]
pub struct Parsed(OnceCell<Box<Slots>>);

/// The typed values of a message's top Via, From, To and CSeq.
#[derive(Clone, Default)]
pub(super) struct Slots {
    /// The first Via value.
    pub(super) via: Slot<Via>,
    /// From.
    pub(super) from: Slot<NameAddr>,
    /// To.
    pub(super) to: Slot<NameAddr>,
    /// CSeq.
    pub(super) cseq: Slot<CSeq>,
}

impl Parsed {
    /// The slots, made on the first read.
    pub(super) fn slots(&self) -> &Slots {
        self.0.get_or_init(Box::default)
    }

    /// The four values, parsed already.
    pub(super) fn filled(via: Via, from: NameAddr, to: NameAddr, cseq: CSeq) -> Parsed {
        Parsed(OnceCell::with_value(Box::new(Slots {
            via: kept(via),
            from: kept(from),
            to: kept(to),
            cseq: kept(cseq),
        })))
    }

    /// Puts in a value the caller already has (`put` fills its slot).
    pub(super) fn keep(&mut self, put: impl FnOnce(&mut Slots)) {
        match self.0.get_mut() {
            Some(slots) => put(slots),
            None => {
                let mut slots = Box::<Slots>::default();
                put(&mut slots);
                self.0 = OnceCell::with_value(slots);
            }
        }
    }

    /// What a response built from this request keeps: the top Via (the transport
    /// routes the response by it), To (its tag is set next) and CSeq, not From, which
    /// nothing reads on a response callflow sends (copying it cost a name-addr clone
    /// per response).
    pub(super) fn for_response(&self) -> Parsed {
        let Some(slots) = self.0.get() else {
            return Parsed::default();
        };
        Parsed(OnceCell::with_value(Box::new(Slots {
            via: slots.via.clone(),
            from: OnceCell::new(),
            to: slots.to.clone(),
            cseq: slots.cseq.clone(),
        })))
    }

    /// Takes out the value kept for To, if it was read.
    pub(super) fn take_to(&mut self) -> Option<Result<NameAddr, ParseError>> {
        self.0.get_mut()?.to.take()
    }

    /// Drops the value kept for `name`, after that header changed.
    pub fn forget(&mut self, name: &Name) {
        let Some(slots) = self.0.get_mut() else {
            return;
        };
        match name {
            Name::Via => slots.via = OnceCell::new(),
            Name::From => slots.from = OnceCell::new(),
            Name::To => slots.to = OnceCell::new(),
            Name::CSeq => slots.cseq = OnceCell::new(),
            _ => {}
        }
    }

    /// Drops every value kept.
    pub fn forget_all(&mut self) {
        self.0 = OnceCell::new();
    }
}

/// The value in `slot`, parsed by `parse` on the first read.
pub(super) fn read<T>(
    slot: &Slot<T>,
    parse: impl FnOnce() -> Result<T, ParseError>,
) -> Result<&T, ParseError> {
    slot.get_or_init(parse).as_ref().map_err(Clone::clone)
}

/// Two messages are equal by what they say: what has been parsed so far does not count.
impl PartialEq for Parsed {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Parsed {}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parsed")
    }
}
