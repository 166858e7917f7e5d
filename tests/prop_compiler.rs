//! Random and mangled YAML never panics the compiler, and always yields either a flow
//! or diagnostics whose positions fall inside the file.

use callflow::flow::{CompileOptions, Severity, compile_str};
use proptest::prelude::*;

/// The shipped flows, as seeds for mangling.
fn seeds() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/flows");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    out
}

/// Checks the compiler's promise for one input.
fn holds(src: &str) -> Result<(), TestCaseError> {
    let out = compile_str("p.yaml".into(), src, &CompileOptions::default());
    let has_error = out
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error);
    prop_assert_eq!(
        out.flow.is_some(),
        !has_error,
        "a flow exactly when no error"
    );
    let lines: Vec<&str> = src.split('\n').collect();
    for d in &out.diagnostics {
        let (line, col) = (d.pos.line, d.pos.col);
        prop_assert!(line >= 1 && line <= lines.len(), "line out of file: {}", d);
        let width = lines[line - 1].chars().count();
        prop_assert!(col >= 1 && col <= width + 1, "column out of line: {}", d);
        prop_assert!(!d.message.is_empty() && !d.message.contains('\n'), "{}", d);
    }
    Ok(())
}

/// One edit to a flow's text.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Indent(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let yamlish = prop::sample::select(vec![
        ":", " ", "\n", "- ", "{", "}", "[", "]", "'", "\"", "#", "&a ", "*a", "!!str ", "|", ">",
        "${", "}", "\t", "on:", "next: ", "connect:", "sip:", "+91", "X-", "\r\n", "\u{0}", "é",
        "ms", "99", "default", "-",
    ]);
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), prop::collection::vec(yamlish, 1..4))
            .prop_map(|(a, s)| Edit::Insert(a, s.concat())),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), 0usize..6).prop_map(|(a, n)| Edit::Indent(a, n)),
    ]
}

/// The char boundary at or before `i % (len + 1)`.
fn boundary(s: &str, i: usize) -> usize {
    let mut i = i % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(src: &str, e: &Edit) -> String {
    let mut lines: Vec<String> = src.split('\n').map(str::to_string).collect();
    let n = lines.len();
    match e {
        Edit::Delete(at, len) => {
            let a = boundary(src, *at);
            let b = boundary(src, a + len);
            let b = b.max(a);
            format!("{}{}", &src[..a], &src[b..])
        }
        Edit::Insert(at, text) => {
            let a = boundary(src, *at);
            format!("{}{}{}", &src[..a], text, &src[a..])
        }
        Edit::DuplicateLine(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
            lines.join("\n")
        }
        Edit::SwapLines(a, b) => {
            lines.swap(a % n, b % n);
            lines.join("\n")
        }
        Edit::Indent(i, k) => {
            lines[i % n] = format!("{}{}", " ".repeat(*k), lines[i % n]);
            lines.join("\n")
        }
    }
}

proptest! {
    // PROPTEST_CASES raises the count for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_text_never_panics(src in any::<String>()) {
        holds(&src)?;
    }

    #[test]
    fn yaml_shaped_noise_never_panics(
        src in prop::collection::vec(
            prop::sample::select(vec!["flow: f\n", "start: a\n", "applets:\n", "  a:\n", "    connect:",
                " { to: sip:t }", "\n", "    next: a\n", "    hangup: {}\n", "  - ", "[", "]", "{", "}",
                ": ", "${call.from}", "\"", "'", "  ", "\t", "#c\n", "on:", " ok: a", "switchcase:"]),
            0..60,
        ).prop_map(|v| v.concat())
    ) {
        holds(&src)?;
    }

    #[test]
    fn mangled_flows_never_panic(
        which in any::<usize>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let seeds = seeds();
        let mut src = seeds[which % seeds.len()].clone();
        for e in &edits {
            src = apply(&src, e);
        }
        holds(&src)?;
    }
}

#[test]
fn the_seeds_themselves_compile() {
    for s in seeds() {
        let out = compile_str("seed.yaml".into(), &s, &CompileOptions::default());
        assert!(out.flow.is_some(), "{:?}", out.diagnostics);
    }
}

proptest! {
    // The long hunt (scripts/long-proptests.sh; BENCHMARKS.md has its last run):
    // LONG_PROPTEST_CASES cases of each, 200,000 by default.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("LONG_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000),
        ..ProptestConfig::default()
    })]

    #[test]
    #[ignore = "long: run by scripts/long-proptests.sh"]
    fn long_mangled_flows_never_panic(
        which in any::<usize>(),
        edits in prop::collection::vec(edit(), 1..12),
    ) {
        let seeds = seeds();
        let mut src = seeds[which % seeds.len()].clone();
        for e in &edits {
            src = apply(&src, e);
        }
        holds(&src)?;
    }

    #[test]
    #[ignore = "long: run by scripts/long-proptests.sh"]
    fn long_arbitrary_text_never_panics(src in any::<String>()) {
        holds(&src)?;
    }
}
