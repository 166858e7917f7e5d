//! Calls: the B2BUA. A call is the caller's leg ([`CallerLeg`], the UAS side), at
//! most one far leg at a time ([`FarLeg`], the UAC side) and the bridge between them
//! ([`Call`]), which implements the runtime contract's `CallControl`.
//!
//! A call the calls API places starts as an [`Origination`] (`originate`): its first
//! party is invited without SDP and, once it answers, becomes the call's caller leg.
//!
//! `engine` is the transaction user every message reaches after its transaction;
//! `core` what the engine and every leg share (layer, resolver, dialog routes, the
//! "request on a dialog, await the final response" helper); `fork` parallel ringing;
//! `sdp` the codec filter applied to every offer and answer.

pub mod anchor;
pub mod bridge;
pub mod caller;
pub mod control;
pub mod core;
pub mod engine;
pub mod far;
pub mod fork;
pub mod originate;
pub mod sdp;
pub mod stack;

pub use anchor::{MediaEnd, OfferRefused};
pub use bridge::{Call, Controller, new_sid};
pub use caller::CallerLeg;
pub use core::MediaConfig;
pub use engine::{CallHandler, Engine};
pub use far::FarLeg;
pub use originate::Origination;
pub use stack::{SipStack, StackConfig};

use crate::sip::message::Message;
use crate::sip::transaction::ServerTransaction;

/// What the engine hands a call. Messages are boxed: the call's channel holds 32
/// items from its creation.
#[derive(Debug)]
pub enum CallInput {
    /// An in-dialog request on one of the call's legs.
    Request(Box<ServerTransaction>),
    /// A CANCEL for the caller's INVITE.
    Cancel(Box<ServerTransaction>),
    /// An ACK for a 2xx we sent.
    Ack(Box<Message>),
    /// A 2xx retransmitted by a far leg after its transaction ended.
    StrayResponse(Box<Message>),
    /// The operator (or the account) ends the call: BYE to answered legs, 487 to a
    /// caller still ringing.
    Terminate,
    /// The call is moved into this flow: the far leg goes, the caller stays.
    Redirect(String),
}
