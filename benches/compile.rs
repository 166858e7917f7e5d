//! Compiling flows: one generated flow of 10,000 applets, and a directory of 1,000
//! flow files. Each group has a baseline measured in the same run (parsing the YAML
//! alone; reading the files alone) so the figures can be read as ratios.

use std::hint::black_box;
use std::path::PathBuf;

use callflow::flow::{CompileOptions, compile_str, load_paths};
use callflow::lang::yaml;
use criterion::{Criterion, criterion_group, criterion_main};

/// A flow of `n` applets: groups of connect → passthru → switchcase, ending in hangups,
/// with templates, headers and every kind of transition.
fn generated_flow(id: &str, n: usize) -> String {
    let mut s = format!("flow: {id}\nstart: a0\napplets:\n");
    let groups = n.saturating_sub(2) / 3;
    // The applets past whole groups: hangups reached from the last switchcase.
    let extra = n.saturating_sub(2) % 3;
    let extra_cases: String = (0..extra).map(|i| format!(", e{i}: end{i}")).collect();
    for g in 0..groups {
        let (c, p, w) = (3 * g, 3 * g + 1, 3 * g + 2);
        let last = g + 1 == groups;
        let next = if last {
            "bye".to_string()
        } else {
            format!("a{}", 3 * (g + 1))
        };
        let more = if last { extra_cases.as_str() } else { "" };
        s.push_str(&format!(
            "  a{c}:\n    connect:\n      to: [sip:trunk_{g}, sip:agent{g}@10.0.{}.{}:5060, \"+9180471{:05}\"]\n      headers:\n        X-Group: \"g{g}-${{call.from}}\"\n      ring_timeout: 20s\n    on: {{ completed: a{p}, no_answer: a{p}, transfer: a{p} }}\n",
            g % 250, g % 200 + 1, g % 100_000
        ));
        s.push_str(&format!(
            "  a{p}:\n    passthru:\n      url: https://partner.example.com/h?g={g}&sid=${{call.sid}}\n      timeout: 3s\n    on: {{ ok: a{w}, \"302\": bye, fail: sorry }}\n"
        ));
        s.push_str(&format!(
            "  a{w}:\n    switchcase:\n      value: passthru.select\n      cases: {{ sales: {next}, support: {next}{more} }}\n      default: {next}\n"
        ));
    }
    for i in 0..extra {
        s.push_str(&format!("  end{i}:\n    hangup: {{ status: 486 }}\n"));
    }
    s.push_str("  sorry:\n    hangup: { status: 480 }\n  bye:\n    hangup: {}\n");
    s
}

fn flow_of_10k_applets(c: &mut Criterion) {
    let src = generated_flow("big", 10_000);
    eprintln!("flow_10k_applets: {} bytes of YAML", src.len());
    let out = compile_str("big.yaml".into(), &src, &CompileOptions::default());
    assert!(out.diagnostics.is_empty(), "{:?}", &out.diagnostics[..1]);
    assert_eq!(out.flow.as_ref().map(|f| f.len()), Some(10_000));
    let mut g = c.benchmark_group("flow_10k_applets");
    g.sample_size(10);
    g.bench_function("baseline_yaml_parse_only", |b| {
        b.iter(|| yaml::parse(black_box(&src)))
    });
    g.bench_function("compile", |b| {
        b.iter(|| {
            compile_str(
                "big.yaml".into(),
                black_box(&src),
                &CompileOptions::default(),
            )
        })
    });
    g.finish();
}

fn directory_of_1000_flows(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/flows/bot-to-agent.yaml");
    let template = std::fs::read_to_string(shipped).expect("read flows/bot-to-agent.yaml");
    for i in 0..1000 {
        let text = template.replace("flow: bot-to-agent", &format!("flow: flow-{i}"));
        std::fs::write(dir.path().join(format!("f{i:04}.yaml")), text).expect("write flow");
    }
    let paths = vec![PathBuf::from(dir.path())];
    let loaded = load_paths(&paths, &CompileOptions::default());
    assert_eq!((loaded.flows.len(), loaded.diagnostics.len()), (1000, 0));
    let mut g = c.benchmark_group("dir_1000_flows");
    g.sample_size(10);
    g.bench_function("baseline_read_files_only", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for e in std::fs::read_dir(dir.path()).expect("read dir") {
                bytes += std::fs::read(e.expect("entry").path()).expect("read").len();
            }
            bytes
        })
    });
    g.bench_function("load_and_compile", |b| {
        b.iter(|| load_paths(black_box(&paths), &CompileOptions::default()))
    });
    g.finish();
}

criterion_group!(benches, flow_of_10k_applets, directory_of_1000_flows);
criterion_main!(benches);
