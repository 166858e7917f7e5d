//! callflow: a programmable call-flow engine that connects the phone network to
//! voice-AI bots and contact-centre agents over SIP.
//!
//! Flow authors write YAML flows ([`flow`]); each compiles into a graph of
//! [`applets`] that the engine runs on live calls.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod applets;
pub mod call;
pub mod config;
pub mod flow;
pub mod routing;
pub mod server;
pub mod sip;
pub mod webhook;
