//! From a flow file's text to a checked graph of applets.
//!
//! Decoding (`schema`, `crate::applets`) finds what is wrong inside each applet; this
//! module finds what is wrong between them: transitions to applets that do not exist,
//! a missing start, cycles that never wait, unreachable applets and outcomes that end
//! the flow unintentionally.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};

use super::schema::{self, AppletDef, FlowDoc, Transition};
use crate::applets::AppletRef;
use crate::lang::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::lang::expr::Template;
use crate::lang::headers::DEFAULT_RESERVED_PREFIXES;
use crate::lang::yaml::{self, Pos};

/// Settings that change what a flow may say.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// Custom header prefixes reserved for the platform.
    pub reserved_header_prefixes: Vec<String>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            reserved_header_prefixes: DEFAULT_RESERVED_PREFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// A node of the flow graph.
#[derive(Debug, Clone)]
pub struct Applet {
    /// The applet's id.
    pub id: String,
    /// Where its id is written.
    pub pos: Pos,
    /// What it does.
    pub kind: AppletRef,
}

/// An applet of a flow built as data: its id, the applet, and its transitions to
/// other applets by id.
pub type BuiltApplet<'a> = (&'a str, AppletRef, Vec<(Transition, &'a str)>);

/// A compiled flow: a graph of applets whose edges carry outcome labels.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The flow's id, unique across the loaded flows.
    pub id: String,
    /// Where the id is written.
    pub id_pos: Pos,
    /// The file the flow came from.
    pub file: Arc<str>,
    /// The author's description.
    pub description: Option<String>,
    /// The URL POSTed when a call ends.
    pub status_callback: Option<Template>,
    /// The applets and their transitions.
    pub graph: StableDiGraph<Applet, Transition>,
    /// The applet every call starts at.
    pub start: NodeIndex,
    index: HashMap<String, NodeIndex>,
}

impl Flow {
    /// The applet at `node`.
    pub fn applet(&self, node: NodeIndex) -> Option<&Applet> {
        self.graph.node_weight(node)
    }

    /// The node of the applet with this id.
    pub fn find(&self, id: &str) -> Option<NodeIndex> {
        self.index.get(id).copied()
    }

    /// Where an applet that ended with `outcome` goes next: the outcome's own
    /// transition, else its fallback's (connect's `busy` and `failed` fall back to
    /// `no_answer`), else `next:`. `None` ends the flow with a hangup.
    pub fn next(&self, node: NodeIndex, outcome: &str) -> Option<NodeIndex> {
        let edge_to = |label: &Transition| {
            self.graph
                .edges(node)
                .find(|e| e.weight() == label)
                .map(|e| e.target())
        };
        let fallback = self.applet(node)?.kind.fallback(outcome);
        edge_to(&Transition::On(outcome.to_string()))
            .or_else(|| fallback.and_then(|f| edge_to(&Transition::On(f.to_string()))))
            .or_else(|| edge_to(&Transition::Any))
    }

    /// Whether the flow is an account's own (uploaded over the API, routed as
    /// `AC…/flow_id`) rather than the operator's.
    pub fn is_accounts(&self) -> bool {
        self.id.contains('/')
    }

    /// A flow built as data rather than read from a file (the flow of a `pstn`
    /// number): `applets` in order, the first being the start, each with its
    /// transitions to applets named in the list.
    pub fn from_applets(id: &str, applets: Vec<BuiltApplet<'_>>) -> Flow {
        let mut graph = StableDiGraph::new();
        let mut index = HashMap::new();
        for (name, kind, _) in &applets {
            let node = graph.add_node(Applet {
                id: name.to_string(),
                pos: Pos::new(1, 1),
                kind: kind.clone(),
            });
            index.insert(name.to_string(), node);
        }
        for (name, _, edges) in &applets {
            for (transition, target) in edges {
                if let (Some(a), Some(b)) = (index.get(*name), index.get(*target)) {
                    graph.add_edge(*a, *b, transition.clone());
                }
            }
        }
        let start = applets
            .first()
            .and_then(|(name, _, _)| index.get(*name).copied())
            .unwrap_or_default();
        Flow {
            id: id.to_string(),
            id_pos: Pos::new(1, 1),
            file: "(built in)".into(),
            description: None,
            status_callback: None,
            graph,
            start,
            index,
        }
    }

