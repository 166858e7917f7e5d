//! The documentation compiles: every YAML snippet in applets/*.md and README.md (flows
//! compile, configuration examples load), every file in flows/, the repository's own
//! callflow.yaml, and each applet page names every key and outcome of its applet.

use std::path::Path;

use callflow::applets;
use callflow::flow::graph::{Format, render};
use callflow::flow::{CompileOptions, compile_str, load_file};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The ```yaml blocks of a Markdown file, with the line each starts on.
fn yaml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, "```yaml") => current = Some((i + 2, String::new())),
            (Some(_), "```") => out.extend(current.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            _ => {}
        }
    }
    out
}

fn assert_snippets_compile(file: &Path) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    let blocks = yaml_blocks(&text);
    for (line, body) in &blocks {
        let name = format!("{}:{line}", file.display());
        if !body.trim_start().starts_with("flow:") {
            // A configuration example: it must load as callflow.yaml does.
            if let Err(e) = callflow::config::Config::parse(body, Path::new(&name)) {
                panic!("configuration snippet at {name}: {e}");
            }
            continue;
        }
        let out = compile_str(name.clone().into(), body, &CompileOptions::default());
        assert!(
            out.diagnostics.is_empty(),
            "snippet at {name} has diagnostics:\n{:#?}",
            out.diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
    }
    blocks.len()
}

#[test]
fn every_applet_page_snippet_compiles() {
    for kind in applets::kind_names() {
        let page = root().join("applets").join(format!("{kind}.md"));
        assert!(
            assert_snippets_compile(&page) >= 1,
            "{kind}.md has no example"
        );
    }
}

#[test]
fn readme_snippets_compile() {
    assert!(assert_snippets_compile(&root().join("README.md")) >= 1);
}

#[test]
fn every_shipped_flow_compiles_cleanly() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("flows")).unwrap() {
        let path = entry.unwrap().path();
        let (flow, diags) = load_file(&path, &CompileOptions::default());
        assert!(diags.is_empty(), "{}: {diags:#?}", path.display());
        assert!(flow.is_some());
        n += 1;
    }
    assert!(n >= 4);
}

#[test]
fn applet_pages_name_every_key_and_outcome() {
    let pages = [
        (
            "connect",
            &applets::connect::KEYS[..],
            &applets::connect::outcome_names()[..],
        ),
        (
            "passthru",
            &applets::passthru::KEYS[..],
            &applets::passthru::OUTCOMES[..],
        ),
        (
            "switchcase",
            &applets::switchcase::KEYS[..],
            &["default"][..],
        ),
        ("hangup", &applets::hangup::KEYS[..], &[][..]),
    ];
    for (kind, keys, outcomes) in pages {
        let text =
            std::fs::read_to_string(root().join("applets").join(format!("{kind}.md"))).unwrap();
        for word in keys.iter().chain(outcomes) {
            assert!(
                text.contains(&format!("`{word}`")),
                "{kind}.md does not name `{word}`"
            );
        }
    }
}

#[test]
fn readme_shows_the_real_graph_of_its_tour() {
    let (flow, _) = load_file(
        &root().join("flows/bot-to-agent.yaml"),
        &CompileOptions::default(),
    );
    let graph = render(&flow.unwrap(), Format::Mermaid);
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```mermaid\n{graph}```")),
        "README's graph differs from `callflow graph flows/bot-to-agent.yaml`:\n{graph}"
    );
}

#[test]
fn the_repository_configuration_loads_with_its_flows() {
    let config = callflow::config::Config::load(&root().join("callflow.yaml")).unwrap();
    let flows = callflow::server::load_flows(&config).unwrap();
    callflow::routing::Routing::build(&config, flows).unwrap();
}
