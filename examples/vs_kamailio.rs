//! callflow against Kamailio on the same SIPp load (issue 12's comparison). SIPp's
//! caller sends calls with zero hold time at a fixed rate; each engine relays them to
//! a SIPp far end on 127.0.0.3:25071: callflow as `callflow serve` runs it (in this
//! process: a `pstn` number routed to a trunk), then Kamailio as a stateful (tm)
//! proxy with `bench/kamailio-proxy.cfg` (Debian package `kamailio`; skipped with a
//! message when it is not installed). For each: calls/s reached, failed calls,
//! retransmissions SIPp saw, CPU per call (all of the engine's processes), peak RSS,
//! and how often per call the engine's threads or processes slept and were
//! preempted (each a switch back in, and caches left to whatever ran between);
//! then the ratios.
//!
//! ```sh
//! cargo run --release --example vs_kamailio -- 500 10000    # rate (calls/s), calls
//! cargo run --release --example vs_kamailio -- 500 10000 30000   # each call held 30 s
//! cargo run --release --example vs_kamailio -- 500 10000 0 5   # 5 rounds, median ratio
//! ```
//!
//! With rounds, callflow and Kamailio take turns (callflow, Kamailio, callflow, …) and
//! the ratio is taken round by round: on a shared machine whose speed drifts (other
//! tenants' steal time, printed for each run) one round's ratio can be off by a
//! third either way; the median of the rounds is the figure to quote.
//!
//! With a hold time, calls stay answered that long (SIPp `-d`): 500/s held 30 s keeps
//! all 10,000 answered at once at the end of the run. callflow's RSS is also read
//! before the load and a minute after it ended, to see that memory comes back.
//!
//! Setup time under the load (callflow only), in a pass of its own after the rounds
//! (with no hold time): a probe thread places a call every 20 ms to a second number
//! whose trunk points at its own socket, and times INVITE sent → callflow's INVITE
//! arrived, from the kernel's receive timestamp (`SO_TIMESTAMPNS`), so that the probe
//! thread's own wake-up is not counted as callflow's (the time until the probe read
//! it is printed too). The baseline in the same run is one datagram sent straight to
//! the same socket, timed the same way. The probe's calls (a tenth more calls, each
//! shorter than SIPp's) are not in the rounds, so that both engines' CPU per call is
//! for SIPp's calls alone.
//!
//! Needs `sipp` (Debian package sip-tester).

use std::time::{Duration, Instant};

mod common;
use common::kamailio::{FAR, KAMAILIO, Kamailio, far_end};
use common::{
    Switches, arg, cpu_seconds_of, engine_cpu_seconds, engine_switches, percentile,
    probe_under_load, pstn_server_probed, rss_mib, sipp_caller, sipp_counts, switches_of,
};

/// The SIPp load.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Calls per second.
    rate: u32,
    /// Calls in all.
    calls: u32,
    /// How long each call stays answered, ms.
    hold_ms: u32,
}

/// What one run measured.
struct Run {
    ok: u64,
    failed: u64,
    retransmissions: u64,
    elapsed: f64,
    cpu: f64,
    peak_rss_mib: f64,
    /// Calls the engine carried besides SIPp's (the setup-time probe's).
    extra_calls: u64,
    /// The share of the machine's CPU time the hypervisor took during the load
    /// (`steal` in /proc/stat): time no process here could run.
    steal: f64,
    /// The measured threads' (or processes') context switches during the load.
    switches: Switches,
}

impl Run {
    fn print(&self, name: &str) {
        let per_call = self.per_call() * 1e6;
        println!(
            "{name:>9}: {} ok (+{} probe calls), {} failed, {} retransmissions, {:.1} calls/s, CPU {:.2} s = {per_call:.0} µs per call, peak RSS {:.1} MiB; steal {:.0}% of the machine's CPU time; {}",
            self.ok,
            self.extra_calls,
            self.failed,
            self.retransmissions,
            self.ok as f64 / self.elapsed,
            self.cpu,
            self.peak_rss_mib,
            self.steal * 100.0,
            self.switches.per_call(self.ok + self.extra_calls),
        );
    }

    fn per_call(&self) -> f64 {
        self.cpu / (self.ok + self.extra_calls).max(1) as f64
    }
}

