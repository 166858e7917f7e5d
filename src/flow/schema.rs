//! The shape of a flow file: the top-level keys and the envelope of each applet (its
//! id, its one kind key, its transitions). Applet bodies are decoded by their own
//! modules in `crate::applets`.

use crate::applets::{self, AppletRef, DecodeContext, Kind};
use crate::lang::decode::{self, MapReader};
use crate::lang::diagnostic::{Diagnostics, did_you_mean};
use crate::lang::expr::Template;
use crate::lang::yaml::{Node, Pos};

const TOP_KEYS: [&str; 5] = ["flow", "description", "start", "status_callback", "applets"];

/// The keys an applet may hold besides its kind.
const TRANSITION_KEYS: [&str; 2] = ["on", "next"];

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub pos: Pos,
}

/// The label on an edge of the flow graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transition {
    /// Taken on this outcome (for a switchcase: a case value, or `default`).
    On(String),
    /// `next:`: taken on any outcome without a transition of its own.
    Any,
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transition::On(s) => f.write_str(s),
            Transition::Any => f.write_str("next"),
        }
    }
}

/// A transition as written, before its target is looked up.
#[derive(Debug, Clone)]
pub struct EdgeSpec {
    /// The edge's label.
    pub transition: Transition,
    /// The id of the applet it goes to.
    pub target: String,
    /// Where the target is written.
    pub pos: Pos,
    /// How to name the transition in a message, e.g. `outcome 'no_answer'`.
    pub described: String,
}

/// One applet as written: id, kind (when its body decoded) and transitions.
#[derive(Debug, Clone)]
pub struct AppletDef {
    /// The applet's id (its key under `applets:`).
    pub id: String,
    /// Where the id is written.
    pub pos: Pos,
    /// The kind and its parameters; `None` when the body had errors.
    pub kind: Option<AppletRef>,
    /// Its transitions.
    pub edges: Vec<EdgeSpec>,
}

/// A flow file's top level, decoded.
#[derive(Debug, Clone)]
pub struct FlowDoc {
    /// Where the document starts.
    pub pos: Pos,
    /// `flow:`, the flow's id.
    pub id: Option<Spanned<String>>,
    /// `description:`.
    pub description: Option<String>,
    /// `start:`, the first applet.
    pub start: Option<Spanned<String>>,
    /// `status_callback:`, POSTed at call end.
    pub status_callback: Option<Template>,
    /// The applets, in file order.
    pub applets: Vec<AppletDef>,
}

/// Whether `id` is a valid flow id: `[a-z0-9_-]+`.
pub fn is_flow_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn is_applet_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Decodes the document; every problem is recorded in `d`.
pub fn decode_flow(root: &Node, reserved: &[String], d: &mut Diagnostics) -> Option<FlowDoc> {
    let mut m = MapReader::new(root, "a flow file", d)?;
    let id = match m.take("flow") {
        Some((_, v)) => flow_id(v, d),
        None => {
            d.error(root.pos, "missing 'flow': give the flow a unique id");
            None
        }
    };
    let description = m
        .take("description")
        .and_then(|(_, v)| decode::string(v, "description", d))
        .map(str::to_string);
    let start = match m.take("start") {
        Some((_, v)) => decode::string(v, "start", d).map(|s| Spanned {
            value: s.to_string(),
            pos: v.pos,
        }),
        None => {
            d.error(
                root.pos,
                "missing 'start': name the applet the flow begins with",
            );
            None
        }
    };
    let status_callback = m
        .take("status_callback")
        .and_then(|(_, v)| decode::url(v, "status_callback", d));
    let applets = match m.take("applets") {
        Some((k, v)) => applet_defs(k, v, reserved, d),
        None => {
            d.error(
                root.pos,
                "missing 'applets': a flow needs at least one applet",
            );
            Vec::new()
        }
    };
    m.finish(d, &TOP_KEYS, "the flow");
    Some(FlowDoc {
        pos: root.pos,
        id,
        description,
        start,
        status_callback,
        applets,
    })
}

fn flow_id(node: &Node, d: &mut Diagnostics) -> Option<Spanned<String>> {
    let id = decode::string(node, "flow", d)?;
    if !is_flow_id(id) {
        d.error(
            node.pos,
            format!(
                "flow id '{}' is invalid: use lowercase letters, digits, '_' and '-'",
                id.escape_default()
            ),
        );
        return None;
    }
    Some(Spanned {
        value: id.to_string(),
        pos: node.pos,
    })
}

fn applet_defs(
    key: &Node,
    node: &Node,
    reserved: &[String],
    d: &mut Diagnostics,
) -> Vec<AppletDef> {
    let Some(m) = MapReader::new(node, "applets", d) else {
        return Vec::new();
    };
    let defs: Vec<AppletDef> = m
        .rest()
        .filter_map(|(id, k, v)| applet_def(id, k, v, reserved, d))
        .collect();
    if m.rest().next().is_none() {
        d.error(
            key.pos,
            "'applets' is empty: a flow needs at least one applet",
        );
    }
    defs
}

