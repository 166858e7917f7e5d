//! callflow: a programmable call-flow engine that connects the phone network to
//! voice-AI bots and contact-centre agents over SIP.
//!
//! The layers, from the bottom up; each imports only the layers below it
//! (docs/architecture.md §2 draws them):
//!
//! | layer | what |
//! |---|---|
//! | [`sip`] | messages, transports, RFC 3261 transactions, dialogs, RFC 3263 resolution, digest |
//! | [`lang`] | the flow language's kernel: positioned YAML, decoding, diagnostics, expressions, durations, headers, variables, numbers |
//! | [`runtime`] | the contract the applets and the executor share: call control, HTTP, a directory of trunks and carriers, steps, leg outcomes, the call record |
//! | [`call`] | the B2BUA: the caller's leg, far legs, the bridge, forking, the engine and the SIP stack |
//! | [`applets`] | one file per applet behind the `Applet` trait, and the registry of kinds |
//! | [`flow`] | compiling flow files into graphs, the executor, graph export, `simulate`, the loader |
//! | [`config`], [`routing`], [`webhook`], [`store`], [`metrics`] | `callflow.yaml` typed at load; numbers, trunks, carriers, limits, health; the HTTP client; SQLite or PostgreSQL; Prometheus metrics |
//! | [`api`] | the HTTP API: accounts, trunks, flows, carriers, health, metrics, OpenAPI |
//! | [`server`] | `callflow serve`: start-up, reload and API changes, each new INVITE, calls to the PSTN, pings, records |

// `unsafe` only in `allocator`, whose module comment says why and proves it sound.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod allocator;

/// The memory allocator of every binary built on this crate (see [`allocator`]).
#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

pub mod api;
pub mod applets;
pub mod call;
pub mod config;
pub mod flow;
pub mod lang;
pub mod media;
pub mod metrics;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod sip;
pub mod store;
pub mod webhook;