    /// How many applets the flow has.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether the flow has no applets (never true of a compiled flow).
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }
}

/// What compiling one file gives: the flow when it has no errors, and every
/// diagnostic, warnings included.
#[derive(Debug)]
pub struct Compiled {
    /// The flow, if it compiled.
    pub flow: Option<Flow>,
    /// Errors and warnings, by position.
    pub diagnostics: Vec<Diagnostic>,
}

/// Compiles the text of one flow file. `file` names it in diagnostics.
pub fn compile_str(file: Arc<str>, src: &str, opts: &CompileOptions) -> Compiled {
    let mut d = Diagnostics::new(file.clone());
    let flow = compile_into(file, src, opts, &mut d);
    let has_errors = d.has_errors();
    let mut diagnostics = d.into_vec();
    for diag in &mut diagnostics {
        diag.pos = yaml::clamp(src, diag.pos);
    }
    Compiled {
        flow: if has_errors { None } else { flow },
        diagnostics,
    }
}

fn compile_into(
    file: Arc<str>,
    src: &str,
    opts: &CompileOptions,
    d: &mut Diagnostics,
) -> Option<Flow> {
    let root = match yaml::parse(src) {
        Ok(Some(root)) => root,
        Ok(None) => {
            d.error(
                Pos::new(1, 1),
                "the file is empty: a flow needs flow, start and applets",
            );
            return None;
        }
        Err(e) => {
            d.error(e.pos, e.message);
            return None;
        }
    };
    let doc = schema::decode_flow(&root, &opts.reserved_header_prefixes, d)?;
    build(file, doc, d)
}

fn build(file: Arc<str>, doc: FlowDoc, d: &mut Diagnostics) -> Option<Flow> {
    let mut graph = StableDiGraph::new();
    let mut index = HashMap::new();
    let ids: Vec<&str> = doc.applets.iter().map(|a| a.id.as_str()).collect();
    for def in &doc.applets {
        if let Some(kind) = &def.kind {
            let node = graph.add_node(Applet {
                id: def.id.clone(),
                pos: def.pos,
                kind: kind.clone(),
            });
            index.insert(def.id.clone(), node);
        }
    }
    for def in &doc.applets {
        add_edges(def, &ids, &index, &mut graph, d);
    }
    let start = doc.start.as_ref().and_then(|s| {
        let found = index.get(&s.value).copied();
        // With no applets at all, that error is already reported.
        if found.is_none() && !ids.is_empty() && !ids.contains(&s.value.as_str()) {
            d.error(
                s.pos,
                format!(
                    "start applet '{}' does not exist{}",
                    s.value,
                    did_you_mean(&s.value, ids.iter().copied())
                ),
            );
        }
        found
    });
    check_spin_cycles(&graph, d);
    let start = start?;
    if !d.has_errors() {
        warn_unreachable(&graph, start, d);
        warn_unhandled_outcomes(&graph, d);
    }
    let id = doc.id?;
    Some(Flow {
        id: id.value,
        id_pos: id.pos,
        file,
        description: doc.description,
        status_callback: doc.status_callback,
        graph,
        start,
        index,
    })
}

fn add_edges(
    def: &AppletDef,
    ids: &[&str],
    index: &HashMap<String, NodeIndex>,
    graph: &mut StableDiGraph<Applet, Transition>,
    d: &mut Diagnostics,
) {
    for edge in &def.edges {
        match (index.get(&def.id), index.get(&edge.target)) {
            (Some(from), Some(to)) => {
                graph.add_edge(*from, *to, edge.transition.clone());
            }
            _ if ids.contains(&edge.target.as_str()) => {} // target had errors of its own
            _ => d.error(
                edge.pos,
                format!(
                    "{} of applet '{}' goes to '{}', which does not exist{}",
                    edge.described,
                    def.id,
                    edge.target,
                    did_you_mean(&edge.target, ids.iter().copied())
                ),
            ),
        }
    }
}

