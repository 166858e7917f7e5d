//! The seed's hand-off at a fixed rate, with SIPp as caller, bot and agent and the
//! partner webhook (examples/partner_webhook, built beside this one) in its own
//! process. The flow has the seed's two webhooks: the bot's connect asks a dynamic
//! URL whom to dial, and the passthru after the bot hangs up picks the agent. Prints
//! calls per second, failed calls, and callflow's CPU per call (this process's CPU
//! from /proc; SIPp and the webhook run elsewhere), with how often per call the
//! engine's threads slept and were preempted (Kamailio's processes likewise for the
//! baseline). The partner webhook runs quiet, on one thread: it stands in for a
//! service that would run elsewhere, so its CPU and switches are printed but not
//! counted. The baselines measured in the
//! same run: the three SIPp processes' CPU for the same calls, and Kamailio's CPU per
//! plain call (examples/vs_kamailio's setup, skipped when Kamailio is not installed)
//! at the same rate, which gives issue 12's ratio.
//!
//! ```sh
//! cargo build --release --examples
//! ./target/release/examples/load_handoff 200 2000      # rate (calls/s), calls
//! ./target/release/examples/load_handoff 200 2000 3    # 3 rounds, median ratio
//! ```
//!
//! With rounds, the hand-off and Kamailio's plain calls take turns and the ratio is
//! taken round by round (the machine's speed drifts; see vs_kamailio).

use std::process::Stdio;
use std::time::{Duration, Instant};

use callflow::config::Config;
use callflow::server::Server;
use callflow::sip::Transport;
use callflow::sip::transaction::Timers;
use tokio::process::{Child, Command};

mod common;
use common::{
    arg, cpu_seconds, cpu_seconds_of, engine_switches, free_port, kamailio, process_switches,
    sipp_caller, sipp_counts, sipp_far_end,
};

