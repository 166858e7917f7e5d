//! The gate in front of the transaction layer: a new INVITE outside any dialog is
//! shown to it before any transaction (and any `100 Trying`) exists for it. The
//! engine's gate lets through what comes from a known source and answers the rest
//! statelessly, at most once per INVITE, or not at all: a spoofed UDP source then
//! gets back no more than it sent, and a flood of them leaves no state behind.

use std::net::SocketAddr;

use crate::sip::message::Message;

/// What becomes of a new out-of-dialog INVITE.
#[derive(Debug)]
pub enum Admission {
    /// An INVITE server transaction and the transaction user, as usual.
    Admit,
    /// Nothing: no response, no state.
    Drop,
    /// This response, sent once and statelessly (RFC 3261 §8.2.7); no transaction.
    Answer(Box<Message>),
}

/// Decides what becomes of each new out-of-dialog INVITE.
pub trait Gate: Send + Sync {
    /// The fate of `request`, received from `source`.
    fn admit(&self, request: &Message, source: SocketAddr) -> Admission;
}