/// A cycle made only of applets that do not wait (switchcase, async passthru) would
/// run forever without yielding: an error.
fn check_spin_cycles(graph: &StableDiGraph<Applet, Transition>, d: &mut Diagnostics) {
    let mut sub: DiGraph<NodeIndex, ()> = DiGraph::new();
    let mut map = HashMap::new();
    for n in graph.node_indices() {
        if !graph[n].kind.waits() {
            map.insert(n, sub.add_node(n));
        }
    }
    for e in (&graph).edge_references() {
        if let (Some(a), Some(b)) = (map.get(&e.source()), map.get(&e.target())) {
            sub.update_edge(*a, *b, ());
        }
    }
    for scc in tarjan_scc(&sub) {
        let looped = scc.len() > 1 || sub.contains_edge(scc[0], scc[0]);
        if !looped {
            continue;
        }
        let mut members: Vec<&Applet> = scc.iter().map(|s| &graph[sub[*s]]).collect();
        members.sort_by_key(|a| a.pos);
        let names: Vec<String> = members.iter().map(|a| format!("'{}'", a.id)).collect();
        d.error(
            members[0].pos,
            format!(
                "applets {} form a cycle that never waits on the caller or the network: \
                 the flow would spin forever",
                names.join(", ")
            ),
        );
    }
}

fn warn_unreachable(
    graph: &StableDiGraph<Applet, Transition>,
    start: NodeIndex,
    d: &mut Diagnostics,
) {
    let mut seen = HashSet::from([start]);
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for next in graph.neighbors(n) {
            if seen.insert(next) {
                queue.push_back(next);
            }
        }
    }
    for n in graph.node_indices().filter(|n| !seen.contains(n)) {
        let a = &graph[n];
        d.warning(
            a.pos,
            format!(
                "applet '{}' is never reached from start applet '{}'",
                a.id, graph[start].id
            ),
        );
    }
}

fn warn_unhandled_outcomes(graph: &StableDiGraph<Applet, Transition>, d: &mut Diagnostics) {
    for n in graph.node_indices() {
        let labels: Vec<&Transition> = graph.edges(n).map(|e| e.weight()).collect();
        if labels.contains(&&Transition::Any) {
            continue;
        }
        let a = &graph[n];
        let missing: Vec<String> = a
            .kind
            .expected_outcomes()
            .into_iter()
            .filter(|o| !labels.contains(&&Transition::On(o.to_string())))
            .map(|o| format!("'{o}'"))
            .collect();
        if !missing.is_empty() {
            d.warning(
                a.pos,
                format!(
                    "{} applet '{}' has no transition for outcome {}: the flow hangs up there",
                    a.kind.kind(),
                    a.id,
                    missing.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(src: &str) -> Flow {
        let out = compile_str("t.yaml".into(), src, &CompileOptions::default());
        out.flow.unwrap_or_else(|| panic!("{:?}", out.diagnostics))
    }

    #[test]
    fn next_follows_outcome_then_fallback_then_any() {
        let f = flow(
            "flow: f\nstart: a\napplets:\n  a:\n    connect: { to: sip:t }\n    on: { completed: b, no_answer: c, transfer: b }\n  b:\n    passthru: { url: https://p.example/ }\n    next: c\n  c:\n    hangup: {}\n",
        );
        let (a, b, c) = (
            f.find("a").unwrap(),
            f.find("b").unwrap(),
            f.find("c").unwrap(),
        );
        assert_eq!(f.start, a);
        assert_eq!(f.next(a, "completed"), Some(b));
        assert_eq!(f.next(a, "busy"), Some(c), "busy falls back to no_answer");
        assert_eq!(
            f.next(a, "failed"),
            Some(c),
            "failed falls back to no_answer"
        );
        assert_eq!(f.next(a, "not_dialed"), None, "no transition: hang up");
        assert_eq!(f.next(b, "404"), Some(c), "next covers every outcome");
        assert_eq!(f.next(c, "anything"), None);
    }

    #[test]
    fn passthru_statuses_fall_back_to_fail() {
        let f = flow(
            "flow: f\nstart: a\napplets:\n  a:\n    passthru: { url: https://p.example/ }\n    on: { ok: b, fail: b }\n  b:\n    hangup: {}\n",
        );
        let a = f.find("a").unwrap();
        assert_eq!(
            f.next(a, "302"),
            f.find("b"),
            "a status with no transition takes fail"
        );
        assert_eq!(f.next(a, "no_answer"), None, "no connect-style fallback");
    }
}
