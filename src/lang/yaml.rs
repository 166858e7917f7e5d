//! A YAML document as a tree whose every node knows where it stands in the file.
//!
//! Flow diagnostics must name the line and column of the key or value at fault, which
//! a plain `serde` decode cannot do. This module reads the event stream of
//! `yaml-rust2` (a pull parser: no recursion on our side, so nesting depth is bounded
//! here, not by the stack) into [`Node`]s that carry a [`Pos`].
//!
//! Anchors and aliases are refused: a flow is short, and aliases are the door to
//! exponential expansion ("billion laughs").

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting of mappings and sequences a flow file may have.
pub const MAX_DEPTH: usize = 64;

/// Largest flow file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// A position in a file: line and column, both counted from 1 (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub col: usize,
}

impl Pos {
    /// A position from a line and a column, both counted from 1.
    pub fn new(line: usize, col: usize) -> Self {
        Pos { line, col }
    }

    fn from_marker(m: &Marker) -> Self {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Pos::new(m.line().max(1), m.col() + 1)
    }
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// How a scalar was written, which tells where its text starts relative to its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Written bare: `foo`.
    Plain,
    /// In single or double quotes: the text starts one column after the position.
    Quoted,
    /// A block scalar (`|` or `>`): the text starts on a later line.
    Block,
}

/// One node of the document.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts (for a quoted scalar, the opening quote).
    pub pos: Pos,
    /// What the node holds.
    pub kind: NodeKind,
}

/// The content of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A scalar: its text and how it was written.
    Scalar(String, Style),
    /// A sequence of nodes.
    Seq(Vec<Node>),
    /// A mapping, in file order; keys are unique (duplicates are a parse error).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar text, if this node is a scalar that is not null.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s, _) if !self.is_null() => Some(s),
            _ => None,
        }
    }

    /// Whether the node is a null: empty, `~` or `null` written bare.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar(s, Style::Plain)
            if matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A short description of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "nothing",
            NodeKind::Scalar(..) => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// The position of the first character of the scalar's text (after an opening quote).
    pub fn text_pos(&self) -> Pos {
        match &self.kind {
            NodeKind::Scalar(_, Style::Quoted) => Pos::new(self.pos.line, self.pos.col + 1),
            _ => self.pos,
        }
    }

    /// Whether the text of this scalar sits on one line of the file exactly as written
    /// (so that a column inside the text maps to a column in the file).
    pub fn text_is_verbatim(&self) -> bool {
        match &self.kind {
            NodeKind::Scalar(s, Style::Plain) => !s.contains('\n'),
            NodeKind::Scalar(s, Style::Quoted) => !s.contains(['\n', '\\', '\'', '"']),
            _ => false,
        }
    }
}

/// A YAML syntax error, or a document this loader refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    /// Where the problem was found.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

impl SyntaxError {
    fn new(pos: Pos, message: impl Into<String>) -> Self {
        SyntaxError {
            pos,
            message: message.into(),
        }
    }
}

/// Parses one YAML document. An empty document gives `Ok(None)`.
pub fn parse(src: &str) -> Result<Option<Node>, SyntaxError> {
    if src.len() > MAX_FILE_BYTES {
        return Err(SyntaxError::new(
            Pos::new(1, 1),
            format!(
                "file is {} bytes; flow files may be at most {MAX_FILE_BYTES} bytes",
                src.len()
            ),
        ));
    }
    // yaml-rust2 holds a few internal assertions; a hostile file must not turn one of
    // them into a crash of the engine, so a panic inside it becomes a syntax error.
    match panic::catch_unwind(AssertUnwindSafe(|| Builder::default().run(src))) {
        Ok(result) => result,
        Err(_) => Err(SyntaxError::new(
            Pos::new(1, 1),
            "the YAML parser failed on this file",
        )),
    }
}

/// Keeps a position inside the file: the scanner marks the end of a file without a
/// final line break (and a null value there) one line past it.
pub fn clamp(src: &str, pos: Pos) -> Pos {
    let lines: Vec<&str> = src.split('\n').collect();
    let line = pos.line.clamp(1, lines.len());
    let width = lines[line - 1].chars().count();
    let col = if line < pos.line {
        width + 1
    } else {
        pos.col.clamp(1, width + 1)
    };
    Pos::new(line, col)
}

/// A collection being filled while its events arrive.
enum Open {
    Seq(Pos, Vec<Node>),
    Map(OpenMap),
}

/// A mapping being filled: its entries, the key waiting for its value, and where each
/// key was first seen (to refuse duplicates without a quadratic scan).
struct OpenMap {
    pos: Pos,
    entries: Vec<(Node, Node)>,
    pending_key: Option<Node>,
    seen: HashMap<String, Pos>,
}

/// Turns the parser's event stream into a tree, with an explicit stack.
#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    documents: usize,
}