/// The retransmissions on SIPp's last scenario screen: the second count of every
/// message row.
fn retransmissions(stdout: &[u8]) -> u64 {
    let screen = String::from_utf8_lossy(stdout);
    let last = screen.rsplit("Messages  Retrans").next().unwrap_or("");
    last.lines()
        .filter(|l| l.contains("---------->") || l.contains("<----------"))
        .filter_map(|l| {
            let after = l.split("----------").last()?.trim_start_matches('>');
            after
                .split_whitespace()
                .filter(|t| t.parse::<u64>().is_ok())
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Peak resident memory (VmHWM) of process `pid`, in MiB.
fn peak_rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs SIPp's caller against `target`, measuring the CPU of `pids()` around it
/// (`self` stands for this process's engine threads).
async fn load(target: &str, load: Load, pids: impl Fn() -> Vec<String>) -> anyhow::Result<Run> {
    let Load {
        rate,
        calls,
        hold_ms,
    } = load;
    let of = |p: &String| match p.as_str() {
        "self" => engine_cpu_seconds(),
        p => cpu_seconds_of(p),
    };
    let cpu = |p: &[String]| p.iter().map(of).sum::<f64>();
    let switches = |p: &[String]| -> Switches {
        p.iter()
            .map(|p| match p.as_str() {
                "self" => engine_switches(),
                p => switches_of(p),
            })
            .sum()
    };
    let at_start = pids();
    let switches0 = switches(&at_start);
    let before = cpu(&at_start);
    let steal0 = steal_ticks();
    let t0 = Instant::now();
    let out = sipp_caller(&["-sn", "uac"], target, rate, calls)
        .args(["-d", &hold_ms.to_string()])
        .output()
        .await?;
    let elapsed = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_end = pids();
    let after = cpu(&at_end);
    let switches1 = switches(&at_end);
    let steal1 = steal_ticks();
    let (ok, failed) = sipp_counts(&out.stdout);
    Ok(Run {
        ok,
        failed,
        retransmissions: retransmissions(&out.stdout),
        elapsed,
        cpu: after - before,
        peak_rss_mib: 0.0,
        extra_calls: 0,
        steal: (steal1.0 - steal0.0) / (steal1.1 - steal0.1).max(1.0),
        switches: switches1 - switches0,
    })
}

/// The machine's steal ticks and all its ticks so far (the `cpu` line of /proc/stat).
fn steal_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    (
        ticks.get(7).copied().unwrap_or(0.0),
        ticks.iter().take(8).sum(),
    )
}

/// One callflow run: the load, with the setup-time probe beside it when `probe`;
/// when `first`, the minute after the load is measured too.
async fn callflow(l: Load, first: bool, probe: bool) -> anyhow::Result<Run> {
    let bot = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let (server, _dir) = pstn_server_probed("", FAR, Some(bot.local_addr()?)).await?;
    let addr = server
        .transports
        .local_addr(callflow::sip::Transport::Udp)
        .ok_or_else(|| anyhow::anyhow!("no UDP listener"))?;
    let mut far = far_end()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_mib("self");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = probe
        .then(|| probe_under_load(addr, bot, stop.clone()))
        .transpose()?;
    let mut run = load(&addr.to_string(), l, || vec!["self".to_string()]).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    run.peak_rss_mib = peak_rss_mib("self");
    if let Some(prober) = prober {
        let probed = tokio::task::spawn_blocking(move || prober.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the probe thread panicked"))?;
        // The engine's CPU went to the probe's calls too.
        run.extra_calls = probed.through.len() as u64;
        print_setup(probed);
    }
    let _ = far.kill().await;
    if !first {
        return Ok(run);
    }
    // The transactions of the last calls live 32 s (RFC 3261's Timers J and L), so
    // the CPU they take to end falls after the load; it is shown on its own.
    let cpu_at_end = engine_cpu_seconds();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let tail = engine_cpu_seconds() - cpu_at_end;
    println!(
        " callflow: RSS {idle:.1} MiB before the load, {:.1} MiB a minute after it ended ({} transactions alive)",
        rss_mib("self"),
        server.engine.core.layer.alive()
    );
    println!(
        " callflow: CPU in that minute (the load's transactions ending on their timers): {tail:.2} s = {:.0} µs per call",
        tail / ((run.ok + run.extra_calls).max(1) as f64) * 1e6
    );
    Ok(run)
}

/// Setup time under the load, and the baseline measured in the same run.
fn print_setup(mut probed: common::Probed) {
    let mut slowest: Vec<(Duration, Duration)> = probed
        .through
        .iter()
        .copied()
        .zip(probed.sent_at.iter().copied())
        .collect();
    slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
    let slowest: Vec<String> = slowest
        .iter()
        .take(8)
        .map(|(t, at)| {
            format!(
                "{:.0} µs at {:.2} s",
                t.as_secs_f64() * 1e6,
                at.as_secs_f64()
            )
        })
        .collect();
    println!(" callflow: slowest probe calls: {}", slowest.join(", "));
    probed.through.sort();
    probed.through_read.sort();
    probed.direct.sort();
    probed.relayed.sort();
    if probed.through.is_empty() || probed.direct.is_empty() {
        println!(" callflow: no probe call got through during the load");
        return;
    }
    let us = |v: &[Duration], p: f64| percentile(v, p).as_secs_f64() * 1e6;
    let (p50, p99) = (us(&probed.through, 0.5), us(&probed.through, 0.99));
    let (b50, b99) = (us(&probed.direct, 0.5), us(&probed.direct, 0.99));
    println!(
        " callflow: setup under the load over {} probe calls (INVITE in → INVITE out, arrival timestamps): p50 {p50:.0} µs, p99 {p99:.0} µs; one datagram straight (baseline, same run): p50 {b50:.0} µs, p99 {b99:.0} µs; added at p99: {:.0} µs (target < 1000)",
        probed.through.len(),
        p99 - b99
    );
    println!(
        " callflow: the same calls timed until the probe's thread read the INVITE (its own wake-up included): p50 {:.0} µs, p99 {:.0} µs",
        us(&probed.through_read, 0.5),
        us(&probed.through_read, 0.99)
    );
    if !probed.relayed.is_empty() {
        let (r50, r99) = (us(&probed.relayed, 0.5), us(&probed.relayed, 0.99));
        println!(
            " callflow: for scale, one datagram through a relay thread woken by it (same run): p50 {r50:.0} µs, p99 {r99:.0} µs"
        );
    }
}

async fn kamailio(l: Load, first: bool) -> anyhow::Result<Option<Run>> {
    let Some(kamailio) = Kamailio::start().await? else {
        return Ok(None);
    };
    let mut run = load(KAMAILIO, l, || kamailio.processes()).await?;
    run.peak_rss_mib = kamailio.processes().iter().map(|p| peak_rss_mib(p)).sum();
    if first {
        // Its transactions end 5 s after their final response (tm's wait timer); its
        // timer processes tick when idle too, so the next 10 s are the idle rate.
        let ten = Duration::from_secs(10);
        let at_end = kamailio.cpu_seconds();
        tokio::time::sleep(ten).await;
        let tail = kamailio.cpu_seconds() - at_end;
        tokio::time::sleep(ten).await;
        let idle = kamailio.cpu_seconds() - at_end - tail;
        println!(
            " kamailio: CPU in the 10 s after the load, less its idle rate: {:.2} s = {:.0} µs per call",
            tail - idle,
            (tail - idle) / (run.ok.max(1) as f64) * 1e6
        );
    }
    kamailio.stop().await;
    Ok(Some(run))
}

/// On the runtime `callflow serve` builds from its default configuration.
fn main() -> anyhow::Result<()> {
    common::run_engine(measure)
}

async fn measure() -> anyhow::Result<()> {
    let (rate, calls, hold_ms, rounds) = (arg(1, 500), arg(2, 10_000), arg(3, 0), arg(4, 1));
    let l = Load {
        rate,
        calls,
        hold_ms,
    };
    println!(
        "SIPp uac → engine → SIPp uas, {rate} calls/s × {calls} calls, each held {hold_ms} ms"
    );
    let mut ratios = Vec::new();
    for round in 1..=rounds.max(1) {
        if rounds > 1 {
            println!("round {round} of {rounds}");
        }
        let ours = callflow(l, round == 1, false).await?;
        ours.print("callflow");
        let Some(theirs) = kamailio(l, round == 1).await? else {
            continue;
        };
        theirs.print("kamailio");
        let ratio = ours.per_call() / theirs.per_call().max(1e-9);
        ratios.push(ratio);
        println!(
            "    ratio: callflow CPU per call = {ratio:.2}× Kamailio's (target ≤ 0.5); peak RSS {:.1}× (Kamailio's summed over its processes, shared pages counted in each)",
            ours.peak_rss_mib / theirs.peak_rss_mib.max(1e-9)
        );
    }
    common::print_median(&mut ratios, "callflow CPU per call / Kamailio's", 0.5);
    if hold_ms == 0 {
        println!("setup time: the same load again, with the probe's calls beside it");
        callflow(l, false, true).await?.print("callflow");
    }
    Ok(())
}
