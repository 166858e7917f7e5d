//! Reading typed values out of positioned YAML nodes, recording every problem found.
//!
//! Each reader returns `None` after recording an error, so one pass over a file finds
//! every error in it instead of stopping at the first.

use std::time::Duration;

use super::diagnostic::{Diagnostics, did_you_mean};
use super::duration::parse_duration;
use super::expr::{Expr, ExprError, Template};
use super::yaml::{Node, NodeKind, Pos};

/// Reads a mapping key by key, then reports the keys nobody asked for.
pub struct MapReader<'a> {
    /// The mapping node (or a null standing for an empty mapping).
    pub node: &'a Node,
    entries: &'a [(Node, Node)],
    used: Vec<bool>,
}

impl<'a> MapReader<'a> {
    /// Opens `node` as a mapping; a null counts as an empty mapping. `what` names the
    /// node in the error when it is something else.
    pub fn new(node: &'a Node, what: &str, d: &mut Diagnostics) -> Option<Self> {
        let entries: &'a [(Node, Node)] = match &node.kind {
            NodeKind::Map(entries) => entries,
            _ if node.is_null() => &[],
            _ => {
                d.error(
                    node.pos,
                    format!("{what} must be a mapping, not {}", node.type_name()),
                );
                return None;
            }
        };
        let mut used = vec![false; entries.len()];
        for (i, (key, _)) in entries.iter().enumerate() {
            if key.as_str().is_none() {
                d.error(
                    key.pos,
                    format!("a key in {what} must be a string, not {}", key.type_name()),
                );
                used[i] = true;
            }
        }
        Some(MapReader {
            node,
            entries,
            used,
        })
    }

    /// Takes the entry for `key`: its key node and its value node.
    pub fn take(&mut self, key: &str) -> Option<(&'a Node, &'a Node)> {
        let i = self
            .entries
            .iter()
            .position(|(k, _)| k.as_str() == Some(key))?;
        self.used[i] = true;
        let (k, v) = &self.entries[i];
        Some((k, v))
    }

    /// The entries not taken yet, as (key text, key node, value node).
    pub fn rest(&self) -> impl Iterator<Item = (&'a str, &'a Node, &'a Node)> + '_ {
        self.entries
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| !**used)
            .filter_map(|((k, v), _)| Some((k.as_str()?, k, v)))
    }

    /// Reports every key not taken as unknown in `context`, suggesting one of `allowed`.
    pub fn finish(self, d: &mut Diagnostics, allowed: &[&str], context: &str) {
        for (name, key, _) in self.rest() {
            d.error(
                key.pos,
                format!(
                    "unknown key '{name}' in {context}{}",
                    did_you_mean(name, allowed.iter().copied())
                ),
            );
        }
    }
}

/// The text of a scalar; records an error naming `what` for anything else.
pub fn string<'a>(node: &'a Node, what: &str, d: &mut Diagnostics) -> Option<&'a str> {
    match node.as_str() {
        Some(s) => Some(s),
        None => {
            d.error(
                node.pos,
                format!("{what} must be a string, not {}", node.type_name()),
            );
            None
        }
    }
}

/// `true` or `false`.
pub fn boolean(node: &Node, what: &str, d: &mut Diagnostics) -> Option<bool> {
    match node.as_str() {
        Some("true" | "True" | "TRUE") => Some(true),
        Some("false" | "False" | "FALSE") => Some(false),
        _ => {
            d.error(node.pos, format!("{what} must be true or false"));
            None
        }
    }
}

/// A whole number within `range`.
pub fn integer(
    node: &Node,
    what: &str,
    range: std::ops::RangeInclusive<u32>,
    d: &mut Diagnostics,
) -> Option<u32> {
    let text = string(node, what, d)?;
    match text.parse::<u32>() {
        Ok(n) if range.contains(&n) => Some(n),
        _ => {
            d.error(
                node.pos,
                format!(
                    "{what} must be a whole number from {} to {}, not '{text}'",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }
}

/// A duration such as `30s`, `500ms` or `1h30m`.
pub fn duration(node: &Node, what: &str, d: &mut Diagnostics) -> Option<Duration> {
    let text = string(node, what, d)?;
    match parse_duration(text) {
        Ok(v) => Some(v),
        Err(e) => {
            d.error(
                node.pos,
                format!("invalid duration '{text}' for {what}: {e}"),
            );
            None
        }
    }
}

/// Where, in the file, a place inside a scalar's text falls: exact when the scalar sits
/// on one line as written, else the scalar's own position.
pub fn pos_in(node: &Node, char_offset: usize, err: &ExprError) -> Pos {
    if node.text_is_verbatim() && err.line == 1 {
        let p = node.text_pos();
        Pos::new(p.line, p.col + char_offset + err.col.saturating_sub(1))
    } else {
        node.pos
    }
}

/// A rhai expression.
pub fn expr(node: &Node, what: &str, d: &mut Diagnostics) -> Option<Expr> {
    let text = string(node, what, d)?;
    match Expr::compile(text) {
        Ok(e) => Some(e),
        Err(err) => {
            d.error(
                pos_in(node, 0, &err),
                format!("invalid expression in {what}: {}", err.message),
            );
            None
        }
    }
}

/// A string that may hold `${...}` expressions.
pub fn template(node: &Node, what: &str, d: &mut Diagnostics) -> Option<Template> {
    let text = string(node, what, d)?;
    match Template::compile(text) {
        Ok(t) => Some(t),
        Err(err) => {
            d.error(
                pos_in(node, err.offset, &err.error),
                format!("invalid expression in {what}: {}", err.error.message),
            );
            None
        }
    }
}

/// An http or https URL, which may hold `${...}` expressions.
pub fn url(node: &Node, what: &str, d: &mut Diagnostics) -> Option<Template> {
    let t = template(node, what, d)?;
    let concrete = t.with_stand_in("x");
    let problem = match url::Url::parse(&concrete) {
        Ok(u) if u.scheme() != "http" && u.scheme() != "https" => Some(format!(
            "scheme '{}' is not allowed: use http or https",
            u.scheme()
        )),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Some("it has no host".to_string()),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    match problem {
        None => Some(t),
        Some(p) => {
            d.error(
                node.pos,
                format!("invalid URL '{}' for {what}: {p}", t.source),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::yaml;

    fn node(src: &str) -> Node {
        yaml::parse(src).unwrap().unwrap()
    }

    #[test]
    fn url_checks_scheme_and_host() {
        let mut d = Diagnostics::new("t".into());
        assert!(url(&node("\"ftp://x\""), "url", &mut d).is_none());
        assert!(url(&node("https://a.example/${call.sid}"), "url", &mut d).is_some());
        assert!(url(&node("\"http://:80/x\""), "url", &mut d).is_none());
        assert_eq!(d.into_vec().len(), 2);
    }

    #[test]
    fn expression_error_points_inside_the_value() {
        let mut d = Diagnostics::new("t".into());
        let n = node("k: 'x ${call.from +} y'");
        let NodeKind::Map(e) = &n.kind else { panic!() };
        assert!(template(&e[0].1, "value", &mut d).is_none());
        let diag = &d.into_vec()[0];
        assert_eq!(diag.pos.line, 1);
        assert!(diag.pos.col > 8, "{diag}");
    }
}
