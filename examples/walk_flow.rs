//! Walks a compiled flow by hand: give it a flow file and the outcome each applet
//! yields, and it prints the path the runtime would follow.
//!
//! ```sh
//! cargo run --example walk_flow -- flows/bot-to-agent.yaml completed ok sales completed
//! ```
//!
//! For a switchcase, the outcome is the value its expression gave (a case, or anything
//! else for the default).

use std::path::PathBuf;
use std::process::ExitCode;

use callflow::applets::hangup;
use callflow::flow::{CompileOptions, load_file};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next().map(PathBuf::from) else {
        eprintln!("usage: walk_flow FLOW.yaml OUTCOME...");
        return ExitCode::from(2);
    };
    let (flow, diagnostics) = load_file(&file, &CompileOptions::default());
    for d in &diagnostics {
        eprintln!("{d}");
    }
    let Some(flow) = flow else {
        return ExitCode::from(1);
    };
    let mut outcomes = args;
    let mut node = flow.start;
    while let Some(applet) = flow.applet(node) {
        if applet.kind.kind() == hangup::NAME {
            println!(
                "{} ({}: the status if the caller was never answered)",
                applet.id,
                applet.kind.summary()
            );
            break;
        }
        let Some(outcome) = outcomes.next() else {
            println!(
                "{} ({}) waits for an outcome",
                applet.id,
                applet.kind.kind()
            );
            break;
        };
        // A switchcase takes its default for any value that is not a case.
        let branches = applet.kind.branches();
        let outcome = if branches.is_empty() || branches.iter().any(|b| b.outcome == outcome) {
            outcome
        } else {
            "default".to_string()
        };
        match flow.next(node, &outcome) {
            Some(next) => {
                println!("{} --{outcome}--> ", applet.id);
                node = next;
            }
            None => {
                println!(
                    "{} --{outcome}--> (no transition: the flow hangs up)",
                    applet.id
                );
                break;
            }
        }
    }
    ExitCode::SUCCESS
}