fn applet_def(
    id: &str,
    key: &Node,
    node: &Node,
    reserved: &[String],
    d: &mut Diagnostics,
) -> Option<AppletDef> {
    if !is_applet_id(id) {
        d.error(
            key.pos,
            format!(
                "applet id '{}' is invalid: use letters, digits, '_' and '-'",
                id.escape_default()
            ),
        );
        return None;
    }
    let what = format!("applet '{id}'");
    let mut def = AppletDef {
        id: id.to_string(),
        pos: key.pos,
        kind: None,
        edges: Vec::new(),
    };
    let Some(mut m) = MapReader::new(node, &what, d) else {
        return Some(def);
    };
    let Some((kind, body)) = kind_entry(id, &mut m, d) else {
        // Already reported; the transitions cannot be checked without a kind.
        m.take("on");
        m.take("next");
        return Some(def);
    };
    let cx = DecodeContext {
        applet: id,
        reserved_prefixes: reserved,
    };
    let errors_before = d.error_count();
    def.kind = (kind.decode)(body, cx, d);
    if def.kind.is_none() && d.error_count() == errors_before {
        d.error(
            key.pos,
            format!("{} applet '{id}' could not be compiled", kind.name),
        );
    }
    if let Some(applet) = &def.kind {
        def.edges
            .extend(applet.branches().into_iter().map(|b| EdgeSpec {
                transition: Transition::On(b.outcome),
                target: b.target,
                pos: b.pos,
                described: b.described,
            }));
    }
    def.edges.extend(transitions(id, kind, &mut m, d));
    let mut allowed: Vec<&str> = TRANSITION_KEYS.to_vec();
    allowed.extend(applets::kind_names());
    m.finish(d, &allowed, &what);
    Some(def)
}

/// Finds the applet's one kind key. Unknown keys in an applet without a kind are read
/// as misspelt kinds.
fn kind_entry<'a>(
    id: &str,
    m: &mut MapReader<'a>,
    d: &mut Diagnostics,
) -> Option<(&'static Kind, &'a Node)> {
    let found: Vec<(&'static Kind, &'a Node, &'a Node)> = applets::KINDS
        .iter()
        .filter_map(|k| m.take(k.name).map(|(key, body)| (k, key, body)))
        .collect();
    if let [first, second, ..] = found.as_slice() {
        let (first, second) = if first.1.pos <= second.1.pos {
            (first, second)
        } else {
            (second, first)
        };
        d.error(
            second.1.pos,
            format!(
                "applet '{id}' has more than one kind ('{}' and '{}'): give exactly one",
                first.0.name, second.0.name
            ),
        );
        return None;
    }
    if let Some((name, _, body)) = found.first() {
        return Some((name, body));
    }
    let unknown: Vec<(&str, &Node)> = m
        .rest()
        .filter(|(name, _, _)| !TRANSITION_KEYS.contains(name))
        .map(|(name, key, _)| (name, key))
        .collect();
    if unknown.is_empty() {
        d.error(
            m.node.pos,
            format!(
                "applet '{id}' has no kind: give one of {}",
                applets::kind_names().join(", ")
            ),
        );
    }
    for (name, key) in unknown {
        d.error(
            key.pos,
            format!(
                "unknown applet kind '{name}' in applet '{id}'{}; kinds are {}",
                did_you_mean(name, applets::kind_names()),
                applets::kind_names().join(", ")
            ),
        );
        m.take(name);
    }
    None
}

/// Reads `on:` or `next:`.
fn transitions(id: &str, kind: &Kind, m: &mut MapReader<'_>, d: &mut Diagnostics) -> Vec<EdgeSpec> {
    let on = m.take("on");
    let next = m.take("next");
    if let (Some(_), Some((k, _))) = (on, next) {
        d.error(
            k.pos,
            format!("applet '{id}' has both 'on' and 'next': use one"),
        );
        return Vec::new();
    }
    let written = on.or(next);
    if let Some((k, _)) = written
        && let Err(why) = (kind.takes_transitions)()
    {
        let key = k.as_str().unwrap_or("on");
        d.error(
            k.pos,
            format!("{} applet '{id}' {why}: remove '{key}'", kind.name),
        );
        return Vec::new();
    }
    if let Some((_, v)) = next {
        return decode::string(v, "next", d)
            .map(|t| EdgeSpec {
                transition: Transition::Any,
                target: t.to_string(),
                pos: v.pos,
                described: "'next'".to_string(),
            })
            .into_iter()
            .collect();
    }
    let Some((_, v)) = on else {
        return Vec::new();
    };
    let Some(on) = MapReader::new(v, "on", d) else {
        return Vec::new();
    };
    let mut edges = Vec::new();
    for (outcome, key, target) in on.rest() {
        if let Err(why) = (kind.check_outcome)(outcome) {
            d.error(key.pos, format!("applet '{id}': {why}"));
            continue;
        }
        if let Some(t) = decode::string(target, &format!("outcome '{outcome}'"), d) {
            edges.push(EdgeSpec {
                transition: Transition::On(outcome.to_string()),
                target: t.to_string(),
                pos: target.pos,
                described: format!("outcome '{outcome}'"),
            });
        }
    }
    edges
}
