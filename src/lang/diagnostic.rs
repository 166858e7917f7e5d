//! Errors and warnings about flow files, each with the file, line and column at fault.

use std::fmt;
use std::sync::Arc;

use super::yaml::Pos;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The flow cannot be used.
    Error,
    /// The flow compiles, but probably does not do what its author meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about a flow file, printed as `FILE:LINE:COL: error: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as it was named to the loader.
    pub file: Arc<str>,
    /// Where in the file; line 0 when the whole file is at fault (it cannot be read).
    pub pos: Pos,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line == 0 {
            // Not about a place in the file (it could not be read at all).
            return write!(f, "{}: {}: {}", self.file, self.severity, self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.pos.line, self.pos.col, self.severity, self.message
        )
    }
}

/// Collects the diagnostics of one file while it is being compiled.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    file: Arc<str>,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty list for `file`.
    pub fn new(file: Arc<str>) -> Self {
        Diagnostics {
            file,
            items: Vec::new(),
        }
    }

    /// The file these diagnostics are about.
    pub fn file(&self) -> &Arc<str> {
        &self.file
    }

    /// Records an error at `pos`.
    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(Severity::Error, pos, message.into());
    }

    /// Records a warning at `pos`.
    pub fn warning(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(Severity::Warning, pos, message.into());
    }

    fn push(&mut self, severity: Severity, pos: Pos, message: String) {
        // One line per diagnostic, whatever text from the file a message quotes.
        let message = if message.contains(char::is_control) {
            message
                .chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        } else {
            message
        };
        self.items.push(Diagnostic {
            file: self.file.clone(),
            pos,
            severity,
            message,
        });
    }

    /// Whether any error was recorded.
    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    /// How many errors were recorded.
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// The diagnostics, sorted by position.
    pub fn into_vec(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|d| d.pos);
        self.items
    }
}

/// `" (did you mean 'x'?)"` when one of `candidates` is close to `word`, else `""`.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let best = candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d > 0 && *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!(" (did you mean '{c}'?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(
            did_you_mean("sory", ["sorry", "bye"]),
            " (did you mean 'sorry'?)"
        );
        assert_eq!(did_you_mean("zzzzzz", ["sorry", "bye"]), "");
    }

    #[test]
    fn prints_file_line_col() {
        let mut d = Diagnostics::new("flows/x.yaml".into());
        d.error(Pos::new(12, 7), "bad");
        assert_eq!(d.into_vec()[0].to_string(), "flows/x.yaml:12:7: error: bad");
    }
}