impl Builder {
    fn run(mut self, src: &str) -> Result<Option<Node>, SyntaxError> {
        let mut parser = Parser::new_from_str(src);
        loop {
            let (event, marker) = parser.next_token().map_err(|e| {
                SyntaxError::new(Pos::from_marker(e.marker()), yaml_message(e.info()))
            })?;
            let pos = Pos::from_marker(&marker);
            match event {
                Event::StreamEnd => return Ok(self.root),
                Event::DocumentStart => {
                    self.documents += 1;
                    if self.documents > 1 {
                        return Err(SyntaxError::new(
                            pos,
                            "a flow file holds one YAML document; found a second one",
                        ));
                    }
                }
                Event::Alias(_) => {
                    return Err(SyntaxError::new(
                        pos,
                        "YAML aliases are not supported in flow files",
                    ));
                }
                Event::Scalar(text, style, anchor, _) => {
                    no_anchor(anchor, pos)?;
                    let style = match style {
                        TScalarStyle::Plain => Style::Plain,
                        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => Style::Quoted,
                        TScalarStyle::Literal | TScalarStyle::Folded => Style::Block,
                    };
                    self.push(Node {
                        pos,
                        kind: NodeKind::Scalar(text, style),
                    })?;
                }
                Event::SequenceStart(anchor, _) => {
                    no_anchor(anchor, pos)?;
                    self.open(Open::Seq(pos, Vec::new()))?;
                }
                Event::MappingStart(anchor, _) => {
                    no_anchor(anchor, pos)?;
                    self.open(Open::Map(OpenMap {
                        pos,
                        entries: Vec::new(),
                        pending_key: None,
                        seen: HashMap::new(),
                    }))?;
                }
                Event::SequenceEnd | Event::MappingEnd => self.close()?,
                Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            }
        }
    }

    fn open(&mut self, open: Open) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            let pos = match &open {
                Open::Seq(p, _) | Open::Map(OpenMap { pos: p, .. }) => *p,
            };
            return Err(SyntaxError::new(
                pos,
                format!("nesting is deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.stack.push(open);
        Ok(())
    }

    fn close(&mut self) -> Result<(), SyntaxError> {
        let node = match self.stack.pop() {
            Some(Open::Seq(pos, items)) => Node {
                pos,
                kind: NodeKind::Seq(items),
            },
            Some(Open::Map(map)) => Node {
                // A block mapping's start event is marked after its first key; the
                // mapping starts where that key does.
                pos: map
                    .entries
                    .first()
                    .map_or(map.pos, |(k, _)| k.pos.min(map.pos)),
                kind: NodeKind::Map(map.entries),
            },
            None => return Ok(()),
        };
        self.push(node)
    }

    fn push(&mut self, node: Node) -> Result<(), SyntaxError> {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(_, items)) => items.push(node),
            Some(Open::Map(map)) => match map.pending_key.take() {
                None => map.pending_key = Some(node),
                Some(key) => {
                    if let NodeKind::Scalar(text, _) = &key.kind {
                        if let Some(first) = map.seen.get(text) {
                            return Err(SyntaxError::new(
                                key.pos,
                                format!(
                                    "duplicate key '{text}' (first at line {}, column {})",
                                    first.line, first.col
                                ),
                            ));
                        }
                        map.seen.insert(text.clone(), key.pos);
                    }
                    map.entries.push((key, node));
                }
            },
        }
        Ok(())
    }
}

fn no_anchor(anchor: usize, pos: Pos) -> Result<(), SyntaxError> {
    if anchor == 0 {
        Ok(())
    } else {
        Err(SyntaxError::new(
            pos,
            "YAML anchors are not supported in flow files",
        ))
    }
}

/// The parser's message, without the position it appends (we print our own).
fn yaml_message(info: &str) -> String {
    format!("YAML syntax: {info}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let doc = parse("a: 1\nbb:\n  - x\n  - 'y'\n").unwrap().unwrap();
        let NodeKind::Map(entries) = &doc.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0.pos, Pos::new(1, 1));
        assert_eq!(entries[0].1.pos, Pos::new(1, 4));
        assert_eq!(entries[1].0.pos, Pos::new(2, 1));
        let NodeKind::Seq(items) = &entries[1].1.kind else {
            panic!("not a seq")
        };
        assert_eq!(items[0].pos, Pos::new(3, 5));
        assert_eq!(items[1].pos, Pos::new(4, 5));
        assert_eq!(items[1].text_pos(), Pos::new(4, 6));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos, Pos::new(3, 1));
        assert_eq!(err.message, "duplicate key 'a' (first at line 1, column 1)");
    }

    #[test]
    fn aliases_and_deep_nesting_are_refused() {
        assert!(parse("a: &x 1\nb: *x\n").is_err());
        let deep = "[".repeat(10_000);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn empty_document_is_none() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }
}
