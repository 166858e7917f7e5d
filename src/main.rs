//! The `callflow` command: check, draw and simulate flows; serve calls; create accounts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use callflow::flow::graph::{self, Format};
use callflow::flow::{CompileOptions, Severity, load_file, load_paths};
use clap::{Parser, Subcommand, ValueEnum};

/// A programmable call-flow engine for voice-AI bots and contact-centre agents.
#[derive(Parser)]
#[command(name = "callflow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate flow files and directories; exit 1 on any error.
    Check {
        /// Flow files, or directories searched for *.yaml and *.yml.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print a flow's compiled graph with outcome labels on its edges.
    Graph {
        /// The flow file.
        file: PathBuf,
        /// The diagram language.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Run the engine: SIP and the HTTP API.
    Serve {
        /// The configuration file (default: ./callflow.yaml, else built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage accounts in the store (the operator's side of the management API).
    Account {
        #[command(subcommand)]
        action: AccountAction,
        /// The configuration file naming the store (default: ./callflow.yaml, else
        /// sqlite://callflow.db).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Run a flow against scripted outcomes and print the path taken.
    Simulate {
        /// The flow file.
        file: PathBuf,
        /// The scenario file.
        #[arg(long)]
        scenario: PathBuf,
    },
}

#[derive(Subcommand)]
enum AccountAction {
    /// Create an account; prints its sid, API key and token (the token only now).
    Create {
        /// The account's name.
        name: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
}

/// SIGHUP: reads the configuration and the flows again; an invalid one is refused
/// with its diagnostics logged, and the running one stays.
async fn reload(server: &callflow::server::Server, path: Option<&Path>) {
    let config = match path {
        Some(p) => callflow::config::Config::load(p),
        None => Ok(callflow::config::Config::default()),
    };
    let result = match config {
        Ok(c) => server.reload(&c).await,
        Err(e) => Err(callflow::server::StartError::from(e)),
    };
    if let Err(e) = result {
        for line in e.to_string().lines() {
            tracing::error!("{line}");
        }
        tracing::error!("reload refused; the running configuration stays");
    }
}

/// Runs the engine until Ctrl-C; a second Ctrl-C ends calls in progress.
fn serve(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    // The engine's lines and these messages share stderr: what the logger holds
    // goes out before each message, so that they stay in order.
    let log = callflow::server::init_logging(std::io::stderr());
    let say = |message: &dyn std::fmt::Display| {
        log.flush();
        eprintln!("{message}");
    };
    let path = callflow::server::config_path(config);
    let cfg = match &path {
        Some(p) => match callflow::config::Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(1));
            }
        },
        None => callflow::config::Config::default(),
    };
    let runtime = callflow::server::runtime(&cfg).context("starting the runtime")?;
    runtime.block_on(async move {
        let server = match callflow::server::Server::start(
            &cfg,
            callflow::sip::transaction::Timers::default(),
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                say(&e);
                say(&"callflow: not started");
                return Ok(ExitCode::from(1));
            }
        };
        let from = path
            .as_ref()
            .map_or("built-in defaults".to_string(), |p| p.display().to_string());
        say(&format_args!(
            "callflow: serving ({from}); SIGHUP reloads, Ctrl-C or SIGTERM stops taking calls"
        ));
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("listening for SIGHUP")?;
        let mut stop = StopSignals::new().context("listening for SIGINT and SIGTERM")?;
        loop {
            tokio::select! {
                _ = stop.next() => break,
                _ = hangup.recv() => reload(&server, path.as_deref()).await,
            }
        }
        say(&"callflow: no new calls; waiting for calls in progress (Ctrl-C or SIGTERM again ends them)");
        server.drain(stop.next()).await;
        say(&"callflow: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The signals that stop `serve`: SIGINT (Ctrl-C) and SIGTERM (what `kill`,
/// `systemctl stop` and `docker stop` send). The first stops taking calls and lets
/// those in progress finish; the next ends them.
struct StopSignals {
    /// SIGINT.
    interrupt: tokio::signal::unix::Signal,
    /// SIGTERM.
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Listens for both from now on.
    fn new() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next of either.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// `callflow account create NAME`: the account's credentials as JSON on stdout.
fn account(action: AccountAction, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let AccountAction::Create { name } = action;
    if name.trim().is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        eprintln!("callflow: an account name is 1 to 64 printable characters");
        return Ok(ExitCode::from(2));
    }
    let path = callflow::server::config_path(config);
    let cfg = match &path {
        Some(p) => callflow::config::Config::load(p).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => callflow::config::Config::default(),
    };
    let url = cfg
        .store
        .map(|s| s.url)
        .unwrap_or_else(|| callflow::server::DEFAULT_STORE.to_string());
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let account = runtime.block_on(async {
        let store = callflow::store::Store::open(&url).await?;
        store.create_account(name.trim()).await
    });
    let account = account.with_context(|| format!("creating the account in {url}"))?;
    println!("{}", serde_json::to_string_pretty(&account)?);
    Ok(ExitCode::SUCCESS)
}

/// Runs a flow against a scenario's scripted legs and webhooks; prints the path.
fn simulate(file: &Path, scenario: &Path, opts: &CompileOptions) -> anyhow::Result<ExitCode> {
    use callflow::flow::simulate::{Scenario, ScriptedCall, ScriptedHttp};
    let (flow, diags) = load_file(file, opts);
    for d in &diags {
        println!("{d}");
    }
    let Some(flow) = flow else {
        return Ok(ExitCode::from(1));
    };
    let text = std::fs::read_to_string(scenario)
        .with_context(|| format!("reading {}", scenario.display()))?;
    let scenario: Scenario = match serde_yaml::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or("");
            println!("{}:{line}:{col}: error: {msg}", scenario.display());
            return Ok(ExitCode::from(1));
        }
    };
    let mut call = ScriptedCall::new(&scenario.legs);
    let http = ScriptedHttp::new(&scenario);
    let info = callflow::lang::vars::CallInfo {
        sid: "CAsimulated".into(),
        from: scenario.call.from.clone(),
        to: scenario.call.to.clone(),
        direction: "incoming".into(),
        ..Default::default()
    };
    let directory = callflow::flow::simulate::SimulatedDirectory;
    let settings = callflow::runtime::Settings::default();
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let record = runtime.block_on(callflow::flow::executor::run(
        &flow,
        &mut call,
        callflow::flow::executor::Webhooks::same(&http),
        &directory,
        &settings,
        info,
        &|_| None,
    ));
    println!("path:");
    for s in &record.steps {
        println!("  {} ({}) -> {}", s.applet, s.kind, s.outcome);
        for l in &s.legs {
            println!("      leg {} -> {}", l.to, l.result);
        }
        for w in &s.webhooks {
            let status = w.status.map_or("-".to_string(), |s| s.to_string());
            println!(
                "      webhook {} -> {status}{}",
                w.url,
                w.error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" ({e})"))
            );
        }
        for n in &s.notes {
            println!("      note: {n}");
        }
    }
    println!("call:");
    for line in &call.log {
        println!("  {line}");
    }
    println!("webhook requests:");
    for r in http.requests.lock().map(|r| r.clone()).unwrap_or_default() {
        println!("  {r}");
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("callflow: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    let opts = CompileOptions::default();
    match command {
        Command::Check { paths } => {
            let loaded = load_paths(&paths, &opts);
            for d in &loaded.diagnostics {
                println!("{d}");
            }
            let errors = loaded
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            let warnings = loaded.diagnostics.len() - errors;
            eprintln!(
                "checked {} file(s): {} flow(s) compiled, {errors} error(s), {warnings} warning(s)",
                loaded.files,
                loaded.flows.len()
            );
            Ok(if loaded.has_errors() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Graph { file, format } => {
            let (flow, diags) = load_file(&file, &opts);
            for d in &diags {
                println!("{d}");
            }
            let Some(flow) = flow else {
                return Ok(ExitCode::from(1));
            };
            let format = match format {
                GraphFormat::Mermaid => Format::Mermaid,
                GraphFormat::Dot => Format::Dot,
            };
            print!("{}", graph::render(&flow, format));
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => serve(config),
        Command::Account { action, config } => account(action, config),
        Command::Simulate { file, scenario } => simulate(&file, &scenario, &opts),
    }
}
