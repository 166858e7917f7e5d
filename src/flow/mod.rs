//! The flow language: YAML flow files compiled into graphs of applets (DESIGN.md §3).
//!
//! `yaml` reads a file into positioned nodes, `schema` and `crate::applets` decode
//! them, `compile` builds and checks the graph, `graph` draws it, `loader` reads files
//! and directories. Every problem becomes a [`Diagnostic`] with file, line and column.

pub mod compile;
pub mod decode;
pub mod diagnostic;
pub mod duration;
pub mod executor;
pub mod expr;
pub mod graph;
pub mod headers;
pub mod loader;
pub mod schema;
pub mod simulate;
pub mod vars;
pub mod yaml;

pub use compile::{Applet, CompileOptions, Compiled, Flow, compile_str};
pub use diagnostic::{Diagnostic, Severity};
pub use loader::{Loaded, load_file, load_paths};
pub use schema::Transition;