fn scenario(name: &str) -> String {
    format!("{}/tests/sipp/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn sipp_uas(file: &str, port: u16) -> std::io::Result<Child> {
    sipp_far_end(&["-sf", &scenario(file)], "127.0.0.1", port)
}

/// On the runtime `callflow serve` builds from its default configuration.
fn main() -> anyhow::Result<()> {
    common::run_engine(measure)
}

async fn measure() -> anyhow::Result<()> {
    let (rate, calls, rounds) = (arg(1, 200), arg(2, 2000), arg(3, 1));
    println!(
        "rate asked          {rate} calls/s, {calls} hand-off calls (caller → bot → webhook → agent)"
    );
    let mut ratios = Vec::new();
    for round in 1..=rounds.max(1) {
        if rounds > 1 {
            println!("round {round} of {rounds}");
        }
        let ours = handoff(rate, calls).await?;
        let Some((ok, failed, cpu, switches)) = kamailio::plain_calls(rate, calls).await? else {
            continue;
        };
        let theirs = cpu / (ok.max(1) as f64);
        let ratio = ours / theirs.max(1e-9);
        ratios.push(ratio);
        println!(
            "baseline: Kamailio, plain calls at the same rate: {ok} ok, {failed} failed, CPU {cpu:.2} s = {:.0} µs per call; {}",
            theirs * 1e6,
            switches.per_call(ok)
        );
        println!(
            "    ratio: callflow CPU per hand-off call = {ratio:.2}× Kamailio's per plain call (target ≤ 1.0)"
        );
    }
    common::print_median(
        &mut ratios,
        "callflow CPU per hand-off call / Kamailio's per plain call",
        1.0,
    );
    Ok(())
}

/// One hand-off run: callflow's CPU per call, in seconds (after printing the run).
async fn handoff(rate: u32, calls: u32) -> anyhow::Result<f64> {
    let web_port = free_port();
    let partner_bin = std::env::current_exe()?
        .parent()
        .map(|d| d.join("partner_webhook"))
        .ok_or_else(|| anyhow::anyhow!("no directory for partner_webhook"))?;
    let mut partner = Command::new(&partner_bin)
        .args([format!("127.0.0.1:{web_port}"), "--quiet".into()])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (cargo build --release --examples)",
                partner_bin.display()
            )
        })?;
    let (bot_port, agent_port) = (free_port(), free_port());
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("flows"))?;
    std::fs::write(
        dir.path().join("flows/handoff.yaml"),
        format!(
            "flow: handoff\nstart: bot\napplets:\n  bot:\n    connect: {{ dynamic_url: \"http://127.0.0.1:{web_port}/route\" }}\n    on: {{ completed: handoff, transfer: handoff, no_answer: bye }}\n  handoff:\n    passthru: {{ url: \"http://127.0.0.1:{web_port}/handoff\" }}\n    on: {{ ok: route, fail: bye }}\n  route:\n    switchcase: {{ cases: {{ sales: agent }}, default: bye }}\n  agent:\n    connect: {{ to: sip:trunk_sales }}\n    next: bye\n  bye:\n    hangup: {{}}\n"
        ),
    )?;
    std::fs::write(
        dir.path().join("callflow.yaml"),
        format!(
            "sip: {{ listen: [\"udp://127.0.0.1:0\"], options_interval: null }}\nflows: flows\ncarriers:\n  - {{ name: pstn, uri: \"sip:127.0.0.1:9\", addresses: [127.0.0.1/32] }}\ntrunks:\n  - sid: trunk_demo_bot\n    destinations: [\"sip:bot@127.0.0.1:{bot_port}\"]\n    numbers: [{{ number: \"+918047112233\", mode: flow, flow: handoff }}]\n  - sid: trunk_sales\n    destinations: [\"sip:agent@127.0.0.1:{agent_port}\"]\n"
        ),
    )?;
    let server = Server::start(
        &Config::load(&dir.path().join("callflow.yaml"))?,
        Timers::default(),
    )
    .await?;
    let engine = server
        .transports
        .local_addr(Transport::Udp)
        .ok_or_else(|| anyhow::anyhow!("no UDP listener"))?;
    let mut bot = sipp_uas("uas_bye.xml", bot_port)?;
    let mut agent = sipp_uas("uas_agent.xml", agent_port)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pids: Vec<String> = [bot.id(), agent.id()]
        .iter()
        .flatten()
        .map(|p| p.to_string())
        .collect();
    let base0: f64 = pids.iter().map(|p| cpu_seconds_of(p)).sum();
    let partner_pid = partner.id().map(|p| p.to_string()).unwrap_or_default();
    let (partner_cpu0, partner_switches0) =
        (cpu_seconds_of(&partner_pid), process_switches(&partner_pid));
    let cpu0 = cpu_seconds();
    let switches0 = engine_switches();
    let t0 = Instant::now();
    let caller = sipp_caller(
        &["-sf", &scenario("uac_handoff.xml")],
        &engine.to_string(),
        rate,
        calls,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()?;
    let caller_pid = caller.id().map(|p| p.to_string()).unwrap_or_default();
    let watcher = {
        let pid = caller_pid.clone();
        tokio::spawn(async move {
            let mut last = 0.0;
            loop {
                let v = cpu_seconds_of(&pid);
                if v == 0.0 {
                    return last;
                }
                last = v;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let out = caller.wait_with_output().await?;
    let elapsed = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = cpu_seconds() - cpu0;
    let switches = engine_switches() - switches0;
    let partner_cpu = cpu_seconds_of(&partner_pid) - partner_cpu0;
    let partner_switches = process_switches(&partner_pid) - partner_switches0;
    let base: f64 =
        pids.iter().map(|p| cpu_seconds_of(p)).sum::<f64>() - base0 + watcher.await.unwrap_or(0.0);
    let (ok, failed) = sipp_counts(&out.stdout);
    let _ = (bot.kill().await, agent.kill().await, partner.kill().await);
    println!("elapsed             {elapsed:.2} s");
    println!("calls/s reached     {:.1}", ok as f64 / elapsed);
    println!("successful calls    {ok}");
    println!("failed calls        {failed}");
    println!(
        "callflow CPU        {cpu:.2} s, {:.0} µs per call; {}",
        cpu / (ok.max(1) as f64) * 1e6,
        switches.per_call(ok)
    );
    println!(
        "baseline: the three SIPp processes {base:.2} s, {:.0} µs per call; callflow / SIPp = {:.2}",
        base / (ok.max(1) as f64) * 1e6,
        cpu / base.max(0.001)
    );
    println!(
        "the partner webhook (not counted) {partner_cpu:.2} s, {:.0} µs per call; {}",
        partner_cpu / (ok.max(1) as f64) * 1e6,
        partner_switches.per_call(ok)
    );
    drop(server);
    Ok(cpu / (ok.max(1) as f64))
}
