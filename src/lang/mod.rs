//! The flow language's kernel: what the applets and the compiler both read.
//!
//! `yaml` reads a file into positioned nodes, `decode` turns nodes into values with
//! diagnostics, `diagnostic` holds the file:line:col messages, `expr` the rhai
//! expressions and `${...}` templates, `duration` `30s`-style durations, `headers` the
//! custom `X-` header rules, `vars` the call's variables, `number` E.164 numbers.
//! Nothing here knows about applets, calls or the network.

pub mod decode;
pub mod diagnostic;
pub mod duration;
pub mod expr;
pub mod headers;
pub mod number;
pub mod vars;
pub mod yaml;
