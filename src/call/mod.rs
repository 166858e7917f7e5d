//! Calls: the B2BUA that bridges the caller's leg to one far leg at a time.
//!
//! `engine` is the core every message reaches after its transaction, `call` one call
//! and its legs, `sdp` the codec filter applied to every offer and answer.

#[allow(clippy::module_inception)]
pub mod call;
pub mod control;
pub mod engine;
pub mod sdp;

pub use call::{Call, CallInput, LegEnd, LegOutcome, LegRequest};
pub use engine::{CallHandler, Engine};
