//! The flow language: YAML flow files compiled into graphs of applets (docs/architecture.md §3).
//!
//! `yaml` reads a file into positioned nodes, `schema` and `crate::applets` decode
//! them, `compile` builds and checks the graph, `graph` draws it, `loader` reads files
//! and directories. Every problem becomes a [`Diagnostic`] with file, line and column.

pub mod compile;
pub mod executor;
pub mod graph;
pub mod loader;
pub mod schema;
pub mod simulate;

pub use crate::lang::diagnostic::{Diagnostic, Severity};
pub use compile::{Applet, CompileOptions, Compiled, Flow, compile_str};
pub use loader::{Loaded, load_file, load_paths};
pub use schema::Transition;
