//! Loading flow files and directories: every file compiled, every diagnostic kept, and
//! flow ids checked for uniqueness across files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compile::{CompileOptions, Flow, compile_str};
use crate::lang::diagnostic::{Diagnostic, Diagnostics};
use crate::lang::yaml::Pos;

/// Everything found under the given paths.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The flows that compiled, in file order, ids unique.
    pub flows: Vec<Flow>,
    /// Every error and warning, file by file.
    pub diagnostics: Vec<Diagnostic>,
    /// How many flow files were read.
    pub files: usize,
}

impl Loaded {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == crate::lang::diagnostic::Severity::Error)
    }
}

/// Whether a file found in a directory is a flow file.
fn is_flow_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// The flow files under `path`: the file itself, or every `.yaml`/`.yml` file below a
/// directory, sorted. Unreadable entries become diagnostics.
fn collect(path: &Path, out: &mut Vec<PathBuf>, diags: &mut Vec<Diagnostic>) {
    let io_error = |e: std::io::Error, diags: &mut Vec<Diagnostic>| {
        let mut d = Diagnostics::new(path.display().to_string().into());
        d.error(Pos::default(), format!("cannot read: {e}"));
        diags.extend(d.into_vec());
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return io_error(e, diags),
    };
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) => return io_error(e, diags),
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        if child.is_dir() {
            collect(&child, out, diags);
        } else if is_flow_file(&child) {
            out.push(child);
        }
    }
}

/// Where the first byte that is not UTF-8 stands.
fn utf8_error_pos(bytes: &[u8], valid_up_to: usize) -> Pos {
    let valid = String::from_utf8_lossy(&bytes[..valid_up_to]);
    let line = valid.matches('\n').count() + 1;
    let col = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Pos::new(line, col)
}

/// Reads and compiles one file.
pub fn load_file(path: &Path, opts: &CompileOptions) -> (Option<Flow>, Vec<Diagnostic>) {
    let name: Arc<str> = path.display().to_string().into();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            let mut d = Diagnostics::new(name);
            d.error(Pos::default(), format!("cannot read: {e}"));
            return (None, d.into_vec());
        }
    };
    match std::str::from_utf8(&bytes) {
        Ok(text) => {
            let compiled = compile_str(name, text, opts);
            (compiled.flow, compiled.diagnostics)
        }
        Err(e) => {
            let mut d = Diagnostics::new(name);
            d.error(
                utf8_error_pos(&bytes, e.valid_up_to()),
                "the file is not valid UTF-8",
            );
            (None, d.into_vec())
        }
    }
}

/// Loads every flow file under `paths`. A flow whose id another file already uses is
/// an error in the later file.
pub fn load_paths(paths: &[PathBuf], opts: &CompileOptions) -> Loaded {
    let mut loaded = Loaded::default();
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files, &mut loaded.diagnostics);
    }
    let mut seen: HashMap<String, (Arc<str>, Pos)> = HashMap::new();
    for file in &files {
        loaded.files += 1;
        let (flow, diags) = load_file(file, opts);
        loaded.diagnostics.extend(diags);
        let Some(flow) = flow else { continue };
        if let Some((first_file, first_pos)) = seen.get(&flow.id) {
            let mut d = Diagnostics::new(flow.file.clone());
            d.error(
                flow.id_pos,
                format!(
                    "flow id '{}' is already used by {}:{}:{}",
                    flow.id, first_file, first_pos.line, first_pos.col
                ),
            );
            loaded.diagnostics.extend(d.into_vec());
            continue;
        }
        seen.insert(flow.id.clone(), (flow.file.clone(), flow.id_pos));
        loaded.flows.push(flow);
    }
    loaded
}
