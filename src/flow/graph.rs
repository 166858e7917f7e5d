//! Exporting a compiled flow as a Mermaid or Graphviz diagram, with outcome labels on
//! the edges.

use std::fmt::Write;

use petgraph::visit::{EdgeRef, IntoEdgeReferences};

use super::compile::Flow;

/// The diagram languages `callflow graph` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Mermaid `flowchart`, which GitHub renders in Markdown.
    Mermaid,
    /// Graphviz `digraph`.
    Dot,
}

/// Renders `flow` in `format`.
pub fn render(flow: &Flow, format: Format) -> String {
    match format {
        Format::Mermaid => mermaid(flow),
        Format::Dot => dot(flow),
    }
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

fn mermaid(flow: &Flow) -> String {
    let mut out = String::from("flowchart TD\n");
    out.push_str("    start((start))\n");
    for n in flow.graph.node_indices() {
        let a = &flow.graph[n];
        let _ = writeln!(
            out,
            "    n{}[\"{}<br/>{}\"]",
            n.index(),
            mermaid_text(&a.id),
            mermaid_text(&a.kind.summary())
        );
    }
    let _ = writeln!(out, "    start --> n{}", flow.start.index());
    for e in (&flow.graph).edge_references() {
        let _ = writeln!(
            out,
            "    n{} -->|\"{}\"| n{}",
            e.source().index(),
            mermaid_text(&e.weight().to_string()),
            e.target().index()
        );
    }
    out
}

fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn dot(flow: &Flow) -> String {
    let mut out = format!("digraph \"{}\" {{\n", dot_text(&flow.id));
    out.push_str("    node [shape=box];\n");
    out.push_str("    \"start\" [shape=circle];\n");
    for n in flow.graph.node_indices() {
        let a = &flow.graph[n];
        let _ = writeln!(
            out,
            "    \"{}\" [label=\"{}\\n{}\"];",
            dot_text(&a.id),
            dot_text(&a.id),
            dot_text(&a.kind.summary())
        );
    }
    let _ = writeln!(
        out,
        "    \"start\" -> \"{}\";",
        dot_text(&flow.graph[flow.start].id)
    );
    for e in (&flow.graph).edge_references() {
        let _ = writeln!(
            out,
            "    \"{}\" -> \"{}\" [label=\"{}\"];",
            dot_text(&flow.graph[e.source()].id),
            dot_text(&flow.graph[e.target()].id),
            dot_text(&e.weight().to_string())
        );
    }
    out.push_str("}\n");
    out
}
